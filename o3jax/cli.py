"""o3jax: grounded video reasoning (Open-o3 Video) in JAX.

Start with `o3jax demo` (a tiny model trained end to end on the CPU), then `o3jax COMMAND
--help` for each command. The formats, formulas and settings behind every command, and
where o3jax departs from the reference, are in docs/reference.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module exposing add_parser(subparsers) (it registers the command and sets `func`,
# or the module has run(args))
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
  parser = argparse.ArgumentParser(
    prog="o3jax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
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
