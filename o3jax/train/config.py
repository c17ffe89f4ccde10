"""Training settings (the architecture lives in the model config, not here).

A config file under `configs/` is python defining `get_config() -> TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  data: int = 1
  fsdp: int = 1
  tensor: int = 1


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  learning_rate: float = 1e-6
  warmup_steps: int = 0
  decay: str = "linear"  # "linear" | "cosine" | "constant"
  end_lr_fraction: float = 0.0
  weight_decay: float = 0.01  # applied to matrices only, not to biases and norm scales
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  max_grad_norm: float = 5.0
  freeze: tuple[str, ...] = ()  # regexes over parameter paths, e.g. r"^visual\."


@dataclasses.dataclass(frozen=True)
class GSPOConfig:
  group_size: int = 4
  temperature: float = 1.0
  top_p: float = 0.95
  top_k: int = 0
  max_new_tokens: int = 768
  eps_low: float = 0.2
  eps_high: float = 0.2
  beta: float = 0.04
  updates_per_batch: int = 1
  temporal_gate: str = "symmetric"
  spatial_rule: str = "per_claim"  # "per_key_frame": see rewards.score


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  model: str = "tiny"  # preset name; `--init` (HF dir or checkpoint) overrides
  compute_dtype: str = "float32"  # "bfloat16" for bf16 compute on fp32 master weights
  remat: str = "none"  # "none", "full", "dots" or "offload": see o3jax.models.layers
  mesh: MeshConfig = MeshConfig()
  optim: OptimConfig = OptimConfig()
  gspo: GSPOConfig = GSPOConfig()
  total_steps: int = 100
  batch_size: int = 8  # global, in sequences (GSPO: prompts)
  micro_batches: int = 1  # gradient accumulation: batch_size / micro_batches each
  max_length: int = 1024  # token length the batches are padded to
  seed: int = 0
  checkpoint_every: int = 50
  keep_checkpoints: int = 3
  data_workers: int = 0
  strict_data: bool = False
  processing: dict = dataclasses.field(default_factory=dict)  # ProcessingConfig overrides
  buckets: tuple = ()  # data.pipeline.BatchShape per bucket, smallest first
  tasks: tuple = ()  # train on these record tasks only (a curriculum stage); () = all

  def replace(self, **kw) -> "TrainConfig":
    return dataclasses.replace(self, **kw)


def load_config(path: str) -> TrainConfig:
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} not found")
  spec = importlib.util.spec_from_file_location(f"o3jax_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"{path}: a config file must define get_config()")
  cfg = module.get_config()
  if not isinstance(cfg, TrainConfig):
    raise ValueError(f"{path}: get_config() returned {type(cfg).__name__}, not TrainConfig")
  from o3jax.grammar import SFT_ONLY_TASKS, TASKS

  unknown = [t for t in cfg.tasks if t not in TASKS + SFT_ONLY_TASKS]
  if unknown:
    raise ValueError(
      f"{path}: tasks {unknown} are unknown; expected some of {list(TASKS + SFT_ONLY_TASKS)}"
    )
  return cfg
