"""One STGR record -> one model example: decode, present, template, tokenize.

SFT: system prompt, user turn (visual input then question), assistant turn (the SFT
target); the loss mask covers the assistant turn. RL: the prompt only, ending with
`<|im_start|>assistant\\n`, and the reward metadata.
"""

import dataclasses
import os
from typing import Any

import numpy as np
from PIL import Image
from tokenizers import Tokenizer

from o3jax import grammar
from o3jax.data.records import (
  Record,
  RecordError,
  check_record,
  check_times,
  record_id,
  reward_meta,
  sft_target,
)
from o3jax.processing import chat, media, prompts
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.presentation import VisualInput, present_image, present_video
from o3jax.rewards import gold


@dataclasses.dataclass
class Example:
  """A tokenized record with its pixels, before batching."""

  id: str
  input_ids: np.ndarray  # int32 [L]
  loss_mask: np.ndarray  # int32 [L]; 1 on assistant tokens (all 0 for RL)
  prompt_length: int  # tokens up to and including `<|im_start|>assistant\n`
  pixel_values: np.ndarray  # float32 [P, 1176]
  image_grid_thw: np.ndarray  # int32 [I, 3]
  pixel_values_videos: np.ndarray  # float32 [Pv, 1176]
  video_grid_thw: np.ndarray  # int32 [V, 3]
  second_per_grid_ts: np.ndarray  # float32 [V]
  meta: dict[str, Any]  # reward metadata (the record, frame_size, ...)


@dataclasses.dataclass(frozen=True)
class Skipped:
  """A record that could not be encoded, and why."""

  error: RecordError


def _visual_input(
  record: Record, rid: str, root: str, config: ProcessingConfig, decode_threads: int
) -> tuple[VisualInput, dict[str, Any]]:
  if record["task"] in grammar.IMAGE_TASKS:
    try:
      image = media.read_image(os.path.join(root, record["image_path"]))
    except media.MediaError as e:
      raise RecordError(rid, "image_path", str(e)) from None
    return present_image(image, config), {}

  try:
    clip = media.read_video(os.path.join(root, record["video_path"]), config, decode_threads)
  except media.MediaError as e:
    raise RecordError(rid, "video_path", str(e)) from None
  key_frames = []
  if record["task"] == grammar.SPATIO_TEMPORAL and config.presentation == "frames":
    width, height = clip.frame_size
    for i, kf in enumerate(record["key_frames"]):
      if "path" not in kf:  # reward gold only
        continue
      try:
        image = media.read_image(os.path.join(root, kf["path"]), "key frame")
      except media.MediaError as e:
        raise RecordError(rid, f"key_frames[{i}].path", str(e)) from None
      # The reference resizes key frames with PIL's default filter (bicubic) to the frame size.
      key_frames.append(
        (
          kf["time"],
          np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)),
        )
      )
  visual = present_video(clip, config, key_frames)
  facts = {
    "sample_fps": clip.sample_fps,
    "duration": clip.total_frames / clip.video_fps,
    "frame_times": list(visual.frame_times),
  }
  return visual, facts


def encode_record(
  record: Record,
  *,
  tokenizer: Tokenizer,
  config: ProcessingConfig,
  stage: str,
  root: str = ".",
  index: int | None = None,
  decode_threads: int = 1,
) -> Example:
  """Raises RecordError (naming the record and the field) for anything wrong with it."""
  check_record(record, stage=stage, root=root, index=index)
  prompt_stage = config.prompt_stage(stage)
  rid = record_id(record, index)
  visual, facts = _visual_input(record, rid, root, config, decode_threads)
  if "duration" in facts:
    check_times(record, facts["duration"], index)
  meta = reward_meta(record, visual.frame_size, **facts)
  if stage == "rl":  # the rewards' reading of it, so that no record fails at scoring
    try:
      gold.record_gold(meta)
    except gold.RecordError as e:
      raise RecordError(rid, getattr(e, "field", "answer"), getattr(e, "why", str(e))) from None
  system = prompts.system_prompt(record["task"], prompt_stage)
  messages = [chat.Message("system", [system])] if system else []
  messages.append(
    chat.Message(
      "user",
      visual.content + [prompts.question_text(record["task"], record["question"], prompt_stage)],
    )
  )
  if stage == "sft":
    try:
      target = sft_target(record, visual.frame_size)
    except ValueError as e:
      raise RecordError(rid, "reasoning_process", f"cannot convert boxes: {e}") from None
    tokens = chat.tokenize(
      tokenizer, messages + [chat.Message("assistant", [target])], merge_size=config.merge_size
    )
    prompt_length = int(np.argmax(tokens.loss_mask))
  else:
    tokens = chat.tokenize(
      tokenizer, messages, add_generation_prompt=True, merge_size=config.merge_size
    )
    prompt_length = len(tokens.input_ids)
  return Example(
    id=rid,
    input_ids=tokens.input_ids,
    loss_mask=tokens.loss_mask,
    prompt_length=prompt_length,
    pixel_values=visual.pixel_values,
    image_grid_thw=visual.image_grid_thw.astype(np.int32),
    pixel_values_videos=visual.pixel_values_videos,
    video_grid_thw=visual.video_grid_thw.astype(np.int32),
    second_per_grid_ts=visual.second_per_grid_ts.astype(np.float32),
    meta=meta,
  )


@dataclasses.dataclass(frozen=True)
class EncodeRecord:
  """`encode_record` for a pipeline: takes (index, record), returns Example or Skipped.

  Any failure while encoding is a bad record, never a crashed worker: unexpected errors
  are reported as a RecordError on the field "record"."""

  tokenizer: Tokenizer
  config: ProcessingConfig
  stage: str
  root: str = "."
  decode_threads: int = 1

  def __call__(self, item: tuple[int, Record]) -> Example | Skipped:
    index, record = item
    try:
      return encode_record(
        record,
        tokenizer=self.tokenizer,
        config=self.config,
        stage=self.stage,
        root=self.root,
        index=index,
        decode_threads=self.decode_threads,
      )
    except RecordError as e:
      return Skipped(e)
    except Exception as e:  # pylint: disable=broad-except
      return Skipped(RecordError(record_id(record, index), "record", f"{type(e).__name__}: {e}"))
