"""Losses as (sum, denominator) pairs, so micro-batch accumulation and multi-host means
stay exact: the mean is taken once, over the whole global batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log softmax(logits)[target] in fp32; logits [B,T,V], targets [B,T] -> [B,T]."""
  logits = logits.astype(jnp.float32)
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return picked - jax.nn.logsumexp(logits, axis=-1)


def masked_cross_entropy(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array):
  """Next-token cross-entropy on the positions where `loss_mask` marks the *target* token.

  logits [B,T,V] predict input_ids shifted by one. Returns (sum of -log p, token count).
  """
  lp = token_logprobs(logits[:, :-1], input_ids[:, 1:])
  mask = loss_mask[:, 1:].astype(jnp.float32)
  return -(lp * mask).sum(), mask.sum()


def batch_logits(model, mb):
  """Logits [B,T,V] of one micro-batch as `o3jax.train.batch.model_batch` lays it out."""
  return model(
    mb["input_ids"],
    mb["attention_mask"],
    pixel_values=mb.get("pixel_values"),
    pixel_values_videos=mb.get("pixel_values_videos"),
    position_ids=mb["position_ids"],
    image_layout=mb.get("image_layout"),
    video_layout=mb.get("video_layout"),
  )


def sft_loss(model, mb):
  total, count = masked_cross_entropy(batch_logits(model, mb), mb["input_ids"], mb["loss_mask"])
  return (total, count), {}
