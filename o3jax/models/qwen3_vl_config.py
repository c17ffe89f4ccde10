"""Qwen3-VL architecture config (the dense models): dataclasses, presets, config.json I/O.

The text decoder is `TextConfig` with Qwen3-VL's switches (no q/k/v bias, q/k RMSNorm,
interleaved rotary rows, an explicit head_dim); the vision tower has its own config
(LayerNorm blocks, learned position embeddings, no windows, deepstack taps).
config.json is the nested layout of the released checkpoints (`text_config`,
`vision_config`); the rotary settings are read from `rope_scaling` or `rope_parameters`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from o3jax.models.config import TextConfig


@dataclasses.dataclass(frozen=True)
class Qwen3VisionConfig:
  depth: int = 27
  hidden_size: int = 1152
  intermediate_size: int = 4304
  num_heads: int = 16
  in_channels: int = 3
  patch_size: int = 16
  temporal_patch_size: int = 2
  spatial_merge_size: int = 2
  out_hidden_size: int = 4096
  num_position_embeddings: int = 2304  # a 48 x 48 grid, resampled to each image's grid
  deepstack_visual_indexes: tuple[int, ...] = (8, 16, 24)
  hidden_act: str = "gelu_pytorch_tanh"
  rope_theta: float = 10000.0
  layer_norm_eps: float = 1e-6  # hard-coded in the reference tower

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def patch_dim(self) -> int:
    return self.in_channels * self.temporal_patch_size * self.patch_size**2

  @property
  def merge_unit(self) -> int:
    return self.spatial_merge_size**2

  @property
  def num_grid_per_side(self) -> int:
    return int(self.num_position_embeddings**0.5)


@dataclasses.dataclass(frozen=True)
class Qwen3VLConfig:
  model_type: ClassVar[str] = "qwen3_vl"
  text: TextConfig = TextConfig(
    vocab_size=151936,
    hidden_size=4096,
    intermediate_size=12288,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    rope_theta=5_000_000.0,
    mrope_section=(24, 20, 20),
    max_position_embeddings=262144,
    attention_bias=False,
    qk_norm=True,
    mrope_interleaved=True,
    explicit_head_dim=128,
  )
  vision: Qwen3VisionConfig = Qwen3VisionConfig()
  image_token_id: int = 151655
  video_token_id: int = 151656
  vision_start_token_id: int = 151652
  vision_end_token_id: int = 151653
  bos_token_id: int = 151643
  eos_token_id: int = 151645
  # How to run, not what to compute (not written to config.json):
  attention_impl: str = "auto"
  remat: str = "none"

  def replace(self, **kw) -> "Qwen3VLConfig":
    return dataclasses.replace(self, **kw)


def _text(**kw) -> TextConfig:
  qwen3 = dict(attention_bias=False, qk_norm=True, mrope_interleaved=True)
  return TextConfig(**{**qwen3, **kw})


def qwen3_tiny(**kw) -> Qwen3VLConfig:
  """A tiny Qwen3-VL for CPU tests: head_dim 32 != hidden/heads (the explicit head_dim
  path), rotary sections (6, 5, 5) interleaved over 16 frequencies, a 4 x 4 learned
  position grid (resampled to every other grid size), deepstack taps after vision blocks
  0 and 2 added to the first 2 of 3 decoder layers."""
  cfg = Qwen3VLConfig(
    text=_text(
      vocab_size=1024,
      hidden_size=64,
      intermediate_size=128,
      num_hidden_layers=3,
      num_attention_heads=4,
      num_key_value_heads=2,
      explicit_head_dim=32,
      rope_theta=5_000_000.0,
      mrope_section=(6, 5, 5),
      max_position_embeddings=4096,
    ),
    vision=Qwen3VisionConfig(
      depth=4,
      hidden_size=32,
      intermediate_size=64,
      num_heads=2,
      out_hidden_size=64,
      num_position_embeddings=16,
      deepstack_visual_indexes=(0, 2),
    ),
    image_token_id=1000,
    video_token_id=1001,
    vision_start_token_id=1002,
    vision_end_token_id=1003,
    bos_token_id=1004,
    eos_token_id=1005,
  )
  return cfg.replace(**kw)


# The released configs (Hugging Face Qwen/Qwen3-VL-{2B,4B,8B}-Instruct, config.json); the
# vision towers of 2B and 4B are the same (24 blocks of width 1024), 8B's is wider.
_SMALL_TOWER = dict(
  depth=24, hidden_size=1024, intermediate_size=4096, deepstack_visual_indexes=(5, 11, 17)
)
_BIG_TOWER = dict(
  depth=27, hidden_size=1152, intermediate_size=4304, deepstack_visual_indexes=(8, 16, 24)
)


def _released(layers, hidden, mlp, heads, tie, tower) -> Qwen3VLConfig:
  text = _text(
    vocab_size=151936,
    hidden_size=hidden,
    intermediate_size=mlp,
    num_hidden_layers=layers,
    num_attention_heads=heads,
    num_key_value_heads=8,
    explicit_head_dim=128,
    rope_theta=5_000_000.0,
    mrope_section=(24, 20, 20),
    max_position_embeddings=262144,
    tie_word_embeddings=tie,
  )
  return Qwen3VLConfig(text=text, vision=Qwen3VisionConfig(out_hidden_size=hidden, **tower))


def qwen3_vl_2b() -> Qwen3VLConfig:
  return _released(28, 2048, 6144, 16, True, _SMALL_TOWER)


def qwen3_vl_4b() -> Qwen3VLConfig:
  return _released(36, 2560, 9728, 32, True, _SMALL_TOWER)


def qwen3_vl_8b() -> Qwen3VLConfig:
  return _released(36, 4096, 12288, 32, False, _BIG_TOWER)


PRESETS = {
  "qwen3_tiny": qwen3_tiny,
  "qwen3_vl_2b": qwen3_vl_2b,
  "qwen3_vl_4b": qwen3_vl_4b,
  "qwen3_vl_8b": qwen3_vl_8b,
}


# ---------------------------------------------------------------- Hugging Face I/O


def from_hf_dict(d: dict[str, Any]) -> Qwen3VLConfig:
  t = d.get("text_config") or {}
  v = d.get("vision_config") or {}
  rope = t.get("rope_parameters") or t.get("rope_scaling") or {}
  dt, dv = Qwen3VLConfig().text, Qwen3VisionConfig()
  heads = t["num_attention_heads"]
  tie = d.get("tie_word_embeddings", t.get("tie_word_embeddings", False))
  text = _text(
    vocab_size=t["vocab_size"],
    hidden_size=t["hidden_size"],
    intermediate_size=t["intermediate_size"],
    num_hidden_layers=t["num_hidden_layers"],
    num_attention_heads=heads,
    num_key_value_heads=t.get("num_key_value_heads") or heads,
    explicit_head_dim=t.get("head_dim") or t["hidden_size"] // heads,
    rms_norm_eps=t.get("rms_norm_eps", dt.rms_norm_eps),
    rope_theta=float(rope.get("rope_theta", t.get("rope_theta", dt.rope_theta))),
    mrope_section=tuple(rope.get("mrope_section", dt.mrope_section)),
    max_position_embeddings=t.get("max_position_embeddings", dt.max_position_embeddings),
    attention_bias=bool(t.get("attention_bias", False)),
    tie_word_embeddings=bool(tie),
  )
  vrope = v.get("rope_parameters") or {}
  vision = Qwen3VisionConfig(
    **{
      f.name: v[f.name]
      for f in dataclasses.fields(Qwen3VisionConfig)
      if f.name in v and f.name not in ("deepstack_visual_indexes", "rope_theta")
    },
    deepstack_visual_indexes=tuple(v.get("deepstack_visual_indexes", dv.deepstack_visual_indexes)),
    rope_theta=float(vrope.get("rope_theta", dv.rope_theta)),
  )
  ids = {
    k: src[k]
    for src in (t, d)
    for k in (
      "image_token_id",
      "video_token_id",
      "vision_start_token_id",
      "vision_end_token_id",
      "bos_token_id",
      "eos_token_id",
    )
    if isinstance(src.get(k), int)
  }
  return Qwen3VLConfig(text=text, vision=vision, **ids)


def to_hf_dict(cfg: Qwen3VLConfig) -> dict[str, Any]:
  """The nested layout of the released Qwen3-VL config.json (transformers 4.57 and 5.x)."""
  t, v = cfg.text, cfg.vision
  return {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "model_type": "qwen3_vl",
    "image_token_id": cfg.image_token_id,
    "video_token_id": cfg.video_token_id,
    "vision_start_token_id": cfg.vision_start_token_id,
    "vision_end_token_id": cfg.vision_end_token_id,
    "tie_word_embeddings": t.tie_word_embeddings,
    "torch_dtype": "float32",
    "text_config": {
      "model_type": "qwen3_vl_text",
      "vocab_size": t.vocab_size,
      "hidden_size": t.hidden_size,
      "intermediate_size": t.intermediate_size,
      "num_hidden_layers": t.num_hidden_layers,
      "num_attention_heads": t.num_attention_heads,
      "num_key_value_heads": t.num_key_value_heads,
      "head_dim": t.head_dim,
      "hidden_act": "silu",
      "rms_norm_eps": t.rms_norm_eps,
      "rope_theta": t.rope_theta,
      "rope_scaling": {
        "rope_type": "default",
        "mrope_section": list(t.mrope_section),
        "mrope_interleaved": True,
      },
      "max_position_embeddings": t.max_position_embeddings,
      "attention_bias": t.attention_bias,
      "attention_dropout": 0.0,
      "tie_word_embeddings": t.tie_word_embeddings,
      "bos_token_id": cfg.bos_token_id,
      "eos_token_id": cfg.eos_token_id,
    },
    "vision_config": {
      "model_type": "qwen3_vl",
      "depth": v.depth,
      "hidden_size": v.hidden_size,
      "intermediate_size": v.intermediate_size,
      "num_heads": v.num_heads,
      "in_channels": v.in_channels,
      "patch_size": v.patch_size,
      "temporal_patch_size": v.temporal_patch_size,
      "spatial_merge_size": v.spatial_merge_size,
      "out_hidden_size": v.out_hidden_size,
      "num_position_embeddings": v.num_position_embeddings,
      "deepstack_visual_indexes": list(v.deepstack_visual_indexes),
      "hidden_act": v.hidden_act,
    },
  }
