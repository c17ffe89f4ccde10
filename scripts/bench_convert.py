"""Benchmark `o3jax convert` at real size: wall time, throughput and peak resident memory of
each direction, and a bit-for-bit check of the round trip.

  python scripts/bench_convert.py                       # 7B-shaped random bf16 checkpoint
  python scripts/bench_convert.py --layers 4            # 7B widths, 4 text layers, 4 vision blocks
  python scripts/bench_convert.py --src Qwen2.5-VL-7B-Instruct
  python scripts/bench_convert.py --layers 4 --baseline /tmp/old_o3jax   # before/after, same run

The source checkpoint (unless --src) has random weights in the published layout (released
names, config.json, 4 GiB shards with an index). Each direction runs in its own python
process (`o3jax.cli.main(["convert", ...])`), which reports its resident set size after
the imports and its peak (`ru_maxrss`); `--baseline DIR` runs the same conversions with
another checkout of o3jax first on the path (e.g. `git archive` of an older commit), so
that before and after are measured on the same files in the same run. Never point
--baseline at code that holds the whole model with a full-size checkpoint on a small host.
The round trip (src -> o3jax -> hf) must give back every tensor of src, bit for bit, under
the same names, shapes and dtypes, with the index transformers writes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Runs one conversion in a fresh process and prints its measurements as JSON.
DRIVER = """
import json, resource, sys, time
import jax, orbax.checkpoint, tensorstore, flax.nnx  # the imports, before the baseline
import o3jax.cli, o3jax.convert.hf, o3jax.train.run

def rss():
  with open("/proc/self/status") as f:
    return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) * 1024

base = rss()
t = time.perf_counter()
rc = o3jax.cli.main(["convert", *sys.argv[1:]])
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("BENCH " + json.dumps({"rc": rc, "wall_s": wall, "base_rss": base, "peak_rss": peak}))
"""


def random_hf_checkpoint(config, directory: str, dtype, seed: int = 0, max_shard_bytes=4 << 30):
  """A Hugging Face directory of `config` with random weights (N(0, 0.02)) in `dtype`,
  written tensor by tensor."""
  from o3jax.convert import hf

  params = {
    path: (shape, np.dtype(dtype))
    for path, (shape, _) in hf.param_shapes(hf.abstract_model(config)).items()
  }
  rng = np.random.default_rng(seed)

  def fetch(path, index):
    shape = params[path][0] if index is None else params[path][0][1:]
    out = np.empty(shape, np.dtype(dtype))
    flat = out.reshape(-1)
    for start in range(0, flat.size, 1 << 24):  # in pieces: no float32 copy of a whole tensor
      piece = rng.standard_normal(min(1 << 24, flat.size - start), np.float32)
      flat[start : start + piece.size] = piece * np.float32(0.02)
    return out

  return hf.write_hf_dir(directory, config, params, fetch, None, max_shard_bytes, "random source")


def convert(direction: str, src: str, dst: str, dtype: str | None, code: str) -> dict:
  """One direction in a fresh process with `code` first on the path; its measurements."""
  argv = ["--to", direction, "--src", src, "--dst", dst] + (["--dtype", dtype] if dtype else [])
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([code, os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run(
    [sys.executable, "-c", DRIVER, *argv], env=env, capture_output=True, text=True, cwd=code
  )
  lines = [l for l in proc.stdout.splitlines() if l.startswith("BENCH ")]
  if proc.returncode or not lines:
    tail = proc.stderr.strip().splitlines()[-3:]
    return {"failed": f"exit status {proc.returncode}: " + " | ".join(tail)}
  return json.loads(lines[-1][len("BENCH ") :])


def compare(src: str, back: str) -> dict:
  """Every tensor of `src` in `back` under the same name, shape, dtype and bytes (read one
  at a time); the index as transformers writes it when `src` is sharded."""
  from o3jax.convert import safetensors_io as st

  a = {i.name: i for f in st.weight_files(src) for i in st.tensor_infos(f)}
  b = {i.name: i for f in st.weight_files(back) for i in st.tensor_infos(f)}
  problems = []
  if a.keys() != b.keys():
    problems.append(
      f"names differ: only in src {sorted(a.keys() - b.keys())[:3]}, "
      f"only in back {sorted(b.keys() - a.keys())[:3]}"
    )
  for name in sorted(a.keys() & b.keys()):
    x, y = a[name], b[name]
    if (x.shape, x.dtype) != (y.shape, y.dtype):
      problems.append(f"{name}: {x.shape} {x.dtype} became {y.shape} {y.dtype}")
    elif st.read_tensor(x).tobytes() != st.read_tensor(y).tobytes():
      problems.append(f"{name}: bytes differ")
  index = os.path.join(back, st.INDEX)
  if os.path.exists(index):
    with open(index) as f:
      text = f.read()
    data = json.loads(text)
    if text != json.dumps(data, indent=2, sort_keys=True) + "\n":
      problems.append("index not formatted as transformers writes it")
    if set(data["weight_map"]) != set(b) or set(data["metadata"]) != {
      "total_parameters",
      "total_size",
    }:
      problems.append("index does not list every tensor with total_parameters and total_size")
    if data["metadata"]["total_size"] != sum(i.nbytes for i in b.values()):
      problems.append("index total_size is not the tensors' bytes")
  return {
    "tensors": len(a),
    "parameters": int(sum(np.prod(i.shape) for i in a.values())),
    "bytes": int(sum(i.nbytes for i in a.values())),
    "bit_exact": not problems,
    "problems": problems[:10],
  }


def round_trip(src: str, work: str, dtype: str | None, code: str, label: str) -> dict:
  ckpt, back = os.path.join(work, f"{label}_o3jax"), os.path.join(work, f"{label}_hf")
  for d in (ckpt, back):
    shutil.rmtree(d, ignore_errors=True)
  out = {"to_o3jax": convert("o3jax", src, ckpt, dtype, code)}
  if "failed" not in out["to_o3jax"]:
    out["to_hf"] = convert("hf", ckpt, back, dtype, code)
    if "failed" not in out["to_hf"]:
      out["check"] = compare(src, back)
  for d in (ckpt, back):
    shutil.rmtree(d, ignore_errors=True)
  return out


def report(label: str, result: dict, nbytes: int) -> None:
  for direction in ("to_o3jax", "to_hf"):
    r = result.get(direction)
    if r is None:
      continue
    if "failed" in r:
      print(f"{label:9s} {direction:9s} FAILED ({r['failed']})")
      continue
    print(
      f"{label:9s} {direction:9s} {r['wall_s']:7.1f} s  {nbytes / 2**20 / r['wall_s']:7.0f} MiB/s  "
      f"peak RSS {r['peak_rss'] / 2**30:6.2f} GiB (+{(r['peak_rss'] - r['base_rss']) / 2**30:.2f} "
      f"GiB over the {r['base_rss'] / 2**30:.2f} GiB after imports)"
    )
  if "check" in result:
    c = result["check"]
    print(
      f"{label:9s} round trip: {'bit-exact' if c['bit_exact'] else 'DIFFERS'} "
      f"over {c['tensors']} tensors {c['problems'] or ''}"
    )


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--src", help="a Hugging Face directory (default: a random one is built)")
  ap.add_argument("--config", help="config.json of the random source (default: the 7B preset)")
  ap.add_argument("--layers", type=int, help="text layers and vision blocks of the random source")
  ap.add_argument("--dtype", default="bfloat16")
  ap.add_argument("--work", help="scratch directory (default: a temporary one, removed)")
  ap.add_argument("--baseline", help="another o3jax checkout to measure first, as 'before'")
  ap.add_argument("--json", help="write the results here")
  args = ap.parse_args()

  import ml_dtypes  # noqa: F401  (the bfloat16 numpy dtype)

  from o3jax.models import config as config_lib

  work = args.work or tempfile.mkdtemp(prefix="bench_convert_")
  os.makedirs(work, exist_ok=True)
  results = {}
  try:
    src = args.src
    if src is None:
      if args.config:
        with open(args.config) as f:
          config = config_lib.from_hf_dict(json.load(f))
      else:
        config = config_lib.qwen2_5_vl_7b()
      if args.layers:
        config = config.replace(
          text=config.text.__class__(**{**vars(config.text), "num_hidden_layers": args.layers}),
          vision=config.vision.__class__(
            **{
              **vars(config.vision),
              "depth": args.layers,
              "fullatt_block_indexes": tuple(range(args.layers - 1, args.layers)),
            }
          ),
        )
      src = os.path.join(work, "src")
      shutil.rmtree(src, ignore_errors=True)
      results["source"] = random_hf_checkpoint(config, src, np.dtype(args.dtype))
    from o3jax.convert import safetensors_io as st

    infos = [i for f in st.weight_files(src) for i in st.tensor_infos(f)]
    nbytes = sum(i.nbytes for i in infos)
    results["src"] = {
      "tensors": len(infos),
      "parameters": int(sum(np.prod(i.shape) for i in infos)),
      "bytes": nbytes,
      "largest_tensor_bytes": max(i.nbytes for i in infos),
      "files": len(st.weight_files(src)),
    }
    print(f"source: {results['src']}")
    if args.baseline:
      results["before"] = round_trip(
        src, work, args.dtype, os.path.abspath(args.baseline), "before"
      )
      report("before", results["before"], nbytes)
    results["after"] = round_trip(src, work, args.dtype, ROOT, "after")
    report("after", results["after"], nbytes)
  finally:
    if not args.work:
      shutil.rmtree(work, ignore_errors=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)
  check = results["after"].get("check", {})
  return 0 if check.get("bit_exact") else 1


if __name__ == "__main__":
  sys.exit(main())
