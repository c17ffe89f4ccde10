"""Host-side index arrays for the vision tower: window order, rotary positions, segments.

Everything data-dependent about a batch of images/videos (how many windows, which
patches share one, where each frame starts) is computed here with numpy from `grid_thw`
and passed to the jitted tower as arrays of fixed (optionally padded) shapes, so the
tower has no python loop over windows or frames and no `int()` of a traced value.

Axis letters: N patches (padded), U merged units = N / m^2, S segments, L segment length.

The reference tower reorders patches window by window (`window_index`), runs every block
on that order, attends within windows (or within whole frames in the full-attention
blocks), and restores the original order after the merger. Both kinds of attention
segments are contiguous runs of the window-ordered sequence, so each is described by a
gather `tokens [S, L]` (+ `valid [S, L]`) into the sequence and a scatter back
`slot [N]` into the flattened S*L layout: attention costs S*L^2, linear in the number of
windows, never N^2.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Segments(NamedTuple):
  tokens: np.ndarray  # [S, L] int32 positions in the window-ordered sequence
  valid: np.ndarray  # [S, L] bool
  slot: np.ndarray  # [N] int32 index into the flattened [S*L] layout


class VisionLayout(NamedTuple):
  patch_order: np.ndarray  # [N] int32: original patch index at each window-order position
  unit_restore: np.ndarray  # [U] int32: window-order unit index of each original unit
  rope_hw: np.ndarray  # [N, 2] int32 (row, col) patch coordinates, window order
  windows: Segments  # attention segments of the window blocks
  frames: Segments  # attention segments of the full-attention blocks


def _window_index(grid_thw: np.ndarray, merge: int, win: int) -> tuple[np.ndarray, list[int]]:
  """Unit-level window order and window lengths (in units), as the reference computes."""
  order, lengths, offset = [], [], 0
  for t, h, w in grid_thw.tolist():
    lh, lw = h // merge, w // merge
    index = np.arange(t * lh * lw).reshape(t, lh, lw)
    # The reference always pads by (win - size % win), adding an empty window row when
    # the size divides evenly; empty windows vanish below, so the result is the same.
    ph, pw = win - lh % win, win - lw % win
    nh, nw = (lh + ph) // win, (lw + pw) // win
    padded = np.pad(index, ((0, 0), (0, ph), (0, pw)), constant_values=-1)
    padded = padded.reshape(t, nh, win, nw, win).transpose(0, 1, 3, 2, 4)
    padded = padded.reshape(t, nh * nw, win * win)
    counts = (padded >= 0).sum(-1).reshape(-1)
    flat = padded.reshape(-1)
    order.append(flat[flat >= 0] + offset)
    lengths.extend(int(c) for c in counts if c > 0)
    offset += t * lh * lw
  return (np.concatenate(order) if order else np.zeros(0, np.int64)), lengths


def _segments(
  lengths: list[int], n: int, pad_segments: int | None, pad_length: int | None
) -> Segments:
  s = max(len(lengths), 1) if pad_segments is None else pad_segments
  length = max(lengths, default=1) if pad_length is None else pad_length
  if len(lengths) > s or max(lengths, default=0) > length:
    raise ValueError(
      f"{len(lengths)} segments of up to {max(lengths, default=0)} tokens do "
      f"not fit the padded layout of {s} x {length}"
    )
  tokens = np.zeros((s, length), np.int32)
  valid = np.zeros((s, length), bool)
  slot = np.zeros((n,), np.int32)  # padding patches read slot 0; their output is unused
  start = 0
  for i, size in enumerate(lengths):
    tokens[i, :size] = np.arange(start, start + size)
    valid[i, :size] = True
    slot[start : start + size] = i * length + np.arange(size)
    start += size
  return Segments(tokens, valid, slot)


def patch_coords(grid_thw: np.ndarray, m: int) -> np.ndarray:
  """[real patches, 2] (row, col) of every patch in the processor's order: frame by frame,
  merged-unit-major (the m x m patches of a unit are consecutive), as the reference."""
  coords = []
  for t, h, w in np.asarray(grid_thw).reshape(-1, 3).tolist():
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    blk = (h // m, m, w // m, m)
    rc = np.stack(
      [
        rows.reshape(blk).transpose(0, 2, 1, 3).reshape(-1),
        cols.reshape(blk).transpose(0, 2, 1, 3).reshape(-1),
      ],
      -1,
    )
    coords.append(np.tile(rc, (t, 1)))
  return np.concatenate(coords) if coords else np.zeros((0, 2), np.int64)


def vision_layout(
  grid_thw,
  *,
  spatial_merge_size: int = 2,
  window_merge_units: int = 4,
  num_patches: int | None = None,
  num_windows: int | None = None,
  window_length: int | None = None,
  num_frames: int | None = None,
  frame_length: int | None = None,
) -> VisionLayout:
  """Layout for the patches of `grid_thw` [n, 3] concatenated in order.

  `num_patches` pads the sequence (padding patches go last and belong to no segment);
  the `num_*`/`*_length` arguments pad the segment layouts to fixed shapes so that a
  training run compiles once per bucket. Defaults are the exact sizes.
  """
  grid_thw = np.asarray(grid_thw, np.int64).reshape(-1, 3)
  m = spatial_merge_size
  mu = m * m
  if np.any(grid_thw[:, 1:] % m):
    raise ValueError(f"grid h and w must be multiples of spatial_merge_size={m}: {grid_thw}")
  real = int((grid_thw[:, 0] * grid_thw[:, 1] * grid_thw[:, 2]).sum())
  n = real if num_patches is None else num_patches
  if n < real or n % mu:
    raise ValueError(f"num_patches={n} must be >= {real} real patches and a multiple of {mu}")
  unit_order, win_lengths = _window_index(grid_thw, m, window_merge_units)
  units = n // mu
  unit_order = np.concatenate([unit_order, np.arange(real // mu, units)])
  patch_order = (unit_order[:, None] * mu + np.arange(mu)).reshape(-1)
  unit_restore = np.argsort(unit_order)

  coords = np.concatenate([patch_coords(grid_thw, m), np.zeros((n - real, 2), np.int64)])
  rope_hw = coords[patch_order]

  frame_lengths = [int(h * w) for t, h, w in grid_thw.tolist() for _ in range(t)]
  max_win = window_merge_units**2 * mu
  return VisionLayout(
    patch_order=patch_order.astype(np.int32),
    unit_restore=unit_restore.astype(np.int32),
    rope_hw=rope_hw.astype(np.int32),
    windows=_segments(
      [c * mu for c in win_lengths],
      n,
      num_windows,
      window_length if window_length is not None else max_win,
    ),
    frames=_segments(frame_lengths, n, num_frames, frame_length),
  )


def layout_for(config, grid_thw, **padding):
  """`vision_layout` with the merge and window sizes of a model config; for a Qwen3-VL
  config its `qwen3_vl_vision.vision_layout` (whose tower has no windows: the window
  padding sizes do not apply)."""
  v = config.vision
  if config.model_type == "qwen3_vl":
    from o3jax.models import qwen3_vl_vision

    padding = {k: x for k, x in padding.items() if k not in ("num_windows", "window_length")}
    return qwen3_vl_vision.vision_layout(grid_thw, v, **padding)
  return vision_layout(
    grid_thw,
    spatial_merge_size=v.spatial_merge_size,
    window_merge_units=v.window_merge_units,
    **padding,
  )
