"""Hugging Face Qwen2.5-VL checkpoints <-> o3jax models, streaming tensor by tensor.

`TABLE` is the single list of key patterns: each row is (Hugging Face key regex,
o3jax parameter path template, transform). Loading matches a file key against the regex
and applies `transform.to_o3jax`; saving formats the Hugging Face key from the o3jax path
and applies `transform.to_hf`. Keys are accepted in both on-disk conventions: released
checkpoints (`visual.*`, `model.*`) and transformers 5.x (`model.visual.*`,
`model.language_model.*`); saving writes the released convention, which both read.
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.convert import safetensors_io
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


def _path_str(path) -> str:
  return ".".join(str(p) for p in path)


def _weight_files(directory: str) -> list[str]:
  index = os.path.join(directory, "model.safetensors.index.json")
  if os.path.exists(index):
    with open(index) as f:
      files = sorted(set(json.load(f)["weight_map"].values()))
    return [os.path.join(directory, name) for name in files]
  single = os.path.join(directory, "model.safetensors")
  if os.path.exists(single):
    return [single]
  raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json")


def abstract_model(
  config: Qwen2_5_VLConfig, dtype=jnp.float32, param_dtype=jnp.float32, remat: bool = False
) -> Qwen2_5_VL:
  return nnx.eval_shape(
    lambda: Qwen2_5_VL(config, dtype=dtype, param_dtype=param_dtype, remat=remat, rngs=nnx.Rngs(0))
  )


def load_pretrained(
  path: str,
  dtype=jnp.float32,
  param_dtype=None,
  *,
  compute_dtype=None,
  mesh=None,
  rules=None,
  remat: bool = False,
) -> Qwen2_5_VL:
  """A model with the weights of a Hugging Face directory, read tensor by tensor.

  `dtype` is the parameter dtype (`param_dtype` overrides it); `compute_dtype` the
  activation dtype (default: the parameter dtype). With `mesh`, each tensor is placed
  straight onto its shard of the mesh (the logical axis rules of `o3jax.sharding`).
  """
  param_dtype = param_dtype or dtype
  config = load_hf_config(path)
  model = abstract_model(config, compute_dtype or param_dtype, param_dtype, remat)
  graphdef, state = nnx.split(model)
  flat = dict((_path_str(p), v) for p, v in nnx.to_flat_state(state))
  shardings = None
  if mesh is not None:
    from o3jax import sharding

    shard_state = sharding.state_shardings(state, mesh, rules or sharding.RULES)
    shardings = {_path_str(p): v.get_value() for p, v in nnx.to_flat_state(shard_state)}
  filled: set[str] = set()
  for file in _weight_files(path):
    for key, array in safetensors_io.iter_tensors(file):
      found = hf_to_o3jax_key(key)
      if found is None:
        raise KeyError(f"{file}: tensor {key} is not a Qwen2.5-VL parameter")
      target, tf = found
      if target == "text.lm_head" and config.text.tie_word_embeddings:
        continue  # tied: the head is the embedding
      if target not in flat:
        raise KeyError(f"{file}: tensor {key} maps to {target}, absent from the model")
      var = flat[target]
      value = _converted(file, key, array, tf, var.get_value().shape, var.get_value().dtype)
      value = jax.device_put(value, shardings[target]) if shardings else jnp.asarray(value)
      flat[target] = var.replace(value)
      filled.add(target)
  missing = sorted(set(flat) - filled)
  if missing:
    raise KeyError(f"{path}: checkpoint lacks {len(missing)} parameters, e.g. {missing[:5]}")
  state = nnx.from_flat_state(
    [(tuple(int(p) if p.isdigit() else p for p in k.split(".")), v) for k, v in flat.items()]
  )
  return nnx.merge(graphdef, state)


def _converted(file: str, key: str, array, tf: Transform, shape, dtype):
  """A Hugging Face tensor in o3jax layout; a shape that does not fit the model (a
  config.json not matching the weights) names the tensor and both shapes."""
  expected = int(np.prod(shape))
  if array.size != expected:
    raise ValueError(
      f"{file}: tensor {key} has shape {tuple(array.shape)}; the model built from "
      f"config.json expects {expected} values (o3jax shape {tuple(shape)})"
    )
  return tf.to_o3jax(array, shape).astype(dtype)


def save_pretrained(
  model: Qwen2_5_VL, path: str, dtype=None, max_shard_bytes: int = 4 << 30
) -> None:
  """Write config.json and safetensors (sharded with an index beyond `max_shard_bytes`)
  that `transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained` loads."""
  os.makedirs(path, exist_ok=True)
  config = model.config
  hf_config = to_hf_dict(config)
  _, state = nnx.split(model)
  entries = []  # (hf key, o3jax variable, transform)
  for p, var in nnx.to_flat_state(state):
    if not isinstance(var, nnx.Param):
      continue
    key, tf = o3jax_to_hf_key(_path_str(p))
    entries.append((key, var, tf))

  def hf_array(var, tf):
    return np.asarray(tf.to_hf(np.asarray(jax.device_get(var.get_value())), config))

  specs = []
  for key, var, tf in entries:
    # Shapes of the HF tensor without materialising it: transform a zero-strided view.
    probe = tf.to_hf(np.broadcast_to(np.zeros((), np.float32), var.get_value().shape), config)
    out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(var.get_value().dtype)
    specs.append((key, tuple(probe.shape), out_dtype))
  if dtype is not None:
    hf_config["torch_dtype"] = {
      np.dtype(np.float32): "float32",
      np.dtype(np.float16): "float16",
    }.get(np.dtype(dtype), "bfloat16")
  else:
    hf_config["torch_dtype"] = str(np.dtype(entries[0][1].get_value().dtype))
  by_key = {key: (var, tf) for key, var, tf in entries}
  shards, current, size = [], [], 0
  for spec in specs:
    nbytes = int(np.prod(spec[1])) * spec[2].itemsize
    if current and size + nbytes > max_shard_bytes:
      shards.append(current)
      current, size = [], 0
    current.append(spec)
    size += nbytes
  shards.append(current)
  names = (
    ["model.safetensors"]
    if len(shards) == 1
    else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
  )
  for name, shard in zip(names, shards):
    safetensors_io.write_file(
      os.path.join(path, name), shard, lambda key: hf_array(*by_key[key]), metadata={"format": "pt"}
    )
  if len(shards) > 1:
    weight_map = {spec[0]: name for name, shard in zip(names, shards) for spec in shard}
    total = sum(int(np.prod(s[1])) * s[2].itemsize for s in specs)
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=1)
