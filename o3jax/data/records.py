"""STGR-SFT / STGR-RL records (docs/reference.md section 3): loading, validation, targets, reward metadata.

A record is a dict: `id, task, source, question, answer`, `video_path` (video tasks) or
`image_path` + `image_size` [W, H] (visual QA), SFT adds `reasoning_process`;
spatio-temporal records carry `key_frames` [{idx, time, path}] and `key_items`
{str(idx): {name: [[x1, y1, x2, y2], ...]}} with boxes normalised to [0, 1]; a key frame
without a `path` (an o3jax extension) is reward gold only and is not shown. Paths are
relative to a root directory (by default the JSON file's directory).

Every problem is a `RecordError` naming the record id and the field.
"""

import ast
import json
import math
import os
from typing import Any

from o3jax import grammar
from o3jax.grammar import (
  IMAGE_TASKS,
  RELEVANCE_RATING,
  SFT_ONLY_TASKS,
  SPATIO_TEMPORAL,
  TASKS,
  TEMPORAL_TASKS,
)
from o3jax.processing.prompts import STAGES

RATINGS = ("0", "1", "2")

Record = dict[str, Any]


class RecordError(ValueError):
  """A bad record: which one, which field, what is wrong."""

  def __init__(self, record_id: str, field: str, message: str):
    super().__init__(f"record {record_id!r}: field {field!r}: {message}")
    self.record_id, self.field, self.message = record_id, field, message

  def __reduce__(self):  # keeps the fields when the error crosses a process boundary
    return RecordError, (self.record_id, self.field, self.message)


def record_id(record: Any, index: int | None = None) -> str:
  if isinstance(record, dict) and "id" in record:
    return str(record["id"])
  return f"#{index}" if index is not None else "?"


def load_records(path: str) -> list[Record]:
  """The records of a STGR JSON file (a list of objects). Records are checked later,
  one by one, so that a bad one can be skipped; a file that is not such a list raises."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except FileNotFoundError:
    raise ValueError(f"{path}: file not found") from None
  except json.JSONDecodeError as e:
    raise ValueError(
      f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}"
    ) from None
  if not isinstance(data, list):
    raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
  return data


# --------------------------------------------------------------------------- validation


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_box(rid: str, field: str, box: Any, width: float = 1.0, height: float = 1.0) -> None:
  """A box [x1, y1, x2, y2] inside [0, W] x [0, H] with x2 > x1 and y2 > y1."""
  if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_number(v) for v in box)):
    raise RecordError(rid, field, f"a box must be 4 numbers [x1, y1, x2, y2], got {box!r}")
  x1, y1, x2, y2 = box
  where = "[0,1]" if (width, height) == (1.0, 1.0) else f"the {width}x{height} image"
  if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
    raise RecordError(rid, field, f"box {list(box)} is outside {where}")
  if x2 <= x1 or y2 <= y1:
    raise RecordError(rid, field, f"box {list(box)} has x2 <= x1 or y2 <= y1")


def _check_text_boxes(
  rid: str, field: str, text: str, width: float = 1.0, height: float = 1.0
) -> None:
  for inside in grammar.find_boxes(text):
    try:
      box = grammar.parse_box(inside)
    except ValueError as e:
      raise RecordError(rid, field, str(e)) from None
    _check_box(rid, field, box, width, height)


def parse_segment(answer: str) -> tuple[float, float]:
  """(start, end) of a temporal answer: `[s, e]` or `From <t>S</t>s to <t>E</t>s`."""
  match = grammar.SPAN_RE.search(answer)
  if match:
    return float(match.group(1)), float(match.group(2))
  value = ast.literal_eval(answer.strip())
  if not (
    isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
  ):
    raise ValueError(f"expected [start, end], got {answer!r}")
  return float(value[0]), float(value[1])


def temporal_segment_text(record: Record) -> str:
  """The part of a temporal answer that holds the segment (`B\\n[s, e]` -> `[s, e]`)."""
  answer = record["answer"]
  if record["task"] == "temporal QA (MCQ)" and "<t>" not in answer:
    return answer.split("\n", 1)[1] if "\n" in answer else answer
  return answer


def _check_path(rid: str, field: str, root: str, value: Any) -> None:
  if not isinstance(value, str) or not value:
    raise RecordError(rid, field, f"expected a file path, got {value!r}")
  path = os.path.join(root, value)
  if not os.path.isfile(path):
    raise RecordError(rid, field, f"missing file: {path} does not exist")


def check_record(
  record: Any, *, stage: str, root: str = ".", check_files: bool = True, index: int | None = None
) -> None:
  """Raises RecordError at the first problem; reading the media is checked when it is decoded."""
  if stage not in STAGES:
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
  rid = record_id(record, index)
  if not isinstance(record, dict):
    raise RecordError(rid, "record", f"expected a JSON object, got {type(record).__name__}")
  task = record.get("task")
  if task not in TASKS + SFT_ONLY_TASKS:
    raise RecordError(
      rid, "task", f"unknown task {task!r}; expected one of {list(TASKS + SFT_ONLY_TASKS)}"
    )
  if task in SFT_ONLY_TASKS and stage != "sft":
    raise RecordError(rid, "task", f"{task!r} records are for SFT only (they have no reward)")
  reasoning = ("reasoning_process",) if stage == "sft" and task != RELEVANCE_RATING else ()
  for field in ("question", "answer") + reasoning:
    if not isinstance(record.get(field), str):
      raise RecordError(rid, field, f"missing or not a string: {record.get(field)!r}")
  if not record["question"].strip():
    raise RecordError(rid, "question", "empty question")

  if task in IMAGE_TASKS:
    if "image_path" not in record:
      raise RecordError(rid, "image_path", "missing image_path (visual QA needs an image)")
    size = record.get("image_size")
    if not (
      isinstance(size, (list, tuple))
      and len(size) == 2
      and all(_is_number(v) and v > 0 for v in size)
    ):
      raise RecordError(rid, "image_size", f"expected [W, H] of positive numbers, got {size!r}")
    width, height = size
    if task == RELEVANCE_RATING:
      if record["answer"].strip() not in RATINGS:
        raise RecordError(
          rid, "answer", f"a relevance rating is one of {list(RATINGS)}, got {record['answer']!r}"
        )
    else:
      for field in ("answer",) + reasoning:
        _check_text_boxes(rid, field, record[field], width, height)
      if not grammar.find_boxes(record["answer"]):
        raise RecordError(rid, "answer", "a visual QA answer needs <obj>..</obj><box>[..]</box>")
    if check_files:
      _check_path(rid, "image_path", root, record["image_path"])
    return

  if "video_path" not in record:
    raise RecordError(rid, "video_path", "missing video_path")
  if stage == "sft":
    _check_text_boxes(rid, "reasoning_process", record["reasoning_process"])
  _check_text_boxes(rid, "answer", record["answer"])
  if task in TEMPORAL_TASKS:
    try:
      start, end = parse_segment(temporal_segment_text(record))
    except (ValueError, SyntaxError) as e:
      raise RecordError(rid, "answer", f"cannot read the time segment: {e}") from None
    if start < 0:
      raise RecordError(rid, "answer", f"segment starts before 0: [{start}, {end}]")
    if end < start:
      raise RecordError(rid, "answer", f"segment ends before it starts: [{start}, {end}]")
  _check_key_frames(rid, record, root, check_files, required=task == SPATIO_TEMPORAL)
  if check_files:
    _check_path(rid, "video_path", root, record["video_path"])


def _check_key_frames(
  rid: str, record: Record, root: str, check_files: bool, required: bool
) -> None:
  key_frames = record.get("key_frames") or []
  if required and not key_frames:
    raise RecordError(rid, "key_frames", "a spatio-temporal record needs at least one key frame")
  if not isinstance(key_frames, list):
    raise RecordError(rid, "key_frames", f"expected a list, got {type(key_frames).__name__}")
  for i, kf in enumerate(key_frames):
    field = f"key_frames[{i}]"
    if not isinstance(kf, dict):
      raise RecordError(rid, field, f"expected an object, got {kf!r}")
    if not (isinstance(kf.get("idx"), int) and kf["idx"] >= 0):
      raise RecordError(rid, field + ".idx", f"expected a frame index >= 0, got {kf.get('idx')!r}")
    if not (_is_number(kf.get("time")) and kf["time"] >= 0):
      raise RecordError(rid, field + ".time", f"expected seconds >= 0, got {kf.get('time')!r}")
    # A key frame without a path is reward gold only: it is not shown to the model.
    if check_files and required and "path" in kf:
      _check_path(rid, field + ".path", root, kf["path"])
  key_items = record.get("key_items") or {}
  if not isinstance(key_items, dict):
    raise RecordError(rid, "key_items", f"expected an object, got {type(key_items).__name__}")
  for idx, items in key_items.items():
    if items is None:  # the reference drops None entries
      continue
    if not isinstance(items, dict):
      raise RecordError(rid, f"key_items[{idx}]", f"expected {{object: boxes}}, got {items!r}")
    for name, boxes in items.items():
      if boxes is None:
        continue
      if not isinstance(boxes, list):
        raise RecordError(
          rid, f"key_items[{idx}][{name}]", f"expected a list of boxes, got {boxes!r}"
        )
      for j, box in enumerate(boxes):
        _check_box(rid, f"key_items[{idx}][{name}][{j}]", box)


# --------------------------------------------------------------------------- targets


def sft_target(record: Record, frame_size: tuple[int, int]) -> str:
  """`<think>` + reasoning + `</think>\\n<answer>` + answer + `</answer>`, boxes in pixels of
  the processed (W, H) frame (visual QA: rescaled from the original image size); a
  relevance rating is its digit alone."""
  if record["task"] == RELEVANCE_RATING:
    return record["answer"].strip()
  text = (
    "<think>" + record["reasoning_process"] + "</think>\n<answer>" + record["answer"] + "</answer>"
  )
  if record["task"] in IMAGE_TASKS:
    return grammar.rescale_pixels(text, tuple(record["image_size"]), frame_size)
  return grammar.normalized_to_pixels(text, frame_size)


def reward_meta(record: Record, frame_size: tuple[int, int], **extra: Any) -> dict[str, Any]:
  """What the RL rewards read for a record: the record itself plus `frame_size` [W, H] of
  the processed frame (boxes normalised in the record are multiplied by it; visual QA
  rescales from `image_size` to it), and extra facts such as `sample_fps`, `duration`."""
  meta = dict(record)
  meta["frame_size"] = [int(frame_size[0]), int(frame_size[1])]
  meta.update(extra)
  return meta
