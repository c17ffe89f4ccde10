"""Hugging Face safetensors <-> o3jax arrays, one tensor at a time, for any key table.

Host memory is bounded by a few of the largest tensors whatever the model's size: a
tensor is read, transformed, handed on (`put`: to a device, or to an orbax store) and
dropped before the next is read; in the other direction each Hugging Face tensor is
fetched (`fetch`: from a device, or from an orbax store), transformed and written to its
shard before the next. A key table is two functions:

  locate(hf_key) -> (o3jax path, index, transform) | None
  hf_names(o3jax path, shape) -> [(hf_key, index, transform)]

`index` is None when one Hugging Face tensor is a whole o3jax array, else the position
along the first axis of an array that stacks several (a layer-stacked layout).
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Callable, NamedTuple

import numpy as np
from tqdm import tqdm

from o3jax.convert import safetensors_io

Shapes = dict[str, tuple[tuple[int, ...], np.dtype]]  # o3jax path -> (shape, dtype)


class Progress:
  """A progress bar over bytes (tensors in its postfix), then a one-line summary."""

  def __init__(self, desc: str, tensors: int, nbytes: int):
    self.desc, self.total_tensors = desc, tensors
    self.tensors = self.parameters = self.bytes = 0
    self.start = time.perf_counter()
    self.bar = tqdm(
      total=nbytes, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr
    )

  def update(self, array_shape, itemsize: int) -> None:
    n = int(np.prod(array_shape, dtype=np.int64))
    self.tensors += 1
    self.parameters += n
    self.bytes += n * itemsize
    self.bar.set_postfix_str(f"{self.tensors}/{self.total_tensors} tensors", refresh=False)
    self.bar.update(n * itemsize)

  def close(self) -> str:
    self.bar.close()
    seconds = time.perf_counter() - self.start
    rate = self.bytes / 2**20 / max(seconds, 1e-9)
    line = (
      f"{self.desc}: {self.tensors} tensors, {self.parameters:,} parameters, "
      f"{self.bytes / 2**30:.2f} GiB in {seconds:.1f} s ({rate:.0f} MiB/s)"
    )
    print(line, file=sys.stderr)
    return line


def read_hf(
  directory: str,
  locate: Callable,
  targets: Shapes,
  put: Callable[[str, int | None, np.ndarray], None],
  ignore: Callable[[str], bool] = lambda path: False,
  desc: str = "reading",
) -> str:
  """Hands every tensor of a Hugging Face directory to `put(path, index, array)`, transformed
  to the o3jax layout (still in the file's dtype). Every slot of `targets` must be filled
  exactly once; a tensor the table does not know, or a missing one, is an error naming it.
  Returns the summary line."""
  infos = [
    i for file in safetensors_io.weight_files(directory) for i in safetensors_io.tensor_infos(file)
  ]
  plan = []
  for info in infos:
    found = locate(info.name)
    if found is None:
      raise KeyError(f"{info.file}: tensor {info.name} is not a parameter of this model")
    path, index, tf = found
    if ignore(path):
      continue
    if path not in targets or (index is not None and not 0 <= index < targets[path][0][0]):
      where = path if index is None else f"{path}[{index}]"
      raise KeyError(f"{info.file}: tensor {info.name} maps to {where}, absent from the model")
    _check_fits(info, path, targets[path][0] if index is None else targets[path][0][1:])
    plan.append((info, path, index, tf))
  slots = [(p, i) for _, p, i, _ in plan]
  if len(set(slots)) != len(slots):
    raise KeyError(f"{directory}: a parameter is given by two tensors")
  # A stacked array is filled when every one of its slices is.
  stacked = {p for p, i in slots if i is not None}
  wanted = {(p, None) for p in targets if p not in stacked}
  wanted |= {(p, i) for p in stacked for i in range(targets[p][0][0])}
  missing = sorted((p if i is None else f"{p}[{i}]" for p, i in wanted - set(slots)), key=str)
  if missing:
    raise KeyError(f"{directory}: checkpoint lacks {len(missing)} parameters, e.g. {missing[:5]}")
  progress = Progress(desc, len(plan), sum(info.nbytes for info, *_ in plan))
  for info, path, index, tf in plan:
    shape = targets[path][0] if index is None else targets[path][0][1:]
    value = tf.to_o3jax(safetensors_io.read_tensor(info), shape)
    put(path, index, value)
    progress.update(info.shape, info.dtype.itemsize)
    del value
  return progress.close()


def _check_fits(info, path: str, shape: tuple[int, ...]) -> None:
  """A tensor of another size than its o3jax slot (a config.json not matching the
  weights) is named with both shapes before anything is read."""
  if int(np.prod(info.shape)) != int(np.prod(shape)):
    raise ValueError(
      f"{info.file}: tensor {info.name} has shape {tuple(info.shape)}; the model built from "
      f"config.json expects {int(np.prod(shape))} values for {path} (shape {tuple(shape)})"
    )


class HFTensor(NamedTuple):
  key: str
  shape: tuple[int, ...]
  dtype: np.dtype
  path: str  # the o3jax array it comes from
  index: int | None
  transform: object


def hf_tensors(params: Shapes, hf_names: Callable, config, dtype=None) -> list[HFTensor]:
  """The Hugging Face tensors of o3jax `params`, in `params` order, with their shapes, found
  without reading any data (the transform is applied to a zero-strided view)."""
  out = []
  for path, (shape, param_dtype) in params.items():
    for key, index, tf in hf_names(path, shape):
      slot = shape if index is None else shape[1:]
      probe = tf.to_hf(np.broadcast_to(np.zeros((), np.float32), slot), config)
      out.append(HFTensor(key, tuple(probe.shape), np.dtype(dtype or param_dtype), path, index, tf))
  return out


def write_hf(
  directory: str,
  tensors: list[HFTensor],
  fetch: Callable[[str, int | None], np.ndarray],
  config,
  max_shard_bytes: int = 4 << 30,
  desc: str = "writing",
) -> str:
  """Safetensors shards (and their index when more than one), each written as it fills:
  `fetch(path, index)` is asked for one o3jax array (or slice) at a time."""
  os.makedirs(directory, exist_ok=True)
  specs = [(t.key, t.shape, t.dtype) for t in tensors]
  by_key = {t.key: t for t in tensors}
  if len(by_key) != len(tensors):
    raise ValueError(f"{directory}: two parameters map to the same Hugging Face name")
  files = safetensors_io.plan_shards(specs, max_shard_bytes)
  for name in os.listdir(directory):  # a previous save's shards, as transformers removes them
    stale = name == safetensors_io.INDEX or re.fullmatch(
      r"model(-\d{5}-of-\d{5})?\.safetensors", name
    )
    if stale and name not in files:
      os.remove(os.path.join(directory, name))
  progress = Progress(desc, len(specs), sum(int(np.prod(s)) * d.itemsize for _, s, d in specs))

  def produce(key: str) -> np.ndarray:
    t = by_key[key]
    value = np.asarray(t.transform.to_hf(fetch(t.path, t.index), config)).astype(
      t.dtype, copy=False
    )
    progress.update(t.shape, t.dtype.itemsize)
    return value

  for name, shard in files.items():
    safetensors_io.write_file(
      os.path.join(directory, name), shard, produce, metadata={"format": "pt"}
    )
  if len(files) > 1:
    params = {(t.path, t.index): int(np.prod(t.shape)) for t in tensors}
    safetensors_io.write_index(directory, files, sum(params.values()))
  return progress.close()
