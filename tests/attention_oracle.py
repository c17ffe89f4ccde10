"""The test oracle for `o3jax.models.attention`: plain softmax attention over a
materialised [T, S] mask, in fp32 (the models' attention before the blockwise and fused
backends; never used by the models themselves)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_softmax_attention(q, k, v, key_mask, scale: float, dtype):
  """q [..., N, Tq, H] and k, v [..., N, Tk, H] with `key_mask` broadcastable to
  [..., N, Tq, Tk]. A finite large negative fill keeps fully masked rows finite."""
  logits = jnp.einsum("...qh,...kh->...qk", q, k, preferred_element_type=jnp.float32) * scale
  logits = jnp.where(key_mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
  return jnp.einsum("...qk,...kh->...qh", probs, v)


def dense_mask(b, t, s, causal=False, q_offset=0, kv_start=None, kv_end=None, segment_ids=None):
  """[B, T, S] bool: the mask `attention` describes, materialised."""
  kpos, qpos = jnp.arange(s)[None, None, :], q_offset + jnp.arange(t)[None, :, None]
  m = jnp.ones((b, t, s), bool)
  if kv_start is not None:
    m = m & (kpos >= kv_start[:, None, None])
  if kv_end is not None:
    m = m & (kpos < kv_end[:, None, None])
  if causal:
    m = m & (kpos <= qpos)
  if segment_ids is not None:
    m = m & (segment_ids[0][:, :, None] == segment_ids[1][:, None, :])
  return m


def reference_attention(q, k, v, mask, scale=None):
  """q [B,T,N,H], k, v [B,S,K,H], mask [B,T,S] -> [B,T,N,H]; rows that see nothing -> 0."""
  b, t, n, h = q.shape
  kh = k.shape[2]
  scale = h**-0.5 if scale is None else scale
  qg = jnp.einsum("BTKGH->BKGTH", q.reshape(b, t, kh, n // kh, h))
  kk, vv = jnp.einsum("BSKH->BKSH", k)[:, :, None], jnp.einsum("BSKH->BKSH", v)[:, :, None]
  out = masked_softmax_attention(qg, kk, vv, mask[:, None, None], scale, q.dtype)
  out = jnp.where(mask.any(-1)[:, None, None, :, None], out, 0)
  return jnp.einsum("BKGTH->BTKGH", out).reshape(b, t, n, h)
