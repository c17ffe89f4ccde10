"""Qwen2 / Qwen2.5 text-only language models (transformers' Qwen2ForCausalLM), e.g. the
V-STaR judge Qwen2.5-72B-Instruct: the Qwen2.5-VL text decoder without the vision tower.

Axis letters: B batch, T length, S key length, D width, V vocabulary.

Positions are plain 1-D rotary positions: the decoder's three mRoPE rows all hold the
same position and one section covers every frequency, which is standard RoPE.
`__call__` takes transformers' keyword arguments (input_ids, attention_mask,
position_ids) and returns logits [B, T, V]; `embed_prompt`, `embed` and the decoder's
`init_cache` and `forward_cached` (`text.py`) are the interface `o3jax.sample` decodes with.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar

import jax.numpy as jnp
from flax import nnx

from o3jax.models.config import TextConfig
from o3jax.models.qwen2_5_vl import causal_mask
from o3jax.models.text import TextDecoder


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
  model_type: ClassVar[str] = "qwen2"
  text: TextConfig
  bos_token_id: int | None = None
  eos_token_id: int | None = None
  attention_impl: str = "auto"  # see o3jax.models.attention
  remat: str = "none"  # see o3jax.models.layers.remat_policy


def qwen2_config_from_hf_dict(d: dict[str, Any]) -> Qwen2Config:
  """A transformers Qwen2Config dict (model_type "qwen2")."""
  heads = d["num_attention_heads"]
  head_dim = d["hidden_size"] // heads
  rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
  text = TextConfig(
    vocab_size=d["vocab_size"],
    hidden_size=d["hidden_size"],
    intermediate_size=d["intermediate_size"],
    num_hidden_layers=d["num_hidden_layers"],
    num_attention_heads=heads,
    num_key_value_heads=d.get("num_key_value_heads", heads),
    rms_norm_eps=d.get("rms_norm_eps", 1e-6),
    rope_theta=d.get("rope_theta", rope.get("rope_theta", 10000.0)),
    mrope_section=(head_dim // 2, 0, 0),  # one section: plain RoPE
    max_position_embeddings=d.get("max_position_embeddings", 32768),
    tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
  )
  if d.get("use_sliding_window"):
    raise ValueError("Qwen2 sliding-window attention is not supported")
  return Qwen2Config(text, d.get("bos_token_id"), d.get("eos_token_id"))


def load_qwen2_config(path: str | os.PathLike) -> Qwen2Config:
  with open(os.path.join(path, "config.json")) as f:
    return qwen2_config_from_hf_dict(json.load(f))


class Qwen2ForCausalLM(nnx.Module):
  def __init__(
    self,
    config: Qwen2Config,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.config = config
    self.text = TextDecoder(
      config.text,
      dtype=dtype,
      param_dtype=param_dtype,
      attention_impl=config.attention_impl,
      remat=config.remat,
      rngs=rngs,
    )

  def embed(self, input_ids, *vision):
    """Token embeddings (the sampler's vision arguments are None for a text model)."""
    if any(v is not None for v in vision):
      raise ValueError("Qwen2ForCausalLM is a text model: it takes no pixels")
    return self.text.embed_tokens(input_ids)

  def embed_prompt(self, input_ids, *vision):
    return self.embed(input_ids, *vision), None

  def __call__(self, input_ids, attention_mask=None, position_ids=None, **unused):
    input_ids = jnp.asarray(input_ids)
    b, t = input_ids.shape
    if position_ids is None:  # transformers: positions count the real tokens
      real = jnp.ones((b, t), jnp.int32) if attention_mask is None else attention_mask
      position_ids = jnp.maximum(jnp.cumsum(jnp.asarray(real), -1) - 1, 0)
    positions = jnp.broadcast_to(jnp.asarray(position_ids)[None], (3, b, t))
    h, _ = self.text(self.embed(input_ids), positions, causal_mask(attention_mask))
    return self.text.logits(h)
