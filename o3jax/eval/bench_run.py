"""VideoMME, WorldSense and VideoMMMU answered by a model as the reference runs them
(eval/test/test_{videomme,worldsense,videommmu}.py, eval/models/model_vllm.py).

Each question is one user turn: the video (the model's native video input), then the
question's image when it has one (VideoMMMU Adaptation), then the prompt of benchmarks.py;
no system turn of our own (the default system prompt of the model's chat template:
Qwen2.5-VL's, none for Qwen3-VL). N completions per multiple-choice question become one
letter as tts.py says (N = 1 and majority voting is how the reference's eval_all.sh runs
them); an open-ended VideoMMMU question is answered once. The results records (bench_score.py reads them) hold the
question's published row, its categories, every completion, the letters, weights,
ratings and both votes.

config.REFERENCE_EVAL (`--processing reference_eval`) is the reference's evaluation setup: frames at 2 fps (qwen-vl-utils), at
most 16, each frame at most 2,097,152 pixels, 2,048 new tokens, greedy (eval/config/
vstar.yaml: the only evaluation config the reference publishes; eval_all.sh names
video_mme.yaml, world_sense.yaml and video_mmmu.yaml, which are not in the repository);
images within vLLM's default Qwen2.5-VL pixel budget (12,845,056).
"""

from __future__ import annotations

import jax

from o3jax.eval import bench_score, mcq_run, tts
from o3jax.eval.benchmarks import Item
from o3jax.eval.generate import Decoding, LoadedModel, Query, answer_records
from o3jax.processing import chat
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.presentation import joined, present_image


def item_query(item: Item, video, processing: ProcessingConfig) -> Query:
  visual = video.visual
  if item.image is not None:
    visual = joined([visual, present_image(item.image, processing)])
  return Query(item.prompt, visual, chat.default_system_prompt(processing.model_type))


def plain_reader(benchmark: str, item: Item):
  """Reads a letter from a completion written without the think prompt."""
  if benchmark == "worldsense":
    return lambda text: bench_score.worldsense_letter(text, item.letters)
  return lambda text: bench_score.parse_multi_choice(text, item.options)


def reader(benchmark: str, item: Item, think: bool):
  plain = plain_reader(benchmark, item)
  return lambda text: tts.read_response(text, item.letters, think, plain)


def result_record(benchmark: str, item: Item) -> dict:
  return {
    "id": item.id,
    "benchmark": benchmark,
    "question_type": item.question_type,
    "answer": item.answer,
    "options": item.options,
    "categories": item.categories,
    "video": item.video,
    "row": item.row,
  }


def bench_results(
  loaded: LoadedModel,
  benchmark: str,
  items: list[Item],
  processing: ProcessingConfig,
  *,
  key: jax.Array,
  decoding: Decoding,
  n: int = 1,
  scaling: mcq_run.Scaling | None = None,
  batch_size: int = 4,
  strict: bool = False,
) -> tuple[list[dict], list[str]]:
  """(results records in file order, errors); a question whose video cannot be read is
  kept with an empty response (scored wrong) unless strict."""
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  scaling = scaling or mcq_run.Scaling("majority")
  rating_key = jax.random.fold_in(key, 1 << 20)
  rate_joint = mcq_run.joint_rater(loaded, processing, rating_key, decoding, batch_size * n)
  rate_crop = mcq_run.crop_rater(loaded, processing, rating_key, batch_size * n)
  records = [{"video_path": item.video, "id": item.id} for item in items]

  def make_queries(record, index, video):
    return [item_query(items[index], video, processing)]

  results, errors = [], []
  for chunk in answer_records(
    loaded,
    records,
    "",
    processing,
    make_queries,
    key=key,
    decoding=decoding,
    num_samples=n,
    batch_size=batch_size,
    strict=strict,
    name=benchmark,
  ):
    mcq = [a for a in chunk if a.error is None and items[a.index].question_type != "open"]
    scaled = iter(
      mcq_run.scale(
        [a.video for a in mcq],
        [a.texts[0] for a in mcq],
        [reader(benchmark, items[a.index], scaling.think_mode) for a in mcq],
        [items[a.index].letters for a in mcq],
        [items[a.index].rating_question for a in mcq],
        scaling,
        rate_joint,
        rate_crop,
      )
    )
    for a in chunk:
      out = result_record(benchmark, items[a.index])
      if a.error is not None:
        errors.append(f"{benchmark} question {items[a.index].id}: {a.error}")
        out.update(response="", o3jax={"error": a.error})
      elif items[a.index].question_type == "open":
        out.update(response=a.texts[0][0], responses=a.texts[0][:1])
      else:
        out.update(next(scaled))
      results.append(out)
  return results, errors
