"""The one attention entry point of every model: text decoder (training, prefill, cached
decode) and vision tower (window and full blocks).

Axis letters: B batch (or attention segments), T query length, S key length, N query heads,
K kv heads, G = N/K query heads per kv head, H head dim.

The mask is described, never materialised as a [T, S] array:
- `kv_start`, `kv_end` [B] int: keys outside [kv_start, kv_end) are padding. Left-padded
  sampler prompts have kv_start > 0; right-padded training rows and vision segments
  (cu_seqlens-style windows gathered into rows) have kv_end < S.
- `causal`: key slot s is visible from query t when s <= q_offset + t; `q_offset` (a
  scalar, may be traced) is the key slot of the first query (cached decode).
- `segment_ids` = (q [B,T], kv [B,S]) int: keys visible only within equal ids (packed
  sequences).
A query that sees no key returns zeros.

Backends (`impl`, from the model config): "cudnn" (fused flash on GPU), "splash" (the
Pallas kernel on TPU), "blockwise" (portable: online softmax over key blocks, memory linear
in T, forward and backward), "auto" (cudnn on GPU, splash on TPU, blockwise elsewhere).
A fused backend that cannot express a call (fp32 inputs on cuDNN, a traced q_offset, segment
ids on cuDNN) runs the blockwise one.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

IMPLS = ("auto", "blockwise", "cudnn", "splash")
BLOCK_Q = 512
BLOCK_K = 512
# Up to this many queries (decoding) the scores [B,N,T,S] are small: one direct softmax
# over all slots, no block loop (a loop of S/BLOCK_K steps per layer per token is slow).
DIRECT_MAX_QUERIES = 16


class Mask(NamedTuple):
  """The mask arguments of `attention`, carried through a model as one value."""

  causal: bool = False
  q_offset: jax.Array | int = 0
  kv_start: jax.Array | None = None
  kv_end: jax.Array | None = None
  segment_ids: tuple[jax.Array, jax.Array] | None = None


def padding_range(attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """attention_mask [B, S] (1 = real token, one contiguous run per row, padding on either
  side) -> (kv_start, kv_end) [B]. A row without tokens gets the whole range."""
  real = attention_mask.astype(bool)
  s = real.shape[1]
  start = jnp.argmax(real, axis=1)
  end = s - jnp.argmax(real[:, ::-1], axis=1)
  empty = ~real.any(1)
  return jnp.where(empty, 0, start).astype(jnp.int32), jnp.where(empty, s, end).astype(jnp.int32)


def attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  causal: bool = False,
  q_offset=0,
  kv_start: jax.Array | None = None,
  kv_end: jax.Array | None = None,
  segment_ids: tuple[jax.Array, jax.Array] | None = None,
  scale: float | None = None,
  impl: str = "auto",
) -> jax.Array:
  """q [B,T,N,H], k and v [B,S,K,H] -> [B,T,N,H] in q's dtype."""
  if impl not in IMPLS:
    raise ValueError(f"unknown attention impl {impl!r}; known: {IMPLS}")
  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  if n % kh:
    raise ValueError(f"{n} query heads do not group over {kh} kv heads")
  scale = h**-0.5 if scale is None else scale
  kv_start = jnp.zeros((b,), jnp.int32) if kv_start is None else kv_start.astype(jnp.int32)
  kv_end = jnp.full((b,), s, jnp.int32) if kv_end is None else kv_end.astype(jnp.int32)
  if impl == "auto":
    impl = {"gpu": "cudnn", "tpu": "splash"}.get(jax.default_backend(), "blockwise")
  static_start = isinstance(q_offset, int) and q_offset == 0
  half = q.dtype in (jnp.bfloat16, jnp.float16)
  if impl == "cudnn" and static_start and half and segment_ids is None and h % 8 == 0:
    return _cudnn(q, k, v, kv_start, kv_end, causal, scale)
  if impl == "splash" and static_start and t % 128 == 0 and s % 128 == 0:
    return _splash(q, k, v, kv_start, kv_end, segment_ids, causal, scale)
  if t <= DIRECT_MAX_QUERIES:
    return _direct(q, k, v, causal, q_offset, kv_start, kv_end, segment_ids, scale)
  return blockwise(q, k, v, causal, q_offset, kv_start, kv_end, segment_ids, scale)


def _direct(q, k, v, causal, q_offset, kv_start, kv_end, segment_ids, scale):
  """Few queries (decoding): softmax over all S slots at once; the [B,T,S] mask is small."""
  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  qs, ks = (None, None) if segment_ids is None else segment_ids
  q_pos = jnp.asarray(q_offset, jnp.int32) + jnp.arange(t)
  vis = _visible((kv_start, kv_end), q_pos, jnp.arange(s), qs, ks, causal)  # [B,1,1,T,S]
  qg = q.reshape(b, t, kh, n // kh, h)
  sc = jnp.einsum("BTKGH,BSKH->BKGTS", qg, k, preferred_element_type=jnp.float32) * scale
  sc = jnp.where(vis, sc, -jnp.inf)
  m = jnp.max(sc, -1, keepdims=True)
  p = jnp.exp(sc - jnp.where(jnp.isfinite(m), m, 0.0))
  l = p.sum(-1, keepdims=True)
  p = (p / jnp.where(l > 0, l, 1.0)).astype(v.dtype)
  return jnp.einsum("BKGTS,BSKH->BTKGH", p, v).reshape(b, t, n, h).astype(q.dtype)


# ---------------------------------------------------------------------- portable backend


def blockwise(q, k, v, causal, q_offset, kv_start, kv_end, segment_ids, scale):
  """Flash-style attention in plain JAX: query blocks in sequence, an online softmax over
  the key blocks each of them can see, and a hand-written backward that recomputes the
  probabilities block by block, so neither pass holds more than a [bq, bk] score tile."""
  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  bq, bk = min(BLOCK_Q, t), min(BLOCK_K, s)
  tp, sp = -(-t // bq) * bq, -(-s // bk) * bk
  qg = jnp.pad(q, ((0, 0), (0, tp - t), (0, 0), (0, 0))).reshape(b, tp, kh, n // kh, h)
  qg = jnp.einsum("BTKGH->BKGTH", qg)
  kg = jnp.einsum("BSKH->BKSH", jnp.pad(k, ((0, 0), (0, sp - s), (0, 0), (0, 0))))
  vg = jnp.einsum("BSKH->BKSH", jnp.pad(v, ((0, 0), (0, sp - s), (0, 0), (0, 0))))
  if segment_ids is not None:
    qs, ks = segment_ids
    segment_ids = (jnp.pad(qs, ((0, 0), (0, tp - t))), jnp.pad(ks, ((0, 0), (0, sp - s))))
  mask = (kv_start, jnp.minimum(kv_end, s), jnp.asarray(q_offset, jnp.int32), segment_ids)
  out = _flash(qg, kg, vg, mask, causal, scale, bq, bk)
  return jnp.einsum("BKGTH->BTKGH", out).reshape(b, tp, n, h)[:, :t]


def _visible(mask, q_pos, k_pos, qs, ks, causal):
  """[B, 1, 1, bq, bk] (broadcast over K, G) bool."""
  kv_start, kv_end = mask[0], mask[1]
  vis = (k_pos[None, None, :] >= kv_start[:, None, None]) & (
    k_pos[None, None, :] < kv_end[:, None, None]
  )
  if causal:
    vis = vis & (k_pos[None, None, :] <= q_pos[None, :, None])
  if qs is not None:
    vis = vis & (qs[:, :, None] == ks[:, None, :])
  return vis[:, None, None]


def _key_blocks(mask, i, bq, bk, nk, causal):
  """How many key blocks, from the first, query block i runs over: only the causal limit
  skips blocks, as it depends on i and q_offset alone. A range read from the rows'
  padding (kv_start, kv_end) would be a reduction over the batch, which under a mesh that
  splits the rows is an all-reduce in every query block of every layer (and XLA:CPU runs
  such independent all-reduces in different orders in different processes); padded key
  blocks are masked instead."""
  if not causal:
    return nk
  return jnp.clip((mask[2] + (i + 1) * bq - 1) // bk + 1, 0, nk)


def _block(x, i, size, axis):
  return jax.lax.dynamic_slice_in_dim(x, i * size, size, axis)


def _tile(q_blk, k, mask, i, j, bq, bk, causal, scale):
  """Scores [B,K,G,bq,bk] (fp32) of query block i against key block j, and their mask."""
  kb = _block(k, j, bk, 2)
  sc = jnp.einsum("BKGqH,BKkH->BKGqk", q_blk, kb, preferred_element_type=jnp.float32) * scale
  segs = mask[3]
  qs = None if segs is None else _block(segs[0], i, bq, 1)
  ks = None if segs is None else _block(segs[1], j, bk, 1)
  q_pos = mask[2] + i * bq + jnp.arange(bq)
  vis = _visible(mask, q_pos, j * bk + jnp.arange(bk), qs, ks, causal)
  return sc, vis


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _flash(q, k, v, mask, causal, scale, bq, bk):
  return _flash_fwd(q, k, v, mask, causal, scale, bq, bk)[0]


def _flash_fwd(q, k, v, mask, causal, scale, bq, bk):
  b, kh, g, t, h = q.shape
  nq, nk = t // bq, k.shape[2] // bk

  def q_block(i):
    q_blk = _block(q, i, bq, 3)

    def body(j, carry):
      m, l, acc = carry
      sc, vis = _tile(q_blk, k, mask, i, j, bq, bk, causal, scale)
      sc = jnp.where(vis, sc, -jnp.inf)
      m_new = jnp.maximum(m, sc.max(-1))
      m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
      p = jnp.exp(sc - m_safe[..., None])
      corr = jnp.exp(m - m_safe)
      vb = _block(v, j, bk, 2)
      pv = jnp.einsum(
        "BKGqk,BKkH->BKGqH", p.astype(v.dtype), vb, preferred_element_type=jnp.float32
      )
      return m_new, l * corr + p.sum(-1), acc * corr[..., None] + pv

    init = (
      jnp.full((b, kh, g, bq), -jnp.inf, jnp.float32),
      jnp.zeros((b, kh, g, bq), jnp.float32),
      jnp.zeros((b, kh, g, bq, h), jnp.float32),
    )
    hi = _key_blocks(mask, i, bq, bk, nk, causal)
    m, l, acc = jax.lax.fori_loop(0, hi, body, init)
    seen = l > 0
    out = jnp.where(seen[..., None], acc / jnp.where(seen, l, 1.0)[..., None], 0.0)
    # A query that sees nothing gets lse = +inf, so its recomputed probabilities are 0.
    lse = jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), jnp.inf)
    return out.astype(q.dtype), lse

  out, lse = jax.lax.map(q_block, jnp.arange(nq))  # [nq, B,K,G,bq,(H)]
  out = jnp.moveaxis(out, 0, 3).reshape(b, kh, g, t, h)
  lse = jnp.moveaxis(lse, 0, 3).reshape(b, kh, g, t)
  return out, (q, k, v, mask, out, lse)


def _flash_bwd(causal, scale, bq, bk, res, d_out):
  q, k, v, mask, out, lse = res
  b, kh, g, t, h = q.shape
  nq, nk = t // bq, k.shape[2] // bk
  delta = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), -1)  # [B,K,G,T]

  def q_step(i, carry):
    dq, dk, dv = carry
    q_blk, do_blk = _block(q, i, bq, 3), _block(d_out, i, bq, 3)
    lse_blk, delta_blk = _block(lse, i, bq, 3), _block(delta, i, bq, 3)

    def body(j, c):
      dq_blk, dk, dv = c
      sc, vis = _tile(q_blk, k, mask, i, j, bq, bk, causal, scale)
      p = jnp.where(vis, jnp.exp(sc - lse_blk[..., None]), 0.0)
      kb, vb = _block(k, j, bk, 2), _block(v, j, bk, 2)
      f32 = jnp.float32
      dv_j = jnp.einsum("BKGqk,BKGqH->BKkH", p.astype(v.dtype), do_blk, preferred_element_type=f32)
      dp = jnp.einsum("BKGqH,BKkH->BKGqk", do_blk, vb, preferred_element_type=f32)
      ds = (p * (dp - delta_blk[..., None]) * scale).astype(q.dtype)
      dq_blk = dq_blk + jnp.einsum("BKGqk,BKkH->BKGqH", ds, kb, preferred_element_type=f32)
      dk_j = jnp.einsum("BKGqk,BKGqH->BKkH", ds, q_blk, preferred_element_type=f32)
      add = lambda acc, x: jax.lax.dynamic_update_slice_in_dim(
        acc, _block(acc, j, bk, 2) + x, j * bk, 2
      )
      return dq_blk, add(dk, dk_j), add(dv, dv_j)

    hi = _key_blocks(mask, i, bq, bk, nk, causal)
    dq_blk = jnp.zeros((b, kh, g, bq, h), jnp.float32)
    dq_blk, dk, dv = jax.lax.fori_loop(0, hi, body, (dq_blk, dk, dv))
    return jax.lax.dynamic_update_slice_in_dim(dq, dq_blk, i * bq, 3), dk, dv

  zeros = lambda x: jnp.zeros(x.shape, jnp.float32)
  dq, dk, dv = jax.lax.fori_loop(0, nq, q_step, (zeros(q), zeros(k), zeros(v)))
  no_grad = jax.tree.map(lambda x: None, mask)
  return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), no_grad


_flash.defvjp(_flash_fwd, _flash_bwd)


# ------------------------------------------------------------------------ fused backends


def _roll_rows(x, shift):
  """Row b of x [B, L, ...] rotated left by shift[b]."""
  return jax.vmap(lambda row, n: jnp.roll(row, -n, axis=0))(x, shift)


def _cudnn(q, k, v, kv_start, kv_end, causal, scale):
  """cuDNN flash attention. It takes right padding only (lengths), so rows with left padding
  are rotated left by kv_start first (a causal slot order survives the rotation: the
  padding wraps to the end, past the valid length) and rotated back after."""
  t = q.shape[1]
  q, k, v = (_roll_rows(x, kv_start) for x in (q, k, v))
  out = jax.nn.dot_product_attention(
    q,
    k,
    v,
    scale=scale,
    is_causal=causal,
    query_seq_lengths=jnp.full_like(kv_start, t) - kv_start,
    key_value_seq_lengths=kv_end - kv_start,
    implementation="cudnn",
  )
  return _roll_rows(out, -kv_start)


def _splash(q, k, v, kv_start, kv_end, segment_ids, causal, scale):
  """The Pallas splash kernel (TPU). Padding becomes segment id 0 (padding queries see
  padding keys, so no row is empty); segment ids are offset by one to stay apart from it."""
  from jax.experimental.pallas.ops.tpu.splash_attention import (
    splash_attention_kernel as splash,
    splash_attention_mask as masks,
  )

  b, t, n, h = q.shape
  s, kh = k.shape[1], k.shape[2]
  g = n // kh
  q_in = (jnp.arange(t)[None] >= kv_start[:, None]) & (jnp.arange(t)[None] < kv_end[:, None])
  k_in = (jnp.arange(s)[None] >= kv_start[:, None]) & (jnp.arange(s)[None] < kv_end[:, None])
  qs, ks = (jnp.ones((b, t), jnp.int32), jnp.ones((b, s), jnp.int32))
  if segment_ids is not None:
    qs, ks = segment_ids[0] + 1, segment_ids[1] + 1
  ids = splash.SegmentIds(q=jnp.where(q_in, qs, 0), kv=jnp.where(k_in, ks, 0))
  one = masks.CausalMask((t, s)) if causal else masks.FullMask((t, s))
  kernel = splash.make_splash_mqa_single_device(masks.MultiHeadMask([one] * g))
  qg = jnp.einsum("BTKGH->BKGTH", (q * scale).reshape(b, t, kh, g, h))
  kg, vg = jnp.einsum("BSKH->BKSH", k), jnp.einsum("BSKH->BKSH", v)
  per_head = jax.vmap(kernel, in_axes=(0, 0, 0, None))  # over kv heads
  out = jax.vmap(per_head, in_axes=(0, 0, 0, 0))(qg, kg, vg, ids)  # over batch
  return jnp.einsum("BKGTH->BTKGH", out).reshape(b, t, n, h)
