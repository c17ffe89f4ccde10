"""Building blocks shared by the vision tower and the text decoder.

Layers of one kind are stacked (`stacked`: every parameter gains a leading "layers" axis)
and run under `jax.lax.scan` (`scan_layers`), so the graph, and the compile time, do not
grow with depth; `scan_layers` also applies the remat policy named in the model config.

Parameters are created with `param(...)`, which attaches logical axis names (see
`o3jax/sharding.py` for the rules that map them onto the mesh). Weights are kept in
`param_dtype` and cast to the compute `dtype` where they are used, so bf16 compute runs
on fp32 master weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

REMAT_POLICIES = ("none", "full", "dots", "offload")

INIT_STD = 0.02  # transformers' initializer_range


def param(rngs: nnx.Rngs, shape, axes: tuple, dtype, init: str = "normal") -> nnx.Param:
  if len(shape) != len(axes):
    raise ValueError(f"shape {shape} and logical axes {axes} differ in rank")
  if init == "normal":
    value = INIT_STD * jax.random.normal(rngs.params(), shape, dtype)
  elif init == "zeros":
    value = jnp.zeros(shape, dtype)
  elif init == "ones":
    value = jnp.ones(shape, dtype)
  else:
    raise ValueError(f"unknown init {init!r}")
  return nnx.Param(value, logical_axes=tuple(axes))


class RMSNorm(nnx.Module):
  def __init__(self, dim: int, axis_name: str, eps: float, *, param_dtype, rngs: nnx.Rngs):
    self.scale = param(rngs, (dim,), (axis_name,), param_dtype, "ones")
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    # As the reference: normalise in fp32, cast back, then scale in the input dtype.
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return self.scale[...].astype(x.dtype) * xf.astype(x.dtype)


def rotate_half(x: jax.Array) -> jax.Array:
  x1, x2 = jnp.split(x, 2, axis=-1)
  return jnp.concatenate([-x2, x1], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  return x * cos + rotate_half(x) * sin


def inverse_frequencies(dim: int, theta: float) -> jax.Array:
  """theta^(-2i/dim) for i < dim/2, computed in fp32 like the reference."""
  return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def remat_policy(name: str):
  """jax.checkpoint policy of a config name; "none" keeps every activation (no remat)."""
  policies = jax.checkpoint_policies
  table = {
    "full": policies.nothing_saveable,
    "dots": policies.dots_with_no_batch_dims_saveable,
    # Saves the matmul outputs to host memory, where XLA offers it (GPU, TPU).
    "offload": policies.offload_dot_with_no_batch_dims("device", "pinned_host"),
  }
  if name not in REMAT_POLICIES:
    raise ValueError(f"unknown remat policy {name!r}; known: {REMAT_POLICIES}")
  return table.get(name)


def stacked(make, count: int, rngs: nnx.Rngs):
  """`count` layers made by `make(rngs)`, as one module whose parameters are stacked on a
  leading axis with logical name "layers" (replicated by the sharding rules)."""

  @nnx.split_rngs(splits=count)
  @nnx.vmap(
    in_axes=0,
    out_axes=0,
    transform_metadata={nnx.PARTITION_NAME: "layers", "logical_axes": "layers"},
  )
  def create(rngs):
    return make(rngs)

  return create(rngs)


def unstacked_rank(var: nnx.Variable) -> int:
  """Rank of one layer's parameter: a stacked parameter's "layers" axis not counted (so a
  stacked norm scale is a vector, a stacked kernel a matrix)."""
  axes = var.get_metadata().get("logical_axes") or ()
  return len(var.get_value().shape) - int("layers" in axes)


def layer_at(layers: nnx.Module, i: int) -> nnx.Module:
  """Layer i of a `stacked` module, as a module of its own (analysis, tests)."""
  graphdef, state = nnx.split(layers)
  return nnx.merge(graphdef, jax.tree.map(lambda x: x[i], state))


def scan_layers(layers: nnx.Module, step, carry, xs, remat: str = "none"):
  """carry = step(layer, carry, x) over the stacked layers and the rows of `xs` (a pytree
  with a leading layers axis, e.g. the layer index), under jax.lax.scan."""
  graphdef, state = nnx.split(layers)

  def body(carry, inputs):
    layer_state, x = inputs
    return step(nnx.merge(graphdef, layer_state), carry, x), None

  if remat != "none":
    body = jax.checkpoint(body, policy=remat_policy(remat), prevent_cse=False)
  carry, _ = jax.lax.scan(body, carry, (state, xs))
  return carry
