"""Rollouts: RL pipeline batch -> sampled completions, their text and their rewards."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from o3jax import rewards, sample
from o3jax.distributed import agree_max, local_rows, place_rows, row_shard
from o3jax.grammar import TASKS
from o3jax.processing.tokenizer import special_token_ids
from o3jax.rewards.kernels import APPLIES, TERMS as KERNEL_TERMS
from o3jax.sample_inputs import next_positions
from o3jax.train.batch import model_batch, vision_needs

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


def prompt_inputs(cfg, batch: dict[str, Any], rope_rule: str = "qwen") -> dict:
  """Sampler inputs for the prompts of an RL pipeline batch (left-padded to the pipeline
  bucket's length): per-row vision (pixels [B, N, P], layouts [B, ...]), so the rows and
  their encodings split over a mesh's batch axes, padded as every process pads its rows
  (`vision_needs`, agreed; a collective with several processes)."""
  ids_key, mask_key = "prompt_ids", "prompt_mask"
  needs = agree_max(vision_needs(cfg, batch, ids_key, mask_key))
  mb = model_batch(cfg, batch, 1, ids_key, mask_key, rope_rule, needs=needs)
  out = jax.tree.map(lambda x: x[0], mb)  # the one micro-batch
  out["position_ids"] = out["position_ids"].astype(np.int32)
  out["next_position"] = next_positions(out["position_ids"], out["attention_mask"], rope_rule)
  out["next_position"] = out["next_position"].astype(np.int32)
  return out


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
  mesh=None,
) -> Rollouts:
  """Samples `num_samples` completions of each prompt of `batch`. With `mesh`, `params` laid
  out on it and `batch` this process's rows of the global batch: the sampler runs on the
  mesh, each device decoding its rows, and this process gets its prompts' rollouts."""
  ids = tokenizer_ids(tokenizer)
  inputs = prompt_inputs(cfg, batch)
  if mesh is not None:
    _, count = row_shard(mesh)
    inputs = place_rows(inputs, sample.input_shardings(inputs, mesh, count), count)
  out = sample.sample(
    graphdef,
    params,
    inputs,
    key,
    max_new_tokens=max_new_tokens,
    num_samples=num_samples,
    temperature=temperature,
    top_p=top_p,
    top_k=top_k,
    greedy=greedy,
    eos_id=[ids["eos"], ids["pad"]],
    pad_id=ids["pad"],
    mesh=mesh,
  )
  tokens, logprobs, lengths = (local_rows(x) for x in out)
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
