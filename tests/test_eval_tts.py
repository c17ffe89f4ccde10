"""Confidence-aware test-time scaling: weights, votes, crop geometry."""

import numpy as np
import pytest

from o3jax.eval import tts
from o3jax.processing import evidence


@pytest.mark.parametrize(
  "raw,expected",
  [
    (2, 2),
    (0, 0),
    (np.int64(1), 1),
    ("1", 1),
    ("Rating: 2", 2),
    (" 0\n", 0),
    (3, None),
    ("3", None),
    ("relevant", None),
    (None, None),
    (True, None),
    (1.0, None),
  ],
)
def test_parse_rating(raw, expected):
  assert tts.parse_rating(raw) == expected


@pytest.mark.parametrize(
  "ratings,expected",
  [
    ([2], 1.0),
    ([1], 0.6),
    ([0], 0.2),
    ([2, 0], 0.6),
    ([2, 1, 1], (1.0 + 0.6 + 0.6) / 3),
    ([2, "unreadable"], 0.6),
    ([], 0.2),
    ([2] * 10, 1.0),
    ([2] * 11, 0.2),
  ],
)
def test_weight_from_ratings(ratings, expected):
  assert tts.weight_from_ratings(ratings) == pytest.approx(expected)


def test_response_weight_calls_the_rater_only_when_needed():
  calls = []

  def rate(crop):
    calls.append(crop.shape)
    return "2"

  crop = np.zeros((4, 4, 3), np.uint8)
  assert tts.response_weight(None, True, [crop], rate) == 0.0
  assert tts.response_weight("", True, [crop], rate) == 0.0
  assert tts.response_weight("B", False, [crop], rate) == 0.0
  assert tts.response_weight("B", True, [], rate) == 0.2
  assert tts.response_weight("B", True, [crop] * 11, rate) == 0.2
  assert calls == []
  assert tts.response_weight("B", True, [crop] * 3, rate) == 1.0
  assert len(calls) == 3


def test_votes():
  answers = ["A", "B", "B", "C", None, "B"]
  weights = [1.0, 0.2, 0.6, 0.9, 5.0, 0.0]
  assert tts.weighted_vote(answers, weights) == "A"  # A 1.0 > C 0.9 > B 0.8
  assert tts.majority_vote(answers) == "B"  # B x3
  assert tts.weighted_vote(["A", "B"], [0.6, 0.6]) == "A"  # tie: first seen
  assert tts.weighted_vote(["B", "A"], [0.6, 0.6]) == "B"
  assert tts.weighted_vote(["A", None], [0.0, 1.0]) is None
  assert tts.majority_vote([None, ""]) is None
  with pytest.raises(ValueError, match="2 answers but 1 weights"):
    tts.weighted_vote(["A", "B"], [1.0])


def _frame(color, h=40, w=60):
  frame = np.zeros((h, w, 3), np.uint8)
  frame[:] = color
  return frame


def test_crop_box_geometry():
  frame = _frame((0, 0, 0))
  frame[10:20, 30:50] = (255, 0, 0)  # rows 10-19, cols 30-49
  frame[30:40, 50:60] = (0, 255, 0)  # bottom-right corner
  crop = evidence.crop_box(frame, [30, 10, 50, 20])
  assert crop.shape == frame.shape and crop.dtype == np.uint8
  assert (crop == (255, 0, 0)).all()
  # partly outside the frame: clamped to cols 50-59, rows 30-39
  assert (evidence.crop_box(frame, [50, 30, 100, 100]) == (0, 255, 0)).all()
  # fractional edges widen to whole pixels: cols 30-49 -> still only red
  assert (evidence.crop_box(frame, [30.4, 10.2, 49.6, 19.5]) == (255, 0, 0)).all()
  for bad in (
    [70, 0, 90, 10],
    [10, 10, 5, 20],
    [0, 0, 0, 10],
    [0, 0, 10],
    "box",
    [0, 0, float("nan"), 4],
    [-20, -20, -1, -1],
  ):
    assert evidence.crop_box(frame, bad) is None
  gray = np.arange(40 * 60, dtype=np.uint8).reshape(40, 60)
  assert evidence.crop_box(gray, [0, 0, 60, 40]).shape == (40, 60)
  # a full-frame box is the identity
  np.testing.assert_array_equal(evidence.crop_box(gray, [0, 0, 60, 40]), gray)
  with pytest.raises(ValueError, match="uint8"):
    evidence.crop_box(frame.astype(np.float32), [0, 0, 4, 4])


def test_evidence_crops_use_the_nearest_frame():
  frames = [_frame((10, 10, 10)), _frame((20, 20, 20)), _frame((30, 30, 30))]
  times = [0.0, 1.0, 2.0]
  assert evidence.nearest_frame(times, 1.4) == 1 and evidence.nearest_frame(times, 1.5) == 1
  assert evidence.nearest_frame(times, 9) == 2
  claims = [
    (1.6, [0, 0, 10, 10]),
    ("x", [0, 0, 10, 10]),
    (0.2, [100, 100, 120, 120]),
    (0.1, [5, 5, 8, 8]),
  ]
  crops = evidence.evidence_crops(frames, times, claims)
  assert [int(c[0, 0, 0]) for c in crops] == [30, 10]


def test_confidence_weighted_answer_end_to_end():
  """The rater trusts bright crops: the weighted vote overturns the majority."""
  frames = [_frame((0, 0, 0)), _frame((0, 0, 0))]
  frames[1][0:20, 0:20] = 255
  times = [0.0, 1.0]
  responses = [  # (answer, has think, claims)
    ("A", True, [(1.0, [0, 0, 20, 20])]),  # bright: 2 -> 1.0
    ("B", True, [(0.0, [0, 0, 20, 20])]),  # dark: 0 -> 0.2
    ("B", True, [(0.0, [0, 0, 20, 20]), (1.0, [0, 0, 20, 20])]),  # 0.2, 1.0 -> 0.6
    ("B", False, [(1.0, [0, 0, 20, 20])]),  # no think: 0
  ]

  def rate(crop):
    return "2" if crop.mean() > 128 else "0"

  weights = [
    tts.response_weight(a, think, evidence.evidence_crops(frames, times, claims), rate)
    for a, think, claims in responses
  ]
  assert weights == pytest.approx([1.0, 0.2, 0.6, 0.0])
  answers = [a for a, _, _ in responses]
  assert tts.weighted_vote(answers, weights) == "A"  # A 1.0 > B 0.2 + 0.6
  assert tts.majority_vote(answers) == "B"  # B x3
