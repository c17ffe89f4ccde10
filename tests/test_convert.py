"""HF <-> o3jax conversion: both key conventions, sharded files with an index, bf16, errors."""

import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from o3jax.convert import load_pretrained, save_pretrained
from o3jax.convert import safetensors_io
from o3jax.convert.hf import (
  TABLE,
  canonical_key,
  hf_to_o3jax_key,
  layer_views,
  o3jax_to_hf_key,
  stacked_path,
)
from o3jax.models import Qwen2_5_VL, config as config_lib


def _params(model):
  return {
    ".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model))
  }


@pytest.fixture(scope="module")
def model():
  m = Qwen2_5_VL(config_lib.tiny(), rngs=nnx.Rngs(3))
  _, state = nnx.split(m)
  nnx.update(m, jax.tree.map(lambda x: x + 0.1, state))
  return m


def test_table_maps_every_parameter_both_ways(model):
  # Stacked layers: TABLE names one layer's parameter, e.g. text.layers.1.attn.q_kernel.
  one_layer = [p for k, v in _params(model).items() for p, _ in layer_views(k, v)]
  assert "text.layers.1.attn.q_kernel" in one_layer and "visual.blocks.3.norm1.scale" in one_layer
  assert stacked_path("text.layers.1.attn.q_kernel") == ("text.layers.attn.q_kernel", 1)
  for path in one_layer:
    key, _ = o3jax_to_hf_key(path)
    back, _ = hf_to_o3jax_key(key)
    assert back == path
    new_style = (
      "model.language_model." + key[len("model.") :]
      if key.startswith("model.")
      else "model." + key
      if key.startswith("visual.")
      else key
    )
    assert hf_to_o3jax_key(new_style)[0] == path


def test_sharded_files_and_transformers5_keys(model, tmp_path):
  save_pretrained(model, str(tmp_path / "a"), max_shard_bytes=200_000)
  files = sorted(os.listdir(tmp_path / "a"))
  assert (
    "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 2
  )
  loaded = load_pretrained(str(tmp_path / "a"))
  for k, v in _params(model).items():
    np.testing.assert_array_equal(_params(loaded)[k], v)

  # Rewrite with the transformers 5.x names (model.visual.*, model.language_model.*).
  out = tmp_path / "b"
  out.mkdir()
  tensors = {}
  for name in sorted(f for f in files if f.endswith(".safetensors")):
    tensors.update(dict(safetensors_io.iter_tensors(str(tmp_path / "a" / name))))
  renamed = {
    (
      "model." + k
      if k.startswith("visual.")
      else k.replace("model.", "model.language_model.", 1)
      if k.startswith("model.")
      else k
    ): v
    for k, v in tensors.items()
  }
  assert all(canonical_key(k) in tensors for k in renamed)
  safetensors_io.write_file(
    str(out / "model.safetensors"),
    [(k, v.shape, v.dtype) for k, v in renamed.items()],
    renamed.__getitem__,
  )
  (out / "config.json").write_text((tmp_path / "a" / "config.json").read_text())
  loaded = load_pretrained(str(out))
  for k, v in _params(model).items():
    np.testing.assert_array_equal(_params(loaded)[k], v)


def test_bf16_round_trip_bit_for_bit(model, tmp_path):
  save_pretrained(model, str(tmp_path / "bf16"), dtype=ml_dtypes.bfloat16)
  assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
  first = load_pretrained(str(tmp_path / "bf16"), dtype=jnp.bfloat16)
  assert all(v.dtype == jnp.bfloat16 for v in _params(first).values())
  save_pretrained(first, str(tmp_path / "again"))
  a = dict(safetensors_io.iter_tensors(str(tmp_path / "bf16" / "model.safetensors")))
  b = dict(safetensors_io.iter_tensors(str(tmp_path / "again" / "model.safetensors")))
  assert a.keys() == b.keys()
  for k in a:
    assert a[k].dtype == b[k].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(a[k].view(np.uint16), b[k].view(np.uint16))


def test_missing_and_unknown_tensors_are_named(model, tmp_path):
  save_pretrained(model, str(tmp_path / "m"))
  path = str(tmp_path / "m" / "model.safetensors")
  tensors = dict(safetensors_io.iter_tensors(path))
  del tensors["model.norm.weight"]
  safetensors_io.write_file(
    path, [(k, v.shape, v.dtype) for k, v in tensors.items()], tensors.__getitem__
  )
  with pytest.raises(KeyError, match="text.norm.scale"):
    load_pretrained(str(tmp_path / "m"))
  tensors["model.norm.weight"] = np.ones(64, np.float32)
  tensors["model.extra.weight"] = np.ones(3, np.float32)
  safetensors_io.write_file(
    path, [(k, v.shape, v.dtype) for k, v in tensors.items()], tensors.__getitem__
  )
  with pytest.raises(KeyError, match="model.extra.weight"):
    load_pretrained(str(tmp_path / "m"))


def test_truncated_file_is_reported(model, tmp_path):
  save_pretrained(model, str(tmp_path / "t"))
  path = tmp_path / "t" / "model.safetensors"
  path.write_bytes(path.read_bytes()[:-1000])
  with pytest.raises(ValueError, match="truncated"):
    load_pretrained(str(tmp_path / "t"))


def test_table_is_one_list():
  assert len({k for k, _, _ in TABLE}) == len(TABLE)


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_hf_to_o3jax_checkpoint_and_back_bit_for_bit(model, tmp_path, dtype):
  from o3jax.cli import main

  hf = str(tmp_path / "hf")
  save_pretrained(model, hf, dtype=None if dtype is None else ml_dtypes.bfloat16)
  ckpt, back = str(tmp_path / "ckpt"), str(tmp_path / "back")
  kw = [] if dtype is None else ["--dtype", dtype]
  assert main(["convert", "--to", "o3jax", "--src", hf, "--dst", ckpt, *kw]) == 0
  assert os.path.isdir(os.path.join(ckpt, "checkpoints", "0"))
  assert main(["convert", "--to", "hf", "--src", ckpt, "--dst", back, *kw]) == 0
  a = dict(safetensors_io.iter_tensors(os.path.join(hf, "model.safetensors")))
  b = dict(safetensors_io.iter_tensors(os.path.join(back, "model.safetensors")))
  assert a.keys() == b.keys()
  for k in a:
    assert a[k].dtype == b[k].dtype
    assert a[k].tobytes() == b[k].tobytes(), k
