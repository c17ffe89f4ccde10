"""Reward kernels in jax.numpy: jitted, vectorized over the batch, fixed shapes.

Axis legend: N completions; C claims, Q claim boxes, T think times, V visual-QA think
boxes, each flat over the batch with the index of the completion (or claim) it belongs
to; G key frames per record, O objects per key frame, M gold boxes per object.
Formulas: docs/reference.md section 4. Inputs are ParsedArrays (batch.py) and GoldArrays
(gold.py); `score` (score.py) runs them in float64, like the python reference, so a
claim 1.0 s from a key frame in decimal gates as it does there.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from o3jax import grammar
from o3jax.grammar import TASKS
from o3jax.rewards.batch import ParsedArrays
from o3jax.rewards.gold import GoldArrays

GATE_SECONDS = 1.0
TERMS = (
  "ans_acc",
  "ans_tiou",
  "ans_viou",
  "thk_temporal_point",
  "thk_temporal_segment",
  "thk_spatial",
  "format",
)
# The terms summed into the total of each task (rows: TASKS order; columns: TERMS order).
APPLIES = np.array(
  [
    # acc  tiou  viou  point  segment  spatial  format
    [1, 0, 0, 1, 0, 1, 1],  # temporal-spatial free-form QA
    [0, 1, 0, 0, 1, 0, 1],  # temporal QA
    [1, 1, 0, 0, 1, 0, 1],  # temporal QA (MCQ)
    [0, 0, 1, 0, 0, 1, 1],  # visual QA
    [1, 0, 0, 0, 0, 0, 1],  # General video QA MCQ
    [1, 0, 0, 0, 0, 0, 1],  # General video QA Free-form
  ],
  bool,
)
ST, TG, TG_MCQ, VQA, G_MCQ, G_FREE = (
  TASKS.index(t)
  for t in (
    grammar.SPATIO_TEMPORAL,
    grammar.TEMPORAL,
    grammar.TEMPORAL_MCQ,
    grammar.VISUAL,
    grammar.GENERAL_MCQ,
    grammar.GENERAL_FREE_FORM,
  )
)


def box_iou(pred: jax.Array, gold: jax.Array) -> jax.Array:
  """IoU of xyxy boxes [..., 4] (broadcast); continuous coordinates; 0 if union <= 0."""
  inter_w = jnp.maximum(
    0.0, jnp.minimum(gold[..., 2], pred[..., 2]) - jnp.maximum(gold[..., 0], pred[..., 0])
  )
  inter_h = jnp.maximum(
    0.0, jnp.minimum(gold[..., 3], pred[..., 3]) - jnp.maximum(gold[..., 1], pred[..., 1])
  )
  inter = inter_w * inter_h
  gold_area = (gold[..., 2] - gold[..., 0]) * (gold[..., 3] - gold[..., 1])
  pred_area = (pred[..., 2] - pred[..., 0]) * (pred[..., 3] - pred[..., 1])
  union = gold_area + pred_area - inter
  ok = union > 0  # also false for a nan union (overflowing coordinates)
  return jnp.where(ok, inter / jnp.where(ok, union, 1.0), 0.0)


def span_iou(pred: jax.Array, gold: jax.Array) -> jax.Array:
  """tIoU of [start, end] spans [..., 2]; 0 for a zero-length union."""
  inter = jnp.maximum(
    0.0, jnp.minimum(pred[..., 1], gold[..., 1]) - jnp.maximum(pred[..., 0], gold[..., 0])
  )
  union = jnp.maximum(pred[..., 1], gold[..., 1]) - jnp.minimum(pred[..., 0], gold[..., 0])
  ok = union != 0
  return jnp.where(ok, inter / jnp.where(ok, union, 1.0), 0.0)


def proximity_sigma(step_fraction: jax.Array) -> jax.Array:
  """Gaussian width in seconds: 4 (1 - f) while f < 3/4, then 1."""
  return jnp.where(step_fraction < 0.75, 4.0 * (1.0 - step_fraction), 1.0)


def _mean_per(values: jax.Array, owner: jax.Array, count: jax.Array) -> jax.Array:
  """Per-owner sum of flat values divided by count; 0 where count is 0."""
  total = jax.ops.segment_sum(values, owner, num_segments=count.shape[0], indices_are_sorted=True)
  return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def _max_per(values: jax.Array, owner: jax.Array, size: int) -> jax.Array:
  """Per-owner max of non-negative flat values; 0 for an owner with none."""
  best = jax.ops.segment_max(values, owner, num_segments=size, indices_are_sorted=True)
  return jnp.maximum(best, 0.0)


def temporal_point(p: ParsedArrays, g: GoldArrays, sigma: jax.Array) -> jax.Array:
  """Mean over think times of exp(-d^2 / 2 sigma^2), d to the nearest key frame. [N]"""
  dist = jnp.abs(p.time[:, None] - g.key_time[p.time_sample])  # [T, G]
  nearest = jnp.where(g.key_time_valid[p.time_sample], dist, jnp.inf).min(-1)
  score = jnp.exp(-(nearest**2) / (2 * sigma**2))
  return _mean_per(jnp.where(p.time_valid, score, 0.0), p.time_sample, p.n_times)


def temporal_segment(p: ParsedArrays, g: GoldArrays) -> jax.Array:
  """Fraction of think times inside the gold span. [N]"""
  span = g.span[p.time_sample]
  inside = (span[:, 0] <= p.time) & (p.time <= span[:, 1]) & p.time_valid
  return _mean_per(inside.astype(p.time.dtype), p.time_sample, p.n_times)


def gate_claims(
  claim_time: jax.Array, key_time: jax.Array, key_valid: jax.Array, one_sided: bool
) -> tuple[jax.Array, jax.Array]:
  """Key frame each claim [C] is scored against ([C, G] inputs) and whether it has one.

  Candidates: |g - t| <= 1 s (symmetric) or g - t < 1 s (one_sided, the reference);
  the nearest wins, the first in record order on a tie.
  """
  signed = key_time - claim_time[:, None]
  dist = jnp.abs(signed)
  near = (signed < GATE_SECONDS) if one_sided else (dist <= GATE_SECONDS)
  candidate = key_valid & near & (dist < jnp.inf)  # an inf or nan time gates nowhere
  frame = jnp.argmin(jnp.where(candidate, dist, jnp.inf), axis=-1)
  return frame, candidate.any(-1)


def claim_spatial(
  p: ParsedArrays, g: GoldArrays, one_sided: bool, per_key_frame: bool = False
) -> jax.Array:
  """Spatio-temporal thk_spatial: mean over claims of the gated claim score. [N]

  Claim score = max over the key frame's objects of the mean over that object's gold
  boxes of the max IoU over the claim's boxes; 0 for a claim gated nowhere.

  per_key_frame (an o3jax option, not the reference): each key frame scores its best
  claim, and the sum is divided by max(claims, key frames). With one claim per key frame
  it is the reference's value; an answer can no longer raise it by leaving a key frame
  out or by repeating a good claim.
  """
  frame, gated = gate_claims(
    p.claim_time, g.key_time[p.claim_sample], g.key_time_valid[p.claim_sample], one_sided
  )
  gold = g.key_box[p.claim_sample, frame]  # [C, O, M, 4]
  gold_valid = g.key_box_valid[p.claim_sample, frame]  # [C, O, M]
  iou = box_iou(p.box[:, None, None, :], gold[p.box_claim])  # [Q, O, M]
  best = _max_per(
    jnp.where(p.box_valid[:, None, None], iou, 0.0), p.box_claim, p.claim_time.shape[0]
  )  # [C, O, M]
  n_gold = gold_valid.sum(-1)
  per_object = jnp.where(gold_valid, best, 0.0).sum(-1) / jnp.maximum(n_gold, 1)
  claim = jnp.where(n_gold > 0, per_object, 0.0).max(-1)
  claim = jnp.where(gated & p.claim_valid, claim, 0.0)
  if not per_key_frame:
    return _mean_per(claim, p.claim_sample, p.n_claims)
  n, keys = g.key_time_valid.shape
  best = jax.ops.segment_max(claim, p.claim_sample * keys + frame, num_segments=n * keys)
  best = jnp.where(g.key_time_valid, jnp.maximum(best, 0.0).reshape(n, keys), 0.0)  # [N, G]
  denominator = jnp.maximum(p.n_claims, g.key_time_valid.sum(-1))
  return jnp.where(p.n_claims > 0, best.sum(-1) / jnp.maximum(denominator, 1), 0.0)


def visual_spatial(p: ParsedArrays, g: GoldArrays) -> jax.Array:
  """Visual-QA thk_spatial: max IoU of the think boxes with the gold box. [N]"""
  iou = box_iou(p.vbox, g.box[p.vbox_sample])
  return _max_per(jnp.where(p.vbox_valid, iou, 0.0), p.vbox_sample, p.n_claims.shape[0])


def format_reward(p: ParsedArrays, task: jax.Array) -> jax.Array:
  """1 for balanced think+answer with the task's grounding, 0.5 without, else 0. [N]"""
  obj, time, box = p.think_tags[:, 0], p.think_tags[:, 1], p.think_tags[:, 2]
  full = (obj > 0) & (time > 0) & (box > 0)
  grounded = jnp.where(
    (task == TG) | (task == TG_MCQ),
    time >= 2,
    jnp.where(task == VQA, full | p.visual_grounded, full | (task == G_MCQ) | (task == G_FREE)),
  )
  ok = p.has_think & p.has_answer & p.balanced
  return jnp.where(ok, jnp.where(grounded, 1.0, 0.5), 0.0)


@functools.partial(jax.jit, static_argnames=("one_sided", "per_key_frame"))
def reward_terms(
  p: ParsedArrays,
  g: GoldArrays,
  rouge: jax.Array,
  step_fraction: jax.Array,
  one_sided: bool = False,
  per_key_frame: bool = False,
) -> dict[str, jax.Array]:
  """All terms and their per-task total, each [N]; rouge [N] is the host ROUGE score."""
  task = g.task
  mcq = (p.choice[:, :2] == g.choice[:, None]).any(-1)
  tg_mcq = (p.choice[:, 2:] == g.choice[:, None]).any(-1)
  acc = jnp.where(task == TG_MCQ, tg_mcq, jnp.where(task == G_MCQ, mcq, rouge))
  think, both = p.has_think, p.has_think & p.has_answer
  values = [
    acc.astype(rouge.dtype),
    jnp.where(p.span_valid, span_iou(p.span, g.span), 0.0),
    jnp.where(p.answer_box_valid, box_iou(p.answer_box, g.box), 0.0),
    jnp.where(think, temporal_point(p, g, proximity_sigma(step_fraction)), 0.0),
    jnp.where(think, temporal_segment(p, g), 0.0),
    jnp.where(
      both,
      jnp.where(task == VQA, visual_spatial(p, g), claim_spatial(p, g, one_sided, per_key_frame)),
      0.0,
    ),
    format_reward(p, task),
  ]
  applies = jnp.asarray(APPLIES)[task]  # [N, terms]
  terms = {name: jnp.where(applies[:, k], v, 0.0) for k, (name, v) in enumerate(zip(TERMS, values))}
  terms["total"] = sum(terms[name] for name in TERMS)
  return terms


@functools.partial(jax.jit, static_argnames="group_size")
def group_advantages(rewards: jax.Array, group_size: int) -> jax.Array:
  """(r - mean_G r) / (std_G r + 1e-4), unbiased std, over consecutive groups. [..., N]

  Rollouts of one prompt are consecutive along the last axis.
  """
  if group_size < 2 or rewards.shape[-1] % group_size:
    raise ValueError(f"group_size must be >= 2 and divide {rewards.shape[-1]}, got {group_size}")
  groups = rewards.reshape(rewards.shape[:-1] + (-1, group_size))
  mean = groups.mean(-1, keepdims=True)
  std = groups.std(-1, ddof=1, keepdims=True)
  return ((groups - mean) / (std + 1e-4)).reshape(rewards.shape)
