"""V-STaR scoring (docs/reference.md section 6): what / when / where over two reasoning chains.

A results file is the list of V-STaR annotation records, each extended with the model's
five answers:
  answer_vqa         what: free-form text (an <answer> block in it is taken)
  answer_temporal    chain 1 when: [s, e] seconds, or text holding it
  answer_spatial     chain 1 where: {second: [x1, y1, x2, y2]} or text holding that JSON
  answer_spatial_2   chain 2 where (told how many boxes): same form
  answer_temporal_2  chain 2 when (given the gold boxes): same form as chain 1
  vqa_score          optional 0-3 judge score; when present it is used as is
Annotation fields read: vid, fps, frame_count, question, answer, domain, timestamps,
bboxes (a list of {timestamp, frame_index, xmin, ymin, xmax, ymax}; the upstream form
[{"<timestamp>_<frame_index>": {xmin, ...}}] is accepted too).

Which samples count where (default): every record counts in every metric; a missing
or unparseable answer scores 0. Acc = correct / N, each mean is over all N.
`reference_skip_empty_vqa=True` reproduces the reference script instead: a record with
an empty answer_vqa is dropped from every mean, yet the overall Acc still divides by all
N (breakdown Acc divides by the group's kept records).

Parsing (never raises on model output; anything unreadable scores 0):
- when: a list of two numbers; or text (its <answer> block if any): first the grounded
  `<t>S</t>s to <t>E</t>s`, else mm:ss converted to seconds and the text must hold
  exactly two numbers. end < start scores 0. A missing or empty ([]) answer is read
  from the completion in answer_temporal_pre[_2] by the reference's rule
  (vstar_protocol.extract_span), as Open-o3's eval_vstar.py does.
- where: a dict, or text (its <answer> block, a ```json fence, the outermost {..} or
  [..]) read as JSON, then with ' -> ", then as a python literal, then with missing
  closing brackets added. A list of dicts is merged; a list of [second, box] pairs is
  turned into a dict. Keys are whole seconds: "3", 3, "3.0" and "3s" all mean second 3;
  other keys (such as "3.5") are ignored. A value is one box or a list of boxes (the
  best IoU counts); anything else has IoU 0.
- gold boxes are keyed by the whole second holding their timestamp (floor).

Duration breakdown bins, those of the upstream V-STaR scoring script, with duration =
round(frame_count / fps, 2): short <= 60 s < medium <= 180 s < long. (The Open-o3
reference script bins with < 60 and < 180: it differs only at exactly 60 s and 180 s.)

The what-judge: a callable judge(question, gold, candidate) -> 0..3 (int, or text that
holds it; the reference judge's prompts are in vstar_reference.py). `offline_judge` is a
stand-in, not the benchmark's judge (a judge LLM): ROUGE-L F-measure (rouge-score,
stemming) of candidate against gold, scored 3 if F >= 0.6, 2 if F >= 0.4, 1 if
F >= 0.2, else 0. Judge text is read as an integer; if that fails, the first run of
digits; a value outside 0..3 or no digits is unreadable and counts as score 0 (not
correct), as in the reference.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Callable

from o3jax.eval import vstar_protocol
from o3jax.eval.iou import box_iou, temporal_iou
from o3jax.grammar import SPAN_RE, answer_block, is_number

R1_THRESHOLDS = (0.3, 0.5, 0.7)
AP_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
DURATION_BINS = (("short", 60.0), ("medium", 180.0), ("long", math.inf))

Judge = Callable[[str, str, str], object]


# ---------------------------------------------------------------- record helpers


def _record_error(index: int | None, record, field: str, why: str) -> ValueError:
  vid = record.get("vid", "?") if isinstance(record, dict) else "?"
  where = "V-STaR record" + (f" {index}" if index is not None else "")
  return ValueError(f"{where} (vid {vid}): field '{field}' {why}")


def record_field(record: dict, field: str, index: int | None = None):
  """record[field], or a ValueError naming the record and the field."""
  if field not in record or record[field] is None:
    raise _record_error(index, record, field, "is missing")
  return record[field]


def video_duration(record: dict) -> float:
  """Video length in seconds, rounded to 0.01 as in V-STaR."""
  return round(record_field(record, "frame_count") / record_field(record, "fps"), 2)


def duration_bin(seconds: float) -> str:
  return next(name for name, upper in DURATION_BINS if seconds <= upper)


def span_seconds(timestamps) -> list[int]:
  """Whole seconds in [ceil(s), floor(e)]; the nearest one to the middle if none."""
  s, e = timestamps
  seconds = list(range(math.ceil(s), math.floor(e) + 1))
  return seconds or [int(round((s + e) / 2))]


def gold_boxes(record: dict, index: int | None = None) -> list[tuple[int, list[float]]]:
  """(whole second, [xmin, ymin, xmax, ymax]) for each annotated box, in file order."""
  entries = record_field(record, "bboxes", index)
  if not isinstance(entries, list):
    raise _record_error(index, record, "bboxes", "is not a list")
  out = []
  for j, entry in enumerate(entries):
    if not isinstance(entry, dict):
      raise _record_error(index, record, f"bboxes[{j}]", "is not an object")
    if "xmin" in entry:  # {timestamp, frame_index, xmin, ...}
      stamp, coords = entry.get("timestamp"), entry
    elif len(entry) == 1:  # upstream {"<timestamp>_<frame_index>": {xmin, ...}}
      ((key, coords),) = entry.items()
      try:
        stamp = float(str(key).split("_")[0])
      except ValueError:
        raise _record_error(index, record, f"bboxes[{j}]", f"has key {key!r}, not '<t>_<frame>'")
    else:
      raise _record_error(index, record, f"bboxes[{j}]", "has no xmin/ymin/xmax/ymax")
    coords = coords if isinstance(coords, dict) else {}
    box = [coords.get(k) for k in ("xmin", "ymin", "xmax", "ymax")]
    if not all(map(is_number, box)):
      raise _record_error(index, record, f"bboxes[{j}]", f"has a bad box {box}")
    if not is_number(stamp):
      raise _record_error(index, record, f"bboxes[{j}].timestamp", f"is not a number: {stamp!r}")
    out.append((math.floor(stamp), [float(v) for v in box]))
  return out


def gold_span(record: dict, index: int | None = None) -> tuple[float, float]:
  ts = record_field(record, "timestamps", index)
  if not (isinstance(ts, (list, tuple)) and len(ts) == 2 and all(map(is_number, ts))):
    raise _record_error(index, record, "timestamps", f"is not [start, end]: {ts!r}")
  if ts[1] < ts[0]:
    raise _record_error(index, record, "timestamps", f"ends before it starts: {ts!r}")
  return float(ts[0]), float(ts[1])


def _check_video(record: dict, index: int) -> None:
  for field in ("fps", "frame_count"):
    value = record_field(record, field, index)
    if not is_number(value) or value <= 0:
      raise _record_error(index, record, field, f"is not a positive number: {value!r}")


# ---------------------------------------------------------------- what-judge


def parse_judge_score(raw) -> int | None:
  """A judge's 0..3 score, or None when unreadable."""
  if isinstance(raw, bool):
    return None
  if isinstance(raw, (int, float)):
    return int(raw) if math.isfinite(raw) and raw == int(raw) and 0 <= raw <= 3 else None
  if not isinstance(raw, str):
    return None
  text = raw.strip()
  try:
    value = int(text)
  except ValueError:
    found = re.search(r"\d+", text)
    if not found or len(found.group()) > 3:
      return None
    value = int(found.group())
  return value if 0 <= value <= 3 else None


_ROUGE = None


def offline_judge(question: str, gold: str, candidate: str) -> int:
  """Stand-in judge (not the benchmark's): ROUGE-L F thresholded at 0.2/0.4/0.6."""
  global _ROUGE
  if _ROUGE is None:
    from rouge_score import rouge_scorer

    _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
  f = _ROUGE.score(str(gold), str(candidate))["rougeL"].fmeasure
  return 3 if f >= 0.6 else 2 if f >= 0.4 else 1 if f >= 0.2 else 0


# ---------------------------------------------------------------- answer parsing

_MMSS = re.compile(r"\b(\d+):(\d{1,2})\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_SECOND_KEY = re.compile(r"^\s*(\d+)(?:\.0*)?\s*s?\s*$")


def parse_span(pred) -> tuple[float, float] | None:
  """A predicted [s, e] span from a list or from answer text; None if unreadable."""
  if isinstance(pred, (list, tuple)):
    if len(pred) == 2 and all(map(is_number, pred)):
      return float(pred[0]), float(pred[1])
    return None
  if not isinstance(pred, str):
    return None
  text = answer_block(pred)
  grounded = SPAN_RE.search(text)
  if grounded:
    return float(grounded.group(1)), float(grounded.group(2))
  text = _MMSS.sub(lambda m: str(int(m.group(1)) * 60 + int(m.group(2))), text)
  numbers = _NUMBER.findall(text)
  return (float(numbers[0]), float(numbers[1])) if len(numbers) == 2 else None


def _close_brackets(text: str) -> str:
  """Append the closing brackets an unfinished JSON text is missing."""
  stack = []
  for ch in text:
    if ch in "[{":
      stack.append("]" if ch == "[" else "}")
    elif ch in "]}" and stack and stack[-1] == ch:
      stack.pop()
  return text + "".join(reversed(stack))


def _load_structure(text: str):
  text = answer_block(text)
  fenced = _FENCE.search(text)
  if fenced:
    text = fenced.group(1)
  starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
  if not starts:
    return None
  text = text[min(starts) :]
  end = max(text.rfind("}"), text.rfind("]"))
  # as is; then the whole rest closed (cut-off output); then closed at the last bracket
  candidates = [text[: end + 1], _close_brackets(text), _close_brackets(text[: end + 1])]
  for candidate in candidates:
    for attempt in (json.loads, lambda s: json.loads(s.replace("'", '"')), ast.literal_eval):
      try:
        return attempt(candidate)
      except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        continue
  return None


def _candidate_boxes(value) -> list:
  if isinstance(value, (list, tuple)):
    if len(value) == 4 and all(map(is_number, value)):
      return [list(value)]
    return [v for v in value if isinstance(v, (list, tuple))]
  return []


def parse_boxes(pred) -> dict[int, list]:
  """Predicted boxes keyed by whole second: {second: [box, ...]}; {} if unreadable."""
  if isinstance(pred, str):
    pred = _load_structure(pred)
  if isinstance(pred, list):
    if all(isinstance(item, dict) for item in pred):
      merged = {}
      for item in pred:
        merged.update(item)
      pred = merged
    else:
      pred = {
        item[0]: item[1]
        for item in pred
        if isinstance(item, (list, tuple))
        and len(item) == 2
        and isinstance(item[0], (str, int, float))
      }
  if not isinstance(pred, dict):
    return {}
  out = {}
  for key, value in pred.items():
    if is_number(key):
      second = int(key) if key == int(key) else None
    else:
      found = _SECOND_KEY.match(str(key))
      second = int(found.group(1)) if found else None
    if second is not None:
      out[second] = _candidate_boxes(value)
  return out


# ---------------------------------------------------------------- per sample


def spatial_ious(gold: list[tuple[int, list[float]]], pred) -> list[float]:
  """Per gold box: best IoU of the predicted boxes for its second (0 if none)."""
  boxes = parse_boxes(pred)
  return [
    max((box_iou(box, p) for p in boxes.get(second, [])), default=0.0) for second, box in gold
  ]


def _text(value) -> str:
  return value if isinstance(value, str) else ""


def score_sample(record: dict, index: int, judge: Judge | None) -> dict:
  """The per-sample quantities all V-STaR metrics are means of."""
  if not isinstance(record, dict):
    raise ValueError(f"V-STaR record {index}: not a JSON object")
  _check_video(record, index)
  span = gold_span(record, index)
  gold = gold_boxes(record, index)
  candidate = answer_block(_text(record.get("answer_vqa")))
  if record.get("vqa_score") is not None:
    raw = record["vqa_score"]
  elif candidate and judge is None:
    raise _record_error(index, record, "vqa_score", "is missing and no judge was given")
  elif candidate:
    question = record_field(record, "question", index)
    raw = judge(str(question), str(record_field(record, "answer", index)), candidate)
  else:
    raw = 0
  score = parse_judge_score(raw)
  sample = {
    "vid": record.get("vid"),
    "domain": str(record.get("domain") or "unknown"),
    "duration": duration_bin(video_duration(record)),
    "has_answer_vqa": bool(record.get("answer_vqa")),  # the reference's test
    "vqa_score": score,
    "correct": score is not None and score >= 2,
  }
  for chain, suffix in ((1, ""), (2, "_2")):
    pred = record.get("answer_temporal" + suffix)
    if pred is None or pred == []:  # re-read the completion, as Open-o3's eval_vstar.py does
      raw = record.get("answer_temporal_pre" + suffix)
      pred = vstar_protocol.extract_span(raw) if isinstance(raw, str) else None
    sample[f"tiou_{chain}"] = temporal_iou(span, parse_span(pred))
    sample[f"ious_{chain}"] = spatial_ious(gold, record.get("answer_spatial" + suffix))
  return sample


# ---------------------------------------------------------------- aggregation


def _mean(values) -> float:
  values = list(values)
  return sum(values) / len(values) if values else 0.0


def _neg_log1m(x: float) -> float:
  return -math.log(1.0 - x) if x < 1.0 else math.inf


def combine(acc: float, m_tiou_1: float, m_tiou_2: float, m_viou_1: float, m_viou_2: float) -> dict:
  """AM_k, LGM_k and their chain means from the five component scores (fractions)."""
  out = {}
  for k, (t, v) in ((1, (m_tiou_1, m_viou_1)), (2, (m_tiou_2, m_viou_2))):
    out[f"am_{k}"] = (acc + t + v) / 3
    out[f"lgm_{k}"] = (_neg_log1m(acc) + _neg_log1m(t) + _neg_log1m(v)) / 3
  out["mam"] = (out["am_1"] + out["am_2"]) / 2
  out["mlgm"] = (out["lgm_1"] + out["lgm_2"]) / 2
  return out


def summarize(samples: list[dict], acc_denominator: int | None = None) -> dict:
  """All V-STaR metrics (fractions) over a list of per-sample scores."""
  n = len(samples)
  denominator = acc_denominator if acc_denominator is not None else n
  correct = sum(s["correct"] for s in samples)
  metrics = {
    "n": n,
    "acc": correct / denominator if denominator else 0.0,
    "n_unreadable_score": sum(s["vqa_score"] is None for s in samples),
  }
  for k in (1, 2):
    tious = [s[f"tiou_{k}"] for s in samples]
    metrics[f"m_tiou_{k}"] = _mean(tious)
    for th in R1_THRESHOLDS:
      metrics[f"r1@{th}_{k}"] = _mean(t >= th for t in tious)
    metrics[f"m_viou_{k}"] = _mean(_mean(s[f"ious_{k}"]) for s in samples)
    for th in AP_THRESHOLDS:
      metrics[f"ap@{th}_{k}"] = _mean(_mean(i >= th for i in s[f"ious_{k}"]) for s in samples)
  metrics.update(
    combine(
      metrics["acc"],
      metrics["m_tiou_1"],
      metrics["m_tiou_2"],
      metrics["m_viou_1"],
      metrics["m_viou_2"],
    )
  )
  return metrics


def score_vstar(
  records: list[dict],
  judge: Judge | None = offline_judge,
  reference_skip_empty_vqa: bool = False,
  judge_name: str | None = None,
) -> dict:
  """Score a V-STaR results list: overall metrics, duration and domain breakdowns,
  and the per-sample scores. judge=None: every non-empty answer_vqa needs vqa_score
  (`judge_name` then says which judge wrote them, for the metrics header)."""
  if not records:
    raise ValueError("V-STaR results: no records")
  samples = [score_sample(record, i, judge) for i, record in enumerate(records)]
  kept = [s for s in samples if s["has_answer_vqa"]] if reference_skip_empty_vqa else samples
  metrics = summarize(kept, acc_denominator=len(samples))
  for key, field in (("by_duration", "duration"), ("by_domain", "domain")):
    groups: dict[str, list] = {}
    for s in kept:
      groups.setdefault(s[field], []).append(s)
    metrics[key] = {name: summarize(group) for name, group in sorted(groups.items())}
  if judge_name is None:
    judge_name = (
      "vqa_score only" if judge is None else getattr(judge, "__name__", type(judge).__name__)
    )
  metrics["settings"] = {
    "duration_bins": "short <= 60 s < medium <= 180 s < long",
    "reference_skip_empty_vqa": reference_skip_empty_vqa,
    "empty_answer_rule": (
      "reference: a record with an empty answer_vqa is left out of every mean but Acc's denominator"
      if reference_skip_empty_vqa
      else "o3jax: every record counts everywhere; an empty or unreadable answer scores 0"
    ),
    "judge": judge_name,
  }
  metrics["per_sample"] = [
    {
      "vid": s["vid"],
      "vqa_score": s["vqa_score"],
      "tiou_1": s["tiou_1"],
      "tiou_2": s["tiou_2"],
      "viou_1": _mean(s["ious_1"]),
      "viou_2": _mean(s["ious_2"]),
    }
    for s in samples
  ]
  return metrics


def reported_row(metrics: dict) -> dict:
  """The paper's V-STaR row (x100, unrounded): Acc, tIoU 1/2, vIoU 1/2, mAM, mLGM."""
  keys = ("acc", "m_tiou_1", "m_tiou_2", "m_viou_1", "m_viou_2", "mam", "mlgm")
  return {k: 100 * metrics[k] for k in keys}
