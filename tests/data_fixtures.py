"""Shared helpers for the processing and data tests: tiny videos, a synthetic dataset,
the demo tokenizer and a small transformers Qwen2.5-VL to check model inputs against."""

import os

import av
import numpy as np
import pytest

from o3jax.data import synth
from o3jax.processing.tokenizer import build_demo_tokenizer


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
# Video tasks whose synthetic reasoning claims evidence on the frames the model is shown
# (spatio-temporal records claim on their inserted key frames instead).
SHOWN_FRAME_CLAIM_TASKS = (
  "temporal QA",
  "temporal QA (MCQ)",
  "General video QA MCQ",
  "General video QA Free-form",
)


def tiny_processing():
  """The processing (frame sampling, sizes, prompts) the tiny training configs use."""
  from o3jax.train.config import load_config
  from o3jax.train.run import processing_config

  return processing_config(load_config(os.path.join(CONFIGS, "tiny_synthetic.py")))


def write_test_video(
  path: str,
  frames: int = 16,
  width: int = 64,
  height: int = 48,
  fps: int = 8,
  faststart: bool = False,
  seed: int = 0,
) -> str:
  """A small H.264 mp4 of noise with a moving bright bar."""
  rng = np.random.default_rng(seed)
  options = {"movflags": "faststart"} if faststart else {}
  with av.open(path, "w", options=options) as container:
    stream = container.add_stream("libx264", rate=fps, options={"threads": "1"})
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for i in range(frames):
      image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
      image[:, (3 * i) % width] = 255
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def truncate(path: str, out: str, fraction: float = 0.5) -> str:
  with open(path, "rb") as f:
    data = f.read()
  with open(out, "wb") as f:
    f.write(data[: int(len(data) * fraction)])
  return out


@pytest.fixture(scope="session")
def demo_tokenizer():
  return build_demo_tokenizer()


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
  """A synthetic dataset of 4 training videos and 2 held-out ones (seed 7)."""
  out = str(tmp_path_factory.mktemp("synthetic"))
  synth.synthesize(out, videos=4, seed=7, vstar_videos=2, progress=False)
  return out


def hf_tiny_model(ids: dict[str, int]):
  """A random, very small transformers Qwen2.5-VL using the given special token ids."""
  import torch  # pylint: disable=import-outside-toplevel
  from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration  # pylint: disable=import-outside-toplevel

  torch.manual_seed(0)
  config = Qwen2_5_VLConfig(
    text_config=dict(
      vocab_size=1024,
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=1,
      num_attention_heads=4,
      num_key_value_heads=2,
      max_position_embeddings=4096,
      rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
      bos_token_id=ids["pad_token_id"],
      eos_token_id=ids["eos_token_id"],
      pad_token_id=ids["pad_token_id"],
    ),
    vision_config=dict(
      depth=1,
      hidden_size=32,
      intermediate_size=64,
      num_heads=2,
      out_hidden_size=32,
      window_size=112,
      fullatt_block_indexes=[0],
    ),
    image_token_id=ids["image_token_id"],
    video_token_id=ids["video_token_id"],
    vision_start_token_id=ids["vision_start_token_id"],
    vision_end_token_id=ids["vision_end_token_id"],
  )
  return Qwen2_5_VLForConditionalGeneration(config).eval()


def files_under(root: str) -> dict[str, bytes]:
  out = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out
