"""Hugging Face Qwen2.5-VL and Qwen3-VL checkpoints <-> o3jax models, streaming tensor
by tensor.

The model is chosen by config.json's `model_type` (`qwen2_5_vl`, `qwen3_vl`, and `qwen2`
for the text-only judge); the names of its tensors by that family's `keys.KeyTable`,
whose `locate` and `hf_names` give `convert.stream` the mapping it moves the data by,
one tensor at a time (host memory: a few tensors, never the model).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.convert import stream
from o3jax.convert.keys import table_for
from o3jax.models.config import Qwen2_5_VLConfig, load_hf_config, to_hf_dict
from o3jax.models.qwen2_5_vl import Qwen2_5_VL
from o3jax.models import model_class


def ignored(config: Qwen2_5_VLConfig) -> Callable[[str], bool]:
  """o3jax paths a checkpoint may hold that the model does not: a tied head is the embedding."""
  return lambda path: path == "text.lm_head" and config.text.tie_word_embeddings


def _path_str(path) -> str:
  return ".".join(str(p) for p in path)


def abstract_model(
  config: Qwen2_5_VLConfig, dtype=jnp.float32, param_dtype=jnp.float32, remat: str | None = None
) -> Qwen2_5_VL:
  """`remat` (a policy name) overrides the config's."""
  config = config if remat is None else config.replace(remat=remat)
  cls = model_class(config)
  return nnx.eval_shape(lambda: cls(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))


def param_shapes(model: Qwen2_5_VL) -> stream.Shapes:
  """{o3jax path: (shape, dtype)} of the model's parameters (abstract or concrete)."""
  return {
    _path_str(p): (tuple(v.get_value().shape), np.dtype(v.get_value().dtype))
    for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
  }


def model_type(path: str) -> str:
  """config.json's model_type ("qwen2_5_vl" when absent)."""
  with open(os.path.join(path, "config.json")) as f:
    return json.load(f).get("model_type", "qwen2_5_vl")


def abstract_qwen2(config, dtype=jnp.float32, param_dtype=jnp.float32, remat: str | None = None):
  """`remat` (a policy name) overrides the config's."""
  import dataclasses

  from o3jax.models.qwen2 import Qwen2ForCausalLM

  config = config if remat is None else dataclasses.replace(config, remat=remat)
  return nnx.eval_shape(
    lambda: Qwen2ForCausalLM(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
  )


@functools.lru_cache(maxsize=None)
def _slice_setter(sharding):
  """A jitted in-place write of one layer into a stacked device array (donated, so the
  devices hold the stack once), compiled once per sharding and shape."""

  def set_layer(stack, value, layer):
    return jax.lax.dynamic_update_index_in_dim(stack, value.astype(stack.dtype), layer, 0)

  placed = {} if sharding is None else {"out_shardings": sharding}
  return jax.jit(set_layer, donate_argnums=0, **placed)


def _zeros(shape, dtype, sharding):
  """An array of zeros created on its devices (in its shards), never on the host."""
  make = lambda: jnp.zeros(shape, dtype)
  return make() if sharding is None else jax.jit(make, out_shardings=sharding)()


def _put(value: np.ndarray, sharding) -> jax.Array:
  """Host array -> device array: each device receives only its shard."""
  if sharding is None:
    return jax.device_put(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda i: value[i])


def _without_layers_axis(sharding):
  if sharding is None:
    return None
  spec = jax.sharding.PartitionSpec(*sharding.spec[1:])
  return jax.sharding.NamedSharding(sharding.mesh, spec)


def load_pretrained(
  path: str,
  dtype=jnp.float32,
  param_dtype=None,
  *,
  compute_dtype=None,
  mesh=None,
  rules=None,
  remat: str | None = None,
) -> Qwen2_5_VL:
  """A model with the weights of a Hugging Face directory, read tensor by tensor:
  `Qwen2_5_VL` for a qwen2_5_vl config, `Qwen3_VL` for a qwen3_vl one, `Qwen2ForCausalLM`
  (text only, the text rows of the Qwen2.5-VL table) for a qwen2 one.

  `dtype` is the parameter dtype (`param_dtype` overrides it); `compute_dtype` the
  activation dtype (default: the parameter dtype). Each tensor goes straight from the file
  to its devices (with `mesh`, to its shards by the logical axis rules of
  `o3jax.sharding`), so that the host holds one tensor at a time, never the model: a
  stacked array is created (zeros) on its devices and each layer's tensor is written into
  its slice there as it is read.
  """
  param_dtype = param_dtype or dtype
  if model_type(path) == "qwen2":
    from o3jax.models.qwen2 import load_qwen2_config

    config = load_qwen2_config(path)
    model = abstract_qwen2(config, compute_dtype or param_dtype, param_dtype, remat)
  else:
    config = load_hf_config(path)
    model = abstract_model(config, compute_dtype or param_dtype, param_dtype, remat)
  graphdef, state = nnx.split(model)
  flat = dict((_path_str(p), v) for p, v in nnx.to_flat_state(state))
  shardings = dict.fromkeys(flat)  # None: the default device
  if mesh is not None:
    from o3jax import sharding

    shard_state = sharding.state_shardings(state, mesh, rules or sharding.RULES)
    shardings = {_path_str(p): v.get_value() for p, v in nnx.to_flat_state(shard_state)}
  stacks: dict[str, jax.Array] = {}

  def put(target: str, index: int | None, value: np.ndarray) -> None:
    aval, where = flat[target].get_value(), shardings[target]
    value = value.astype(aval.dtype, copy=False)
    if index is None:
      flat[target] = flat[target].replace(_put(value, where))
      return
    if target not in stacks:
      stacks[target] = _zeros(aval.shape, aval.dtype, where)
    layer = _put(value, _without_layers_axis(where))
    stacks[target] = _slice_setter(where)(stacks[target], layer, np.int32(index))

  targets = {k: (tuple(v.get_value().shape), v.get_value().dtype) for k, v in flat.items()}
  locate = table_for(config).locate
  stream.read_hf(path, locate, targets, put, ignored(config), desc=f"loading {path}")
  for target, stack in stacks.items():
    flat[target] = flat[target].replace(stack)
  state = nnx.from_flat_state(
    [(tuple(int(p) if p.isdigit() else p for p in k.split(".")), v) for k, v in flat.items()]
  )
  return nnx.merge(graphdef, state)


def write_hf_dir(
  directory: str,
  config: Qwen2_5_VLConfig,
  params: stream.Shapes,
  fetch: Callable[[str, int | None], np.ndarray],
  dtype=None,
  max_shard_bytes: int = 4 << 30,
  desc: str | None = None,
) -> str:
  """config.json and safetensors shards (with an index beyond `max_shard_bytes`) that
  transformers' `Qwen2_5_VLForConditionalGeneration` / `Qwen3VLForConditionalGeneration`
  `.from_pretrained` loads, asking
  `fetch(path, index)` for one o3jax array (or one layer's slice of a stacked one) at a
  time. Returns the summary line."""
  tensors = stream.hf_tensors(params, table_for(config).hf_names, config, dtype)
  summary = stream.write_hf(
    directory, tensors, fetch, config, max_shard_bytes, desc=desc or f"writing {directory}"
  )
  hf_config = to_hf_dict(config)
  names = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}
  hf_config["torch_dtype"] = names.get(tensors[0].dtype, "bfloat16")
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=1)
  return summary


def save_pretrained(
  model: Qwen2_5_VL, path: str, dtype=None, max_shard_bytes: int = 4 << 30
) -> None:
  """Write a Hugging Face directory of `model` (see `write_hf_dir`), one array (one layer of
  a stacked array) at a time brought to the host."""
  flat = {_path_str(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}

  def fetch(path: str, index: int | None) -> np.ndarray:
    value = flat[path] if index is None else flat[path][index]
    return np.asarray(jax.device_get(value))

  write_hf_dir(path, model.config, param_shapes(model), fetch, dtype, max_shard_bytes)
