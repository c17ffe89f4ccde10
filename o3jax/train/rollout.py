"""Rollouts: RL pipeline batch -> sampled completions, their text and their rewards."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from o3jax import rewards, sample
from o3jax.grammar import TASKS
from o3jax.processing.tokenizer import special_token_ids
from o3jax.rewards.kernels import APPLIES, TERMS as KERNEL_TERMS
from o3jax.sample_inputs import prompt_batch

VISUAL_KEYS = (
  "pixel_values",
  "image_grid_thw",
  "pixel_values_videos",
  "video_grid_thw",
  "second_per_grid_ts",
)

TERMS = (
  "format",
  "thk_temporal_point",
  "thk_temporal_segment",
  "thk_spatial",
  "ans_acc",
  "ans_tiou",
  "ans_viou",
  "total",
)


def prompt_inputs(cfg, batch: dict[str, Any], pad_id: int, rope_rule: str = "qwen") -> dict:
  """Sampler inputs for the prompts of an RL pipeline batch, batched as evaluation batches
  its queries; the prompt length stays the pipeline bucket's."""
  visual = {k: batch[k] for k in VISUAL_KEYS if k in batch}
  return prompt_batch(
    cfg,
    batch["prompt_ids"],
    batch["prompt_mask"],
    prompt_length=batch["prompt_ids"].shape[1],
    pad_id=pad_id,
    rope_rule=rope_rule,
    **visual,
  )


@dataclasses.dataclass
class Rollouts:
  tokens: np.ndarray  # [N, M]
  logprobs: np.ndarray  # [N, M]
  lengths: np.ndarray  # [N]
  texts: list[str]
  records: list[dict]  # the reward record of each rollout (its prompt's)
  valid: np.ndarray  # [N] bool: False for rollouts of filler prompt rows


def rollout(
  graphdef,
  params,
  cfg,
  tokenizer,
  batch: dict[str, Any],
  key,
  *,
  num_samples: int,
  max_new_tokens: int,
  temperature: float = 1.0,
  top_p: float = 1.0,
  top_k: int = 0,
  greedy: bool = False,
) -> Rollouts:
  ids = tokenizer_ids(tokenizer)
  out = sample.sample(
    graphdef,
    params,
    prompt_inputs(cfg, batch, ids["pad"]),
    key,
    max_new_tokens=max_new_tokens,
    num_samples=num_samples,
    temperature=temperature,
    top_p=top_p,
    top_k=top_k,
    greedy=greedy,
    eos_id=[ids["eos"], ids["pad"]],
    pad_id=ids["pad"],
  )
  tokens, logprobs, lengths = (np.asarray(x) for x in out)
  texts = tokenizer.decode_batch(
    [row[:n].tolist() for row, n in zip(tokens, lengths)], skip_special_tokens=True
  )
  meta = batch["meta"]
  records = [meta[i // num_samples] for i in range(len(texts))]
  valid = np.array([r is not None for r in records])
  return Rollouts(tokens, logprobs, lengths, texts, records, valid)


def tokenizer_ids(tokenizer) -> dict[str, int]:
  ids = special_token_ids(tokenizer)
  return {"eos": ids["eos_token_id"], "pad": ids["pad_token_id"]}


def score_rollouts(
  r: Rollouts,
  step_fraction: float,
  temporal_gate: str = "symmetric",
  spatial_rule: str = "per_claim",
):
  """Reward terms [N] per rollout; filler rows score 0."""
  n = len(r.texts)
  out = {k: np.zeros(n) for k in TERMS}
  idx = np.flatnonzero(r.valid)
  if len(idx):
    got = rewards.score(
      [r.texts[i] for i in idx],
      [r.records[i] for i in idx],
      step_fraction,
      temporal_gate=temporal_gate,
      spatial_rule=spatial_rule,
    )
    for k in TERMS:
      out[k][idx] = got[k]
  return out


def mean_rewards(
  terms: dict[str, np.ndarray], valid: np.ndarray, tasks: list[str] | None = None
) -> dict[str, float]:
  """Means over the valid rollouts; a term is averaged over the tasks it applies to."""
  out = {}
  for k, v in terms.items():
    applies = valid.copy()
    if tasks is not None and k != "total":
      col = KERNEL_TERMS.index(k)
      applies &= np.array([t in TASKS and APPLIES[TASKS.index(t), col] for t in tasks])
    out[k] = float(v[applies].mean()) if applies.any() else float("nan")
  return out
