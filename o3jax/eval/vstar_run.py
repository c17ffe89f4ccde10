"""V-STaR results from a model: the five queries of every sample, the official results file.

Each sample's video is shown as in training (docs/reference.md section 2) and asked five
single-turn questions with the prompts of vstar_prompts.py (what; chain 1 when, where;
chain 2 where given the count, when given the boxes), the where/when-given-boxes prompts
stating the size of the frames the model sees. The system prompt is the training prompt
of the matching task: spatio-temporal free-form QA for what and where, temporal QA for
when.

The results file is the annotation list, each record extended with `answer_vqa,
answer_temporal, answer_spatial, answer_spatial_2, answer_temporal_2` (what vstar.py
scores) and an `o3jax` entry (frame size, the raw where-completions, any error):
- what and when answers are the model's completions as written;
- where answers are the boxes read from the completion (vstar.parse_boxes) rescaled from
  the frame the model saw to the annotation's width x height -- the space the gold boxes
  are in, as V-STaR compares boxes in the coordinates they are given in -- and written
  as a JSON object text {"second": box or [boxes]}; a completion with no readable box is
  kept as written (it scores 0 either way).
A sample whose video cannot be read gets empty answers (scored 0) and its error in
`o3jax.error`; one whose annotation is malformed is left out; with strict=True either
raises instead.
"""

from __future__ import annotations

import json
from typing import Sequence

import jax

from o3jax import grammar
from o3jax.eval import vstar, vstar_prompts
from o3jax.eval.generate import Decoding, LoadedModel, Query, Video, answer_records
from o3jax.grammar import is_number
from o3jax.processing import prompts
from o3jax.processing.config import ProcessingConfig

ANSWER_FIELDS = (
  "answer_vqa",
  "answer_temporal",
  "answer_spatial",
  "answer_spatial_2",
  "answer_temporal_2",
)
SPATIAL_FIELDS = ("answer_spatial", "answer_spatial_2")
SYSTEM_TASK = {
  "answer_vqa": grammar.SPATIO_TEMPORAL,
  "answer_temporal": "temporal QA",
  "answer_spatial": grammar.SPATIO_TEMPORAL,
  "answer_spatial_2": grammar.SPATIO_TEMPORAL,
  "answer_temporal_2": "temporal QA",
}


def sample_queries(
  record: dict, video: Video, stage: str = "rl", think: bool = True
) -> list[Query]:
  """The five queries of one sample, in ANSWER_FIELDS order."""
  size = video.frame_size
  texts = {
    "answer_vqa": vstar_prompts.what_prompt(record, think),
    "answer_temporal": vstar_prompts.when_prompt(record, think),
    "answer_spatial": vstar_prompts.where_prompt(record, think, size=size),
    "answer_spatial_2": vstar_prompts.where_given_count_prompt(record, think, size=size),
    "answer_temporal_2": vstar_prompts.when_given_boxes_prompt(record, think, size=size),
  }
  return [
    Query(texts[f], video.visual, prompts.system_prompt(SYSTEM_TASK[f], stage))
    for f in ANSWER_FIELDS
  ]


def rescale_boxes(text: str, frame_size: Sequence[int], size: Sequence[float]) -> str | None:
  """The boxes of a where-completion moved from (W, H) of the frame the model saw to the
  annotation's (width, height), as a JSON object text; None when no box is readable."""
  boxes = vstar.parse_boxes(text)
  sx, sy = size[0] / frame_size[0], size[1] / frame_size[1]
  out = {}
  for second, candidates in boxes.items():
    moved = [
      [round(v * s, 2) for v, s in zip(box, (sx, sy, sx, sy))]
      for box in candidates
      if len(box) == 4 and all(map(is_number, box))
    ]
    if moved:
      out[str(second)] = moved[0] if len(moved) == 1 else moved
  return json.dumps(out) if out else None


def results_record(record: dict, texts: Sequence[str], frame_size: Sequence[int]) -> dict:
  """The annotation record with the five answers (see the module docstring)."""
  out = dict(record)
  size = (vstar.record_field(record, "width"), vstar.record_field(record, "height"))
  raw = {}
  for field, text in zip(ANSWER_FIELDS, texts):
    if field in SPATIAL_FIELDS:
      raw[field] = text
      text = rescale_boxes(text, frame_size, size) or text
    out[field] = text
  out["o3jax"] = {"frame_size": list(frame_size), "raw": raw}
  return out


def failed_record(record: dict, error: str) -> dict:
  return {**record, **{f: "" for f in ANSWER_FIELDS}, "o3jax": {"error": error}}


def vstar_results(
  loaded: LoadedModel,
  records: list[dict],
  videos_dir: str,
  processing: ProcessingConfig,
  *,
  key: jax.Array,
  decoding: Decoding,
  stage: str = "rl",
  think: bool = True,
  batch_size: int = 5,
  strict: bool = False,
) -> tuple[list[dict], list[str]]:
  """(results records in annotation order, errors); batch_size queries per sampler call."""

  def make_queries(record, index, video):
    vstar.gold_span(record, index)  # a malformed annotation fails here, not when scored
    return sample_queries(record, video, stage, think)

  results, errors = [], []
  for chunk in answer_records(
    loaded,
    records,
    videos_dir,
    processing,
    make_queries,
    key=key,
    decoding=decoding,
    queries_per_record=len(ANSWER_FIELDS),
    batch_size=batch_size,
    strict=strict,
    name="V-STaR",
  ):
    for item in chunk:
      if item.error is not None:
        errors.append(f"record {item.index}: {item.error}")
        failed = failed_record(item.record, item.error)
        try:  # an unanswered sample scores 0; one whose annotation is malformed cannot be scored
          vstar.score_sample(failed, item.index, None)
          results.append(failed)
        except ValueError:
          pass
      else:
        results.append(
          results_record(item.record, [t[0] for t in item.texts], item.video.frame_size)
        )
  return results, errors
