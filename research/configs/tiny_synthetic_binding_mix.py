"""Phases 3 and 4 of frame binding (see `research/configs/tiny_synthetic_binding.py`): 3,000 steps
on all three listing kinds mixed with the synthetic records, from phase 2 (`--init`);
then 3,000 steps on listings alone, from phase 3 (commands in research/tiny_grounding.md)."""

import os

from o3jax.train.config import load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config():
  return load_config(os.path.join(HERE, "tiny_synthetic_binding.py")).replace(total_steps=3000)
