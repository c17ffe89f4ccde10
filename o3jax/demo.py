"""`o3jax demo`: the whole method on a tiny model, on the CPU, in a few minutes.

1. synthetic grounded videos: a training set and a held-out set (other videos, other seed)
2. SFT of the tiny model (configs/tiny_synthetic.py), then GSPO from it
   (configs/tiny_synthetic_gspo.py)
3. the initial, SFT and GSPO models evaluated on the held-out prompts (greedy; every
   reward term and the total) and on the held-out V-STaR file (mAM, mLGM)
4. W/summary.json {"base": {...}, "sft": {...}, "gspo": {...}}, a table, an evidence PNG
   of the GSPO model (W/evidence.png) and the training curves (W/curves.png)
The same seed gives the same table.
"""

from __future__ import annotations

import json
import os
import sys
import time

KEYS = (
  "format",
  "thk_temporal_point",
  "thk_spatial",
  "ans_acc",
  "ans_tiou",
  "total",
  "mam",
  "mlgm",
)
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def add_parser(sub) -> None:
  p = sub.add_parser("demo", help="end-to-end demo on a tiny model, CPU only")
  p.add_argument("--workdir", default="o3jax_demo")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--videos",
    type=int,
    default=48,
    help="training videos (6 records each, SFT adds 3 rated crops)",
  )
  p.add_argument("--sft-steps", type=int, default=None, help="default: the config's")
  p.add_argument("--gspo-steps", type=int, default=None, help="default: the config's")
  p.add_argument("--eval-batches", type=int, default=3, help="held-out batches of 8 prompts")
  p.set_defaults(func=run)


def _config(name: str):
  from o3jax.train.config import load_config

  path = os.path.join(CONFIGS, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: run the demo from a source checkout")
  return load_config(path)


def _stage(msg: str, t0: float) -> None:
  print(f"[demo {time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _loaded(run):
  from flax import nnx
  from o3jax.eval.generate import loaded_model

  return loaded_model(nnx.merge(run.graphdef, run.state.params), run.tokenizer)


def evaluate(cfg, run, heldout: str, eval_batches: int, max_new_tokens: int) -> dict:
  """Reward terms on held-out prompts and V-STaR mAM / mLGM, greedy."""
  import jax
  from o3jax.eval import vstar
  from o3jax.eval.generate import Decoding
  from o3jax.eval.vstar_run import vstar_results
  from o3jax.train.evaluate import evaluate_rewards
  from o3jax.train.sft import processing_config

  out = evaluate_rewards(
    cfg,
    run.graphdef,
    run.state.params,
    run.model_config,
    run.tokenizer,
    heldout,
    eval_batches,
    max_new_tokens=max_new_tokens,
  )
  with open(os.path.join(heldout, "vstar.json")) as f:
    records = json.load(f)
  processing = processing_config(cfg)
  results, _ = vstar_results(
    _loaded(run),
    records,
    heldout,
    processing,
    key=jax.random.key(0),
    decoding=Decoding(max_new_tokens=max_new_tokens, greedy=True),
    stage=processing.prompt_stage("rl"),
  )
  metrics = vstar.score_vstar(results)
  out.update(mam=metrics["mam"], mlgm=metrics["mlgm"])
  return out


def evidence_png(cfg, run, heldout: str, path: str, max_new_tokens: int) -> str:
  """The GSPO model's grounded answer to a held-out question, drawn on the frames.

  A general video question: its prompt shows the sampled frames alone, as in training
  (spatio-temporal training prompts also carry the annotated key frames, which a plain
  inference call does not have)."""
  from o3jax.data.records import load_records
  from o3jax.eval.generate import Decoding, load_video
  from o3jax.infer import answer_video, write_outputs
  from o3jax.train.sft import processing_config

  record = next(
    r
    for r in load_records(os.path.join(heldout, "STGR-RL.json"))
    if r["task"] == "General video QA Free-form"
  )
  processing = processing_config(cfg)
  video = load_video(os.path.join(heldout, record["video_path"]), processing)
  result = answer_video(
    _loaded(run),
    video,
    record["question"],
    task=record["task"],
    stage=processing.prompt_stage("rl"),
    decoding=Decoding(max_new_tokens=max_new_tokens, greedy=True),
  )
  paths = write_outputs(result, video, os.path.dirname(path))
  os.replace(paths["png"], path)
  return path


def curves_png(workdir: str, path: str) -> str:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = {}
  for stage in ("sft", "gspo"):
    with open(os.path.join(workdir, stage, "metrics.jsonl")) as f:
      rows[stage] = [json.loads(line) for line in f]
  fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
  a.plot([r["step"] for r in rows["sft"]], [r["loss"] for r in rows["sft"]], marker=".")
  a.set(title="SFT: cross-entropy on assistant tokens", xlabel="step", ylabel="loss")
  for key in (
    "reward/total",
    "reward/format",
    "reward/thk_temporal_point",
    "reward/thk_spatial",
    "reward/ans_acc",
  ):
    b.plot(
      [r["step"] for r in rows["gspo"]],
      [r.get(key, float("nan")) for r in rows["gspo"]],
      label=key.split("/")[1],
      marker=".",
    )
  b.set(title="GSPO: mean reward of the rollouts", xlabel="step", ylabel="reward")
  b.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def table(summary: dict) -> str:
  head = f"{'model':6s} " + " ".join(f"{k:>18s}" for k in KEYS)
  lines = [head, "-" * len(head)]
  for name, row in summary.items():
    lines.append(f"{name:6s} " + " ".join(f"{row[k]:18.4f}" for k in KEYS))
  return "\n".join(lines)


def run(args) -> int:
  from o3jax.data.synth import synthesize
  from o3jax.eval.vstar import json_ready
  from o3jax.train.gspo import train_gspo
  from o3jax.train.run import restore, setup_run
  from o3jax.train.sft import train_sft

  t0 = time.perf_counter()
  w = os.path.abspath(args.workdir)
  data, heldout = os.path.join(w, "data"), os.path.join(w, "heldout")
  sft_cfg = _config("tiny_synthetic.py").replace(seed=args.seed)
  gspo_cfg = _config("tiny_synthetic_gspo.py").replace(seed=args.seed)
  new_tokens = gspo_cfg.gspo.max_new_tokens
  if not os.path.exists(os.path.join(heldout, "vstar.json")):
    _stage("writing synthetic videos", t0)
    synthesize(data, args.videos, args.seed, progress=False)
    synthesize(heldout, max(args.videos // 4, 2), args.seed + 1000, vstar_videos=6, progress=False)
  summary = {}
  _stage("evaluating the initial model", t0)
  summary["base"] = evaluate(
    sft_cfg, setup_run(sft_cfg, os.path.join(w, "base")), heldout, args.eval_batches, new_tokens
  )
  _stage("SFT", t0)
  train_sft(sft_cfg, data, os.path.join(w, "sft"), steps=args.sft_steps)
  sft_run = setup_run(sft_cfg, os.path.join(w, "sft"))
  restore(sft_run)
  summary["sft"] = evaluate(sft_cfg, sft_run, heldout, args.eval_batches, new_tokens)
  _stage("GSPO", t0)
  train_gspo(
    gspo_cfg, data, os.path.join(w, "gspo"), steps=args.gspo_steps, init=os.path.join(w, "sft")
  )
  gspo_run = setup_run(gspo_cfg, os.path.join(w, "gspo"), init=os.path.join(w, "sft"))
  restore(gspo_run)
  summary["gspo"] = evaluate(gspo_cfg, gspo_run, heldout, args.eval_batches, new_tokens)
  summary = {k: {m: float(v[m]) + 0.0 for m in KEYS} for k, v in summary.items()}
  with open(os.path.join(w, "summary.json"), "w") as f:
    json.dump(json_ready(summary), f, indent=1, allow_nan=False)  # an infinite mLGM is null
  evidence_png(gspo_cfg, gspo_run, heldout, os.path.join(w, "evidence.png"), new_tokens)
  curves_png(w, os.path.join(w, "curves.png"))
  _stage("done", t0)
  print(table(summary))
  print(f"\nsummary: {w}/summary.json  evidence: {w}/evidence.png  curves: {w}/curves.png")
  return 0
