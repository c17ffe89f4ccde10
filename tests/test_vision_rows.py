"""Per-row vision inputs (model_batch -> vmapped tower -> per-row scatter) against the
concatenated layout of transformers, which the HF parity tests pin."""

import jax
import numpy as np
from flax import nnx

from o3jax.models import config as config_lib
from o3jax.models.qwen2_5_vl import prepare_inputs
from o3jax.models.vision_rows import encode_rows, scatter_rows
from o3jax.train import state as state_lib
from o3jax.train.batch import model_batch, select_rows
from o3jax.train.loss import batch_hidden, next_token_logprobs, sft_loss, token_logprobs

# Per row: the images (t, h, w) it holds, and whether it holds a video. Rows differ in
# count and size (row 1 has no image), so per-row padding and empty rows are exercised.
ROWS = [[(1, 4, 6), (1, 4, 4)], [], [(1, 6, 8)]]
VIDEO_ROW, VIDEO_GRID = 1, (2, 4, 4)


def _pipeline_batch(cfg, rng, t=96):
  b = len(ROWS)
  ids = rng.integers(0, 900, (b, t)).astype(np.int32)
  mu = cfg.vision.merge_unit
  grids, pix, vgrids, vpix = [], [], [], []
  for r, images in enumerate(ROWS):
    pos = 2
    for grid in images:
      n = int(np.prod(grid))
      block = [cfg.vision_start_token_id] + [cfg.image_token_id] * (n // mu)
      ids[r, pos : pos + len(block) + 1] = block + [cfg.vision_end_token_id]
      pos += len(block) + 3
      grids.append(grid)
      pix.append(rng.standard_normal((n, cfg.vision.patch_dim)).astype(np.float32))
    if r == VIDEO_ROW:
      n = int(np.prod(VIDEO_GRID))
      block = [cfg.vision_start_token_id] + [cfg.video_token_id] * (n // mu)
      ids[r, pos : pos + len(block) + 1] = block + [cfg.vision_end_token_id]
      vgrids.append(VIDEO_GRID)
      vpix.append(rng.standard_normal((n, cfg.vision.patch_dim)).astype(np.float32))
  mask = np.ones_like(ids)
  mask[2, -5:] = 0  # right padding on one row
  pv = np.concatenate(pix)
  # The pipeline pads the concatenation with unused patches and (0,0,0) grids.
  pv = np.concatenate([pv, np.zeros((40, pv.shape[1]), np.float32)])
  return {
    "input_ids": ids,
    "attention_mask": mask,
    "loss_mask": mask.copy(),
    "pixel_values": pv,
    "image_grid_thw": np.array(grids + [(0, 0, 0)] * 2, np.int32),
    "pixel_values_videos": np.concatenate(vpix),
    "video_grid_thw": np.array(vgrids, np.int32),
    "second_per_grid_ts": np.ones(1, np.float32),
  }


def test_per_row_vision_equals_the_concatenated_layout():
  cfg = config_lib.tiny()
  raw = _pipeline_batch(cfg, np.random.default_rng(0))
  model = state_lib.build_model(cfg, jax.random.key(0))
  n_img = int(np.prod(raw["image_grid_thw"], -1).sum())
  flat = prepare_inputs(
    cfg,
    raw["input_ids"],
    raw["attention_mask"],
    raw["pixel_values"][:n_img],
    raw["image_grid_thw"][:-2],
    raw["pixel_values_videos"],
    raw["video_grid_thw"],
    raw["second_per_grid_ts"],
  )
  want = np.asarray(model(**flat))

  mb = model_batch(cfg, raw)
  assert mb["pixel_values"].shape[:3] == (1, 3, 48)  # [M, B, per-row bucket]
  assert mb["image_layout"].patch_order.shape == (1, 3, 48)
  assert mb["pixel_values_videos"].shape[:2] == (1, 3)
  one = jax.tree.map(lambda x: x[0], mb)
  graphdef, params = nnx.split(model)

  @jax.jit
  def rows(p, one):
    m = nnx.merge(graphdef, p)
    return m.text.logits(batch_hidden(m, one)), sft_loss(m, one)[0]

  got, (loss_sum, count) = rows(params, one)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)
  # The loss against a plain computation from the concatenated path's logits.
  lp = np.asarray(token_logprobs(want[:, :-1], raw["input_ids"][:, 1:]))
  lm = raw["loss_mask"][:, 1:].astype(np.float32)
  np.testing.assert_allclose(float(loss_sum), -(lp * lm).sum(), rtol=1e-5)
  assert float(count) == lm.sum()


def test_scatter_rows_hand_computed():
  x = np.zeros((2, 5, 1), np.float32)
  ids = np.array([[7, 9, 9, 7, 9], [9, 7, 7, 7, 7]])
  feats = np.array([[[1.0], [2.0], [3.0]], [[10.0], [20.0], [30.0]]])
  out = np.asarray(scatter_rows(x, ids, 9, feats))[..., 0]
  np.testing.assert_array_equal(out, [[0, 1, 2, 0, 3], [10, 0, 0, 0, 0]])
  # Rows sharing a vision row (GSPO's G rollouts of one prompt) read the same features.
  out = np.asarray(scatter_rows(x, ids, 9, feats[1:], vision_row=np.array([0, 0])))[..., 0]
  np.testing.assert_array_equal(out, [[0, 10, 20, 0, 30], [10, 0, 0, 0, 0]])


def test_gspo_groups_encode_each_prompt_once(monkeypatch):
  """G rollouts of a prompt share its vision: the tower encodes prompts, not prompts x G,
  and the log-probs equal those of the batch with every row's vision repeated."""
  import o3jax.models.qwen2_5_vl as qwen

  cfg = config_lib.tiny()
  raw = _pipeline_batch(cfg, np.random.default_rng(1))
  group = 2
  rows = select_rows(cfg, raw, np.repeat(np.arange(len(ROWS)), group))
  rows["loss_mask"] = np.repeat(raw["loss_mask"], group, axis=0)
  model = state_lib.build_model(cfg, jax.random.key(0))
  graphdef, params = nnx.split(model)
  encoded = []

  def counting(tower, pixels, layout):
    encoded.append(pixels.shape[0])  # rows the vision tower encodes in this call
    return encode_rows(tower, pixels, layout)

  monkeypatch.setattr(qwen, "encode_rows", counting)
  out = {}
  for g in (1, group):
    mb = jax.tree.map(lambda x: x[0], model_batch(cfg, rows, group=g))
    f = jax.jit(lambda p, mb: next_token_logprobs(nnx.merge(graphdef, p), mb))
    encoded.clear()
    out[g] = np.asarray(f(params, mb))
    # One call per modality (images, video), each over the distinct vision rows.
    assert encoded == [len(ROWS) * group // g] * 2
  np.testing.assert_allclose(out[group], out[1], atol=1e-6, rtol=0)
