"""Reward kernels against the plain-python SPEC reference (test_rewards_reference.py)."""

import json

import numpy as np
import pytest
from test_rewards_reference import (
  G_FREE,
  G_MCQ,
  HAND_CASES,
  ST,
  TERMS,
  TG,
  TG_MCQ,
  VQA,
  expected_terms,
  reference_terms,
)

from o3jax.grammar import TASKS
from o3jax.rewards import group_advantages, score

WORDS = (
  "the a person dog walks red vest shirt cup table runs holding left right "
  "woman man car opens door blue"
).split()
LETTERS = "ABCD"


def sentence(rng, n=None):
  return " ".join(rng.choice(WORDS, size=n or int(rng.integers(1, 10))))


def norm_box(rng):
  x1, y1 = rng.uniform(0, 0.8, size=2)
  x2, y2 = x1 + rng.uniform(0.01, 1 - x1), y1 + rng.uniform(0.01, 1 - y1)
  return [round(float(v), 3) for v in (x1, y1, x2, y2)]


def make_record(rng, task, i):
  record = {"id": f"{task}-{i}", "task": task, "question": "q?", "answer": sentence(rng)}
  if task == ST:
    n_frames = int(rng.choice(5, p=[0.05, 0.3, 0.3, 0.2, 0.15]))
    times = [round(float(rng.uniform(0, 30)), 1) for _ in range(n_frames)]
    if n_frames >= 2 and rng.random() < 0.3:  # same time twice, or a tie 1 s either side
      times[1] = times[0] + float(rng.choice([0.0, 2.0]))
    frames = [
      {"idx": 10 * k + int(rng.integers(10)), "time": t, "path": f"{k}.jpg"}
      for k, t in enumerate(times)
    ]
    items = {
      str(f["idx"]): {
        f"obj{o}": [norm_box(rng) for _ in range(int(rng.choice(3, p=[0.05, 0.7, 0.25])))]
        for o in range(int(rng.choice(4, p=[0.05, 0.45, 0.3, 0.2])))
      }
      for f in frames
    }
    record.update(
      key_frames=frames,
      key_items=items,
      frame_size=[int(rng.integers(200, 700)), int(rng.integers(150, 500))],
    )
  elif task in (TG, TG_MCQ):
    start = round(float(rng.uniform(0, 40)), 1)
    span = f"[{start}, {round(start + float(rng.uniform(0, 20)), 1)}]"
    record["answer"] = span if task == TG else f"{rng.choice(list(LETTERS))}\n{span}"
  elif task == VQA:
    image = [int(rng.integers(300, 1200)), int(rng.integers(300, 1200))]
    box = [round(v * image[k % 2]) for k, v in enumerate(norm_box(rng))]
    record.update(
      answer=f"<obj>cup</obj><box>{box}</box>",
      image_size=image,
      frame_size=[int(rng.integers(200, 700)), int(rng.integers(150, 500))],
    )
  elif task == G_MCQ:
    record["answer"] = str(rng.choice([" B", "C", "A ", "D"]))
  return record


def gold_pixel_boxes(record):
  if record["task"] == VQA:
    (iw, ih), (fw, fh) = record["image_size"], record["frame_size"]
    x1, y1, x2, y2 = json.loads(record["answer"].split("<box>")[1].split("</box>")[0])
    return [[x1 * fw / iw, y1 * fh / ih, x2 * fw / iw, y2 * fh / ih]]
  if record["task"] != ST:
    return []
  w, h = record["frame_size"]
  return [
    [b[0] * w, b[1] * h, b[2] * w, b[3] * h]
    for objects in record["key_items"].values()
    for boxes in objects.values()
    for b in boxes
  ]


BAD_BOXES = [
  "[1,2,,3]",
  "[1,2,3]",
  '["a",1,2,3]',
  "[true,1,2,3]",
  "[1e999,0,1,1]",
  "[NaN,1,2,3]",
  "[10,10,5,5]",
  "[[1,2],[3,4]]",
  "[1,\n2,3,4]",
  "[]",
  "[null,1,2,3]",
  "[1,2,3,4,5]",
  "[-5, -5, 400, 400]",
  "[0,0,1e308,1e308]",
]
BAD_TIMES = ["abc", "1.2.3", " 4.5 ", "nan", "inf", "1e1", "", "\u0663.\u0665", "-0.5", "1_0"]


def box_text(rng, golds):
  if rng.random() < 0.12:
    return str(rng.choice(BAD_BOXES))
  if golds and rng.random() < 0.75:
    box = np.asarray(golds[int(rng.integers(len(golds)))]) + rng.normal(
      0, float(rng.choice([0.5, 5, 30])), size=4
    )
  else:
    box = np.sort(rng.uniform(0, 500, size=(2, 2)), axis=0).ravel()[[0, 2, 1, 3]]
  if rng.random() < 0.5:
    return "[" + ",".join(str(int(round(v))) for v in box) + "]"
  return "[" + ", ".join(f"{v:.1f}" for v in box) + "]"


def time_text(rng, record):
  if rng.random() < 0.08:
    return str(rng.choice(BAD_TIMES))
  key_times = [f["time"] for f in record.get("key_frames", [])]
  if record["task"] in (TG, TG_MCQ):
    lo, hi = json.loads(record["answer"].split("\n")[-1])
    key_times = [lo, hi, (lo + hi) / 2]
  if key_times and rng.random() < 0.85:
    t = float(rng.choice(key_times)) + float(
      rng.choice([0, 0.3, -0.3, 0.9, -0.9, 1.0, -1.0, 1.1, -1.1, 2.5, -2.5, 7.0])
    )
  else:
    t = float(rng.uniform(0, 40))
  return str(rng.choice([f"{t:.1f}", f"{t:.2f}", f"{t:g}"]))


def claim_text(rng, record, golds, may_break):
  """A claim, and whether it was broken (its box run has no exit right after it)."""
  boxes = "".join(f"<box>{box_text(rng, golds)}</box>" for _ in range(int(rng.integers(1, 5))))
  at, close = "at", "</t>s"
  broken = may_break and rng.random() < 0.1
  if broken:
    at, close = str(rng.choice([" at ", "at ", ""])), str(rng.choice(["</t>s", "</t>"]))
  return f"<obj>{sentence(rng, 1)}</obj>{boxes}{at}<t>{time_text(rng, record)}{close}", broken


def think_text(rng, record):
  golds = gold_pixel_boxes(record)
  parts, broken = [], 0
  for _ in range(int(rng.integers(0, 10))):
    kind = rng.choice(["claim", "time", "text", "stray", "box"], p=[0.45, 0.2, 0.2, 0.05, 0.1])
    if kind == "claim":  # at most 2 broken: re.finditer is exponential in their boxes
      part, was_broken = claim_text(rng, record, golds, may_break=broken < 2)
      broken += was_broken
    elif kind == "time":
      part = f"at <t>{time_text(rng, record)}</t>s"
    elif kind == "stray":
      part = str(rng.choice(["<obj>", "</box>", "<t>", "</obj>", "<box>"]))
    elif kind == "box":
      part = f"<obj>cup</obj><box>{box_text(rng, golds)}</box>"
    else:
      part = sentence(rng)
    parts.append(part)
  return " ".join(parts)


def span_text(rng, record):
  lo, hi = json.loads(record["answer"].split("\n")[-1])
  s, e = (round(v + float(rng.normal(0, 3)), 1) for v in (lo, hi))
  s, e = max(s, 0.0), max(e, 0.0)
  if rng.random() < 0.15:
    s, e = e, s
  if rng.random() < 0.1:
    return f"From <t>{s}</t>s until <t>{e}</t>s"
  return f"From <t>{s:g}</t>s to <t>{e:g}</t>s"


def answer_text(rng, record):
  task, gold = record["task"], record["answer"]
  if task in (ST, G_FREE):
    return gold if rng.random() < 0.3 else sentence(rng)
  if task == TG:
    return span_text(rng, record)
  if task == TG_MCQ:
    letter = gold.split("\n")[0] if rng.random() < 0.6 else str(rng.choice(list(LETTERS)))
    form = str(rng.choice(["{}", "{}.", "({})", "[{}]", " {} ", "{})", "{} Correct Option: A"]))
    option = "" if rng.random() < 0.15 else "\nCorrect Option: " + form.format(letter)
    return span_text(rng, record) + option
  if task == VQA:
    return f"<obj>cup</obj><box>{box_text(rng, gold_pixel_boxes(record))}</box>"
  letter = gold.strip() if rng.random() < 0.6 else str(rng.choice(list(LETTERS)))
  return str(rng.choice(["{}", "{}.", "({})", "[{}]", "{})", "{}:"])).format(letter)


def make_completion(rng, record):
  think, answer = think_text(rng, record), answer_text(rng, record)
  layout = rng.choice(
    [
      "ok",
      "no_think",
      "no_answer",
      "unclosed_think",
      "double_think",
      "answer_first",
      "garbage",
      "empty",
      "unclosed_answer",
      "spaces",
    ],
    p=[0.6, 0.04, 0.05, 0.05, 0.05, 0.04, 0.05, 0.03, 0.04, 0.05],
  )
  return {
    "ok": f"<think>{think}</think>\n<answer>{answer}</answer>",
    "no_think": f"{think}\n<answer>{answer}</answer>",
    "no_answer": f"<think>{think}</think>\n{answer}",
    "unclosed_think": f"<think>{think}\n<answer>{answer}</answer>",
    "double_think": f"<think>{think}</think><think>x</think><answer>{answer}</answer>",
    "answer_first": f"<answer>{answer}</answer><think>{think}</think>",
    "garbage": sentence(rng, 30) + think[: int(rng.integers(len(think) + 1))],
    "empty": "",
    "unclosed_answer": f"<think>{think}</think><answer>{answer}",
    "spaces": f"<think>\n{think}\n</think>\n<answer>\n {answer} \n</answer>\n",
  }[layout]


def make_batch(seed, per_task):
  rng = np.random.default_rng(seed)
  records = [make_record(rng, task, i) for task in TASKS for i in range(per_task)]
  order = rng.permutation(len(records))
  records = [records[i] for i in order]
  return [make_completion(rng, r) for r in records], records


# Each chunk of the shuffled batch (every task mixed) is scored with one (gate, fraction).
SETTINGS = [
  ("symmetric", 0.05),
  ("one_sided", 0.05),
  ("symmetric", 0.6),
  ("one_sided", 0.6),
  ("symmetric", 0.9),
  ("one_sided", 1.0),
]


@pytest.fixture(scope="module")
def generated():
  return make_batch(seed=0, per_task=1000)


@pytest.mark.parametrize("chunk", range(len(SETTINGS)))
def test_kernels_match_reference_on_generated_completions(generated, chunk):
  completions, records = generated
  size = -(-len(records) // len(SETTINGS))
  texts = completions[chunk * size : (chunk + 1) * size]
  recs = records[chunk * size : (chunk + 1) * size]
  gate, fraction = SETTINGS[chunk]
  got = score(texts, recs, fraction, temporal_gate=gate)
  want = {
    k: np.array([reference_terms(t, r, fraction, gate)[k] for t, r in zip(texts, recs)])
    for k in TERMS + ("total",)
  }
  for k in want:
    err = np.abs(got[k] - want[k])
    worst = int(err.argmax())
    assert err.max() <= 1e-6, (k, got[k][worst], want[k][worst], texts[worst], recs[worst])
    assert np.isfinite(got[k]).all()


@pytest.mark.parametrize("gate", ["symmetric", "one_sided"])
def test_per_key_frame_rule_matches_reference_on_generated_completions(generated, gate):
  completions, records = generated
  pairs = [(t, r) for t, r in zip(completions, records) if r["task"] == ST][:600]
  got = score(
    [t for t, _ in pairs],
    [r for _, r in pairs],
    0.5,
    temporal_gate=gate,
    spatial_rule="per_key_frame",
  )["thk_spatial"]
  want = np.array(
    [reference_terms(t, r, 0.5, gate, "per_key_frame")["thk_spatial"] for t, r in pairs]
  )
  np.testing.assert_allclose(got, want, atol=1e-6)
  per_claim = np.array([reference_terms(t, r, 0.5, gate)["thk_spatial"] for t, r in pairs])
  assert (np.abs(want - per_claim) > 1e-6).sum() > 20  # the rule matters on this data


def test_per_key_frame_rule_on_hand_computed_cases():
  """Two key frames; a claim on each, one claim only, and a repeated claim."""
  record = {
    "id": "h",
    "task": ST,
    "answer": "a",
    "frame_size": [100, 100],
    "key_frames": [{"idx": 1, "time": 1.0}, {"idx": 3, "time": 3.0}],
    "key_items": {"1": {"o": [[0.1, 0.1, 0.3, 0.3]]}, "3": {"o": [[0.5, 0.5, 0.7, 0.7]]}},
  }
  claim = lambda box, t: f"<obj>o</obj><box>{box}</box>at<t>{t}</t>s. "  # noqa: E731
  wrap = lambda *claims: "<think>" + "".join(claims) + "</think><answer>a</answer>"  # noqa: E731
  exact, third = (
    claim("[10,10,30,30]", 1.0),
    claim("[60,50,80,70]", 3.0),
  )  # IoU 1 at 1 s; 1/3 at 3 s
  texts = [
    wrap(exact, third),
    wrap(exact),
    wrap(exact, exact, third),
    wrap(claim("[10,10,30,30]", 2.0)),
  ]
  rules = {
    rule: score(texts, [record] * 4, 0.5, spatial_rule=rule)["thk_spatial"]
    for rule in ("per_claim", "per_key_frame")
  }
  # per claim: (1 + 1/3) / 2; 1 / 1; (1 + 1 + 1/3) / 3; the claim at 2 s gates to 1 s (the first on a tie)
  np.testing.assert_allclose(rules["per_claim"], [2 / 3, 1, 7 / 9, 1], atol=1e-12)
  # per key frame: (1 + 1/3) / 2; 1 / max(1, 2); (1 + 1/3) / max(3, 2); 1 / max(1, 2)
  np.testing.assert_allclose(rules["per_key_frame"], [2 / 3, 1 / 2, 4 / 9, 1 / 2], atol=1e-12)


def test_generated_completions_cover_the_terms(generated):
  """Non-vacuous parity: each term takes zero, partial and full values on its tasks."""
  completions, records = generated
  texts, recs = completions[:1500], records[:1500]
  got = score(texts, recs, 0.5)
  tasks = np.array([r["task"] for r in recs])
  for term, task in [
    ("thk_spatial", ST),
    ("thk_spatial", VQA),
    ("thk_temporal_point", ST),
    ("thk_temporal_segment", TG),
    ("ans_tiou", TG_MCQ),
    ("ans_viou", VQA),
    ("ans_acc", ST),
    ("format", G_FREE),
  ]:
    values = got[term][tasks == task]
    assert (values == 0).mean() > 0.03, (term, task)
    assert (values > 0).mean() > 0.2, (term, task)
  partial = got["thk_spatial"][tasks == ST]
  assert ((partial > 0) & (partial < 1)).mean() > 0.2
  gated = score(texts, recs, 0.5, temporal_gate="one_sided")["thk_spatial"]
  assert (gated != got["thk_spatial"]).sum() > 10  # the gate rule matters on this data


@pytest.mark.parametrize("text,record,fraction,gate,expected", HAND_CASES)
def test_score_on_hand_computed_cases(text, record, fraction, gate, expected):
  got = score([text], [record], fraction, temporal_gate=gate)
  want = expected_terms(expected)
  for k, v in want.items():
    assert got[k][0] == pytest.approx(v, abs=1e-12), k


def test_score_keys_shapes_and_own_record():
  """Each completion is scored against its own record, also after a bad completion."""
  (text, record, *_), good = HAND_CASES[0], HAND_CASES[5]
  got = score(["<answer>", text, "garbage", good[0]], [record, record, good[1], good[1]], 0.5)
  assert list(got) == list(TERMS) + ["total"]
  assert all(v.shape == (4,) and v.dtype == np.float64 for v in got.values())
  assert got["total"][0] == 0.0
  assert got["total"][1] == pytest.approx(sum(expected_terms(HAND_CASES[0][4])[k] for k in TERMS))
  assert got["ans_tiou"][3] == pytest.approx(0.5)
  assert score([], [], 0.5)["total"].shape == (0,)


def test_score_rejects_bad_arguments():
  record = HAND_CASES[0][1]
  with pytest.raises(ValueError, match="temporal_gate"):
    score(["x"], [record], 0.5, temporal_gate="two_sided")
  with pytest.raises(ValueError, match="spatial_rule"):
    score(["x"], [record], 0.5, spatial_rule="per_object")
  with pytest.raises(ValueError, match="2 records"):
    score(["x"], [record, record], 0.5)
  with pytest.raises(TypeError, match="completion 0"):
    score([None], [record], 0.5)


def test_group_advantages_match_numpy():
  rng = np.random.default_rng(3)
  rewards = rng.uniform(0, 4, size=32).astype(np.float32)
  rewards[4:8] = 2.0  # a group with no spread: advantages 0
  got = np.asarray(group_advantages(rewards, 4))
  groups = rewards.astype(np.float64).reshape(-1, 4)
  want = (
    (groups - groups.mean(1, keepdims=True)) / (groups.std(1, ddof=1, keepdims=True) + 1e-4)
  ).ravel()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert np.all(got[4:8] == 0)
  with pytest.raises(ValueError, match="group_size"):
    group_advantages(rewards, 5)
