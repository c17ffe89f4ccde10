"""Spatio-temporal rewards (docs/reference.md section 4): host parsing, jitted kernels, `score`."""

from o3jax.rewards.gold import RecordError, record_gold
from o3jax.rewards.kernels import TERMS, group_advantages, reward_terms
from o3jax.rewards.parse import parse_completion
from o3jax.rewards.score import score

__all__ = [
  "TERMS",
  "RecordError",
  "group_advantages",
  "parse_completion",
  "record_gold",
  "reward_terms",
  "score",
]
