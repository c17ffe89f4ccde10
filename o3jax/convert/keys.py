"""Hugging Face tensor names <-> o3jax parameter paths, one `KeyTable` per model family.

A table is a list of rows (Hugging Face key regex, o3jax parameter path template,
transform). Loading matches a file key against the regex and applies
`transform.to_o3jax`; saving formats the Hugging Face key from the o3jax path and applies
`transform.to_hf`. Rows are written in the released Qwen2.5-VL names (`visual.*`,
`model.*`); transformers 5.x names (`model.visual.*`, `model.language_model.*`) are read
too, and a table saves in its family's released convention (`save_names`).

Stacked layers: a row names one layer's parameter ("text.layers.3.attn.q_kernel"); the
model holds all layers of a kind in one array with a leading layers axis
("text.layers.attn.q_kernel"), so one Hugging Face tensor is one slice of that array.
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple


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
_D = r"visual\.deepstack_merger_list\.(\d+)\."
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

QWEN3_VL_TABLE: list[tuple[str, str, Transform]] = [
  (r"visual\.patch_embed\.proj\.weight", "visual.patch.kernel", PATCH),
  (r"visual\.patch_embed\.proj\.bias", "visual.patch.bias", BIAS),
  (r"visual\.pos_embed\.weight", "visual.pos_embed", IDENTITY),
  (_V + r"norm1\.weight", "visual.blocks.{0}.norm1.scale", IDENTITY),
  (_V + r"norm1\.bias", "visual.blocks.{0}.norm1.bias", BIAS),
  (_V + r"norm2\.weight", "visual.blocks.{0}.norm2.scale", IDENTITY),
  (_V + r"norm2\.bias", "visual.blocks.{0}.norm2.bias", BIAS),
  (_V + r"attn\.qkv\.weight", "visual.blocks.{0}.attn.qkv_kernel", LINEAR_IN),
  (_V + r"attn\.qkv\.bias", "visual.blocks.{0}.attn.qkv_bias", BIAS),
  (_V + r"attn\.proj\.weight", "visual.blocks.{0}.attn.out_kernel", LINEAR_OUT),
  (_V + r"attn\.proj\.bias", "visual.blocks.{0}.attn.out_bias", BIAS),
  (_V + r"mlp\.linear_fc1\.weight", "visual.blocks.{0}.mlp.fc1.kernel", LINEAR_IN),
  (_V + r"mlp\.linear_fc1\.bias", "visual.blocks.{0}.mlp.fc1.bias", BIAS),
  (_V + r"mlp\.linear_fc2\.weight", "visual.blocks.{0}.mlp.fc2.kernel", LINEAR_IN),
  (_V + r"mlp\.linear_fc2\.bias", "visual.blocks.{0}.mlp.fc2.bias", BIAS),
  (r"visual\.merger\.norm\.weight", "visual.merger.norm.scale", IDENTITY),
  (r"visual\.merger\.norm\.bias", "visual.merger.norm.bias", BIAS),
  (r"visual\.merger\.linear_fc1\.weight", "visual.merger.fc1.kernel", LINEAR_IN),
  (r"visual\.merger\.linear_fc1\.bias", "visual.merger.fc1.bias", BIAS),
  (r"visual\.merger\.linear_fc2\.weight", "visual.merger.fc2.kernel", LINEAR_IN),
  (r"visual\.merger\.linear_fc2\.bias", "visual.merger.fc2.bias", BIAS),
  (_D + r"norm\.weight", "visual.deepstack_mergers.{0}.norm.scale", IDENTITY),
  (_D + r"norm\.bias", "visual.deepstack_mergers.{0}.norm.bias", BIAS),
  (_D + r"linear_fc1\.weight", "visual.deepstack_mergers.{0}.fc1.kernel", LINEAR_IN),
  (_D + r"linear_fc1\.bias", "visual.deepstack_mergers.{0}.fc1.bias", BIAS),
  (_D + r"linear_fc2\.weight", "visual.deepstack_mergers.{0}.fc2.kernel", LINEAR_IN),
  (_D + r"linear_fc2\.bias", "visual.deepstack_mergers.{0}.fc2.bias", BIAS),
  (r"model\.embed_tokens\.weight", "text.embed", IDENTITY),
  (_L + r"input_layernorm\.weight", "text.layers.{0}.input_norm.scale", IDENTITY),
  (_L + r"post_attention_layernorm\.weight", "text.layers.{0}.post_attn_norm.scale", IDENTITY),
  (_L + r"self_attn\.q_proj\.weight", "text.layers.{0}.attn.q_kernel", LINEAR_IN),
  (_L + r"self_attn\.k_proj\.weight", "text.layers.{0}.attn.k_kernel", LINEAR_IN),
  (_L + r"self_attn\.v_proj\.weight", "text.layers.{0}.attn.v_kernel", LINEAR_IN),
  (_L + r"self_attn\.o_proj\.weight", "text.layers.{0}.attn.o_kernel", LINEAR_OUT),
  (_L + r"self_attn\.q_norm\.weight", "text.layers.{0}.attn.q_norm.scale", IDENTITY),
  (_L + r"self_attn\.k_norm\.weight", "text.layers.{0}.attn.k_norm.scale", IDENTITY),
  (_L + r"mlp\.gate_proj\.weight", "text.layers.{0}.mlp.gate_kernel", LINEAR_IN),
  (_L + r"mlp\.up_proj\.weight", "text.layers.{0}.mlp.up_kernel", LINEAR_IN),
  (_L + r"mlp\.down_proj\.weight", "text.layers.{0}.mlp.down_kernel", LINEAR_IN),
  (r"model\.norm\.weight", "text.norm.scale", IDENTITY),
  (r"lm_head\.weight", "text.lm_head", LINEAR_IN),
]


def canonical_key(key: str) -> str:
  """transformers 5.x names -> the released Qwen2.5-VL names the rows use."""
  if key.startswith("model.visual."):
    return key[len("model.") :]
  if key.startswith("model.language_model."):
    return "model." + key[len("model.language_model.") :]
  return key


def transformers5_key(key: str) -> str:
  """The released name of a row -> the transformers 5.x name (Qwen3-VL's released one)."""
  if key.startswith("visual."):
    return "model." + key
  if key.startswith("model."):
    return "model.language_model." + key[len("model.") :]
  return key


class KeyTable:
  """Both directions of one family's rows; `save_names` maps a row's key to the name
  written on saving."""

  def __init__(self, rows, save_names: Callable[[str], str] = lambda k: k):
    self.rows = rows
    self.save_names = save_names
    self._compiled = [(re.compile(k + "$"), path, tf) for k, path, tf in rows]
    # o3jax path template -> (hf key template, transform), for saving.
    self._reverse = [
      (re.compile(re.escape(path).replace(r"\{0\}", r"(\d+)") + "$"), key, tf)
      for key, path, tf in rows
    ]
    stacks = sorted({path.split(".{0}.")[0] for _, path, _ in rows if ".{0}." in path})
    prefix = "|".join(re.escape(s) for s in stacks)
    self._layer = re.compile(rf"^({prefix})\.(\d+)\.(.+)$")
    self._stack = re.compile(rf"^({prefix})\.([^\d].*)$")

  def hf_to_o3jax_key(self, key: str) -> tuple[str, Transform] | None:
    key = canonical_key(key)
    for rx, path, tf in self._compiled:
      mt = rx.match(key)
      if mt:
        return path.format(*mt.groups()), tf
    return None

  def o3jax_to_hf_key(self, path: str) -> tuple[str, Transform]:
    for rx, key, tf in self._reverse:
      mt = rx.match(path)
      if mt:
        hf = key.replace(r"(\d+)", "{0}").replace("\\", "")
        return self.save_names(hf.format(*mt.groups())), tf
    raise KeyError(f"o3jax parameter {path} has no Hugging Face name in the table")

  def is_stacked(self, path: str) -> bool:
    """Whether o3jax array `path` stacks one slice per layer along its first axis."""
    return self._stack.match(path) is not None

  def stacked_path(self, path: str) -> tuple[str, int | None]:
    """One layer's path -> (the model's stacked path, layer index); others unchanged."""
    m = self._layer.match(path)
    return (f"{m[1]}.{m[3]}", int(m[2])) if m else (path, None)

  def layer_paths(self, path: str, shape: tuple[int, ...]) -> list[tuple[str, int | None]]:
    """(one layer's path, index) for each slice of a stacked array; [(path, None)] else."""
    m = self._stack.match(path)
    if not m:
      return [(path, None)]
    return [(f"{m[1]}.{i}.{m[2]}", i) for i in range(shape[0])]

  def locate(self, key: str) -> tuple[str, int | None, Transform] | None:
    """The o3jax slot of a Hugging Face tensor: (array path, layer index or None,
    transform); None if unknown."""
    found = self.hf_to_o3jax_key(key)
    return None if found is None else (*self.stacked_path(found[0]), found[1])

  def hf_names(self, path: str, shape: tuple[int, ...]) -> list[tuple[str, int | None, Transform]]:
    """The Hugging Face tensors of o3jax array `path`: one per layer of a stacked array,
    else one covering all of it."""
    out = []
    for one, index in self.layer_paths(path, shape):
      key, tf = self.o3jax_to_hf_key(one)
      out.append((key, index, tf))
    return out


QWEN2_5_VL = KeyTable(TABLE)
QWEN3_VL = KeyTable(QWEN3_VL_TABLE, transformers5_key)  # saved as released: model.visual.*


def table_for(config) -> KeyTable:
  """The key table of a model config (by its model_type)."""
  return QWEN3_VL if config.model_type == "qwen3_vl" else QWEN2_5_VL
