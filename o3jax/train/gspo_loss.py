"""The GSPO objective (docs/reference.md section 5), as a (sum, denominator) pair.

For completion i with tokens t (mask m), current log-probs lp, rollout-time log-probs
old, reference log-probs ref and group advantage A_i:
  s_i   = exp( sum_t m (lp - old) / |o_i| )                       sequence ratio
  pg_i  = -min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)
  kl_t  = e^x - x - 1,  x = clamp(ref - lp, -10, 10)               k3 estimator
  loss_i = pg_i + beta * sum_t m kl_t / |o_i|                     (token mean per sequence)
and the loss is the mean of loss_i over the sequences, returned as (sum_i loss_i, count).
The log-ratio is formed as GSPO-token does, mean_t (lp - sg(lp)) + sg(sequence log-ratio),
so its value is log s_i while each token's gradient carries s_i / |o_i|; an empty
completion has s_i = 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gspo_objective(
  logprobs,
  old_logprobs,
  ref_logprobs,
  mask,
  advantages,
  *,
  eps_low: float,
  eps_high: float,
  beta: float,
  row_mask=None,
):
  """All token arrays [N, T]; advantages [N]; `row_mask` [N] drops filler rows.

  Returns ((loss sum, number of sequences), metrics sums: kl, clipped, ratio).
  """
  mask = mask.astype(jnp.float32)
  rows = jnp.ones(mask.shape[0], jnp.float32) if row_mask is None else row_mask.astype(jnp.float32)
  length = jnp.maximum(mask.sum(-1), 1.0)
  log_ratio = ((logprobs - old_logprobs) * mask).sum(-1) / length
  # Value: the sequence log-ratio; gradient: each token's d lp / |o_i| (GSPO-token form).
  seq_log_ratio = ((logprobs - jax.lax.stop_gradient(logprobs)) * mask).sum(
    -1
  ) / length + jax.lax.stop_gradient(log_ratio)
  ratio = jnp.exp(seq_log_ratio)
  clipped_ratio = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
  pg = -jnp.minimum(ratio * advantages, clipped_ratio * advantages)
  x = jnp.clip(ref_logprobs - logprobs, -10.0, 10.0)
  kl = ((jnp.exp(x) - x - 1.0) * mask).sum(-1) / length
  loss = pg + beta * kl
  clipped = clipped_ratio * advantages < ratio * advantages  # the min took the clipped term
  metrics = {
    "kl": (kl * rows).sum(),
    "clipped": (clipped.astype(jnp.float32) * rows).sum(),
    "ratio": (jax.lax.stop_gradient(ratio) * rows).sum(),
  }
  return ((loss * rows).sum(), rows.sum()), metrics
