"""Train state (step, params, optimizer state), initialised under jit on the mesh.

The model graph (`graphdef`) is static; only arrays live in the state. Shardings come
from the parameters' logical axes (`o3jax.sharding.RULES`); the AdamW moments mirror the
parameter tree and so inherit the same shardings.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from o3jax import sharding
from o3jax.models import model_class
from o3jax.models.config import Qwen2_5_VLConfig


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any  # nnx.State of the model's Params (fp32 master weights)
  opt_state: Any


def dtype_of(name: str):
  try:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]
  except KeyError:
    raise ValueError(f"unknown dtype {name!r}: float32, bfloat16 or float16") from None


def build_model(config: Qwen2_5_VLConfig, key, compute_dtype=jnp.float32, remat=None):
  """`remat` (a policy name, see models.layers) overrides the config's."""
  if remat is not None:
    config = config.replace(remat=remat)
  cls = model_class(config)  # Qwen2.5-VL or Qwen3-VL
  return cls(config, dtype=compute_dtype, param_dtype=jnp.float32, rngs=nnx.Rngs(key))


def abstract_split(config: Qwen2_5_VLConfig, compute_dtype=jnp.float32, remat=None):
  """(graphdef, abstract params) without allocating any weights."""
  model = nnx.eval_shape(lambda: build_model(config, jax.random.key(0), compute_dtype, remat))
  return nnx.split(model)


def _shard_and_jit(init, args, mesh):
  abstract = jax.eval_shape(init, *args)
  shardings = sharding.state_shardings(abstract, mesh)
  with sharding.use_mesh(mesh):
    state = jax.jit(init, out_shardings=shardings)(*args)
  return state, shardings


def random_init_fn(config, tx: optax.GradientTransformation, compute_dtype=jnp.float32, remat=None):
  """init(key) -> a fresh TrainState (to jit, or to eval_shape for its abstract shape)."""

  def init(key):
    params = nnx.state(build_model(config, key, compute_dtype, remat), nnx.Param)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  return init


def abstract_state(config, tx, mesh, compute_dtype=jnp.float32, remat=None):
  """(graphdef, abstract TrainState, its shardings on `mesh`) without allocating anything."""
  graphdef, _ = abstract_split(config, compute_dtype, remat)
  init = random_init_fn(config, tx, compute_dtype, remat)
  abstract = jax.eval_shape(init, jax.random.key(0))
  return graphdef, abstract, sharding.state_shardings(abstract, mesh)


def init_random(
  config, tx: optax.GradientTransformation, mesh, seed: int, compute_dtype=jnp.float32, remat=None
):
  """Fresh weights, created directly in their shards by one jitted init (layers stacked, so
  its compile does not grow with depth). Returns (graphdef, state, shardings)."""
  graphdef, _ = abstract_split(config, compute_dtype, remat)
  init = random_init_fn(config, tx, compute_dtype, remat)
  state, shardings = _shard_and_jit(init, (jax.random.key(seed),), mesh)
  return graphdef, state, shardings


def init_from_params(params, tx: optax.GradientTransformation, mesh):
  """A state around given params (e.g. loaded from Hugging Face). Returns (state, shardings)."""

  def init(p):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p))

  return _shard_and_jit(init, (params,), mesh)
