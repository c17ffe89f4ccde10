"""Multimodal rotary position ids (`get_rope_index`), computed on the host with numpy.

Text tokens get the same id on the three rows (time, height, width). A vision block of
grid (t, h, w) patches covers t*h*w/m^2 tokens (m = spatial merge) laid out t-major; its
ids start at the position `p` that the text before it reached:
  time   = p + floor(k * second_per_grid_t * tokens_per_second)  (images: k only, t = 1)
  height = p + row,  width = p + column  (in merged units)
Text after the block resumes at
  rule="qwen"          (default; Qwen's original code, transformers 4.x, vLLM):
                       max(ids of the block) + 1
  rule="transformers5" (transformers >= 5.3): p + max(h, w) / m
Padding (attention_mask 0) gets id 1 under "qwen" (as transformers 4.x) and 0 under
"transformers5"; it never matters since padded keys are masked.
"""

from __future__ import annotations

import numpy as np

RULES = ("qwen", "transformers5")


def _time_ids(
  llm_t: int, second_per_grid_t: float, tokens_per_second: float, rule: str, is_video: bool
) -> np.ndarray:
  k = np.arange(llm_t)
  if not is_video:
    return k.astype(np.int64)
  # Mirror the reference float32 arithmetic, including its association order, so the
  # floor lands on the same integer.
  s = np.float32(second_per_grid_t)
  tps = np.float32(tokens_per_second)
  if rule == "qwen":
    t = (k.astype(np.float32) * s) * tps
  else:
    t = k.astype(np.float32) * (tps * s)
  return np.floor(t).astype(np.int64)


def get_rope_index(
  input_ids: np.ndarray,
  *,
  image_token_id: int,
  video_token_id: int,
  spatial_merge_size: int = 2,
  tokens_per_second: float = 2,
  attention_mask: np.ndarray | None = None,
  image_grid_thw: np.ndarray | None = None,
  video_grid_thw: np.ndarray | None = None,
  second_per_grid_ts: np.ndarray | None = None,
  rule: str = "qwen",
) -> tuple[np.ndarray, np.ndarray]:
  """Returns (position_ids [3, B, T] int32, rope_deltas [B, 1] int32).

  Images and videos are consumed in order across the batch, as in transformers.
  `rope_deltas` is max(id) + 1 - (number of real tokens): the offset that decoding adds to
  the plain token index of each new token.
  """
  if rule not in RULES:
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
  input_ids = np.asarray(input_ids)
  if input_ids.ndim != 2:
    raise ValueError(f"input_ids must be [batch, length], got shape {input_ids.shape}")
  b, n = input_ids.shape
  mask = (
    np.ones_like(input_ids, dtype=bool)
    if attention_mask is None
    else np.asarray(attention_mask).astype(bool)
  )
  grids = {
    image_token_id: iter(
      np.asarray(image_grid_thw).reshape(-1, 3).tolist() if image_grid_thw is not None else []
    ),
    video_token_id: iter(
      np.asarray(video_grid_thw).reshape(-1, 3).tolist() if video_grid_thw is not None else []
    ),
  }
  seconds = iter(
    np.asarray(second_per_grid_ts, np.float32).reshape(-1).tolist()
    if second_per_grid_ts is not None
    else []
  )
  m = spatial_merge_size
  position_ids = np.full((3, b, n), 1 if rule == "qwen" else 0, np.int64)
  deltas = np.zeros((b, 1), np.int64)
  for row in range(b):
    ids = input_ids[row][mask[row]]
    pieces, pos, i = [], 0, 0
    is_vision = (ids == image_token_id) | (ids == video_token_id)
    while i < len(ids):
      if not is_vision[i]:
        j = i
        while j < len(ids) and not is_vision[j]:
          j += 1
        pieces.append(np.broadcast_to(np.arange(pos, pos + j - i), (3, j - i)))
        pos += j - i
        i = j
        continue
      tok = int(ids[i])
      kind = "image" if tok == image_token_id else "video"
      try:
        t, h, w = next(grids[tok])
      except StopIteration:
        raise ValueError(
          f"batch row {row}: more {kind} blocks in input_ids than rows in {kind}_grid_thw"
        ) from None
      lt, lh, lw = t, h // m, w // m
      count = lt * lh * lw
      if not np.all(ids[i : i + count] == tok):
        raise ValueError(
          f"batch row {row}: {kind} block at token {i} has fewer than "
          f"{count} pad tokens required by grid {(t, h, w)}"
        )
      sec = next(seconds, 1.0) if kind == "video" else 0.0
      tt = _time_ids(lt, sec, tokens_per_second, rule, kind == "video")
      block = (
        np.stack(
          [
            np.repeat(tt, lh * lw),
            np.tile(np.repeat(np.arange(lh), lw), lt),
            np.tile(np.arange(lw), lt * lh),
          ]
        )
        + pos
      )
      pieces.append(block)
      pos = int(block.max()) + 1 if rule == "qwen" else pos + max(lh, lw)
      i += count
    full = np.concatenate(pieces, axis=1) if pieces else np.zeros((3, 0), np.int64)
    position_ids[:, row, mask[row]] = full
    deltas[row, 0] = (int(full.max()) + 1 if full.size else 0) - len(ids)
  return position_ids.astype(np.int32), deltas.astype(np.int32)


def rope_index_for(
  config,
  input_ids,
  attention_mask=None,
  image_grid_thw=None,
  video_grid_thw=None,
  second_per_grid_ts=None,
  rule: str = "qwen",
):
  """`get_rope_index` with the token ids and vision settings of a model config.

  Qwen3-VL (transformers' Qwen3VLModel.get_rope_index): every video frame is its own
  block after its timestamp text (grid (1, h, w), time id = the block's start), and text
  resumes at start + max(h, w) / m, which is also max(block ids) + 1: both rules agree."""
  if config.model_type == "qwen3_vl" and video_grid_thw is not None:
    grid = np.asarray(video_grid_thw).reshape(-1, 3)
    video_grid_thw = np.repeat(grid, grid[:, 0], axis=0)
    video_grid_thw[:, 0] = 1
    second_per_grid_ts = None
  return get_rope_index(
    input_ids,
    image_token_id=config.image_token_id,
    video_token_id=config.video_token_id,
    spatial_merge_size=config.vision.spatial_merge_size,
    tokens_per_second=getattr(config.vision, "tokens_per_second", 1.0),  # Qwen3-VL: unused
    attention_mask=attention_mask,
    image_grid_thw=image_grid_thw,
    video_grid_thw=video_grid_thw,
    second_per_grid_ts=second_per_grid_ts,
    rule=rule,
  )
