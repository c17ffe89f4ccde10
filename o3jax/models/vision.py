"""Qwen2.5-VL vision tower: patch embedding, 2-D rotary, window/full attention, merger.

Axis letters: N patches (window order), U merged units, S segments, L segment length,
D vision width, F vision MLP width, n heads, H head dim, P patch features (C*T*p*p),
E output width (the text model's width).

The tower runs on all patches of a batch at once (images concatenated), in the window
order given by a host-computed `VisionLayout`; see `vision_layout.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.models.attention import attention
from o3jax.models.config import VisionConfig
from o3jax.models.layers import (
  RMSNorm,
  apply_rotary,
  inverse_frequencies,
  param,
  scan_layers,
  stacked,
)
from o3jax.models.vision_layout import Segments, VisionLayout


def vision_rotary(rope_hw: jax.Array, cfg) -> tuple[jax.Array, jax.Array]:
  """cos, sin [N, 1, H] of (row, col) patch coordinates [N, 2]: rows rotate the first half
  of each half-dim, cols the second (Qwen2.5-VL and Qwen3-VL alike)."""
  inv = inverse_frequencies(cfg.head_dim // 2, cfg.rope_theta)
  freqs = rope_hw.astype(jnp.float32)[..., None] * inv  # [N, 2, H/4]
  freqs = freqs.reshape(freqs.shape[0], -1)
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, None, :]
  return jnp.cos(emb), jnp.sin(emb)


def segment_attention(q, k, v, seg: Segments, impl: str) -> jax.Array:
  """Attention restricted to segments. q, k, v [N, n, H] -> [N, n, H]; cost S*L^2.

  Each segment is gathered into a row of L tokens, valid up to its length (cu_seqlens
  style), so the mask is one length per row."""
  s, length = seg.tokens.shape
  lengths = seg.valid.sum(-1).astype(jnp.int32)
  out = attention(q[seg.tokens], k[seg.tokens], v[seg.tokens], kv_end=lengths, impl=impl)
  return out.reshape(s * length, *q.shape[1:])[seg.slot]


class VisionAttention(nnx.Module):
  def __init__(self, cfg: VisionConfig, *, dtype, param_dtype, impl: str, rngs: nnx.Rngs):
    d, n, h = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    self.qkv_kernel = param(
      rngs, (d, 3, n, h), ("vision_embed", None, "vision_heads", "head_dim"), param_dtype
    )
    self.qkv_bias = param(rngs, (3, n, h), (None, "vision_heads", "head_dim"), param_dtype, "zeros")
    self.out_kernel = param(
      rngs, (n, h, d), ("vision_heads", "head_dim", "vision_embed"), param_dtype
    )
    self.out_bias = param(rngs, (d,), ("vision_embed",), param_dtype, "zeros")
    self.dtype = dtype
    self.impl = impl

  def __call__(self, x, cos, sin, seg: Segments):
    dt = self.dtype
    qkv = jnp.einsum("ND,DcnH->cNnH", x, self.qkv_kernel[...].astype(dt))
    qkv = qkv + self.qkv_bias[...].astype(dt)[:, None]
    q, k, v = qkv[0], qkv[1], qkv[2]
    # The reference rotates in fp32 and casts back.
    q = apply_rotary(q.astype(jnp.float32), cos, sin).astype(dt)
    k = apply_rotary(k.astype(jnp.float32), cos, sin).astype(dt)
    out = segment_attention(q, k, v, seg, self.impl)
    return jnp.einsum("NnH,nHD->ND", out, self.out_kernel[...].astype(dt)) + self.out_bias[
      ...
    ].astype(dt)


class VisionMLP(nnx.Module):
  """SwiGLU with biases."""

  def __init__(self, cfg: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.gate_kernel = param(rngs, (d, f), ("vision_embed", "vision_mlp"), param_dtype)
    self.gate_bias = param(rngs, (f,), ("vision_mlp",), param_dtype, "zeros")
    self.up_kernel = param(rngs, (d, f), ("vision_embed", "vision_mlp"), param_dtype)
    self.up_bias = param(rngs, (f,), ("vision_mlp",), param_dtype, "zeros")
    self.down_kernel = param(rngs, (f, d), ("vision_mlp", "vision_embed"), param_dtype)
    self.down_bias = param(rngs, (d,), ("vision_embed",), param_dtype, "zeros")
    self.dtype = dtype

  def __call__(self, x):
    dt = self.dtype
    gate = x @ self.gate_kernel[...].astype(dt) + self.gate_bias[...].astype(dt)
    up = x @ self.up_kernel[...].astype(dt) + self.up_bias[...].astype(dt)
    return (jax.nn.silu(gate) * up) @ self.down_kernel[...].astype(dt) + self.down_bias[...].astype(
      dt
    )


class VisionBlock(nnx.Module):
  def __init__(self, cfg: VisionConfig, *, dtype, param_dtype, impl: str, rngs: nnx.Rngs):
    kw = dict(param_dtype=param_dtype, rngs=rngs)
    self.norm1 = RMSNorm(cfg.hidden_size, "vision_embed", cfg.rms_norm_eps, **kw)
    self.norm2 = RMSNorm(cfg.hidden_size, "vision_embed", cfg.rms_norm_eps, **kw)
    self.attn = VisionAttention(cfg, dtype=dtype, impl=impl, **kw)
    self.mlp = VisionMLP(cfg, dtype=dtype, **kw)

  def __call__(self, x, cos, sin, windows: Segments, frames: Segments, full: jax.Array):
    """`full` (a traced bool): attend within whole frames, else within windows."""
    h = self.norm1(x)
    x = x + jax.lax.cond(
      full,
      lambda: self.attn(h, cos, sin, frames),
      lambda: self.attn(h, cos, sin, windows),
    )
    return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
  """RMSNorm, then each 2x2 group of patches concatenated -> Linear -> GELU -> Linear."""

  def __init__(self, cfg: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    d, m = cfg.hidden_size * cfg.merge_unit, cfg.out_hidden_size
    self.norm = RMSNorm(
      cfg.hidden_size, "vision_embed", cfg.rms_norm_eps, param_dtype=param_dtype, rngs=rngs
    )
    self.fc1_kernel = param(rngs, (d, d), ("vision_merge", "vision_mlp"), param_dtype)
    self.fc1_bias = param(rngs, (d,), ("vision_mlp",), param_dtype, "zeros")
    self.fc2_kernel = param(rngs, (d, m), ("vision_mlp", "embed"), param_dtype)
    self.fc2_bias = param(rngs, (m,), ("embed",), param_dtype, "zeros")
    self.merge_unit = cfg.merge_unit
    self.dtype = dtype

  def __call__(self, x):
    dt = self.dtype
    x = self.norm(x).reshape(-1, self.merge_unit * x.shape[-1])
    x = x @ self.fc1_kernel[...].astype(dt) + self.fc1_bias[...].astype(dt)
    x = jax.nn.gelu(x, approximate=False)
    return x @ self.fc2_kernel[...].astype(dt) + self.fc2_bias[...].astype(dt)


class VisionTower(nnx.Module):
  def __init__(
    self,
    cfg: VisionConfig,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    attention_impl: str = "auto",
    remat: str = "none",
    rngs: nnx.Rngs,
  ):
    self.cfg = cfg
    self.dtype = dtype
    # The reference's Conv3d with stride == kernel is a linear map of the flattened patch.
    self.patch_kernel = param(
      rngs, (cfg.patch_dim, cfg.hidden_size), ("patch", "vision_embed"), param_dtype
    )
    self.blocks = stacked(
      lambda r: VisionBlock(cfg, dtype=dtype, param_dtype=param_dtype, impl=attention_impl, rngs=r),
      cfg.depth,
      rngs,
    )
    self.merger = PatchMerger(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.remat = remat

  def __call__(self, pixel_values: jax.Array, layout: VisionLayout) -> jax.Array:
    """pixel_values [N, P] in original patch order -> merged features [U, E], original order."""
    dt = self.dtype
    x = pixel_values.astype(dt)[layout.patch_order] @ self.patch_kernel[...].astype(dt)
    cos, sin = vision_rotary(layout.rope_hw, self.cfg)
    # Window and full-attention blocks interleave (fullatt_block_indexes): one scan over
    # all blocks, each told by a flag which segments it attends within.
    full = jnp.asarray(np.isin(np.arange(self.cfg.depth), self.cfg.fullatt_block_indexes))

    def step(block, x, is_full):
      return block(x, cos, sin, layout.windows, layout.frames, is_full)

    x = scan_layers(self.blocks, step, x, full, self.remat)
    return self.merger(x)[layout.unit_restore]
