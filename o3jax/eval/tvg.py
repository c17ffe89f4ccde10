"""TVGBench temporal grounding scores (docs/reference.md section 6): per-item tIoU, R1@m, mIoU.

A results file is a list (JSON or JSONL) of records, one per clip:
  output   the model's full text (aliases: output_text, response, prediction)
  target   the gold [start, end] in seconds (aliases: timestamp, timestamps, gt)
  qid      optional id, echoed in the per-item scores
The predicted span is the last match of `(\\d+\\.?\\d*) (to|and) (\\d+\\.?\\d*)` anywhere
in the text (so an answer after the reasoning wins); no match scores tIoU 0, as does a
span that ends before it starts. R1@m counts items with tIoU strictly above m.
"""

from __future__ import annotations

import re

from o3jax.eval.iou import temporal_iou
from o3jax.grammar import is_number

R1_THRESHOLDS = (0.3, 0.5, 0.7)
TEXT_FIELDS = ("output", "output_text", "response", "prediction")
GOLD_FIELDS = ("target", "timestamp", "timestamps", "gt")

_SPAN = re.compile(r"(\d+\.?\d*) (to|and) (\d+\.?\d*)")


def parse_tvg_answer(text: str) -> tuple[float, float] | None:
  """(start, end) from the last `S to E` / `S and E` in the text; None if there is none."""
  matches = _SPAN.findall(text) if isinstance(text, str) else []
  if not matches:
    return None
  start, _, end = matches[-1]
  return float(start), float(end)


def _first_field(record: dict, index: int, fields: tuple[str, ...]):
  for field in fields:
    if field in record:
      return record[field]
  raise ValueError(f"TVGBench record {index}: none of the fields {', '.join(fields)} is present")


def score_item(record: dict, index: int) -> dict:
  if not isinstance(record, dict):
    raise ValueError(f"TVGBench record {index}: not a JSON object")
  gold = _first_field(record, index, GOLD_FIELDS)
  if not (isinstance(gold, (list, tuple)) and len(gold) == 2 and all(map(is_number, gold))):
    raise ValueError(f"TVGBench record {index}: gold span is not [start, end]: {gold!r}")
  if gold[1] < gold[0]:
    raise ValueError(f"TVGBench record {index}: gold span ends before it starts: {gold!r}")
  text = _first_field(record, index, TEXT_FIELDS)
  pred = parse_tvg_answer(text)
  return {"qid": record.get("qid", index), "pred": pred, "tiou": temporal_iou(gold, pred)}


def score_tvg(records: list[dict]) -> dict:
  """mIoU and R1@{0.3,0.5,0.7} (strict >) as fractions, plus the per-item scores."""
  if not records:
    raise ValueError("TVGBench results: no records")
  items = [score_item(record, i) for i, record in enumerate(records)]
  n = len(items)
  metrics = {
    "n": n,
    "n_unparsed": sum(item["pred"] is None for item in items),
    "miou": sum(item["tiou"] for item in items) / n,
  }
  for th in R1_THRESHOLDS:
    metrics[f"r1@{th}"] = sum(item["tiou"] > th for item in items) / n
  metrics["per_item"] = items
  return metrics
