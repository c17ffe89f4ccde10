"""Streaming safetensors reading and writing with numpy (bf16 through ml_dtypes).

The format is an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets: [begin, end]}} (plus optional "__metadata__"), then
the raw bytes. Reading copies one tensor at a time out of the file with a positioned
read (no memory map: the pages of a mapped 4 GB shard would count as resident for as
long as the map lives); writing computes the header from shapes first, then streams each
tensor in. Neither direction holds more than the tensor at hand in host memory.

`plan_shards` and `write_index` split tensors into files and index them exactly as
transformers' `save_pretrained` does (huggingface_hub's greedy split, in key order).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Callable, Iterable, Iterator, NamedTuple

import ml_dtypes
import numpy as np

DTYPES = {
  "F64": np.dtype(np.float64),
  "F32": np.dtype(np.float32),
  "F16": np.dtype(np.float16),
  "BF16": np.dtype(ml_dtypes.bfloat16),
  "I64": np.dtype(np.int64),
  "I32": np.dtype(np.int32),
  "I16": np.dtype(np.int16),
  "I8": np.dtype(np.int8),
  "U8": np.dtype(np.uint8),
  "BOOL": np.dtype(np.bool_),
}
NAMES = {v: k for k, v in DTYPES.items()}
INDEX = "model.safetensors.index.json"


class TensorInfo(NamedTuple):
  file: str
  name: str
  shape: tuple[int, ...]
  dtype: np.dtype
  offset: int  # of the first byte in the file
  nbytes: int


def read_header(path: str) -> tuple[dict, int]:
  with open(path, "rb") as f:
    raw = f.read(8)
    if len(raw) != 8:
      raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", raw)
    size = os.path.getsize(path)
    if n > size - 8:
      raise ValueError(f"{path}: safetensors header of {n} bytes exceeds the file size")
    header = json.loads(f.read(n))
  header.pop("__metadata__", None)
  return header, 8 + n


def tensor_infos(path: str) -> list[TensorInfo]:
  """The tensors of a file from its header alone, checked against the file's size."""
  header, start = read_header(path)
  size = os.path.getsize(path)
  out = []
  for name, info in header.items():
    dtype = DTYPES.get(info["dtype"])
    if dtype is None:
      raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
    b, e = info["data_offsets"]
    if start + e > size:
      raise ValueError(f"{path}: tensor {name} runs past the end of the file (truncated?)")
    shape = tuple(info["shape"])
    if e - b != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
      raise ValueError(f"{path}: tensor {name} has {e - b} bytes for shape {shape} {dtype}")
    out.append(TensorInfo(path, name, shape, dtype, start + b, e - b))
  return out


def read_tensor(info: TensorInfo) -> np.ndarray:
  """One tensor, read into a fresh array."""
  with open(info.file, "rb") as f:
    return np.fromfile(
      f, info.dtype, info.nbytes // info.dtype.itemsize, offset=info.offset
    ).reshape(info.shape)


def iter_tensors(path: str, names: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (name, array) one at a time, each an independent copy."""
  infos = {info.name: info for info in tensor_infos(path)}
  for name in names if names is not None else infos:
    yield name, read_tensor(infos[name])


def weight_files(directory: str) -> list[str]:
  """The safetensors files of a Hugging Face model directory (through its index if sharded)."""
  index = os.path.join(directory, INDEX)
  if os.path.exists(index):
    with open(index) as f:
      files = sorted(set(json.load(f)["weight_map"].values()))
    return [os.path.join(directory, name) for name in files]
  single = os.path.join(directory, "model.safetensors")
  if os.path.exists(single):
    return [single]
  raise FileNotFoundError(f"{directory}: no model.safetensors or {INDEX}")


def write_file(
  path: str,
  specs: list[tuple[str, tuple, np.dtype]],
  produce: Callable[[str], np.ndarray],
  metadata: dict | None = None,
) -> None:
  """Write tensors `specs` [(name, shape, dtype)], asking `produce(name)` for each in turn."""
  header, offset = {}, 0
  for name, shape, dtype in specs:
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    header[name] = {
      "dtype": NAMES[np.dtype(dtype)],
      "shape": list(shape),
      "data_offsets": [offset, offset + nbytes],
    }
    offset += nbytes
  if metadata:
    header["__metadata__"] = metadata
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(blob)))
    f.write(blob)
    for name, shape, dtype in specs:
      arr = produce(name)
      if arr.shape != tuple(shape):
        raise ValueError(f"tensor {name}: produced shape {arr.shape}, declared {tuple(shape)}")
      _write_array(f, arr, np.dtype(dtype))
      del arr
  os.replace(tmp, path)


def _write_array(f, arr: np.ndarray, dtype: np.dtype, piece_bytes: int = 64 << 20) -> None:
  """`arr` as contiguous `dtype` bytes; a transposed view or another dtype is converted
  a piece of rows at a time, never as a whole second copy."""
  if arr.dtype == dtype and arr.flags.c_contiguous:
    f.write(memoryview(arr.reshape(-1).view(np.uint8)))
    return
  if arr.ndim == 0:
    arr = arr.reshape(1)
  row = dtype.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))
  rows = max(1, piece_bytes // max(row, 1))
  for start in range(0, arr.shape[0], rows):
    piece = np.ascontiguousarray(arr[start : start + rows], dtype=dtype)
    f.write(memoryview(piece.reshape(-1).view(np.uint8)))


def plan_shards(
  specs: list[tuple[str, tuple, np.dtype]], max_shard_bytes: int
) -> dict[str, list[tuple[str, tuple, np.dtype]]]:
  """{file name: its specs}, split as `huggingface_hub.split_state_dict_into_shards_factory`:
  greedy in order; a tensor above the limit gets a file of its own."""
  shards, current, size = [], [], 0
  for spec in specs:
    nbytes = int(np.prod(spec[1], dtype=np.int64)) * np.dtype(spec[2]).itemsize
    if nbytes > max_shard_bytes:
      shards.append([spec])
      continue
    if size + nbytes > max_shard_bytes:
      shards.append(current)
      current, size = [], 0
    current.append(spec)
    size += nbytes
  if current:
    shards.append(current)
  if len(shards) == 1:
    return {"model.safetensors": shards[0]}
  n = len(shards)
  return {f"model-{i + 1:05d}-of-{n:05d}.safetensors": shard for i, shard in enumerate(shards)}


def write_index(directory: str, files: dict[str, list], total_parameters: int) -> None:
  """`model.safetensors.index.json` as transformers writes it (sorted keys, 2-space indent)."""
  total_size = sum(
    int(np.prod(s[1], dtype=np.int64)) * np.dtype(s[2]).itemsize
    for specs in files.values()
    for s in specs
  )
  index = {
    "metadata": {"total_parameters": total_parameters, "total_size": total_size},
    "weight_map": {s[0]: name for name, specs in files.items() for s in specs},
  }
  with open(os.path.join(directory, INDEX), "w", encoding="utf-8") as f:
    f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
