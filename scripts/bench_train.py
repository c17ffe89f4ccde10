"""Train-step benchmark: step time, tokens/s and model FLOPs utilisation, or (--aot) the
compiled step's memory and FLOPs without running it.

  python scripts/bench_train.py --preset tiny                 # CPU: the tiny config
  python scripts/bench_train.py --slice7b --seq 4096 --batch 4 --peak-tflops 989
      # GPU: Qwen2.5-VL-7B widths, 4 text layers, bf16 compute on fp32 master weights, remat
  python scripts/bench_train.py --aot --slice7b --layers 4 --batch 1 --seq 16384
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python scripts/bench_train.py --aot \\
      --preset qwen2_5_vl_7b --mesh 1,8,1 --batch 8 --seq 4096
      # compile only (any host-device mesh): temp/argument/output bytes and FLOPs per device

The batch is fixed random data of the benchmarked shape: text plus one video per row
(`--video-frames`, frames of 24x40 patches = 240 tokens; default: about 70% of the
sequence) for the 7B configs, images of the synthetic demo's size for the small ones, so
the figure is the step alone, without the input pipeline. Model FLOPs follow PaLM's
accounting: 6 * matmul parameters (the LM head included, the embedding lookup excluded)
per token, + 12 * layers * heads * head_dim * sequence per token, for the text decoder and
likewise for the vision tower over the patches (with its window / frame segment lengths);
remat's recomputation is not counted, so MFU = model FLOPs / (step time * peak).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from o3jax import sharding  # noqa: E402
from o3jax.models import config as config_lib  # noqa: E402
from o3jax.models.layers import unstacked_rank  # noqa: E402
from o3jax.train import state as state_lib, step as step_lib  # noqa: E402
from o3jax.train.batch import model_batch  # noqa: E402
from o3jax.train.config import OptimConfig  # noqa: E402
from o3jax.train.loss import sft_loss  # noqa: E402
from o3jax.train.optim import make_optimizer, schedule  # noqa: E402

VIDEO_GRID_HW = (24, 40)  # patches per frame: 240 merged tokens, 3 x 5 windows


def random_batch(cfg, batch: int, seq: int, images: int, grid, video_frames: int, rng):
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
  if video_frames:
    h, w = VIDEO_GRID_HW
    grid = (video_frames, h, w)  # temporal grid steps (2 frames each)
    tokens = video_frames * h * w // cfg.vision.merge_unit
    if tokens + 16 > seq:
      raise ValueError(f"{video_frames} video steps ({tokens} tokens) do not fit {seq} tokens")
    block = [cfg.vision_start_token_id] + [cfg.video_token_id] * tokens + [cfg.vision_end_token_id]
    ids[:, 8 : 8 + len(block)] = block
    out.update(
      pixel_values_videos=rng.standard_normal(
        (batch * video_frames * h * w, cfg.vision.patch_dim), np.float32
      ),
      video_grid_thw=np.array([grid] * batch, np.int32),
      second_per_grid_ts=np.ones(batch, np.float32),
    )
  return out


def matmul_params(params, prefix: str) -> int:
  total = 0
  for path, v in nnx.to_flat_state(params):
    if path[0] == prefix and path[-1] != "embed" and unstacked_rank(v) >= 2:
      total += int(np.prod(np.shape(v.get_value())))
  return total


def _unroll_scans() -> None:
  """Every jax.lax.scan traced from here on is unrolled (the layers, the loss chunks): a
  measuring device for cost_analysis, which counts a while loop's body once."""
  scan = jax.lax.scan

  def unrolled(f, init, xs=None, length=None, **kw):
    return scan(f, init, xs, length, **{**kw, "unroll": True})

  jax.lax.scan = unrolled


def model_flops(cfg, params, batch: int, seq: int, patches: int) -> float:
  """PaLM-style model FLOPs of one step (forward + backward), text and vision."""
  t, v = cfg.text, cfg.vision
  text = (
    batch
    * seq
    * (
      6 * matmul_params(params, "text")
      + 12 * t.num_hidden_layers * t.num_attention_heads * t.head_dim * seq
    )
  )
  if not patches:
    return float(text)
  full = len(v.fullatt_block_indexes)
  window = (v.window_size // v.patch_size) ** 2
  frame = VIDEO_GRID_HW[0] * VIDEO_GRID_HW[1]
  attn = 12 * v.num_heads * v.head_dim * ((v.depth - full) * window + full * frame)
  return float(text + patches * (6 * matmul_params(params, "visual") + attn))


def parse_mesh(text: str):
  d, f, t = (int(x) for x in text.split(","))
  devices = jax.devices()[: d * f * t]
  return sharding.make_mesh(d, f, t, devices=devices)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="tiny")
  ap.add_argument("--slice7b", action="store_true", help="7B widths, --layers text layers")
  ap.add_argument("--layers", type=int, default=4)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=640)
  ap.add_argument("--images", type=int, default=10)
  ap.add_argument("--video-frames", type=int, default=None, help="temporal grid steps per row")
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--dtype", default=None)
  ap.add_argument("--remat", default=None, help="none, full, dots, offload")
  ap.add_argument("--attention", default=None, help="auto, blockwise, cudnn, splash")
  ap.add_argument("--mesh", default="1,1,1", help="data,fsdp,tensor: the first D*F*T devices")
  ap.add_argument("--aot", action="store_true", help="compile only; memory and FLOPs")
  ap.add_argument(
    "--unroll",
    action="store_true",
    help="with --aot: unroll every scan, so that `flops` counts each layer (XLA's cost analysis "
    "counts a loop body once); memory and compile time then describe the unrolled program",
  )
  ap.add_argument("--peak-tflops", type=float, default=0.0)
  ap.add_argument("--out", default=None)
  args = ap.parse_args()

  big = args.slice7b or args.preset == "qwen2_5_vl_7b"
  if args.slice7b:
    base = config_lib.qwen2_5_vl_7b()
    cfg = base.replace(
      text=config_lib.TextConfig(**{**base.text.__dict__, "num_hidden_layers": args.layers})
    )
  else:
    cfg = config_lib.preset(args.preset)
  dtype = args.dtype or ("bfloat16" if big else "float32")
  remat = args.remat or ("full" if big else "none")
  cfg = cfg.replace(remat=remat, attention_impl=args.attention or cfg.attention_impl)
  images = 0 if big else args.images
  frames = args.video_frames
  if frames is None:
    frames = int(0.7 * args.seq * 4 / (VIDEO_GRID_HW[0] * VIDEO_GRID_HW[1])) if big else 0
  compute = state_lib.dtype_of(dtype)
  mesh = parse_mesh(args.mesh)
  ocfg = OptimConfig(learning_rate=1e-5)
  _, abstract_params = state_lib.abstract_split(cfg, compute)
  tx = make_optimizer(ocfg, 1000, abstract_params)
  rng = np.random.default_rng(0)
  raw = random_batch(cfg, args.batch, args.seq, images, (1, 4, 6), frames, rng)
  batch = model_batch(cfg, raw)
  patches = sum(len(raw[k]) for k in ("pixel_values", "pixel_values_videos") if k in raw)
  bsh = step_lib.batch_shardings(batch, mesh)
  result = {
    "device": str(jax.devices()[0].device_kind),
    "devices": int(mesh.size),
    "mesh": args.mesh,
    "config": "7b-slice" if args.slice7b else args.preset,
    "text_layers": cfg.text.num_hidden_layers,
    "batch": args.batch,
    "seq": args.seq,
    "video_tokens_per_row": frames * VIDEO_GRID_HW[0] * VIDEO_GRID_HW[1] // 4,
    "patches": patches,
    "dtype": dtype,
    "remat": remat,
    "attention": cfg.attention_impl,
    "unrolled": args.unroll,
  }

  if args.unroll:
    _unroll_scans()
  if args.aot:
    graphdef, state, shardings = state_lib.abstract_state(cfg, tx, mesh, compute)
    train_step = step_lib.make_train_step(graphdef, sft_loss, tx, schedule(ocfg, 1000))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    jitted = jax.jit(
      train_step,
      in_shardings=(shardings, bsh),
      out_shardings=(shardings, repl),
      donate_argnums=(0,),
    )
    abstract_batch = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=s), batch, bsh
    )
    t0 = time.perf_counter()
    with sharding.use_mesh(mesh):
      compiled = jitted.lower(state, abstract_batch).compile()
    result["compile_s"] = round(time.perf_counter() - t0, 2)
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    gib = 2.0**30
    for k in ("temp", "argument", "output"):
      result[f"{k}_bytes"] = int(getattr(mem, f"{k}_size_in_bytes"))
      result[f"{k}_gib"] = round(result[f"{k}_bytes"] / gib, 3)
    result["flops"] = float(cost.get("flops", 0.0))
    result["model_flops_per_device"] = (
      model_flops(cfg, state.params, args.batch, args.seq, patches) / mesh.size
    )
  else:
    graphdef, state, shardings = state_lib.init_random(cfg, tx, mesh, 0, compute)
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
    flops = model_flops(cfg, state.params, args.batch, args.seq, patches)
    achieved = flops / med / mesh.size
    result.update(
      compile_s=round(compile_s, 2),
      step_s_median=med,
      step_s_all=[round(x, 4) for x in times],
      tokens_per_s=tokens / med,
      matmul_params=matmul_params(state.params, "text") + matmul_params(state.params, "visual"),
      model_tflops_per_s=achieved / 1e12,
      loss=float(m["loss"]),
    )
    if args.peak_tflops:
      result["mfu"] = achieved / (args.peak_tflops * 1e12)
  print(json.dumps(result, indent=1))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
