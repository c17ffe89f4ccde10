"""Rollout throughput: the jitted sampler against transformers `generate`.

Both sample G continuations of the same B video prompts on the same tiny random
Qwen2.5-VL (one checkpoint, loaded by both), with the same settings (temperature 1,
top-p 0.95, as the GSPO rollouts) and the same number of new tokens; each timed run
includes the prefill with the vision tower. Reports medians over repeated runs after
a warm-up (the jit compile is timed apart) and the ratio of the two.

  python scripts/bench_sample.py [--batch 4 --samples 4 --new-tokens 128 --repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import jax
import numpy as np
import torch
import transformers

from o3jax import sample as sampling
from o3jax.convert import load_pretrained
from o3jax.models import config as config_lib


def video_prompts(cfg, batch: int, grid, text: int, seed: int = 0) -> dict:
  """B left-padded prompts: text, one video of `grid`, text; lengths differ by row."""
  rng = np.random.default_rng(seed)
  t, h, w = grid
  video = (
    [cfg.vision_start_token_id]
    + [cfg.video_token_id] * (t * h * w // 4)
    + [cfg.vision_end_token_id]
  )
  rows = [
    rng.integers(0, 900, text // 2 + i).tolist()
    + video
    + rng.integers(0, 900, text - text // 2).tolist()
    for i in range(batch)
  ]
  n = max(map(len, rows))
  ids = np.zeros((batch, n), np.int64)
  mask = np.zeros((batch, n), np.int64)
  for i, row in enumerate(rows):
    ids[i, n - len(row) :], mask[i, n - len(row) :] = row, 1
  pixels = rng.standard_normal((batch * t * h * w, cfg.vision.patch_dim)).astype(np.float32)
  return dict(
    input_ids=ids,
    attention_mask=mask,
    pixel_values_videos=pixels,
    video_grid_thw=np.array([grid] * batch),
    second_per_grid_ts=np.full((batch,), 1.0, np.float32),
  )


def timed_pairs(runs: dict, repeats: int) -> dict[str, list[float]]:
  """Runs the contenders in turn, `repeats` times, so that load on the machine falls on
  both alike."""
  times = {name: [] for name in runs}
  for i in range(repeats):
    line = []
    for name, fn in runs.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
      line.append(f"{name} {times[name][-1]:.3f} s")
    print(f"  run {i + 1}/{repeats}: " + ", ".join(line), flush=True)
  return times


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=4, help="prompts B")
  parser.add_argument("--samples", type=int, default=4, help="rollouts per prompt G")
  parser.add_argument("--new-tokens", type=int, default=128)
  parser.add_argument("--grid", type=int, nargs=3, default=(4, 8, 8), help="video t h w patches")
  parser.add_argument("--text", type=int, default=24, help="text tokens per prompt")
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument("--top-p", type=float, default=0.95)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  cfg = config_lib.tiny()
  torch.manual_seed(0)
  hf = (
    transformers.Qwen2_5_VLForConditionalGeneration(
      transformers.Qwen2_5_VLConfig(**config_lib.to_hf_dict(cfg))
    )
    .eval()
    .float()
  )
  with tempfile.TemporaryDirectory() as path:
    hf.save_pretrained(path)
    ours = load_pretrained(path)
  inputs = video_prompts(cfg, args.batch, tuple(args.grid), args.text)
  n, m = args.batch * args.samples, args.new_tokens
  print(
    f"jax {jax.__version__} on {jax.default_backend()} ({len(jax.devices())} device), "
    f"torch {torch.__version__} on cpu, "
    f"transformers {transformers.__version__}"
  )
  print(
    f"B={args.batch} prompts of {inputs['input_ids'].shape[1]} tokens (video grid "
    f"{tuple(args.grid)}), G={args.samples}, {m} new tokens, temperature "
    f"{args.temperature}, top_p {args.top_p}"
  )

  key = [jax.random.key(0)]

  def run_ours():
    key[0], k = jax.random.split(key[0])
    out = sampling.generate(
      ours,
      k,
      max_new_tokens=m,
      num_samples=args.samples,
      temperature=args.temperature,
      top_p=args.top_p,
      eos_id=cfg.eos_token_id,
      rope_rule="transformers5",
      **inputs,
    )
    return out

  hf_inputs = {k: torch.as_tensor(v) for k, v in inputs.items()}
  hf_inputs["mm_token_type_ids"] = torch.as_tensor(
    (inputs["input_ids"] == cfg.image_token_id) * 1
    + (inputs["input_ids"] == cfg.video_token_id) * 2
  )

  def run_hf(threads: int):
    torch.set_num_threads(threads)
    with torch.no_grad():
      out = hf.generate(
        **hf_inputs,
        do_sample=True,
        num_return_sequences=args.samples,
        max_new_tokens=m,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=0,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=0,
      )
    hf.model.rope_deltas = None
    return out

  start = time.perf_counter()
  out = run_ours()
  compile_s = time.perf_counter() - start
  print(f"o3jax first call (compile + run): {compile_s:.2f} s")
  steps = int(out.lengths.max())
  print(f"  rollouts ran {steps} steps; {int(out.lengths.sum())} tokens up to and including eos")
  # transformers runs at torch's default thread count and at one thread (on a loaded
  # machine oversubscribed threads can be many times slower); the faster is the baseline.
  threads = sorted({torch.get_num_threads(), 1})
  hf_steps = run_hf(threads[0]).shape[1] - inputs["input_ids"].shape[1]  # warm-up
  if steps != m or hf_steps != m:
    print(f"  warning: a run stopped early at eos ({steps}, {hf_steps} of {m} steps)")

  runs = {"o3jax": run_ours}
  runs.update({f"transformers x{t}": functools.partial(run_hf, t) for t in threads})
  times = timed_pairs(runs, args.repeats)
  medians = {name: statistics.median(ts) for name, ts in times.items()}
  tokens = n * m  # both decode all N rows for M steps (rows past eos included)
  print(f"\n{'':18}{'median s':>10}{'tokens/s':>12}   (xT: torch threads)")
  for name, med in medians.items():
    print(f"{name:18}{med:10.3f}{tokens / med:12.0f}")
  baseline = min(v for k, v in medians.items() if k != "o3jax")
  print(
    f"speed-up (o3jax / fastest transformers, tokens/s medians): {baseline / medians['o3jax']:.2f}x"
  )


if __name__ == "__main__":
  main()
