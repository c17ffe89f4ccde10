"""`o3jax convert`: Hugging Face directory <-> o3jax checkpoint directory, streaming.

An o3jax checkpoint directory has the layout of a training workdir
(`checkpoints/<step>/state` holding `{"params": ...}`, `model_config.json`, and
`tokenizer.json` when the source has one), so it serves directly as `--init` for
`o3jax sft` / `o3jax gspo`, and any training workdir converts back to Hugging Face.
Both directions move one tensor at a time on the host (no model is built, no device is
used): memory stays at a few of the largest tensors whatever the model's size.

  o3jax convert --to o3jax --src HF_DIR --dst CKPT_DIR [--dtype bfloat16]
  o3jax convert --to hf --src WORKDIR_OR_CKPT_DIR --dst HF_DIR [--dtype bfloat16]
"""

from __future__ import annotations

import os
import shutil

import numpy as np


def add_parser(sub) -> None:
  p = sub.add_parser("convert", help="Hugging Face <-> o3jax checkpoints")
  p.add_argument("--to", choices=("o3jax", "hf"), required=True)
  p.add_argument("--src", required=True)
  p.add_argument("--dst", required=True)
  p.add_argument(
    "--dtype",
    default=None,
    help="dtype of the written tensors (default: float32 to o3jax, as stored to hf)",
  )
  p.add_argument(
    "--max-shard-bytes", type=int, default=4 << 30, help="--to hf: size of a safetensors shard"
  )
  p.set_defaults(func=run)


def hf_to_o3jax(src: str, dst: str, dtype=None) -> str:
  """Returns the summary line."""
  from o3jax import workdir
  from o3jax.convert import hf, orbax_arrays, stream
  from o3jax.models.config import load_hf_config

  config = load_hf_config(src)
  out_dtype = np.dtype(dtype or "float32")
  shapes = hf.param_shapes(hf.abstract_model(config))
  targets = {path: (shape, out_dtype) for path, (shape, _) in shapes.items()}
  writer = orbax_arrays.Writer(dst)
  for path, (shape, dt) in targets.items():
    writer.create(path, shape, dt)
  summary = stream.read_hf(
    src,
    hf.locate,
    targets,
    writer.write,  # casts to out_dtype a chunk at a time
    hf.ignored(config),
    desc="to o3jax",
  )
  writer.finish()
  workdir.write_model_config(dst, config)
  for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    if os.path.exists(os.path.join(src, name)):
      shutil.copy(os.path.join(src, name), os.path.join(dst, name))
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
  if os.path.exists(os.path.join(src, "tokenizer.json")):
    shutil.copy(os.path.join(src, "tokenizer.json"), os.path.join(dst, "tokenizer.json"))
  return summary


def run(args) -> int:
  import ml_dtypes  # noqa: F401  (registers "bfloat16" as a numpy dtype name)

  if args.to == "o3jax":
    hf_to_o3jax(args.src, args.dst, args.dtype)
  else:
    o3jax_to_hf(args.src, args.dst, args.dtype, args.max_shard_bytes)
  return 0
