"""o3jax.models.attention against the materialised-mask oracle (fp32, 1e-5): padding on
either side, causal, segment ids, vision-style segments, a KV cache; values and gradients.

Every case runs the portable backend's code paths: "direct" (one softmax over all keys, as
decoding uses), "many-blocks" (the online softmax over several query and key blocks, with
the sequence padded to whole blocks) and, for the causal padded case, "one-block" (a
single block, no padding). Each path is one jitted call (values and gradients together)
against one jitted oracle call: compiling is what these tests spend their time on.
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o3jax.models import attention as attn_lib
from tests.attention_oracle import dense_mask, reference_attention

TOL = 1e-5
# (BLOCK_Q, BLOCK_K, DIRECT_MAX_QUERIES) of each code path of the blockwise backend.
PATHS = {"direct": (512, 512, 64), "one-block": (512, 512, 0), "many-blocks": (4, 8, 0)}
BOTH = ("direct", "many-blocks")


@contextlib.contextmanager
def _path(name):
  saved = (attn_lib.BLOCK_Q, attn_lib.BLOCK_K, attn_lib.DIRECT_MAX_QUERIES)
  attn_lib.BLOCK_Q, attn_lib.BLOCK_K, attn_lib.DIRECT_MAX_QUERIES = PATHS[name]
  try:
    yield
  finally:
    attn_lib.BLOCK_Q, attn_lib.BLOCK_K, attn_lib.DIRECT_MAX_QUERIES = saved


def _qkv(b, t, s, n=4, kh=2, h=8, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (
    jax.random.normal(ks[0], (b, t, n, h)),
    jax.random.normal(ks[1], (b, s, kh, h)),
    jax.random.normal(ks[2], (b, s, kh, h)),
  )


def _value_and_grads(fn, w, *args):
  """fn(q, k, v, *args) and the gradients of sum(output * w) in q, k, v: one jitted call
  (`args` stay traced, e.g. a decode offset)."""

  @jax.jit
  def run(q, k, v, *args):
    out, vjp = jax.vjp(lambda q, k, v: fn(q, k, v, *args), q, k, v)
    return out, vjp(w.astype(out.dtype))

  return lambda q, k, v: run(q, k, v, *args)


def _check(q, k, v, rows_read, paths=BOTH, **mask):
  """Values and gradients (through a random projection of the read rows) agree with the
  oracle on each code path."""
  b, t, s = q.shape[0], q.shape[1], k.shape[1]
  dense = dense_mask(b, t, s, **mask)
  w = jax.random.normal(jax.random.key(9), q.shape) * rows_read[:, :, None, None]
  want, g_want = _value_and_grads(lambda q, k, v: reference_attention(q, k, v, dense), w)(q, k, v)
  sel = np.asarray(rows_read).astype(bool)
  for name in paths:
    with _path(name):
      ours = lambda q, k, v: attn_lib.attention(q, k, v, impl="blockwise", **mask)
      got, g_got = _value_and_grads(ours, w)(q, k, v)
    np.testing.assert_allclose(
      np.asarray(got)[sel], np.asarray(want)[sel], atol=TOL, rtol=TOL, err_msg=name
    )
    for a, e in zip(g_got, g_want):
      np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=TOL, rtol=TOL, err_msg=name)


def test_causal_left_and_right_padding():
  q, k, v = _qkv(3, 19, 19)
  start, end = jnp.array([0, 5, 2]), jnp.array([19, 19, 13])
  read = (jnp.arange(19)[None] >= start[:, None]) & (jnp.arange(19)[None] < end[:, None])
  _check(q, k, v, read, tuple(PATHS), causal=True, kv_start=start, kv_end=end)


def test_bidirectional_segments_and_lengths():
  # Vision windows: each row a gathered segment, valid up to its length.
  q, k, v = _qkv(4, 16, 16, n=2, kh=2)
  end = jnp.array([16, 9, 1, 12])
  read = jnp.arange(16)[None] < end[:, None]
  _check(q, k, v, read, kv_end=end)


def test_packed_segment_ids():
  q, k, v = _qkv(2, 21, 21)
  ids = jnp.array([[1] * 7 + [2] * 9 + [3] * 5, [1] * 21])
  _check(q, k, v, jnp.ones((2, 21)), causal=True, segment_ids=(ids, ids))


@pytest.mark.parametrize("path, t", [("direct", 1), ("many-blocks", 3)])
def test_kv_cache_decode_with_traced_offset(path, t):
  # A left-padded prompt in a cache of 24 slots; queries at slots 17..17+t-1, the slot a
  # traced value (as the sampler's while_loop has it); values and gradients.
  q, k, v = _qkv(2, t, 24)
  start = jnp.array([4, 0])
  w = jax.random.normal(jax.random.key(9), q.shape)
  dense = dense_mask(2, t, 24, causal=True, q_offset=17, kv_start=start)
  want, g_want = _value_and_grads(lambda q, k, v: reference_attention(q, k, v, dense), w)(q, k, v)

  def ours(q, k, v, index):
    return attn_lib.attention(q, k, v, causal=True, q_offset=index, kv_start=start, impl="auto")

  with _path(path):
    got, g_got = _value_and_grads(ours, w, jnp.int32(17))(q, k, v)
  np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)
  for a, e in zip(g_got, g_want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=TOL, rtol=TOL)


def test_query_that_sees_nothing_is_zero_and_finite():
  q, k, v = _qkv(1, 6, 6)
  f = lambda q, k, v: attn_lib.attention(
    q, k, v, causal=True, kv_start=jnp.array([3]), impl="blockwise"
  )
  for name in BOTH:
    with _path(name):
      out, grads = _value_and_grads(f, jnp.ones_like(q))(q, k, v)
    np.testing.assert_array_equal(np.asarray(out[0, :3]), 0.0, err_msg=name)
    assert all(bool(jnp.isfinite(g).all()) for g in grads), name


def test_bf16_close_to_fp32_oracle():
  q, k, v = _qkv(2, 64, 64, n=4, kh=1, h=16)
  dense = dense_mask(2, 64, 64, causal=True)
  want = jax.jit(reference_attention)(q, k, v, dense)
  for name in BOTH:
    with _path(name):
      got = jax.jit(lambda *a: attn_lib.attention(*a, causal=True))(
        *(x.astype(jnp.bfloat16) for x in (q, k, v))
      )
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=3e-2, err_msg=name)


def test_unknown_impl_raises():
  q, k, v = _qkv(1, 2, 2)
  with pytest.raises(ValueError, match="unknown attention impl"):
    attn_lib.attention(q, k, v, impl="flash3")
