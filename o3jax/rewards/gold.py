"""Gold targets from STGR-RL records (docs/reference.md section 3) -> arrays for the kernels.

A record is the STGR-RL JSON record plus `frame_size` [W, H], the processed frame (or
image) the model saw. What each task reads:
- temporal-spatial free-form QA: `answer` (ROUGE reference), `key_frames`
  [{idx, time}], `key_items` {str(idx): {object: [[x1,y1,x2,y2] normalized, ...]}},
  `frame_size`; boxes become pixels as (x1 W, y1 H, x2 W, y2 H). An empty `key_frames`
  is allowed (no gold time: the thk terms are 0).
- temporal QA: `answer` "[s, e]"; temporal QA (MCQ): `answer` "B\\n[s, e]" (letter on
  the first line, span on the second, read with ast.literal_eval).
- visual QA: the first `<box>[..]</box>` of `answer`, in pixels of `image_size`,
  rescaled to `frame_size` as x * W_frame / W_image (the reference's order).
- General video QA MCQ: the stripped answer text is the letter; Free-form: the text.

A malformed gold record raises RecordError naming the record id and the field: a
missing field, an unknown task, a span that is not two finite numbers with start <= end,
a box that is not four finite numbers with x1 <= x2 and y1 <= y2, a size that is not two
positive numbers, a key frame without a `key_items` entry (the reference would crash
there), an empty MCQ letter. Completions never raise; records are checked here so a data
pipeline can call `record_gold` up front and skip bad records.
"""

import ast
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from o3jax.grammar import (
  BOX_RE,
  GENERAL_FREE_FORM,
  GENERAL_MCQ,
  SPATIO_TEMPORAL,
  TASKS,
  TEMPORAL,
  TEMPORAL_MCQ,
  VISUAL,
)
from o3jax.rewards.batch import bucket
from o3jax.rewards.parse import Box, answer_text

FREE_FORM = (SPATIO_TEMPORAL, GENERAL_FREE_FORM)  # ans_acc by ROUGE


class RecordError(ValueError):
  """A gold record that cannot be scored against; names the record and the field."""


@dataclasses.dataclass(frozen=True)
class Gold:
  task: str
  answer: str  # ROUGE reference or MCQ letter (stripped)
  span: tuple[float, float] | None  # temporal tasks
  box: Box | None  # visual QA, pixels of the processed image
  key_times: tuple[float, ...]  # spatio-temporal QA
  key_boxes: tuple[tuple[tuple[Box, ...], ...], ...]  # [key frame][object][box], pixels


def _error(record: Mapping, field: str, why: str) -> RecordError:
  return RecordError(f"record {record.get('id', '<no id>')!r}, field {field!r}: {why}")


def _get(record: Mapping, field: str):
  if field not in record:
    raise _error(record, field, "missing")
  return record[field]


def _number(value) -> float | None:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  try:
    value = float(value)
  except OverflowError:
    return None
  return value if math.isfinite(value) else None


_PLAIN_NUMBERS = frozenset((int, float))


def _numbers(values: list | tuple) -> list[float | None]:
  """_number of each value, with finite plain ints and floats (the usual) in bulk."""
  if _PLAIN_NUMBERS.issuperset(map(type, values)):
    try:
      floats = list(map(float, values))
      if all(map(math.isfinite, floats)):
        return floats
    except OverflowError:  # an int beyond float range
      pass
  return [_number(v) for v in values]


def _size(record: Mapping, field: str) -> tuple[float, float]:
  value = _get(record, field)
  size = _numbers(value) if isinstance(value, (list, tuple)) else []
  if len(size) != 2 or None in size or min(size) <= 0:
    raise _error(record, field, f"expected [W, H], two positive numbers, got {value!r}")
  return size[0], size[1]


def _box_or_none(value) -> Box | None:
  box = _numbers(value) if isinstance(value, (list, tuple)) else []
  if len(box) != 4 or None in box or box[0] > box[2] or box[1] > box[3]:
    return None
  return tuple(box)


def _box(record: Mapping, field: str, value) -> Box:
  box = _box_or_none(value)
  if box is None:
    raise _error(record, field, f"expected [x1, y1, x2, y2] with x1 <= x2, y1 <= y2, got {value!r}")
  return box


def _span(record: Mapping, text: str) -> tuple[float, float]:
  try:
    value = ast.literal_eval(text.strip())
  except Exception:
    value = None
  span = _numbers(value) if isinstance(value, (list, tuple)) else []
  if len(span) != 2 or None in span or span[1] < span[0]:
    raise _error(record, "answer", f"expected a span [s, e] with s <= e, got {text!r}")
  return span[0], span[1]


def _letter(record: Mapping, text: str) -> str:
  if not text.strip():
    raise _error(record, "answer", "empty MCQ letter")
  return text.strip()


def _key_frames(record: Mapping) -> tuple[tuple[float, ...], tuple]:
  frames, items = _get(record, "key_frames"), _get(record, "key_items")
  if not isinstance(frames, list) or not isinstance(items, Mapping):
    raise _error(record, "key_frames", "expected a list of key frames and a key_items map")
  width, height = _size(record, "frame_size")
  times, boxes = [], []
  for k, frame in enumerate(frames):
    where = f"key_frames[{k}]"
    idx = frame.get("idx") if isinstance(frame, Mapping) else None
    time = _number(frame.get("time")) if isinstance(frame, Mapping) else None
    if isinstance(idx, bool) or not isinstance(idx, int) or time is None or time < 0:
      raise _error(record, where, f"expected {{idx: int, time: seconds >= 0}}, got {frame!r}")
    objects = items.get(str(idx))
    if not isinstance(objects, Mapping):
      raise _error(record, f"key_items[{str(idx)!r}]", "no objects for this key frame")
    frame_boxes = []
    for name, obj_boxes in objects.items():
      obj = list(map(_box_or_none, obj_boxes)) if isinstance(obj_boxes, list) else None
      if obj is None or None in obj:  # the field is named only for the error
        field = f"key_items[{str(idx)!r}][{name!r}]"
        if obj is None:
          raise _error(record, field, "expected a list of boxes")
        _box(record, field, obj_boxes[obj.index(None)])
      frame_boxes.append(
        tuple((x1 * width, y1 * height, x2 * width, y2 * height) for x1, y1, x2, y2 in obj)
      )
    times.append(time)
    boxes.append(tuple(frame_boxes))
  return tuple(times), tuple(boxes)


def _visual_box(record: Mapping, answer: str) -> Box:
  match = BOX_RE.search(answer)
  try:
    value = json.loads(match.group(1)) if match else None
  except Exception:  # invalid JSON or nesting too deep
    value = None
  x1, y1, x2, y2 = _box(record, "answer", value)
  image_w, image_h = _size(record, "image_size")
  frame_w, frame_h = _size(record, "frame_size")
  return (
    x1 * frame_w / image_w,
    y1 * frame_h / image_h,
    x2 * frame_w / image_w,
    y2 * frame_h / image_h,
  )


def record_gold(record: Mapping) -> Gold:
  """The gold targets of one record; raises RecordError when it is malformed."""
  if not isinstance(record, Mapping):
    raise RecordError(f"record {record!r}: expected a mapping")
  task, answer = _get(record, "task"), _get(record, "answer")
  if task not in TASKS:
    raise _error(record, "task", f"unknown task {task!r}; expected one of {TASKS}")
  if not isinstance(answer, str):
    raise _error(record, "answer", f"expected a string, got {answer!r}")
  text = answer_text(f"<answer>{answer}</answer>")
  span, box, key_times, key_boxes = None, None, (), ()
  if task == SPATIO_TEMPORAL:
    key_times, key_boxes = _key_frames(record)
  elif task == TEMPORAL:
    span = _span(record, answer)
  elif task == TEMPORAL_MCQ:
    lines = answer.split("\n")
    if len(lines) < 2:
      raise _error(record, "answer", f"expected 'LETTER\\n[s, e]', got {answer!r}")
    text, span = _letter(record, lines[0]), _span(record, lines[1])
  elif task == VISUAL:
    box = _visual_box(record, answer)
  elif task == GENERAL_MCQ:
    text = _letter(record, text)
  return Gold(task, text, span, box, key_times, key_boxes)


class GoldArrays(NamedTuple):
  """Kernel input read from records; numpy, [N] padded like ParsedArrays.

  G key frames, O objects per key frame, M boxes per object: padded to buckets.
  """

  task: np.ndarray  # int32 [N], index into TASKS
  choice: np.ndarray  # int32 [N]: the MCQ letter's id in ParsedBatch.choice_ids, or -2
  span: np.ndarray  # float64 [N, 2]
  box: np.ndarray  # float64 [N, 4]
  key_time: np.ndarray  # float64 [N, G]
  key_time_valid: np.ndarray  # bool [N, G]
  key_box: np.ndarray  # float64 [N, G, O, M, 4]
  key_box_valid: np.ndarray  # bool [N, G, O, M]


def pack_gold(golds: list[Gold], n_pad: int, choice_ids: Mapping[str, int]) -> GoldArrays:
  """Stack gold targets; MCQ letters are looked up in the completions' choice ids.

  Each distinct Gold object is packed once and gathered (a GSPO group shares one).
  """
  unique = list({id(x): x for x in golds}.values())
  g = bucket(max((len(x.key_times) for x in unique), default=0), 1)
  o = bucket(max((len(f) for x in unique for f in x.key_boxes), default=0), 1)
  m = bucket(max((len(b) for x in unique for f in x.key_boxes for b in f), default=0), 1)
  u = len(unique) + 1  # and a last row for padding
  out = GoldArrays(
    task=np.full(u, TASKS.index(GENERAL_FREE_FORM), np.int32),
    choice=np.full(u, -2, np.int32),
    span=np.zeros((u, 2)),
    box=np.zeros((u, 4)),
    key_time=np.zeros((u, g)),
    key_time_valid=np.zeros((u, g), bool),
    key_box=np.zeros((u, g, o, m, 4)),
    key_box_valid=np.zeros((u, g, o, m), bool),
  )
  for i, x in enumerate(unique):
    out.task[i] = TASKS.index(x.task)
    if x.task in (TEMPORAL_MCQ, GENERAL_MCQ):
      out.choice[i] = choice_ids.get(x.answer, -2)
    out.span[i] = x.span or (0.0, 0.0)
    out.box[i] = x.box or (0.0,) * 4
    out.key_time[i, : len(x.key_times)] = x.key_times
    out.key_time_valid[i, : len(x.key_times)] = True
  where = [
    (i, j, k, n)
    for i, x in enumerate(unique)
    for j, frame in enumerate(x.key_boxes)
    for k, obj_boxes in enumerate(frame)
    for n in range(len(obj_boxes))
  ]
  if where:
    where = tuple(np.array(where).T)
    out.key_box[where] = [
      b for x in unique for frame in x.key_boxes for boxes in frame for b in boxes
    ]
    out.key_box_valid[where] = True
  index = {id(x): i for i, x in enumerate(unique)}
  take = np.full(n_pad, u - 1)
  take[: len(golds)] = [index[id(x)] for x in golds]
  return GoldArrays(*(a[take] for a in out))
