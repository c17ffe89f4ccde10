"""Evidence of a grounded claim: the frame shown at its time, the crop its box cuts.

Test-time scaling rates these crops as the reference cuts them (docs/reference.md section 7, eval/tts.py
of marinero4972/Open-o3-Video): the frame round(t * fps) of the frames the model saw, the box
truncated to ints and clipped to the frame, resized back to the frame size as
cv2.INTER_LINEAR does. The synthetic data teaches the rating on the same crops, and the
evidence sheets (viz.py) draw boxes on the shown frame nearest a claim's time.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def nearest_frame(frame_times: Sequence[float], t: float) -> int:
  """Index of the frame whose time is nearest to t (the earlier one on a tie)."""
  if not len(frame_times):
    raise ValueError("nearest_frame: no frames")
  return min(range(len(frame_times)), key=lambda i: (abs(frame_times[i] - t), i))


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
  if x2 <= x1 or y2 <= y1:
    return None
  return resize_bilinear(frame[y1:y2, x1:x2], h, w)


def evidence_crops(frames: Sequence[np.ndarray], fps: float, claims) -> list[np.ndarray]:
  """The crops of (time, box) claims, in order; a claim past the last frame or with an
  empty crop gives none."""
  crops = []
  for t, box in claims:
    frame = frame_at(frames, fps, t)
    crop = None if frame is None else crop_box(frame, box)
    if crop is not None:
      crops.append(crop)
  return crops
