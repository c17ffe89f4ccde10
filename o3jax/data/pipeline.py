"""Grain pipeline: STGR records -> fixed-shape numpy batches for SFT or RL.

    source (index, record) -> this host's shard -> seeded shuffle (a new order every epoch)
    -> repeat -> encode (decord decode, resize, patchify, template, tokenize) in
    `num_workers` processes -> skip and count bad records -> batch -> pad to a bucket

Per-host sharding: host i of n takes records i, i+n, i+2n, ... of the first
n * floor(N / n) records (so every host has as many), by default from
jax.process_index() / jax.process_count(); training passes the block of batch rows the
host's devices hold (`o3jax.distributed.row_shard`) and has the hosts agree on the bucket
(`agree_bucket`). `DataIterator.records_read` counts the records this host decoded.

Bad records (RecordError: missing or corrupt media, invalid fields, longer than the
largest bucket) are logged, counted once each in `DataIterator.skipped` (however many
epochs meet them) and skipped; `strict=True` raises the first instead.

The iterator is a grain `DatasetIterator`: `get_state()` / `set_state()` (JSON-able,
grain's orbax handler saves it) restore the exact position, so the next batch after a
restore is the one the uninterrupted run would have produced (same config and
num_workers).

Batch format: a dict of numpy arrays, B = batch_size, shapes fixed per bucket
`BatchShape(seq_len=T, image_patches=Pi, images=Ni, video_patches=Pv, videos=Nv)`; the
batch uses the first bucket into which every example fits (buckets must grow
monotonically in every field).

  SFT (stage="sft")
    input_ids          int32 [B, T]    right-padded with pad_token_id
    attention_mask     int32 [B, T]    1 on real tokens
    loss_mask          int32 [B, T]    1 on assistant tokens (the SFT target and its
                                       <|im_end|>): position t is trained to predict
                                       input_ids[t], i.e. weight logits[:, t-1]
    prompt_length      int32 [B]       tokens before the assistant content
  RL (stage="rl")
    prompt_ids         int32 [B, T]    the prompt (ends with `<|im_start|>assistant\\n`),
                                       LEFT-padded with pad_token_id so generation starts at T
    prompt_mask        int32 [B, T]    1 on real tokens
    meta               list of B dicts (None on filler rows): the STGR-RL record plus
                       frame_size [W, H] of the processed frame (boxes in the record are
                       normalised; visual QA boxes are pixels of image_size), and for
                       videos sample_fps, duration, frame_times
  Both
    pixel_values       float32 [B*Pi, 1176]  the patches of every image of the batch, in the
                                       order their pads appear in the token rows (row by
                                       row); zero rows after the real ones
    pixel_values_mask  int32 [B*Pi]    1 on real patch rows
    image_grid_thw     int32 [B*Ni, 3] (t, h, w) per image in the same order; padding rows
                                       are (0, 0, 0), so they hold no patches and no tokens
    pixel_values_videos, pixel_values_videos_mask, video_grid_thw: the same for videos
    second_per_grid_ts float32 [B*Nv]  seconds per temporal patch, 0 on padding rows
    example_mask       int32 [B]       0 on filler rows of a last partial batch
"""

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import grain
from absl import flags
import numpy as np
from tokenizers import Tokenizer

from o3jax.data.encode import EncodeRecord, Example, Skipped
from o3jax.data.records import Record, RecordError
from o3jax.processing import frames as F
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.prompts import STAGES
from o3jax.processing.tokenizer import special_token_ids

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BatchShape:
  """Per-example maxima of one bucket; a batch holds B times these."""

  seq_len: int
  image_patches: int
  images: int
  video_patches: int = 0
  videos: int = 0

  def fits(self, other: "BatchShape") -> bool:
    return all(a <= b for a, b in zip(dataclasses.astuple(other), dataclasses.astuple(self)))


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  batch_size: int
  buckets: tuple[BatchShape, ...]
  stage: str = "sft"
  seed: int = 0
  shuffle: bool = True
  num_epochs: int | None = None  # None: repeat forever
  num_workers: int = 0  # processes decoding and processing; 0 decodes in this process
  worker_buffer_size: int = 2  # examples each worker keeps ready
  read_threads: int = 1  # threads per worker fetching examples ahead
  decode_threads: int = 1  # decord threads per video
  shard_index: int | None = None  # None: jax.process_index()
  shard_count: int | None = None  # None: jax.process_count()
  strict: bool = False
  drop_remainder: bool = True
  # Multi-process runs: the bucket index every process pads to, from this process's
  # (`o3jax.distributed.agree_max`, a collective each process calls once per batch), so
  # that the processes' rows stack into one global batch. None: this process's own.
  agree_bucket: Callable[[int], int] | None = None

  def __post_init__(self):
    if self.stage not in STAGES:
      raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
    if not self.buckets:
      raise ValueError("need at least one bucket")
    for small, large in zip(self.buckets, self.buckets[1:]):
      if not large.fits(small):
        raise ValueError(f"buckets must grow in every field: {small} then {large}")


def bucket_for_videos(
  processing: ProcessingConfig,
  seq_len: int,
  video_size: tuple[int, int],
  max_key_frames: int = 0,
  image_size: tuple[int, int] | None = None,
) -> BatchShape:
  """The largest per-example shapes for videos of one (W, H), and still images of one size:
  max_frames sampled frames plus `max_key_frames` key frames as images, or one native video.
  (Qwen3-VL's budget bounds the whole clip, so fewer frames may be larger: the largest
  over every frame count is taken.)"""
  p, tp = processing.patch_size, processing.temporal_patch_size

  def patches(n: int) -> tuple[int, int]:  # (per frame, frames counted) for n sampled frames
    height, width = F.video_frame_size(video_size[1], video_size[0], n, processing)
    counted = -(-n // tp) if processing.presentation == "video" else n + max_key_frames
    return (height // p) * (width // p), counted

  counts = [processing.max_frames]
  if processing.model_type == "qwen3_vl":
    counts = range(tp, max(tp, processing.max_frames) + 1)
  per_frame, frames = max((patches(n) for n in counts), key=lambda pf: pf[0] * pf[1])
  image_patches, images = 0, 0
  if image_size is not None:
    ih, iw = F.image_size(image_size[1], image_size[0], processing)
    image_patches, images = (ih // p) * (iw // p), 1
  if processing.presentation == "video":
    return BatchShape(seq_len, image_patches, images, per_frame * frames, 1)
  shown = processing.max_frames + max_key_frames
  return BatchShape(seq_len, max(image_patches, per_frame * frames), max(images, shown))


def example_shape(example: Example, stage: str) -> BatchShape:
  tokens = len(example.input_ids) if stage == "sft" else example.prompt_length
  return BatchShape(
    tokens,
    len(example.pixel_values),
    len(example.image_grid_thw),
    len(example.pixel_values_videos),
    len(example.video_grid_thw),
  )


def make_batch(
  examples: Sequence[Example],
  shape: BatchShape,
  batch_size: int,
  stage: str,
  ids: dict[str, int],
  patch_dim: int = 1176,
) -> dict[str, Any]:
  """Pads examples into one batch of `shape` (see the module docstring)."""
  b, t = batch_size, shape.seq_len
  tokens = np.full((b, t), ids["pad_token_id"], np.int32)
  mask = np.zeros((b, t), np.int32)
  loss_mask = np.zeros((b, t), np.int32)
  for row, ex in enumerate(examples):
    if stage == "sft":
      n = len(ex.input_ids)
      tokens[row, :n], mask[row, :n], loss_mask[row, :n] = ex.input_ids, 1, ex.loss_mask
    else:
      prompt = ex.input_ids[: ex.prompt_length]
      tokens[row, t - len(prompt) :], mask[row, t - len(prompt) :] = prompt, 1
  batch: dict[str, Any] = {}
  if stage == "sft":
    batch.update(
      input_ids=tokens,
      attention_mask=mask,
      loss_mask=loss_mask,
      prompt_length=_rows([ex.prompt_length for ex in examples], b, np.int32),
    )
  else:
    batch.update(
      prompt_ids=tokens,
      prompt_mask=mask,
      meta=[ex.meta for ex in examples] + [None] * (b - len(examples)),
    )
  batch["pixel_values"], batch["pixel_values_mask"] = _patches(
    [ex.pixel_values for ex in examples], b * shape.image_patches, patch_dim
  )
  batch["image_grid_thw"] = _grids([ex.image_grid_thw for ex in examples], b * shape.images)
  batch["pixel_values_videos"], batch["pixel_values_videos_mask"] = _patches(
    [ex.pixel_values_videos for ex in examples], b * shape.video_patches, patch_dim
  )
  batch["video_grid_thw"] = _grids([ex.video_grid_thw for ex in examples], b * shape.videos)
  seconds = np.zeros(b * shape.videos, np.float32)
  real = np.concatenate([ex.second_per_grid_ts for ex in examples])
  seconds[: len(real)] = real
  batch["second_per_grid_ts"] = seconds
  batch["example_mask"] = _rows([1] * len(examples), b, np.int32)
  return batch


def _rows(values: list, size: int, dtype) -> np.ndarray:
  out = np.zeros(size, dtype)
  out[: len(values)] = values
  return out


def _patches(parts: list[np.ndarray], rows: int, patch_dim: int) -> tuple[np.ndarray, np.ndarray]:
  # The arrays are large: write every byte once (no zero fill under the real patches).
  out = np.empty((rows, patch_dim), np.float32)
  n = 0
  for part in parts:
    out[n : n + len(part)] = part
    n += len(part)
  out[n:] = 0
  mask = np.zeros(rows, np.int32)
  mask[:n] = 1
  return out, mask


def _grids(parts: list[np.ndarray], rows: int) -> np.ndarray:
  out = np.zeros((rows, 3), np.int32)
  real = np.concatenate(parts) if parts else np.zeros((0, 3), np.int32)
  out[: len(real)] = real
  return out


_ARRAYS = (
  "input_ids",
  "loss_mask",
  "pixel_values",
  "image_grid_thw",
  "pixel_values_videos",
  "video_grid_thw",
  "second_per_grid_ts",
)


def _to_wire(item: Example | Skipped) -> dict[str, Any]:
  """A flat dict whose arrays grain moves through shared memory (pickling big arrays
  through a pipe is slower and can stall worker shutdown); the metadata travels as JSON."""
  if isinstance(item, Skipped):
    return {"error": item.error}
  wire = {name: getattr(item, name) for name in _ARRAYS}
  wire.update(id=item.id, prompt_length=item.prompt_length, meta=json.dumps(item.meta))
  return wire


def _from_wire(wire: dict[str, Any]) -> Example | Skipped:
  if "error" in wire:
    return Skipped(wire["error"])
  return Example(
    id=wire["id"],
    prompt_length=int(wire["prompt_length"]),
    meta=json.loads(wire["meta"]),
    **{name: np.asarray(wire[name]) for name in _ARRAYS},
  )


class DataIterator(grain.DatasetIterator):
  """Batches encoded examples, skipping and counting bad records; checkpointable."""

  def __init__(
    self,
    parent: grain.DatasetIterator,
    config: PipelineConfig,
    ids: dict[str, int],
    shard_size: int,
    patch_dim: int,
  ):
    super().__init__(parent)
    self._config, self._ids, self._shard_size, self._patch_dim = config, ids, shard_size, patch_dim
    self.skipped_records: dict[str, str] = {}  # id -> field, each bad record once
    self.records_read = 0  # records decoded by this process, bad ones included

  @property
  def skipped(self) -> int:
    """Bad records met so far, each counted once however many epochs meet it."""
    return len(self.skipped_records)

  @property
  def skipped_by_field(self) -> dict[str, int]:
    counts: dict[str, int] = {}
    for field in self.skipped_records.values():
      counts[field] = counts.get(field, 0) + 1
    return counts

  def _skip(self, error: RecordError, consecutive: int) -> None:
    if self._config.strict:
      raise error
    if error.record_id not in self.skipped_records:
      self.skipped_records[error.record_id] = error.field
      log.warning("skipping bad record (%d skipped so far): %s", self.skipped, error)
    if consecutive > self._shard_size:
      raise RuntimeError(
        f"no usable record: the last {consecutive} records were all bad; last: {error}"
      )

  def __next__(self) -> dict[str, Any]:
    config, largest = self._config, self._config.buckets[-1]
    examples: list[Example] = []
    consecutive = 0
    while len(examples) < config.batch_size:
      try:
        item = _from_wire(next(self._parent))
      except StopIteration:
        break
      self.records_read += 1
      if isinstance(item, Skipped):
        consecutive += 1
        self._skip(item.error, consecutive)
        continue
      shape = example_shape(item, config.stage)
      if not largest.fits(shape):
        consecutive += 1
        self._skip(
          RecordError(
            item.id,
            "input_ids" if shape.seq_len > largest.seq_len else "pixel_values",
            f"example of shape {shape} does not fit the largest bucket {largest}",
          ),
          consecutive,
        )
        continue
      consecutive = 0
      examples.append(item)
    if not examples or (config.drop_remainder and len(examples) < config.batch_size):
      raise StopIteration
    shapes = [dataclasses.astuple(example_shape(ex, config.stage)) for ex in examples]
    need = BatchShape(*np.max(shapes, axis=0).tolist())
    index = next(i for i, b in enumerate(config.buckets) if b.fits(need))
    if config.agree_bucket is not None:
      index = config.agree_bucket(index)
    bucket = config.buckets[index]
    batch = make_batch(
      examples, bucket, config.batch_size, config.stage, self._ids, self._patch_dim
    )
    return batch

  def get_state(self) -> dict[str, Any]:
    return {
      "parent": self._parent.get_state(),
      "skipped": self.skipped,
      "skipped_records": dict(self.skipped_records),
      "records_read": self.records_read,
    }

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self.skipped_records = dict(state.get("skipped_records", {}))
    self.records_read = int(state.get("records_read", 0))


class _BatchDataset(grain.IterDataset):
  def __init__(
    self,
    parent: grain.IterDataset,
    config: PipelineConfig,
    ids: dict[str, int],
    shard_size: int,
    patch_dim: int,
  ):
    super().__init__(parent)
    self._args = (config, ids, shard_size, patch_dim)

  def __iter__(self) -> DataIterator:
    return DataIterator(self._parent.__iter__(), *self._args)


def _shard(config: PipelineConfig) -> tuple[int, int]:
  if config.shard_index is not None and config.shard_count is not None:
    index, count = config.shard_index, config.shard_count
  else:
    import jax  # only the host needs it; workers never import jax

    index, count = jax.process_index(), jax.process_count()
  if not 0 <= index < count:
    raise ValueError(f"shard index {index} is not in [0, {count})")
  return index, count


def make_dataset(
  records: Sequence[Record],
  *,
  tokenizer: Tokenizer,
  processing: ProcessingConfig,
  config: PipelineConfig,
  root: str = ".",
) -> grain.IterDataset:
  """The pipeline as a grain IterDataset; `iter()` of it is a `DataIterator`."""
  index, count = _shard(config)
  usable = len(records) - len(records) % count
  shard = grain.MapDataset.source([(i, records[i]) for i in range(index, usable, count)])
  shard_size = len(shard)
  if shard_size == 0:
    raise ValueError(f"shard {index} of {count} has no records ({len(records)} in all)")
  if config.shuffle:
    shard = shard.shuffle(seed=config.seed)
  shard = shard.repeat(config.num_epochs)
  encoded = shard.map(
    EncodeRecord(tokenizer, processing, config.stage, root, config.decode_threads)
  ).map(_to_wire)
  stream = encoded.to_iter_dataset(
    grain.ReadOptions(
      num_threads=config.read_threads, prefetch_buffer_size=max(1, config.worker_buffer_size)
    )
  )
  if config.num_workers > 0:
    # grain reads absl flags when it starts workers and fails if nothing parsed them
    # (google/grain#1355); outside an absl app the defaults are what we want.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    stream = stream.mp_prefetch(
      grain.MultiprocessingOptions(
        num_workers=config.num_workers, per_worker_buffer_size=config.worker_buffer_size
      )
    )
  return _BatchDataset(
    stream, config, special_token_ids(tokenizer), shard_size, processing.patch_dim
  )


def make_iterator(
  records: Sequence[Record],
  *,
  tokenizer: Tokenizer,
  processing: ProcessingConfig,
  config: PipelineConfig,
  root: str = ".",
) -> DataIterator:
  return iter(
    make_dataset(records, tokenizer=tokenizer, processing=processing, config=config, root=root)
  )
