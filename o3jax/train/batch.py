"""Pipeline batches -> model inputs with a leading micro-batch axis (host side, numpy).

A pipeline batch (see `o3jax/data/pipeline.py`) concatenates the patches of all its rows.
Here each row's patches are moved to a row of their own ([B, N, P], N the per-row patch
bucket) with that row's vision layout, so vision is split over the mesh like the tokens;
the rows are grouped into M micro-batches; the 3-D positions and vision layouts are
computed on the host and padded to sizes that depend only on the bucket (and, for the
window and frame counts, a power-of-two round-up), so a run compiles a handful of times.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from o3jax.models.config import Qwen2_5_VLConfig
from o3jax.models.rope_index import rope_index_for
from o3jax.models.vision_layout import layout_for


def _round_up(x: int, m: int) -> int:
  return max(m, -(-x // m) * m)


def _pow2(x: int, least: int = 8) -> int:
  return max(least, 1 << (max(x, 1) - 1).bit_length())


def _split_vision(tokens_per_row: np.ndarray, grids: np.ndarray, merge_unit: int):
  """Per row: (grid rows, patch count) for a modality, from its pad-token counts."""
  sizes = grids.prod(-1)
  out, g = [], 0
  for need in tokens_per_row:
    rows, have = [], 0
    while have < need * merge_unit:
      if g >= len(grids) or sizes[g] == 0:
        raise ValueError("batch grids hold fewer patches than the rows' pad tokens")
      rows.append(g)
      have += int(sizes[g])
      g += 1
    if have != need * merge_unit:
      raise ValueError("a row's pad tokens do not match whole grids")
    out.append((rows, have))
  return out


def _layout_needs(cfg, grid_list) -> tuple[int, int, int]:
  """(windows, frames, frame length) the layout of every row must hold: the largest over
  the rows (no windows in a Qwen3-VL tower: `layout_for` drops their count)."""
  v = cfg.vision
  wm = getattr(v, "window_merge_units", 1)
  windows = frames = 0
  frame_len = 1
  for grids in grid_list:
    row_windows = row_frames = 0
    for t, h, w in grids.tolist():
      lh, lw = h // v.spatial_merge_size, w // v.spatial_merge_size
      row_windows += t * -(-lh // wm) * -(-lw // wm)
      row_frames += t
      frame_len = max(frame_len, h * w)
    windows, frames = max(windows, row_windows), max(frames, row_frames)
  return windows, frames, frame_len


def _vision_rows(cfg, batch, kind, ids, mask):
  """Per row of the batch: (indices of its grids, first patch, patch count) for a kind."""
  grids = np.asarray(batch[_GRID[kind]]).reshape(-1, 3)
  counts = ((ids == _TOKEN[kind](cfg)) & mask.astype(bool)).sum(-1)
  starts = np.concatenate([[0], np.cumsum(grids.prod(-1))])
  return [
    (g, int(starts[g[0]]) if g else 0, n)
    for g, n in _split_vision(counts, grids, cfg.vision.merge_unit)
  ]


_KINDS = ("image", "video")
NEEDS_PER_KIND = 5  # present, patches per row, windows, frames, frame length


def vision_needs(
  cfg: Qwen2_5_VLConfig,
  batch: dict[str, Any],
  ids_key: str = "input_ids",
  mask_key: str = "attention_mask",
) -> list[int]:
  """What the vision padding of `batch`'s rows must hold, per kind (image, video):
  whether any row has one, the per-row patch bucket, and the largest window count, frame
  count and frame length of a row. `model_batch` pads to these; processes that build
  their own rows of one global batch pass it the elementwise maximum of theirs
  (`o3jax.distributed.agree_max`), so their arrays stack."""
  ids, mask = np.asarray(batch[ids_key]), np.asarray(batch[mask_key])
  out = []
  for k in _KINDS:
    if not ((ids == _TOKEN[k](cfg)) & mask.astype(bool)).any():
      out += [0] * NEEDS_PER_KIND
      continue
    split = _vision_rows(cfg, batch, k, ids, mask)
    pixels = np.asarray(batch[_PIXELS[k]])
    n = _round_up(max([len(pixels) // len(ids)] + [c for _, _, c in split]), cfg.vision.merge_unit)
    grids = np.asarray(batch[_GRID[k]]).reshape(-1, 3)
    out += [1, n, *_layout_needs(cfg, [grids[g] for g, _, _ in split])]
  return out


def model_batch(
  cfg: Qwen2_5_VLConfig,
  batch: dict[str, Any],
  micro_batches: int = 1,
  ids_key: str = "input_ids",
  mask_key: str = "attention_mask",
  rope_rule: str = "qwen",
  group: int = 1,
  needs: list[int] | None = None,
) -> dict[str, Any]:
  """Stacked [M, b, ...] inputs: input_ids, attention_mask, position_ids [M,3,b,T],
  loss_mask (when present), and per kind present pixel_values [M, b, N, P] + image_layout
  (leaves [M, b, ...]), likewise pixel_values_videos + video_layout: each row's patches
  and layout padded to one bucket N (the pipeline's per-row patch bucket), so the rows,
  and their vision, split over the mesh's batch axes like the tokens
  (`o3jax.models.vision_rows`).

  With `group` > 1, consecutive groups of `group` rows share one prompt (GSPO's G
  rollouts): vision is kept once per group, pixels [M, b/group, N, P], and
  `vision_row` [M, b] names each row's, so the tower encodes each prompt once.

  `needs` (`vision_needs`, default this batch's own) fixes which kinds are present and
  their padding."""
  ids, mask = np.asarray(batch[ids_key]), np.asarray(batch[mask_key])
  b = ids.shape[0]
  if b % micro_batches:
    raise ValueError(f"batch of {b} rows does not split into {micro_batches} micro-batches")
  per = b // micro_batches
  if per % group:
    raise ValueError(f"micro-batches of {per} rows do not hold whole groups of {group}")
  if needs is None:
    needs = vision_needs(cfg, batch, ids_key, mask_key)
  need = {k: needs[i * NEEDS_PER_KIND : (i + 1) * NEEDS_PER_KIND] for i, k in enumerate(_KINDS)}
  kinds = [k for k in _KINDS if need[k][0]]
  split = {k: _vision_rows(cfg, batch, k, ids, mask) for k in kinds}

  micro = []
  for m in range(micro_batches):
    rows = np.arange(m * per, (m + 1) * per)
    item = {"input_ids": ids[rows], "attention_mask": mask[rows]}
    if "loss_mask" in batch:
      item["loss_mask"] = np.asarray(batch["loss_mask"])[rows]
    grids, sec = {}, None
    for k in kinds:
      idx = np.asarray([g for r in rows for g in split[k][r][0]], np.int64)
      grids[k] = np.asarray(batch[_GRID[k]]).reshape(-1, 3)[idx]
      if k == "video" and "second_per_grid_ts" in batch:
        sec = np.asarray(batch["second_per_grid_ts"])[idx]
    item["position_ids"], _ = rope_index_for(
      cfg,
      item["input_ids"],
      item["attention_mask"],
      grids.get("image"),
      grids.get("video"),
      sec,
      rule=rope_rule,
    )
    micro.append(item)
  out: dict[str, Any] = {k: np.stack([it[k] for it in micro]) for k in micro[0]}

  for k in kinds:
    pixels = np.asarray(batch[_PIXELS[k]])
    all_grids = np.asarray(batch[_GRID[k]]).reshape(-1, 3)
    _, n, windows, frames, frame_len = need[k]
    row_grids = [all_grids[g] for g, _, _ in split[k]]
    # Counts round up to powers of two: at most a few distinct shapes (compilations) per
    # bucket, at the price of at most 2x the (small) window-attention work.
    pad = dict(
      num_patches=n,
      num_windows=_pow2(windows),
      num_frames=_pow2(frames),
      frame_length=_round_up(frame_len, 16),
    )
    kept = range(0, b, group)  # the first row of each group stands for the group
    row_pixels = np.zeros((len(kept), n, pixels.shape[1]), pixels.dtype)
    for i, r in enumerate(kept):
      _, first, count = split[k][r]
      row_pixels[i, :count] = pixels[first : first + count]
    layouts = [layout_for(cfg, row_grids[r].reshape(-1, 3), **pad) for r in kept]
    vp = per // group
    out[_PIXELS[k]] = row_pixels.reshape(micro_batches, vp, *row_pixels.shape[1:])
    out[f"{k}_layout"] = _stack(
      [_stack(layouts[m * vp : (m + 1) * vp]) for m in range(micro_batches)]
    )
  if group > 1 and kinds:
    out["vision_row"] = np.tile(np.arange(per, dtype=np.int32) // group, (micro_batches, 1))
  return out


_TOKEN = {"image": lambda c: c.image_token_id, "video": lambda c: c.video_token_id}
_PIXELS = {"image": "pixel_values", "video": "pixel_values_videos"}
_GRID = {"image": "image_grid_thw", "video": "video_grid_thw"}


def _stack(items):
  first = items[0]
  if isinstance(first, tuple) and hasattr(first, "_fields"):
    return type(first)(*[_stack([it[i] for it in items]) for i in range(len(first))])
  return np.stack(items)


def select_rows(
  cfg: Qwen2_5_VLConfig,
  batch: dict[str, Any],
  rows,
  ids_key: str = "input_ids",
  mask_key: str = "attention_mask",
) -> dict[str, Any]:
  """The pipeline batch made of rows `rows` of `batch` (repeats allowed), in that order,
  with each row's images/videos moved along; vision arrays keep their per-row padding."""
  rows = np.asarray(rows)
  ids, mask = np.asarray(batch[ids_key]), np.asarray(batch[mask_key])
  scale = len(rows) / ids.shape[0]
  out = {ids_key: ids[rows], mask_key: mask[rows]}
  for tok, pv_key, grid_key, sec_key in (
    (cfg.image_token_id, "pixel_values", "image_grid_thw", None),
    (cfg.video_token_id, "pixel_values_videos", "video_grid_thw", "second_per_grid_ts"),
  ):
    if grid_key not in batch:
      continue
    pixels, grids = np.asarray(batch[pv_key]), np.asarray(batch[grid_key]).reshape(-1, 3)
    counts = ((ids == tok) & mask.astype(bool)).sum(-1)
    per_row = _split_vision(counts, grids, cfg.vision.merge_unit)
    starts = np.concatenate([[0], np.cumsum(grids.prod(-1))])
    grid_rows = [g for r in rows for g in per_row[r][0]]
    parts = [pixels[starts[g] : starts[g + 1]] for g in grid_rows]
    new_pixels = np.zeros((int(len(pixels) * scale), pixels.shape[1]), pixels.dtype)
    if parts:
      joined = np.concatenate(parts)
      new_pixels[: len(joined)] = joined
    new_grids = np.zeros((int(len(grids) * scale), 3), grids.dtype)
    new_grids[: len(grid_rows)] = grids[grid_rows]
    out[pv_key], out[grid_key] = new_pixels, new_grids
    if sec_key and sec_key in batch:
      sec = np.asarray(batch[sec_key])
      new_sec = np.zeros(int(len(sec) * scale), sec.dtype)
      new_sec[: len(grid_rows)] = sec[grid_rows]
      out[sec_key] = new_sec
  return out
