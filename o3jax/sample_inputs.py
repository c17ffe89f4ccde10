"""The sampler's host-side inputs: a batch of prompts with fixed, bucketed shapes.

`prompt_batch` is the one way prompts become `o3jax.sample.sample` inputs, for evaluation
(`eval/generate.py`) and GSPO rollouts (`train/rollout.py`) alike: prompts re-padded on
the left to a bucketed length, vision patches, windows and frames padded to bucketed
counts (`bucket`), 3-D positions, vision layouts and the position of the first new token.
A benchmark or a run therefore compiles the sampler a handful of times.

`prepare_prompts` is the same from transformers-style keyword arguments with explicit
padding (`o3jax.sample.generate` uses it). A text-only model (a config without a vision
tower: models/qwen2.py, the V-STaR judge) gets plain 1-D positions in all three rows.
"""

from __future__ import annotations

import numpy as np

from o3jax.models import prepare_inputs


def bucket(x: int, least: int) -> int:
  """x rounded up to a multiple of max(least, 2^ceil(log2 x) / 16): multiples of `least`
  for small x, else less than x/8 of padding and 8 sizes per doubling, so a benchmark
  compiles the sampler a handful of times."""
  x = max(int(x), least)
  step = max(least, (1 << (x - 1).bit_length()) // 16)
  return -(-x // step) * step


def vision_padding(config, grids: np.ndarray, num_patches: int) -> dict:
  """Padded layout sizes (see `vision_layout`) for the concatenated grids of a batch (a
  Qwen3-VL tower has no windows: no window sizes)."""
  v = config.vision
  m, wm = v.spatial_merge_size, getattr(v, "window_merge_units", None)
  windows = frames = 0
  frame_length = 1
  for t, h, w in np.asarray(grids).reshape(-1, 3).tolist():
    windows += t * -(-(h // m) // wm) * -(-(w // m) // wm) if wm else 0
    frames += t
    frame_length = max(frame_length, h * w)
  out = dict(
    num_patches=bucket(num_patches, 64),
    num_frames=bucket(frames, 8),
    frame_length=bucket(frame_length, 16),
  )
  return out if wm is None else {**out, "num_windows": bucket(windows, 8)}


def prompt_batch(
  config,
  input_ids,
  attention_mask,
  pixel_values=None,
  image_grid_thw=None,
  pixel_values_videos=None,
  video_grid_thw=None,
  second_per_grid_ts=None,
  *,
  prompt_bucket: int = 64,
  prompt_length: int | None = None,
  pad_id: int = 0,
  rope_rule: str = "qwen",
) -> dict:
  """Sampler inputs for a batch of prompts (rows of `input_ids` whose `attention_mask` is
  1; padding on either side, rows without tokens are filler). The prompt length is
  `prompt_length`, else the longest prompt rounded by `bucket(., prompt_bucket)`; vision
  arrays (all rows' patches concatenated, grids that may end in zero rows) are padded to
  `vision_padding`."""
  mask = np.asarray(attention_mask)
  longest = int(mask.astype(bool).sum(1).max(initial=1))
  padding = {}
  for name, pixels, grids in (
    ("image_padding", pixel_values, image_grid_thw),
    ("video_padding", pixel_values_videos, video_grid_thw),
  ):
    if pixels is not None:
      padding[name] = vision_padding(config, grids, len(pixels))
  return prepare_prompts(
    config,
    input_ids,
    mask,
    pixel_values,
    image_grid_thw,
    pixel_values_videos,
    video_grid_thw,
    second_per_grid_ts,
    rope_rule=rope_rule,
    prompt_length=prompt_length or bucket(longest, prompt_bucket),
    pad_id=pad_id,
    **padding,
  )


def left_pad(input_ids, attention_mask, length: int, pad_id: int = 0):
  """Moves each row's real tokens (attention_mask 1, in order) to the right end of a row of
  `length`, as decoding from one cache slot for every row needs.

  A row without tokens (filler of a partial batch) stays empty; its rollouts are noise
  that the caller ignores."""
  input_ids = np.asarray(input_ids)
  mask = (
    np.ones_like(input_ids, bool)
    if attention_mask is None
    else np.asarray(attention_mask).astype(bool)
  )
  counts = mask.sum(1)
  if counts.max(initial=0) > length:
    raise ValueError(f"a prompt of {counts.max()} tokens does not fit prompt length {length}")
  ids = np.full((input_ids.shape[0], length), pad_id, input_ids.dtype)
  new_mask = np.zeros((input_ids.shape[0], length), np.int32)
  for row in range(input_ids.shape[0]):
    ids[row, length - counts[row] :] = input_ids[row][mask[row]]
    new_mask[row, length - counts[row] :] = 1
  return ids, new_mask


def next_positions(
  position_ids: np.ndarray, attention_mask: np.ndarray, rope_rule: str
) -> np.ndarray:
  """[3, B] rotary ids of the first new token of each (left-padded) prompt."""
  if rope_rule == "transformers5":
    return position_ids[:, :, -1] + 1
  real = attention_mask.astype(bool)[None]
  top = np.where(real, position_ids, -1).max(axis=(0, 2)) + 1  # 0 on rows without tokens
  return np.broadcast_to(top, position_ids.shape[:2]).copy()


def _pad_patches(pixels, padding: dict | None):
  """Zero rows up to padding['num_patches'] (their features are never read)."""
  if pixels is None or not padding or "num_patches" not in padding:
    return pixels
  pixels = np.asarray(pixels)
  extra = padding["num_patches"] - pixels.shape[0]
  if extra < 0:
    raise ValueError(f"{pixels.shape[0]} patches exceed num_patches={padding['num_patches']}")
  return np.pad(pixels, ((0, extra), (0, 0)))


def prepare_prompts(
  config,
  input_ids,
  attention_mask=None,
  pixel_values=None,
  image_grid_thw=None,
  pixel_values_videos=None,
  video_grid_thw=None,
  second_per_grid_ts=None,
  *,
  rope_rule: str = "qwen",
  bucket: int = 64,
  prompt_length: int | None = None,
  pad_id: int = 0,
  image_padding: dict | None = None,
  video_padding: dict | None = None,
) -> dict:
  """Host (numpy) inputs for `sample` from transformers-style arguments.

  Prompts are re-padded on the left to `prompt_length`, or to the next multiple of
  `bucket`; `image_padding` / `video_padding` (see `prepare_inputs`) fix the vision shapes
  too, so that batches of one bucket share a compiled sampler.
  """
  ids = np.asarray(input_ids)
  mask = None if attention_mask is None else np.asarray(attention_mask)
  longest = int(ids.shape[1] if mask is None else mask.astype(bool).sum(1).max())
  length = prompt_length or -(-longest // bucket) * bucket
  ids, mask = left_pad(ids, mask, length, pad_id)
  if getattr(config, "vision", None) is None:  # a text-only model (models/qwen2.py)
    if pixel_values is not None or pixel_values_videos is not None:
      raise ValueError("a text-only model takes no pixels")
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)  # its three mRoPE rows are equal
    out = dict(input_ids=ids, attention_mask=mask, position_ids=np.stack([positions] * 3))
  else:
    out = prepare_inputs(
      config,
      ids,
      mask,
      _pad_patches(pixel_values, image_padding),
      image_grid_thw,
      _pad_patches(pixel_values_videos, video_padding),
      video_grid_thw,
      second_per_grid_ts,
      rope_rule=rope_rule,
      image_padding=image_padding,
      video_padding=video_padding,
    )
  out["position_ids"] = np.asarray(out["position_ids"], np.int32)
  out["next_position"] = next_positions(out["position_ids"], mask, rope_rule).astype(np.int32)
  return out
