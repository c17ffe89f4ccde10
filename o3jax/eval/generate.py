"""Answering questions about videos with a model: loading, prompts, batched jitted sampling.

`load_model(DIR)` reads a Hugging Face directory (config.json + safetensors, through
`convert.hf.load_pretrained`) or an o3jax checkpoint directory (a training workdir or an
`o3jax convert --to o3jax` output: model_config.json + checkpoints/<step>, params of the
newest step); either must hold the tokenizer.json the model was trained with.

`ask_settings` says how the model is asked (flags, else what its directory recorded).
`load_video` samples and presents a video as docs/reference.md section 2 says and keeps the frames
the model sees (for evidence crops and drawings). A `Query` is one single-turn question
(system prompt, visual input, text). `generate` answers a list of queries in batches of a
fixed number of rows, each batch padded to bucketed shapes (prompt length, vision
patches, windows, frames) so that a benchmark compiles the sampler a handful of times.
"""

from __future__ import annotations

import dataclasses
import os
import runpy
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tokenizers import Tokenizer
from tqdm import tqdm

from o3jax import sample, sharding, workdir
from o3jax.models import Qwen2_5_VL
from o3jax.processing import chat, media
from o3jax.processing.config import QWEN3_VL, REFERENCE_EVAL, TINY, ProcessingConfig, for_model
from o3jax.processing.presentation import VisualInput, present_image, present_video
from o3jax.processing.tokenizer import load_tokenizer, special_token_ids
from o3jax.sample_inputs import prompt_batch

PRESETS = {"reference": ProcessingConfig(), "reference_eval": REFERENCE_EVAL, "tiny": TINY}


# ------------------------------------------------------------------------ the model


@dataclasses.dataclass
class LoadedModel:
  model: Qwen2_5_VL
  tokenizer: Tokenizer
  graphdef: Any
  state: Any
  eos_ids: tuple[int, ...]  # <|im_end|>, <|endoftext|>
  pad_id: int
  kind: str  # "hf" or "o3jax"

  @property
  def config(self):
    return self.model.config


def inference_mesh(spec: str = "1,1,1"):
  """A (data, fsdp, tensor) mesh over the first data*fsdp*tensor devices, from "D,F,T"."""
  try:
    data, fsdp, tensor = (int(x) for x in spec.split(","))
  except ValueError:
    raise ValueError(f"mesh must be D,F,T (three integers), got {spec!r}") from None
  return sharding.make_mesh(data, fsdp, tensor, devices=jax.devices()[: data * fsdp * tensor])


def load_model(path: str, dtype: str = "float32", mesh=None) -> LoadedModel:
  """The model and tokenizer of a Hugging Face or o3jax directory (see the module doc),
  parameters placed on `mesh` (default: one device) by the logical sharding rules."""
  from o3jax.convert.hf import abstract_model

  kind = workdir.model_kind(path)
  tokenizer_path = os.path.join(path, workdir.TOKENIZER)
  if not os.path.isfile(tokenizer_path):
    raise FileNotFoundError(f"{path}: no tokenizer.json next to the model")
  tokenizer = load_tokenizer(tokenizer_path)
  mesh = mesh or inference_mesh()
  dt = jnp.dtype(dtype)
  graphdef, abstract = nnx.split(abstract_model(workdir.model_config_of(path), dt, dt))
  model = nnx.merge(graphdef, workdir.load_params(path, abstract, mesh))
  ids = special_token_ids(tokenizer)
  for name in ("image_token_id", "video_token_id", "vision_start_token_id"):
    if ids[name] != getattr(model.config, name):
      raise ValueError(
        f"{path}: tokenizer.json gives {name}={ids[name]} but the model config "
        f"has {getattr(model.config, name)}: not the model's tokenizer"
      )
  return loaded_model(model, tokenizer, kind)


def loaded_model(model: Qwen2_5_VL, tokenizer: Tokenizer, kind: str = "o3jax") -> LoadedModel:
  """A model already in memory (e.g. a training run's) ready for `generate`."""
  ids = special_token_ids(tokenizer)
  graphdef, state = nnx.split(model)
  return LoadedModel(
    model,
    tokenizer,
    graphdef,
    state,
    (ids["eos_token_id"], ids["pad_token_id"]),
    ids["pad_token_id"],
    kind,
  )


def processing_config(spec: str = "reference", presentation: str | None = None) -> ProcessingConfig:
  """A preset ("reference": docs/reference.md section 2; "tiny": the tiny model's small frames), or a
  training config file (configs/*.py) whose `processing` overrides are used."""
  if spec in PRESETS:
    config = PRESETS[spec]
  elif spec.endswith(".py"):
    if not os.path.isfile(spec):
      raise FileNotFoundError(f"config file {spec} not found")
    # Run the file as `o3jax sft` would (evaluation does not import the trainer).
    config = ProcessingConfig(**runpy.run_path(spec)["get_config"]().processing)
  else:
    raise ValueError(
      f"processing must be one of {sorted(PRESETS)} or a config file (configs/*.py), got {spec!r}"
    )
  return dataclasses.replace(config, presentation=presentation) if presentation else config


@dataclasses.dataclass(frozen=True)
class AskSettings:
  """How a model is asked: frames, system prompts of a stage, answer length, and where
  each came from ("flag", the model directory's inference.json, or "default")."""

  processing: ProcessingConfig
  prompt_stage: str
  max_new_tokens: int
  source: str


def ask_settings(
  model: str,
  processing: str | None = None,
  presentation: str | None = None,
  prompt_stage: str | None = None,
  max_new_tokens: int | None = None,
) -> AskSettings:
  """Each setting from its flag when given, else from what the model directory recorded
  (`workdir.INFERENCE`, written by training and carried by `o3jax convert`), else the
  reference's (frames of docs/reference.md section 2, RL prompts, 512 new tokens; a
  Qwen3-VL model without recorded settings: transformers' Qwen3-VL processing,
  config.QWEN3_VL). The processing is always the model family's (`config.for_model`)."""
  recorded = workdir.read_inference_settings(model) if os.path.isdir(model) else None
  try:  # the model's family decides the processing (for_model)
    model_type = workdir.model_config_of(model).model_type
  except FileNotFoundError:  # not a model directory: loading it says so
    model_type = "qwen2_5_vl"
  if processing is not None:
    config = processing_config(processing)
  elif recorded:
    config = recorded.processing
  else:
    config = QWEN3_VL if model_type == "qwen3_vl" else PRESETS["reference"]
  if presentation:
    config = dataclasses.replace(config, presentation=presentation)
  config = for_model(config, model_type)
  return AskSettings(
    config,
    prompt_stage or (recorded.prompt_stage if recorded else "rl"),
    max_new_tokens or (recorded.max_new_tokens if recorded else 512),
    f"{model}/{workdir.INFERENCE}" if recorded else "default",
  )


# ------------------------------------------------------------------------ inputs


@dataclasses.dataclass(frozen=True)
class Video:
  """A sampled video as the model sees it."""

  path: str
  visual: VisualInput
  frames: np.ndarray  # uint8 [n, H, W, 3], the frames shown
  frame_times: tuple[float, ...]  # seconds of each frame shown
  duration: float  # seconds
  source_size: tuple[int, int]  # (W, H) of the file
  sample_fps: float = 1.0  # frames per second of the frames shown (the reference's fps)

  @property
  def frame_size(self) -> tuple[int, int]:
    """(W, H) of the frames shown."""
    return int(self.frames.shape[2]), int(self.frames.shape[1])


def load_video(path: str, processing: ProcessingConfig) -> Video:
  """Raises media.MediaError naming the file when it cannot be used."""
  clip = media.read_video(path, processing)
  visual = present_video(clip, processing)
  times = visual.frame_times or tuple(
    round(i / clip.sample_fps, 2) for i in range(len(clip.frames))
  )
  duration = clip.total_frames / clip.video_fps
  return Video(path, visual, clip.frames, times, duration, clip.source_size, clip.sample_fps)


@dataclasses.dataclass(frozen=True)
class Query:
  """One single-turn question: [system] + user (visual input then text, or text first)."""

  text: str
  visual: VisualInput | None = None
  system: str | None = None
  text_first: bool = False

  def messages(self) -> list[chat.Message]:
    visual = list(self.visual.content) if self.visual else []
    content = [self.text] + visual if self.text_first else visual + [self.text]
    system = [chat.Message("system", [self.system])] if self.system else []
    return system + [chat.Message("user", content)]


def image_query(
  image: np.ndarray, text: str, processing: ProcessingConfig, system: str | None = None
) -> Query:
  return Query(text, present_image(image, processing), system)


@dataclasses.dataclass(frozen=True)
class Encoded:
  """A tokenized query with its vision arrays."""

  ids: np.ndarray
  visual: VisualInput | None


def encode(tokenizer: Tokenizer, query: Query, merge_size: int) -> Encoded:
  tokens = chat.tokenize(
    tokenizer, query.messages(), add_generation_prompt=True, merge_size=merge_size
  )
  return Encoded(tokens.input_ids, query.visual)


def batch_inputs(
  loaded: LoadedModel,
  rows: Sequence[Encoded],
  batch_size: int,
  prompt_bucket: int = 64,
  rope_rule: str = "qwen",
) -> dict:
  """Sampler inputs for up to `batch_size` encoded queries; missing rows are empty filler."""
  if not 0 < len(rows) <= batch_size:
    raise ValueError(f"a batch holds 1 to {batch_size} queries, got {len(rows)}")
  longest = max(len(r.ids) for r in rows)
  ids = np.full((batch_size, longest), loaded.pad_id, np.int32)
  mask = np.zeros((batch_size, longest), np.int32)
  for i, r in enumerate(rows):
    ids[i, : len(r.ids)], mask[i, : len(r.ids)] = r.ids, 1
  kw: dict[str, Any] = {}
  for prefix, pixels_of, grid_of in (
    ("image", lambda v: v.pixel_values, lambda v: v.image_grid_thw),
    ("video", lambda v: v.pixel_values_videos, lambda v: v.video_grid_thw),
  ):
    visuals = [r.visual for r in rows if r.visual is not None and len(grid_of(r.visual))]
    if not visuals:
      continue
    pixels = np.concatenate([pixels_of(v) for v in visuals])
    grids = np.concatenate([grid_of(v) for v in visuals]).astype(np.int64)
    if prefix == "image":
      kw.update(pixel_values=pixels, image_grid_thw=grids)
    else:
      kw.update(
        pixel_values_videos=pixels,
        video_grid_thw=grids,
        second_per_grid_ts=np.concatenate([v.second_per_grid_ts for v in visuals]),
      )
  return prompt_batch(
    loaded.config,
    ids,
    mask,
    prompt_bucket=prompt_bucket,
    pad_id=loaded.pad_id,
    rope_rule=rope_rule,
    **kw,
  )


# ------------------------------------------------------------------------ generation


@dataclasses.dataclass(frozen=True)
class Decoding:
  """How to choose tokens. greedy ignores temperature/top_p/top_k, not repetition_penalty."""

  max_new_tokens: int = 512
  greedy: bool = True
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0
  repetition_penalty: float = 1.0


def generate(
  loaded: LoadedModel,
  queries: Sequence[Query],
  key: jax.Array,
  decoding: Decoding,
  *,
  num_samples: int = 1,
  batch_size: int = 4,
  prompt_bucket: int = 64,
  rope_rule: str = "qwen",
) -> list[list[str]]:
  """`num_samples` completions (text, special tokens dropped) of each query, in order;
  batch b samples with key fold_in(key, b)."""
  merge = loaded.config.vision.spatial_merge_size
  out: list[list[str]] = []
  for b, start in enumerate(range(0, len(queries), batch_size)):
    rows = [encode(loaded.tokenizer, q, merge) for q in queries[start : start + batch_size]]
    inputs = batch_inputs(loaded, rows, batch_size, prompt_bucket, rope_rule)
    result = sample.sample(
      loaded.graphdef,
      loaded.state,
      inputs,
      jax.random.fold_in(key, b),
      max_new_tokens=decoding.max_new_tokens,
      num_samples=num_samples,
      temperature=decoding.temperature,
      top_p=decoding.top_p,
      top_k=decoding.top_k,
      greedy=decoding.greedy,
      repetition_penalty=decoding.repetition_penalty,
      eos_id=list(loaded.eos_ids),
      pad_id=loaded.pad_id,
    )
    tokens, lengths = np.asarray(result.tokens), np.asarray(result.lengths)
    texts = loaded.tokenizer.decode_batch(
      [row[:n].tolist() for row, n in zip(tokens, lengths)], skip_special_tokens=True
    )
    for i in range(len(rows)):
      out.append(texts[i * num_samples : (i + 1) * num_samples])
  return out


# ------------------------------------------------------------------------ benchmarks

VIDEO_FIELDS = ("video_path", "video")
VIDEO_ID_FIELDS = ("vid", "video_id", "videoID")


def video_file(record: dict, videos_dir: str) -> str:
  """DIR/<video_path or video> when the record names a file, else DIR/<vid>.mp4 (V-STaR,
  VideoMME layouts); ValueError naming the fields when it has none of them."""
  for field in VIDEO_FIELDS:
    if record.get(field):
      return os.path.join(videos_dir, str(record[field]))
  for field in VIDEO_ID_FIELDS:
    if record.get(field):
      return os.path.join(videos_dir, f"{record[field]}.mp4")
  raise ValueError(
    f"field 'video_path' is missing (nor {', '.join(VIDEO_FIELDS[1:] + VIDEO_ID_FIELDS)})"
  )


def select_tasks(records: list, tasks: Sequence[str]) -> list:
  """STGR files (records with a `task` of docs/reference.md section 3) hold every task: keep the
  records of `tasks`. Other files are returned as they are."""
  from o3jax.grammar import TASKS

  if not any(isinstance(r, dict) and r.get("task") in TASKS for r in records):
    return records
  return [r for r in records if isinstance(r, dict) and r.get("task") in tasks]


def record_name(record, index: int) -> str:
  if isinstance(record, dict):
    for field in ("id", "qid", "question_id") + VIDEO_ID_FIELDS:
      if record.get(field) is not None:
        return f"record {index} ({field} {record[field]})"
  return f"record {index}"


@dataclasses.dataclass
class Answered:
  index: int
  record: dict
  video: Video | None
  texts: list[list[str]]  # per query of the record: num_samples completions
  error: str | None = None


def answer_records(
  loaded: LoadedModel,
  records: Sequence,
  videos_dir: str,
  processing: ProcessingConfig,
  make_queries,
  *,
  key: jax.Array,
  decoding: Decoding,
  queries_per_record: int = 1,
  num_samples: int = 1,
  batch_size: int = 4,
  strict: bool = False,
  name: str = "eval",
  video_loader=None,
):
  """Yields, chunk by chunk and in record order, an `Answered` per record; videos are read
  by video_loader(path) (default: `load_video` with `processing`).

  make_queries(record, index, video) -> the record's queries (ValueError for a malformed
  record). A chunk holds batch_size // queries_per_record records (at least one), so
  only their videos are in memory. A record that fails (bad fields, unreadable video) is
  yielded with its error and no texts, or raises ValueError when strict."""
  per_chunk = max(1, batch_size // queries_per_record)
  bar = tqdm(total=len(records), desc=name, unit="record", file=sys.stderr)
  for c, start in enumerate(range(0, len(records), per_chunk)):
    chunk: list[Answered] = []
    queries: list[Query] = []
    counts: list[int] = []
    for index in range(start, min(start + per_chunk, len(records))):
      record = records[index]
      try:
        if not isinstance(record, dict):
          raise ValueError("not a JSON object")
        path = video_file(record, videos_dir)
        video = video_loader(path) if video_loader else load_video(path, processing)
        own = make_queries(record, index, video)
      except (ValueError, media.MediaError) as e:
        message = f"{name} {record_name(record, index)}: {e}"
        if strict:
          raise ValueError(message) from None
        bar.write(f"skipping {message}", file=sys.stderr)
        chunk.append(Answered(index, record if isinstance(record, dict) else {}, None, [], str(e)))
        continue
      chunk.append(Answered(index, record, video, []))
      queries += own
      counts.append(len(own))
    if queries:
      texts = iter(
        generate(
          loaded,
          queries,
          jax.random.fold_in(key, c),
          decoding,
          num_samples=num_samples,
          batch_size=batch_size,
        )
      )
      for item, count in zip([a for a in chunk if a.error is None], counts):
        item.texts = [next(texts) for _ in range(count)]
    bar.update(len(chunk))
    yield chunk
  bar.close()
