"""`o3jax eval {vstar,tvg,mcq}`: score an existing results file, write the metrics JSON.

    o3jax eval vstar --results results.json --out metrics.json [--judge offline|none]
    o3jax eval tvg   --results results.jsonl --out metrics.json
    o3jax eval mcq   --results results.json --out metrics.json

Results files are a JSON list of records or JSONL (one record per line); the record
fields are described in o3jax/eval/{vstar,tvg,mcq}.py. Metrics are written as fractions;
the printed summary is x100. Generating the results (--model/--videos) needs the
sampler and is not wired in yet: those flags are accepted and refused with a message.
Hook into a top-level parser with `add_parser(subparsers)`; it sets `func=run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from o3jax.eval import mcq, tvg, vstar

GENERATION_MISSING = ("o3jax eval: generating results (--model/--videos) needs the sampler, which "
                      "is not available yet; score an existing results file with --results FILE")


def load_records(path: str | Path) -> list:
  """A JSON list of records, or JSONL with one record per line."""
  path = Path(path)
  if not path.is_file():
    raise SystemExit(f"o3jax eval: results file not found: {path}")
  text = path.read_text(encoding="utf-8")
  try:
    data = json.loads(text)
  except json.JSONDecodeError:
    data = []
    for line_no, line in enumerate(text.splitlines(), 1):
      if line.strip():
        try:
          data.append(json.loads(line))
        except json.JSONDecodeError as err:
          raise SystemExit(f"o3jax eval: {path}: line {line_no} is not JSON ({err.msg})")
  if isinstance(data, dict):
    data = [data]
  if not isinstance(data, list):
    raise SystemExit(f"o3jax eval: {path}: expected a list of records")
  return data


def add_parser(subparsers) -> argparse.ArgumentParser:
  parser = subparsers.add_parser("eval", help="score benchmark results (V-STaR, TVGBench, MCQ)",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
  benchmarks = parser.add_subparsers(dest="benchmark", metavar="{vstar,tvg,mcq}", required=True)
  helps = {"vstar": "V-STaR what/when/where, mAM and mLGM",
           "tvg": "TVGBench temporal grounding: mIoU, R1@{0.3,0.5,0.7}",
           "mcq": "multiple-choice accuracy (VideoMME style) with per-category breakdowns"}
  for name, text in helps.items():
    sub = benchmarks.add_parser(name, help=text, description=text)
    sub.add_argument("--results", help="results file to score (JSON list or JSONL)")
    sub.add_argument("--out", help="where to write the metrics JSON")
    sub.add_argument("--model", help="generate results with this model (needs the sampler; "
                                     "not yet)")
    sub.add_argument("--videos", help="video folder for generation (needs the sampler; not yet)")
    if name == "vstar":
      sub.add_argument("--judge", choices=("offline", "none"), default="offline",
                       help="what-judge for records without vqa_score: offline = ROUGE-L "
                            "stand-in (see o3jax/eval/vstar.py); none = every record must "
                            "carry vqa_score")
      sub.add_argument("--reference-skip-empty-vqa", action="store_true",
                       help="drop records with an empty answer_vqa from all means but Acc's "
                            "denominator, as the reference script does")
    if name == "mcq":
      sub.add_argument("--group-by", default=",".join(mcq.GROUP_FIELDS),
                       help="comma-separated category fields to break accuracy down by")
  parser.set_defaults(func=run)
  return parser


def _pct(x: float) -> str:
  return f"{100 * x:.1f}"


def _summary_vstar(m: dict) -> str:
  lines = [f"V-STaR (N={m['n']}): Acc {_pct(m['acc'])}"
           f" | tIoU {_pct(m['m_tiou_1'])}/{_pct(m['m_tiou_2'])}"
           f" | vIoU {_pct(m['m_viou_1'])}/{_pct(m['m_viou_2'])} | mAM {_pct(m['mam'])}"
           f" | mLGM {_pct(m['mlgm'])}"]
  for k in (1, 2):
    r1 = " ".join(f"R1@{th} {_pct(m[f'r1@{th}_{k}'])}" for th in vstar.R1_THRESHOLDS)
    ap = " ".join(f"AP@{th} {_pct(m[f'ap@{th}_{k}'])}" for th in vstar.AP_THRESHOLDS)
    lines.append(f"  chain {k}: {r1} | {ap}")
  for key in ("by_duration", "by_domain"):
    for name, g in m[key].items():
      lines.append(f"  {key[3:]} {name} (N={g['n']}): Acc {_pct(g['acc'])} mAM {_pct(g['mam'])}"
                   f" mLGM {_pct(g['mlgm'])}")
  return "\n".join(lines)


def _summary_tvg(m: dict) -> str:
  r1 = " ".join(f"R1@{th} {_pct(m[f'r1@{th}'])}" for th in tvg.R1_THRESHOLDS)
  return f"TVGBench (N={m['n']}, unparsed {m['n_unparsed']}): mIoU {_pct(m['miou'])} | {r1}"


def _summary_mcq(m: dict) -> str:
  lines = [f"MCQ (N={m['n']}, unparsed {m['n_unparsed']}): Acc {_pct(m['acc'])}"]
  for key, groups in m.items():
    if key.startswith("by_"):
      lines += [f"  {key[3:]} {name} (N={g['n']}): Acc {_pct(g['acc'])}"
                for name, g in groups.items()]
  return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
  if args.model or args.videos:
    raise SystemExit(GENERATION_MISSING)
  if not args.results:
    raise SystemExit(f"o3jax eval {args.benchmark}: --results FILE is required")
  records = load_records(args.results)
  try:
    if args.benchmark == "vstar":
      judge = vstar.offline_judge if args.judge == "offline" else None
      metrics = vstar.score_vstar(records, judge, args.reference_skip_empty_vqa)
      summary = _summary_vstar(metrics)
    elif args.benchmark == "tvg":
      metrics = tvg.score_tvg(records)
      summary = _summary_tvg(metrics)
    else:
      fields = tuple(f.strip() for f in args.group_by.split(",") if f.strip())
      metrics = mcq.score_mcq(records, fields)
      summary = _summary_mcq(metrics)
  except ValueError as err:
    raise SystemExit(f"o3jax eval {args.benchmark}: {args.results}: {err}")
  print(summary)
  if args.out:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": args.benchmark, "results": str(args.results), **metrics}
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"metrics written to {out}")
  return 0


def main(argv=None) -> int:
  """Standalone entry: `python -m o3jax.eval.cli eval vstar ...` (same as `o3jax eval`)."""
  parser = argparse.ArgumentParser(prog="o3jax")
  add_parser(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
