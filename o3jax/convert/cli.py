"""`o3jax convert`: Hugging Face directory <-> o3jax workdir, streaming.

    o3jax convert --to o3jax --src HF_DIR --dst CKPT_DIR [--dtype bfloat16]
    o3jax convert --to hf --src WORKDIR_OR_CKPT_DIR --dst HF_DIR [--dtype bfloat16]

An o3jax workdir written by `--to o3jax` has the layout of a training workdir
(checkpoints/0 holding the parameters, model_config.json, and tokenizer.json when the
source has one), so it serves directly as `--init` of `o3jax sft` / `o3jax gspo` and as
`--model` of `o3jax infer` / `o3jax eval`. Any training workdir converts back to Hugging
Face (its newest checkpoint): transformers' Qwen2_5_VLForConditionalGeneration loads the
result. The workdir's inference.json (how the model was trained to be asked) is carried
both ways, so `o3jax infer` asks a converted model as it was trained. Both directions move
one tensor at a time on the host (no model is built, no device is used): memory stays at a
few of the largest tensors whatever the model's size. Workdir files: docs/reference.md
section 9.
"""

from __future__ import annotations

import argparse
import os
import shutil

import numpy as np


# Files carried from source to destination when present.
CARRIED = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "inference.json")


def add_parser(sub) -> None:
  p = sub.add_parser(
    "convert",
    help="Hugging Face <-> o3jax checkpoints",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--to", choices=("o3jax", "hf"), required=True, help="the format to write")
  p.add_argument("--src", required=True, help="the directory to read")
  p.add_argument("--dst", required=True, help="the directory to write")
  p.add_argument(
    "--dtype",
    default=None,
    help="dtype of the written tensors (default: float32 to o3jax, as stored to hf)",
  )
  p.add_argument(
    "--max-shard-bytes", type=int, default=4 << 30, help="--to hf: size of a safetensors shard"
  )
  p.set_defaults(func=run)


def _carry(src: str, dst: str) -> None:
  for name in CARRIED:
    if os.path.exists(os.path.join(src, name)):
      shutil.copy(os.path.join(src, name), os.path.join(dst, name))


def hf_to_o3jax(src: str, dst: str, dtype=None) -> str:
  """Returns the summary line."""
  from o3jax import workdir
  from o3jax.convert import hf, orbax_arrays, stream
  from o3jax.models.config import load_hf_config

  config = load_hf_config(src)
  out_dtype = np.dtype(dtype or "float32")
  shapes = hf.param_shapes(hf.abstract_model(config))
  table = hf.table_for(config)
  targets = {path: (shape, out_dtype) for path, (shape, _) in shapes.items()}
  writer = orbax_arrays.Writer(dst)
  for path, (shape, dt) in targets.items():
    writer.create(path, shape, dt, stacked=table.is_stacked(path))
  summary = stream.read_hf(
    src,
    table.locate,
    targets,
    writer.write,  # casts to out_dtype a chunk at a time
    hf.ignored(config),
    desc="to o3jax",
  )
  writer.finish()
  workdir.write_model_config(dst, config)
  _carry(src, dst)
  return summary


def o3jax_to_hf(src: str, dst: str, dtype=None, max_shard_bytes: int = 4 << 30) -> str:
  """Returns the summary line."""
  from o3jax import workdir
  from o3jax.convert import hf, orbax_arrays

  config = workdir.read_model_config(src)
  reader = orbax_arrays.Reader(src)
  expected = hf.param_shapes(hf.abstract_model(config))
  extra = sorted(set(reader.names) - set(expected))
  if extra:  # a deeper or wider model: writing the params that fit would drop the rest
    raise ValueError(
      f"{src}: checkpoint holds {len(extra)} parameters the model_config.json does not have "
      f"(first: {extra[0]})"
    )
  params = {}
  for path, (shape, _) in expected.items():
    stored_shape, stored_dtype = reader.shape_dtype(path)
    if stored_shape != shape:
      raise ValueError(f"{src}: {path} has shape {stored_shape}, the model expects {shape}")
    params[path] = (shape, stored_dtype)
  summary = hf.write_hf_dir(
    dst,
    config,
    params,
    reader.read,
    None if dtype is None else np.dtype(dtype),
    max_shard_bytes,
    desc="to hf",
  )
  _carry(src, dst)
  return summary


def run(args) -> int:
  import ml_dtypes  # noqa: F401  (registers "bfloat16" as a numpy dtype name)

  if args.to == "o3jax":
    summary = hf_to_o3jax(args.src, args.dst, args.dtype)
  else:
    summary = o3jax_to_hf(args.src, args.dst, args.dtype, args.max_shard_bytes)
  what = "an o3jax workdir" if args.to == "o3jax" else "a Hugging Face model"
  print(f"o3jax convert: wrote {what} to {args.dst} ({summary.split(': ', 1)[1]})")
  return 0
