"""Qwen2.5-VL architecture config: dataclasses, presets, Hugging Face config.json I/O;
`preset`, `from_hf_dict`, `to_hf_dict` and `load_hf_config` also take Qwen3-VL
(`qwen3_vl_config.py`), chosen by preset name or config.json's model_type.

Only the model lives here (its architecture, and how its attention and remat run);
training settings live in `configs/*.py`.
`from_hf_dict` reads the three layouts found in the wild: the flat transformers 4.x
layout (text fields at the top level, as in the released Qwen checkpoints), the nested
`text_config` layout written by transformers 5.x, and either `rope_scaling` or
`rope_parameters` for the mRoPE sections and theta.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  depth: int = 32
  hidden_size: int = 1280
  intermediate_size: int = 3420
  num_heads: int = 16
  in_channels: int = 3
  patch_size: int = 14
  temporal_patch_size: int = 2
  spatial_merge_size: int = 2
  window_size: int = 112
  out_hidden_size: int = 3584
  fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
  tokens_per_second: float = 2
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-6  # hard-coded in the reference vision tower

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
  def window_merge_units(self) -> int:
    """Side of an attention window, counted in merged (2x2 patch) units."""
    return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class TextConfig:
  vocab_size: int = 152064
  hidden_size: int = 3584
  intermediate_size: int = 18944
  num_hidden_layers: int = 28
  num_attention_heads: int = 28
  num_key_value_heads: int = 4
  rms_norm_eps: float = 1e-6
  rope_theta: float = 1_000_000.0
  mrope_section: tuple[int, int, int] = (16, 24, 24)
  max_position_embeddings: int = 128000
  tie_word_embeddings: bool = False
  # Qwen3-VL switches (the defaults are Qwen2.5-VL's decoder):
  attention_bias: bool = True  # q/k/v projections have biases
  qk_norm: bool = False  # RMSNorm over each head of q and k before the rotary
  mrope_interleaved: bool = False  # rotary rows interleaved t,h,w,t,h,w... (else chunked)
  explicit_head_dim: int | None = None  # config.json's head_dim when not hidden/heads

  @property
  def head_dim(self) -> int:
    return self.explicit_head_dim or self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class Qwen2_5_VLConfig:
  model_type: ClassVar[str] = "qwen2_5_vl"
  text: TextConfig = TextConfig()
  vision: VisionConfig = VisionConfig()
  image_token_id: int = 151655
  video_token_id: int = 151656
  vision_start_token_id: int = 151652
  vision_end_token_id: int = 151653
  bos_token_id: int = 151643
  eos_token_id: int = 151645
  # How to run, not what to compute (not written to config.json):
  attention_impl: str = "auto"  # models.attention.IMPLS
  remat: str = "none"  # decoder layers and vision blocks: models.layers.REMAT_POLICIES

  def replace(self, **kw) -> "Qwen2_5_VLConfig":
    return dataclasses.replace(self, **kw)


def tiny(**kw) -> Qwen2_5_VLConfig:
  """A few-hundred-thousand-parameter model for CPU tests and the demo.

  Head dims are 16 so the 2-D vision rotary (head_dim/4 frequencies per axis) and the
  mRoPE sections (2+3+3 = head_dim/2) are both non-trivial; the window (56 px = 2x2
  merged units) is small so that real frames need several windows and padding.
  """
  cfg = Qwen2_5_VLConfig(
    text=TextConfig(
      vocab_size=1024,
      hidden_size=64,
      intermediate_size=128,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      mrope_section=(2, 3, 3),
      max_position_embeddings=4096,
    ),
    vision=VisionConfig(
      depth=4,
      hidden_size=32,
      intermediate_size=64,
      num_heads=2,
      window_size=56,
      out_hidden_size=64,
      fullatt_block_indexes=(1, 3),
    ),
    image_token_id=1000,
    video_token_id=1001,
    vision_start_token_id=1002,
    vision_end_token_id=1003,
    bos_token_id=1004,
    eos_token_id=1005,
  )
  return cfg.replace(**kw)


def small(**kw) -> Qwen2_5_VLConfig:
  """A few-million-parameter model that learns the grounded format on a CPU (the demo)."""
  base = tiny()
  cfg = base.replace(
    text=TextConfig(
      vocab_size=1024,
      hidden_size=128,
      intermediate_size=384,
      num_hidden_layers=4,
      num_attention_heads=4,
      num_key_value_heads=2,
      mrope_section=(4, 6, 6),
      max_position_embeddings=4096,
    ),
    vision=VisionConfig(
      depth=2,
      hidden_size=64,
      intermediate_size=128,
      num_heads=2,
      window_size=56,
      out_hidden_size=128,
      fullatt_block_indexes=(1,),
    ),
  )
  return cfg.replace(**kw)


def qwen2_5_vl_7b() -> Qwen2_5_VLConfig:
  return Qwen2_5_VLConfig(
    text=TextConfig(
      vocab_size=152064,
      hidden_size=3584,
      intermediate_size=18944,
      num_hidden_layers=28,
      num_attention_heads=28,
      num_key_value_heads=4,
    ),
    vision=VisionConfig(out_hidden_size=3584),
  )


def qwen2_5_vl_3b() -> Qwen2_5_VLConfig:
  return Qwen2_5_VLConfig(
    text=TextConfig(
      vocab_size=151936,
      hidden_size=2048,
      intermediate_size=11008,
      num_hidden_layers=36,
      num_attention_heads=16,
      num_key_value_heads=2,
      tie_word_embeddings=True,
    ),
    vision=VisionConfig(out_hidden_size=2048),
  )


PRESETS = {
  "tiny": tiny,
  "small": small,
  "qwen2_5_vl_3b": qwen2_5_vl_3b,
  "qwen2_5_vl_7b": qwen2_5_vl_7b,
}


def preset(name: str):
  """A Qwen2.5-VL or (names qwen3_*) Qwen3-VL config."""
  from o3jax.models import qwen3_vl_config  # it builds on TextConfig, defined here

  presets = {**PRESETS, **qwen3_vl_config.PRESETS}
  if name not in presets:
    raise ValueError(f"unknown model preset {name!r}; known: {sorted(presets)}")
  return presets[name]()


# ---------------------------------------------------------------- Hugging Face I/O


def _rope(d: dict) -> tuple[dict, float | None]:
  rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
  return rope, rope.get("rope_theta", d.get("rope_theta"))


def from_hf_dict(d: dict[str, Any]):
  """Config from a parsed Hugging Face `config.json` (any of the layouts above); a
  Qwen3-VL one (model_type "qwen3_vl") gives a `Qwen3VLConfig`."""
  if d.get("model_type") == "qwen3_vl":
    from o3jax.models import qwen3_vl_config

    return qwen3_vl_config.from_hf_dict(d)
  t = dict(d)
  if isinstance(d.get("text_config"), dict) and "hidden_size" in d["text_config"]:
    t = {**d, **d["text_config"]}
  rope, theta = _rope(t)
  if theta is None:
    rope, theta = _rope(d)
  v = d.get("vision_config") or {}
  default_t, default_v = TextConfig(), VisionConfig()
  tie = d.get("tie_word_embeddings", t.get("tie_word_embeddings", False))
  text = TextConfig(
    vocab_size=t["vocab_size"],
    hidden_size=t["hidden_size"],
    intermediate_size=t["intermediate_size"],
    num_hidden_layers=t["num_hidden_layers"],
    num_attention_heads=t["num_attention_heads"],
    num_key_value_heads=t.get("num_key_value_heads") or t["num_attention_heads"],
    rms_norm_eps=t.get("rms_norm_eps", default_t.rms_norm_eps),
    rope_theta=float(theta if theta is not None else default_t.rope_theta),
    mrope_section=tuple(rope.get("mrope_section", default_t.mrope_section)),
    max_position_embeddings=t.get("max_position_embeddings", default_t.max_position_embeddings),
    tie_word_embeddings=bool(tie),
  )
  vrope = v.get("rope_parameters") or {}
  vision = VisionConfig(
    depth=v.get("depth", default_v.depth),
    hidden_size=v.get("hidden_size", default_v.hidden_size),
    intermediate_size=v.get("intermediate_size", default_v.intermediate_size),
    num_heads=v.get("num_heads", default_v.num_heads),
    in_channels=v.get("in_channels", v.get("in_chans", default_v.in_channels)),
    patch_size=v.get("patch_size", default_v.patch_size),
    temporal_patch_size=v.get("temporal_patch_size", default_v.temporal_patch_size),
    spatial_merge_size=v.get("spatial_merge_size", default_v.spatial_merge_size),
    window_size=v.get("window_size", default_v.window_size),
    out_hidden_size=v.get("out_hidden_size", text.hidden_size),
    fullatt_block_indexes=tuple(v.get("fullatt_block_indexes", default_v.fullatt_block_indexes)),
    tokens_per_second=v.get("tokens_per_second", default_v.tokens_per_second),
    rope_theta=float(vrope.get("rope_theta", default_v.rope_theta)),
  )
  ids = {
    k: d[k]
    for k in (
      "image_token_id",
      "video_token_id",
      "vision_start_token_id",
      "vision_end_token_id",
      "bos_token_id",
      "eos_token_id",
    )
    if isinstance(d.get(k), int)
  }
  return Qwen2_5_VLConfig(text=text, vision=vision, **ids)


def to_hf_dict(cfg) -> dict[str, Any]:
  """The flat transformers 4.x layout of the released checkpoints (5.x reads it too); a
  Qwen3-VL config is written in its own (nested) layout."""
  if cfg.model_type == "qwen3_vl":
    from o3jax.models import qwen3_vl_config

    return qwen3_vl_config.to_hf_dict(cfg)
  t, v = cfg.text, cfg.vision
  return {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "vocab_size": t.vocab_size,
    "hidden_size": t.hidden_size,
    "intermediate_size": t.intermediate_size,
    "num_hidden_layers": t.num_hidden_layers,
    "num_attention_heads": t.num_attention_heads,
    "num_key_value_heads": t.num_key_value_heads,
    "hidden_act": "silu",
    "rms_norm_eps": t.rms_norm_eps,
    "rope_theta": t.rope_theta,
    "rope_scaling": {"type": "mrope", "mrope_section": list(t.mrope_section)},
    "max_position_embeddings": t.max_position_embeddings,
    "tie_word_embeddings": t.tie_word_embeddings,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
    "torch_dtype": "float32",
    "image_token_id": cfg.image_token_id,
    "video_token_id": cfg.video_token_id,
    "vision_start_token_id": cfg.vision_start_token_id,
    "vision_end_token_id": cfg.vision_end_token_id,
    "bos_token_id": cfg.bos_token_id,
    "eos_token_id": cfg.eos_token_id,
    "vision_config": {
      "depth": v.depth,
      "hidden_size": v.hidden_size,
      "intermediate_size": v.intermediate_size,
      "num_heads": v.num_heads,
      "in_chans": v.in_channels,
      "in_channels": v.in_channels,
      "patch_size": v.patch_size,
      "temporal_patch_size": v.temporal_patch_size,
      "spatial_merge_size": v.spatial_merge_size,
      "window_size": v.window_size,
      "out_hidden_size": v.out_hidden_size,
      "hidden_act": "silu",
      "fullatt_block_indexes": list(v.fullatt_block_indexes),
      "tokens_per_second": v.tokens_per_second,
    },
  }


MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl")


def load_hf_config(path: str | os.PathLike):
  """The model config of a Hugging Face directory (or config.json), by its model_type."""
  p = os.path.join(path, "config.json") if os.path.isdir(path) else path
  with open(p) as f:
    d = json.load(f)
  if d.get("model_type") not in MODEL_TYPES:  # another architecture would fail obscurely later
    raise ValueError(
      f"{p}: model_type {d.get('model_type')!r} is not a Qwen2.5-VL or Qwen3-VL model "
      "('qwen2_5_vl', 'qwen3_vl')"
    )
  return from_hf_dict(d)
