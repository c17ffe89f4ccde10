"""Phase 7 of frame binding (see `research/configs/tiny_synthetic_binding.py`): 1,500 steps on the
listings mixed back with the synthetic records (`python -m research.listings --with-records`), from
phase 6 (`--init`). The listings alone make the model forget the other tasks' formats (on
synthetic V-STaR it answers every query with a listing); a short pass over both is to
bring them back, at a third of the binding phases' peak learning rate so that the binding
stays. Measured (research/tiny_grounding.md): the boxes stayed; 1,500 steps did not bring
V-STaR back."""

import dataclasses
import os

from o3jax.train.config import load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config():
  cfg = load_config(os.path.join(HERE, "tiny_synthetic_binding.py"))
  return cfg.replace(optim=dataclasses.replace(cfg.optim, learning_rate=3e-4), total_steps=1500)
