"""GSPO step time on CPU, tiny config: this tree against a baseline commit, medians, one run.

  python scripts/bench_gspo_step.py --baseline 951e168 --steps 8

Each code tree (`git archive` of the baseline commit into a temporary directory, and this
tree) trains GSPO from random weights on freshly synthesized data in a subprocess; a step
is the time between consecutive metrics rows (rollouts, rewards, reference log-probs,
updates). The first step (compilation) is dropped; the median of the rest is reported,
with the ratio baseline / this tree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(args) -> None:
  """Runs in a subprocess whose sys.path starts with the code tree under test."""
  from o3jax.data.synth import synthesize
  from o3jax.train import gspo as gspo_lib
  from o3jax.train.config import load_config

  stamps = []

  class TimedLog(gspo_lib.MetricsLog):
    def write(self, step, row):
      stamps.append(time.perf_counter())
      return super().write(step, row)

  gspo_lib.MetricsLog = TimedLog
  cfg = load_config(os.path.join(os.getcwd(), "configs", "tiny_synthetic.py"))  # the tree's
  cfg = cfg.replace(
    batch_size=args.prompts,
    checkpoint_every=10**6,
    gspo=dataclasses.replace(
      cfg.gspo,
      group_size=args.group,
      max_new_tokens=args.new_tokens,
      beta=0.04,
      updates_per_batch=2,
    ),
  )
  with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "data")
    synthesize(data, videos=4, seed=0, progress=False)
    gspo_lib.train_gspo(cfg, data, os.path.join(tmp, "run"), steps=args.steps)
  steps = [b - a for a, b in zip(stamps, stamps[1:])]
  print(json.dumps({"step_s": steps}))


def measure(code: str, args) -> list[float]:
  env = dict(os.environ, PYTHONPATH=code)
  cmd = [sys.executable, os.path.abspath(__file__), "--worker"]
  cmd += ["--steps", str(args.steps), "--prompts", str(args.prompts), "--group", str(args.group)]
  cmd += ["--new-tokens", str(args.new_tokens)]
  out = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
  if out.returncode:
    raise RuntimeError(out.stderr[-4000:])
  return json.loads(out.stdout.strip().splitlines()[-1])["step_s"]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--baseline", default="951e168", help="commit to compare with")
  ap.add_argument("--steps", type=int, default=8)
  ap.add_argument("--prompts", type=int, default=4)
  ap.add_argument("--group", type=int, default=4)
  ap.add_argument("--new-tokens", type=int, default=32)
  ap.add_argument("--worker", action="store_true")
  args = ap.parse_args()
  if args.worker:
    return worker(args)
  result = {k: getattr(args, k) for k in ("baseline", "steps", "prompts", "group", "new_tokens")}
  with tempfile.TemporaryDirectory() as base:
    archive = subprocess.run(
      ["git", "-C", ROOT, "archive", args.baseline, "o3jax", "configs"],
      check=True,
      capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
    for name, code in (("baseline", base), ("this_tree", ROOT)):
      steps = measure(code, args)
      result[f"{name}_steps_s"] = [round(s, 3) for s in steps]
      result[f"{name}_median_s"] = statistics.median(steps[1:])
  result["speedup"] = result["baseline_median_s"] / result["this_tree_median_s"]
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
