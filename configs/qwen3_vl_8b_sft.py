"""Reference SFT of Open-o3 Video (docs/reference.md section 5) on Qwen3-VL-8B-Instruct:
the settings of `qwen2_5_vl_7b_sft.py` (lr 1e-6 linear, no warmup, weight decay 0.01,
max grad norm 5, bf16, global batch 8, one epoch of STGR-SFT = 3,896 steps, up to 16,384
tokens) and its frames (2 fps, 4..16 frames, about 128*28*28 pixels a frame, shown as
images), cut as Qwen3-VL cuts them (`processing.config.for_model`: 16-pixel patches,
mean = std = 0.5, transformers' Qwen3-VL frame sampling and resize rule).

Run with `--init` pointing at the downloaded Hugging Face directory.
"""

import os

from o3jax.data.pipeline import bucket_for_videos
from o3jax.processing.config import ProcessingConfig, for_model
from o3jax.train.config import load_config


def get_config():
  base = load_config(os.path.join(os.path.dirname(__file__), "qwen2_5_vl_7b_sft.py"))
  processing = for_model(ProcessingConfig(), "qwen3_vl")
  buckets = tuple(
    bucket_for_videos(processing, n, (1280, 720), max_key_frames=4, image_size=(1280, 720))
    for n in (4096, 8192, 16384)
  )
  return base.replace(model="qwen3_vl_8b", processing={"model_type": "qwen3_vl"}, buckets=buckets)
