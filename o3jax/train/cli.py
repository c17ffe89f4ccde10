"""`o3jax sft` and `o3jax gspo`."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
  for name, helptext in (
    ("sft", "cold-start supervised fine-tuning"),
    ("gspo", "GSPO reinforcement learning from an SFT run"),
  ):
    p = sub.add_parser(name, help=helptext)
    p.add_argument("--config", required=True, help="python config file (configs/*.py)")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="directory with STGR-SFT.json / STGR-RL.json")
    data.add_argument(
      "--data-root",
      help="the published STGR tree: DIR/json_data/STGR-*.json, media under DIR/videos/"
      "<folder of the record's source or task> (o3jax/data/stgr_layout.py)",
    )
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, tokenizer")
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
      help="Hugging Face directory or o3jax workdir to start from",
    )
    p.set_defaults(func=run)


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
  print({k: round(v, 5) for k, v in row.items()})
  return 0
