"""GPU figures of the attention / scan / init / rollout work, one process, JSON out.

  python scripts/bench_gpu.py --out DIR            # 7B widths (an H200: a few minutes)
  python scripts/bench_gpu.py --smoke --out DIR    # tiny sizes, any backend (CPU check)

1. attention forward + backward at 7B text widths (28 heads, 4 kv heads, head dim 128,
   bf16, causal): ours (the portable blockwise backend) against cuDNN, medians of timed
   runs; their outputs compared.
2. 7B random init onto the device (jit with out_shardings; parameters and AdamW moments),
   compile included, as a training run starts.
3. 7B rollouts: the jitted sampler on bf16 weights (cast once), B prompts with a video,
   G samples each, M new tokens; tokens/s = B*G*M / median time (prefill included).
The MFU figures come from scripts/bench_train.py (see scripts/bench_gpu.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from o3jax import sample as sampling, sharding  # noqa: E402
from o3jax.models import attention as attn_lib, config as config_lib  # noqa: E402
from o3jax.train import state as state_lib  # noqa: E402
from o3jax.train.config import OptimConfig  # noqa: E402
from o3jax.train.optim import make_optimizer  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, list[float]]:
  jax.block_until_ready(fn())  # compile + warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times), times


def attention_figures(shapes, heads, kv_heads, head_dim, repeats, impls):
  out = []
  for b, t in shapes:
    ks = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(ks[0], (b, t, heads, head_dim), jnp.bfloat16)
    k = jax.random.normal(ks[1], (b, t, kv_heads, head_dim), jnp.bfloat16)
    v = jax.random.normal(ks[2], (b, t, kv_heads, head_dim), jnp.bfloat16)
    row = {"batch": b, "seq": t}
    # fwd+bwd FLOPs of causal attention: 4 matmuls of 2*B*N*T*T*H, halved by causality,
    # times 3.5 for forward + backward (recomputation of the scores included: 2 + 5) / 2.
    flops = 4 * b * heads * t * t * head_dim * 3.5 / 2
    outs = {}
    for impl in impls:
      f = jax.jit(
        jax.value_and_grad(
          lambda q, k, v: (
            attn_lib.attention(q, k, v, causal=True, impl=impl).astype(jnp.float32).sum()
          ),
          argnums=(0, 1, 2),
        )
      )
      med, _ = timed(lambda: f(q, k, v), repeats)
      row[f"{impl}_ms"] = med * 1e3
      row[f"{impl}_tflops"] = flops / med / 1e12
      outs[impl] = jax.jit(lambda q, k, v: attn_lib.attention(q, k, v, causal=True, impl=impl))(
        q, k, v
      )
    if len(outs) == 2:
      a, c = outs.values()
      row["max_abs_diff"] = float(jnp.max(jnp.abs(a.astype(jnp.float32) - c.astype(jnp.float32))))
    out.append(row)
    print(json.dumps(row), flush=True)
  return out


def video_prompts(cfg, batch: int, grid, text: int, rng):
  t, h, w = grid
  video = [cfg.vision_start_token_id] + [cfg.video_token_id] * (t * h * w // 4)
  video += [cfg.vision_end_token_id]
  rows = [rng.integers(0, 900, text + i).tolist() + video for i in range(batch)]
  n = max(map(len, rows))
  ids, mask = np.zeros((batch, n), np.int32), np.zeros((batch, n), np.int32)
  for i, row in enumerate(rows):
    ids[i, n - len(row) :], mask[i, n - len(row) :] = row, 1
  return dict(
    input_ids=ids,
    attention_mask=mask,
    pixel_values_videos=rng.standard_normal((batch * t * h * w, cfg.vision.patch_dim)).astype(
      np.float32
    ),
    video_grid_thw=np.array([grid] * batch),
    second_per_grid_ts=np.ones((batch,), np.float32),
  )


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--smoke", action="store_true", help="tiny sizes (CPU check of the script)")
  ap.add_argument("--out", default=os.environ.get("OUT", "."))
  ap.add_argument("--skip", default="", help="comma list of parts to skip: attention,init,rollout")
  args = ap.parse_args()
  skip = set(filter(None, args.skip.split(",")))
  gpu = jax.default_backend() == "gpu"
  result = {"device": str(jax.devices()[0].device_kind), "jax": jax.__version__}
  if args.smoke:
    cfg = config_lib.tiny()
    shapes, widths, repeats = [(2, 64)], (4, 2, 16), 2
    prompt, grid, samples, new = 2, (2, 8, 8), 2, 8
  else:
    cfg = config_lib.qwen2_5_vl_7b()
    shapes, widths, repeats = [(4, 4096), (2, 8192), (1, 16384)], (28, 4, 128), 5
    prompt, grid, samples, new = 4, (8, 24, 40), 4, 256
  impls = ["blockwise", "cudnn"] if gpu else ["blockwise"]

  if "attention" not in skip:
    result["attention"] = attention_figures(shapes, *widths, repeats, impls)

  mesh = sharding.make_mesh(devices=jax.devices()[:1])
  compute = jnp.bfloat16
  tx = make_optimizer(OptimConfig(learning_rate=1e-5), 1000, state_lib.abstract_split(cfg)[1])
  if "init" not in skip:
    t0 = time.perf_counter()
    graphdef, state, _ = state_lib.init_random(cfg, tx, mesh, 0, compute)
    jax.block_until_ready(state)
    result["init_s"] = time.perf_counter() - t0
    print(f"init {result['init_s']:.1f} s", flush=True)
    params = sampling.cast_params(state.params, compute)
    del state
  else:
    graphdef, _ = state_lib.abstract_split(cfg, compute)
    params = jax.jit(
      lambda k: sampling.cast_params(state_lib.random_init_fn(cfg, tx, compute)(k).params, compute)
    )(jax.random.key(0))

  if "rollout" not in skip:
    rng = np.random.default_rng(0)
    inputs = sampling.prepare_prompts(cfg, **video_prompts(cfg, prompt, grid, 32, rng))
    key = jax.random.key(1)

    def run():
      return sampling.sample(
        graphdef,
        params,
        inputs,
        key,
        max_new_tokens=new,
        num_samples=samples,
        temperature=1.0,
        top_p=0.95,
        eos_id=cfg.text.vocab_size - 1,  # random weights: rows run the full M steps
      )

    t0 = time.perf_counter()
    jax.block_until_ready(run())
    compile_s = time.perf_counter() - t0
    med, times = timed(run, 3)
    result["rollout"] = {
      "prompts": prompt,
      "samples": samples,
      "new_tokens": new,
      "prompt_tokens": int(inputs["input_ids"].shape[1]),
      "first_call_s": compile_s,
      "median_s": med,
      "tokens_per_s": prompt * samples * new / med,
    }
    print(json.dumps(result["rollout"]), flush=True)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "bench_gpu_parts.json"), "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
