"""CLIP normalisation and patchification into Qwen2-VL's `pixel_values` layout.

A row of pixel_values is one 14x14 patch over `temporal_patch_size` (2) consecutive
frames: channel-major, then time, then patch rows and columns (3*2*14*14 = 1176).
Rows are ordered frame group by frame group, and inside a group by 2x2 merge blocks
(the 4 patches that become one LLM token are consecutive), exactly as transformers'
Qwen2-VL image processor does it. An image is one frame repeated to fill the temporal
patch, grid (1, h/14, w/14).
"""

import functools

import numpy as np

from o3jax.processing.config import ProcessingConfig


@functools.lru_cache(maxsize=8)
def _normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
  """[3, 256] float32: the normalised value of every uint8 level in every channel,
  computed with the same float32 operations as normalising the pixels directly."""
  levels = np.arange(256, dtype=np.float32)[None, :] * np.float32(1 / 255)
  mean32 = np.asarray(mean, np.float32)[:, None]
  std32 = np.asarray(std, np.float32)[:, None]
  return (levels - mean32) / std32


def patchify(
  frames: np.ndarray, config: ProcessingConfig, *, as_images: bool
) -> tuple[np.ndarray, np.ndarray]:
  """Turns uint8 frames [F, H, W, 3] (H, W multiples of 28) into (pixel_values, grid_thw).

  as_images=True: every frame is its own image (the reference training format): F rows of
    grid_thw (1, H/14, W/14), each frame repeated over the temporal patch.
  as_images=False: one video: frames grouped in temporal patches (F is padded with the
    last frame to a multiple of 2), one grid_thw row (F/2, H/14, W/14).
  """
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
  num, height, width, _ = frames.shape
  p, m, tp = config.patch_size, config.merge_size, config.temporal_patch_size
  if height % (p * m) or width % (p * m):
    raise ValueError(f"frame size {width}x{height} is not a multiple of {p * m}")
  gh, gw = height // p, width // p
  # Rearranging uint8 first and normalising afterwards moves 4x fewer bytes.
  if as_images:
    groups = frames[:, None]  # [F, 1, H, W, 3]; the temporal repeat is a broadcast below
  else:
    if num % tp:
      frames = np.concatenate([frames, np.repeat(frames[-1:], tp - num % tp, axis=0)])
    groups = frames.reshape(-1, tp, height, width, 3)
  g, t = groups.shape[:2]
  x = groups.reshape(g, t, gh // m, m, p, gw // m, m, p, 3)
  # -> [group, block row, block col, row in block, col in block, channel, time, py, px]
  x = np.ascontiguousarray(x.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7))
  table = _normalize_table(tuple(config.image_mean), tuple(config.image_std))
  pixel_values = np.empty(x.shape[:6] + (tp, p, p), np.float32)
  for c in range(3):  # a table lookup per channel; an image's single frame fills both time slots
    pixel_values[:, :, :, :, :, c] = np.take(table[c], x[:, :, :, :, :, c])
  if as_images:
    grid = np.tile(np.array([[1, gh, gw]], np.int64), (num, 1))
  else:
    grid = np.array([[g, gh, gw]], np.int64)
  return pixel_values.reshape(g * gh * gw, 3 * tp * p * p), grid
