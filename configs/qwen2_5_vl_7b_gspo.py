"""Reference GSPO of Open-o3 Video (docs/reference.md section 5), from the SFT run's workdir.

The model, mesh, buckets and processing of `qwen2_5_vl_7b_sft.py`; G = 4 rollouts per
prompt at temperature 1.0, top_p 0.95, up to 768 new tokens; eps 0.2 on both sides,
beta 0.04 (k3 KL to the frozen SFT policy), one update per rollout batch (so pi_old is
the policy being differentiated, as in the reference); lr 1e-6 cosine, weight decay 0.01,
max grad norm 5, bf16; 8 prompts (32 rollouts) per batch; one epoch of STGR-RL (37,231
records) is 4,654 steps.
"""

import os

from o3jax.train.config import GSPOConfig, OptimConfig, TrainConfig, load_config


def get_config() -> TrainConfig:
  sft = load_config(os.path.join(os.path.dirname(__file__), "qwen2_5_vl_7b_sft.py"))
  return sft.replace(
    optim=OptimConfig(
      learning_rate=1e-6, warmup_steps=0, decay="cosine", weight_decay=0.01, max_grad_norm=5.0
    ),
    gspo=GSPOConfig(
      group_size=4,
      temperature=1.0,
      top_p=0.95,
      top_k=0,
      max_new_tokens=768,
      eps_low=0.2,
      eps_high=0.2,
      beta=0.04,
      updates_per_batch=1,
      temporal_gate="symmetric",
    ),
    total_steps=4654,
    micro_batches=4,
    checkpoint_every=200,
  )
