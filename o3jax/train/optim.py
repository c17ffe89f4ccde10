"""AdamW with warmup then linear/cosine decay, global-norm clipping, frozen groups.

Freezing lives here only: frozen parameters get a zero update (no weight decay either),
and the global-norm clip sees the trained parameters' gradients alone.
"""

from __future__ import annotations

import re

import jax
import optax
from flax import nnx

from o3jax.models.layers import unstacked_rank

from o3jax.train.config import OptimConfig


def schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
  peak, end = cfg.learning_rate, cfg.learning_rate * cfg.end_lr_fraction
  warm = max(cfg.warmup_steps, 0)
  decay_steps = max(total_steps - warm, 1)
  if cfg.decay == "cosine":
    decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_lr_fraction)
  elif cfg.decay == "linear":
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif cfg.decay == "constant":
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"unknown lr decay {cfg.decay!r}: linear, cosine or constant")
  if warm == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), decay], [warm])


def frozen_labels(params, patterns) -> object:
  """A tree like `params` with "frozen" where a path matches a pattern, else "train"."""
  rx = [re.compile(p) for p in patterns]
  flat = [
    (p, v.replace("frozen" if any(r.search(".".join(map(str, p))) for r in rx) else "train"))
    for p, v in nnx.to_flat_state(params)
  ]
  return nnx.from_flat_state(flat)


def make_optimizer(cfg: OptimConfig, total_steps: int, params) -> optax.GradientTransformation:
  # Weight decay on matrices only, not on biases or norm scales (of stacked layers too).
  decay_mask = jax.tree.map(
    lambda v: v.replace(unstacked_rank(v) >= 2),
    params,
    is_leaf=lambda x: isinstance(x, nnx.Variable),
  )
  adamw = optax.chain(
    optax.clip_by_global_norm(cfg.max_grad_norm),
    optax.adamw(
      schedule(cfg, total_steps),
      b1=cfg.b1,
      b2=cfg.b2,
      eps=cfg.eps,
      weight_decay=cfg.weight_decay,
      mask=decay_mask,
    ),
  )
  if not cfg.freeze:
    return adamw
  labels = frozen_labels(params, cfg.freeze)
  if "train" not in {v.get_value() for _, v in nnx.to_flat_state(labels)}:
    raise ValueError(f"freeze patterns {cfg.freeze} match every parameter")
  return optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()}, labels)
