"""Orbax checkpoints of the train state and the data iterator, together, asynchronously.

Layout: `WORKDIR/checkpoints/<step>/{state,data}`. Orbax writes a step into a temporary
directory and renames it only when every item is complete, and `latest_step()` lists
finalised steps only, so a half-written checkpoint (a run killed mid-save) is never
loaded. The data item is grain's per-process iterator state (one JSON file per host).
"""

from __future__ import annotations

import json
import os

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp


class _IteratorSnapshot:
  """The iterator state captured at save time, so that the asynchronous write cannot see
  batches drawn after the step it belongs to."""

  def __init__(self, state):
    self._state = json.dumps(state).encode() if isinstance(state, dict) else state

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:
  def __init__(self, workdir: str, keep: int = 3, asynchronous: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous
    )
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={
        "state": ocp.StandardCheckpointHandler(),
        "data": grain.checkpoint.CheckpointHandler(),
      },
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator=None) -> None:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator.get_state()))
    self.manager.save(step, args=ocp.args.Composite(**items))

  def restore(self, step: int, abstract_state, shardings, data_iterator=None):
    """State restored straight into `shardings`; the iterator's position set in place."""
    target = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
    )
    items = {"state": ocp.args.StandardRestore(target)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    return self.manager.restore(step, args=ocp.args.Composite(**items))["state"]

  def read_params(self, step: int) -> dict[str, object]:
    """The params of a checkpoint as {dotted path: host array}, whatever its optimizer and
    whatever the devices and processes that saved it."""
    # Numpy targets (zero-strided: nothing allocated) restore as numpy; without a target
    # orbax would rebuild the saved shardings, which fails on another topology.
    metadata = self.manager.item_metadata(step)["state"].tree
    target = jax.tree.map(lambda m: np.broadcast_to(np.zeros((), m.dtype), m.shape), metadata)
    raw = self.manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )
    flat = jax.tree_util.tree_flatten_with_path(raw["state"]["params"])[0]
    out = {}
    for path, value in flat:
      keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
      if keys[-1] == "value":  # a Variable is stored as {"value": array}
        keys = keys[:-1]
      out[".".join(keys)] = value
    return out

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
