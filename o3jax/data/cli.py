"""`o3jax data synth`: write a synthetic grounded-video dataset.

    o3jax data synth --out DIR --videos N --seed S [--vstar-videos M] [--width 112 --height 84 --fps 8]

`synth` writes DIR/STGR-SFT.json, DIR/STGR-RL.json, DIR/vstar.json and the videos and images
they point to (paths relative to DIR): coloured shapes moving on a plain background, with
questions of all six tasks about them. The same seed gives the same files. Record
fields: docs/reference.md section 3.
"""

import argparse
import json

from o3jax.data import synth


def add_parser(subparsers) -> argparse.ArgumentParser:
  parser = subparsers.add_parser(
    "data",
    help="datasets: synthetic grounded videos",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  actions = parser.add_subparsers(dest="data_command", metavar="{synth}", required=True)
  p = actions.add_parser(
    "synth",
    help="write synthetic videos, STGR-SFT/RL records and a V-STaR benchmark",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument(
    "--videos",
    type=int,
    required=True,
    help="number of training videos (6 records each; SFT adds 3 rated evidence crops)",
  )
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--vstar-videos",
    type=int,
    default=None,
    help="held-out benchmark videos (default videos // 4, >= 1)",
  )
  p.add_argument("--width", type=int, default=112, help="video width in pixels (112)")
  p.add_argument("--height", type=int, default=84, help="video height in pixels (84)")
  p.add_argument("--fps", type=int, default=8, help="video frames per second (8)")
  p.set_defaults(func=run)
  return parser


def run(args: argparse.Namespace) -> int:
  if args.videos < 1:
    raise SystemExit("o3jax data synth: --videos must be at least 1")
  counts = synth.synthesize(
    args.out,
    videos=args.videos,
    seed=args.seed,
    vstar_videos=args.vstar_videos,
    width=args.width,
    height=args.height,
    fps=args.fps,
  )
  print(json.dumps({"out": args.out, **counts}))
  return 0
