"""Qwen2.5-VL and Qwen3-VL text decoder: GQA, multimodal 3-D rotary, SwiGLU.

Qwen2.5-VL: q/k/v biases, chunked rotary rows. Qwen3-VL (config switches): no biases,
RMSNorm on each q and k head, interleaved rotary rows, deepstack vision features added
to the first layers' outputs.

Axis letters: B batch, T query length, S key length (T, or the cache length when
decoding), D width, F MLP width, N query heads, K kv heads, G = N/K query heads per kv
head, H head dim, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax import sharding
from o3jax.models.config import TextConfig
from o3jax.models.attention import Mask, attention, padding_range
from o3jax.models.layers import (
  RMSNorm,
  apply_rotary,
  inverse_frequencies,
  param,
  scan_layers,
  stacked,
)


class KVCache(NamedTuple):
  """Keys and values of every layer [layers, B, S, K, H]; slot s holds token position s.

  One stacked array per side, carried through the layer scan and updated in place at
  (layer, slot); a layer's slice is in the [B, S, K, H] layout attention reads."""

  k: jax.Array
  v: jax.Array


def mrope_rows(cfg: TextConfig) -> np.ndarray:
  """[H/2] which position row (0 time, 1 height, 2 width) each frequency takes its angle from.

  Chunked (Qwen2.5-VL): the frequencies split into `mrope_section` chunks, chunk i on row
  i mod 3. Interleaved (Qwen3-VL): frequency j is on row j mod 3 while j < 3 * section of
  that row, the rest on the time row."""
  half = cfg.head_dim // 2
  sec = cfg.mrope_section
  if cfg.mrope_interleaved:
    j = np.arange(half)
    rows = np.zeros(half, np.int32)
    for r in (1, 2):
      rows[(j % 3 == r) & (j < 3 * sec[r])] = r
    return rows
  return np.concatenate([np.full(n, i % 3, np.int32) for i, n in enumerate(sec)])[:half]


def mrope_cos_sin(positions: jax.Array, cfg: TextConfig, dtype) -> tuple[jax.Array, jax.Array]:
  """positions [3, B, T] -> cos, sin [B, T, 1, H]: frequency j rotates by the position of
  row `mrope_rows(cfg)[j]`, then the halves are repeated."""
  inv = inverse_frequencies(cfg.head_dim, cfg.rope_theta)
  freqs = positions.astype(jnp.float32)[..., None] * inv  # [3, B, T, H/2]
  rows = jnp.asarray(mrope_rows(cfg))
  freqs = jnp.where(rows == 0, freqs[0], jnp.where(rows == 1, freqs[1], freqs[2]))
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
  return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


class Attention(nnx.Module):
  def __init__(self, cfg: TextConfig, *, dtype, param_dtype, impl: str, rngs: nnx.Rngs):
    d, n, k, h = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    p = lambda shape, axes, init="normal": param(rngs, shape, axes, param_dtype, init)
    self.q_kernel = p((d, n, h), ("embed", "heads", "head_dim"))
    self.k_kernel = p((d, k, h), ("embed", "kv_heads", "head_dim"))
    self.v_kernel = p((d, k, h), ("embed", "kv_heads", "head_dim"))
    self.o_kernel = p((n, h, d), ("heads", "head_dim", "embed"))
    if cfg.attention_bias:
      self.q_bias = p((n, h), ("heads", "head_dim"), "zeros")
      self.k_bias = p((k, h), ("kv_heads", "head_dim"), "zeros")
      self.v_bias = p((k, h), ("kv_heads", "head_dim"), "zeros")
    if cfg.qk_norm:
      norm = lambda: RMSNorm(h, "head_dim", cfg.rms_norm_eps, param_dtype=param_dtype, rngs=rngs)
      self.q_norm, self.k_norm = norm(), norm()
    self.bias, self.qk_norm = cfg.attention_bias, cfg.qk_norm
    self.groups = n // k
    self.dtype = dtype
    self.impl = impl

  def __call__(self, x, cos, sin, mask: Mask, cache: KVCache | None = None, layer=None):
    """x [B,T,D]. With `cache`, the new keys and values are written at (layer, slots
    mask.q_offset ..+T-1) and attention runs over all S slots of that layer."""
    dt = self.dtype

    def proj(name):
      y = jnp.einsum("BTD,DnH->BTnH", x, getattr(self, name + "_kernel")[...].astype(dt))
      return y + getattr(self, name + "_bias")[...].astype(dt) if self.bias else y

    q, k = proj("q"), proj("k")
    if self.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    q, k, v = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), proj("v")
    if cache is not None:
      at = (layer, 0, mask.q_offset, 0, 0)
      cache = KVCache(
        jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype)[None], at),
        jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype)[None], at),
      )
      k, v = cache.k[layer].astype(dt), cache.v[layer].astype(dt)
    out = attention(q, k, v, **mask._asdict(), impl=self.impl)
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
  def __init__(self, cfg: TextConfig, *, dtype, param_dtype, impl: str, rngs: nnx.Rngs):
    kw = dict(param_dtype=param_dtype, rngs=rngs)
    self.input_norm = RMSNorm(cfg.hidden_size, "embed", cfg.rms_norm_eps, **kw)
    self.attn = Attention(cfg, dtype=dtype, impl=impl, **kw)
    self.post_attn_norm = RMSNorm(cfg.hidden_size, "embed", cfg.rms_norm_eps, **kw)
    self.mlp = MLP(cfg, dtype=dtype, **kw)

  def __call__(self, x, cos, sin, mask: Mask, cache=None, layer=None):
    h, cache = self.attn(self.input_norm(x), cos, sin, mask, cache, layer)
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
    attention_impl: str = "auto",
    remat: str = "none",
    rngs: nnx.Rngs,
  ):
    self.cfg = cfg
    self.dtype = dtype
    self.embed = param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), param_dtype)
    self.layers = stacked(
      lambda r: DecoderLayer(
        cfg, dtype=dtype, param_dtype=param_dtype, impl=attention_impl, rngs=r
      ),
      cfg.num_hidden_layers,
      rngs,
    )
    self.norm = RMSNorm(
      cfg.hidden_size, "embed", cfg.rms_norm_eps, param_dtype=param_dtype, rngs=rngs
    )
    if not cfg.tie_word_embeddings:
      self.lm_head = param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), param_dtype)
    self.remat = remat

  def embed_tokens(self, input_ids: jax.Array) -> jax.Array:
    return self.embed[...].astype(self.dtype)[input_ids]

  def head_weight(self) -> jax.Array:
    """The LM head [D, V] in the parameter dtype."""
    return self.embed[...].T if self.cfg.tie_word_embeddings else self.lm_head[...]

  def logits(self, x: jax.Array) -> jax.Array:
    return x @ self.head_weight().astype(self.dtype)

  def __call__(self, x, positions, mask: Mask, cache: KVCache | None = None, deepstack=None):
    """x [B,T,D] embeddings, positions [3,B,T] -> (hidden [B,T,D] after the final norm,
    cache). The layers run under a scan; with `cache` (decoding) without remat.

    `deepstack` [K,B,T,D] (Qwen3-VL): added to the output of decoder layer i < K (vision
    features at the vision tokens, zeros elsewhere); indexed by the scanned layer index."""
    cos, sin = mrope_cos_sin(positions, self.cfg, self.dtype)
    x = sharding.constrain(x, ("batch", "length", "embed"))

    def step(layer, carry, i):
      x, cache = carry
      x, cache = layer(x, cos, sin, mask, cache, i)
      if deepstack is not None:
        k = deepstack.shape[0]
        add = jax.lax.dynamic_index_in_dim(deepstack, jnp.minimum(i, k - 1), keepdims=False)
        x = x + jnp.where(i < k, add.astype(x.dtype), 0)
      return x, cache

    x, cache = scan_layers(
      self.layers,
      step,
      (x, cache),
      jnp.arange(self.cfg.num_hidden_layers),
      self.remat if cache is None else "none",
    )
    return self.norm(x), cache

  # ---------------------------------------------------------------- decoding with a cache

  def init_cache(self, batch: int, max_length: int, dtype=None) -> KVCache:
    c = self.cfg
    shape = (c.num_hidden_layers, batch, max_length, c.num_key_value_heads, c.head_dim)
    dtype = dtype or self.dtype
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

  def forward_cached(
    self, x, position_ids, cache_mask, cache: KVCache, index, last_only=False, deepstack=None
  ):
    """Run embeddings x [B,T,D] at cache slots index..index+T-1.

    `cache_mask` [B, S] marks the slots holding real tokens (prompt padding is 0); a query
    at slot index+t sees real slots <= index+t. Returns (logits [B,T,V], new cache), or
    the logits of the last column only ([B,1,V]) with `last_only` (a prefill).
    `deepstack` (Qwen3-VL's prefill) as in `__call__`.
    """
    start, end = padding_range(cache_mask)
    mask = Mask(causal=True, q_offset=index, kv_start=start, kv_end=end)
    h, cache = self(x, position_ids, mask, cache, deepstack)
    return self.logits(h[:, -1:] if last_only else h), cache
