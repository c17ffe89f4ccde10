"""`o3jax eval {vstar,tvg,mcq,videomme,worldsense,videommmu}`: answer a benchmark with a model and/or score results.

Score an existing results file:
    o3jax eval vstar --results results.json --out metrics.json [--judge offline|none]
    o3jax eval tvg   --results results.jsonl --out metrics.json
    o3jax eval mcq   --results results.json --out metrics.json
Build the V-STaR results file from completions generated elsewhere, then score it:
    o3jax eval vstar --annotations A --completions C.jsonl --results R --out M
Answer the annotations with a model, write the results file, then score it:
    o3jax eval vstar --annotations vstar.json --videos DIR --model DIR [--results FILE]
                     [--out metrics.json] [--processing tiny] [--limit N]
    o3jax eval tvg   --annotations FILE --videos DIR --model DIR ...
    o3jax eval mcq   --annotations FILE --videos DIR --model DIR [--n 8 --vote confidence]

--model is a Hugging Face directory or an o3jax workdir; a model trained with o3jax is
asked as it was trained (its inference.json: frames, prompt stage, answer length; V-STaR
then defaults to --protocol o3jax); flags override. --videos defaults
to the annotation file's directory; the results file defaults to OUT's name with
.results.json (or <benchmark>_results.json). Annotation and results files are a JSON
list of records or JSONL (one record per line); the fields are described in
o3jax/eval/{vstar,tvg,mcq}.py and {vstar,tvg,mcq}_run.py. Metrics are written as
fractions; the printed summary is x100. `mcq --n N` (N > 1) samples N answers per
question and votes (docs/reference.md section 7); the summary adds N=1 / majority@N /
confidence@N accuracies. VideoMME, WorldSense and VideoMMMU read their published files
(`o3jax eval videomme --data DIR --model DIR`, bench_cli.py). Formats and metric
formulas: docs/reference.md sections 6 and 7.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from o3jax import jsonio
from o3jax.eval import bench_cli, mcq, tvg, vstar, vstar_reference
from o3jax.eval import summary as summaries

DEFAULT_BATCH = {"vstar": 5, "tvg": 4, "mcq": 4}


def load_records(path: str | Path, what: str = "results") -> list:
  """A JSON list of records, or JSONL with one record per line."""
  path = Path(path)
  if not path.is_file():
    raise SystemExit(f"o3jax eval: {what} file not found: {path}")
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
  parser = subparsers.add_parser(
    "eval",
    help="score benchmark results (V-STaR, TVGBench, MCQ)",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  benchmarks = parser.add_subparsers(
    dest="benchmark", metavar="{vstar,tvg,mcq,videomme,worldsense,videommmu}", required=True
  )
  helps = {
    "vstar": "V-STaR what/when/where, mAM and mLGM",
    "tvg": "TVGBench temporal grounding: mIoU, R1@{0.3,0.5,0.7}",
    "mcq": "multiple-choice accuracy (VideoMME style) with per-category breakdowns",
  }
  for name, text in helps.items():
    sub = benchmarks.add_parser(name, help=text, description=text)
    sub.add_argument(
      "--results",
      help="results file to score (JSON list or JSONL); with "
      "--model: where the generated results are written",
    )
    sub.add_argument("--out", help="where to write the metrics JSON")
    gen = sub.add_argument_group("generating results with a model")
    gen.add_argument("--model", help="Hugging Face dir or o3jax checkpoint dir")
    gen.add_argument("--annotations", help="benchmark annotation file (JSON list or JSONL)")
    gen.add_argument("--videos", help="video folder (default: the annotation file's folder)")
    add_model_arguments(gen)
    gen.add_argument(
      "--max-new-tokens",
      type=int,
      default=None,
      help="default: the model's (inference.json), else 512 (vstar --protocol reference: "
      "2048, the reference's)",
    )
    gen.add_argument(
      "--repetition-penalty",
      type=float,
      default=None,
      help="transformers' repetition penalty (default 1.0; vstar --protocol reference: 1.05)",
    )
    gen.add_argument(
      "--batch-size",
      type=int,
      default=DEFAULT_BATCH[name],
      help=f"queries per sampler call (default {DEFAULT_BATCH[name]})",
    )
    gen.add_argument("--limit", type=int, default=None, help="answer the first N records only")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
      "--strict",
      action="store_true",
      help="stop at the first bad record (default: log it, score it 0)",
    )
    gen.add_argument(
      "--temperature",
      type=float,
      default=None,
      help="sampling temperature (default: greedy; mcq --n > 1: 1.0)",
    )
    gen.add_argument("--top-p", type=float, default=1.0)
    if name == "vstar":
      sub.add_argument(
        "--completions",
        help="JSON lines {index, field, completion} generated elsewhere (index into "
        "--annotations): build the results file from them, then score it",
      )
      sub.add_argument(
        "--judge",
        default="offline",
        help="what-judge for records without vqa_score: DIR = a Qwen2/Qwen2.5 instruct "
        "checkpoint (the reference's is Qwen2.5-72B-Instruct) run with the reference "
        "judge prompt, greedy, on --mesh; its scores are written into the results file; "
        "offline = ROUGE-L stand-in, not the benchmark's judge (see o3jax/eval/vstar.py); "
        "none = every record must carry vqa_score",
      )
      sub.add_argument(
        "--reference-skip-empty-vqa",
        action="store_true",
        help="drop records with an empty answer_vqa from all means but Acc's "
        "denominator, as the reference script does",
      )
      gen.add_argument(
        "--protocol",
        choices=("reference", "o3jax"),
        default=None,
        help="default: o3jax for a model trained with o3jax (its inference.json), else "
        "reference. reference: the paper's frames, prompts, system prompt and decoding "
        "(o3jax/eval/vstar_reference.py; --processing is not used); o3jax: the training "
        "presentation and o3jax's prompts (o3jax/eval/vstar_prompts.py)",
      )
      gen.add_argument(
        "--no-think",
        action="store_true",
        help="leave out the grounded-reasoning instruction of the prompts",
      )
    if name == "mcq":
      sub.add_argument(
        "--group-by",
        default=",".join(mcq.GROUP_FIELDS),
        help="comma-separated category fields to break accuracy down by",
      )
      gen.add_argument(
        "--n", type=int, default=1, help="answers sampled per question (test-time scaling when > 1)"
      )
      gen.add_argument(
        "--vote",
        choices=("majority", "confidence"),
        default="confidence",
        help="how the N answers are combined into `response` (both are kept)",
      )
      gen.add_argument(
        "--rating",
        choices=("joint", "per_crop"),
        default="joint",
        help="joint: all of a response's crops rated in one prompt (reference); per_crop",
      )
  parser.set_defaults(func=run)
  bench_cli.add_parsers(benchmarks, add_model_arguments)
  return parser


def add_model_arguments(p) -> None:
  """Options of a model run, shared with `o3jax infer`. Left out, --processing and
  --prompt-stage come from the model directory's inference.json (what it was trained
  with), else the reference's."""
  p.add_argument(
    "--processing",
    default=None,
    help="frame sampling and sizes: reference (docs/reference.md section 2), tiny (the "
    "tiny model's small frames), or a training config file configs/*.py (default: what "
    "the model was trained with, else reference)",
  )
  p.add_argument(
    "--presentation",
    choices=("frames", "video"),
    default=None,
    help="frames: one image per frame (training format, default); video: "
    "Qwen2.5-VL's native video input",
  )
  p.add_argument(
    "--prompt-stage",
    choices=("rl", "sft"),
    default=None,
    help="system prompts of the RL or SFT stage (default: the model's, else rl)",
  )
  p.add_argument("--dtype", default="float32", help="parameter and compute dtype")
  p.add_argument(
    "--mesh",
    default="1,1,1",
    help="data,fsdp,tensor: the device mesh the parameters are sharded over",
  )


def results_path(args: argparse.Namespace) -> Path:
  if args.results:
    return Path(args.results)
  if args.out:
    return Path(args.out).with_suffix(".results.json")
  return Path(f"{args.benchmark}_results.json")


def generate_results(args: argparse.Namespace) -> tuple[Path, dict]:
  """Answers --annotations with --model; writes the results file; returns (its path, the
  generation settings for the metrics file)."""
  import jax

  from o3jax.eval import generate
  from o3jax.processing.media import MediaError

  name = f"o3jax eval {args.benchmark}"
  if not (args.model and args.annotations):
    raise SystemExit(
      f"{name}: generating results needs --model DIR and --annotations FILE "
      "(--videos DIR defaults to the annotation file's folder)"
    )
  records = load_records(args.annotations, "annotation")
  if args.benchmark != "vstar":
    from o3jax.eval import mcq_run, tvg_run

    stgr = (mcq_run if args.benchmark == "mcq" else tvg_run).STGR_TASKS
    records = generate.select_tasks(records, stgr)
  records = records[: args.limit]
  videos = args.videos or str(Path(args.annotations).resolve().parent)
  n = getattr(args, "n", 1)
  greedy = args.temperature is None and n == 1
  try:
    asked = generate.ask_settings(
      args.model, args.processing, args.presentation, args.prompt_stage, args.max_new_tokens
    )
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f"{name}: {e}")
  if args.benchmark == "vstar" and args.protocol is None:
    args.protocol = "o3jax" if asked.source != "default" else "reference"
  reference = args.benchmark == "vstar" and args.protocol == "reference"
  if args.max_new_tokens is None:
    recorded = asked.source != "default"
    args.max_new_tokens = (
      asked.max_new_tokens
      if recorded and not reference
      else (vstar_reference.MAX_NEW_TOKENS if reference else 512)
    )
  if args.repetition_penalty is None:
    args.repetition_penalty = vstar_reference.REPETITION_PENALTY if reference else 1.0
  decoding = generate.Decoding(
    max_new_tokens=args.max_new_tokens,
    repetition_penalty=args.repetition_penalty,
    greedy=greedy,
    temperature=args.temperature or 1.0,
    top_p=args.top_p,
  )
  try:
    processing = asked.processing
    loaded = generate.load_model(args.model, args.dtype, generate.inference_mesh(args.mesh))
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise SystemExit(f"{name}: {e}")
  common = dict(
    key=jax.random.key(args.seed),
    decoding=decoding,
    stage=asked.prompt_stage,
    batch_size=args.batch_size,
    strict=args.strict,
  )
  try:
    if args.benchmark == "vstar":
      from o3jax.eval.vstar_run import vstar_results

      results, errors = vstar_results(
        loaded,
        records,
        videos,
        processing,
        protocol=args.protocol,
        think=not args.no_think,
        **common,
      )
    elif args.benchmark == "tvg":
      from o3jax.eval.tvg_run import tvg_results

      results, errors = tvg_results(loaded, records, videos, processing, **common)
    else:
      from o3jax.eval.mcq_run import mcq_results

      results, errors = mcq_results(
        loaded, records, videos, processing, n=n, vote=args.vote, rating=args.rating, **common
      )
  except (ValueError, MediaError) as e:
    raise SystemExit(f"{name}: {args.annotations}: {e}")
  path = results_path(args)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(jsonio.dumps(results, indent=1), encoding="utf-8")
  print(
    f"results of {len(results)} records written to {path}"
    + (f" ({len(errors)} could not be answered)" if errors else "")
  )
  settings = {
    "model": args.model,
    "model_kind": loaded.kind,
    "annotations": args.annotations,
    "processing": args.processing or asked.source,
    "presentation": processing.presentation,
    "prompt_stage": asked.prompt_stage,
    "max_new_tokens": args.max_new_tokens,
    "repetition_penalty": args.repetition_penalty,
    "greedy": greedy,
    "temperature": None if greedy else decoding.temperature,
    "top_p": args.top_p,
    "seed": args.seed,
    "errors": errors,
  }
  if args.benchmark == "mcq":
    settings.update(n=n, vote=args.vote, rating=args.rating)
  if args.benchmark == "vstar":
    settings.update(protocol=args.protocol, think=not args.no_think)
    if reference:
      settings.update(source=vstar_reference.SOURCE, processing=None, presentation=None)
  return path, settings


def completions_results(args: argparse.Namespace) -> tuple[Path, dict]:
  """Builds the V-STaR results file from --annotations and --completions (see
  vstar_protocol.results_from_completions); returns (its path, settings)."""
  from o3jax.eval import vstar_protocol

  if not args.annotations:
    raise SystemExit("o3jax eval vstar: --completions needs --annotations FILE")
  records = load_records(args.annotations, "annotation")
  lines = load_records(args.completions, "completions")
  try:
    results, errors = vstar_protocol.results_from_completions(records, lines, args.strict)
  except ValueError as e:
    raise SystemExit(f"o3jax eval vstar: {args.completions}: {e}")
  for error in errors:
    print(f"skipping {error}", file=sys.stderr)
  path = results_path(args)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(jsonio.dumps(results, indent=1), encoding="utf-8")
  print(f"results of {len(results)} records built from {args.completions}, written to {path}")
  return path, {"annotations": args.annotations, "completions": args.completions, "errors": errors}


def run(args: argparse.Namespace) -> int:
  generation = None
  if getattr(args, "completions", None):
    path, generation = completions_results(args)
  elif args.model or args.annotations or args.videos:
    path, generation = generate_results(args)
  elif args.results:
    path = Path(args.results)
  else:
    raise SystemExit(
      f"o3jax eval {args.benchmark}: --results FILE is required (or --model "
      "and --annotations to generate it)"
    )
  records = load_records(path)
  tts_table = None
  try:
    if args.benchmark == "vstar":
      judge, judge_name = None, None
      if args.judge == "offline":
        judge = vstar.offline_judge
      elif args.judge != "none":
        from o3jax.eval.judge import judge_results_file

        judge_name = judge_results_file(args.judge, records, path, args.dtype, args.mesh)
      metrics = vstar.score_vstar(
        records, judge, args.reference_skip_empty_vqa, judge_name=judge_name
      )
      summary = summaries.vstar_summary(metrics)
    elif args.benchmark == "tvg":
      metrics = tvg.score_tvg(records)
      summary = summaries.tvg_summary(metrics)
    else:
      fields = tuple(f.strip() for f in args.group_by.split(",") if f.strip())
      metrics = mcq.score_mcq(records, fields)
      summary = summaries.accuracy_summary(
        f"MCQ (N={metrics['n']}, unparsed {metrics['n_unparsed']})", metrics
      )
      if any(isinstance(r, dict) and isinstance(r.get("answers"), list) for r in records):
        from o3jax.eval.mcq_run import print_tts, tts_accuracy

        tts_table = tts_accuracy(records)
  except ValueError as err:
    raise SystemExit(f"o3jax eval {args.benchmark}: {path}: {err}")
  print(summary)
  if tts_table:
    print_tts(tts_table)
    metrics["tts"] = tts_table
  if generation:
    metrics["generation"] = generation
  if args.out:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": args.benchmark, "results": str(path), **metrics}
    out.write_text(jsonio.dumps(report, indent=1), encoding="utf-8")
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
