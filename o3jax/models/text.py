"""Qwen2.5-VL text decoder: GQA with q/k/v bias, multimodal 3-D rotary, SwiGLU.

Axis letters: B batch, T query length, S key length (T, or the cache length when
decoding), D width, F MLP width, N query heads, K kv heads, G = N/K query heads per kv
head, H head dim, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from o3jax import sharding
from o3jax.models.config import TextConfig
from o3jax.models.layers import (
  RMSNorm,
  apply_rotary,
  inverse_frequencies,
  masked_softmax_attention,
  param,
)


class KVCache(NamedTuple):
  """Keys and values of every layer [layers, B, K, S, H]; slot s holds token position s.

  One stacked array per side, updated in place at (layer, slot): no per-layer slicing and
  re-stacking, and the slot axis next to H so attention reads it without a transpose."""

  k: jax.Array
  v: jax.Array


def mrope_cos_sin(positions: jax.Array, cfg: TextConfig, dtype) -> tuple[jax.Array, jax.Array]:
  """positions [3, B, T] -> cos, sin [B, T, 1, H].

  The H/2 frequencies are split into `mrope_section` chunks; chunk i takes its angle
  from the time, height or width row (i mod 3), then the halves are repeated.
  """
  inv = inverse_frequencies(cfg.head_dim, cfg.rope_theta)
  freqs = positions.astype(jnp.float32)[..., None] * inv  # [3, B, T, H/2]
  bounds = [sum(cfg.mrope_section[: i + 1]) for i in range(len(cfg.mrope_section) - 1)]
  chunks = jnp.split(freqs, bounds, axis=-1)
  freqs = jnp.concatenate([c[i % 3] for i, c in enumerate(chunks)], axis=-1)
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
  return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


class Attention(nnx.Module):
  def __init__(self, cfg: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    d, n, k, h = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    p = lambda shape, axes, init="normal": param(rngs, shape, axes, param_dtype, init)
    self.q_kernel = p((d, n, h), ("embed", "heads", "head_dim"))
    self.q_bias = p((n, h), ("heads", "head_dim"), "zeros")
    self.k_kernel = p((d, k, h), ("embed", "kv_heads", "head_dim"))
    self.k_bias = p((k, h), ("kv_heads", "head_dim"), "zeros")
    self.v_kernel = p((d, k, h), ("embed", "kv_heads", "head_dim"))
    self.v_bias = p((k, h), ("kv_heads", "head_dim"), "zeros")
    self.o_kernel = p((n, h, d), ("heads", "head_dim", "embed"))
    self.groups = n // k
    self.dtype = dtype

  def __call__(self, x, cos, sin, mask, cache: KVCache | None = None, layer=None, index=None):
    """x [B,T,D]; mask [B,T,S] bool. With `cache`, the new keys and values are written at
    (layer, slots index..index+T-1) and attention runs over all S slots of that layer."""
    dt = self.dtype
    proj = lambda kern, bias: (
      jnp.einsum("BTD,DnH->BTnH", x, kern[...].astype(dt)) + bias[...].astype(dt)
    )
    q = apply_rotary(proj(self.q_kernel, self.q_bias), cos, sin)
    k = jnp.einsum("BTKH->BKTH", apply_rotary(proj(self.k_kernel, self.k_bias), cos, sin))
    v = jnp.einsum("BTKH->BKTH", proj(self.v_kernel, self.v_bias))
    if cache is not None:
      at = (layer, 0, 0, index, 0)
      cache = KVCache(
        jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype)[None], at),
        jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype)[None], at),
      )
      k, v = cache.k[layer].astype(dt), cache.v[layer].astype(dt)
    b, t, n, h = q.shape
    q = jnp.einsum("BTKGH->BKGTH", q.reshape(b, t, -1, self.groups, h))
    out = masked_softmax_attention(
      q, k[:, :, None], v[:, :, None], mask[:, None, None], h**-0.5, dt
    )
    out = jnp.einsum("BKGTH->BTKGH", out).reshape(b, t, n, h)
    return jnp.einsum("BTnH,nHD->BTD", out, self.o_kernel[...].astype(dt)), cache


class MLP(nnx.Module):
  def __init__(self, cfg: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.gate_kernel = param(rngs, (d, f), ("embed", "mlp"), param_dtype)
    self.up_kernel = param(rngs, (d, f), ("embed", "mlp"), param_dtype)
    self.down_kernel = param(rngs, (f, d), ("mlp", "embed"), param_dtype)
    self.dtype = dtype

  def __call__(self, x):
    dt = self.dtype
    h = jax.nn.silu(x @ self.gate_kernel[...].astype(dt)) * (x @ self.up_kernel[...].astype(dt))
    h = sharding.constrain(h, ("batch", "length", "mlp"))
    return h @ self.down_kernel[...].astype(dt)


class DecoderLayer(nnx.Module):
  def __init__(self, cfg: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(param_dtype=param_dtype, rngs=rngs)
    self.input_norm = RMSNorm(cfg.hidden_size, "embed", cfg.rms_norm_eps, **kw)
    self.attn = Attention(cfg, dtype=dtype, **kw)
    self.post_attn_norm = RMSNorm(cfg.hidden_size, "embed", cfg.rms_norm_eps, **kw)
    self.mlp = MLP(cfg, dtype=dtype, **kw)

  def __call__(self, x, cos, sin, mask, cache=None, layer=None, index=None):
    h, cache = self.attn(self.input_norm(x), cos, sin, mask, cache, layer, index)
    x = x + h
    x = x + self.mlp(self.post_attn_norm(x))
    return sharding.constrain(x, ("batch", "length", "embed")), cache


class TextDecoder(nnx.Module):
  def __init__(
    self,
    cfg: TextConfig,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    remat: bool = False,
    rngs: nnx.Rngs,
  ):
    self.cfg = cfg
    self.dtype = dtype
    self.embed = param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), param_dtype)
    self.layers = nnx.List(
      [
        DecoderLayer(cfg, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for _ in range(cfg.num_hidden_layers)
      ]
    )
    self.norm = RMSNorm(
      cfg.hidden_size, "embed", cfg.rms_norm_eps, param_dtype=param_dtype, rngs=rngs
    )
    if not cfg.tie_word_embeddings:
      self.lm_head = param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), param_dtype)
    self.remat = remat

  def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
    return self.embed[...].astype(self.dtype)[input_ids]

  def logits(self, x: jax.Array) -> jax.Array:
    w = self.embed[...].T if self.cfg.tie_word_embeddings else self.lm_head[...]
    return x @ w.astype(self.dtype)

  def __call__(self, x, positions, mask, cache: KVCache | None = None, index=None):
    """x [B,T,D] embeddings, positions [3,B,T], mask [B,T,S] -> (hidden [B,T,D], cache)."""
    cos, sin = mrope_cos_sin(positions, self.cfg, self.dtype)
    x = sharding.constrain(x, ("batch", "length", "embed"))
    for i, layer in enumerate(self.layers):
      if self.remat and cache is None:
        # Functional split/merge around jax.checkpoint: only the layer input is kept for
        # the backward pass; everything inside the layer is recomputed.
        layer_def, layer_state = nnx.split(layer)
        x = jax.checkpoint(lambda st, *a: nnx.merge(layer_def, st)(*a)[0])(
          layer_state, x, cos, sin, mask
        )
      else:
        x, cache = layer(x, cos, sin, mask, cache, i, index)
    return self.norm(x), cache
