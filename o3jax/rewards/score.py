"""Reward entry point: completions and their records -> reward terms (docs/reference.md section 4).

Host side: read the completions (batch.py), each record's gold (gold.py), ROUGE for
free-form answers (rouge.py). Device side: one jitted call of the kernels
(kernels.py) in float64, like the python reference the formulas come from.
"""

from collections.abc import Mapping, Sequence

import jax
import numpy as np

from o3jax.grammar import VISUAL
from o3jax.rewards.batch import parse_batch
from o3jax.rewards.gold import FREE_FORM, Gold, pack_gold, record_gold
from o3jax.rewards.kernels import TERMS, reward_terms
from o3jax.rewards.rouge import rouge_accuracy

TEMPORAL_GATES = ("symmetric", "one_sided")
SPATIAL_RULES = ("per_claim", "per_key_frame")


def score(
  completions: Sequence[str],
  records: Sequence[Mapping],
  step_fraction: float,
  temporal_gate: str = "symmetric",
  spatial_rule: str = "per_claim",
) -> dict[str, np.ndarray]:
  """Reward terms and total for each completion, scored against its own record.

  Args:
    completions: model outputs (text). Any text is scored; none raises.
    records: STGR-RL records plus `frame_size` [W, H] (see gold.py). A malformed
      record raises RecordError naming its id and field.
    step_fraction: (step + 1) / total steps; anneals the temporal proximity width.
    temporal_gate: "symmetric" (|g - t| <= 1 s) or "one_sided" (g - t < 1 s, the
      reference code's rule).
    spatial_rule: "per_claim" (the reference: thk_spatial is the mean over claims) or
      "per_key_frame" (each key frame's best claim, summed, over max(claims, key
      frames): leaving a key frame out or repeating a claim no longer pays).

  Returns:
    {term: float64 [N]} for the TERMS and "total" (the sum of the task's terms;
    terms that do not apply to a completion's task are 0).
  """
  if temporal_gate not in TEMPORAL_GATES:
    raise ValueError(f"temporal_gate must be one of {TEMPORAL_GATES}, got {temporal_gate!r}")
  if spatial_rule not in SPATIAL_RULES:
    raise ValueError(f"spatial_rule must be one of {SPATIAL_RULES}, got {spatial_rule!r}")
  if len(completions) != len(records):
    raise ValueError(f"{len(completions)} completions but {len(records)} records")
  for i, text in enumerate(completions):
    if not isinstance(text, str):
      raise TypeError(f"completion {i} is a {type(text).__name__}, not a str")
  by_record: dict[int, Gold] = {}  # a GSPO batch holds each record once per rollout
  for record in records:
    if id(record) not in by_record:
      by_record[id(record)] = record_gold(record)
  golds = [by_record[id(record)] for record in records]
  batch = parse_batch(completions, visual=[g.task == VISUAL for g in golds])
  n_pad = batch.arrays.has_think.shape[0]
  gold = pack_gold(golds, n_pad, batch.choice_ids)
  rouge = np.zeros(n_pad)
  pairs: dict[tuple[str, str], float] = {}  # identical rollouts of a group score once
  for i, (g, answer) in enumerate(zip(golds, batch.answers)):
    if g.task in FREE_FORM:
      if (g.answer, answer) not in pairs:
        pairs[g.answer, answer] = rouge_accuracy(g.answer, answer)
      rouge[i] = pairs[g.answer, answer]
  with jax.enable_x64(True):
    terms = reward_terms(
      batch.arrays,
      gold,
      rouge,
      np.float64(step_fraction),
      one_sided=temporal_gate == "one_sided",
      per_key_frame=spatial_rule == "per_key_frame",
    )
    n = len(completions)
    return {name: np.asarray(terms[name])[:n] for name in TERMS + ("total",)}
