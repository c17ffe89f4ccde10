"""Confidence-aware test-time scaling as the reference runs it (docs/reference.md section 7, eval/tts.py
and eval/test/test_{videomme,worldsense,videommmu}.py of marinero4972/Open-o3-Video).

N responses are sampled for one question. Each gets a letter and a weight:
  - think mode: the letter is the first `<answer>...</answer>` block, stripped, when it is
    one of the question's letters (else no letter, weight 0); a response without a
    `<think>...</think>` block keeps its letter but weighs 0, for majority voting too;
  - majority: weight 1;
  - confidence: the think block's claims (REFERENCE_CLAIM_RE; time rounded to 2 decimals;
    a box of 4 numbers with x2 >= x1 and y2 >= y1) are cropped from the frame
    round(t * fps) of the frames the model saw (a claim past the last frame is dropped),
    coordinates truncated to ints and clipped to the frame, an empty crop dropped, each
    crop resized to the frame size (bilinear, as cv2.INTER_LINEAR then a cast to uint8;
    processing/evidence.py); more than MAX_CROPS crops count as none. No crop: weight 0.2. Else ALL the crops are rated together in one
    multi-image prompt (bench_prompts.RATING_*) and the reply, read as exactly "0", "1" or
    "2", gives the weight RATING_WEIGHT (anything else 0.2);
  - plain mode (no think prompt): the letter is read from the whole text, weight 1.
The answer is the letter with the largest summed weight over the question's letters in
order, so a tie goes to the earlier letter and a question whose responses all weigh 0 is
answered with its first letter ("A"), as the reference's `max(choice_score)` does.

`rating="per_crop"` is our earlier rule, kept as a named option: each crop rated alone, the
weight the mean of the crops' weights.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from o3jax import grammar
from o3jax.processing.evidence import evidence_crops
from o3jax.rewards.parse import block

# The reference's reading of a claim here (docs/reference.md section 7, its eval/tts.py), not
# grammar's: ONE box per claim. A claim with a run of boxes, which the rewards read
# (grammar, rewards/claims.py), is not a test-time-scaling claim: its group 2 spans the run
# and parse_box rejects it.
REFERENCE_CLAIM_RE = re.compile(r"<obj>(.*?)</obj><box>(\[.*?\])</box>at<t>(.*?)</t>s", re.DOTALL)
RATING_WEIGHT = {2: 1.0, 1: 0.6, 0: 0.2}
FALLBACK_WEIGHT = 0.2
MAX_CROPS = 10
VOTES = ("majority", "confidence")
RATINGS = ("joint", "per_crop")


def parse_box(raw: str) -> list[float] | None:
  """[x1, y1, x2, y2] from "[x1, y1, x2, y2]" (spaces dropped, as the reference does), or
  None (not 4 numbers, or x2 < x1 / y2 < y1)."""
  try:
    values = grammar.parse_box(raw.strip().replace(" ", "").replace("[", "").replace("]", ""))
  except ValueError:
    return None
  x1, y1, x2, y2 = values
  return values if x2 >= x1 and y2 >= y1 else None


def evidence_claims(think: str) -> list[tuple[float, list[float]]]:
  """(time, box) of every readable claim of a think block, in order."""
  out = []
  for match in REFERENCE_CLAIM_RE.finditer(think):
    try:
      t = round(float(match.group(3).strip()), 2)
    except ValueError:
      continue
    box = parse_box(match.group(2))
    if box is not None and math.isfinite(t):
      out.append((t, box))
  return out


def response_crops(frames: Sequence[np.ndarray], fps: float, think: str) -> list[np.ndarray]:
  """The evidence crops of a think block's claims (processing/evidence.py); [] when there
  are more than MAX_CROPS."""
  crops = evidence_crops(frames, fps, evidence_claims(think))
  return [] if len(crops) > MAX_CROPS else crops


def think_text(text: str) -> str | None:
  """The first closed think block, stripped (the reference's `<think>(.*?)</think>`), or None."""
  think = block(text, grammar.THINK)
  return None if think is None else think.strip()


def parse_rating(reply) -> int:
  """0, 1 or 2 when the reply is exactly that digit, else -1 (the reference's reading)."""
  return int(reply) if reply in ("0", "1", "2") else -1


def rating_weight(reply) -> float:
  return RATING_WEIGHT.get(parse_rating(reply), FALLBACK_WEIGHT)


def read_response(text: str, letters: Sequence[str], think_mode: bool, read_plain=None):
  """(letter or None, think text or None). Plain mode reads the letter with read_plain."""
  valid = list(letters)
  if not think_mode:
    letter = read_plain(text) if read_plain else None
    return (letter if letter in valid else None), None
  # the reference's `<answer>(.*?)</answer>`: a closed block only (grammar.answer_block, the
  # benchmarks' lenient reading, runs an unclosed one to the end)
  answer = block(text, grammar.ANSWER)
  letter = None if answer is None else answer.strip()
  return (letter if letter in valid else None), think_text(text)


def needs_rating(letter, think, think_mode: bool, vote: str) -> bool:
  return vote == "confidence" and think_mode and letter is not None and think is not None


def response_weight(
  letter, think, crops: Sequence[np.ndarray], think_mode: bool, vote: str, reply=None
) -> float:
  """The weight of one response (module doc); `reply` is the rater's text for its crops
  (joint), or a list of texts, one per crop (per_crop)."""
  if vote not in VOTES:
    raise ValueError(f"vote must be one of {VOTES}, got {vote!r}")
  if letter is None:
    return 0.0
  if not think_mode:
    return 1.0
  if think is None:
    return 0.0
  if vote == "majority":
    return 1.0
  if not crops:
    return FALLBACK_WEIGHT
  if isinstance(reply, list):
    return sum(map(rating_weight, reply)) / len(reply) if reply else FALLBACK_WEIGHT
  return rating_weight(reply)


def vote(letters: Sequence[str | None], weights: Sequence[float], choices: Sequence[str]) -> str:
  """The choice with the largest summed weight; ties (and no weight at all) go to the
  earliest choice, as the reference's max over an ordered dict."""
  if len(letters) != len(weights):
    raise ValueError(f"vote: {len(letters)} letters but {len(weights)} weights")
  if not choices:
    raise ValueError("vote: no choices")
  totals = dict.fromkeys(choices, 0.0)
  for letter, weight in zip(letters, weights):
    if letter in totals:
      totals[letter] += weight
  return max(totals, key=totals.get)
