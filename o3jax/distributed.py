"""Multi-process runs: `jax.distributed` from the environment, and the global batch.

A multi-host job runs the same `o3jax sft|gspo` command on every host (see launch/).
`initialize_from_env()` connects the processes before anything touches a device:

  O3JAX_COORDINATOR=host:port O3JAX_NUM_PROCESSES=n O3JAX_PROCESS_ID=i
                         explicit (any cluster; launch/slurm_gpu.sbatch, launch/local.py)
  O3JAX_DISTRIBUTED=1    jax's own detection (Cloud TPU pod metadata, SLURM, Open MPI, k8s;
                         launch/tpu_pod.sh)
  neither                one process: nothing to do

Each process reads its own shard of the records and decodes only its rows, but the vision
tower takes all the patches of a micro-batch at once (the vision arrays have no batch axis
and are replicated over the mesh), so every process needs the whole global batch.
`gather_batch` exchanges the processes' pipeline batches and merges them, the rows of
process 0 first, into the same global batch on every process; `concat_batches` is the
merge, exactly the batch one process would have made of the same rows in that order.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

EXPLICIT = ("O3JAX_COORDINATOR", "O3JAX_NUM_PROCESSES", "O3JAX_PROCESS_ID")


def initialize_from_env(environ: Mapping[str, str] = os.environ) -> bool:
  """Calls `jax.distributed.initialize` when the environment describes a multi-process run;
  returns whether it did. Call it before the first use of a device."""
  given = [k for k in EXPLICIT if environ.get(k)]
  if given and len(given) < len(EXPLICIT):
    missing = sorted(set(EXPLICIT) - set(given))
    raise ValueError(f"multi-process run: {', '.join(given)} set but {', '.join(missing)} not")
  if jax.distributed.is_initialized():
    return True
  if given:
    try:
      count, index = int(environ["O3JAX_NUM_PROCESSES"]), int(environ["O3JAX_PROCESS_ID"])
    except ValueError:
      raise ValueError(
        "O3JAX_NUM_PROCESSES and O3JAX_PROCESS_ID must be integers, got "
        f"{environ['O3JAX_NUM_PROCESSES']!r} and "
        f"{environ['O3JAX_PROCESS_ID']!r}"
      ) from None
    if not 0 <= index < count:
      raise ValueError(f"O3JAX_PROCESS_ID={index} is not in [0, O3JAX_NUM_PROCESSES={count})")
    if count == 1:
      return False
    # Explicit means explicit: jax's SLURM detection would otherwise narrow each process
    # to the one GPU numbered SLURM_LOCALID (JAX_LOCAL_DEVICE_IDS still applies).
    jax.distributed.initialize(
      environ["O3JAX_COORDINATOR"], count, index, cluster_detection_method="deactivate"
    )
    return True
  if environ.get("O3JAX_DISTRIBUTED", "0") not in ("", "0"):
    jax.distributed.initialize()
    return True
  return False


# ------------------------------------------------------------------------------ batches

_TOKENS = (
  "input_ids",
  "attention_mask",
  "loss_mask",
  "prompt_ids",
  "prompt_mask",
)  # [b, T]
_ROWS = ("prompt_length", "example_mask", "meta")  # [b] (meta: a list)
# (patches [b*P, D], their mask [b*P], grids [b*N, 3], per-grid seconds [b*N] or None)
_VISION = (
  ("pixel_values", "pixel_values_mask", "image_grid_thw", None),
  ("pixel_values_videos", "pixel_values_videos_mask", "video_grid_thw", "second_per_grid_ts"),
)


def concat_batches(batches: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
  """One pipeline batch (see `o3jax/data/pipeline.py`) holding the rows of `batches` in order.

  Token arrays are padded to the longest T (SFT batches on the right, RL prompts on the
  left, as the pipeline pads them, input ids with `pad_id`); each modality's real patches
  and grids are concatenated in row order and zero-padded to len(batches) times the
  largest batch's rows, which is the larger bucket when processes picked different ones.
  """
  if len(batches) == 1:
    return batches[0]
  first = batches[0]
  known = set(_TOKENS) | set(_ROWS) | {k for group in _VISION for k in group if k}
  unknown = sorted(set(first) - known)
  if unknown:
    raise ValueError(f"cannot merge batches with fields {unknown}")
  left = "prompt_ids" in first
  length = max(np.shape(b[k])[1] for b in batches for k in _TOKENS if k in b)
  out: dict[str, Any] = {}
  for key in _TOKENS:
    if key not in first:
      continue
    fill = pad_id if key in ("input_ids", "prompt_ids") else 0
    parts = []
    for b in batches:
      x = np.asarray(b[key])
      pad = ((0, 0), (length - x.shape[1], 0) if left else (0, length - x.shape[1]))
      parts.append(np.pad(x, pad, constant_values=fill))
    out[key] = np.concatenate(parts)
  for key in _ROWS:
    if key in first:
      out[key] = (
        sum((list(b[key]) for b in batches), [])
        if key == "meta"
        else np.concatenate([np.asarray(b[key]) for b in batches])
      )
  for pixels, mask, grids, seconds in _VISION:
    if pixels not in first:
      continue
    real_patches = [int(np.asarray(b[mask]).sum()) for b in batches]
    real_grids = [int((np.asarray(b[grids]).prod(-1) > 0).sum()) for b in batches]
    n_patches = len(batches) * max(len(b[pixels]) for b in batches)
    n_grids = len(batches) * max(len(b[grids]) for b in batches)
    out[pixels] = _stacked(
      [np.asarray(b[pixels])[:n] for b, n in zip(batches, real_patches)], n_patches
    )
    out[mask] = (np.arange(n_patches) < sum(real_patches)).astype(np.asarray(first[mask]).dtype)
    out[grids] = _stacked([np.asarray(b[grids])[:n] for b, n in zip(batches, real_grids)], n_grids)
    if seconds and seconds in first:
      out[seconds] = _stacked(
        [np.asarray(b[seconds])[:n] for b, n in zip(batches, real_grids)], n_grids
      )
  return out


def _stacked(parts: list[np.ndarray], rows: int) -> np.ndarray:
  real = np.concatenate(parts)
  out = np.zeros((rows,) + real.shape[1:], real.dtype)
  out[: len(real)] = real
  return out


def gather_batch(batch: dict[str, Any], pad_id: int) -> dict[str, Any]:
  """The global batch, the same on every process: every process's pipeline batch, process
  0's rows first (`concat_batches`). One process: `batch` itself."""
  if jax.process_count() == 1:
    return batch
  return concat_batches(allgather_objects(batch), pad_id)


def allgather_objects(obj: Any) -> list[Any]:
  """Every process's picklable `obj`, in process order, on every process.

  The bytes travel through a device all-gather (ICI/NVLink/DCN, or gloo on CPU). Their
  length is rounded up to a power of two so that the gather compiles a handful of times.
  """
  from jax.experimental import multihost_utils

  data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
  lengths = np.asarray(multihost_utils.process_allgather(np.array([len(data)], np.int64)))
  lengths = lengths.reshape(-1)
  size = 1 << max(16, int(lengths.max() - 1).bit_length())
  buffer = np.zeros(size, np.uint8)
  buffer[: len(data)] = data
  gathered = np.asarray(multihost_utils.process_allgather(buffer))
  return [pickle.loads(gathered[i, :n].tobytes()) for i, n in enumerate(lengths.tolist())]
