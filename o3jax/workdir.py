"""A workdir on disk: the files a run or a converted checkpoint leaves, and reading them.

Layout: `model_config.json` (the architecture, in Hugging Face config form),
`tokenizer.json`, `inference.json` (how the model was trained to be asked: frame
processing, prompt stage, answer length), `checkpoints/<step>` (`o3jax.checkpoint`) and
`metrics.jsonl` (docs/reference.md, "Workdir"). Parameters
load from such a workdir (its newest checkpoint) or from a Hugging Face directory
(config.json + safetensors) through one function, `load_params`; training, evaluation,
inference and conversion all read models this way.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from o3jax import jsonio, sharding
from o3jax.checkpoint import Checkpointer
from o3jax.models import config as model_config_lib
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.tokenizer import build_demo_tokenizer, load_tokenizer

MODEL_CONFIG = "model_config.json"  # the architecture of an o3jax workdir, in Hugging Face form
TOKENIZER = "tokenizer.json"
INFERENCE = "inference.json"  # how the model was trained to be asked


def is_hf_dir(path: str | None) -> bool:
  return bool(path) and os.path.isfile(os.path.join(path, "config.json"))


def model_kind(path: str) -> str:
  """ "hf" for a Hugging Face directory, "o3jax" for an o3jax workdir."""
  if is_hf_dir(path):
    return "hf"
  if os.path.isfile(os.path.join(path, MODEL_CONFIG)):
    return "o3jax"
  raise FileNotFoundError(
    f"{path}: not a model directory (no config.json of a Hugging Face "
    f"model, no {MODEL_CONFIG} of an o3jax checkpoint)"
  )


def read_model_config(workdir: str) -> model_config_lib.Qwen2_5_VLConfig:
  """The architecture an o3jax workdir (a run, or `o3jax convert --to o3jax` output) saved."""
  with open(os.path.join(workdir, MODEL_CONFIG), encoding="utf-8") as f:
    return model_config_lib.from_hf_dict(json.load(f))


def write_model_config(workdir: str, config: model_config_lib.Qwen2_5_VLConfig) -> None:
  with open(os.path.join(workdir, MODEL_CONFIG), "w", encoding="utf-8") as f:
    json.dump(model_config_lib.to_hf_dict(config), f, indent=1)


def model_config_of(path: str) -> model_config_lib.Qwen2_5_VLConfig:
  """The architecture of a Hugging Face directory or of an o3jax workdir."""
  if model_kind(path) == "hf":
    return model_config_lib.load_hf_config(path)
  return read_model_config(path)


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
  """What a model must be shown to answer as it was trained: its frames (processing), the
  system prompts of a stage, and the answer length it was trained to finish within."""

  processing: ProcessingConfig
  prompt_stage: str  # "sft" or "rl"
  max_new_tokens: int


def write_inference_settings(directory: str, settings: InferenceSettings) -> None:
  if jax.process_index() != 0:
    return
  os.makedirs(directory, exist_ok=True)
  jsonio.dump(
    {
      "processing": dataclasses.asdict(settings.processing),
      "prompt_stage": settings.prompt_stage,
      "max_new_tokens": settings.max_new_tokens,
    },
    os.path.join(directory, INFERENCE),
  )


def read_inference_settings(directory: str) -> InferenceSettings | None:
  """The settings a workdir (or a model converted from one) recorded; None when it has
  none (a downloaded Hugging Face model: the reference settings apply)."""
  path = os.path.join(directory, INFERENCE)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    raw = json.load(f)
  try:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["processing"].items()}
    return InferenceSettings(
      ProcessingConfig(**fields), str(raw["prompt_stage"]), int(raw["max_new_tokens"])
    )
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"{path}: not an o3jax {INFERENCE} ({type(e).__name__}: {e})") from None


def tokenizer_for(workdir: str, init: str | None):
  """The run's tokenizer: the init directory's tokenizer.json, else the workdir's copy,
  else the demo tokenizer (written to the workdir so every later process reads the same)."""
  saved = os.path.join(workdir, TOKENIZER)
  if init and os.path.exists(os.path.join(init, TOKENIZER)):
    tok = load_tokenizer(os.path.join(init, TOKENIZER))
  elif os.path.exists(saved):
    return load_tokenizer(saved)
  else:
    tok = build_demo_tokenizer()
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    tok.save(saved + ".tmp")
    os.replace(saved + ".tmp", saved)  # other processes never read a half-written file
  return tok


def load_params(path: str, abstract_params, mesh):
  """The parameters of a Hugging Face directory or of an o3jax workdir's newest checkpoint
  (its optimizer state is ignored), shaped and typed as `abstract_params`, on `mesh`."""
  if is_hf_dir(path):
    from o3jax.convert.hf import load_pretrained

    dtype = jax.tree.leaves(abstract_params)[0].dtype
    return nnx.state(load_pretrained(path, param_dtype=dtype, mesh=mesh), nnx.Param)
  return load_params_from_workdir(path, abstract_params, mesh)


def load_params_from_workdir(workdir: str, abstract_params, mesh):
  """The params of the newest checkpoint of a workdir, placed on `mesh`."""
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
      f"have (first: {extra[0]}); is its {MODEL_CONFIG} the one it was trained with?"
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


class MetricsLog:
  """One strict-JSON line per step in WORKDIR/metrics.jsonl (a non-finite value is null),
  and a progress bar on stderr with steps/s and the loss (or the mean reward)."""

  def __init__(self, workdir: str, total: int, resume_step: int, desc: str = "train"):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.total = total
    self.last = time.perf_counter()
    main = jax.process_index() == 0
    # Drop lines beyond the checkpoint we resume from, so the log matches the state.
    if os.path.exists(self.path) and main:
      with open(self.path) as f:
        keep = [ln for ln in f if ln.strip() and json.loads(ln)["step"] <= resume_step]
      with open(self.path, "w") as f:
        f.writelines(keep)
    self.bar = tqdm(
      total=total, initial=resume_step, desc=desc, unit="step", disable=not main, file=sys.stderr
    )

  def write(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
    now = time.perf_counter()
    elapsed, self.last = now - self.last, now
    row = {"step": step, **{k: float(np.asarray(v)) for k, v in metrics.items()}}
    row["steps_per_s"] = 1.0 / max(elapsed, 1e-9)
    if "tokens" in row:
      row["tokens_per_s"] = row["tokens"] / max(elapsed, 1e-9)
    if jax.process_index() == 0:
      with open(self.path, "a") as f:
        f.write(jsonio.dumps(row) + "\n")
      shown = {"reward/total": "reward", "loss": "loss", "tokens_per_s": "tok/s"}
      self.bar.set_postfix_str(
        " ".join(f"{name} {row[k]:.4g}" for k, name in shown.items() if k in row), refresh=False
      )
      self.bar.update(step - self.bar.n)
    return row

  def close(self) -> None:
    self.bar.close()
