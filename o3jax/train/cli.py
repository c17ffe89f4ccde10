"""`o3jax sft` and `o3jax gspo`: train a model on STGR records.

    o3jax sft  --config configs/tiny_synthetic.py --data DIR --workdir W [--steps N] [--init DIR]
    o3jax gspo --config configs/tiny_synthetic_gspo.py --data DIR --workdir W2 --init W

--data holds STGR-SFT.json (sft) or STGR-RL.json (gspo) and the media they name (`o3jax
data synth` writes such a folder); --data-root reads the published STGR tree instead. The workdir receives checkpoints, metrics.jsonl (one
JSON line per step), tokenizer.json, model_config.json and inference.json (how `o3jax
infer` and `o3jax eval` ask the trained model); a run resumes from its newest complete
checkpoint, and `--steps` is the total to reach. Config files, record fields, the reward
terms and the GSPO objective: docs/reference.md.
"""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTIONS = {
  "sft": "cold-start supervised fine-tuning: cross-entropy on the grounded answers",
  "gspo": "GSPO reinforcement learning from an SFT run, on spatio-temporal rewards",
}


def add_parser(sub) -> None:
  for name, helptext in DESCRIPTIONS.items():
    p = sub.add_parser(
      name,
      help=helptext,
      description=f"{helptext}.\n\n" + __doc__.split("\n", 2)[2],
      formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="python config file (configs/*.py)")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="directory with STGR-SFT.json / STGR-RL.json")
    data.add_argument(
      "--data-root",
      help="the published STGR tree: DIR/json_data/STGR-*.json, media under DIR/videos/"
      "<folder of the record's source or task> (o3jax/data/stgr_layout.py)",
    )
    p.add_argument(
      "--workdir",
      required=True,
      help="where checkpoints, metrics.jsonl and the model's settings go",
    )
    p.add_argument(
      "--steps",
      type=int,
      default=None,
      help="total steps to reach (default: the config's total_steps); a later "
      "call with a larger value continues the run",
    )
    p.add_argument(
      "--init",
      default=None,
      required=(name == "gspo"),
      help="Hugging Face directory or o3jax workdir to start from"
      + (" (the SFT run)" if name == "gspo" else " (default: random weights)"),
    )
    p.set_defaults(func=run)


def summary(command: str, workdir: str, row: dict) -> str:
  """One line: where the run stands and what it wrote."""
  if not row:
    return (
      f"o3jax {command}: {workdir} is already at the requested step; nothing to do "
      "(--steps N to go further)"
    )
  shown = [f"loss {row['loss']:.4g}"] if "loss" in row else []
  if "reward/total" in row:
    shown.append(f"mean reward {row['reward/total']:.4g}")
  return (
    f"o3jax {command}: step {row['step']} done, {', '.join(shown)}; checkpoint in "
    f"{os.path.join(workdir, 'checkpoints', str(row['step']))}, metrics in "
    f"{os.path.join(workdir, 'metrics.jsonl')}"
  )


def run(args) -> int:
  from o3jax.distributed import initialize_from_env

  initialize_from_env()  # multi-process runs (launch/); before anything touches a device
  from o3jax.train.config import load_config
  from o3jax.train.run import NonFiniteLoss

  cfg = load_config(args.config)
  try:
    if args.command == "sft":
      from o3jax.train.sft import train_sft

      row = train_sft(
        cfg, args.data, args.workdir, steps=args.steps, init=args.init, data_root=args.data_root
      )
    else:
      from o3jax.train.gspo import train_gspo

      row = train_gspo(
        cfg, args.data, args.workdir, steps=args.steps, init=args.init, data_root=args.data_root
      )
  except NonFiniteLoss as e:
    print(f"o3jax {args.command}: {e}", file=sys.stderr)
    return 3
  print(summary(args.command, args.workdir, row))
  return 0
