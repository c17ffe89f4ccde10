"""Hugging Face Qwen2.5-VL checkpoints <-> o3jax models, streaming tensor by tensor.

`TABLE` is the single list of key patterns: each row is (Hugging Face key regex,
o3jax parameter path template, transform). Loading matches a file key against the regex
and applies `transform.to_o3jax`; saving formats the Hugging Face key from the o3jax path
and applies `transform.to_hf`. Keys are accepted in both on-disk conventions: released
checkpoints (`visual.*`, `model.*`) and transformers 5.x (`model.visual.*`,
`model.language_model.*`); saving writes the released convention, which both read.
`locate` and `hf_names` give the table to `convert.stream`, which moves the data one
tensor at a time (host memory: a few tensors, never the model).
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.convert import stream
from o3jax.models.config import Qwen2_5_VLConfig, load_hf_config, to_hf_dict
from o3jax.models.qwen2_5_vl import Qwen2_5_VL


class Transform(NamedTuple):
  to_o3jax: Callable  # (hf array, o3jax shape) -> o3jax array
  to_hf: Callable  # (o3jax array, config) -> hf array


IDENTITY = Transform(lambda w, shape: w.reshape(shape), lambda k, cfg: k)
# nn.Linear weight [out, in] -> kernel [in, ...out split into heads...].
LINEAR_IN = Transform(
  lambda w, shape: w.T.reshape(shape), lambda k, cfg: k.reshape(k.shape[0], -1).T
)
# Output projection over heads: weight [out, n*h] -> kernel [n, h, out].
LINEAR_OUT = Transform(
  lambda w, shape: w.T.reshape(shape), lambda k, cfg: k.reshape(-1, k.shape[-1]).T
)
BIAS = Transform(lambda w, shape: w.reshape(shape), lambda k, cfg: k.reshape(-1))
# Conv3d weight [D, C, T, p, p] with stride == kernel -> linear kernel [C*T*p*p, D].
PATCH = Transform(
  lambda w, shape: w.reshape(w.shape[0], -1).T,
  lambda k, cfg: k.T.reshape(
    k.shape[1],
    cfg.vision.in_channels,
    cfg.vision.temporal_patch_size,
    cfg.vision.patch_size,
    cfg.vision.patch_size,
  ),
)

_V = r"visual\.blocks\.(\d+)\."
_L = r"model\.layers\.(\d+)\."
TABLE: list[tuple[str, str, Transform]] = [
  (r"visual\.patch_embed\.proj\.weight", "visual.patch_kernel", PATCH),
  (_V + r"norm1\.weight", "visual.blocks.{0}.norm1.scale", IDENTITY),
  (_V + r"norm2\.weight", "visual.blocks.{0}.norm2.scale", IDENTITY),
  (_V + r"attn\.qkv\.weight", "visual.blocks.{0}.attn.qkv_kernel", LINEAR_IN),
  (_V + r"attn\.qkv\.bias", "visual.blocks.{0}.attn.qkv_bias", BIAS),
  (_V + r"attn\.proj\.weight", "visual.blocks.{0}.attn.out_kernel", LINEAR_OUT),
  (_V + r"attn\.proj\.bias", "visual.blocks.{0}.attn.out_bias", BIAS),
  (_V + r"mlp\.gate_proj\.weight", "visual.blocks.{0}.mlp.gate_kernel", LINEAR_IN),
  (_V + r"mlp\.gate_proj\.bias", "visual.blocks.{0}.mlp.gate_bias", BIAS),
  (_V + r"mlp\.up_proj\.weight", "visual.blocks.{0}.mlp.up_kernel", LINEAR_IN),
  (_V + r"mlp\.up_proj\.bias", "visual.blocks.{0}.mlp.up_bias", BIAS),
  (_V + r"mlp\.down_proj\.weight", "visual.blocks.{0}.mlp.down_kernel", LINEAR_IN),
  (_V + r"mlp\.down_proj\.bias", "visual.blocks.{0}.mlp.down_bias", BIAS),
  (r"visual\.merger\.ln_q\.weight", "visual.merger.norm.scale", IDENTITY),
  (r"visual\.merger\.mlp\.0\.weight", "visual.merger.fc1_kernel", LINEAR_IN),
  (r"visual\.merger\.mlp\.0\.bias", "visual.merger.fc1_bias", BIAS),
  (r"visual\.merger\.mlp\.2\.weight", "visual.merger.fc2_kernel", LINEAR_IN),
  (r"visual\.merger\.mlp\.2\.bias", "visual.merger.fc2_bias", BIAS),
  (r"model\.embed_tokens\.weight", "text.embed", IDENTITY),
  (_L + r"input_layernorm\.weight", "text.layers.{0}.input_norm.scale", IDENTITY),
  (_L + r"post_attention_layernorm\.weight", "text.layers.{0}.post_attn_norm.scale", IDENTITY),
  (_L + r"self_attn\.q_proj\.weight", "text.layers.{0}.attn.q_kernel", LINEAR_IN),
  (_L + r"self_attn\.q_proj\.bias", "text.layers.{0}.attn.q_bias", BIAS),
  (_L + r"self_attn\.k_proj\.weight", "text.layers.{0}.attn.k_kernel", LINEAR_IN),
  (_L + r"self_attn\.k_proj\.bias", "text.layers.{0}.attn.k_bias", BIAS),
  (_L + r"self_attn\.v_proj\.weight", "text.layers.{0}.attn.v_kernel", LINEAR_IN),
  (_L + r"self_attn\.v_proj\.bias", "text.layers.{0}.attn.v_bias", BIAS),
  (_L + r"self_attn\.o_proj\.weight", "text.layers.{0}.attn.o_kernel", LINEAR_OUT),
  (_L + r"mlp\.gate_proj\.weight", "text.layers.{0}.mlp.gate_kernel", LINEAR_IN),
  (_L + r"mlp\.up_proj\.weight", "text.layers.{0}.mlp.up_kernel", LINEAR_IN),
  (_L + r"mlp\.down_proj\.weight", "text.layers.{0}.mlp.down_kernel", LINEAR_IN),
  (r"model\.norm\.weight", "text.norm.scale", IDENTITY),
  (r"lm_head\.weight", "text.lm_head", LINEAR_IN),
]
_COMPILED = [(re.compile(k + "$"), path, tf) for k, path, tf in TABLE]
# o3jax path template -> (hf key template, transform), for saving.
_REVERSE = [
  (re.compile(re.escape(path).replace(r"\{0\}", r"(\d+)") + "$"), key, tf)
  for key, path, tf in TABLE
]


def canonical_key(key: str) -> str:
  """transformers 5.x names -> the released-checkpoint names used by TABLE."""
  if key.startswith("model.visual."):
    return key[len("model.") :]
  if key.startswith("model.language_model."):
    return "model." + key[len("model.language_model.") :]
  return key


def hf_to_o3jax_key(key: str) -> tuple[str, Transform] | None:
  key = canonical_key(key)
  for rx, path, tf in _COMPILED:
    mt = rx.match(key)
    if mt:
      return path.format(*mt.groups()), tf
  return None


def o3jax_to_hf_key(path: str) -> tuple[str, Transform]:
  for rx, key, tf in _REVERSE:
    mt = rx.match(path)
    if mt:
      hf = key.replace(r"(\d+)", "{0}").replace("\\", "")
      return hf.format(*mt.groups()), tf
  raise KeyError(f"o3jax parameter {path} has no Hugging Face name in TABLE")


# Stacked layers: TABLE names one layer's parameter ("text.layers.3.attn.q_kernel"); the
# model holds all layers of a kind in one array with a leading layers axis
# ("text.layers.attn.q_kernel"), so one Hugging Face tensor is one slice of that array.
_STACKS = sorted({path.split(".{0}.")[0] for _, path, _ in TABLE if ".{0}." in path})
_PREFIX = "|".join(re.escape(s) for s in _STACKS)
_LAYER = re.compile(rf"^({_PREFIX})\.(\d+)\.(.+)$")
_STACK = re.compile(rf"^({_PREFIX})\.([^\d].*)$")


def is_stacked(path: str) -> bool:
  """Whether o3jax array `path` stacks one slice per layer along its first axis."""
  return _STACK.match(path) is not None


def stacked_path(path: str) -> tuple[str, int | None]:
  """One layer's path -> (the model's stacked path, layer index); other paths unchanged."""
  m = _LAYER.match(path)
  return (f"{m[1]}.{m[3]}", int(m[2])) if m else (path, None)


def layer_paths(path: str, shape: tuple[int, ...]) -> list[tuple[str, int | None]]:
  """(one layer's path, index) for each slice of a stacked array; [(path, None)] otherwise."""
  m = _STACK.match(path)
  if not m:
    return [(path, None)]
  return [(f"{m[1]}.{i}.{m[2]}", i) for i in range(shape[0])]


def locate(key: str) -> tuple[str, int | None, Transform] | None:
  """The o3jax slot of a Hugging Face tensor: (array path, layer index or None, transform);
  None if unknown."""
  found = hf_to_o3jax_key(key)
  return None if found is None else (*stacked_path(found[0]), found[1])


def hf_names(path: str, shape: tuple[int, ...]) -> list[tuple[str, int | None, Transform]]:
  """The Hugging Face tensors of o3jax array `path`: one per layer of a stacked array, else
  one covering all of it."""
  out = []
  for one, index in layer_paths(path, shape):
    key, tf = o3jax_to_hf_key(one)
    out.append((key, index, tf))
  return out


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
  return nnx.eval_shape(
    lambda: Qwen2_5_VL(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
  )


def param_shapes(model: Qwen2_5_VL) -> stream.Shapes:
  """{o3jax path: (shape, dtype)} of the model's parameters (abstract or concrete)."""
  return {
    _path_str(p): (tuple(v.get_value().shape), np.dtype(v.get_value().dtype))
    for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
  }


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


def model_type(path: str) -> str:
  """config.json's model_type ("qwen2_5_vl" when absent)."""
  with open(os.path.join(path, "config.json")) as f:
    return json.load(f).get("model_type", "qwen2_5_vl")


def abstract_qwen2(config, dtype=jnp.float32, param_dtype=jnp.float32, remat: bool = False):
  from o3jax.models.qwen2 import Qwen2ForCausalLM

  return nnx.eval_shape(
    lambda: Qwen2ForCausalLM(
      config, dtype=dtype, param_dtype=param_dtype, remat=remat, rngs=nnx.Rngs(0)
    )
  )


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
  `Qwen2_5_VL` for a qwen2_5_vl config, `Qwen2ForCausalLM` (text only, the text rows of
  TABLE) for a qwen2 one.

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
  `transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained` loads, asking
  `fetch(path, index)` for one o3jax array (or one layer's slice of a stacked one) at a
  time. Returns the summary line."""
  tensors = stream.hf_tensors(params, hf_names, config, dtype)
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
