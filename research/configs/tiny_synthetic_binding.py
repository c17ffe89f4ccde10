"""Frame binding, after the long tiny recipe (`research/configs/tiny_synthetic_long.py`, given as
`--init`): frame listings (`python -m research.listings`) teach which image a `Frame k` label names.

Phase 1 trains on the "halves" listings alone for the 4,000 steps; phase 2 continues on
halves and "objects" listings mixed with the synthetic records, `--steps 2000` of the same
schedule; phase 3 is `research/configs/tiny_synthetic_binding_mix.py`. The learning rate is the long
recipe's 1e-3: the binding shows after about 2,500 steps of phase 1, not before.
"""

import os

from o3jax.train.config import load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config():
  return load_config(os.path.join(HERE, "tiny_synthetic_long.py")).replace(
    total_steps=4000, checkpoint_every=500, keep_checkpoints=8
  )
