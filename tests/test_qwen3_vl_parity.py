"""Logit parity of the NNX Qwen3-VL with transformers' Qwen3VLForConditionalGeneration on a
tiny perturbed random model (fp32): text, image, video, image + video, left padding; the
export loads back in transformers with the same logits."""

import json

import numpy as np
import pytest
import transformers

from hf_reference import hf_logits, perturbed_hf_model, text_tokens, vision_block
from o3jax.convert import load_pretrained, save_pretrained
from o3jax.models import Qwen3_VL, layout_for, rope_index_for
from o3jax.models.qwen3_vl_config import qwen3_tiny

CFG = qwen3_tiny()
RTOL = 1e-4


def assert_close(ours, ref, rtol=RTOL):
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape
  err = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
  print(f"max error relative to max |ref| = {err:.2e}")
  assert err < rtol, f"max error relative to max |ref| = {err:.2e}"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  model = perturbed_hf_model(CFG)
  path = tmp_path_factory.mktemp("hf_qwen3_tiny")
  model.save_pretrained(path)
  return model, str(path)


@pytest.fixture(scope="module")
def ours(hf_dir):
  return load_pretrained(hf_dir[1])


def _pixels(rng, grids):
  n = int(sum(t * h * w for t, h, w in grids))
  return rng.standard_normal((n, CFG.vision.patch_dim)).astype(np.float32)


def video_tokens(rng, grid) -> list[int]:
  """The processor's layout: each frame's block after its timestamp text."""
  t, h, w = grid
  out = []
  for _ in range(t):
    out += text_tokens(rng, 3) + vision_block(CFG, "video", (1, h, w))
  return out


def test_loads_as_qwen3(ours):
  assert isinstance(ours, Qwen3_VL)


def test_text_only(hf_dir, ours):
  rng = np.random.default_rng(0)
  ids = np.array([text_tokens(rng, 19)])
  assert_close(ours(ids), hf_logits(hf_dir[0], CFG, ids))


def test_one_image(hf_dir, ours):
  rng = np.random.default_rng(1)
  grid = np.array([[1, 10, 14]])  # not the 4 x 4 position grid: resampled
  ids = np.array([text_tokens(rng, 5) + vision_block(CFG, "image", grid[0]) + text_tokens(rng, 6)])
  pv = _pixels(rng, grid)
  assert_close(
    ours(ids, pixel_values=pv, image_grid_thw=grid),
    hf_logits(hf_dir[0], CFG, ids, pixel_values=pv, image_grid_thw=grid),
  )


def test_one_video(hf_dir, ours):
  rng = np.random.default_rng(2)
  grid = np.array([[3, 6, 8]])
  ids = np.array([text_tokens(rng, 4) + video_tokens(rng, grid[0]) + text_tokens(rng, 5)])
  pv = _pixels(rng, grid)
  assert_close(
    ours(ids, pixel_values_videos=pv, video_grid_thw=grid),
    hf_logits(hf_dir[0], CFG, ids, pixel_values_videos=pv, video_grid_thw=grid),
  )


def _image_and_video(rng):
  ig, vg = np.array([[1, 4, 6], [1, 8, 4]]), np.array([[2, 4, 4]])
  ids = (
    text_tokens(rng, 3)
    + vision_block(CFG, "image", ig[0])
    + text_tokens(rng, 2)
    + video_tokens(rng, vg[0])
    + text_tokens(rng, 2)
    + vision_block(CFG, "image", ig[1])
    + text_tokens(rng, 4)
  )
  return ids, ig, vg


def test_image_and_video(hf_dir, ours):
  rng = np.random.default_rng(3)
  ids, ig, vg = _image_and_video(rng)
  ids = np.array([ids])
  pi, pv = _pixels(rng, ig), _pixels(rng, vg)
  kw = dict(pixel_values=pi, image_grid_thw=ig, pixel_values_videos=pv, video_grid_thw=vg)
  assert_close(ours(ids, **kw), hf_logits(hf_dir[0], CFG, ids, **kw))


def test_batch_with_left_padding(hf_dir, ours):
  rng = np.random.default_rng(4)
  row0, ig, vg = _image_and_video(rng)
  grid1 = np.array([[1, 6, 6]])
  row1 = text_tokens(rng, 2) + vision_block(CFG, "image", grid1[0]) + text_tokens(rng, 3)
  n = max(len(row0), len(row1))
  ids = np.zeros((2, n), np.int64)
  mask = np.zeros((2, n), np.int64)
  for r, row in enumerate((row0, row1)):
    ids[r, n - len(row) :] = row
    mask[r, n - len(row) :] = 1
  images = np.concatenate([ig, grid1])
  pi, pv = _pixels(rng, images), _pixels(rng, vg)
  kw = dict(pixel_values=pi, image_grid_thw=images, pixel_values_videos=pv, video_grid_thw=vg)
  ref = hf_logits(hf_dir[0], CFG, ids, mask, **kw)
  got = np.asarray(ours(ids, mask, **kw))
  real = mask.astype(bool)
  assert_close(got[real], ref[real])


def test_position_ids_equal_transformers(hf_dir):
  import torch

  rng = np.random.default_rng(5)
  ids, ig, vg = _image_and_video(rng)
  ids = np.array([[7, 7] + ids])
  mask = np.ones_like(ids)
  mask[0, :2] = 0
  model = hf_dir[0]
  tt = lambda x: torch.as_tensor(x)
  ref, ref_delta = model.model.get_rope_index(
    tt(ids),
    mm_token_type_ids=tt((ids == CFG.image_token_id) * 1 + (ids == CFG.video_token_id) * 2),
    image_grid_thw=tt(ig),
    video_grid_thw=tt(vg),
    attention_mask=tt(mask),
  )
  ours, delta = rope_index_for(CFG, ids, mask, ig, vg)
  real = mask.astype(bool)
  np.testing.assert_array_equal(ours[:, real], ref.numpy()[:, real])
  np.testing.assert_array_equal(delta, ref_delta.numpy())


def test_vision_tower_and_deepstack_equal_transformers(hf_dir, ours):
  import torch

  rng = np.random.default_rng(6)
  grid = np.array([[2, 6, 10], [1, 4, 4]])
  pv = _pixels(rng, grid)
  with torch.no_grad():
    out = hf_dir[0].model.visual(torch.as_tensor(pv), grid_thw=torch.as_tensor(grid))
  padded = np.pad(pv, ((0, 16), (0, 0)))  # padding patches go last and change nothing
  feats, deepstack = ours.visual(padded, layout_for(CFG, grid, num_patches=padded.shape[0]))
  u = out.pooler_output.shape[0]
  assert_close(feats[:u], out.pooler_output.numpy(), 1e-5)
  for k, ref in enumerate(out.deepstack_features):
    assert_close(deepstack[k, :u], ref.numpy(), 1e-5)


def test_save_pretrained_loads_in_transformers(hf_dir, ours, tmp_path):
  save_pretrained(ours, str(tmp_path))
  cfg = json.loads((tmp_path / "config.json").read_text())
  assert cfg["model_type"] == "qwen3_vl"
  back = transformers.Qwen3VLForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
  rng = np.random.default_rng(7)
  ids, ig, vg = _image_and_video(rng)
  ids = np.array([ids])
  pi, pv = _pixels(rng, ig), _pixels(rng, vg)
  kw = dict(pixel_values=pi, image_grid_thw=ig, pixel_values_videos=pv, video_grid_thw=vg)
  assert_close(hf_logits(back, CFG, ids, **kw), hf_logits(hf_dir[0], CFG, ids, **kw), 1e-6)
  assert_close(load_pretrained(str(tmp_path))(ids, **kw), hf_logits(back, CFG, ids, **kw))
