"""Stage 0 of the longer tiny recipe: image grounding before SFT
(research/tiny_grounding.md).

The tiny model reads object positions off its vision tokens only after a few thousand
steps (before that its boxes ignore the image). On still images -- visual QA boxes and the
relevance ratings of evidence crops -- a step costs a fifth of a step on the full SFT mix,
so those steps are taken here; `research/configs/tiny_synthetic_long.py` continues from this run.
"""

import os

from o3jax.data.pipeline import BatchShape
from o3jax.train.config import OptimConfig, load_config

HERE = os.path.dirname(os.path.abspath(__file__))
PRODUCT_CONFIGS = os.path.join(HERE, "..", "..", "configs")


def get_config():
  base = load_config(os.path.join(PRODUCT_CONFIGS, "tiny_synthetic.py"))
  # One 84x56 image (6x4 patches) and at most ~220 tokens per example.
  return base.replace(
    tasks=("visual QA",),
    max_length=256,
    buckets=(BatchShape(seq_len=256, image_patches=24, images=1),),
    optim=OptimConfig(
      learning_rate=1e-3,
      warmup_steps=50,
      decay="cosine",
      end_lr_fraction=0.1,
      weight_decay=0.01,
      max_grad_norm=1.0,
    ),
    total_steps=6000,
    checkpoint_every=1000,
  )
