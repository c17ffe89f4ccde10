"""Benchmark the data pipeline: frames decoded and processed per second, and whether a
tiny-config SFT step waits on data.

    python scripts/bench_data.py [--videos 8] [--repeats 5] [--out bench_data.json]

Part 1 (reference processing: 2 fps, up to 16 frames of ~128*28*28 pixels): the grain
pipeline with 0, 1 and 2 worker processes against a plain sequential loop doing what
qwen-vl-utils and the transformers image processor do per video (decord decode, PIL
bicubic resize per frame, numpy normalise + patchify per frame), on the same synthetic
640x360 videos. Reported: frames/s, median over repeats, and the ratio to the loop
measured in the same run (repeats interleaved).

Part 2 (tiny processing and the tiny model on 112x84 synthetic videos): a jitted
forward+backward of the tiny Qwen2.5-VL on pipeline batches; per step, the time spent
waiting for the next batch, with 0, 1 and 2 workers.
"""

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

import decord
import numpy as np
from PIL import Image

from o3jax.data import synth
from o3jax.data.pipeline import PipelineConfig, bucket_for_videos, make_iterator
from o3jax.data.records import load_records
from o3jax.processing import frames as F
from o3jax.processing.config import CLIP_MEAN, CLIP_STD, TINY, ProcessingConfig
from o3jax.processing.tokenizer import build_demo_tokenizer, special_token_ids


def baseline_pass(paths: list[str], config: ProcessingConfig) -> tuple[int, float]:
  """One sequential pass as qwen-vl-utils + the HF image processor do it; (frames, seconds)."""
  mean, std = np.array(CLIP_MEAN, np.float32), np.array(CLIP_STD, np.float32)
  start, frames = time.perf_counter(), 0
  for path in paths:
    reader = decord.VideoReader(path)
    total, fps = len(reader), reader.get_avg_fps()
    n = F.num_frames(total, fps, config)
    video = reader.get_batch(F.frame_indices(total, n).tolist()).asnumpy()
    height, width = F.video_frame_size(video.shape[1], video.shape[2], n, config)
    for frame in video:
      image = np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))
      x = ((image.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)  # [3, H, W]
      gh, gw = height // 14, width // 14
      x = x.reshape(3, gh // 2, 2, 14, gw // 2, 2, 14).transpose(1, 4, 2, 5, 0, 3, 6)
      x = np.broadcast_to(x[:, :, :, :, :, None], x.shape[:5] + (2, 14, 14))
      np.ascontiguousarray(x).reshape(gh * gw, 1176)
      frames += 1
  return frames, time.perf_counter() - start


def frames_in(batch) -> int:
  return int((batch["image_grid_thw"][:, 0] > 0).sum() + batch["video_grid_thw"][:, 0].sum() * 2)


def measure(args, records, root, tokenizer, processing, bucket, paths) -> tuple[list[float], dict]:
  """Interleaved repeats (loop, then each worker count), so that changes in machine load
  hit every variant alike. Each pipeline window starts after draining what its workers
  prefetched while the other variants ran, so it measures steady production."""
  iterators, startup = {}, {}
  for workers in (0, 1, 2):
    config = PipelineConfig(
      batch_size=2,
      buckets=(bucket,),
      num_workers=workers,
      seed=0,
      shard_index=0,
      shard_count=1,
      worker_buffer_size=1,
    )
    start = time.perf_counter()
    iterators[workers] = make_iterator(
      records, tokenizer=tokenizer, processing=processing, config=config, root=root
    )
    next(iterators[workers])
    startup[workers] = time.perf_counter() - start
  baseline, rates = [], {w: [] for w in iterators}
  try:
    for _ in range(args.repeats):
      frames, seconds = baseline_pass(paths, processing)
      baseline.append(frames / seconds)
      for workers, iterator in iterators.items():
        for _ in range(4):  # drain: at most 2 workers x (queue + read-ahead + in flight) examples
          next(iterator)
        t0, frames = time.perf_counter(), 0
        for _ in range(len(paths)):  # 2 passes over the videos
          frames += frames_in(next(iterator))
        rates[workers].append(frames / (time.perf_counter() - t0))
  finally:
    for iterator in iterators.values():
      iterator.close()
  return baseline, {w: (rates[w], startup[w]) for w in iterators}


def part1(args, tokenizer, workdir) -> dict:
  root = os.path.join(workdir, "reference")
  print(f"writing {args.videos} synthetic 640x360 24 fps videos ...", flush=True)
  synth.synthesize(
    root, videos=args.videos, seed=0, vstar_videos=0, width=640, height=360, fps=24, progress=False
  )
  records = [
    r
    for r in load_records(os.path.join(root, "STGR-SFT.json"))
    if r["task"] == "General video QA Free-form"
  ]
  paths = [os.path.join(root, r["video_path"]) for r in records]
  processing = ProcessingConfig()
  bucket = bucket_for_videos(processing, 4096, (640, 360))
  baseline, pipelines = measure(args, records, root, tokenizer, processing, bucket, paths)
  base = statistics.median(baseline)
  result = {
    "videos": len(paths),
    "frame_size": list(F.video_frame_size(360, 640, 16, processing)[::-1]),
    "baseline_frames_per_s": base,
    "baseline_runs": baseline,
    "pipeline": {},
  }
  print(
    f"\nreference processing, {len(paths)} videos of 640x360 -> frames of {result['frame_size']}"
  )
  print(
    f"  sequential loop (decord + PIL + numpy per frame): {base:8.1f} frames/s (median of {args.repeats})"
  )
  for workers, (rates, startup) in pipelines.items():
    rate = statistics.median(rates)
    result["pipeline"][workers] = {
      "frames_per_s": rate,
      "ratio": rate / base,
      "startup_s": startup,
      "runs": rates,
    }
    print(
      f"  pipeline, {workers} worker process(es):          {rate:8.1f} frames/s  "
      f"ratio {rate / base:4.2f}  (startup {startup:.1f} s)",
      flush=True,
    )
  return result


def part2(args, tokenizer, workdir) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  from o3jax.models import config as model_config  # pylint: disable=import-outside-toplevel
  from o3jax.models.qwen2_5_vl import Qwen2_5_VL  # pylint: disable=import-outside-toplevel
  from o3jax.train.batch import model_batch  # pylint: disable=import-outside-toplevel

  root = os.path.join(workdir, "tiny")
  synth.synthesize(root, videos=args.videos, seed=1, vstar_videos=0, progress=False)
  records = load_records(os.path.join(root, "STGR-SFT.json"))
  ids = special_token_ids(tokenizer)
  cfg = model_config.tiny(**{k: v for k, v in ids.items() if k != "pad_token_id"})
  model = Qwen2_5_VL(cfg, rngs=nnx.Rngs(0))
  bucket = bucket_for_videos(TINY, 768, (112, 84), max_key_frames=2, image_size=(112, 84))

  @nnx.jit
  def step(model, mb):
    def loss(model):
      logits = model(
        mb["input_ids"],
        mb["attention_mask"],
        pixel_values=mb["pixel_values"],
        position_ids=mb["position_ids"],
        image_layout=mb["image_layout"],
      )
      logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32))
      nll = -jnp.take_along_axis(logp, mb["input_ids"][:, 1:, None], -1)[..., 0]
      weight = mb["loss_mask"][:, 1:]
      return (nll * weight).sum() / jnp.maximum(weight.sum(), 1)

    return nnx.value_and_grad(loss)(model)

  result = {"batch_size": args.batch_size, "bucket": dataclasses.asdict(bucket), "runs": {}}
  print(f"\ntiny SFT step (batch {args.batch_size}, bucket {bucket}) fed by the pipeline")
  for workers in (0, 1, 2):
    config = PipelineConfig(
      batch_size=args.batch_size,
      buckets=(bucket,),
      num_workers=workers,
      seed=0,
      shard_index=0,
      shard_count=1,
      worker_buffer_size=4,
    )
    iterator = make_iterator(
      records, tokenizer=tokenizer, processing=TINY, config=config, root=root
    )
    waits, preps, steps = [], [], []
    try:
      for i in range(args.steps + 2):
        t0 = time.perf_counter()
        batch = next(iterator)
        t1 = time.perf_counter()
        mb = jax.tree.map(lambda x: x[0], model_batch(cfg, batch))  # one micro-batch
        t2 = time.perf_counter()
        jax.block_until_ready(step(model, mb))
        t3 = time.perf_counter()
        if i >= 2:  # the first steps include worker startup and compilation
          waits.append(t1 - t0)
          preps.append(t2 - t1)
          steps.append(t3 - t2)
    finally:
      iterator.close()
    row = {
      "wait_ms": 1e3 * statistics.median(waits),
      "host_prep_ms": 1e3 * statistics.median(preps),
      "step_ms": 1e3 * statistics.median(steps),
    }
    row["waits_on_data"] = row["wait_ms"] > 0.1 * row["step_ms"]
    result["runs"][workers] = row
    print(
      f"  {workers} worker(s): step {row['step_ms']:7.1f} ms, host prep {row['host_prep_ms']:6.1f} ms, "
      f"waiting for the batch {row['wait_ms']:7.1f} ms (median of {len(steps)}) -> "
      f"{'waits on data' if row['waits_on_data'] else 'does not wait'}",
      flush=True,
    )
  return result


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--videos", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=12, help="timed SFT steps per worker count")
  parser.add_argument("--batch-size", type=int, default=4)
  parser.add_argument("--skip-step", action="store_true", help="only part 1")
  parser.add_argument("--out", help="write the numbers as JSON here")
  args = parser.parse_args()
  # Other work on the machine slows the worker processes most: report the load with the numbers.
  print(
    f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
    flush=True,
  )
  tokenizer = build_demo_tokenizer()
  with tempfile.TemporaryDirectory() as workdir:
    results = {"throughput": part1(args, tokenizer, workdir)}
    if not args.skip_step:
      results["tiny_sft_step"] = part2(args, tokenizer, workdir)
  results["load_average"] = os.getloadavg()[0]
  print(f"load average at the end: {results['load_average']:.1f}")
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
