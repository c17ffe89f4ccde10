"""Qwen2.5-VL and Qwen3-VL in Flax NNX."""

from o3jax.models.config import (
  Qwen2_5_VLConfig,
  TextConfig,
  VisionConfig,
  from_hf_dict,
  load_hf_config,
  preset,
  to_hf_dict,
)
from o3jax.models.qwen2_5_vl import Qwen2_5_VL, causal_mask, prepare_inputs
from o3jax.models.rope_index import get_rope_index, rope_index_for
from o3jax.models.vision_layout import VisionLayout, layout_for, vision_layout
from o3jax.models.qwen3_vl import Qwen3_VL
from o3jax.models.qwen3_vl_config import Qwen3VisionConfig, Qwen3VLConfig


def model_class(config):
  """The NNX model class of a vision-language config (by its model_type)."""
  return Qwen3_VL if config.model_type == "qwen3_vl" else Qwen2_5_VL
