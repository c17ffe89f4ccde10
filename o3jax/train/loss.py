"""Losses as (sum, denominator) pairs, so micro-batch accumulation and multi-host means
stay exact: the mean is taken once, over the whole global batch.

Log-probabilities never build the [B, T, V] logits: the decoder's hidden states go through
the LM head and the log-softmax a chunk of positions at a time, in sequence under a scan,
with fp32 logits per chunk, recomputed in the backward pass (`chunked_token_logprobs`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSS_CHUNK = 1024  # positions per LM-head chunk: [B, 1024, V] fp32 logits at a time


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log softmax(logits)[target] in fp32; logits [B,T,V], targets [B,T] -> [B,T]."""
  logits = logits.astype(jnp.float32)
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return picked - jax.nn.logsumexp(logits, axis=-1)


def chunked_token_logprobs(
  hidden: jax.Array,
  weight: jax.Array,
  targets: jax.Array,
  temperature: float = 1.0,
  chunk: int | None = None,
) -> jax.Array:
  """token_logprobs(hidden @ weight / temperature, targets) without the [B,T,V] logits.

  hidden [B,T,D] (compute dtype), weight [D,V] (the master weights; cast per chunk, so
  its gradient accumulates over the chunks in its own dtype), targets [B,T] -> [B,T] fp32.
  """
  b, t, d = hidden.shape
  c = min(chunk or LOSS_CHUNK, t)
  n = -(-t // c)
  h = jnp.pad(hidden, ((0, 0), (0, n * c - t), (0, 0))).reshape(b, n, c, d).swapaxes(0, 1)
  y = jnp.pad(targets, ((0, 0), (0, n * c - t))).reshape(b, n, c).swapaxes(0, 1)

  @jax.checkpoint
  def one(h_c, y_c):
    w = weight.astype(hidden.dtype)
    logits = jnp.einsum("BCD,DV->BCV", h_c, w, preferred_element_type=jnp.float32)
    return token_logprobs(logits / temperature, y_c)

  _, lp = jax.lax.scan(lambda _, xs: (None, one(*xs)), None, (h, y))
  return lp.swapaxes(0, 1).reshape(b, n * c)[:, :t]


def batch_hidden(model, mb):
  """Final hidden states [B,T,D] of one micro-batch as `o3jax.train.batch.model_batch`
  lays it out."""
  return model(
    mb["input_ids"],
    mb["attention_mask"],
    pixel_values=mb.get("pixel_values"),
    pixel_values_videos=mb.get("pixel_values_videos"),
    position_ids=mb["position_ids"],
    image_layout=mb.get("image_layout"),
    video_layout=mb.get("video_layout"),
    vision_row=mb.get("vision_row"),
    return_hidden=True,
  )


def next_token_logprobs(model, mb, temperature: float = 1.0, last: int | None = None):
  """[B,T] log p(token t | tokens < t) (column 0 is 0). With `last`, only the last `last`
  columns are computed (GSPO: the completion), the others are 0."""
  h = batch_hidden(model, mb)
  ids = mb["input_ids"]
  t = ids.shape[1]
  first = 1 if last is None else t - last
  lp = chunked_token_logprobs(
    h[:, first - 1 : t - 1], model.text.head_weight(), ids[:, first:], temperature
  )
  return jnp.pad(lp, ((0, 0), (first, 0)))


def sft_loss(model, mb):
  """Next-token cross-entropy where `loss_mask` marks the *target* token: (sum of -log p,
  token count)."""
  lp = next_token_logprobs(model, mb)
  mask = jnp.asarray(mb["loss_mask"], jnp.float32).at[:, 0].set(0.0)
  return (-(lp * mask).sum(), mask.sum()), {}
