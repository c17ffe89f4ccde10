"""Logical axis names -> mesh axes (data, fsdp, tensor): the one rules table.

Every parameter is created with `logical_axes` metadata (see `models/layers.py`).
`RULES` maps each logical name to a mesh axis (or a tuple of them, or None). A logical
axis is left replicated when its size does not divide by the mesh axes it maps to, or
when an earlier dimension of the same array already took that mesh axis.

Activations are constrained at block boundaries only, through `constrain`, which does
nothing unless a mesh was activated with `use_mesh`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Iterator

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
  ("batch", ("data", "fsdp")),
  ("length", None),
  ("layers", None),  # the stacked-layer axis: each device holds its shard of every layer
  ("vocab", "tensor"),
  ("embed", "fsdp"),
  ("mlp", "tensor"),
  ("heads", "tensor"),
  ("kv_heads", "tensor"),
  ("head_dim", None),
  ("patch", None),
  ("vision_embed", "fsdp"),
  ("vision_mlp", "tensor"),
  ("vision_heads", "tensor"),
  ("vision_merge", "fsdp"),
)


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  need = data * fsdp * tensor
  if need != len(devices):
    raise ValueError(
      f"mesh data={data} x fsdp={fsdp} x tensor={tensor} = {need} devices, "
      f"but {len(devices)} are available"
    )
  return Mesh(np.asarray(devices).reshape(data, fsdp, tensor), MESH_AXES)


def logical_to_spec(axes, shape, mesh: Mesh, rules=RULES) -> P:
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, size in zip(axes, shape):
    target = table.get(name) if name is not None else None
    if target is None:
      spec.append(None)
      continue
    targets = (target,) if isinstance(target, str) else tuple(target)
    targets = tuple(a for a in targets if a not in used and mesh.shape.get(a, 1) > 1)
    ways = math.prod(mesh.shape[a] for a in targets)
    if not targets or size % ways:
      spec.append(None)
      continue
    used.update(targets)
    spec.append(targets[0] if len(targets) == 1 else targets)
  return P(*spec)


def _is_var(x) -> bool:
  return isinstance(x, nnx.Variable)


def state_shardings(state, mesh: Mesh, rules=RULES):
  """NamedSharding for every leaf of an nnx State (abstract or concrete).

  Variables without `logical_axes` metadata (optimizer counters, RNG state) are
  replicated. The result has the State's tree structure, for jit in/out shardings.
  """

  def one(v):
    if not _is_var(v):
      return NamedSharding(mesh, P())
    axes = v.get_metadata().get("logical_axes")
    shape = np.shape(v.get_value())
    spec = (
      P() if axes is None or len(axes) != len(shape) else logical_to_spec(axes, shape, mesh, rules)
    )
    return v.replace(NamedSharding(mesh, spec))

  return jax.tree.map(one, state, is_leaf=_is_var)


_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("o3jax_mesh", default=None)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules=RULES) -> Iterator[None]:
  """Within this context (while tracing), `constrain` pins activations to `mesh`."""
  token = _ACTIVE.set((mesh, rules))
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def constrain(x: jax.Array, axes: tuple) -> jax.Array:
  active = _ACTIVE.get()
  if active is None:
    return x
  mesh, rules = active
  return jax.lax.with_sharding_constraint(
    x, NamedSharding(mesh, logical_to_spec(axes, x.shape, mesh, rules))
  )
