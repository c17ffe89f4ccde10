"""The reference's reading of V-STaR completions, and the results records it writes.

Parsing as marinero4972/Open-o3-Video `eval/test/test_vstar_multi_images.py` does it
(`extract_timestamps`, `extract_bounding_boxes`, `fix_incomplete_json`), judge replies as
`eval/test/eval_vstar.py` reads them; o3jax's code, the reference's rules:
- answer text: the content of the first closed `<answer>...</answer>`, stripped; the whole
  completion when there is none.
- when: the answer text with every `m:ss` turned into `<t>seconds</t>s`, then the numbers
  standing alone (`\\b\\d+(?:\\.\\d+)?\\b`): exactly two give [s, e], else [].
- where: the answer text's ```json fence, else the span from its first `[` or `{` to the
  last matching bracket kind; ' turned into "; read as JSON; a list of objects is merged
  into one; a list of [second, box] pairs becomes {str(second): box}; if reading fails,
  missing closing brackets (or opening ones) are added and it is read again. The
  reference keeps a repaired list as a list and nothing when all fails: neither can be
  scored, and o3jax writes {} for both, which both official scorers read as no boxes.
  Boxes stay in the coordinates the model wrote (the reference does not rescale them).
- judge reply: int(reply.strip()), above 3 -> 3, below 0 or not an integer -> -1.

A results record is the annotation record plus, per the reference: `answer_vqa` (answer
text), `answer_vqa_raw_output`, `answer_temporal` ([s, e] or []) with the completion in
`answer_temporal_pre`, `answer_spatial` ({"second": box}) with `answer_spatial_pre`, the
same for `_2` (`answer_temporal_pre_2`, `answer_spatial_pre_2`).
"""

from __future__ import annotations

import json
import re

import numpy as np

from o3jax.grammar import ANSWER
from o3jax.rewards.parse import block

ANSWER_FIELDS = (
  "answer_vqa",
  "answer_temporal",
  "answer_spatial",
  "answer_spatial_2",
  "answer_temporal_2",
)
RAW_FIELD = {
  "answer_vqa": "answer_vqa_raw_output",
  "answer_temporal": "answer_temporal_pre",
  "answer_spatial": "answer_spatial_pre",
  "answer_spatial_2": "answer_spatial_pre_2",
  "answer_temporal_2": "answer_temporal_pre_2",
}

# The reference's own patterns, kept apart from o3jax.grammar's on purpose: they read
# differently (no word boundaries around m:ss, numbers standing alone, a fence only when
# tagged json) and the results must be what the reference would have written.
_MMSS = re.compile(r"(\d+:\d+)")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
_FENCED_JSON = re.compile(r"```json\s*\n(\[.*?\]|\{.*?\})\s*\n```", re.DOTALL)
_BARE_JSON = re.compile(r"(\[[\s\S]*\]|\{[\s\S]*\})", re.DOTALL)


def answer_text(completion: str) -> str:
  """The first closed <answer> block's content, stripped; else the completion as is.

  The reference's reading (`<answer>(.*?)</answer>`, DOTALL): the rewards' closed block
  (rewards.parse.block), not grammar.answer_block, which also takes an unclosed block
  and strips the completion when there is none."""
  inner = block(completion, ANSWER)
  return completion if inner is None else inner.strip()


def extract_span(completion: str) -> list[float]:
  """[start, end] seconds, or [] when the answer does not hold exactly two numbers."""
  text = answer_text(completion)
  for stamp in _MMSS.findall(text):
    minutes, seconds = (int(part) for part in stamp.split(":"))
    text = text.replace(stamp, f"<t>{minutes * 60 + seconds}</t>s")
  numbers = _NUMBER.findall(text)
  return [float(numbers[0]), float(numbers[1])] if len(numbers) == 2 else []


def _add_missing_brackets(text: str) -> str:
  """Closing brackets appended (or opening ones prepended) until each kind balances."""
  for opening, closing in (("[", "]"), ("{", "}")):
    surplus = text.count(opening) - text.count(closing)
    text = text + closing * surplus if surplus > 0 else opening * -surplus + text
  return text


def extract_boxes(completion: str):
  """The reference's reading of a where-completion: a dict, a list (repaired text that is
  a list) or None (see the module docstring)."""
  text = answer_text(completion)
  found = _FENCED_JSON.search(text) or _BARE_JSON.search(text)
  if not found:
    return None
  text = found.group(1).strip().replace("'", '"')
  try:
    boxes = json.loads(text)
    if isinstance(boxes, list) and all(isinstance(item, dict) for item in boxes):
      merged = {}
      for item in boxes:
        merged.update(item)
      boxes = merged
    if isinstance(boxes, list):
      return {str(pair[0]): pair[1] for pair in boxes}
    return dict(boxes)
  except Exception:  # the reference's catch-all: bad JSON, or a list that is not pairs
    try:
      boxes = json.loads(_add_missing_brackets(text))
    except Exception:
      return None
    return list(boxes) if isinstance(boxes, list) else dict(boxes)


def spatial_answer(completion: str) -> dict:
  """`answer_spatial` of a results file: the boxes read as a dict, else {}."""
  boxes = extract_boxes(completion)
  return boxes if isinstance(boxes, dict) else {}


def answer_fields(field: str, completion: str) -> dict:
  """The results-record entries of one answer (see the module docstring)."""
  if field not in RAW_FIELD:
    raise ValueError(f"unknown V-STaR answer field {field!r}; one of {ANSWER_FIELDS}")
  if field == "answer_vqa":
    value = answer_text(completion)
  elif field.startswith("answer_temporal"):
    value = extract_span(completion)
  else:
    value = spatial_answer(completion)
  return {field: value, RAW_FIELD[field]: completion}


def parse_judge_reply(reply: str) -> int:
  """A judge reply read as the reference reads it: 0..3, -1 when not an integer."""
  try:
    score = int(str(reply).strip())
  except ValueError:
    return -1
  return -1 if score < 0 else min(score, 3)


def frame_indices(total_frames: int, video_fps: float, fps: float, max_frames: int) -> list[int]:
  """Frames the reference shows (`extract_frames_from_video`): every int(video_fps / fps)-th
  frame from 0, at most `max_frames`; when int(duration * fps) exceeds `max_frames`,
  `max_frames` frames spread evenly (np.linspace over [0, total - 1], truncated)."""
  if int(total_frames / video_fps * fps) > max_frames:
    return np.linspace(0, total_frames - 1, max_frames, dtype=int).tolist()
  return list(range(0, total_frames, max(1, int(video_fps / fps))))[:max_frames]


def results_record(record: dict, completions: dict[str, str]) -> dict:
  """The annotation record with the entries of each answered field."""
  out = dict(record)
  for field in ANSWER_FIELDS:
    if field in completions:
      out.update(answer_fields(field, completions[field]))
  return out


def results_from_completions(
  records: list, lines: list, strict: bool = False
) -> tuple[list[dict], list[str]]:
  """(results records in annotation order, errors) from completion lines
  {"index": i, "field": one of ANSWER_FIELDS, "completion": text}, i indexing `records`.

  A bad line (wrong index, field or completion) is reported and skipped, or raises
  ValueError when strict; a record without completions is kept as annotated (it scores 0)."""
  by_index: dict[int, dict[str, str]] = {}
  errors = []
  for n, line in enumerate(lines, 1):
    problem = None
    if not isinstance(line, dict):
      problem = "is not a JSON object"
    elif not (isinstance(line.get("index"), int) and 0 <= line["index"] < len(records)):
      problem = f"field 'index' is not a record index 0..{len(records) - 1}: {line.get('index')!r}"
    elif line.get("field") not in ANSWER_FIELDS:
      problem = f"field 'field' is not one of {ANSWER_FIELDS}: {line.get('field')!r}"
    elif not isinstance(line.get("completion"), str):
      problem = "field 'completion' is not a string"
    elif line["field"] in by_index.get(line["index"], {}):
      problem = f"repeats record {line['index']} {line['field']}"
    if problem:
      if strict:
        raise ValueError(f"completion line {n}: {problem}")
      errors.append(f"completion line {n}: {problem}")
      continue
    by_index.setdefault(line["index"], {})[line["field"]] = line["completion"]
  results = [
    results_record(record, by_index.get(i, {})) if isinstance(record, dict) else record
    for i, record in enumerate(records)
  ]
  return results, errors
