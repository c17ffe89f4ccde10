"""`o3jax eval videomme | worldsense | videommmu`: the general video benchmarks from their
published files (benchmarks.py), answered as the reference answers them (bench_run.py) and
scored as it scores them (bench_score.py).

    o3jax eval videomme --data Video-MME/ --model DIR [--out metrics.json] [--results FILE]
                        [--n 8 --vote confidence [--rating per_crop]] [--no-think]
    o3jax eval videommmu --results results.json --out metrics.json      # rescore a file

Defaults are the reference's (bench_run.REFERENCE_EVAL; N = 1, majority voting, think
prompts). Metrics are fractions; the printed summary is x100; with N > 1 the summary adds
the first sample, majority@N and confidence@N.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from o3jax.eval import bench_score, benchmarks, tts
from o3jax.eval.summary import accuracy_summary

HELPS = {
  "videomme": "VideoMME from its parquet file, per duration / domain / task",
  "worldsense": "WorldSense from its TSV file, per duration / domain / task / audio class",
  "videommmu": "VideoMMMU from its three parquet splits, per track / discipline / subject",
}


def add_parsers(benchmark_parsers, add_model_arguments) -> None:
  for name, text in HELPS.items():
    sub = benchmark_parsers.add_parser(name, help=text, description=__doc__)
    sub.formatter_class = argparse.RawDescriptionHelpFormatter
    sub.add_argument("--results", help="results file to score; with --model: where it is written")
    sub.add_argument("--out", help="where to write the metrics JSON")
    gen = sub.add_argument_group("generating results with a model")
    gen.add_argument("--model", help="Hugging Face dir or o3jax checkpoint dir")
    gen.add_argument("--data", help="the benchmark's folder, laid out as published")
    add_model_arguments(gen)
    gen.set_defaults(processing="reference_eval")
    gen.add_argument("--max-new-tokens", type=int, default=2048)
    gen.add_argument("--batch-size", type=int, default=4, help="questions per sampler call")
    gen.add_argument("--limit", type=int, default=None, help="answer the first N questions only")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--strict", action="store_true", help="stop at the first bad question")
    gen.add_argument(
      "--temperature", type=float, default=None, help="default: greedy (N = 1), 1.0 (N > 1)"
    )
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--n", type=int, default=1, help="responses per question")
    gen.add_argument("--vote", choices=tts.VOTES, default="majority")
    gen.add_argument(
      "--rating",
      choices=tts.RATINGS,
      default="joint",
      help="joint: all of a response's crops in one prompt (reference); per_crop: each alone",
    )
    gen.add_argument("--no-think", action="store_true", help="the reference's plain prompts")
    sub.set_defaults(func=run)


def generate(args) -> tuple[Path, dict]:
  import jax

  from o3jax.eval import generate as G, mcq_run
  from o3jax.eval.bench_run import bench_results
  from o3jax.processing.config import for_model
  from o3jax.processing.media import MediaError

  name = f"o3jax eval {args.benchmark}"
  if not (args.model and args.data):
    raise SystemExit(f"{name}: generating results needs --model DIR and --data DIR")
  try:
    items = benchmarks.load(args.benchmark, args.data, think=not args.no_think)[: args.limit]
    loaded = G.load_model(args.model, args.dtype, G.inference_mesh(args.mesh))
    processing = for_model(
      G.processing_config(args.processing, args.presentation), loaded.config.model_type
    )
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise SystemExit(f"{name}: {e}")
  greedy = args.temperature is None and args.n == 1
  decoding = G.Decoding(
    max_new_tokens=args.max_new_tokens,
    greedy=greedy,
    temperature=args.temperature or 1.0,
    top_p=args.top_p,
  )
  scaling = mcq_run.Scaling(args.vote, args.rating, think_mode=not args.no_think)
  try:
    results, errors = bench_results(
      loaded,
      args.benchmark,
      items,
      processing,
      key=jax.random.key(args.seed),
      decoding=decoding,
      n=args.n,
      scaling=scaling,
      batch_size=args.batch_size,
      strict=args.strict,
    )
  except (ValueError, MediaError) as e:
    raise SystemExit(f"{name}: {e}")
  path = Path(args.results or (Path(args.out).with_suffix(".results.json") if args.out else ""))
  if not args.results and not args.out:
    path = Path(f"{args.benchmark}_results.json")
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(results, indent=1), encoding="utf-8")
  print(f"results of {len(results)} questions written to {path}")
  settings = {
    "model": args.model,
    "data": args.data,
    "processing": args.processing,
    "presentation": processing.presentation,
    "max_frames": processing.max_frames,
    "video_max_pixels": processing.video_max_pixels,
    "max_new_tokens": args.max_new_tokens,
    "greedy": greedy,
    "temperature": None if greedy else decoding.temperature,
    "n": args.n,
    "vote": args.vote,
    "rating": args.rating,
    "think": not args.no_think,
    "seed": args.seed,
    "errors": errors,
  }
  return path, settings


def run(args: argparse.Namespace) -> int:
  from o3jax.eval.cli import load_records
  from o3jax.eval.mcq_run import print_tts, tts_accuracy

  generation = None
  if args.model or args.data:
    path, generation = generate(args)
  elif args.results:
    path = Path(args.results)
  else:
    raise SystemExit(f"o3jax eval {args.benchmark}: --results FILE, or --model and --data")
  records = load_records(path)
  try:
    metrics = bench_score.score(args.benchmark, records)
    sampled = [r for r in records if len(r.get("answers") or []) > 1]
    tts_table = tts_accuracy(sampled) if sampled and sampled[0].get("confidence") else None
  except ValueError as err:
    raise SystemExit(f"o3jax eval {args.benchmark}: {path}: {err}")
  print(accuracy_summary(f"{args.benchmark} (N={metrics['n']})", metrics))
  if tts_table:
    print_tts(tts_table)
    metrics["tts"] = tts_table
  if generation:
    metrics["generation"] = generation
  if args.out:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
      json.dumps({"benchmark": args.benchmark, "results": str(path), **metrics}, indent=1),
      encoding="utf-8",
    )
    print(f"metrics written to {out}")
  return 0
