"""Stage 1 of the longer tiny recipe: the full SFT mix, continuing from the grounding stage
(`research/configs/tiny_synthetic_grounding.py`, given as `--init`), on a larger synthetic set.

The same model and data format as `tiny_synthetic.py` (the demo), with the gentler
learning rate the long runs need: at 3e-3 the tiny model settles on answers that ignore
the image and the question's object; at 1e-3 it learns to read both.
"""

import os

from o3jax.train.config import OptimConfig, load_config

HERE = os.path.dirname(os.path.abspath(__file__))
PRODUCT_CONFIGS = os.path.join(HERE, "..", "..", "configs")


def get_config():
  base = load_config(os.path.join(PRODUCT_CONFIGS, "tiny_synthetic.py"))
  return base.replace(
    optim=OptimConfig(
      learning_rate=1e-3,
      warmup_steps=50,
      decay="cosine",
      end_lr_fraction=0.1,
      weight_decay=0.01,
      max_grad_norm=1.0,
    ),
    total_steps=5000,
    checkpoint_every=500,
    data_workers=1,  # decode the next batch while the step runs
  )
