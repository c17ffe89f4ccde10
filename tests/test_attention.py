"""o3jax.models.attention against the materialised-mask oracle (fp32, 1e-5): padding on
either side, causal, segment ids, vision-style segments, a KV cache; values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from o3jax.models import attention as attn_lib
from tests.attention_oracle import dense_mask, reference_attention

TOL = 1e-5


@pytest.fixture(
  params=[(512, 512, 64), (512, 512, 0), (4, 8, 0)], ids=["direct", "one-block", "many-blocks"]
)
def blocks(request, monkeypatch):
  monkeypatch.setattr(attn_lib, "BLOCK_Q", request.param[0])
  monkeypatch.setattr(attn_lib, "BLOCK_K", request.param[1])
  monkeypatch.setattr(attn_lib, "DIRECT_MAX_QUERIES", request.param[2])


def _qkv(b, t, s, n=4, kh=2, h=8, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (
    jax.random.normal(ks[0], (b, t, n, h)),
    jax.random.normal(ks[1], (b, s, kh, h)),
    jax.random.normal(ks[2], (b, s, kh, h)),
  )


def _check(q, k, v, rows_read, **mask):
  """Values and gradients (through a random projection of the read rows) agree."""
  b, t, s = q.shape[0], q.shape[1], k.shape[1]
  dense = dense_mask(b, t, s, **mask)
  w = jax.random.normal(jax.random.key(9), q.shape) * rows_read[:, :, None, None]
  ours = lambda q, k, v: attn_lib.attention(q, k, v, impl="blockwise", **mask)
  ref = lambda q, k, v: reference_attention(q, k, v, dense)
  got, want = ours(q, k, v), ref(q, k, v)
  sel = rows_read.astype(bool)
  np.testing.assert_allclose(np.asarray(got)[sel], np.asarray(want)[sel], atol=TOL, rtol=TOL)
  g_got = jax.grad(lambda *a: jnp.sum(ours(*a) * w), argnums=(0, 1, 2))(q, k, v)
  g_want = jax.grad(lambda *a: jnp.sum(ref(*a) * w), argnums=(0, 1, 2))(q, k, v)
  for a, e in zip(g_got, g_want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), atol=TOL, rtol=TOL)


def test_causal_left_and_right_padding(blocks):
  q, k, v = _qkv(3, 19, 19)
  start, end = jnp.array([0, 5, 2]), jnp.array([19, 19, 13])
  read = (jnp.arange(19)[None] >= start[:, None]) & (jnp.arange(19)[None] < end[:, None])
  _check(q, k, v, read, causal=True, kv_start=start, kv_end=end)


def test_bidirectional_segments_and_lengths(blocks):
  # Vision windows: each row a gathered segment, valid up to its length.
  q, k, v = _qkv(4, 16, 16, n=2, kh=2)
  end = jnp.array([16, 9, 1, 12])
  read = jnp.arange(16)[None] < end[:, None]
  _check(q, k, v, read, kv_end=end)


def test_packed_segment_ids(blocks):
  q, k, v = _qkv(2, 21, 21)
  ids = jnp.array([[1] * 7 + [2] * 9 + [3] * 5, [1] * 21])
  _check(q, k, v, jnp.ones((2, 21)), causal=True, segment_ids=(ids, ids))


@pytest.mark.parametrize("t", [1, 3])
def test_kv_cache_decode(blocks, t):
  # A left-padded prompt in a cache of 24 slots; queries at slots 17..17+t-1, index traced.
  q, k, v = _qkv(2, t, 24)
  start = jnp.array([4, 0])
  read = jnp.ones((2, t))

  @jax.jit
  def run(index):
    return attn_lib.attention(q, k, v, causal=True, q_offset=index, kv_start=start, impl="auto")

  dense = dense_mask(2, t, 24, causal=True, q_offset=17, kv_start=start)
  np.testing.assert_allclose(
    run(jnp.int32(17)), reference_attention(q, k, v, dense), atol=TOL, rtol=TOL
  )
  _check(q, k, v, read, causal=True, q_offset=17, kv_start=start)


def test_query_that_sees_nothing_is_zero_and_finite(blocks):
  q, k, v = _qkv(1, 6, 6)
  f = lambda q, k, v: attn_lib.attention(
    q, k, v, causal=True, kv_start=jnp.array([3]), impl="blockwise"
  )
  out = f(q, k, v)
  np.testing.assert_array_equal(np.asarray(out[0, :3]), 0.0)
  grads = jax.grad(lambda *a: f(*a).sum(), argnums=(0, 1, 2))(q, k, v)
  assert all(bool(jnp.isfinite(g).all()) for g in grads)


def test_bf16_close_to_fp32_oracle(blocks):
  q, k, v = _qkv(2, 64, 64, n=4, kh=1, h=16)
  dense = dense_mask(2, 64, 64, causal=True)
  want = reference_attention(q, k, v, dense)
  got = attn_lib.attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), causal=True)
  np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=3e-2)


def test_unknown_impl_raises():
  q, k, v = _qkv(1, 2, 2)
  with pytest.raises(ValueError, match="unknown attention impl"):
    attn_lib.attention(q, k, v, impl="flash3")
