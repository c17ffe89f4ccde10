"""Reward evaluation on held-out prompts: greedy decoding, every reward term.

Used to report what SFT and GSPO changed (`o3jax demo`, the learning checks).
"""

from __future__ import annotations

import sys

import jax
import numpy as np
from tqdm import tqdm

from o3jax.train.config import TrainConfig
from o3jax.train.rollout import mean_rewards, rollout, score_rollouts
from o3jax.train.sft import data_iterator


def evaluate_rewards(
  cfg: TrainConfig,
  graphdef,
  params,
  model_config,
  tokenizer,
  data_dir: str,
  num_batches: int,
  max_new_tokens: int | None = None,
  file: str = "STGR-RL.json",
  return_texts: bool = False,
):
  """Mean reward terms of greedy completions for the first `num_batches` RL batches of
  `data_dir` (in file order, no shuffle). Each term is averaged over the tasks it applies
  to; `total` over all prompts."""
  eval_cfg = cfg.replace(seed=0)
  data = data_iterator(
    eval_cfg,
    data_dir,
    tokenizer,
    "rl",
    file,
    shuffle=False,
    num_epochs=1,
    model_type=model_config.model_type,
  )
  terms_all, valid_all, tasks, texts = [], [], [], []
  bar = tqdm(total=num_batches, desc="held-out rewards", unit="batch", file=sys.stderr)
  for _ in range(num_batches):
    try:
      batch = next(data)
    except StopIteration:
      break
    r = rollout(
      graphdef,
      params,
      model_config,
      tokenizer,
      batch,
      jax.random.key(0),
      num_samples=1,
      max_new_tokens=max_new_tokens or cfg.gspo.max_new_tokens,
      greedy=True,
    )
    terms_all.append(score_rollouts(r, 1.0, cfg.gspo.temporal_gate, cfg.gspo.spatial_rule))
    valid_all.append(r.valid)
    tasks += [rec["task"] if rec else "" for rec in r.records]
    texts += r.texts
    valid = np.concatenate(valid_all)
    total = np.concatenate([t["total"] for t in terms_all])[valid]
    bar.set_postfix_str(f"reward {total.mean() if len(total) else 0.0:.3g}", refresh=False)
    bar.update()
  bar.close()
  if not terms_all:
    raise ValueError(f"{data_dir}/{file}: no batch to evaluate")
  terms = {k: np.concatenate([t[k] for t in terms_all]) for k in terms_all[0]}
  means = mean_rewards(terms, np.concatenate(valid_all), tasks)
  return (means, texts) if return_texts else means
