"""What SFT and GSPO share: mesh, model, optimizer and state set-up, resume, the NaN stop.

`setup_run` builds everything a training loop needs, restoring the newest complete
checkpoint of the workdir when there is one. The loops (sft.py, gspo.py) differ in their
loss and in how they turn data into a batch. The workdir's files are read and written by
`o3jax.workdir`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp

from o3jax import sharding, workdir as workdir_lib
from o3jax.checkpoint import Checkpointer
from o3jax.models import config as model_config_lib
from o3jax.processing.config import ProcessingConfig, for_model
from o3jax.processing.tokenizer import special_token_ids
from o3jax.train import optim, state as state_lib
from o3jax.train.config import TrainConfig


class NonFiniteLoss(RuntimeError):
  pass


@dataclasses.dataclass
class Run:
  cfg: TrainConfig
  workdir: str
  mesh: Any
  model_config: model_config_lib.Qwen2_5_VLConfig
  tokenizer: Any
  graphdef: Any
  state: Any
  shardings: Any
  tx: Any
  schedule: Any
  checkpointer: Checkpointer
  start_step: int


def setup_run(
  cfg: TrainConfig, workdir: str, init: str | None = None, init_params_from_checkpoint: bool = True
) -> Run:
  """Mesh, model, optimizer and state; resumes from `workdir/checkpoints` when present,
  with the architecture the run saved in `workdir/model_config.json`.

  `init` is a Hugging Face directory, or another o3jax workdir (e.g. the SFT run that
  GSPO starts from), whose newest checkpoint's params are taken.
  """
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
  tokenizer = workdir_lib.tokenizer_for(workdir, init)
  checkpointer = Checkpointer(workdir, keep=cfg.keep_checkpoints)
  latest = checkpointer.latest_step()
  if latest is not None and os.path.exists(os.path.join(workdir, workdir_lib.MODEL_CONFIG)):
    # A run that has checkpoints keeps the architecture it was trained with: resuming or
    # evaluating it under another config's preset (or init) must neither rebuild it
    # differently nor rewrite its model_config.json.
    model_config = workdir_lib.read_model_config(workdir)
  else:
    model_config = _new_model_config(cfg, init, special_token_ids(tokenizer))
    if jax.process_index() == 0:
      workdir_lib.write_model_config(workdir, model_config)
  compute = state_lib.dtype_of(cfg.compute_dtype)
  graphdef, abstract_params = state_lib.abstract_split(model_config, compute, cfg.remat)
  schedule = optim.schedule(cfg.optim, cfg.total_steps)
  tx = optim.make_optimizer(cfg.optim, cfg.total_steps, abstract_params)
  if latest is None and init and (init_params_from_checkpoint or workdir_lib.is_hf_dir(init)):
    params = workdir_lib.load_params(init, abstract_params, mesh)
    state, shardings = state_lib.init_from_params(params, tx, mesh)
  else:
    graphdef, state, shardings = state_lib.init_random(
      model_config, tx, mesh, cfg.seed, compute, cfg.remat
    )
  start = 0 if latest is None else latest
  return Run(
    cfg, workdir, mesh, model_config, tokenizer, graphdef, state, shardings, tx, schedule,
    checkpointer, start,
  )  # fmt: skip


def _new_model_config(
  cfg: TrainConfig, init: str | None, ids: dict[str, int]
) -> model_config_lib.Qwen2_5_VLConfig:
  """The architecture of a fresh run: that of `init` (a Hugging Face directory or an
  o3jax workdir), else the config's preset with the tokenizer's special-token ids."""
  if workdir_lib.is_hf_dir(init) or (
    init and os.path.exists(os.path.join(init, workdir_lib.MODEL_CONFIG))
  ):
    return workdir_lib.model_config_of(init)
  return model_config_lib.preset(cfg.model).replace(
    image_token_id=ids["image_token_id"],
    video_token_id=ids["video_token_id"],
    vision_start_token_id=ids["vision_start_token_id"],
    vision_end_token_id=ids["vision_end_token_id"],
    eos_token_id=ids["eos_token_id"],
  )


def restore(run: Run, data_iterator=None):
  """Loads the newest intact checkpoint of the run's own workdir, if any, into `run.state`
  (a damaged newer one is named and set aside: `Checkpointer.restore_newest`); with
  `data_iterator` (training goes on) its position too, and says so."""
  if run.start_step:
    abstract = jax.eval_shape(lambda s: s, run.state)
    run.start_step, run.state = run.checkpointer.restore_newest(
      abstract, run.shardings, data_iterator
    )
    if data_iterator is not None and jax.process_index() == 0:
      print(f"resumed from {run.checkpointer.directory}/{run.start_step}", file=sys.stderr)


def processing_config(cfg: TrainConfig, model_type: str | None = None) -> ProcessingConfig:
  """The config's processing overrides, made for the model family (`for_model`): that of
  `model_type`, else of the config's preset."""
  if model_type is None:
    model_type = model_config_lib.preset(cfg.model).model_type
  return for_model(ProcessingConfig(**cfg.processing), model_type)


def record_inference_settings(run: Run, stage: str) -> None:
  """Writes what `o3jax infer` and `o3jax eval` need to ask the trained model as it was
  trained: its frame processing, the prompts of its `stage` ("sft" or "rl") and the
  answer length of its rollouts (`workdir.INFERENCE`)."""
  processing = processing_config(run.cfg, run.model_config.model_type)
  workdir_lib.write_inference_settings(
    run.workdir,
    workdir_lib.InferenceSettings(
      processing, processing.prompt_stage(stage), run.cfg.gspo.max_new_tokens
    ),
  )


def check_finite(step: int, row: dict[str, float], checkpointer: Checkpointer) -> None:
  """Stops the run when the step's loss or gradient norm is not finite. (Not on the
  parameter norm: finite parameters near 1e30 overflow it; `check_state_finite` reads the
  parameters themselves.)"""
  bad = [k for k in ("loss", "grad_norm") if not math.isfinite(row.get(k, 0.0))]
  if bad:
    raise NonFiniteLoss(
      f"step {step}: non-finite " + ", ".join(f"{k} {row[k]}" for k in bad)
      + f"; stopping. {_kept(checkpointer)}"
    )  # fmt: skip


def _finite_leaves(state) -> dict[str, bool]:
  """{dotted path: all finite} for every floating-point array of a state."""
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  paths = [".".join(_name(k) for k in p if _name(k) != "value") for p, _ in flat]
  finite = [
    jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
    for _, x in flat
  ]
  return dict(zip(paths, map(bool, jax.device_get(finite))))


def _name(key) -> str:
  """One step of a pytree path: a dict key, a sequence index or an attribute."""
  for field in ("key", "idx", "name"):
    if hasattr(key, field):
      return str(getattr(key, field))
  return str(key)


def check_state_finite(step: int, state, checkpointer: Checkpointer) -> None:
  """Stops the run before a checkpoint of a state holding a NaN or inf (parameters or
  optimizer moments): a finite loss is computed from the state before the update, so
  it does not vouch for the state about to be saved."""
  bad = [path for path, ok in _finite_leaves(state).items() if not ok]
  if bad:
    params = [p for p in bad if p.startswith("params.")]
    moments = [p for p in bad if p.startswith("opt_state.")]
    raise NonFiniteLoss(
      f"step {step}: the state to save is not finite ({len(params)} parameter and "
      f"{len(moments)} optimizer arrays, first: {bad[0]}); not saved, stopping. "
      + _kept(checkpointer)
    )


def _kept(checkpointer: Checkpointer) -> str:
  checkpointer.wait()
  last = checkpointer.latest_step()
  if last is None:
    return "No checkpoint was written."
  return f"The last good checkpoint (step {last}) is left intact in {checkpointer.directory}"
