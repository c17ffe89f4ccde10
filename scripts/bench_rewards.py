"""Benchmark the reward kernels against the per-sample python reference.

A GSPO-like batch of spatio-temporal QA completions (groups of 4 rollouts per record,
1-16 claims of 1-4 boxes each, ROUGE answers) is scored three ways:
  ref   the plain-python SPEC reference (tests/test_rewards_reference.py), per sample;
  (a)   the jitted kernels on already parsed, device-resident arrays (float64 as `score`
        runs them, and float32 for comparison);
  (b)   `o3jax.rewards.score` end to end: parse, gold, ROUGE, kernels (caches cleared
        before every repeat).
Prints medians and the ratios to the reference measured in the same run, on whatever
jax backend is present.

Each repeat runs every step once (kernels 10 times), interleaved, so a busy machine
slows all of them alike; wall and process-cpu medians are printed.

  python scripts/bench_rewards.py [--n 4096] [--repeats 5]
"""

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
from rouge_score import rouge_scorer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_rewards_reference import reference_terms  # noqa: E402

from o3jax.rewards import rouge, score  # noqa: E402
from o3jax.rewards.batch import parse_batch  # noqa: E402
from o3jax.rewards.gold import VISUAL, pack_gold, record_gold  # noqa: E402
from o3jax.rewards.kernels import reward_terms  # noqa: E402

WORDS = (
  "the a person dog walks red vest shirt cup table runs holding left right woman man "
  "car opens door blue green chair sits near window looks towards camera"
).split()
FRAME = (420, 224)


def make_batch(n: int, max_claims: int, max_boxes: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  completions, records = [], []
  for i in range(n):
    if i % 4 == 0:  # one record per group of 4 rollouts
      times = sorted(round(float(t), 1) for t in rng.uniform(0, 60, rng.integers(1, 5)))
      frames = [{"idx": 2 * k + 1, "time": t, "path": f"{k}.jpg"} for k, t in enumerate(times)]
      items = {}
      for f in frames:
        items[str(f["idx"])] = {}
        for o in range(rng.integers(1, 4)):
          x1, y1 = rng.uniform(0, 0.7, 2)
          w, h = rng.uniform(0.05, 0.3, 2)
          items[str(f["idx"])][f"obj{o}"] = [
            [round(float(v), 3) for v in (x1, y1, x1 + w, y1 + h)]
            for _ in range(rng.integers(1, 3))
          ]
      record = {
        "id": f"bench-{i // 4}",
        "task": "temporal-spatial free-form QA",
        "question": "q?",
        "answer": " ".join(rng.choice(WORDS, 12)),
        "key_frames": frames,
        "key_items": items,
        "frame_size": list(FRAME),
      }
    records.append(record)
    parts = []
    for _ in range(rng.integers(1, max_claims + 1)):
      frame = record["key_frames"][rng.integers(len(record["key_frames"]))]
      gold = [b for boxes in record["key_items"][str(frame["idx"])].values() for b in boxes]
      boxes = []
      for _ in range(rng.integers(1, max_boxes + 1)):
        b = np.asarray(gold[rng.integers(len(gold))]) * (FRAME * 2)
        boxes.append("[" + ",".join(str(int(v)) for v in b + rng.normal(0, 15, 4)) + "]")
      t = max(0.0, frame["time"] + float(rng.normal(0, 1.5)))
      parts.append(
        f"the <obj>{rng.choice(WORDS)}</obj>"
        + "".join(f"<box>{b}</box>" for b in boxes)
        + f"at<t>{t:.1f}</t>s "
        + " ".join(rng.choice(WORDS, 6))
      )
    answer = " ".join(rng.choice(WORDS, 10))
    completions.append(f"<think>{' '.join(parts)}</think>\n<answer>{answer}</answer>")
  return completions, records


def clear_caches():
  rouge._tokens.cache_clear()
  rouge._reference.cache_clear()
  rouge._word_tokens.cache_clear()


def run_kernels(inputs):
  with jax.enable_x64(True):  # as `score` runs them; float32 inputs stay float32
    return jax.block_until_ready(reward_terms(*inputs))


def clock(fn) -> tuple[float, float, object]:
  """(wall s, process cpu s, result) of one call."""
  wall, cpu = time.perf_counter(), time.process_time()
  out = fn()
  return time.perf_counter() - wall, time.process_time() - cpu, out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=4096)
  parser.add_argument("--max-claims", type=int, default=16)
  parser.add_argument("--max-boxes", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  print(
    f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}); "
    f"{args.n} completions, <= {args.max_claims} claims x {args.max_boxes} boxes; "
    f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus",
    flush=True,
  )
  completions, records = make_batch(args.n, args.max_claims, args.max_boxes)
  fraction = 0.5

  # Host pieces of `score`, for the kernel inputs and the breakdown.
  def read_golds():  # once per record, as `score` does
    by_record = {}
    for r in records:
      if id(r) not in by_record:
        by_record[id(r)] = record_gold(r)
    return [by_record[id(r)] for r in records]

  golds = read_golds()
  visual = [g.task == VISUAL for g in golds]
  batch = parse_batch(completions, visual)
  n_pad = batch.arrays.has_think.shape[0]
  gold = pack_gold(golds, n_pad, batch.choice_ids)
  rouge_array = np.zeros(n_pad)
  rouge_array[: args.n] = [rouge.rouge_accuracy(g.answer, a) for g, a in zip(golds, batch.answers)]
  kernel_calls = {}
  with jax.enable_x64(True):
    for dtype in (np.float64, np.float32):
      cast = lambda x, d=dtype: x.astype(d) if x.dtype == np.float64 else x  # noqa: E731
      inputs = (
        jax.device_put(jax.tree.map(cast, batch.arrays)),
        jax.device_put(jax.tree.map(cast, gold)),
        jax.device_put(rouge_array.astype(dtype)),
        jax.device_put(dtype(fraction)),
      )
      kernel_calls[np.dtype(dtype).name] = functools.partial(run_kernels, inputs)
      run_kernels(inputs)  # compile
  score(completions, records, fraction)  # compile

  def end_to_end():
    clear_caches()  # no ROUGE cache carried over from the last repeat
    return score(completions, records, fraction)

  def reference():
    return [reference_terms(c, r, fraction) for c, r in zip(completions, records)]

  def rouge_reference():  # uncached rouge_score, as the reference pays it
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return [scorer.score(g.answer, a) for g, a in zip(golds, batch.answers)]

  def rouge_ours():
    clear_caches()
    return [rouge.rouge_accuracy(g.answer, a) for g, a in zip(golds, batch.answers)]

  steps = {  # name: (function, repeats); interleaved so each repeat sees the same load
    "ref": (reference, args.repeats),
    "e2e": (end_to_end, args.repeats),
    "ref_rouge": (rouge_reference, args.repeats),
    "parse": (lambda: parse_batch(completions, visual), args.repeats),
    "gold": (lambda: pack_gold(read_golds(), n_pad, batch.choice_ids), args.repeats),
    "rouge": (rouge_ours, args.repeats),
    **{f"kernels_{k}": (fn, 10) for k, fn in kernel_calls.items()},
  }
  wall = {name: [] for name in steps}
  cpu = {name: [] for name in steps}
  ratios = {"kernels_float64": [], "e2e": []}
  for rep in range(args.repeats):
    for name, (fn, repeats) in steps.items():
      for _ in range(repeats if name.startswith("kernels") else 1):
        w, c, out = clock(fn)
        wall[name].append(w)
        cpu[name].append(c)
      if name == "e2e" and rep == 0:
        want = np.array([r["total"] for r in clock(reference)[2]])
        print(f"max |total - reference| = {np.abs(out['total'] - want).max():.1e}")
    ratios["e2e"].append(wall["ref"][-1] / wall["e2e"][-1])
    ratios["kernels_float64"].append(
      wall["ref"][-1] / statistics.median(wall["kernels_float64"][-10:])
    )
    print(
      f"repeat {rep + 1}/{args.repeats}: reference {wall['ref'][-1]:.2f} s, "
      f"score {wall['e2e'][-1]:.2f} s",
      flush=True,
    )

  med = {name: statistics.median(v) for name, v in wall.items()}
  med_cpu = {name: statistics.median(v) for name, v in cpu.items()}
  print(
    f"\nflat shapes: claims {batch.arrays.claim_time.shape}, boxes {batch.arrays.box.shape},"
    f" times {batch.arrays.time.shape}; gold key_box {gold.key_box.shape}"
  )
  print(f"{'median over repeats':36s}{'wall s':>9s}{'cpu s':>9s}{'ref / this':>12s}")
  rows = [
    ("python reference, per sample", "ref"),
    ("  of which rouge_score", "ref_rouge"),
    ("(a) kernels, float64 (as in score)", "kernels_float64"),
    ("(a) kernels, float32", "kernels_float32"),
    ("(b) score, end to end", "e2e"),
    ("  parse_batch", "parse"),
    ("  record_gold + pack_gold", "gold"),
    ("  rouge_accuracy", "rouge"),
  ]
  for label, name in rows:
    ratio = f"{med['ref'] / med[name]:12.1f}" if label[0] in "(p" else ""
    print(f"{label:36s}{med[name]:9.4f}{med_cpu[name]:9.4f}{ratio}")
  print(
    f"\nmedian of per-repeat ratios: kernels {statistics.median(ratios['kernels_float64']):.0f}x,"
    f" end to end {statistics.median(ratios['e2e']):.1f}x; without ROUGE on either side: "
    f"end to end {(med['ref'] - med['ref_rouge']) / (med['e2e'] - med['rouge']):.1f}x; "
    f"load average {os.getloadavg()[0]:.1f}"
  )


if __name__ == "__main__":
  main()
