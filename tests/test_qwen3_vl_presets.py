"""Qwen3-VL presets: parameter counts from `jax.eval_shape` equal transformers' (meta
device); the config round-trips through config.json and loads by model_type."""

import json

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from o3jax.convert.hf import abstract_model
from o3jax.models import config as config_lib
from o3jax.models.qwen3_vl_config import Qwen3VLConfig

# Counts as transformers builds the released configs (8B: 8.77B, as its model card says).
COUNTS = {"qwen3_vl_2b": 2127532032, "qwen3_vl_4b": 4437815808, "qwen3_vl_8b": 8767123696}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts_equal_transformers_on_meta(name):
  cfg = config_lib.preset(name)
  state = nnx.state(abstract_model(cfg), nnx.Param)
  ours = sum(int(np.prod(v.get_value().shape)) for _, v in nnx.to_flat_state(state))
  with torch.device("meta"):
    hf_cfg = transformers.Qwen3VLConfig(**config_lib.to_hf_dict(cfg))
    hf = transformers.Qwen3VLForConditionalGeneration(hf_cfg)
  assert ours == sum(p.numel() for p in hf.parameters()) == COUNTS[name]


def test_config_json_round_trip_and_dispatch(tmp_path):
  cfg = config_lib.preset("qwen3_vl_4b")
  (tmp_path / "config.json").write_text(json.dumps(config_lib.to_hf_dict(cfg)))
  back = config_lib.load_hf_config(tmp_path)
  assert isinstance(back, Qwen3VLConfig) and back == cfg
  assert back.text.head_dim == 128 != back.text.hidden_size // back.text.num_attention_heads
