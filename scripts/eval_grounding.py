"""Does a trained model look at its frames? Three held-out measurements of an o3jax workdir.

1. Greedy reward terms (SPEC.md section 4) on the held-out STGR-RL prompts: all tasks,
   and the spatial ones alone (spatio-temporal QA, visual QA) where thk_spatial and
   ans_viou say whether the boxes sit on the objects.
2. Teacher-forced loss of held-out SFT targets with the real images, with every image
   zeroed, and with the patches shuffled across the batch. A model whose loss does not
   move when its images are gone answers from the text alone, whatever its format.
3. Relevance ratings of held-out evidence crops (the `relevance rating` SFT records),
   asked exactly as test-time scaling asks them: accuracy against the synthetic labels
   and how many ratings were unreadable.

  python scripts/eval_grounding.py --workdir runs/long --config configs/tiny_synthetic_long.py \
      --heldout runs/heldout [--batches 10] [--crops 120]
"""

from __future__ import annotations

import argparse
import collections
import json
import os

import jax
import numpy as np
from flax import nnx
from PIL import Image

from o3jax.data.records import load_records
from o3jax.eval.generate import load_model
from o3jax.eval.mcq_run import model_rater
from o3jax.eval.tts import parse_rating
from o3jax.processing import prompts
from o3jax.train.batch import model_batch
from o3jax.train.config import load_config
from o3jax.train.evaluate import evaluate_rewards
from o3jax.train.loss import batch_logits, masked_cross_entropy
from o3jax.train.run import restore, setup_run
from o3jax.train.sft import data_iterator, processing_config

SPATIAL = (prompts.SPATIO_TEMPORAL, "visual QA")


def reward_terms(cfg, run, heldout: str, batches: int, max_new_tokens: int) -> dict:
  out = {"all tasks": evaluate_rewards(cfg.replace(tasks=()), run.graphdef, run.state.params, run.model_config,
                                       run.tokenizer, heldout, batches, max_new_tokens)}
  spatial = cfg.replace(tasks=SPATIAL)
  out["spatial tasks"] = evaluate_rewards(spatial, run.graphdef, run.state.params, run.model_config,
                                          run.tokenizer, heldout, batches, max_new_tokens)
  return {k: {t: round(float(v), 3) for t, v in terms.items() if np.isfinite(v)} for k, terms in out.items()}


def image_sensitivity(cfg, run, heldout: str, batches: int) -> dict:
  """Mean teacher-forced loss over `batches` held-out SFT batches, three ways."""
  model = nnx.merge(run.graphdef, run.state.params)
  data = data_iterator(cfg.replace(seed=0, tasks=()), heldout, run.tokenizer, "sft", "STGR-SFT.json",
                       shuffle=False, num_epochs=1)
  rng = np.random.default_rng(0)
  sums = collections.defaultdict(float)
  count = 0.0

  @jax.jit
  def loss(mb):
    return masked_cross_entropy(batch_logits(model, mb), mb["input_ids"], mb["loss_mask"])

  for _, batch in zip(range(batches), data):
    mb = {k: jax.tree.map(lambda x: x[0], v) for k, v in model_batch(run.model_config, batch, 1).items()}
    variants = {"images": mb}
    if "pixel_values" in mb:
      variants["images zeroed"] = dict(mb, pixel_values=np.zeros_like(mb["pixel_values"]))
      variants["patches shuffled"] = dict(mb, pixel_values=rng.permutation(mb["pixel_values"]))
    for name, inputs in variants.items():
      total, n = loss(inputs)
      sums[name] += float(total)
    count += float(n)
  return {name: round(total / count, 4) for name, total in sums.items()}


def rating_accuracy(workdir: str, cfg, heldout: str, limit: int) -> dict:
  records = [r for r in load_records(os.path.join(heldout, "STGR-SFT.json"))
             if r.get("task") == prompts.RELEVANCE_RATING][:limit]
  if not records:
    return {"crops": 0}
  loaded = load_model(workdir)
  crops = [np.asarray(Image.open(os.path.join(heldout, r["image_path"])).convert("RGB")) for r in records]
  rate = model_rater(loaded, processing_config(cfg), jax.random.key(0), 16)
  got = [parse_rating(t) for t in rate(crops, [r["question"] for r in records])]
  gold = [int(r["answer"]) for r in records]
  confusion = collections.Counter(f"gold {g} -> {p}" for g, p in zip(gold, got))
  return {"crops": len(records), "accuracy": round(float(np.mean([g == p for g, p in zip(gold, got)])), 3),
          "unreadable": sum(p is None for p in got), "confusion": dict(sorted(confusion.items()))}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--config", required=True, help="the config the workdir was trained with")
  p.add_argument("--heldout", required=True, help="a synthetic set the model was not trained on")
  p.add_argument("--batches", type=int, default=10)
  p.add_argument("--crops", type=int, default=120)
  p.add_argument("--max-new-tokens", type=int, default=192)
  args = p.parse_args()
  cfg = load_config(args.config)
  run = setup_run(cfg, args.workdir)
  restore(run)
  report = {"reward terms (greedy)": reward_terms(cfg, run, args.heldout, args.batches, args.max_new_tokens),
            "teacher-forced loss": image_sensitivity(cfg, run, args.heldout, args.batches),
            "relevance ratings": rating_accuracy(args.workdir, cfg, args.heldout, args.crops)}
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
