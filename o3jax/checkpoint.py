"""Orbax checkpoints of the train state and the data iterator, together, asynchronously.

Layout: `WORKDIR/checkpoints/<step>/{state,data}`. Orbax writes a step into a temporary
directory and renames it only when every item is complete, and `latest_step()` lists
finalised steps only, so a half-written checkpoint (a run killed mid-save) is never
loaded. The data item is grain's per-process iterator state (one JSON file per host).

A finalised checkpoint can still be damaged afterwards (a full disk, a copy cut short):
`restore_newest` and `read_newest_params` then fall back to the newest intact one, naming
the file that is bad (`damage`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

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


def _barriers_off_the_devices() -> None:
  """Orbax's default barrier between processes is a device collective (jax's
  `sync_global_devices`), which its asynchronous save runs from a background thread,
  concurrently with the training loop's own collectives: the processes can then pair
  different collectives (on CPU/gloo: "Received data size doesn't match expected size",
  elsewhere a hang). Its barrier through the `jax.distributed` coordination service
  touches no device."""
  if jax.process_count() == 1:
    return
  from absl import flags

  flags.FLAGS(["o3jax", "--experimental_orbax_use_distributed_barrier"], known_only=True)


class Checkpointer:
  def __init__(self, workdir: str, keep: int = 3, asynchronous: bool = True):
    _barriers_off_the_devices()
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

  def steps(self) -> list[int]:
    """Finalised steps, newest first."""
    return sorted(self.manager.all_steps(), reverse=True)

  def damage(self, step: int) -> tuple[str, str] | None:
    """(file, what is wrong) for the first metadata file of a checkpoint that is not
    valid JSON; None when they all read."""
    root = os.path.join(self.directory, str(step))
    for folder, _, names in sorted(os.walk(root)):
      for name in sorted(names):
        path = os.path.join(folder, name)
        if name.startswith("_") or name.endswith(".json") or "array_metadatas" in folder:
          try:
            with open(path, encoding="utf-8") as f:
              json.load(f)
          except (ValueError, OSError) as e:
            return path, _one_line(e)
    return None

  def _attempt(self, step: int, load):
    """(load(step), None), or (None, (file, error)) for a damaged checkpoint. Its metadata
    is read first, so that orbax never starts on a broken file (its failed asynchronous
    reads spill tracebacks from other threads); damage to the array data itself shows as
    orbax's error, named by the checkpoint's directory."""
    damage = self.damage(step)
    if damage is None:
      try:
        return load(step), None
      except Exception as e:  # noqa: BLE001 (orbax raises many kinds on a damaged file)
        damage = os.path.join(self.directory, str(step)), _one_line(e)
    print(
      f"checkpoint {step} is damaged ({damage[0]}): {damage[1]}; trying an older one",
      file=sys.stderr,
    )
    return None, damage

  def restore_newest(self, abstract_state, shardings, data_iterator=None):
    """(step, state) of the newest checkpoint that restores. Damaged newer ones are named
    and moved to `WORKDIR/corrupt_checkpoints/`, so that the steps they held can be saved
    again; if none restores, the newest one's damage is raised."""
    failed = []
    for step in self.steps():
      state, damage = self._attempt(
        step, lambda s: self.restore(s, abstract_state, shardings, data_iterator)
      )
      if damage is None:
        self._set_aside([s for s, _ in failed])
        return step, state
      failed.append((step, damage))
    raise CorruptCheckpoint(f"no checkpoint in {self.directory} restores; newest: "
                            f"{failed[0][1][0]}: {failed[0][1][1]}")  # fmt: skip

  def read_newest_params(self) -> tuple[int, dict[str, object]]:
    """(step, params) of the newest checkpoint whose params read (`read_params`)."""
    first = None
    for step in self.steps():
      params, damage = self._attempt(step, self.read_params)
      if damage is None:
        return step, params
      first = first or damage
    if first is None:
      raise FileNotFoundError(f"{self.directory}: no complete checkpoint")
    raise CorruptCheckpoint(f"no checkpoint in {self.directory} reads; newest: "
                            f"{first[0]}: {first[1]}")  # fmt: skip

  def _set_aside(self, steps: list[int]) -> None:
    if not steps or jax.process_index() != 0:
      return
    aside = os.path.join(os.path.dirname(self.directory), "corrupt_checkpoints")
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      target = os.path.join(aside, str(step))
      shutil.rmtree(target, ignore_errors=True)
      os.replace(os.path.join(self.directory, str(step)), target)
      print(f"checkpoint {step} moved to {target}", file=sys.stderr)
    self.manager.reload()

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


class CorruptCheckpoint(RuntimeError):
  pass


def _one_line(error: Exception) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:300]}"
