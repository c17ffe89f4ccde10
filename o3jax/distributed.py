"""Multi-process runs: `jax.distributed` from the environment, and each process's rows.

A multi-host job runs the same `o3jax sft|gspo` command on every host (see launch/).
`initialize_from_env()` connects the processes before anything touches a device:

  O3JAX_COORDINATOR=host:port O3JAX_NUM_PROCESSES=n O3JAX_PROCESS_ID=i
                         explicit (any cluster; launch/slurm_gpu.sbatch, launch/local.py)
  O3JAX_DISTRIBUTED=1    jax's own detection (Cloud TPU pod metadata, SLURM, Open MPI, k8s;
                         launch/tpu_pod.sh)
  neither                one process: nothing to do

Batch rows are split over the (data, fsdp) mesh axes. `row_shard(mesh)` names the block
of rows this process's devices hold; the process reads and decodes only the records of
that block (`o3jax.data.pipeline` shards by it) and `place_rows` turns its host arrays
into the global arrays with `jax.make_array_from_process_local_data`: no pixels cross
hosts. What the processes must agree on, the padded shapes, they agree on with
`agree_max`, an all-gather of a few ints; `gather_rows` brings small per-row results
(rewards, lengths) to every process for the metrics.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np

EXPLICIT = ("O3JAX_COORDINATOR", "O3JAX_NUM_PROCESSES", "O3JAX_PROCESS_ID")
BATCH_AXES = ("data", "fsdp")  # the mesh axes that split batch rows (sharding.RULES)


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


# ----------------------------------------------------------------------- rows per process


def _row_blocks(mesh) -> dict[int, tuple[int, int]]:
  """{process: (first, count)} of the (data, fsdp) positions its devices hold."""
  ways = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
  spec = jax.sharding.PartitionSpec(BATCH_AXES)
  where = jax.sharding.NamedSharding(mesh, spec).devices_indices_map((ways,))
  held: dict[int, set[int]] = {}
  for device, (index,) in where.items():
    held.setdefault(device.process_index, set()).add(index.start or 0)
  blocks = {}
  for process, starts in held.items():
    first = min(starts)
    if sorted(starts) != list(range(first, first + len(starts))):
      raise ValueError(f"process {process} holds batch positions {sorted(starts)}: not one block")
    blocks[process] = (first, len(starts))
  return blocks


def row_shard(mesh) -> tuple[int, int]:
  """(index, count): this process holds block `index` of `count` equal blocks of every
  batch's rows (process i of n: (i, n) when each host's devices are its own slice of the
  data/fsdp axes; processes that differ only along `tensor` share a block)."""
  blocks = _row_blocks(mesh)
  sizes = {n for _, n in blocks.values()}
  if len(sizes) != 1:
    raise ValueError(f"processes hold unequal shares of the batch rows: {blocks}")
  first, size = blocks[jax.process_index()]
  ways = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
  return first // size, ways // size


def place_rows(batch, shardings, row_shards: int):
  """Host arrays of this process's rows -> global arrays laid out by `shardings`.

  A leaf sharded over the batch axes holds this process's rows (its block, `row_shard`)
  along that axis, which the global array has `row_shards` times; a replicated leaf is
  the same on every process."""

  def one(x, s):
    x = np.asarray(x)
    shape = list(x.shape)
    for axis, names in enumerate(s.spec):
      if names is not None and set(np.atleast_1d(names)) & set(BATCH_AXES):
        shape[axis] *= row_shards
    return jax.make_array_from_process_local_data(s, x, tuple(shape))

  return jax.tree.map(one, batch, shardings)


def local_rows(x: jax.Array, axis: int = 0) -> np.ndarray:
  """This process's rows of a global array split along `axis` over the batch axes (all
  of it when replicated), in order."""
  shards = {}
  for shard in x.addressable_shards:
    start = shard.index[axis].start or 0
    shards.setdefault(start, np.asarray(shard.data))
  return np.concatenate([shards[k] for k in sorted(shards)], axis=axis)


def agree_max(values: Sequence[int]) -> list[int]:
  """The elementwise maximum over processes of a few ints (the shapes every process must
  pad to); `values` itself with one process."""
  values = np.asarray(values, np.int64).reshape(-1)
  if jax.process_count() == 1:
    return values.tolist()
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(values)).max(0).tolist()


def gather_rows(x: np.ndarray, mesh) -> np.ndarray:
  """Small per-row host arrays of every row block, concatenated in block order, on every
  process (metrics over the global batch: rewards, lengths; never pixels)."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils

  # As bytes: jax would narrow float64 to float32 on the way.
  raw = np.ascontiguousarray(x).reshape(len(x), -1).view(np.uint8)
  got = np.asarray(multihost_utils.process_allgather(raw)).view(x.dtype)
  got = got.reshape((got.shape[0],) + x.shape)
  first = {}
  for process, (start, _) in sorted(_row_blocks(mesh).items()):
    first.setdefault(start, process)
  return np.concatenate([got[first[k]] for k in sorted(first)])
