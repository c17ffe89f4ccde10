"""Train-step benchmark: step time, tokens/s and model FLOPs utilisation.

  python scripts/bench_train.py --preset tiny                 # CPU: the tiny config
  python scripts/bench_train.py --slice7b --seq 4096 --batch 4 --peak-tflops 989
      # GPU: Qwen2.5-VL-7B widths, 4 text layers, bf16 compute on fp32 master weights, remat

The batch is fixed random data of the benchmarked shape (text only for the 7B slice;
images of the synthetic demo's size for the tiny config), so the figure is the step
alone, without the input pipeline. Model FLOPs per token follow PaLM's accounting:
6 * (matmul parameters, the LM head included, the embedding lookup excluded)
+ 12 * layers * heads * head_dim * sequence; remat's recomputation is not counted, so
MFU = model FLOPs / (step time * peak).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import numpy as np
from flax import nnx

from o3jax import sharding
from o3jax.models import config as config_lib
from o3jax.train import state as state_lib, step as step_lib
from o3jax.train.batch import model_batch
from o3jax.train.config import OptimConfig
from o3jax.train.optim import make_optimizer, schedule
from o3jax.train.loss import sft_loss


def random_batch(cfg, batch: int, seq: int, images: int, grid, rng):
  ids = rng.integers(0, min(cfg.text.vocab_size, 900), (batch, seq)).astype(np.int32)
  out = {"input_ids": ids, "attention_mask": np.ones_like(ids), "loss_mask": np.ones_like(ids)}
  if images:
    t, h, w = grid
    tokens = t * h * w // 4
    block = [cfg.vision_start_token_id] + [cfg.image_token_id] * tokens + [cfg.vision_end_token_id]
    for row in range(batch):
      for i in range(images):
        start = 8 + i * (len(block) + 4)
        ids[row, start : start + len(block)] = block
    n = batch * images
    out.update(
      pixel_values=rng.standard_normal((n * t * h * w, cfg.vision.patch_dim)).astype(np.float32),
      image_grid_thw=np.array([grid] * n, np.int32),
    )
  return out


def matmul_params(params) -> int:
  total = 0
  for path, v in nnx.to_flat_state(params):
    if path[-1] != "embed" and np.ndim(v.get_value()) >= 2:
      total += int(np.prod(np.shape(v.get_value())))
  return total


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="tiny")
  ap.add_argument("--slice7b", action="store_true")
  ap.add_argument("--layers", type=int, default=4)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=640)
  ap.add_argument("--images", type=int, default=10)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--dtype", default=None)
  ap.add_argument("--remat", action="store_true")
  ap.add_argument("--peak-tflops", type=float, default=0.0)
  ap.add_argument("--out", default=None)
  args = ap.parse_args()

  if args.slice7b:
    base = config_lib.qwen2_5_vl_7b()
    cfg = base.replace(
      text=config_lib.TextConfig(**{**base.text.__dict__, "num_hidden_layers": args.layers})
    )
    dtype, remat, images = args.dtype or "bfloat16", True, 0
  else:
    cfg = config_lib.preset(args.preset)
    dtype, remat, images = args.dtype or "float32", args.remat, args.images
  compute = state_lib.dtype_of(dtype)
  mesh = sharding.make_mesh()
  _, abstract = state_lib.abstract_split(cfg, compute, remat)
  ocfg = OptimConfig(learning_rate=1e-5)
  tx = make_optimizer(ocfg, 1000, abstract)
  graphdef, state, shardings = state_lib.init_random(cfg, tx, mesh, 0, compute, remat)
  rng = np.random.default_rng(0)
  batch = model_batch(cfg, random_batch(cfg, args.batch, args.seq, images, (1, 4, 6), rng))
  bsh = step_lib.batch_shardings(batch, mesh)
  fn = step_lib.jit_train_step(
    step_lib.make_train_step(graphdef, sft_loss, tx, schedule(ocfg, 1000)), shardings, bsh, mesh
  )
  batch = jax.device_put(batch, bsh)
  t0 = time.perf_counter()
  state, m = fn(state, batch)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    state, m = fn(state, batch)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  med = statistics.median(times)
  tokens = args.batch * args.seq
  n = matmul_params(state.params)
  t = cfg.text
  flops_per_token = 6 * n + 12 * t.num_hidden_layers * t.num_attention_heads * t.head_dim * args.seq
  achieved = flops_per_token * tokens / med
  result = {
    "device": str(jax.devices()[0].device_kind),
    "config": "7b-slice" if args.slice7b else args.preset,
    "text_layers": t.num_hidden_layers,
    "batch": args.batch,
    "seq": args.seq,
    "dtype": dtype,
    "remat": remat,
    "compile_s": round(compile_s, 2),
    "step_s_median": med,
    "step_s_all": [round(x, 4) for x in times],
    "tokens_per_s": tokens / med,
    "matmul_params": n,
    "model_tflops_per_s": achieved / 1e12,
    "loss": float(m["loss"]),
  }
  if args.peak_tflops:
    result["mfu"] = achieved / (args.peak_tflops * 1e12)
  print(json.dumps(result, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
