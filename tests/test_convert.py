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
from o3jax.convert.keys import QWEN2_5_VL, TABLE, canonical_key
from o3jax.models import Qwen2_5_VL, config as config_lib

hf_names, hf_to_o3jax_key, o3jax_to_hf_key = (
  QWEN2_5_VL.hf_names,
  QWEN2_5_VL.hf_to_o3jax_key,
  QWEN2_5_VL.o3jax_to_hf_key,
)
layer_paths, locate, stacked_path = (
  QWEN2_5_VL.layer_paths,
  QWEN2_5_VL.locate,
  QWEN2_5_VL.stacked_path,
)


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
  one_layer = [p for k, v in _params(model).items() for p, _ in layer_paths(k, v.shape)]
  assert "text.layers.1.attn.q_kernel" in one_layer and "visual.blocks.3.norm1.scale" in one_layer
  assert stacked_path("text.layers.1.attn.q_kernel") == ("text.layers.attn.q_kernel", 1)
  assert stacked_path("text.norm.scale") == ("text.norm.scale", None)
  # Each Hugging Face tensor of a layer is one slice of the stacked array, both ways.
  assert locate("model.layers.1.self_attn.q_proj.weight")[:2] == ("text.layers.attn.q_kernel", 1)
  assert locate("visual.blocks.3.norm1.weight")[:2] == ("visual.blocks.norm1.scale", 3)
  q = _params(model)["text.layers.attn.q_kernel"]
  names = [(key, index) for key, index, _ in hf_names("text.layers.attn.q_kernel", q.shape)]
  assert names == [(f"model.layers.{i}.self_attn.q_proj.weight", i) for i in range(q.shape[0])]
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

  # Shards and index as transformers' save_pretrained makes them (huggingface_hub's split).
  from huggingface_hub import split_state_dict_into_shards_factory

  index_text = (tmp_path / "a" / "model.safetensors.index.json").read_text()
  index = json.loads(index_text)
  assert index_text == json.dumps(index, indent=2, sort_keys=True) + "\n"
  infos = [
    i
    for f in sorted(set(index["weight_map"].values()))
    for i in safetensors_io.tensor_infos(str(tmp_path / "a" / f))
  ]
  # The order tensors are written: each stacked array's layers in turn.
  order = [key for path, v in _params(model).items() for key, _, _ in hf_names(path, v.shape)]
  sizes = {i.name: i.nbytes for i in infos}
  split = split_state_dict_into_shards_factory(
    {k: sizes[k] for k in order},
    get_storage_size=lambda n: n,
    filename_pattern="model{suffix}.safetensors",
    max_shard_size=200_000,
  )
  assert index["weight_map"] == split.tensor_to_filename
  assert index["metadata"] == {
    "total_size": split.metadata["total_size"],
    "total_parameters": sum(v.size for v in _params(model).values()),
  }

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
  # Stacked layers: one layer's tensor missing, or a layer the model does not have.
  del tensors["model.extra.weight"]
  tensors["model.layers.9.mlp.up_proj.weight"] = tensors.pop("model.layers.1.mlp.up_proj.weight")
  safetensors_io.write_file(
    path, [(k, v.shape, v.dtype) for k, v in tensors.items()], tensors.__getitem__
  )
  with pytest.raises(KeyError, match=r"model.layers.9.mlp.up_proj.weight.*up_kernel\[9\]"):
    load_pretrained(str(tmp_path / "m"))
  tensors.pop("model.layers.9.mlp.up_proj.weight")
  safetensors_io.write_file(
    path, [(k, v.shape, v.dtype) for k, v in tensors.items()], tensors.__getitem__
  )
  with pytest.raises(KeyError, match=r"text.layers.mlp.up_kernel\[1\]"):
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


def test_streamed_checkpoint_is_orbax_and_orbax_checkpoints_stream_back(model, tmp_path):
  """What `convert --to o3jax` writes array by array, orbax restores (the `--init` and
  `--model` path of an o3jax directory); what orbax writes (a training run) converts back."""
  from o3jax import sharding
  from o3jax.convert.cli import hf_to_o3jax, o3jax_to_hf
  from o3jax.convert.hf import abstract_model
  from o3jax.checkpoint import Checkpointer
  from o3jax.workdir import load_params_from_workdir, write_model_config

  hf = str(tmp_path / "hf")
  save_pretrained(model, hf, dtype=ml_dtypes.bfloat16)
  hf_to_o3jax(hf, str(tmp_path / "ck"), "bfloat16")
  assert not [n for n in os.listdir(tmp_path / "ck" / "checkpoints") if n != "0"]
  _, abstract = nnx.split(abstract_model(model.config, jnp.bfloat16, jnp.bfloat16))
  restored = load_params_from_workdir(str(tmp_path / "ck"), abstract, sharding.make_mesh())
  want = _params(load_pretrained(hf, dtype=jnp.bfloat16))
  got = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(restored)}
  assert got.keys() == want.keys()
  for k in want:
    assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), k

  run = str(tmp_path / "run")  # a workdir as training writes it: orbax, params beside a step
  params = nnx.state(model, nnx.Param)
  ckpt = Checkpointer(run, asynchronous=False)
  ckpt.save(7, {"params": params, "step": 7})
  ckpt.close()
  write_model_config(run, model.config)
  o3jax_to_hf(run, str(tmp_path / "back"))
  save_pretrained(model, str(tmp_path / "direct"))
  a = dict(safetensors_io.iter_tensors(str(tmp_path / "direct" / "model.safetensors")))
  b = dict(safetensors_io.iter_tensors(str(tmp_path / "back" / "model.safetensors")))
  assert a.keys() == b.keys()
  for k in a:
    assert a[k].dtype == b[k].dtype == np.float32 and a[k].tobytes() == b[k].tobytes(), k


def test_conversion_memory_stays_below_half_the_model(tmp_path):
  """Both directions, each in its own process (scripts/bench_convert.py), on a 370 MB model
  of 345 tensors of at most 4 MB: the peak resident memory over the process's own after its
  imports must stay under half the model's bytes, which holding the model (as the landed
  code did) cannot; and the round trip must be bit-exact."""
  import subprocess
  import sys

  base = config_lib.tiny()
  cfg = base.replace(
    text=config_lib.TextConfig(
      **{
        **vars(base.text),
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 24,
        "num_attention_heads": 8,
        "mrope_section": (8, 12, 12),
      }
    ),
    vision=config_lib.VisionConfig(**{**vars(base.vision), "out_hidden_size": 512}),
  )
  (tmp_path / "config.json").write_text(json.dumps(config_lib.to_hf_dict(cfg)))
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / "bench.json"
  cmd = [sys.executable, os.path.join(root, "scripts", "bench_convert.py")]
  cmd += ["--config", str(tmp_path / "config.json"), "--dtype", "float32"]
  cmd += ["--work", str(tmp_path / "work"), "--json", str(out)]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads(out.read_text())
  model_bytes = result["src"]["bytes"]
  assert model_bytes > 350e6 and result["src"]["largest_tensor_bytes"] <= 4 << 20
  for direction in ("to_o3jax", "to_hf"):
    r = result["after"][direction]
    assert r["peak_rss"] - r["base_rss"] < model_bytes / 2, (direction, r)
  assert result["after"]["check"]["bit_exact"], result["after"]["check"]["problems"]
  assert result["after"]["check"]["tensors"] == result["src"]["tensors"] == 345
