"""`o3jax demo`: the whole method on a tiny model, on the CPU, in a few minutes.

1. synthetic grounded videos: a training set and a held-out set (other videos, other seed)
2. SFT of the tiny model (configs/tiny_synthetic.py), then GSPO from it
   (configs/tiny_synthetic_gspo.py)
3. the initial, SFT and GSPO models evaluated on the held-out prompts (greedy; every
   reward term and the total) and on the held-out V-STaR file (mAM, mLGM)
4. W/summary.json {"base": {...}, "sft": {...}, "gspo": {...}}, a table, each model's
   V-STaR answers (W/base|sft|gspo/vstar_results.json: `o3jax eval vstar --results`
   rescores them), an evidence PNG of the GSPO model's answer beside the gold one
   (W/evidence.png) and the training curves (W/curves.png)
Each model is asked as its workdir's inference.json says, as `o3jax infer --model` and
`o3jax eval --model` ask it, so those commands reproduce the demo's answers. The same
seed gives the same table. Files and columns: docs/reference.md section 9.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from o3jax import jsonio

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
HEADS = {  # column titles of the printed table (summary.json keeps the KEYS)
  "format": "format",
  "thk_temporal_point": "thk_time",
  "thk_spatial": "thk_space",
  "ans_acc": "ans_acc",
  "ans_tiou": "ans_tiou",
  "total": "total",
  "mam": "mAM",
  "mlgm": "mLGM",
}
VSTAR = ("mam", "mlgm")  # printed x100
RESULTS = "vstar_results.json"  # each evaluated model's V-STaR answers, in its workdir
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def add_parser(sub) -> None:
  p = sub.add_parser(
    "demo",
    help="end-to-end demo on a tiny model, CPU only",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--workdir", default="o3jax_demo", help="where everything goes (o3jax_demo)")
  p.add_argument("--seed", type=int, default=0, help="data and training seed (0)")
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


def evaluate(cfg, run, heldout: str, eval_batches: int) -> dict:
  """Reward terms on held-out prompts and V-STaR mAM / mLGM, greedy, asked as the
  model's workdir recorded (what `o3jax infer` / `o3jax eval --model` read). The V-STaR
  answers go to WORKDIR/vstar_results.json, which `o3jax eval vstar --results` rescores."""
  import jax
  from o3jax import jsonio
  from o3jax.eval import vstar
  from o3jax.eval.cli import DEFAULT_BATCH
  from o3jax.eval.generate import Decoding, ask_settings
  from o3jax.eval.vstar_run import vstar_results
  from o3jax.train.evaluate import evaluate_rewards

  asked = ask_settings(run.workdir)
  out = evaluate_rewards(
    cfg,
    run.graphdef,
    run.state.params,
    run.model_config,
    run.tokenizer,
    heldout,
    eval_batches,
    max_new_tokens=asked.max_new_tokens,
  )
  with open(os.path.join(heldout, "vstar.json")) as f:
    records = json.load(f)
  # The settings of `o3jax eval vstar --model W` for a workdir: seed 0, greedy, its batch
  # size, the o3jax protocol (the training presentation the workdir recorded).
  results, _ = vstar_results(
    _loaded(run),
    records,
    heldout,
    asked.processing,
    key=jax.random.key(0),
    decoding=Decoding(max_new_tokens=asked.max_new_tokens, greedy=True),
    stage=asked.prompt_stage,
    batch_size=DEFAULT_BATCH["vstar"],
    protocol="o3jax",
  )
  with open(os.path.join(run.workdir, RESULTS), "w", encoding="utf-8") as f:
    f.write(jsonio.dumps(results, indent=1))
  metrics = vstar.score_vstar(results)
  out.update(mam=metrics["mam"], mlgm=metrics["mlgm"])
  return out


def gold_answer(heldout: str, record: dict, frame_size: tuple[int, int]):
  """The annotated answer and evidence of a held-out question: the SFT record of the same
  question holds the reasoning, its boxes normalised; they become pixels of the frame."""
  from o3jax.data.records import load_records
  from o3jax.infer import read_inference
  from o3jax.viz import Evidence

  stem = record["id"].rsplit("-", 1)[0]
  sft = next(
    r for r in load_records(os.path.join(heldout, "STGR-SFT.json")) if r["id"] == stem + "-sft"
  )
  gold = read_inference(
    sft["question"],
    f"<think>{sft['reasoning_process']}</think>\n<answer>{sft['answer']}</answer>",
  )
  w, h = frame_size
  gold.evidence = [
    Evidence(e.name, (e.box[0] * w, e.box[1] * h, e.box[2] * w, e.box[3] * h), e.time)
    for e in gold.evidence
  ]
  return gold


def evidence_png(run, heldout: str, path: str) -> str:
  """The GSPO model's grounded answer to a held-out question, drawn on the frames beside
  the gold answer and evidence.

  A general video question: its prompt shows the sampled frames alone, as in training
  (spatio-temporal training prompts also carry the annotated key frames, which a plain
  inference call does not have)."""
  from o3jax.data.records import load_records
  from o3jax.eval.generate import Decoding, ask_settings, load_video
  from o3jax.infer import answer_video, write_outputs

  record = next(
    r
    for r in load_records(os.path.join(heldout, "STGR-RL.json"))
    if r["task"] == "General video QA Free-form"
  )
  asked = ask_settings(run.workdir)
  video = load_video(os.path.join(heldout, record["video_path"]), asked.processing)
  result = answer_video(
    _loaded(run),
    video,
    record["question"],
    task=record["task"],
    stage=asked.prompt_stage,
    decoding=Decoding(max_new_tokens=asked.max_new_tokens, greedy=True),
  )
  gold = gold_answer(heldout, record, video.frame_size)
  paths = write_outputs(result, video, os.path.dirname(path), gold=gold)
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

  def values(stage, key):  # metrics.jsonl writes a non-finite value as null
    return [float("nan") if r.get(key) is None else r[key] for r in rows[stage]]

  a.plot([r["step"] for r in rows["sft"]], values("sft", "loss"), marker=".")
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
      values("gspo", key),
      label=key.split("/")[1],
      marker=".",
    )
  b.set(title="GSPO: mean reward of the rollouts", xlabel="step", ylabel="reward")
  b.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _cell(value: float, percent: bool = False) -> str:
  if value is None or not math.isfinite(value):
    return f"{'inf' if value == math.inf else '-':>9s}"
  return f"{(100 * value if percent else value) + 0.0:9.3f}"  # + 0.0: no -0.0


def table(summary: dict) -> str:
  """Reward terms (fractions, total up to 4) and V-STaR mAM / mLGM (x100, as `o3jax eval
  vstar` prints them), one row per model, within 100 columns."""
  head = f"{'model':6s}" + "".join(f"{HEADS[k]:>10s}" for k in KEYS)
  lines = [head, "-" * len(head)]
  for name, row in summary.items():
    lines.append(f"{name:6s}" + "".join(" " + _cell(row[k], k in VSTAR) for k in KEYS))
  return "\n".join(lines)


def run(args) -> int:
  from o3jax.data.synth import synthesize
  from o3jax.train.gspo import train_gspo
  from o3jax.train.run import record_inference_settings, restore, setup_run
  from o3jax.train.sft import train_sft

  t0 = time.perf_counter()
  w = os.path.abspath(args.workdir)
  data, heldout = os.path.join(w, "data"), os.path.join(w, "heldout")
  sft_cfg = _config("tiny_synthetic.py").replace(seed=args.seed)
  gspo_cfg = _config("tiny_synthetic_gspo.py").replace(seed=args.seed)
  if not os.path.exists(os.path.join(heldout, "vstar.json")):
    _stage("writing synthetic videos", t0)
    synthesize(data, args.videos, args.seed, progress=False)
    synthesize(heldout, max(args.videos // 4, 2), args.seed + 1000, vstar_videos=6, progress=False)
  summary = {}
  _stage("evaluating the initial model", t0)
  base_run = setup_run(sft_cfg, os.path.join(w, "base"))
  record_inference_settings(base_run, "sft")  # asked as the SFT model will be
  summary["base"] = evaluate(sft_cfg, base_run, heldout, args.eval_batches)
  _stage("SFT", t0)
  train_sft(sft_cfg, data, os.path.join(w, "sft"), steps=args.sft_steps)
  sft_run = setup_run(sft_cfg, os.path.join(w, "sft"))
  restore(sft_run)
  _stage("evaluating the SFT model", t0)
  summary["sft"] = evaluate(sft_cfg, sft_run, heldout, args.eval_batches)
  _stage("GSPO", t0)
  train_gspo(
    gspo_cfg, data, os.path.join(w, "gspo"), steps=args.gspo_steps, init=os.path.join(w, "sft")
  )
  gspo_run = setup_run(gspo_cfg, os.path.join(w, "gspo"), init=os.path.join(w, "sft"))
  restore(gspo_run)
  _stage("evaluating the GSPO model", t0)
  summary["gspo"] = evaluate(gspo_cfg, gspo_run, heldout, args.eval_batches)
  summary = {k: {m: float(v[m]) for m in KEYS} for k, v in summary.items()}
  jsonio.dump(summary, os.path.join(w, "summary.json"))  # an infinite mLGM is null
  evidence_png(gspo_run, heldout, os.path.join(w, "evidence.png"))
  curves_png(w, os.path.join(w, "curves.png"))
  _stage("done", t0)
  print(table(summary))
  print(
    f"\nsummary {w}/summary.json, evidence {w}/evidence.png, curves {w}/curves.png\n"
    f"V-STaR answers of each model: {w}/<base|sft|gspo>/{RESULTS} "
    f"(o3jax eval vstar --results FILE rescores them)\n"
    f"ask the trained model: o3jax infer --model {w}/gspo --video VIDEO --question TEXT"
  )
  return 0
