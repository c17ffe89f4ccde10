"""Logit parity of the NNX Qwen2.5-VL with transformers on a tiny perturbed random model."""

import numpy as np
import pytest
import torch
import transformers

from hf_reference import hf_logits, mm_token_type_ids, perturbed_hf_model, text_tokens, vision_block
from o3jax.convert import load_pretrained, save_pretrained
from o3jax.models import config as config_lib
from o3jax.models import get_rope_index, layout_for, rope_index_for

CFG = config_lib.tiny()
RTOL = 1e-4


def assert_close(ours, ref, rtol=RTOL):
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape
  err = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
  assert err < rtol, f"max error relative to max |ref| = {err:.2e}"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  model = perturbed_hf_model(CFG)
  path = tmp_path_factory.mktemp("hf_tiny")
  model.save_pretrained(path)
  return model, str(path)


@pytest.fixture(scope="module")
def ours(hf_dir):
  return load_pretrained(hf_dir[1])


def _pixels(rng, grids):
  n = int(sum(t * h * w for t, h, w in grids))
  return rng.standard_normal((n, CFG.vision.patch_dim)).astype(np.float32)


def test_text_only(hf_dir, ours):
  rng = np.random.default_rng(0)
  ids = np.array([text_tokens(rng, 19)])
  assert_close(ours(ids), hf_logits(hf_dir[0], CFG, ids))


def test_one_image(hf_dir, ours):
  rng = np.random.default_rng(1)
  grid = np.array([[1, 10, 14]])  # 5 x 7 merged units: windows of 2 need padding
  ids = np.array([text_tokens(rng, 5) + vision_block(CFG, "image", grid[0]) + text_tokens(rng, 6)])
  pv = _pixels(rng, grid)
  assert_close(
    ours(ids, pixel_values=pv, image_grid_thw=grid),
    hf_logits(hf_dir[0], CFG, ids, pixel_values=pv, image_grid_thw=grid),
  )


@pytest.mark.parametrize("rule", ["transformers5", "qwen"])
def test_one_video_with_seconds(hf_dir, ours, rule):
  """transformers 5.x positions with its own rule; Qwen's rule through position_ids."""
  rng = np.random.default_rng(2)
  grid = np.array([[4, 6, 10]])
  sec = np.array([1.5], np.float32)  # time ids 0, 3, 6, 9 exceed the 3 x 5 spatial extent
  ids = np.array([text_tokens(rng, 4) + vision_block(CFG, "video", grid[0]) + text_tokens(rng, 7)])
  pv = _pixels(rng, grid)
  kw = dict(pixel_values_videos=pv, video_grid_thw=grid, second_per_grid_ts=sec)
  got = ours(ids, rope_rule=rule, **kw)
  pos = None if rule == "transformers5" else rope_index_for(CFG, ids, None, None, grid, sec)[0]
  assert_close(got, hf_logits(hf_dir[0], CFG, ids, position_ids=pos, **kw))


def test_batch_of_two_with_padding(hf_dir, ours):
  rng = np.random.default_rng(3)
  grids = np.array([[1, 6, 8], [1, 4, 6]])
  a = text_tokens(rng, 3) + vision_block(CFG, "image", grids[0]) + text_tokens(rng, 5)
  b = text_tokens(rng, 2) + vision_block(CFG, "image", grids[1]) + text_tokens(rng, 4)
  n = max(len(a), len(b))
  ids = np.zeros((2, n), np.int64)
  mask = np.zeros((2, n), np.int64)
  ids[0, n - len(a) :], mask[0, n - len(a) :] = a, 1  # left padding
  ids[1, n - len(b) :], mask[1, n - len(b) :] = b, 1
  pv = _pixels(rng, grids)
  ref = hf_logits(hf_dir[0], CFG, ids, attention_mask=mask, pixel_values=pv, image_grid_thw=grids)
  got = np.asarray(
    ours(ids, attention_mask=mask, pixel_values=pv, image_grid_thw=grids, rope_rule="transformers5")
  )
  valid = mask.astype(bool)
  assert_close(got[valid], ref[valid])


def test_large_grids_window_padding_and_full_blocks(hf_dir, ours):
  """Image and video together; 9 x 11 units per frame -> padded windows in every frame."""
  rng = np.random.default_rng(4)
  igrid, vgrid = np.array([[1, 18, 22]]), np.array([[2, 14, 18]])
  ids = np.array(
    [
      text_tokens(rng, 3)
      + vision_block(CFG, "image", igrid[0])
      + text_tokens(rng, 2)
      + vision_block(CFG, "video", vgrid[0])
      + text_tokens(rng, 4)
    ]
  )
  pv, pvv = _pixels(rng, igrid), _pixels(rng, vgrid)
  sec = np.array([0.5], np.float32)
  kw = dict(
    pixel_values=pv,
    image_grid_thw=igrid,
    pixel_values_videos=pvv,
    video_grid_thw=vgrid,
    second_per_grid_ts=sec,
  )
  layout = layout_for(CFG, vgrid)
  assert layout.windows.tokens.shape[0] > 2 and not layout.windows.valid.all()
  assert (
    set(CFG.vision.fullatt_block_indexes)
    and len(CFG.vision.fullatt_block_indexes) < CFG.vision.depth
  )
  assert_close(ours(ids, rope_rule="transformers5", **kw), hf_logits(hf_dir[0], CFG, ids, **kw))


def test_vision_tower_output(hf_dir, ours):
  rng = np.random.default_rng(5)
  grid = np.array([[1, 18, 22], [2, 10, 6]])
  pv = _pixels(rng, grid)
  with torch.no_grad():
    ref = (
      hf_dir[0].model.visual(torch.from_numpy(pv), grid_thw=torch.from_numpy(grid)).pooler_output
    )
  assert_close(ours.visual(pv, layout_for(CFG, grid)), ref.numpy())


def test_position_ids_equal_transformers(hf_dir):
  rng = np.random.default_rng(6)
  igrid, vgrid = np.array([[1, 4, 6]]), np.array([[3, 6, 4], [2, 4, 4]])
  sec = np.array([2.0, 0.7], np.float32)
  seq = (
    text_tokens(rng, 3)
    + vision_block(CFG, "video", vgrid[0])
    + text_tokens(rng, 2)
    + vision_block(CFG, "image", igrid[0])
    + vision_block(CFG, "video", vgrid[1])
    + text_tokens(rng, 3)
  )
  ids = np.array([[0] * 3 + seq, seq + [0] * 3])
  mask = np.array([[0] * 3 + [1] * len(seq), [1] * len(seq) + [0] * 3])
  # Grids repeat per row: transformers consumes them in order across the batch.
  igrids, vgrids = np.concatenate([igrid] * 2), np.concatenate([vgrid] * 2)
  secs = np.concatenate([sec] * 2)
  with torch.no_grad():
    ref, ref_delta = hf_dir[0].model.get_rope_index(
      torch.from_numpy(ids),
      torch.from_numpy(mm_token_type_ids(CFG, ids)),
      torch.from_numpy(igrids),
      torch.from_numpy(vgrids),
      torch.from_numpy(secs),
      attention_mask=torch.from_numpy(mask),
    )
  ours, delta = rope_index_for(CFG, ids, mask, igrids, vgrids, secs, rule="transformers5")
  np.testing.assert_array_equal(ours, ref.numpy())
  np.testing.assert_array_equal(delta, ref_delta.numpy())


def test_qwen_rule_hand_computed():
  """Original rule: text after a block resumes at max(block ids) + 1."""
  v = 7  # video token
  ids = np.array([[5, 5] + [v] * 4 + [5]])  # grid (2, 2, 4): 2 frames of 1 x 2 units
  pos, delta = get_rope_index(
    ids,
    image_token_id=6,
    video_token_id=v,
    spatial_merge_size=2,
    tokens_per_second=2,
    video_grid_thw=np.array([[2, 2, 4]]),
    second_per_grid_ts=np.array([2.0]),
  )
  # time: 2 + floor(k * 2.0 * 2) = 2, 2, 6, 6; rows 2; cols 2, 3, 2, 3; text resumes at 7.
  np.testing.assert_array_equal(
    pos[:, 0], [[0, 1, 2, 2, 6, 6, 7], [0, 1, 2, 2, 2, 2, 7], [0, 1, 2, 3, 2, 3, 7]]
  )
  assert delta[0, 0] == 8 - 7
  pos5, _ = get_rope_index(
    ids,
    image_token_id=6,
    video_token_id=v,
    spatial_merge_size=2,
    tokens_per_second=2,
    video_grid_thw=np.array([[2, 2, 4]]),
    second_per_grid_ts=np.array([2.0]),
    rule="transformers5",
  )
  assert pos5[0, 0, -1] == 2 + 2  # block start + max(1, 2) units


def test_save_pretrained_loads_in_transformers(hf_dir, ours, tmp_path):
  save_pretrained(ours, str(tmp_path))
  reloaded = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
    str(tmp_path), dtype=torch.float32
  ).eval()
  rng = np.random.default_rng(7)
  grid = np.array([[2, 6, 8]])
  ids = np.array([text_tokens(rng, 4) + vision_block(CFG, "video", grid[0]) + text_tokens(rng, 3)])
  kw = dict(
    pixel_values_videos=_pixels(rng, grid),
    video_grid_thw=grid,
    second_per_grid_ts=np.array([1.0], np.float32),
  )
  ref = hf_logits(hf_dir[0], CFG, ids, **kw)
  assert_close(hf_logits(reloaded, CFG, ids, **kw), ref)
  # Every tensor survives the round trip bit for bit.
  original = dict(hf_dir[0].state_dict())
  for name, tensor in reloaded.state_dict().items():
    assert torch.equal(tensor, original[name]), name
