"""Confidence-aware test-time scaling as the reference runs it (SPEC.md section 7, eval/tts.py
and eval/test/test_{videomme,worldsense,videommmu}.py of marinero4972/Open-o3-Video).

N responses are sampled for one question. Each gets a letter and a weight:
  - think mode: the letter is the first `<answer>...</answer>` block, stripped, when it is
    one of the question's letters (else no letter, weight 0); a response without a
    `<think>...</think>` block keeps its letter but weighs 0, for majority voting too;
  - majority: weight 1;
  - confidence: the think block's claims (CLAIM; time rounded to 2 decimals; a box of 4
    numbers with x2 >= x1 and y2 >= y1) are cropped from the frame round(t * fps) of the
    frames the model saw (a claim past the last frame is dropped), coordinates truncated to
    ints and clipped to the frame, an empty crop dropped, each crop resized to the frame
    size (bilinear, as cv2.INTER_LINEAR then a cast to uint8); more than MAX_CROPS crops
    count as none. No crop: weight 0.2. Else ALL the crops are rated together in one
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
from typing import Callable, Sequence

import numpy as np

CLAIM = re.compile(r"<obj>(.*?)</obj><box>(\[.*?\])</box>at<t>(.*?)</t>s", re.DOTALL)
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
RATING_WEIGHT = {2: 1.0, 1: 0.6, 0: 0.2}
FALLBACK_WEIGHT = 0.2
MAX_CROPS = 10
VOTES = ("majority", "confidence")
RATINGS = ("joint", "per_crop")

# rate(list of crops of one response) -> the rater's reply text
JointRater = Callable[[list], str]


def parse_box(raw: str) -> list[float] | None:
  """[x1, y1, x2, y2] from "[x1, y1, x2, y2]", or None (not 4 numbers, or x2 < x1 / y2 < y1)."""
  parts = raw.strip().replace(" ", "").replace("[", "").replace("]", "").split(",")
  try:
    values = [float(p) for p in parts]
  except ValueError:
    return None
  if len(values) != 4:
    return None
  x1, y1, x2, y2 = values
  return values if x2 >= x1 and y2 >= y1 else None


def evidence_claims(think: str) -> list[tuple[float, list[float]]]:
  """(time, box) of every readable claim of a think block, in order."""
  out = []
  for match in CLAIM.finditer(think):
    try:
      t = round(float(match.group(3).strip()), 2)
    except ValueError:
      continue
    box = parse_box(match.group(2))
    if box is not None and math.isfinite(t):
      out.append((t, box))
  return out


def frame_at(frames: Sequence[np.ndarray], fps: float, t: float) -> np.ndarray | None:
  """The frame shown at time t: index round(t * fps); None past the last frame (and,
  unlike the reference's python indexing, for a negative index)."""
  index = round(t * fps)
  return frames[index] if 0 <= index < len(frames) else None


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """cv2.resize(image.astype(float32), (width, height), INTER_LINEAR).astype(uint8):
  half-pixel centres, edge pixels clamped, the result truncated."""
  src = image.astype(np.float32)
  h, w = src.shape[:2]

  def axis(out: int, size: int):
    pos = np.clip((np.arange(out, dtype=np.float64) + 0.5) * (size / out) - 0.5, 0, size - 1)
    low = np.floor(pos).astype(np.int64)
    return low, np.minimum(low + 1, size - 1), (pos - low).astype(np.float32)

  y0, y1, fy = axis(height, h)
  x0, x1, fx = axis(width, w)
  fx = fx[None, :, None] if src.ndim == 3 else fx[None, :]
  fy = fy[:, None, None] if src.ndim == 3 else fy[:, None]
  top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
  bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
  return (top * (1 - fy) + bottom * fy).astype(np.uint8)


def crop_box(frame: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
  """The box (ints, truncated, clipped to the frame) cut from a uint8 [H, W(, C)] frame and
  resized to the frame size; None when the crop is empty."""
  frame = np.asarray(frame)
  if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
    raise ValueError(f"crop_box: frame must be uint8 (H, W[, C]), got {frame.dtype} {frame.shape}")
  h, w = frame.shape[:2]
  x1, y1, x2, y2 = (int(v) for v in box)
  x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
  crop = frame[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else frame[:0]
  if crop.size == 0:
    return None
  return resize_bilinear(crop, h, w)


def evidence_crops(frames: Sequence[np.ndarray], fps: float, claims) -> list[np.ndarray]:
  """The crops of (time, box) claims; [] when there are more than MAX_CROPS."""
  crops = []
  for t, box in claims:
    frame = frame_at(frames, fps, t)
    crop = None if frame is None else crop_box(frame, box)
    if crop is not None:
      crops.append(crop)
  return [] if len(crops) > MAX_CROPS else crops


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
  answer = ANSWER.search(text)
  letter = answer.group(1).strip() if answer else None
  think = THINK.search(text)
  return (letter if letter in valid else None), (think.group(1).strip() if think else None)


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
