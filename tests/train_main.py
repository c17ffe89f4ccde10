"""Subprocess entry for trainer tests: `python train_main.py DATA WORKDIR STEPS [K=V ...]`.

K=V pairs override TrainConfig fields of configs/tiny_synthetic.py (ints, or mesh=D,F,T).
"""

import os
import sys

if any(a.startswith("mesh=") for a in sys.argv):
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

from o3jax.train.config import MeshConfig, load_config  # noqa: E402
from o3jax.train.sft import train_sft  # noqa: E402

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny_synthetic.py")


def config(overrides):
  cfg = load_config(CONFIG)
  kw = {}
  for item in overrides:
    k, v = item.split("=")
    kw[k] = MeshConfig(*map(int, v.split(","))) if k == "mesh" else int(v)
  return cfg.replace(**kw)


if __name__ == "__main__":
  data, workdir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
  train_sft(config(sys.argv[4:]), data, workdir, steps=steps)
