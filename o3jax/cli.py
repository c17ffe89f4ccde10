"""`o3jax` command line: one subcommand per job; each lives in its own module.

Subcommand modules expose `add_parser(subparsers)`, which registers the subcommand, and
`run(args)` (or set `func` on their parser).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module exposing add_parser(subparsers)
COMMANDS = {
  "demo": "o3jax.demo",
  "data": "o3jax.data.cli",
  "sft": "o3jax.train.cli",
  "gspo": "o3jax.train.cli",
  "eval": "o3jax.eval.cli",
  "infer": "o3jax.infer",
  "convert": "o3jax.convert.cli",
}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="o3jax", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  for module in dict.fromkeys(COMMANDS.values()):  # each module once, in order
    importlib.import_module(module).add_parser(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  func = getattr(args, "func", None) or importlib.import_module(COMMANDS[args.command]).run
  return int(func(args) or 0)


if __name__ == "__main__":
  sys.exit(main())
