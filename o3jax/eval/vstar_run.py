"""V-STaR results from a model: the five queries of every sample, the official results file.

Two protocols:
- "reference" (default): the paper's (vstar_reference.py): frames at 1 fps, at most 16
  (vstar_protocol.frame_indices), each an image resized by qwen-vl-utils' rule for images
  (multiples of 28, 4*28*28 to 16384*28*28 pixels: about the video's own size), the
  reference's five think-mode queries with `Frame {k} at {t}s: <image>` lines where the
  video goes, system prompt "You are a helpful assistant.", greedy with repetition
  penalty 1.05 and 2,048 new tokens (the defaults the CLI takes from vstar_reference).
  Boxes are kept in the coordinates the model wrote, as the reference keeps them.
- "o3jax": the training presentation (docs/reference.md section 2, `--processing`), the prompts of
  vstar_prompts.py stating the frame size, the training system prompts; the boxes read
  are rescaled from the frame the model saw to the annotation's width x height.
Either way the results record is the annotation record with the reference's answer
entries (vstar_protocol.results_record) and `input_shape` [W, H] of the frames read.

A sample whose video cannot be read gets empty answers (scored 0) and its error in
`o3jax_error`; one whose annotation is malformed is left out; with strict=True either
raises instead.
"""

from __future__ import annotations

import dataclasses

import decord
import jax
import numpy as np

from o3jax import grammar
from o3jax.eval import vstar, vstar_prompts, vstar_protocol
from o3jax.eval import vstar_reference as R
from o3jax.eval.generate import Decoding, LoadedModel, Query, Video, answer_records
from o3jax.processing import frames as F
from o3jax.processing import media, patchify, prompts
from o3jax.processing.chat import Vision
from o3jax.processing.config import ProcessingConfig, for_model
from o3jax.processing.presentation import VisualInput

PROTOCOLS = ("reference", "o3jax")
ANSWER_FIELDS = vstar_protocol.ANSWER_FIELDS
SPATIAL_FIELDS = ("answer_spatial", "answer_spatial_2")
SYSTEM_TASK = {
  "answer_vqa": grammar.SPATIO_TEMPORAL,
  "answer_temporal": grammar.TEMPORAL,
  "answer_spatial": grammar.SPATIO_TEMPORAL,
  "answer_spatial_2": grammar.SPATIO_TEMPORAL,
  "answer_temporal_2": grammar.TEMPORAL,
}
# qwen-vl-utils' pixel budget for an image given without one: each reference frame is one.
REFERENCE_PROCESSING = ProcessingConfig(
  image_min_pixels=R.IMAGE_MIN_PIXELS, image_max_pixels=R.IMAGE_MAX_PIXELS
)


# ------------------------------------------------------------------ reference protocol


def load_reference_video(path: str, processing: ProcessingConfig = REFERENCE_PROCESSING) -> Video:
  """The frames the reference shows (1 fps, at most 16), each resized as an image; raises
  media.MediaError naming the file when it cannot be used."""
  media._check_file(path, "video")
  try:
    reader = decord.VideoReader(path, num_threads=1)
    total, video_fps = len(reader), float(reader.get_avg_fps())
    if total == 0 or not video_fps > 0:
      raise media.MediaError(f"unreadable video {path}: {total} frames at {video_fps} fps")
    indices = vstar_protocol.frame_indices(total, video_fps, R.FPS, R.MAX_FRAMES)
    raw = reader.get_batch(indices).asnumpy()
  except media.MediaError:
    raise
  except Exception as e:  # decord's errors
    raise media.MediaError(f"unreadable or truncated video {path}: {e}") from None
  height, width = raw.shape[1:3]
  out_h, out_w = F.image_size(height, width, processing)
  shown = np.stack([F.resize(frame, out_h, out_w) for frame in raw])
  pixels, grids = patchify.patchify(shown, processing, as_images=True)
  times = tuple(i / video_fps for i in indices)
  empty = np.zeros((0, processing.patch_dim), np.float32), np.zeros((0, 3), np.int64)
  visual = VisualInput(
    [Vision("image", tuple(int(v) for v in g)) for g in grids],
    pixels,
    grids,
    *empty,
    np.zeros(0, np.float32),
    (out_w, out_h),
    times,
  )
  return Video(path, visual, shown, times, total / video_fps, (width, height))


def reference_query(text: str, video: Video) -> Query:
  """A reference query: its frame lines hold the images, in order."""
  pieces = R.with_frames(text, video.frame_times).split(R.IMAGE_PLACEHOLDER)
  content = [pieces[0]]
  for image, piece in zip(video.visual.content, pieces[1:]):
    content += [image, piece]
  return Query("", dataclasses.replace(video.visual, content=content), R.SYSTEM_PROMPT)


def reference_queries(record: dict, video: Video, think: bool = True) -> list[Query]:
  texts = R.query_texts(record, think)
  return [reference_query(texts[f], video) for f in ANSWER_FIELDS]


# ------------------------------------------------------------------ o3jax protocol


def sample_queries(
  record: dict, video: Video, stage: str = "rl", think: bool = True
) -> list[Query]:
  """The five queries of one sample under the o3jax protocol, in ANSWER_FIELDS order."""
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


def rescale_boxes(boxes: dict, frame_size, size) -> dict:
  """Every [x1, y1, x2, y2] (or list of them) moved from (W, H) `frame_size` to `size`."""
  sx, sy = size[0] / frame_size[0], size[1] / frame_size[1]

  def move(box):
    if isinstance(box, list) and len(box) == 4 and all(map(grammar.is_number, box)):
      return [round(v * s, 2) for v, s in zip(box, (sx, sy, sx, sy))]
    return [move(b) for b in box] if isinstance(box, list) else box

  return {key: move(value) for key, value in boxes.items()}


# ------------------------------------------------------------------ results


def results_record(record: dict, texts, frame_size, rescale_to=None) -> dict:
  """The annotation record with the five answers (reference entries); with `rescale_to`
  (W, H), the boxes are moved there from `frame_size`."""
  out = vstar_protocol.results_record(record, dict(zip(ANSWER_FIELDS, texts)))
  if rescale_to is not None:
    for field in SPATIAL_FIELDS:
      out[field] = rescale_boxes(out[field], frame_size, rescale_to)
  out["input_shape"] = list(frame_size)
  return out


def failed_record(record: dict, error: str) -> dict:
  out = vstar_protocol.results_record(record, {f: "" for f in ANSWER_FIELDS})
  return {**out, "o3jax_error": error}


def vstar_results(
  loaded: LoadedModel,
  records: list[dict],
  videos_dir: str,
  processing: ProcessingConfig,
  *,
  key: jax.Array,
  decoding: Decoding,
  protocol: str = "reference",
  stage: str = "rl",
  think: bool = True,
  batch_size: int = 5,
  strict: bool = False,
) -> tuple[list[dict], list[str]]:
  """(results records in annotation order, errors); batch_size queries per sampler call."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
  reference = protocol == "reference"

  def make_queries(record, index, video):
    vstar.gold_span(record, index)  # a malformed annotation fails here, not when scored
    if not reference:
      return sample_queries(record, video, stage, think)
    try:
      return reference_queries(record, video, think)
    except (KeyError, TypeError) as e:
      raise ValueError(f"field {e} is missing or malformed") from None

  def reference_loader(path):  # the reference's frames, cut into the model's patches
    return load_reference_video(path, for_model(REFERENCE_PROCESSING, loaded.config.model_type))

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
    video_loader=reference_loader if reference else None,
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
        size = None if reference else (item.record["width"], item.record["height"])
        texts = [t[0] for t in item.texts]
        results.append(results_record(item.record, texts, item.video.frame_size, size))
  return results, errors
