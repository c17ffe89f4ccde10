"""Real-size presets checked by shape only: jax.eval_shape against transformers on meta."""

import jax
import numpy as np
import pytest
import torch
import transformers

from o3jax.convert.hf import abstract_model
from o3jax.models import config as config_lib


def count_params(model) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(model))


@pytest.mark.parametrize("name", ["qwen2_5_vl_3b", "qwen2_5_vl_7b"])
def test_preset_parameter_count_equals_transformers(name):
  cfg = config_lib.preset(name)
  ours = count_params(abstract_model(cfg))
  hf_cfg = transformers.Qwen2_5_VLConfig(**config_lib.to_hf_dict(cfg))
  with torch.device("meta"):
    ref = transformers.Qwen2_5_VLForConditionalGeneration(hf_cfg)
  assert ours == sum(p.numel() for p in ref.parameters())
  # The known sizes of the released models (3B ties its head to the embedding).
  expected = {"qwen2_5_vl_3b": 3_754_622_976, "qwen2_5_vl_7b": 8_292_166_656}[name]
  assert ours == expected


def test_config_layouts_round_trip():
  """Flat 4.x layout, nested text_config with rope_parameters, both give the same config."""
  cfg = config_lib.qwen2_5_vl_7b()
  flat = config_lib.to_hf_dict(cfg)
  assert config_lib.from_hf_dict(flat) == cfg
  nested = {
    k: v
    for k, v in flat.items()
    if k
    in (
      "architectures",
      "model_type",
      "vision_config",
      "image_token_id",
      "video_token_id",
      "vision_start_token_id",
      "vision_end_token_id",
      "bos_token_id",
      "eos_token_id",
      "tie_word_embeddings",
    )
  }
  text = {
    k: v for k, v in flat.items() if k not in nested and k not in ("rope_scaling", "rope_theta")
  }
  text["rope_parameters"] = {
    "rope_type": "default",
    "rope_theta": 1e6,
    "mrope_section": [16, 24, 24],
  }
  nested["text_config"] = text
  assert config_lib.from_hf_dict(nested) == cfg
  hf = transformers.Qwen2_5_VLConfig(**flat)
  assert config_lib.from_hf_dict(hf.to_dict()) == cfg
