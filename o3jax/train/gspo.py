"""GSPO: rollouts of G per prompt, spatio-temporal rewards, group advantages, updates.

One training step = one rollout batch: B prompts x G samples with the current policy
(log-probs kept as pi_old), rewards from `o3jax.rewards.score` with the annealed width
fed by the step fraction, advantages z-scored within each group, reference log-probs from
the frozen initial policy (when beta > 0), then `updates_per_batch` optimizer updates,
each on a 1/U slice of the rollouts. With U = 1 pi_old equals the policy being
differentiated, as in the reference; with U > 1 the clip acts.

With several processes each one reads, rolls out, scores and batches only its own prompts
(the block of rows its devices hold, `o3jax.distributed.row_shard`): the sampler and the
log-prob passes run on the global arrays, each update takes 1/U of every process's
rollouts, and only the per-rollout rewards and lengths are gathered, for the metrics.
"""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax import sharding
from o3jax import workdir as workdir_lib
from o3jax.distributed import agree_max, gather_rows, local_rows, row_shard
from o3jax.grammar import TASKS
from o3jax.rewards import group_advantages
from o3jax.sample import cast_params
from o3jax.train import state as state_lib
from o3jax.train import step as step_lib
from o3jax.train.batch import model_batch, select_rows, vision_needs
from o3jax.train.config import TrainConfig
from o3jax.train.gspo_loss import gspo_objective
from o3jax.train.loss import next_token_logprobs
from o3jax.train.rollout import mean_rewards, rollout, score_rollouts
from o3jax.train.run import (
  check_finite,
  check_state_finite,
  record_inference_settings,
  restore,
  setup_run,
)
from o3jax.train.sft import data_iterator
from o3jax.workdir import MetricsLog, load_params

RL_KEYS = ("completion_mask", "old_logprobs", "ref_logprobs")


def _forward_logprobs(model, mb, g):
  """[N, T] log-probs of the completion tokens (the last max_new_tokens columns of each
  prompt ++ completion row); the LM head never runs over the prompt."""
  return next_token_logprobs(model, mb, g.temperature, last=g.max_new_tokens)


def policy_weights(params, compute_dtype: str):
  """The policy as the sampler reads it: cast once per rollout phase to the compute dtype
  (bf16 for the 7B), not per matmul of every decode step."""
  dtype = state_lib.dtype_of(compute_dtype)
  return params if dtype == jnp.float32 else cast_params(params, dtype)


def make_gspo_loss(cfg: TrainConfig):
  g = cfg.gspo

  def loss(model, mb):
    lp = _forward_logprobs(model, mb, g)
    (total, count), m = gspo_objective(
      lp,
      mb["old_logprobs"],
      mb["ref_logprobs"],
      mb["completion_mask"],
      mb["advantages"],
      eps_low=g.eps_low,
      eps_high=g.eps_high,
      beta=g.beta,
      row_mask=mb["row_mask"],
    )
    return (total, count), m

  return loss


def build_update_batch(model_cfg, batch, r, advantages, group, prompt_len):
  """Prompt ++ completion rows (pipeline layout) with pi_old log-probs and masks."""
  rows = select_rows(
    model_cfg,
    batch,
    np.repeat(np.arange(len(batch["prompt_ids"])), group),
    "prompt_ids",
    "prompt_mask",
  )
  n, m = r.tokens.shape
  comp_mask = (np.arange(m)[None, :] < r.lengths[:, None]).astype(np.int32)
  rows["input_ids"] = np.concatenate([rows.pop("prompt_ids"), r.tokens], axis=1)
  rows["attention_mask"] = np.concatenate([rows.pop("prompt_mask"), comp_mask], axis=1)
  pad = np.zeros((n, prompt_len), np.float32)
  extra = {
    "completion_mask": np.concatenate([pad.astype(np.int32), comp_mask], axis=1),
    "old_logprobs": np.concatenate([pad, r.logprobs.astype(np.float32)], axis=1),
    "advantages": advantages.astype(np.float32),
    "row_mask": r.valid.astype(np.float32),
  }
  return rows, extra


def _slice_rows(rows, extra, idx, model_cfg, micro, group):
  """Model inputs [M, ...] for the rollouts `idx` (consecutive whole groups): each
  prompt's vision once, shared by its `group` rollouts (`vision_row`). A micro-batch
  holding part of a group shares within runs of gcd(rows, group), all of one prompt."""
  share = math.gcd(len(idx) // micro, group)
  picked = select_rows(model_cfg, rows, idx)
  needs = agree_max(vision_needs(model_cfg, picked))
  mb = model_batch(model_cfg, picked, micro, group=share, needs=needs)
  per = len(idx) // micro
  for k, v in extra.items():
    v = np.asarray(v)
    mb[k] = v[idx].reshape((micro, per) + v.shape[1:])
  return mb


def train_gspo(
  cfg: TrainConfig,
  data_dir: str,
  workdir: str,
  steps: int | None = None,
  init: str | None = None,
  data_root: str | None = None,
  batches=None,
) -> dict:
  """GSPO from `init` (an SFT workdir or a Hugging Face directory) up to step `steps`.

  `batches` replaces the data pipeline (tests); it must have get_state/set_state."""
  with workdir_lib.claim(workdir, " ".join(sys.argv)):
    return _train_gspo(cfg, data_dir, workdir, steps, init, data_root, batches)


def _train_gspo(cfg, data_dir, workdir, steps, init, data_root, batches) -> dict:
  g = cfg.gspo
  updates = g.updates_per_batch
  # The LR schedule counts optimizer updates.
  run = setup_run(cfg.replace(total_steps=cfg.total_steps * updates), workdir, init)
  _, count = row_shard(run.mesh)
  n_rollouts = cfg.batch_size // count * g.group_size  # this process's
  if n_rollouts % (updates * cfg.micro_batches):
    raise ValueError(
      f"{n_rollouts} rollouts per process do not split into {updates} updates of "
      f"{cfg.micro_batches} micro-batches"
    )
  data = batches
  if data is None:
    data = data_iterator(
      cfg,
      data_dir,
      run.tokenizer,
      "rl",
      "STGR-RL.json",
      data_root=data_root,
      model_type=run.model_config.model_type,
    )
  restore(run, data)
  record_inference_settings(run, "rl")
  ref_params = None
  if g.beta > 0:
    # The frozen reference is the initial policy, reloaded on resume from `init` (a
    # workdir or a Hugging Face directory).
    ref_params = (
      jax.tree.map(jnp.copy, run.state.params)
      if not run.start_step
      else load_params(init, run.state.params, run.mesh)
    )
  target = cfg.total_steps if steps is None else steps
  train_step = step_lib.make_train_step(run.graphdef, make_gspo_loss(cfg), run.tx, run.schedule)
  ref_jit = {}

  def ref_logprobs(mb):
    """pi_ref's completion log-probs [M, b, T] of this process's rows of every micro-batch
    of `mb`, jitted with the params' and the rows' shardings under the mesh (one compile
    per batch layout)."""
    placed, shardings = step_lib.place_batch(mb, run.mesh)
    key = jax.tree.structure(mb), tuple(np.shape(x) for x in jax.tree.leaves(mb))
    if key not in ref_jit:
      each = lambda p, one: _forward_logprobs(nnx.merge(run.graphdef, p), one, g)
      ref_jit[key] = jax.jit(
        lambda p, mb: jax.lax.map(lambda one: each(p, one), mb),
        in_shardings=(run.shardings.params, shardings),
        out_shardings=shardings["old_logprobs"],
      )
    with sharding.use_mesh(run.mesh):
      return local_rows(ref_jit[key](ref_params, placed), axis=1)

  log = MetricsLog(workdir, target, run.start_step, desc="gspo")
  state, step, jitted, row = run.state, run.start_step, None, {}
  key = jax.random.key(cfg.seed)
  while step < target:
    batch = next(data)  # this process's prompts
    prompt_len = batch["prompt_ids"].shape[1]
    r = rollout(
      run.graphdef,
      policy_weights(state.params, cfg.compute_dtype),
      run.model_config,
      run.tokenizer,
      batch,
      jax.random.fold_in(key, step),
      num_samples=g.group_size,
      max_new_tokens=g.max_new_tokens,
      temperature=g.temperature,
      top_p=g.top_p,
      top_k=g.top_k,
      mesh=run.mesh,
    )
    terms = score_rollouts(r, (step + 1) / cfg.total_steps, g.temporal_gate, g.spatial_rule)
    adv = np.asarray(group_advantages(jnp.asarray(terms["total"]), g.group_size))
    adv = np.where(r.valid, adv, 0.0)
    rows, extra = build_update_batch(run.model_config, batch, r, adv, g.group_size, prompt_len)
    # Reference log-probs, slice by slice like the updates.
    per_update = n_rollouts // updates
    slices = [np.arange(u * per_update, (u + 1) * per_update) for u in range(updates)]
    ref = np.zeros_like(extra["old_logprobs"])
    mbs = []
    for idx in slices:
      mb = _slice_rows(
        rows,
        {**extra, "ref_logprobs": ref},
        idx,
        run.model_config,
        cfg.micro_batches,
        g.group_size,
      )
      if ref_params is not None:
        lp = ref_logprobs(mb)
        mb["ref_logprobs"] = lp
      mbs.append(mb)
    for mb in mbs:
      placed, shardings = step_lib.place_batch(mb, run.mesh)
      if jitted is None:
        jitted = step_lib.jit_train_step(train_step, run.shardings, shardings, run.mesh)
      state, metrics = jitted(state, placed)
    step += 1
    metrics = jax.device_get(metrics)
    seqs = max(float(metrics.pop("tokens")), 1.0)
    # Every process's rollouts: rewards, lengths and tasks (small), in row order.
    tasks = [TASKS.index(rec["task"]) if rec and rec["task"] in TASKS else -1 for rec in r.records]
    table = np.stack(
      [terms[k] for k in terms] + [r.valid, r.lengths, np.asarray(tasks)], axis=1
    ).astype(np.float64)
    table = gather_rows(table, run.mesh)
    terms = {k: table[:, i] for i, k in enumerate(terms)}
    valid, lengths = table[:, -3].astype(bool), table[:, -2]
    tasks = [TASKS[int(i)] if i >= 0 else "" for i in table[:, -1]]
    groups = terms["total"].reshape(-1, g.group_size)[valid.reshape(-1, g.group_size).all(1)]
    out = {
      "loss": metrics["loss"],
      "grad_norm": metrics["grad_norm"],
      "param_norm": metrics["param_norm"],
      "lr": metrics["lr"],
      "clip_fraction": metrics["clipped"] / seqs,
      "ratio": metrics["ratio"] / seqs,
      "reward_std": float(terms["total"][valid].std()) if valid.any() else 0.0,
      "identical_reward_groups": float(np.mean(groups.std(1) == 0)) if len(groups) else 0.0,
      "completion_length": float(lengths[valid].mean()) if valid.any() else 0.0,
      "tokens": float(lengths[valid].sum()),
    }
    if g.beta > 0:  # with beta 0 nothing computes the KL term
      out["kl"] = metrics["kl"] / seqs
    out.update({f"reward/{k}": v for k, v in mean_rewards(terms, valid, tasks).items()})
    row = log.write(step, out)
    check_finite(step, row, run.checkpointer)
    if step % cfg.checkpoint_every == 0 or step == target:
      check_state_finite(step, state, run.checkpointer)
      run.checkpointer.save(step, state, data)
  log.close()
  run.checkpointer.close()
  run.state = state
  if getattr(data, "skipped", 0):
    print(f"skipped {data.skipped} bad records", file=sys.stderr)
  return row
