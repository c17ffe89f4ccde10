"""`o3jax infer`: a grounded answer to a question about a video, with its evidence.

    o3jax infer --model DIR --video FILE --question TEXT [--out DIR] [--gif]
                [--processing reference|tiny|CONFIG.py] [--presentation frames|video]
                [--task TASK] [--prompt-stage rl|sft] [--max-new-tokens N]
                [--temperature T --seed S]

--model is a Hugging Face directory or an o3jax workdir (a training run, or the output of
`o3jax convert`), with its tokenizer.json. A model trained with o3jax is asked as it was
trained: its inference.json gives the frame processing, the prompt stage and the answer
length (flags override them; a downloaded model gets the reference settings). The video
is sampled and shown as in training (docs/reference.md section 2) with the system prompt
of --task; decoding is greedy unless --temperature is given. Prints the completion, the
answer and a table of the evidence (object, box in pixels of the frame the model saw,
time, the frame it is drawn on), and writes to --out: answer.json, evidence.png (the
evidence frames with boxes and labels) and, with --gif, evidence.gif (every frame shown,
evidence drawn).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from o3jax import grammar, jsonio
from o3jax.eval.cli import add_model_arguments
from o3jax.processing import prompts
from o3jax.viz import Evidence, assign_frames, evidence_gif, evidence_sheet


def add_parser(sub) -> argparse.ArgumentParser:
  p = sub.add_parser(
    "infer",
    help="grounded answer + evidence table and frames for one video",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--model", required=True, help="Hugging Face dir or o3jax checkpoint dir")
  p.add_argument("--video", required=True, help="video file")
  p.add_argument("--question", required=True)
  p.add_argument("--out", default="o3jax_infer", help="output directory (default o3jax_infer)")
  p.add_argument("--gif", action="store_true", help="also write evidence.gif")
  add_model_arguments(p)
  p.add_argument(
    "--task",
    default=grammar.SPATIO_TEMPORAL,
    choices=[t for t in grammar.TASKS if t not in grammar.IMAGE_TASKS],
    help="whose system prompt to use (default: spatio-temporal free-form QA)",
  )
  p.add_argument(
    "--max-new-tokens",
    type=int,
    default=None,
    help="answer length limit (default: the model's inference.json, else 512)",
  )
  p.add_argument("--temperature", type=float, default=None, help="sample (default: greedy)")
  p.add_argument("--top-p", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=run)
  return p


@dataclasses.dataclass
class Inference:
  question: str
  text: str  # the whole completion
  answer: str  # the <answer> text ("" when there is none)
  think: str | None
  evidence: list[Evidence]


def read_evidence(text: str) -> list[Evidence]:
  """One Evidence per box of each claim the model wrote. The rewards read claims from a
  closed think block only; a reader of one answer wants every claim shown, so a completion
  that never closes its think block is read whole."""
  from o3jax.grammar import THINK
  from o3jax.rewards.claims import find_claims
  from o3jax.rewards.parse import BoxValues, block, read_claims

  source = block(text, THINK) or text
  return [
    Evidence(name, box, time)
    for name, time, boxes in read_claims(find_claims(source), BoxValues())
    for box in boxes
  ]


def read_inference(question: str, text: str) -> Inference:
  from o3jax.grammar import THINK
  from o3jax.rewards.parse import answer_text, block

  return Inference(question, text, answer_text(text), block(text, THINK), read_evidence(text))


def answer_video(
  loaded,
  video,
  question: str,
  *,
  task: str = grammar.SPATIO_TEMPORAL,
  stage: str = "rl",
  decoding=None,
  key=None,
) -> Inference:
  import jax

  from o3jax.eval.generate import Decoding, Query, generate

  query = Query(
    prompts.question_text(task, question, stage), video.visual, prompts.system_prompt(task, stage)
  )
  [[text]] = generate(
    loaded, [query], jax.random.key(0) if key is None else key, decoding or Decoding(), batch_size=1
  )
  return read_inference(question, text)


def _number(v: float) -> str:
  return f"{v:g}"


def short(name: str, limit: int = 40) -> str:
  """A name cut to `limit` characters (an untrained model's names can swallow whole tags)."""
  return name if len(name) <= limit else name[: limit - 3] + "..."


def evidence_table(result: Inference, video) -> str:
  """Object, box, time and the frame it is drawn on, one line per box."""
  if not result.evidence:
    return "no grounded evidence (no <obj>..</obj><box>[..]</box>at<t>..</t>s claim)"
  w, h = video.frame_size
  on_frame = {
    id(e): i
    for i, items in assign_frames(video.frame_times, result.evidence).items()
    for e in items
  }
  rows = [("object", f"box (px of the {w}x{h} frame)", "time", "drawn on")]
  for e in result.evidence:
    i = on_frame[id(e)]
    rows.append(
      (
        short(e.name),
        "[" + ",".join(_number(v) for v in e.box) + "]",
        f"{e.time:g}s",
        f"frame {i + 1} ({video.frame_times[i]:g}s)",
      )
    )
  widths = [max(len(r[c]) for r in rows) for c in range(4)]
  lines = ["  ".join(cell.ljust(wd) for cell, wd in zip(r, widths)).rstrip() for r in rows]
  return "\n".join([lines[0], "  ".join("-" * wd for wd in widths)] + lines[1:])


def write_outputs(
  result: Inference, video, out_dir: str, gif: bool = False, gold: Inference | None = None
) -> dict[str, str]:
  """answer.json, evidence.png and optionally evidence.gif; returns their paths. With
  `gold` (the annotated answer and evidence), evidence.png draws both, in two colours."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {
    "json": os.path.join(out_dir, "answer.json"),
    "png": os.path.join(out_dir, "evidence.png"),
  }
  on_frame = {
    id(e): i
    for i, items in assign_frames(video.frame_times, result.evidence).items()
    for e in items
  }
  report = {
    "video": video.path,
    "question": result.question,
    "completion": result.text,
    "answer": result.answer,
    "think": result.think,
    "frame_size": list(video.frame_size),
    "frame_times": list(video.frame_times),
    "evidence": [
      {"object": e.name, "box": list(e.box), "time": e.time, "frame": on_frame[id(e)] + 1}
      for e in result.evidence
    ],
  }
  jsonio.dump(report, paths["json"])
  if gold is None:
    title = f"Q: {result.question}  A: {result.answer or '(no answer)'}"
    sheet = evidence_sheet(video.frames, video.frame_times, result.evidence, title=title)
  else:
    sheet = evidence_sheet(
      video.frames,
      video.frame_times,
      result.evidence,
      title=f"Q: {result.question}",
      gold=gold.evidence,
      answers=(result.answer, gold.answer),
    )
  sheet.save(paths["png"])
  if gif:
    paths["gif"] = os.path.join(out_dir, "evidence.gif")
    evidence_gif(video.frames, video.frame_times, result.evidence, paths["gif"])
  return paths


def run(args: argparse.Namespace) -> int:
  import jax

  from o3jax.eval.generate import (
    Decoding,
    inference_mesh,
    ask_settings,
    load_model,
    load_video,
  )
  from o3jax.processing.media import MediaError

  try:
    asked = ask_settings(
      args.model, args.processing, args.presentation, args.prompt_stage, args.max_new_tokens
    )
    video = load_video(args.video, asked.processing)
  except (ValueError, FileNotFoundError, MediaError) as e:
    raise SystemExit(f"o3jax infer: {e}")
  try:
    loaded = load_model(args.model, args.dtype, inference_mesh(args.mesh))
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise SystemExit(f"o3jax infer: --model {args.model}: {e}")
  greedy = args.temperature is None
  decoding = Decoding(
    max_new_tokens=asked.max_new_tokens,
    greedy=greedy,
    temperature=1.0 if greedy else args.temperature,
    top_p=args.top_p,
  )
  print(
    f"video {args.video}: {len(video.frames)} frames of {video.frame_size[0]}x"
    f"{video.frame_size[1]} at {', '.join(f'{t:g}' for t in video.frame_times)} s",
    file=sys.stderr,
  )
  result = answer_video(
    loaded,
    video,
    args.question,
    task=args.task,
    stage=asked.prompt_stage,
    decoding=decoding,
    key=jax.random.key(args.seed),
  )
  paths = write_outputs(result, video, args.out, args.gif)
  print(f"completion:\n{result.text}\n")
  print(f"answer: {result.answer or '(no <answer> block)'}\n")
  print(evidence_table(result, video) + "\n")
  print("written: " + ", ".join(paths.values()))
  return 0
