"""Confidence-aware test-time scaling as the reference (eval/tts.py, eval/test/test_*.py):
reading responses, claims and crops, one joint rating per response, weights, the vote."""

import numpy as np
import pytest
import torch

from o3jax.eval import tts
from o3jax.processing import evidence


def test_rating_reply_is_read_only_when_it_is_exactly_one_digit():
  assert [tts.parse_rating(r) for r in ("0", "1", "2")] == [0, 1, 2]
  for reply in ("3", " 2", "2\n", "Rating: 2", "", None, 2):
    assert tts.parse_rating(reply) == -1
  assert [tts.rating_weight(r) for r in ("2", "1", "0", "2.", "x")] == [1.0, 0.6, 0.2, 0.2, 0.2]


def test_claims_boxes_and_times():
  think = (
    "<obj>cup</obj><box>[1, 2, 30, 40]</box>at<t>1.234</t>s then "
    "<obj>a</obj><box>[5,5,5,5]</box>at<t>2</t>s "  # x2 == x1 is a valid box (empty crop later)
    "<obj>b</obj><box>[9,1,3,4]</box>at<t>1</t>s "  # x2 < x1
    "<obj>c</obj><box>[1,2,3]</box>at<t>1</t>s "  # 3 numbers
    "<obj>d</obj><box>[1,2,3,4]</box>at<t>soon</t>s "  # no time
    "<obj>e</obj><box>[0,0,4,4]</box> at<t>1</t>s"  # a space breaks the pattern
  )
  assert tts.evidence_claims(think) == [(1.23, [1.0, 2.0, 30.0, 40.0]), (2.0, [5.0, 5.0, 5.0, 5.0])]
  # the reference's one-box claim pattern, not grammar's: a run of boxes is no claim here
  assert (
    tts.evidence_claims("<obj>f</obj><box>[0,0,4,4]</box><box>[1,1,5,5]</box>at<t>1</t>s") == []
  )


def test_crop_resize_is_cv2_linear_truncated():
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
  crop = evidence.crop_box(frame, [3.9, 2.2, 9.7, 7.0])  # ints: x 3..9, y 2..7
  assert crop.shape == frame.shape and crop.dtype == np.uint8
  # torch's bilinear (align_corners=False, no antialias) is cv2.INTER_LINEAR when enlarging
  part = torch.tensor(frame[2:7, 3:9].astype(np.float32)).permute(2, 0, 1)[None]
  want = torch.nn.functional.interpolate(part, size=(12, 16), mode="bilinear", align_corners=False)
  want = want[0].permute(1, 2, 0).numpy()
  assert np.abs(crop.astype(np.float32) - np.floor(want)).max() <= 1  # float32 rounding at .0
  assert (crop.astype(np.float32) <= want + 1e-3).all()
  flat = np.full((10, 10, 3), 77, np.uint8)
  assert (evidence.crop_box(flat, [-5, -5, 50, 50]) == 77).all()  # clipped to the frame
  assert evidence.crop_box(flat, [5, 5, 5, 9]) is None  # empty
  assert evidence.crop_box(flat, [12, 0, 20, 5]) is None  # outside


def test_crops_come_from_frame_round_t_fps_and_more_than_ten_are_none():
  frames = np.zeros((4, 8, 8, 3), np.uint8)
  for i in range(4):
    frames[i] = 50 * i
  box = [0, 0, 4, 4]
  crops = evidence.evidence_crops(frames, 2.0, [(0.0, box), (0.74, box), (1.3, box), (2.0, box)])
  assert [int(c[0, 0, 0]) for c in crops] == [0, 50, 150]  # 0.74*2 -> 1; 1.3*2 -> 3; 4 is past
  assert evidence.evidence_crops(frames, 2.0, [(-0.5, box)]) == []  # index -1: dropped
  claim = "<obj>a</obj><box>[0,0,4,4]</box>at<t>0</t>s "
  assert len(tts.response_crops(frames, 2.0, claim * 10)) == 10
  assert len(evidence.evidence_crops(frames, 2.0, [(0.0, box)] * 11)) == 11
  assert tts.response_crops(frames, 2.0, claim * 11) == []  # more than MAX_CROPS: none


def test_evidence_is_drawn_on_the_nearest_frame():
  times = [0.0, 1.0, 2.0]
  assert evidence.nearest_frame(times, 1.4) == 1 and evidence.nearest_frame(times, 1.5) == 1
  assert evidence.nearest_frame(times, 9) == 2
  with pytest.raises(ValueError, match="no frames"):
    evidence.nearest_frame([], 0.0)


def test_reading_a_response():
  letters = "ABCD"
  assert tts.read_response("<think>x</think><answer> B </answer>", letters, True) == ("B", "x")
  assert tts.read_response("<think>x</think><answer>B.</answer>", letters, True) == (None, "x")
  assert tts.read_response("<think>x</think><answer>E</answer>", letters, True) == (None, "x")
  assert tts.read_response("<answer>C</answer>", letters, True) == ("C", None)
  # closed blocks only, as the reference reads them (the benchmarks' answer_block is lenient)
  assert tts.read_response("<think>x</think><answer>B", letters, True) == (None, "x")
  assert tts.read_response("<think>x<answer>B</answer>", letters, True) == ("B", None)
  assert tts.read_response("<think></think><answer></answer>", letters, True) == (None, "")
  assert tts.read_response("C", letters, False, lambda t: t.strip()) == ("C", None)


def test_weights_joint_rating_and_limits():
  crop = np.zeros((4, 4, 3), np.uint8)
  for vote in tts.VOTES:
    assert tts.response_weight(None, "t", [crop], True, vote, "2") == 0.0  # no letter
    assert tts.response_weight("B", None, [crop], True, vote, "2") == 0.0  # no think: majority too
  assert tts.response_weight("B", "t", [], True, "majority") == 1.0
  assert tts.response_weight("B", None, [], False, "confidence") == 1.0  # plain prompts
  assert tts.response_weight("B", "t", [], True, "confidence") == 0.2  # no crop
  assert tts.response_weight("B", "t", [crop] * 3, True, "confidence", "1") == 0.6  # one rating
  assert tts.response_weight("B", "t", [crop], True, "confidence", "-1") == 0.2
  assert (
    tts.response_weight("B", "t", [crop] * 2, True, "confidence", ["2", "0"]) == 0.6
  )  # per crop
  with pytest.raises(ValueError, match="vote"):
    tts.response_weight("B", "t", [], True, "weighted")


def test_vote_ties_go_to_the_earlier_letter():
  assert tts.vote(["B", "A", "C"], [0.6, 0.6, 0.2], "ABCD") == "A"  # tie A/B: A
  assert tts.vote(["C", "B", "B"], [1.0, 0.6, 0.2], "ABCD") == "C"  # 1.0 > 0.8
  assert tts.vote(["B", None], [0.0, 0.0], "ABCD") == "A"  # nothing weighs: the first letter
  assert tts.vote(["J"], [1.0], "ABCDEFGHIJ") == "J"
  assert tts.vote(["E"], [1.0], "ABCD") == "A"  # not a letter of the question
  with pytest.raises(ValueError, match="2 letters but 1"):
    tts.vote(["A", "B"], [1.0], "AB")
