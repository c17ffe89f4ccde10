"""Frame sampling, smart_resize and patchification against transformers and the formulas."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
  smart_resize as hf_smart_resize,
)

from o3jax.processing import frames as F
from o3jax.processing import patchify
from o3jax.processing.config import CLIP_MEAN, CLIP_STD, TINY, ProcessingConfig
from o3jax.processing.media import read_video
from data_fixtures import write_test_video

REF = ProcessingConfig()
# Per-frame pixel cap of the reference: max(min(128*784, total/16*2), int(128*784*1.05)).
REF_FRAME_MAX = 105369


@pytest.mark.parametrize(
  "height,width,min_pixels,max_pixels,expected",
  [
    (720, 1280, 100352, REF_FRAME_MAX, (224, 420)),  # 16:9 -> 420x224 (docs/reference.md section 2)
    (1080, 1920, 100352, REF_FRAME_MAX, (224, 420)),
    (480, 640, 100352, REF_FRAME_MAX, (280, 364)),
    (100, 3000, 3136, 200704, (56, 2436)),  # aspect 30
    (20, 30, 3136, 200704, (56, 84)),  # below min_pixels: scaled up
    (84, 112, 3136, 6272, (56, 84)),  # the tiny synthetic frames
  ],
)
def test_smart_resize_hand_computed(height, width, min_pixels, max_pixels, expected):
  assert F.smart_resize(height, width, 28, min_pixels, max_pixels) == expected


def test_smart_resize_matches_transformers_on_many_sizes():
  rng = np.random.default_rng(0)
  sizes = [(int(h), int(w)) for h, w in rng.integers(8, 4000, (400, 2))]
  sizes += [(17, 3000), (3000, 17), (29, 5000), (1, 150), (224, 420), (56, 56)]
  for height, width in sizes:
    for lo, hi in ((3136, 200704), (100352, REF_FRAME_MAX), (56 * 56, 28 * 28 * 1280)):
      if max(height, width) / min(height, width) > 200:
        with pytest.raises(ValueError, match="aspect ratio"):
          F.smart_resize(height, width, 28, lo, hi)
        continue
      assert F.smart_resize(height, width, 28, lo, hi) == hf_smart_resize(height, width, 28, lo, hi)


def test_reference_frame_size_uses_the_video_pixel_formula():
  assert F.video_frame_size(720, 1280, 16, REF) == (224, 420)
  # The 1.05 factor matters: at max_pixels = 128*784 exactly this would be (252, 392).
  height, width = F.video_frame_size(480, 854, 16, REF)
  assert (height, width) == F.smart_resize(480, 854, 28, 100352, REF_FRAME_MAX)
  # A tight total budget lowers the per-frame cap: total / n * 2.
  cfg = ProcessingConfig(
    video_min_pixels=4 * 784, video_max_pixels=64 * 784, video_total_pixels=16 * 784 * 8
  )
  assert F.video_frame_size(720, 1280, 16, cfg) == F.smart_resize(720, 1280, 28, 4 * 784, 16 * 784)


@pytest.mark.parametrize(
  "total,fps,expected",
  [
    (300, 30, 16),  # 10 s at 2 fps = 20, capped at 16
    (90, 30, 6),  # 3 s -> 6
    (30, 30, 4),  # 1 s -> 2, raised to min 4
    (7, 30, 4),  # min 4 frames, video has 7
    (3, 30, 2),  # the video limits it: floor(3 / 2) * 2
    (125, 25, 10),
    (101, 10, 16),
    (33, 8, 8),  # 8.25 -> 8
    (9, 1, 8),  # 18 wanted, 9 frames -> 8
    (2, 30, 2),
  ],
)
def test_num_frames_table(total, fps, expected):
  assert F.num_frames(total, fps, REF) == expected


def test_num_frames_follows_config_and_rejects_one_frame():
  cfg = ProcessingConfig(fps=1.0, min_frames=2, max_frames=6)
  assert F.num_frames(300, 30, cfg) == 6
  assert F.num_frames(90, 30, cfg) == 2
  with pytest.raises(ValueError, match="cannot sample"):
    F.num_frames(1, 30, REF)


def test_frame_indices_match_torch_linspace_round():
  for total in list(range(2, 400)) + [1000, 4321, 90000]:
    for n in range(2, min(total, 64) + 1, 2):
      expected = torch.linspace(0, total - 1, n).round().long().numpy()
      np.testing.assert_array_equal(F.frame_indices(total, n), expected, err_msg=f"{total=} {n=}")


@pytest.mark.parametrize(
  "height,width", [(60, 90), (224, 420), (37, 501), (300, 17), (480, 640), (28, 28)]
)
def test_image_patchify_matches_transformers(height, width):
  rng = np.random.default_rng(height * width)
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  processor = Qwen2VLImageProcessorPil(
    min_pixels=REF.image_min_pixels, max_pixels=REF.image_max_pixels
  )
  expected = processor(images=[Image.fromarray(image)], return_tensors="np")
  out_h, out_w = F.image_size(height, width, REF)
  pixel_values, grid = patchify.patchify(F.resize(image, out_h, out_w)[None], REF, as_images=True)
  np.testing.assert_array_equal(grid, expected["image_grid_thw"])
  np.testing.assert_allclose(pixel_values, expected["pixel_values"], atol=1e-5, rtol=0)


def test_frames_as_images_match_transformers_image_by_image():
  rng = np.random.default_rng(3)
  frames = rng.integers(0, 256, (3, 56, 84, 3), dtype=np.uint8)
  processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=28 * 28 * 64)
  expected = processor(images=[Image.fromarray(f) for f in frames], return_tensors="np")
  pixel_values, grid = patchify.patchify(frames, REF, as_images=True)
  np.testing.assert_array_equal(grid, expected["image_grid_thw"])
  np.testing.assert_allclose(pixel_values, expected["pixel_values"], atol=1e-5, rtol=0)


def _video_patch_reference(frames: np.ndarray) -> np.ndarray:
  """Row by row from the definition: temporal group, 2x2 merge block, patch; values in the
  order channel, time, row, column."""
  norm = (frames.astype(np.float64) / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
  if len(norm) % 2:
    norm = np.concatenate([norm, norm[-1:]])
  _, height, width, _ = norm.shape
  rows = []
  for t in range(len(norm) // 2):
    for bh in range(height // 28):
      for bw in range(width // 28):
        for mh in range(2):
          for mw in range(2):
            y, x = (2 * bh + mh) * 14, (2 * bw + mw) * 14
            patch = norm[2 * t : 2 * t + 2, y : y + 14, x : x + 14, :]  # [time, py, px, c]
            rows.append(patch.transpose(3, 0, 1, 2).reshape(-1))
  return np.stack(rows)


@pytest.mark.parametrize("num", [4, 5])
def test_video_patchify_matches_definition(num):
  rng = np.random.default_rng(num)
  frames = rng.integers(0, 256, (num, 56, 84, 3), dtype=np.uint8)
  pixel_values, grid = patchify.patchify(frames, REF, as_images=False)
  assert grid.tolist() == [[(num + 1) // 2, 4, 6]]
  np.testing.assert_allclose(pixel_values, _video_patch_reference(frames), atol=1e-5, rtol=0)


def test_image_is_a_video_of_two_equal_frames():
  frame = np.random.default_rng(5).integers(0, 256, (1, 56, 56, 3), dtype=np.uint8)
  as_image, _ = patchify.patchify(frame, REF, as_images=True)
  as_video, _ = patchify.patchify(np.concatenate([frame, frame]), REF, as_images=False)
  np.testing.assert_array_equal(as_image, as_video)


def test_read_video_samples_and_resizes(tmp_path):
  path = write_test_video(str(tmp_path / "v.mp4"), frames=40, width=112, height=84, fps=8)
  clip = read_video(path, TINY)
  n = F.num_frames(40, 8.0, TINY)  # 5 s at 2 fps = 10, capped at 8
  assert n == 8 and clip.frames.shape == (8, 56, 84, 3) and clip.frame_size == (84, 56)
  np.testing.assert_array_equal(clip.indices, F.frame_indices(40, 8))
  assert clip.sample_fps == pytest.approx(8 / 40 * 8)
  assert clip.source_size == (112, 84) and clip.total_frames == 40
  import decord  # pylint: disable=import-outside-toplevel

  raw = decord.VideoReader(path).get_batch(clip.indices.tolist()).asnumpy()
  for got, frame in zip(clip.frames, raw):
    np.testing.assert_array_equal(
      got, np.asarray(Image.fromarray(frame).resize((84, 56), Image.BICUBIC))
    )
