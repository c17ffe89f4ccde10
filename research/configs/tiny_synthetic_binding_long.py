"""Phase 6 of frame binding (see `research/configs/tiny_synthetic_binding.py`): 8,000 steps on the
listings alone, one cosine schedule, from phase 5 (`--init`; commands in
research/tiny_grounding.md). The boxes' x is read off the named frame by phase 5; their y,
which the listings ask for as often, lags, and a longer schedule gives it one warm-up
instead of several (it still lags after this phase: research/tiny_grounding.md)."""

import os

from o3jax.train.config import load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config():
  return load_config(os.path.join(HERE, "tiny_synthetic_binding.py")).replace(
    total_steps=8000, keep_checkpoints=16
  )
