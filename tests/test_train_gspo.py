"""GSPO trainer: runs from an SFT workdir, logs every reward term, resumes."""

import dataclasses
import json
import os

import numpy as np
import pytest

from o3jax.train.config import load_config
from o3jax.train.gspo import train_gspo
from o3jax.train.sft import train_sft

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny_synthetic.py")


@pytest.fixture(scope="module")
def sft_workdir(synthetic_data, tmp_path_factory):
  cfg = load_config(CONFIG).replace(batch_size=4, checkpoint_every=2)
  workdir = str(tmp_path_factory.mktemp("sft"))
  train_sft(cfg, synthetic_data, workdir, steps=2)
  return workdir


def test_gspo_logs_rewards_and_resumes(synthetic_data, sft_workdir, tmp_path):
  cfg = load_config(CONFIG)
  cfg = cfg.replace(
    batch_size=2,
    checkpoint_every=1,
    gspo=dataclasses.replace(
      cfg.gspo, group_size=2, max_new_tokens=16, beta=0.04, updates_per_batch=2
    ),
  )
  workdir = str(tmp_path / "gspo")
  train_gspo(cfg, synthetic_data, workdir, steps=1, init=sft_workdir)
  row = train_gspo(cfg, synthetic_data, workdir, steps=2, init=sft_workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows] == [1, 2]
  for key in (
    "loss",
    "grad_norm",
    "kl",
    "clip_fraction",
    "reward_std",
    "identical_reward_groups",
    "completion_length",
    "reward/total",
    "reward/format",
    "reward/thk_spatial",
  ):
    assert key in row, key
  assert all(np.isfinite(r["loss"]) and np.isfinite(r["kl"]) for r in rows)
  assert 0 <= row["identical_reward_groups"] <= 1 and 0 < row["completion_length"] <= 16
  # The frozen reference is the SFT policy: the KL starts at (numerically) zero.
  assert rows[0]["kl"] < 1e-4


def test_gspo_from_a_hugging_face_init_resumes_with_its_reference(
  synthetic_data, sft_workdir, tmp_path
):
  """With beta > 0 the frozen reference is reloaded from `--init` on resume; a Hugging Face
  `--init` is read as one (it used to be read as an o3jax workdir, which it is not)."""
  import jax
  from flax import nnx

  from o3jax import sharding, workdir as workdir_lib
  from o3jax.convert.cli import o3jax_to_hf
  from o3jax.train import state as state_lib

  hf_dir = str(tmp_path / "hf")
  o3jax_to_hf(sft_workdir, hf_dir)
  cfg = load_config(CONFIG)
  cfg = cfg.replace(
    batch_size=2,
    checkpoint_every=1,
    gspo=dataclasses.replace(cfg.gspo, group_size=2, max_new_tokens=8, beta=0.04),
  )
  workdir = str(tmp_path / "gspo_hf")
  train_gspo(cfg, synthetic_data, workdir, steps=1, init=hf_dir)
  row = train_gspo(cfg, synthetic_data, workdir, steps=2, init=hf_dir)
  assert row["step"] == 2 and np.isfinite(row["kl"])
  # The reference a resume loads from the Hugging Face directory is the SFT policy itself.
  _, abstract = state_lib.abstract_split(workdir_lib.read_model_config(sft_workdir))
  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  from_hf = dict(nnx.to_flat_state(workdir_lib.load_params(hf_dir, abstract, mesh)))
  from_sft = dict(nnx.to_flat_state(workdir_lib.load_params(sft_workdir, abstract, mesh)))
  assert from_hf.keys() == from_sft.keys()
  for path, var in from_sft.items():
    np.testing.assert_array_equal(
      np.asarray(from_hf[path].get_value()), np.asarray(var.get_value())
    )
