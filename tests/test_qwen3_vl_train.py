"""Tiny-config SFT and GSPO steps run on Qwen3-VL (the trainer builds the model from the
config's preset, whose family also picks the processing: 16-pixel patches, Qwen3-VL's
frame sampling and resize rule)."""

import dataclasses
import json
import os

import numpy as np

from o3jax import workdir as workdir_lib
from o3jax.data.pipeline import bucket_for_videos
from o3jax.models.qwen3_vl_config import Qwen3VLConfig
from o3jax.processing.config import TINY, for_model
from o3jax.train.config import load_config
from o3jax.train.gspo import train_gspo
from o3jax.train.sft import train_sft

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny_synthetic.py")


def qwen3_config():
  cfg = load_config(CONFIG)
  bucket = bucket_for_videos(
    for_model(TINY, "qwen3_vl"), 640, (112, 84), max_key_frames=2, image_size=(112, 84)
  )
  return cfg.replace(model="qwen3_tiny", buckets=(bucket,))


def test_sft_then_gspo_steps_on_qwen3(synthetic_data, tmp_path):
  cfg = qwen3_config().replace(batch_size=4, checkpoint_every=2)
  sft = str(tmp_path / "sft")
  row = train_sft(cfg, synthetic_data, sft, steps=2)
  assert np.isfinite(row["loss"])
  assert isinstance(workdir_lib.model_config_of(sft), Qwen3VLConfig)
  cfg = cfg.replace(
    batch_size=2,
    checkpoint_every=1,
    gspo=dataclasses.replace(
      cfg.gspo, group_size=2, max_new_tokens=16, beta=0.04, updates_per_batch=2
    ),
  )
  gspo = str(tmp_path / "gspo")
  row = train_gspo(cfg, synthetic_data, gspo, steps=1, init=sft)
  with open(os.path.join(gspo, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows] == [1]
  assert np.isfinite(row["loss"]) and np.isfinite(row["kl"]) and rows[0]["kl"] < 1e-4
  assert 0 < row["completion_length"] <= 16
  # The run records the processing its model was trained with: Qwen3-VL's.
  recorded = workdir_lib.read_inference_settings(gspo).processing
  assert (recorded.model_type, recorded.patch_size, recorded.image_mean) == (
    "qwen3_vl",
    16,
    (0.5, 0.5, 0.5),
  )

  # infer reads the workdir's model config (a Qwen3-VL) and its processing (16-px patches);
  # convert writes a directory transformers loads as Qwen3-VL.
  from o3jax.cli import main

  video = os.path.join(synthetic_data, "videos", "v0000.mp4")
  out = tmp_path / "infer"
  argv = ["infer", "--model", gspo, "--video", video, "--question", "q", "--out", str(out)]
  assert main([*argv, "--max-new-tokens", "8"]) == 0
  assert json.loads((out / "answer.json").read_text())["frame_size"]
  back = str(tmp_path / "hf")
  assert main(["convert", "--to", "hf", "--src", sft, "--dst", back]) == 0
  import transformers

  hf = transformers.Qwen3VLForConditionalGeneration.from_pretrained(back)
  assert hf.config.model_type == "qwen3_vl"
