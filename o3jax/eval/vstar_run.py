"""V-STaR results from a model: the five queries of every sample, the official results file.

Each sample's video is shown as in training (SPEC.md section 2) and asked five
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
`o3jax.error`; with strict=True it raises instead.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import jax

from o3jax.eval import vstar, vstar_prompts
from o3jax.eval.generate import Decoding, LoadedModel, Query, Video, generate, load_video
from o3jax.eval.iou import is_number
from o3jax.processing import prompts
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.media import MediaError

ANSWER_FIELDS = ("answer_vqa", "answer_temporal", "answer_spatial", "answer_spatial_2",
                 "answer_temporal_2")
SPATIAL_FIELDS = ("answer_spatial", "answer_spatial_2")
SYSTEM_TASK = {"answer_vqa": prompts.SPATIO_TEMPORAL, "answer_temporal": "temporal QA",
               "answer_spatial": prompts.SPATIO_TEMPORAL,
               "answer_spatial_2": prompts.SPATIO_TEMPORAL, "answer_temporal_2": "temporal QA"}


def video_file(record: dict, videos_dir: str, index: int) -> str:
  """DIR/video_path when the record has one, else DIR/<vid>.mp4 (the V-STaR layout)."""
  if record.get("video_path"):
    return os.path.join(videos_dir, str(record["video_path"]))
  return os.path.join(videos_dir, f"{vstar.record_field(record, 'vid', index)}.mp4")


def sample_queries(record: dict, video: Video, stage: str = "rl", think: bool = True) -> list[Query]:
  """The five queries of one sample, in ANSWER_FIELDS order."""
  size = video.frame_size
  texts = {
      "answer_vqa": vstar_prompts.what_prompt(record, think),
      "answer_temporal": vstar_prompts.when_prompt(record, think),
      "answer_spatial": vstar_prompts.where_prompt(record, think, size=size),
      "answer_spatial_2": vstar_prompts.where_given_count_prompt(record, think, size=size),
      "answer_temporal_2": vstar_prompts.when_given_boxes_prompt(record, think, size=size),
  }
  return [Query(texts[f], video.visual, prompts.system_prompt(SYSTEM_TASK[f], stage))
          for f in ANSWER_FIELDS]


def rescale_boxes(text: str, frame_size: Sequence[int], size: Sequence[float]) -> str | None:
  """The boxes of a where-completion moved from (W, H) of the frame the model saw to the
  annotation's (width, height), as a JSON object text; None when no box is readable."""
  boxes = vstar.parse_boxes(text)
  sx, sy = size[0] / frame_size[0], size[1] / frame_size[1]
  out = {}
  for second, candidates in boxes.items():
    moved = [[round(v * s, 2) for v, s in zip(box, (sx, sy, sx, sy))] for box in candidates
             if len(box) == 4 and all(map(is_number, box))]
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


def vstar_results(loaded: LoadedModel, records: list[dict], videos_dir: str,
                  processing: ProcessingConfig, *, key: jax.Array, decoding: Decoding,
                  stage: str = "rl", think: bool = True, batch_size: int = 5,
                  strict: bool = False, progress: bool = True) -> tuple[list[dict], list[str]]:
  """(results records in annotation order, errors). Samples are answered a few at a time
  (batch_size // 5 samples, at least one), so only their videos are held in memory."""
  per_chunk = max(1, batch_size // len(ANSWER_FIELDS))
  results: list[dict] = []
  errors: list[str] = []
  for c, start in enumerate(range(0, len(records), per_chunk)):
    chunk = list(enumerate(records[start:start + per_chunk], start))
    answered, queries = [], []
    for index, record in chunk:
      try:
        if not isinstance(record, dict):
          raise ValueError(f"V-STaR record {index}: not a JSON object")
        video = load_video(video_file(record, videos_dir, index), processing)
        queries += sample_queries(record, video, stage, think)
        vstar.gold_span(record, index)  # malformed annotations fail here, not when scored
        answered.append((index, record, video))
      except (ValueError, MediaError) as e:
        message = f"V-STaR record {index} (vid {record.get('vid', '?') if isinstance(record, dict) else '?'}): {e}"
        if strict:
          raise ValueError(message) from None
        print(f"skipping: {message}", file=sys.stderr)
        errors.append(message)
        results.append(failed_record(record if isinstance(record, dict) else {}, str(e)))
        queries = queries[:len(answered) * len(ANSWER_FIELDS)]
    if queries:
      texts = generate(loaded, queries, jax.random.fold_in(key, c), decoding,
                       batch_size=batch_size)
      for k, (index, record, video) in enumerate(answered):
        own = [t[0] for t in texts[k * len(ANSWER_FIELDS):(k + 1) * len(ANSWER_FIELDS)]]
        results.append(results_record(record, own, video.frame_size))
    results.sort(key=lambda r: 0)  # keeps order; failed ones are placed below
    if progress:
      print(f"V-STaR: {min(start + per_chunk, len(records))}/{len(records)} samples",
            file=sys.stderr, flush=True)
  return results, errors
