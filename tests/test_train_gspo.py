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
