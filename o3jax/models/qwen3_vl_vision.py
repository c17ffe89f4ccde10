"""Qwen3-VL vision tower: patch embedding with bias, learned position embeddings resampled
to each grid, 2-D rotary, LayerNorm blocks attending within whole frames, patch merger,
and the deepstack features (intermediate blocks, each through its own merger).

Axis letters: N patches (the processor's order, padded), U merged units = N / m^2,
K deepstack taps, D vision width, F vision MLP width, P patch features, E output width.

Shared with Qwen2.5-VL's tower (`vision.py`): the attention (fused qkv with bias, output
projection with bias, attention within `Segments`), the 2-D rotary and the frame segments
of the layout. There are no windows, so patches stay in the processor's order.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.models.layers import param, scan_layers, stacked
from o3jax.models.qwen3_vl_config import Qwen3VisionConfig
from o3jax.models.vision import VisionAttention, vision_rotary
from o3jax.models.vision_layout import Segments, _segments, patch_coords


class Qwen3VisionLayout(NamedTuple):
  rope_hw: np.ndarray  # [N, 2] int32 (row, col) of each patch
  frames: Segments  # attention segments: one per frame
  pos_index: np.ndarray  # [N, 4] int32 rows of the learned position table (bilinear taps)
  pos_weight: np.ndarray  # [N, 4] float32 their weights (0 for padding patches)


def _axis_taps(index: np.ndarray, size: np.ndarray, side: int):
  """Bilinear taps into a `side`-long table for positions `index` of an axis of `size`,
  align_corners=True, in float32 as the reference (transformers' vision_utils)."""
  index = index.astype(np.float32)
  src = index * np.float32(side - 1) / np.maximum(size - 1, 1).astype(np.float32)
  floor = np.floor(src)
  offsets = np.arange(2)
  taps = np.clip(floor.astype(np.int64)[:, None] + offsets, 0, side - 1)
  weights = np.maximum(1 - np.abs(src[:, None] - floor[:, None] - offsets), 0)
  return taps, weights.astype(np.float32)


def position_taps(grid_thw: np.ndarray, m: int, side: int) -> tuple[np.ndarray, np.ndarray]:
  """[real patches, 4] indices into the flattened side x side position table and weights:
  bilinear resampling (align_corners) of the table to each frame's h x w grid."""
  grid_thw = np.asarray(grid_thw, np.int64).reshape(-1, 3)
  rc = patch_coords(grid_thw, m)
  counts = grid_thw.prod(-1)
  heights, widths = np.repeat(grid_thw[:, 1], counts), np.repeat(grid_thw[:, 2], counts)
  h_taps, h_w = _axis_taps(rc[:, 0], heights, side)
  w_taps, w_w = _axis_taps(rc[:, 1], widths, side)
  index = (h_taps[:, :, None] * side + w_taps[:, None, :]).reshape(-1, 4)
  weight = (h_w[:, :, None] * w_w[:, None, :]).reshape(-1, 4)
  return index.astype(np.int32), weight.astype(np.float32)


def vision_layout(
  grid_thw,
  cfg: Qwen3VisionConfig,
  *,
  num_patches: int | None = None,
  num_frames: int | None = None,
  frame_length: int | None = None,
) -> Qwen3VisionLayout:
  """Layout for the patches of `grid_thw` [n, 3] concatenated in order; the padding
  arguments fix the shapes as in `vision_layout.vision_layout`."""
  grid_thw = np.asarray(grid_thw, np.int64).reshape(-1, 3)
  m, mu = cfg.spatial_merge_size, cfg.merge_unit
  if np.any(grid_thw[:, 1:] % m):
    raise ValueError(f"grid h and w must be multiples of spatial_merge_size={m}: {grid_thw}")
  real = int(grid_thw.prod(-1).sum())
  n = real if num_patches is None else num_patches
  if n < real or n % mu:
    raise ValueError(f"num_patches={n} must be >= {real} real patches and a multiple of {mu}")
  pad = lambda x: np.concatenate([x, np.zeros((n - real, x.shape[1]), x.dtype)])
  index, weight = position_taps(grid_thw, m, cfg.num_grid_per_side)
  frame_lengths = [int(h * w) for t, h, w in grid_thw.tolist() for _ in range(t)]
  return Qwen3VisionLayout(
    rope_hw=pad(patch_coords(grid_thw, m)).astype(np.int32),
    frames=_segments(frame_lengths, n, num_frames, frame_length),
    pos_index=pad(index),
    pos_weight=pad(weight),
  )


class LayerNorm(nnx.Module):
  """LayerNorm with bias, normalised in fp32 (as torch does for half inputs)."""

  def __init__(self, dim: int, axis_name: str, eps: float, *, param_dtype, rngs: nnx.Rngs):
    self.scale = param(rngs, (dim,), (axis_name,), param_dtype, "ones")
    self.bias = param(rngs, (dim,), (axis_name,), param_dtype, "zeros")
    self.eps = eps

  def __call__(self, x):
    xf = x.astype(jnp.float32)
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(
      x.dtype
    )


def _act(name: str):
  if name == "gelu_pytorch_tanh":
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == "gelu":
    return lambda x: jax.nn.gelu(x, approximate=False)
  raise ValueError(f"unsupported vision activation {name!r}")


class Linear(nnx.Module):
  def __init__(self, din, dout, axes, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.kernel = param(rngs, (din, dout), axes, param_dtype)
    self.bias = param(rngs, (dout,), axes[1:], param_dtype, "zeros")
    self.dtype = dtype

  def __call__(self, x):
    return x @ self.kernel[...].astype(self.dtype) + self.bias[...].astype(self.dtype)


class VisionMLP(nnx.Module):
  def __init__(self, cfg: Qwen3VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.fc1 = Linear(d, f, ("vision_embed", "vision_mlp"), **kw)
    self.fc2 = Linear(f, d, ("vision_mlp", "vision_embed"), **kw)
    self.act = _act(cfg.hidden_act)

  def __call__(self, x):
    return self.fc2(self.act(self.fc1(x)))


class VisionBlock(nnx.Module):
  def __init__(self, cfg: Qwen3VisionConfig, *, dtype, param_dtype, impl: str, rngs: nnx.Rngs):
    kw = dict(param_dtype=param_dtype, rngs=rngs)
    self.norm1 = LayerNorm(cfg.hidden_size, "vision_embed", cfg.layer_norm_eps, **kw)
    self.norm2 = LayerNorm(cfg.hidden_size, "vision_embed", cfg.layer_norm_eps, **kw)
    self.attn = VisionAttention(cfg, dtype=dtype, impl=impl, **kw)
    self.mlp = VisionMLP(cfg, dtype=dtype, **kw)

  def __call__(self, x, cos, sin, frames: Segments):
    x = x + self.attn(self.norm1(x), cos, sin, frames)
    return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
  """Each m x m group of patches concatenated -> Linear -> GELU -> Linear, with a
  LayerNorm before the grouping (the final merger) or after it (the deepstack mergers)."""

  def __init__(self, cfg: Qwen3VisionConfig, postshuffle: bool, *, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    d = cfg.hidden_size * cfg.merge_unit
    norm_dim = d if postshuffle else cfg.hidden_size
    norm_axis = "vision_merge" if postshuffle else "vision_embed"
    self.norm = LayerNorm(
      norm_dim, norm_axis, cfg.layer_norm_eps, param_dtype=param_dtype, rngs=rngs
    )
    self.fc1 = Linear(d, d, ("vision_merge", "vision_mlp"), **kw)
    self.fc2 = Linear(d, cfg.out_hidden_size, ("vision_mlp", "embed"), **kw)
    self.postshuffle = postshuffle
    self.merge_unit = cfg.merge_unit

  def __call__(self, x):
    group = lambda y: y.reshape(-1, self.merge_unit * x.shape[-1])
    x = self.norm(group(x)) if self.postshuffle else group(self.norm(x))
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Qwen3VisionTower(nnx.Module):
  def __init__(
    self,
    cfg: Qwen3VisionConfig,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    attention_impl: str = "auto",
    remat: str = "none",
    rngs: nnx.Rngs,
  ):
    self.cfg = cfg
    self.dtype = dtype
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    # The reference's Conv3d with stride == kernel is a linear map of the flattened patch.
    self.patch = Linear(cfg.patch_dim, cfg.hidden_size, ("patch", "vision_embed"), **kw, rngs=rngs)
    self.pos_embed = param(
      rngs, (cfg.num_position_embeddings, cfg.hidden_size), (None, "vision_embed"), param_dtype
    )
    self.blocks = stacked(
      lambda r: VisionBlock(cfg, impl=attention_impl, **kw, rngs=r), cfg.depth, rngs
    )
    self.merger = PatchMerger(cfg, False, **kw, rngs=rngs)
    self.deepstack_mergers = stacked(
      lambda r: PatchMerger(cfg, True, **kw, rngs=r), len(cfg.deepstack_visual_indexes), rngs
    )
    self.remat = remat

  def __call__(self, pixel_values: jax.Array, layout: Qwen3VisionLayout):
    """pixel_values [N, P] -> (merged features [U, E], deepstack features [K, U, E])."""
    dt = self.dtype
    x = self.patch(pixel_values.astype(dt))
    pos = self.pos_embed[...].astype(jnp.float32)[layout.pos_index]  # [N, 4, D]
    x = x + (pos * layout.pos_weight[..., None]).sum(1).astype(dt)
    cos, sin = vision_rotary(layout.rope_hw, self.cfg)
    # Block i's output is deepstack tap slot[i] (-1: none), written into the carry [K, N, D].
    taps = self.cfg.deepstack_visual_indexes
    slot = np.full(self.cfg.depth, -1, np.int32)
    slot[list(taps)] = np.arange(len(taps))

    def step(block, carry, s):
      x, tapped = carry
      x = block(x, cos, sin, layout.frames)
      j = jnp.maximum(s, 0)
      kept = jax.lax.dynamic_index_in_dim(tapped, j, keepdims=False)
      tapped = jax.lax.dynamic_update_index_in_dim(tapped, jnp.where(s >= 0, x, kept), j, 0)
      return x, tapped

    tapped = jnp.zeros((len(taps), *x.shape), x.dtype)
    x, tapped = scan_layers(self.blocks, step, (x, tapped), jnp.asarray(slot), self.remat)
    graphdef, state = nnx.split(self.deepstack_mergers)
    deepstack = jax.vmap(lambda st, y: nnx.merge(graphdef, st)(y))(state, tapped)
    return self.merger(x), deepstack
