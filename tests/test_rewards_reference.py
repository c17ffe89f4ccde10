"""Plain-python reference for the rewards, written from docs/reference.md section 4, per sample.

It shares no code with o3jax.rewards: straight regexes, json, float and rouge_score, one
completion at a time. The tests in this file check it on hand-computed cases; the
kernel parity tests (test_rewards.py) and scripts/bench_rewards.py compare against it.

Choices where docs/reference.md leaves room (documented in o3jax/rewards/parse.py and gold.py):
a claim's boxes are the `\\[.*?\\]` matches of its box run (the reference code's split);
a "number" in a box is a JSON int or float that is finite (bool is not); the temporal
MCQ choice is `answer.split("Correct Option:")[1]`; a record without key frames gives
no temporal proximity.
"""

import ast
import json
import math
import re

import pytest
from rouge_score import rouge_scorer

TERMS = (
  "ans_acc",
  "ans_tiou",
  "ans_viou",
  "thk_temporal_point",
  "thk_temporal_segment",
  "thk_spatial",
  "format",
)
ST = "temporal-spatial free-form QA"
TG = "temporal QA"
TG_MCQ = "temporal QA (MCQ)"
VQA = "visual QA"
G_MCQ = "General video QA MCQ"
G_FREE = "General video QA Free-form"

CLAIM = r"<obj>(.*?)</obj>((?:<box>\[.*?\]</box>)+)at<t>(.*?)</t>s"
TIME = r"<t>([\d.]+)</t>s"
SPAN = r"<t>(\d+\.?\d*)</t>s to <t>(\d+\.?\d*)</t>s"
BOX = r"<box>(\[.*?\])</box>"

_ROUGE = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def answer_of(text):
  match = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL)
  return match.group(1).strip() if match else ""


def is_box(value):
  if not isinstance(value, list) or len(value) != 4:
    return False
  for v in value:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      return False
    try:
      if not math.isfinite(float(v)):
        return False
    except OverflowError:
      return False
  return True


def iou(gold, pred):
  if not is_box(pred):
    return 0.0
  pred = [float(v) for v in pred]
  x_a, y_a = max(gold[0], pred[0]), max(gold[1], pred[1])
  x_b, y_b = min(gold[2], pred[2]), min(gold[3], pred[3])
  inter = max(0.0, x_b - x_a) * max(0.0, y_b - y_a)
  union = (
    (gold[2] - gold[0]) * (gold[3] - gold[1]) + (pred[2] - pred[0]) * (pred[3] - pred[1]) - inter
  )
  return inter / union if union > 0 else 0.0


def try_json(text):
  try:
    return True, json.loads(text)
  except (ValueError, RecursionError):
    return False, None


def mcq_ok(choice, letter):
  return choice.strip() in (letter, letter + ".", "(" + letter + ")", "[" + letter + "]")


def gold_span(record):
  text = record["answer"] if record["task"] == TG else record["answer"].split("\n")[1]
  start, end = ast.literal_eval(text)
  return float(start), float(end)


def format_reward(text, task):
  think = re.search(r"<think>(.*?)</think>", text, re.DOTALL)
  if not think or not re.search(r"<answer>.*?</answer>", text, re.DOTALL):
    return 0.0
  if text.count("<think>") != text.count("</think>"):
    return 0.0
  if text.count("<answer>") != text.count("</answer>"):
    return 0.0
  inner = think.group(1)
  for a, b in (("<obj>", "</obj>"), ("<t>", "</t>"), ("<box>", "</box>")):
    if inner.count(a) != inner.count(b):
      return 0.0
  full = inner.count("<obj>") >= 1 and inner.count("<t>") >= 1 and inner.count("<box>") >= 1
  if task in (TG, TG_MCQ):
    full = inner.count("<t>") >= 2
  if task == VQA and re.search(r"<obj>(\w+)</obj><box>(\[.*?\])</box>", text):
    full = True
  return 1.0 if full or task in (G_MCQ, G_FREE) else 0.5


def claims_of(think):
  claims = []
  for match in re.finditer(CLAIM, think, re.DOTALL):
    try:
      time = float(match.group(3).strip())
    except ValueError:
      continue
    boxes = []
    for text in re.findall(r"\[.*?\]", match.group(2)):
      ok, value = try_json(text)
      if not ok:
        break
      boxes.append(value)
    else:
      claims.append((time, boxes))
  return claims


def claim_scores(think, record, gate):
  """(position of the key frame a claim gates to, or None; the claim's score) per claim."""
  width, height = record["frame_size"]
  out = []
  for time, boxes in claims_of(think):
    best, best_dist = None, math.inf
    for k, frame in enumerate(record["key_frames"]):
      g = frame["time"]
      inside = (g - time < 1.0) if gate == "one_sided" else (abs(g - time) <= 1.0)
      if inside and abs(g - time) < best_dist:
        best, best_dist = k, abs(g - time)
    if best is None:
      out.append((None, 0.0))
      continue
    score = 0.0
    for gold_boxes in record["key_items"][str(record["key_frames"][best]["idx"])].values():
      if not gold_boxes:
        continue
      per_gold = []
      for x1, y1, x2, y2 in gold_boxes:
        pixels = [x1 * width, y1 * height, x2 * width, y2 * height]
        per_gold.append(max([iou(pixels, b) for b in boxes], default=0.0))
      score = max(score, sum(per_gold) / len(per_gold))
    out.append((best, score))
  return out


def spatial_st(think, record, gate, spatial_rule="per_claim"):
  """The reference's mean over claims; or (o3jax's "per_key_frame") each key frame's
  best claim, summed, over max(claims, key frames)."""
  scores = claim_scores(think, record, gate)
  if not scores:
    return 0.0
  if spatial_rule == "per_claim":
    return sum(score for _, score in scores) / len(scores)
  best = {}
  for k, score in scores:
    if k is not None:
      best[k] = max(best.get(k, 0.0), score)
  return sum(best.values()) / max(len(scores), len(record["key_frames"]))


def visual_gold(record):
  x1, y1, x2, y2 = json.loads(re.search(BOX, record["answer"]).group(1))
  (image_w, image_h), (frame_w, frame_h) = record["image_size"], record["frame_size"]
  return [
    x1 * frame_w / image_w,
    y1 * frame_h / image_h,
    x2 * frame_w / image_w,
    y2 * frame_h / image_h,
  ]


def reference_terms(text, record, step_fraction, gate="symmetric", spatial_rule="per_claim"):
  """{term: value} and total for one completion, from the SPEC text."""
  task, gold = record["task"], record["answer"]
  out = dict.fromkeys(TERMS, 0.0)
  answer = answer_of(text)
  think_match = re.search(r"<think>(.*?)</think>", text, re.DOTALL)
  answer_match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)

  if task in (ST, G_FREE):
    scores = _ROUGE.score(answer_of(f"<answer>{gold}</answer>"), answer)
    mean = sum(scores[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")) / 3
    out["ans_acc"] = min(1.0, max(0.0, mean))
  elif task == G_MCQ:
    out["ans_acc"] = float(mcq_ok(answer, answer_of(f"<answer>{gold}</answer>").strip()))
  elif task == TG_MCQ and "Correct Option:" in answer:
    out["ans_acc"] = float(mcq_ok(answer.split("Correct Option:")[1], gold.split("\n")[0].strip()))

  if task in (TG, TG_MCQ):
    match = re.search(SPAN, answer)
    if match and float(match.group(2)) >= float(match.group(1)):
      s, e = float(match.group(1)), float(match.group(2))
      gs, ge = gold_span(record)
      union = max(e, ge) - min(s, gs)
      out["ans_tiou"] = max(0.0, min(e, ge) - max(s, gs)) / union if union != 0 else 0.0

  if task == VQA:
    match = re.search(BOX, answer)
    if match:
      ok, value = try_json(match.group(1))
      out["ans_viou"] = iou(visual_gold(record), value) if ok else 0.0

  out["format"] = format_reward(text, task)

  if think_match:
    think = think_match.group(1)
    try:
      times = [float(t) for t in re.findall(TIME, think)]
    except ValueError:
      times = []
    gold_times = [frame["time"] for frame in record.get("key_frames", [])]
    if task == ST and times and gold_times:
      f = step_fraction
      sigma = 4 * (1 - f) if f < 3 / 4 else 1
      out["thk_temporal_point"] = sum(
        math.exp(-(min(abs(t - g) for g in gold_times) ** 2) / (2 * sigma**2)) for t in times
      ) / len(times)
    if task in (TG, TG_MCQ) and times:
      s, e = gold_span(record)
      out["thk_temporal_segment"] = sum(s <= t <= e for t in times) / len(times)

  if think_match and answer_match:
    think = think_match.group(1)
    if task == ST:
      out["thk_spatial"] = spatial_st(think, record, gate, spatial_rule)
    elif task == VQA:
      boxes = [v for ok, v in map(try_json, re.findall(BOX, think)) if ok]
      out["thk_spatial"] = max([iou(visual_gold(record), b) for b in boxes], default=0.0)

  out["total"] = sum(out[k] for k in TERMS)
  return out


# --- hand-computed cases: (completion, record, step_fraction, gate, expected terms) ---

ST_RECORD = {
  "id": "st-1",
  "task": ST,
  "question": "What is the person doing?",
  "answer": "The person walks the dog.",
  "key_frames": [
    {"idx": 4, "time": 2.0, "path": "a.jpg"},
    {"idx": 10, "time": 5.0, "path": "b.jpg"},
  ],
  "key_items": {
    "4": {"person": [[0.1, 0.1, 0.5, 0.5]]},
    "10": {"dog": [[0.5, 0.5, 1.0, 1.0]], "cat": [[0.0, 0.0, 0.2, 0.2], [0.4, 0.4, 0.6, 0.6]]},
  },
  "frame_size": [100, 200],
}
ST_TEXT = (
  "<think>A <obj>person</obj><box>[10,20,50,100]</box>at<t>2.5</t>s and a "
  "<obj>dog</obj><box>[50,100,100,200]</box><box>[0,0,20,40]</box>at<t>4.1</t>s, "
  "then <obj>x</obj><box>[0,0,1,1]</box>at<t>9.0</t>s.</think>"
  "<answer>The person walks the dog.</answer>"
)
_POINT = (math.exp(-0.25 / 8) + math.exp(-0.81 / 8) + math.exp(-16 / 8)) / 3  # sigma 2
TG_RECORD = {"id": "tg-1", "task": TG, "question": "When?", "answer": "[2.0, 6.0]"}
TG_MCQ_RECORD = {"id": "tgm-1", "task": TG_MCQ, "question": "When?", "answer": "C\n[2.0, 6.0]"}
VQA_RECORD = {
  "id": "v-1",
  "task": VQA,
  "question": "Where is the cup?",
  "answer": "<obj>cup</obj><box>[20,20,100,60]</box>",
  "image_size": [200, 100],
  "frame_size": [100, 50],
}
MCQ_RECORD = {"id": "m-1", "task": G_MCQ, "question": "Which?", "answer": "B"}

HAND_CASES = [
  # Claims gate to 2.0 s (IoU 1) and 5.0 s (dog IoU 1 beats the cat); the third is
  # 4 s from every key frame: 0 when symmetric; one-sided it gates to 5.0 s, where its
  # box overlaps the first cat box by 1 px^2 of 800 and misses the second: 1/1600.
  (
    ST_TEXT,
    ST_RECORD,
    0.5,
    "symmetric",
    {"ans_acc": 1.0, "thk_temporal_point": _POINT, "thk_spatial": 2 / 3, "format": 1.0},
  ),
  (
    ST_TEXT,
    ST_RECORD,
    0.5,
    "one_sided",
    {
      "ans_acc": 1.0,
      "thk_temporal_point": _POINT,
      "thk_spatial": (2 + 1 / 1600) / 3,
      "format": 1.0,
    },
  ),
  # sigma 1 after 3/4 of training; a malformed box ([1,2,,3]) drops its claim; a
  # 3-number box counts with IoU 0; "1.2.3" zeroes the temporal term only.
  (
    "<think><obj>p</obj><box>[10,20,50,100]</box>at<t>2.0</t>s <obj>q</obj><box>[1,2,,3]"
    "</box>at<t>2.0</t>s <obj>r</obj><box>[1,2,3]</box>at<t>2.0</t>s <t>1.2.3</t>s</think>"
    "<answer>dog</answer>",
    ST_RECORD,
    0.9,
    "symmetric",
    {"ans_acc": 2 / 9, "thk_spatial": 0.5, "format": 1.0},
  ),  # R1 = RL = 1/3, R2 = 0
  (
    "<think><obj>p</obj><box>[10,20,50,100]</box>at<t>3.0</t>s</think><answer>x</answer>",
    ST_RECORD,
    0.99,
    "symmetric",
    {"thk_temporal_point": math.exp(-0.5), "thk_spatial": 1.0, "format": 1.0},
  ),
  # No answer block: thk_spatial needs both blocks, the temporal term only think.
  (
    "<think><obj>p</obj><box>[10,20,50,100]</box>at<t>2.0</t>s</think>",
    ST_RECORD,
    0.0,
    "symmetric",
    {"thk_temporal_point": 1.0},
  ),
  (
    "<think>from <t>1.0</t>s and <t>3.0</t>s</think><answer>From <t>3.0</t>s to "
    "<t>8.0</t>s</answer>",
    TG_RECORD,
    0.5,
    "symmetric",
    {"ans_tiou": 0.5, "thk_temporal_segment": 0.5, "format": 1.0},
  ),
  (
    "<think>at <t>3</t>s</think><answer>From <t>8</t>s to <t>3</t>s</answer>",
    TG_RECORD,
    0.5,
    "symmetric",
    {"thk_temporal_segment": 1.0, "format": 0.5},
  ),
  (
    "<think><t>4</t>s <t>5</t>s</think><answer>From <t>2</t>s to <t>4</t>s\n"
    "Correct Option: (C)</answer>",
    TG_MCQ_RECORD,
    0.5,
    "symmetric",
    {"ans_acc": 1.0, "ans_tiou": 0.5, "thk_temporal_segment": 1.0, "format": 1.0},
  ),
  (
    "<think>The <obj>cup</obj><box>[10,10,30,30]</box></think><answer><obj>cup</obj>"
    "<box>[10,10,50,30]</box></answer>",
    VQA_RECORD,
    0.5,
    "symmetric",
    {"ans_viou": 1.0, "thk_spatial": 0.5, "format": 1.0},
  ),
  (
    "<think>hmm</think><answer>[B]</answer>",
    MCQ_RECORD,
    0.5,
    "symmetric",
    {"ans_acc": 1.0, "format": 1.0},
  ),
  ("<think>hmm</think><answer>B)</answer>", MCQ_RECORD, 0.5, "symmetric", {"format": 1.0}),
  (
    "<think>a</think><think>b</think><answer>B</answer>",
    MCQ_RECORD,
    0.5,
    "symmetric",
    {"ans_acc": 1.0, "format": 1.0},
  ),
  ("<think>a<think></think><answer>B.</answer>", MCQ_RECORD, 0.5, "symmetric", {"ans_acc": 1.0}),
]


def expected_terms(partial):
  out = dict.fromkeys(TERMS, 0.0)
  out.update(partial)
  out["total"] = sum(out[k] for k in TERMS)
  return out


@pytest.mark.parametrize("text,record,fraction,gate,expected", HAND_CASES)
def test_reference_on_hand_computed_cases(text, record, fraction, gate, expected):
  got = reference_terms(text, record, fraction, gate)
  want = expected_terms(expected)
  assert got == pytest.approx(want, abs=1e-12), {k: (got[k], want[k]) for k in want}


def test_reference_rouge_is_rouge_score_with_stemming():
  got = reference_terms(
    "<answer>The dogs walked</answer>", {**ST_RECORD, "answer": "dog walks"}, 0.5
  )
  # Stemmed: "the dog walk" vs "dog walk": R1 F = 0.8, R2 F = 2/3, RL F = 0.8.
  assert got["ans_acc"] == pytest.approx((0.8 + 2 / 3 + 0.8) / 3)
