"""`o3jax demo`: the end-to-end job on a tiny model (synthetic data -> SFT -> GSPO -> eval)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
  p = sub.add_parser("demo", help="end-to-end demo on a tiny model, CPU only")
  p.add_argument("--workdir", default="o3jax_demo")
  p.set_defaults(func=run)


def run(args) -> int:
  print("o3jax demo will generate synthetic grounded videos, train the tiny model with SFT "
        "then GSPO, evaluate base/SFT/GSPO and write summary.json; the SFT and GSPO stages "
        "are not built yet (issues 5, 6, 8).", file=sys.stderr)
  return 2
