"""Evidence of a grounded claim: the shown frame nearest its time, the crop its box cuts.

Test-time scaling rates these crops (docs/reference.md section 7), the synthetic data teaches the
rating on them, and the evidence sheets draw boxes on the same frames.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from o3jax.grammar import is_number


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
