"""What SFT and GSPO share: mesh, model and tokenizer set-up, resume, metrics log.

`setup_run` builds everything a training loop needs, restoring the newest complete
checkpoint of the workdir when there is one. The loops (sft.py, gspo.py) differ in their
loss and in how they turn data into a batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any

import jax
import numpy as np
from flax import nnx

from o3jax import sharding
from o3jax.models import config as model_config_lib
from o3jax.processing.tokenizer import build_demo_tokenizer, load_tokenizer, special_token_ids
from o3jax.train import optim, state as state_lib
from o3jax.train.checkpoint import Checkpointer
from o3jax.train.config import TrainConfig


MODEL_CONFIG = (
  "model_config.json"  # the architecture of an o3jax workdir, in Hugging Face config form
)


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
  frozen_mask: Any
  checkpointer: Checkpointer
  start_step: int


def tokenizer_for(workdir: str, init: str | None):
  """The run's tokenizer: the init directory's tokenizer.json, else the workdir's copy,
  else the demo tokenizer (written to the workdir so every later process reads the same)."""
  saved = os.path.join(workdir, "tokenizer.json")
  if init and os.path.exists(os.path.join(init, "tokenizer.json")):
    tok = load_tokenizer(os.path.join(init, "tokenizer.json"))
  elif os.path.exists(saved):
    return load_tokenizer(saved)
  else:
    tok = build_demo_tokenizer()
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tok.save(saved + ".tmp")
    os.replace(saved + ".tmp", saved)  # other processes never read a half-written file
  return tok


def _hf_dir(path: str | None) -> bool:
  return bool(path) and os.path.exists(os.path.join(path, "config.json"))


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
  tokenizer = tokenizer_for(workdir, init)
  checkpointer = Checkpointer(workdir, keep=cfg.keep_checkpoints)
  latest = checkpointer.latest_step()
  own_config = os.path.join(workdir, MODEL_CONFIG)
  if latest is not None and os.path.exists(own_config):
    # A run that has checkpoints keeps the architecture it was trained with: resuming or
    # evaluating it under another config's preset (or init) must neither rebuild it
    # differently nor rewrite its model_config.json.
    model_config = workdir_model_config(workdir)
  else:
    model_config = _new_model_config(cfg, init, special_token_ids(tokenizer))
    if jax.process_index() == 0:
      write_workdir_model_config(workdir, model_config)
  compute = state_lib.dtype_of(cfg.compute_dtype)
  graphdef, abstract_params = state_lib.abstract_split(model_config, compute, cfg.remat)
  schedule = optim.schedule(cfg.optim, cfg.total_steps)
  tx = optim.make_optimizer(cfg.optim, cfg.total_steps, abstract_params)
  frozen = None
  if cfg.optim.freeze:
    labels = optim.frozen_labels(abstract_params, cfg.optim.freeze)
    frozen = jax.tree.map(lambda label: label == "frozen", labels)

  params = None
  if latest is None and _hf_dir(init):
    from o3jax.convert.hf import load_pretrained

    model = load_pretrained(
      init, param_dtype=np.float32, compute_dtype=compute, mesh=mesh, remat=cfg.remat
    )
    params = nnx.state(model, nnx.Param)
  elif latest is None and init and init_params_from_checkpoint:
    params = load_params_from_workdir(init, abstract_params, mesh)
  if params is not None:
    state, shardings = state_lib.init_from_params(params, tx, mesh)
  else:
    graphdef, state, shardings = state_lib.init_random(
      model_config, tx, mesh, cfg.seed, compute, cfg.remat
    )
  return Run(
    cfg,
    workdir,
    mesh,
    model_config,
    tokenizer,
    graphdef,
    state,
    shardings,
    tx,
    schedule,
    frozen,
    checkpointer,
    0 if latest is None else latest,
  )


def workdir_model_config(workdir: str) -> model_config_lib.Qwen2_5_VLConfig:
  """The architecture an o3jax workdir (a run, or `o3jax convert --to o3jax` output) saved."""
  with open(os.path.join(workdir, MODEL_CONFIG), encoding="utf-8") as f:
    return model_config_lib.from_hf_dict(json.load(f))


def write_workdir_model_config(workdir: str, config: model_config_lib.Qwen2_5_VLConfig) -> None:
  with open(os.path.join(workdir, MODEL_CONFIG), "w", encoding="utf-8") as f:
    json.dump(model_config_lib.to_hf_dict(config), f, indent=1)


def _new_model_config(
  cfg: TrainConfig, init: str | None, ids: dict[str, int]
) -> model_config_lib.Qwen2_5_VLConfig:
  """The architecture of a fresh run: that of `init` (a Hugging Face directory or an
  o3jax workdir), else the config's preset with the tokenizer's special-token ids."""
  if _hf_dir(init):
    return model_config_lib.load_hf_config(init)
  if init and os.path.exists(os.path.join(init, MODEL_CONFIG)):
    return workdir_model_config(init)
  return model_config_lib.preset(cfg.model).replace(
    image_token_id=ids["image_token_id"],
    video_token_id=ids["video_token_id"],
    vision_start_token_id=ids["vision_start_token_id"],
    vision_end_token_id=ids["vision_end_token_id"],
    eos_token_id=ids["eos_token_id"],
  )


def load_params_from_workdir(workdir: str, abstract_params, mesh):
  """The params of the newest checkpoint of another run (its optimizer state is ignored),
  placed on `mesh`."""
  ckpt = Checkpointer(workdir, asynchronous=False)
  step = ckpt.latest_step()
  if step is None:
    raise FileNotFoundError(f"{workdir}: no complete checkpoint to initialise from")
  arrays = ckpt.read_params(step)
  ckpt.close()
  shardings = sharding.state_shardings(abstract_params, mesh)
  flat_sh = dict(nnx.to_flat_state(shardings))
  abstract_flat = [
    (path, ".".join(map(str, path)), var) for path, var in nnx.to_flat_state(abstract_params)
  ]
  extra = sorted(set(arrays) - {key for _, key, _ in abstract_flat})
  if extra:  # a deeper or wider model: taking the params that fit would drop the rest
    raise ValueError(
      f"{workdir} checkpoint {step} holds {len(extra)} parameters the model does not "
      f"have (first: {extra[0]}); is its model_config.json the one it was trained with?"
    )
  flat = []
  for path, key, var in abstract_flat:
    if key not in arrays:
      raise KeyError(f"{workdir} checkpoint {step} lacks parameter {key}")
    value = np.asarray(arrays[key]).astype(var.get_value().dtype)
    if value.shape != var.get_value().shape:
      raise ValueError(
        f"{workdir} checkpoint {step}: {key} has shape {value.shape}, the "
        f"model expects {var.get_value().shape}"
      )
    flat.append((path, var.replace(jax.device_put(value, flat_sh[path].get_value()))))
  return nnx.from_flat_state(flat)


def restore(run: Run, data_iterator=None):
  """Loads the newest checkpoint of the run's own workdir, if any, into `run.state`."""
  if run.start_step:
    abstract = jax.eval_shape(lambda s: s, run.state)
    run.state = run.checkpointer.restore(run.start_step, abstract, run.shardings, data_iterator)
    print(f"resumed from {run.checkpointer.directory}/{run.start_step}", file=sys.stderr)


class MetricsLog:
  """One JSON line per step in WORKDIR/metrics.jsonl, and a log line on stderr."""

  def __init__(self, workdir: str, total: int, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.total = total
    self.last = time.perf_counter()
    # Drop lines beyond the checkpoint we resume from, so the log matches the state.
    if os.path.exists(self.path) and jax.process_index() == 0:
      with open(self.path) as f:
        keep = [ln for ln in f if ln.strip() and json.loads(ln)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(keep)

  def write(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
    now = time.perf_counter()
    elapsed, self.last = now - self.last, now
    row = {"step": step, **{k: float(np.asarray(v)) for k, v in metrics.items()}}
    row["steps_per_s"] = 1.0 / max(elapsed, 1e-9)
    if "tokens" in row:
      row["tokens_per_s"] = row["tokens"] / max(elapsed, 1e-9)
    if jax.process_index() == 0:
      with open(self.path, "a") as f:
        f.write(json.dumps(row) + "\n")
      shown = " ".join(
        f"{k} {row[k]:.4g}"
        for k in ("loss", "grad_norm", "lr", "steps_per_s", "tokens_per_s", "reward/total")
        if k in row
      )
      print(f"step {step}/{self.total} {shown}", file=sys.stderr, flush=True)
    return row


def check_finite(step: int, row: dict[str, float], checkpointer: Checkpointer) -> None:
  if not math.isfinite(row.get("loss", 0.0)) or not math.isfinite(row.get("grad_norm", 0.0)):
    checkpointer.wait()
    last = checkpointer.latest_step()
    raise NonFiniteLoss(
      f"step {step}: non-finite loss {row.get('loss')} (grad norm "
      f"{row.get('grad_norm')}); stopping. The last good checkpoint "
      f"(step {last}) is left intact in {checkpointer.directory}"
    )
