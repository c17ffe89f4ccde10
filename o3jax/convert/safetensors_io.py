"""Streaming safetensors reading and writing with numpy (bf16 through ml_dtypes).

The format is an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets: [begin, end]}} (plus optional "__metadata__"), then
the raw bytes. Reading memory-maps the file and copies one tensor at a time; writing
computes the header from shapes first, then streams each tensor in, so neither direction
holds more than one extra tensor in host memory.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Callable, Iterable, Iterator

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


def iter_tensors(path: str, names: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (name, array) one at a time, each an independent copy."""
  header, start = read_header(path)
  data = np.memmap(path, dtype=np.uint8, mode="r")
  for name in names if names is not None else header:
    info = header[name]
    dtype = DTYPES.get(info["dtype"])
    if dtype is None:
      raise ValueError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
    b, e = info["data_offsets"]
    if start + e > data.shape[0]:
      raise ValueError(f"{path}: tensor {name} runs past the end of the file (truncated?)")
    yield name, np.array(data[start + b : start + e].view(dtype).reshape(info["shape"]))
  del data


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
      arr = np.ascontiguousarray(produce(name), dtype=dtype)
      if arr.shape != tuple(shape):
        raise ValueError(f"tensor {name}: produced shape {arr.shape}, declared {tuple(shape)}")
      f.write(arr.tobytes())
  os.replace(tmp, path)
