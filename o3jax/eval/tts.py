"""Confidence-aware test-time scaling (SPEC section 7): weights, votes, evidence crops.

N responses are sampled for one question. A response's weight:
  - 0 if it has no valid answer or no think block;
  - else its evidence crops are rated: for each claim (time t, box), the box is cropped
    from the frame the model saw nearest to t (clamped to the frame; a crop that is
    empty after clamping, or a box that is not 4 numbers with x1 < x2 and y1 < y2, is
    not a valid crop) and resized to the frame size; the model rates each crop's
    relevance to the question 0/1/2, mapped by RATING_WEIGHT, and the response's
    weight is the mean over its crops;
  - 0.2 (FALLBACK_WEIGHT) if it has no valid crop or more than 10 valid crops (then
    nothing is rated); an unreadable rating counts 0.2 for its crop.
The final answer is the one with the largest summed weight; majority voting (weight 1
for every response with an answer, think or not) is the baseline. Ties go to the answer
that appeared first. The rater (the model, later) is a callable crop -> rating, where a
rating is 0, 1, 2 or text holding one.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Hashable, Sequence

import numpy as np
from PIL import Image

from o3jax.eval.iou import is_number

RATING_WEIGHT = {2: 1.0, 1: 0.6, 0: 0.2}
FALLBACK_WEIGHT = 0.2
MAX_CROPS = 10

Rater = Callable[[np.ndarray], object]


def parse_rating(raw) -> int | None:
  """0, 1 or 2 from an int or from text (its first run of digits); None otherwise."""
  if isinstance(raw, bool):
    return None
  if isinstance(raw, (int, np.integer)):
    value = int(raw)
  elif isinstance(raw, str):
    found = re.search(r"\d+", raw)
    if not found:
      return None
    value = int(found.group())
  else:
    return None
  return value if value in RATING_WEIGHT else None


def weight_from_ratings(ratings: Sequence) -> float:
  """A valid response's weight from the ratings of its crops."""
  if not ratings or len(ratings) > MAX_CROPS:
    return FALLBACK_WEIGHT
  weights = [RATING_WEIGHT.get(parse_rating(r), FALLBACK_WEIGHT) for r in ratings]
  return sum(weights) / len(weights)


def response_weight(answer, has_think: bool, crops: Sequence[np.ndarray], rate: Rater) -> float:
  """Weight of one response; `rate` is called once per crop, only when it is needed."""
  if answer is None or answer == "" or not has_think:
    return 0.0
  if not crops or len(crops) > MAX_CROPS:
    return FALLBACK_WEIGHT
  return weight_from_ratings([rate(crop) for crop in crops])


def weighted_vote(answers: Sequence[Hashable | None], weights: Sequence[float]) -> Hashable | None:
  """The answer with the largest summed weight (first seen wins ties); None if no
  answer has positive weight."""
  if len(answers) != len(weights):
    raise ValueError(f"weighted_vote: {len(answers)} answers but {len(weights)} weights")
  totals: dict = {}
  for answer, weight in zip(answers, weights):
    if answer is not None and answer != "" and weight > 0:
      totals[answer] = totals.get(answer, 0.0) + weight
  return max(totals, key=totals.get) if totals else None  # max keeps the first of equals


def majority_vote(answers: Sequence[Hashable | None]) -> Hashable | None:
  """Baseline: every response with an answer votes with weight 1."""
  return weighted_vote(answers, [1.0] * len(answers))


def nearest_frame(frame_times: Sequence[float], t: float) -> int:
  """Index of the frame whose time is nearest to t (the earlier one on a tie)."""
  if not len(frame_times):
    raise ValueError("nearest_frame: no frames")
  return min(range(len(frame_times)), key=lambda i: (abs(frame_times[i] - t), i))


def crop_box(frame: np.ndarray, box) -> np.ndarray | None:
  """Crop an xyxy pixel box (clamped to the frame) and resize it to the frame size.

  frame: uint8 array (H, W) or (H, W, C). Returns an array of the frame's shape, or
  None if the box is not a valid crop.
  """
  frame = np.asarray(frame)
  if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
    raise ValueError(f"crop_box: frame must be uint8 (H, W[, C]), got {frame.dtype} {frame.shape}")
  if not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4:
    return None
  if not all(map(is_number, list(box))):
    return None
  x1, y1, x2, y2 = (float(v) for v in box)
  if not (x1 < x2 and y1 < y2):
    return None
  h, w = frame.shape[:2]
  left, right = math.floor(min(max(x1, 0.0), w)), math.ceil(min(max(x2, 0.0), w))
  top, bottom = math.floor(min(max(y1, 0.0), h)), math.ceil(min(max(y2, 0.0), h))
  if right <= left or bottom <= top:
    return None
  crop = frame[top:bottom, left:right]
  if crop.ndim == 3 and crop.shape[2] == 1:
    resized = Image.fromarray(crop[..., 0]).resize((w, h), Image.BILINEAR)
    return np.asarray(resized)[..., None]
  return np.asarray(Image.fromarray(crop).resize((w, h), Image.BILINEAR))


def evidence_crops(
  frames: Sequence[np.ndarray], frame_times: Sequence[float], claims
) -> list[np.ndarray]:
  """Valid crops for (time, box) pairs: one pair per box of each claim, in order."""
  crops = []
  for t, box in claims:
    if not is_number(t):
      continue
    crop = crop_box(frames[nearest_frame(frame_times, t)], box)
    if crop is not None:
      crops.append(crop)
  return crops
