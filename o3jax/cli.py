"""o3jax: grounded video reasoning (Open-o3 Video) in JAX.

Start with `o3jax demo` (a tiny model trained end to end on the CPU), then `o3jax COMMAND
--help` for each command. The formats, formulas and settings behind every command, and
where o3jax departs from the reference, are in docs/reference.md.

Expected errors (bad input, a busy or damaged workdir, a diverging run: ValueError,
OSError, KeyError, RuntimeError) end the command with one line on stderr and exit status
1; `--debug` (anywhere on the line) shows their traceback instead. Anything else is a bug
and keeps its traceback.
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
  parser.add_argument(
    "--debug", action="store_true", help="show the traceback of an error, not one line"
  )
  sub = parser.add_subparsers(dest="command", required=True)
  for module in dict.fromkeys(COMMANDS.values()):  # each module once, in order
    importlib.import_module(module).add_parser(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  debug = "--debug" in argv  # anywhere on the line, before or after the subcommand
  args = build_parser().parse_args([a for a in argv if a != "--debug"])
  func = getattr(args, "func", None) or importlib.import_module(COMMANDS[args.command]).run
  try:
    return int(func(args) or 0)
  except EXPECTED as e:
    if debug:
      raise
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    text = " ".join(str(message).split()) or type(e).__name__
    say(f"o3jax {args.command}: error: {text} (--debug for the traceback)")
    return 1


EXPECTED = (ValueError, OSError, KeyError, RuntimeError)


def say(line: str) -> None:
  """One line on stderr, on a line of its own even while a progress bar is drawn."""
  from tqdm import tqdm

  tqdm.write(line, file=sys.stderr)


if __name__ == "__main__":
  sys.exit(main())
