"""`o3jax convert`: Hugging Face directory <-> o3jax workdir.

    o3jax convert --to o3jax --src HF_DIR --dst CKPT_DIR [--mesh D,F,T] [--dtype float32]
    o3jax convert --to hf --src WORKDIR_OR_CKPT_DIR --dst HF_DIR [--dtype bfloat16]

An o3jax workdir written by `--to o3jax` has the layout of a training workdir
(checkpoints/0 holding the parameters, model_config.json, and tokenizer.json when the
source has one), so it serves directly as `--init` of `o3jax sft` / `o3jax gspo` and as
`--model` of `o3jax infer` / `o3jax eval`. Any training workdir converts back to Hugging
Face (its newest checkpoint): transformers' Qwen2_5_VLForConditionalGeneration loads the
result. The workdir's inference.json (how the model was trained to be asked) is carried
both ways, so `o3jax infer` asks a converted model as it was trained. Tensor names and
layouts: docs/reference.md, "Checkpoints".
"""

from __future__ import annotations

import argparse
import os
import shutil

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
    "--mesh",
    default="1,1,1",
    help="data,fsdp,tensor: the mesh the weights are placed on while converting",
  )
  p.add_argument("--dtype", default=None, help="dtype of the written tensors (default: as stored)")
  p.set_defaults(func=run)


def _carry(src: str, dst: str) -> None:
  for name in CARRIED:
    if os.path.exists(os.path.join(src, name)):
      shutil.copy(os.path.join(src, name), os.path.join(dst, name))


def hf_to_o3jax(src: str, dst: str, mesh=None, dtype=None) -> tuple[int, int]:
  """Writes the o3jax workdir; returns (tensors, parameters) written."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from o3jax import workdir
  from o3jax.convert.hf import load_pretrained
  from o3jax.models.config import load_hf_config

  model = load_pretrained(src, dtype=jnp.dtype(dtype or "float32"), mesh=mesh)
  params = nnx.state(model, nnx.Param)
  workdir.write_params(dst, params, load_hf_config(src))
  _carry(src, dst)
  leaves = jax.tree.leaves(params)
  return len(leaves), sum(int(x.size) for x in leaves)


def o3jax_to_hf(src: str, dst: str, mesh=None, dtype=None) -> tuple[int, int]:
  """Writes the Hugging Face directory; returns (tensors, parameters) in its safetensors."""
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  from o3jax import sharding, workdir
  from o3jax.convert.hf import abstract_model, save_pretrained, weight_files
  from o3jax.convert.safetensors_io import read_header

  graphdef, abstract = nnx.split(abstract_model(workdir.read_model_config(src)))
  params = workdir.load_params_from_workdir(src, abstract, mesh or sharding.make_mesh())
  save_pretrained(
    nnx.merge(graphdef, params), dst, dtype=None if dtype is None else jnp.dtype(dtype)
  )
  _carry(src, dst)
  shapes = [entry["shape"] for path in weight_files(dst) for entry in read_header(path)[0].values()]
  return len(shapes), sum(int(np.prod(s)) for s in shapes)


def run(args) -> int:
  from o3jax import sharding

  try:
    data, fsdp, tensor = (int(x) for x in args.mesh.split(","))
  except ValueError:
    raise SystemExit(f"o3jax convert: --mesh must be D,F,T (three integers), got {args.mesh!r}")
  mesh = sharding.make_mesh(data, fsdp, tensor)
  convert = hf_to_o3jax if args.to == "o3jax" else o3jax_to_hf
  tensors, parameters = convert(args.src, args.dst, mesh, args.dtype)
  what = "o3jax workdir" if args.to == "o3jax" else "Hugging Face model"
  print(
    f"o3jax convert: {args.src} -> {what} {args.dst}: {tensors} tensors, {parameters:,} parameters"
  )
  return 0
