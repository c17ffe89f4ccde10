"""An orbax checkpoint's params written and read one array at a time, through tensorstore.

`o3jax convert` must not hold a model in memory, and orbax saves or restores a whole tree
at once; so this module reads and writes the same on-disk layout array by array:
`<workdir>/checkpoints/<step>/state/` is one OCDBT key-value store holding a zarr array
per leaf, named by its dotted tree path (`params.text.embed.value`), with the tree in
`_METADATA`. What orbax writes (a training run's checkpoint, with an optimizer beside the
params) is read here; what is written here is restored by orbax (`Checkpointer.restore`,
`read_params`), as tests/test_convert.py checks.

A write may cover a slice of an array along its first axis (`write(path, index, value)`),
so that a layout which stacks layers into one array is still written tensor by tensor;
such arrays are created with one chunk per slice. Arrays are chunked along their first
axis (`CHUNK_BYTES`), and written and read chunk-row by chunk-row, so that tensorstore
never buffers a second copy of a large array.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import tensorstore as ts

STATE = "state"
# How orbax names the handler of the "state" item in the step's _CHECKPOINT_METADATA.
CHUNK_BYTES = 64 << 20
_HANDLER = "orbax.checkpoint._src.handlers.standard_checkpoint_handler.StandardCheckpointHandler"


def _context() -> ts.Context:
  # No cache: a written or read array is dropped as soon as the call returns.
  return ts.Context(
    {"cache_pool": {"total_bytes_limit": 0}, "cache_pool#ocdbt": {}, "file_io_sync": False}
  )


def _spec(state_dir: str, name: str) -> dict:
  return {
    "driver": "zarr",
    "kvstore": {
      "driver": "ocdbt",
      "base": f"file://{os.path.abspath(state_dir)}/",
      "path": name,
      "cache_pool": "cache_pool#ocdbt",
    },
  }


def _rows(shape: tuple[int, ...], itemsize: int) -> int:
  """Rows of the first axis per chunk: about CHUNK_BYTES."""
  row = itemsize * int(np.prod(shape[1:], dtype=np.int64))
  return max(1, min(shape[0], CHUNK_BYTES // max(row, 1)))


def _slabs(shape: tuple[int, ...], itemsize: int):
  if not shape:
    yield slice(None)
    return
  rows = _rows(shape, itemsize)
  for start in range(0, shape[0], rows):
    yield slice(start, min(start + rows, shape[0]))


def _leaf_name(path: str) -> str:
  return f"params.{path}.value"  # an nnx Variable is saved as {"value": array}


class Writer:
  """Writes `params` of step `step` under `workdir/checkpoints`, made visible to orbax (renamed
  into place) only by `finish()`: a conversion killed half-way leaves no step behind."""

  def __init__(self, workdir: str, step: int = 0):
    self.root = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.final = os.path.join(self.root, str(step))
    self.tmp = self.final + ".partial"  # not a step name: orbax skips it
    if os.path.exists(self.final):
      raise FileExistsError(f"{self.final} exists; refusing to overwrite a checkpoint")
    shutil.rmtree(self.tmp, ignore_errors=True)
    os.makedirs(os.path.join(self.tmp, STATE))
    self.state_dir = os.path.join(self.tmp, STATE)
    self.context = _context()
    self.arrays: dict[str, ts.TensorStore] = {}
    self.shapes: dict[str, tuple[int, ...]] = {}
    self.started = time.time_ns()

  def create(self, path: str, shape: tuple[int, ...], dtype, stacked: bool = False) -> None:
    """Declare array `path`; `stacked` arrays are chunked (and written) slice by slice."""
    shape = tuple(int(s) for s in shape)
    itemsize = np.dtype(dtype).itemsize
    if stacked and shape:
      chunks = (1, *shape[1:])
    else:
      chunks = (_rows(shape, itemsize), *shape[1:]) if shape else shape
    self.arrays[path] = ts.open(
      _spec(self.state_dir, _leaf_name(path)),
      create=True,
      dtype=ts.dtype(np.dtype(dtype).name),
      shape=shape,
      chunk_layout=ts.ChunkLayout(chunk_shape=chunks),
      codec=ts.CodecSpec({"driver": "zarr", "compressor": None}),
      context=self.context,
    ).result()
    self.shapes[path] = shape

  def write(self, path: str, index: int | None, value: np.ndarray) -> None:
    target = self.arrays[path] if index is None else self.arrays[path][index]
    if tuple(value.shape) != tuple(target.shape):
      raise ValueError(f"{path}: writing shape {value.shape} into {tuple(target.shape)}")
    dtype = np.dtype(target.dtype.numpy_dtype)
    for rows in _slabs(tuple(target.shape), dtype.itemsize):
      target[rows].write(np.asarray(value[rows]).astype(dtype, copy=False)).result()

  def finish(self) -> None:
    """Orbax's metadata files, then the rename that publishes the step."""
    tree = {}
    for path, shape in self.shapes.items():
      keys = _leaf_name(path).split(".")
      tree[str(tuple(keys))] = {
        "key_metadata": [{"key": k, "key_type": 2} for k in keys],
        "value_metadata": {
          "value_type": "jax.Array",
          "skip_deserialize": False,
          "write_shape": list(shape),
        },
      }
    metadata = {
      "tree_metadata": tree,
      "use_ocdbt": True,
      "use_zarr3": False,
      "store_array_data_equal_to_fill_value": True,
      "custom_metadata": None,
    }
    self.arrays.clear()
    with open(os.path.join(self.state_dir, "_METADATA"), "w") as f:
      json.dump(metadata, f)
    step_metadata = {
      "item_handlers": {STATE: _HANDLER},
      "metrics": {},
      "performance_metrics": {},
      "init_timestamp_nsecs": self.started,
      "commit_timestamp_nsecs": time.time_ns(),
      "custom_metadata": {},
    }
    with open(os.path.join(self.tmp, "_CHECKPOINT_METADATA"), "w") as f:
      json.dump(step_metadata, f)
    for d in (self.tmp, self.state_dir):
      with open(os.path.join(d, "commit_success.txt"), "w") as f:
        f.write(f"Checkpoint commit was successful to {self.final}")
    os.replace(self.tmp, self.final)


def latest_step(workdir: str) -> int:
  root = os.path.join(workdir, "checkpoints")
  steps = [
    int(name)
    for name in (os.listdir(root) if os.path.isdir(root) else [])
    if name.isdigit() and os.path.exists(os.path.join(root, name, STATE, "_METADATA"))
  ]
  if not steps:
    raise FileNotFoundError(f"{workdir}: no complete checkpoint under {root}")
  return max(steps)


class Reader:
  """The params of a checkpoint (default: the newest), one array or slice at a time."""

  def __init__(self, workdir: str, step: int | None = None):
    step = latest_step(workdir) if step is None else step
    self.state_dir = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), STATE)
    with open(os.path.join(self.state_dir, "_METADATA")) as f:
      tree = json.load(f)["tree_metadata"]
    self.context = _context()
    self.names: dict[str, str] = {}  # o3jax path -> array name in the store
    for entry in tree.values():
      keys = [str(k["key"]) for k in entry["key_metadata"]]
      if keys[0] != "params":
        continue  # optimizer state, step counter
      path = keys[1:-1] if keys[-1] == "value" else keys[1:]
      self.names[".".join(path)] = ".".join(keys)

  def open(self, path: str) -> ts.TensorStore:
    if path not in self.names:
      raise KeyError(f"{self.state_dir}: checkpoint has no parameter {path}")
    return ts.open(
      _spec(self.state_dir, self.names[path]), open=True, context=self.context
    ).result()

  def shape_dtype(self, path: str) -> tuple[tuple[int, ...], np.dtype]:
    array = self.open(path)
    return tuple(array.shape), np.dtype(array.dtype.numpy_dtype)

  def read(self, path: str, index: int | None = None) -> np.ndarray:
    array = self.open(path)
    source = array if index is None else array[index]
    out = np.empty(tuple(source.shape), np.dtype(source.dtype.numpy_dtype))
    for rows in _slabs(out.shape, out.itemsize):
      out[rows] = source[rows].read().result()
    return out
