"""GSPO log-prob passes with each prompt's vision repeated G times (before) or encoded
once and shared by its G rollouts (after, `vision_row`): step time, medians, same run.

  python scripts/bench_gspo_vision.py --prompts 4 --group 4 --images 10

Times, per layout, the jitted reference/pi_old pass (completion log-probs, forward) and
the policy pass (its gradient), on the tiny config with random weights and rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts.bench_train import random_batch  # noqa: E402
from o3jax.models import config as config_lib  # noqa: E402
from o3jax.train import state as state_lib  # noqa: E402
from o3jax.train.batch import model_batch, select_rows  # noqa: E402
from o3jax.train.loss import next_token_logprobs  # noqa: E402


def timed(fn, *args, steps):
  jax.block_until_ready(fn(*args))  # compile
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="tiny")
  ap.add_argument("--prompts", type=int, default=4)
  ap.add_argument("--group", type=int, default=4)
  ap.add_argument("--seq", type=int, default=640)
  ap.add_argument("--images", type=int, default=10)
  ap.add_argument("--completion", type=int, default=64)
  ap.add_argument("--steps", type=int, default=5)
  args = ap.parse_args()

  cfg = config_lib.preset(args.preset)
  raw = random_batch(
    cfg, args.prompts, args.seq, args.images, (1, 4, 6), 0, np.random.default_rng(0)
  )
  rows = select_rows(cfg, raw, np.repeat(np.arange(args.prompts), args.group))
  graphdef, params = nnx.split(state_lib.build_model(cfg, jax.random.key(0)))
  last = args.completion

  @jax.jit
  def forward(p, mb):
    return next_token_logprobs(nnx.merge(graphdef, p), mb, last=last)

  @jax.jit
  def gradient(p, mb):
    return jax.grad(lambda p: jnp.sum(forward(p, mb)))(p)

  result = {"prompts": args.prompts, "group": args.group, "seq": args.seq}
  for name, group in (("repeated", 1), ("shared", args.group)):
    mb = jax.tree.map(lambda x: x[0], model_batch(cfg, rows, group=group))
    result[f"{name}_vision_rows"] = int(mb["pixel_values"].shape[0])
    result[f"{name}_forward_s"] = timed(forward, params, mb, steps=args.steps)
    result[f"{name}_gradient_s"] = timed(gradient, params, mb, steps=args.steps)
  for k in ("forward", "gradient"):
    result[f"{k}_speedup"] = result[f"repeated_{k}_s"] / result[f"shared_{k}_s"]
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
