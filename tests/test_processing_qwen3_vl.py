"""Qwen3-VL processing against transformers (5.x, no torchvision installed).

Compared with transformers' own code: the video `smart_resize` of Qwen3-VL, the frame
sampling (`Qwen3VLVideoProcessor.sample_frames`), the patch count with and without the
per-frame cap (`get_num_of_video_patches`), the timestamps (`_calculate_timestamps`),
and end to end `Qwen3VLProcessor(text, images, videos)` (its sampling, resize rule,
normalisation, patch order, timestamp expansion and tokenization) with two pieces that
need torchvision swapped for what they compute: the resize kernel (PIL bicubic, the
kernel o3jax uses) and `normalize` ((x - mean) / std, torchvision's formula). The chat
template given to the processor is the system/user/assistant part of Qwen3-VL-Instruct's
(a system turn only when the conversation has one). Position ids are compared with
`Qwen3VLModel.get_rope_index` on the processor's ids.
"""

import decord
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import PreTrainedTokenizerFast, Qwen3VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import (
  smart_resize as hf_video_smart_resize,
)
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from data_fixtures import demo_tokenizer, write_test_video  # noqa: F401 (a fixture)
from hf_reference import perturbed_hf_model
from o3jax.models import rope_index_for
from o3jax.models.qwen3_vl_config import qwen3_tiny
from o3jax.processing import chat, media
from o3jax.processing import frames as F
from o3jax.processing import tokenizer as tok
from o3jax.processing.config import QWEN3_VL, TINY, ProcessingConfig, for_model
from o3jax.processing.presentation import joined, present_image, present_video

# Qwen3-VL-Instruct's template for system, user (image, video, text) and assistant turns.
TEMPLATE = (
  "{% if messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content[0].text }}"
  "<|im_end|>\n{% endif %}{% for m in messages %}{% if m.role != 'system' %}"
  "<|im_start|>{{ m.role }}\n{% for c in m.content %}{% if c.type == 'image' %}"
  "<|vision_start|><|image_pad|><|vision_end|>{% elif c.type == 'video' %}"
  "<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c.text }}{% endif %}{% endfor %}"
  "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
  "{% endif %}"
)


def test_config_geometry_and_defaults():
  q = for_model(TINY, "qwen3_vl")
  assert (q.patch_size, q.factor, q.patch_dim, q.image_mean, q.image_std) == (
    16,
    32,
    1536,
    (0.5,) * 3,
    (0.5,) * 3,
  )
  assert q.max_frames == TINY.max_frames  # the budgets stay
  assert for_model(q, "qwen2_5_vl").patch_size == 14
  vp = Qwen3VLVideoProcessor()
  assert (QWEN3_VL.video_min_pixels, QWEN3_VL.video_total_pixels) == (
    vp.size["shortest_edge"],
    vp.size["longest_edge"],
  )
  assert (QWEN3_VL.fps, QWEN3_VL.min_frames, QWEN3_VL.max_frames) == (
    vp.fps,
    vp.min_frames,
    vp.max_frames,
  )
  assert list(QWEN3_VL.image_mean) == list(vp.image_mean) == [0.5] * 3
  with pytest.raises(ValueError, match="qwen3_vl setting"):
    ProcessingConfig(video_max_pixels=None)
  with pytest.raises(ValueError, match="model_type"):
    for_model(TINY, "qwen2")


def test_video_smart_resize_equals_transformers():
  rng = np.random.default_rng(0)
  cases = [
    (int(n), int(h), int(w)) for n, h, w in rng.integers([2, 8, 8], [800, 3000, 3000], (300, 3))
  ]
  cases += [(2, 10, 3000), (3, 20, 20), (5, 31, 100), (16, 720, 1280), (768, 1080, 1920)]
  for n, h, w in cases:
    for lo, hi in ((128 * 1024, 768 * 1024), (4096, 25165824), (3136, 6272 * n)):
      try:
        expected = hf_video_smart_resize(n, h, w, 2, 32, lo, hi)
      except ValueError:
        with pytest.raises(ValueError):
          F.qwen3_video_smart_resize(n, h, w, 2, 32, lo, hi)
        continue
      assert F.qwen3_video_smart_resize(n, h, w, 2, 32, lo, hi) == expected, (n, h, w, lo, hi)
  with pytest.raises(ValueError, match="temporal_factor"):
    F.qwen3_video_smart_resize(1, 64, 64)


@pytest.mark.parametrize("min_frames,max_frames,fps", [(4, 768, 2.0), (4, 16, 2.0), (2, 6, 1.0)])
def test_frame_sampling_equals_transformers(min_frames, max_frames, fps):
  cfg = ProcessingConfig(
    model_type="qwen3_vl", min_frames=min_frames, max_frames=max_frames, fps=fps
  )
  vp = Qwen3VLVideoProcessor(min_frames=min_frames, max_frames=max_frames, fps=fps)
  for total in (2, 3, 7, 16, 40, 61, 100, 301, 1000, 9000):
    for video_fps in (1.0, 8.0, 23.976, 25.0, 30.0, 59.94):
      expected = vp.sample_frames(VideoMetadata(total_num_frames=total, fps=video_fps))
      n = F.num_frames(total, video_fps, cfg)
      np.testing.assert_array_equal(F.frame_indices(total, n, cfg), expected)
  # Hand-computed: 10 s at 30 fps -> 20 frames; numpy's linspace rounds half to even.
  assert F.num_frames(300, 30.0, QWEN3_VL) == 20
  assert F.frame_indices(10, 4, QWEN3_VL).tolist() == [0, 3, 6, 9]
  assert F.frame_indices(6, 5, QWEN3_VL).tolist() == [0, 1, 2, 4, 5]  # 1.25, 2.5, 3.75


@pytest.mark.parametrize("cap", [None, 64 * 1024, 768 * 1024])
def test_frame_size_and_patches_equal_transformers(cap):
  cfg = ProcessingConfig(
    model_type="qwen3_vl",
    patch_size=16,
    video_min_pixels=128 * 1024,
    video_max_pixels=cap,
    video_total_pixels=2048 * 1024,
  )
  vp = Qwen3VLVideoProcessor()
  kwargs = {
    "size": {"shortest_edge": cfg.video_min_pixels, "longest_edge": cfg.video_total_pixels},
    "cap_pixels_per_frame": cap is not None,
    "max_video_tokens": (cap or 1024) // 1024,
  }
  for n in (2, 3, 4, 7, 16, 33, 64):
    for h, w in ((720, 1280), (1080, 1920), (84, 112), (480, 854), (40, 300)):
      height, width = F.video_frame_size(h, w, n, cfg)
      ours = -(-n // 2) * (height // 16) * (width // 16)
      assert ours == vp.get_num_of_video_patches(n, h, w, kwargs), (n, h, w)
  # Hand-computed, capped at 64 tokens a frame: 16 frames of 720x1280 -> per-frame budget
  # max(min(65536, 2097152 // 16), int(131072 * 1.05)) = 137625 -> 256 x 480.
  if cap == 64 * 1024:
    assert F.video_frame_size(720, 1280, 16, cfg) == (256, 480)


def test_timestamps_equal_transformers():
  proc = Qwen3VLProcessor.__new__(Qwen3VLProcessor)  # _calculate_timestamps reads nothing else
  for indices, fps in (([0, 4, 8, 12, 16], 8.0), (list(range(0, 300, 15)), 29.97), ([3, 9], 2.0)):
    assert F.frame_timestamps(indices, fps, 2) == proc._calculate_timestamps(indices, fps, 2)
  # (0 + 0.5) / 2, (1 + 1.5) / 2, (2 + 2) / 2: the odd last frame pads its patch.
  assert F.frame_timestamps([0, 4, 8, 12, 16], 8.0) == [0.25, 1.25, 2.0]


def test_default_system_prompts():
  assert chat.default_system_prompt("qwen2_5_vl") == "You are a helpful assistant."
  assert chat.default_system_prompt("qwen3_vl") is None


# ------------------------------------------------------------------ end to end


@pytest.fixture
def hf_processor(monkeypatch, demo_tokenizer):
  def pil_resize(self, image, size, resample=None, **kwargs):
    flat = image.reshape(-1, *image.shape[-3:]).permute(0, 2, 3, 1).numpy()
    out = [
      np.asarray(Image.fromarray(f).resize((size.width, size.height), Image.Resampling.BICUBIC))
      for f in flat
    ]
    out = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return out.reshape(*image.shape[:-2], size.height, size.width)

  def normalize(self, image, mean, std, **kwargs):
    mean = torch.as_tensor(mean, dtype=image.dtype)[:, None, None]
    std = torch.as_tensor(std, dtype=image.dtype)[:, None, None]
    return (image - mean) / std

  monkeypatch.setattr(BaseVideoProcessor, "resize", pil_resize)
  monkeypatch.setattr(BaseVideoProcessor, "normalize", normalize)
  # Its class check looks processors up in auto tables that need torchvision.
  monkeypatch.setattr(Qwen3VLProcessor, "check_argument_for_proper_class", lambda *a: None)

  def make(cfg: ProcessingConfig):
    cap = cfg.video_max_pixels
    video = Qwen3VLVideoProcessor(
      fps=cfg.fps,
      min_frames=cfg.min_frames,
      max_frames=cfg.max_frames,
      size={"shortest_edge": cfg.video_min_pixels, "longest_edge": cfg.video_total_pixels},
      cap_pixels_per_frame=cap is not None,
      max_video_tokens=(cap or 1024) // cfg.factor**2,
    )
    image = Qwen2VLImageProcessorPil(
      patch_size=16,
      image_mean=[0.5] * 3,
      image_std=[0.5] * 3,
      min_pixels=cfg.image_min_pixels,
      max_pixels=cfg.image_max_pixels,
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=demo_tokenizer)
    return Qwen3VLProcessor(
      image_processor=image, video_processor=video, tokenizer=tokenizer, chat_template=TEMPLATE
    )

  return make


CONFIGS = {
  "defaults": QWEN3_VL,
  "capped": for_model(
    ProcessingConfig(
      max_frames=7,
      video_min_pixels=4 * 1024,
      video_max_pixels=12 * 1024,
      video_total_pixels=64 * 1024,
      image_min_pixels=4 * 1024,
      image_max_pixels=16 * 1024,
      presentation="video",
    ),
    "qwen3_vl",
  ),
}


HAND_COMPUTED = {
  "defaults": (
    [0, 4, 9, 13, 18, 22, 26, 31, 35, 40, 44],
    ("0.2", "1.4", "2.5", "3.6", "4.7", "5.5"),
  ),
  "capped": ([0, 7, 15, 22, 29, 37, 44], ("0.4", "2.3", "4.1", "5.5")),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_processor_end_to_end(name, hf_processor, demo_tokenizer, tmp_path):
  cfg = CONFIGS[name]
  # 45 frames at 8 fps: int(45 / 8 * 2) = 11 frames (odd: the last pads its patch).
  path = write_test_video(str(tmp_path / "v.mp4"), frames=45, width=160, height=120, fps=8)
  reader = decord.VideoReader(path, num_threads=1)
  all_frames = reader.get_batch(list(range(len(reader)))).asnumpy()
  image = np.random.default_rng(3).integers(0, 256, (70, 200, 3), dtype=np.uint8)

  clip = media.read_video(path, cfg)
  visual = joined([present_video(clip, cfg), present_image(image, cfg)])
  system = "Answer briefly."
  ours = chat.tokenize(
    demo_tokenizer,
    [chat.Message("system", [system]), chat.Message("user", visual.content + ["What?"])],
    add_generation_prompt=True,
  )

  processor = hf_processor(cfg)
  conversation = [
    {"role": "system", "content": [{"type": "text", "text": system}]},
    {
      "role": "user",
      "content": [{"type": "video"}, {"type": "image"}, {"type": "text", "text": "What?"}],
    },
  ]
  text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
  metadata = VideoMetadata(total_num_frames=len(reader), fps=float(reader.get_avg_fps()))
  out = processor(
    text=[text],
    images=[image],
    videos=[all_frames],
    video_metadata=[metadata],
    videos_kwargs={"do_convert_rgb": False},
    return_tensors="np",
  )
  print(
    name, "video grid", out["video_grid_thw"].tolist(), "image grid", out["image_grid_thw"].tolist()
  )
  np.testing.assert_array_equal(visual.video_grid_thw, out["video_grid_thw"])
  np.testing.assert_array_equal(visual.image_grid_thw, out["image_grid_thw"])
  assert ours.input_ids.tolist() == out["input_ids"][0].tolist()
  for mine, theirs in (
    (visual.pixel_values_videos, out["pixel_values_videos"]),
    (visual.pixel_values, out["pixel_values"]),
  ):
    assert mine.shape == theirs.shape
    err = np.max(np.abs(mine - np.asarray(theirs, np.float32)))
    print(f"{name}: max |pixel difference| {err:.2e}")
    assert err < 1e-5
  # Hand-computed: the frames (11, or max_frames 7), the last repeated to fill its patch,
  # each patch labelled with the mean time of its two frames at 8 fps.
  indices, times = HAND_COMPUTED[name]
  assert clip.indices.tolist() == indices
  stamps = [p for p in visual.content if isinstance(p, str) and p.endswith("seconds>")]
  assert stamps == [f"<{t} seconds>" for t in times]

  # The rope index on these ids equals transformers' Qwen3VLModel.get_rope_index.
  ids = tok.special_token_ids(demo_tokenizer)
  model_cfg = qwen3_tiny(**{k: v for k, v in ids.items() if k != "pad_token_id"})
  hf_model = perturbed_hf_model(model_cfg)
  input_ids = out["input_ids"]
  types = (input_ids == ids["image_token_id"]) * 1 + (input_ids == ids["video_token_id"]) * 2
  ref, ref_delta = hf_model.model.get_rope_index(
    torch.as_tensor(input_ids),
    mm_token_type_ids=torch.as_tensor(types),
    image_grid_thw=torch.as_tensor(out["image_grid_thw"]),
    video_grid_thw=torch.as_tensor(out["video_grid_thw"]),
  )
  positions, delta = rope_index_for(
    model_cfg, ours.input_ids[None], None, visual.image_grid_thw, visual.video_grid_thw
  )
  np.testing.assert_array_equal(positions, ref.numpy())
  np.testing.assert_array_equal(delta, ref_delta.numpy())
