"""Building blocks shared by the vision tower and the text decoder.

Parameters are created with `param(...)`, which attaches logical axis names (see
`o3jax/sharding.py` for the rules that map them onto the mesh). Weights are kept in
`param_dtype` and cast to the compute `dtype` where they are used, so bf16 compute runs
on fp32 master weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

INIT_STD = 0.02  # transformers' initializer_range


def param(rngs: nnx.Rngs, shape, axes: tuple, dtype, init: str = "normal") -> nnx.Param:
  if len(shape) != len(axes):
    raise ValueError(f"shape {shape} and logical axes {axes} differ in rank")
  if init == "normal":
    value = INIT_STD * jax.random.normal(rngs.params(), shape, dtype)
  elif init == "zeros":
    value = jnp.zeros(shape, dtype)
  elif init == "ones":
    value = jnp.ones(shape, dtype)
  else:
    raise ValueError(f"unknown init {init!r}")
  return nnx.Param(value, logical_axes=tuple(axes))


class RMSNorm(nnx.Module):
  def __init__(self, dim: int, axis_name: str, eps: float, *, param_dtype, rngs: nnx.Rngs):
    self.scale = param(rngs, (dim,), (axis_name,), param_dtype, "ones")
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    # As the reference: normalise in fp32, cast back, then scale in the input dtype.
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return self.scale[...].astype(x.dtype) * xf.astype(x.dtype)


def rotate_half(x: jax.Array) -> jax.Array:
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  return x * cos + rotate_half(x) * sin


def inverse_frequencies(dim: int, theta: float) -> jax.Array:
  """theta^(-2i/dim) for i < dim/2, computed in fp32 like the reference."""
  return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def masked_softmax_attention(q, k, v, key_mask, scale: float, dtype):
  """Softmax attention in fp32 over the last key axis.

  q [..., N, Tq, H] and k, v [..., N, Tk, H] with `key_mask` broadcastable to
  [..., N, Tq, Tk]. A finite large negative fill keeps fully masked rows (padding queries)
  finite; their outputs are never read.
  """
  logits = jnp.einsum("...qh,...kh->...qk", q, k, preferred_element_type=jnp.float32) * scale
  logits = jnp.where(key_mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
  return jnp.einsum("...qk,...kh->...qh", probs, v)
