"""A tiny Qwen3-VL end to end through the data pipeline: synthetic videos (PyAV) become an
SFT batch with Qwen3-VL's processing (chosen by the config's model), whose position ids
equal transformers' Qwen3VLModel.get_rope_index and whose logits equal transformers'
Qwen3VLForConditionalGeneration on the same ids and pixels (fp32, 1e-4)."""

import numpy as np
import torch

from hf_reference import hf_logits, perturbed_hf_model
from o3jax.convert import load_pretrained
from o3jax.data.pipeline import bucket_for_videos
from o3jax.models.qwen3_vl_config import qwen3_tiny
from o3jax.processing.tokenizer import build_demo_tokenizer, special_token_ids
from o3jax.train.batch import model_batch
from o3jax.train.config import load_config
from o3jax.train.run import processing_config
from o3jax.train.sft import data_iterator

VIDEO_TASKS = (
  "temporal QA",
  "temporal QA (MCQ)",
  "General video QA MCQ",
  "General video QA Free-form",
  "temporal-spatial free-form QA",
)


def test_qwen3_batch_positions_and_logits_equal_transformers(synthetic_data, tmp_path):
  from data_fixtures import CONFIGS

  cfg = load_config(f"{CONFIGS}/tiny_synthetic.py")
  cfg = cfg.replace(
    model="qwen3_tiny",
    processing={**cfg.processing, "presentation": "video"},
    tasks=VIDEO_TASKS,
    batch_size=2,
  )
  processing = processing_config(cfg)  # the preset's family decides: Qwen3-VL's
  assert (processing.model_type, processing.patch_size, processing.image_mean) == (
    "qwen3_vl",
    16,
    (0.5,) * 3,
  )
  cfg = cfg.replace(buckets=(bucket_for_videos(processing, 1024, (112, 84)),))
  tokenizer = build_demo_tokenizer()
  ids = special_token_ids(tokenizer)
  batch = next(data_iterator(cfg, synthetic_data, tokenizer, "sft", "STGR-SFT.json"))

  model_cfg = qwen3_tiny(**{k: v for k, v in ids.items() if k != "pad_token_id"})
  grids = batch["video_grid_thw"][batch["video_grid_thw"][:, 0] > 0]
  input_ids, mask = batch["input_ids"], batch["attention_mask"]
  # Every temporal patch is its own block after its timestamp text.
  starts = (input_ids == ids["vision_start_token_id"]).sum(1)
  assert starts.tolist() == grids[:, 0].tolist()
  assert batch["pixel_values_videos"].shape[1] == 3 * 2 * 16 * 16

  hf = perturbed_hf_model(model_cfg)
  types = (input_ids == ids["image_token_id"]) * 1 + (input_ids == ids["video_token_id"]) * 2
  ref, _ = hf.model.get_rope_index(
    torch.as_tensor(input_ids.astype(np.int64)),
    mm_token_type_ids=torch.as_tensor(types),
    video_grid_thw=torch.as_tensor(grids),
    attention_mask=torch.as_tensor(mask),
  )
  positions = model_batch(model_cfg, batch)["position_ids"][0]
  real = mask.astype(bool)
  np.testing.assert_array_equal(positions[:, real], ref.numpy()[:, real])

  hf.save_pretrained(tmp_path / "hf")
  ours = load_pretrained(str(tmp_path / "hf"))
  row_ids = input_ids[:1, : int(mask[0].sum())]
  patches = int(np.prod(grids[0]))
  pixels = batch["pixel_values_videos"][:patches]
  got = np.asarray(ours(row_ids, pixel_values_videos=pixels, video_grid_thw=grids[:1]))
  want = hf_logits(hf, model_cfg, row_ids, pixel_values_videos=pixels, video_grid_thw=grids[:1])
  err = np.max(np.abs(got - want)) / np.max(np.abs(want))
  print(
    f"logits: {row_ids.shape[1]} tokens, grid {grids[0].tolist()}, max error / max |ref| {err:.2e}"
  )
  assert np.isfinite(got).all() and err < 1e-4


def test_infer_and_eval_ask_a_qwen3_model_with_its_processing(tmp_path):
  """A Qwen3-VL directory without recorded settings gets transformers' Qwen3-VL defaults;
  a budget preset keeps its budgets and takes Qwen3-VL's processing; the general
  benchmarks' queries carry the chat template's default system turn: none for Qwen3-VL."""
  import dataclasses

  from o3jax.eval import generate as G
  from o3jax.eval.bench_run import item_query
  from o3jax.eval.benchmarks import Item
  from o3jax.eval.generate import Video
  from o3jax.processing.config import QWEN3_VL, TINY, for_model
  from o3jax.processing.presentation import VisualInput

  perturbed_hf_model(qwen3_tiny()).save_pretrained(tmp_path / "q3")
  path = str(tmp_path / "q3")
  assert G.ask_settings(path).processing == QWEN3_VL
  tiny = G.ask_settings(path, "tiny").processing
  assert tiny == for_model(TINY, "qwen3_vl") and tiny.patch_size == 16
  assert dataclasses.replace(tiny, model_type="qwen2_5_vl", patch_size=14) != TINY  # mean/std

  empty = np.zeros((0, 3), np.int64)
  visual = VisualInput(
    [], np.zeros((0, 1536), np.float32), empty, np.zeros((0, 1536)), empty, np.zeros(0), (64, 64)
  )
  video = Video("v.mp4", visual, np.zeros((1, 64, 64, 3), np.uint8), (0.0,), 1.0, (64, 64))
  item = Item("1", "Which?", "Which?", "AB", "A", "multiple-choice", "v.mp4", {}, {})
  assert item_query(item, video, tiny).system is None
  assert item_query(item, video, TINY).system == "You are a helpful assistant."
