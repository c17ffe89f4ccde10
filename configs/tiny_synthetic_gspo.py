"""GSPO on the synthetic data for the tiny model, from a `tiny_synthetic.py` SFT run.

Same data, buckets and prompts as the SFT config. Departures from the reference, for a
model this small on a CPU: temperature 0.7 (at 1.0 its rollouts are mostly noise and
earn no reward), a small constant learning rate (Adam turns the noisy policy gradient
into full-size steps; at 3e-4 the SFT format was lost within 30 steps), no KL term
(beta 0: the reference forward would cost a third of a CPU step) and two updates per
rollout batch, so the clip acts.
"""

import os

from o3jax.train.config import GSPOConfig, OptimConfig, TrainConfig, load_config


def get_config() -> TrainConfig:
  cfg = load_config(os.path.join(os.path.dirname(__file__), "tiny_synthetic.py"))
  return cfg.replace(
    optim=OptimConfig(
      learning_rate=5e-5, warmup_steps=0, decay="constant", weight_decay=0.0, max_grad_norm=1.0
    ),
    gspo=GSPOConfig(
      group_size=4,
      temperature=0.7,
      top_p=1.0,
      top_k=0,
      max_new_tokens=192,
      eps_low=0.2,
      eps_high=0.2,
      beta=0.0,
      updates_per_batch=2,
    ),
    total_steps=40,
    batch_size=8,
    checkpoint_every=10,
  )
