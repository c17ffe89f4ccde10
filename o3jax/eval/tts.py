"""Confidence-aware test-time scaling (docs/reference.md section 7): weights, votes, evidence crops.

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

import re
from typing import Callable, Hashable, Sequence

import numpy as np

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
