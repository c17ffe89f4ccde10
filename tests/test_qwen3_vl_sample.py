"""Greedy sampling of the NNX Qwen3-VL equals transformers' `generate` (tiny random model,
left-padded prompts with images and a video in the processor's per-frame layout)."""

import jax
import numpy as np
import pytest
import torch

from hf_reference import mm_token_type_ids, perturbed_hf_model, text_tokens, vision_block
from o3jax import sample as sampling
from o3jax.convert import load_pretrained
from o3jax.models.qwen3_vl_config import qwen3_tiny

CFG = qwen3_tiny()
NEW = 24
PAD = 0


def video_tokens(rng, grid) -> list[int]:
  t, h, w = grid
  out = []
  for _ in range(t):
    out += text_tokens(rng, 3) + vision_block(CFG, "video", (1, h, w))
  return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  hf = perturbed_hf_model(CFG)
  path = tmp_path_factory.mktemp("hf_qwen3_sample")
  hf.save_pretrained(path)
  return hf, load_pretrained(str(path))


def test_greedy_equals_transformers_generate(models):
  hf, ours = models
  rng = np.random.default_rng(0)
  ig, vg = np.array([[1, 6, 8], [1, 4, 4]]), np.array([[3, 4, 6], [2, 6, 4]])
  rows = [
    text_tokens(rng, 4) + vision_block(CFG, "image", ig[0]) + video_tokens(rng, vg[0])
    + text_tokens(rng, 5),
    text_tokens(rng, 2) + video_tokens(rng, vg[1]) + vision_block(CFG, "image", ig[1])
    + text_tokens(rng, 3),
  ]  # fmt: skip
  n = max(map(len, rows))
  ids, mask = np.zeros((2, n), np.int64), np.zeros((2, n), np.int64)
  for i, row in enumerate(rows):
    ids[i, n - len(row) :], mask[i, n - len(row) :] = row, 1
  patches = lambda g: rng.standard_normal((int(np.prod(g, -1).sum()), CFG.vision.patch_dim))
  inputs = dict(
    input_ids=ids,
    attention_mask=mask,
    pixel_values=patches(ig).astype(np.float32),
    image_grid_thw=ig,
    pixel_values_videos=patches(vg).astype(np.float32),
    video_grid_thw=vg,
  )
  t = {k: torch.as_tensor(v) for k, v in inputs.items()}
  t["mm_token_type_ids"] = torch.as_tensor(mm_token_type_ids(CFG, ids))
  with torch.no_grad():
    out = hf.generate(
      **t,
      max_new_tokens=NEW,
      do_sample=False,
      eos_token_id=CFG.eos_token_id,
      pad_token_id=PAD,
      output_logits=True,
      return_dict_in_generate=True,
    )
  ref = out.sequences[:, n:].numpy()
  ref_logits = torch.stack(out.logits, 1).numpy()
  got = sampling.generate(
    ours,
    jax.random.key(0),
    max_new_tokens=NEW,
    greedy=True,
    eos_id=CFG.eos_token_id,
    pad_id=PAD,
    **inputs,
  )
  assert ref.shape == (2, NEW) and (ref != CFG.eos_token_id).all()
  np.testing.assert_array_equal(got.tokens, ref)
  x = ref_logits - ref_logits.max(-1, keepdims=True)
  logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
  ref_logp = np.take_along_axis(logp, ref[..., None], -1)[..., 0]
  err = np.max(np.abs(np.asarray(got.logprobs) - ref_logp)) / np.max(np.abs(ref_logp))
  print(f"greedy log-prob error relative to max |ref| = {err:.2e}")
  assert err < 1e-4
