"""`o3jax convert`: Hugging Face directory <-> o3jax checkpoint directory.

An o3jax checkpoint directory has the layout of a training workdir
(`checkpoints/<step>/state` holding `{"params": ...}`, `model_config.json`, and
`tokenizer.json` when the source has one), so it serves directly as `--init` for
`o3jax sft` / `o3jax gspo`, and any training workdir converts back to Hugging Face.

  o3jax convert --to o3jax --src HF_DIR --dst CKPT_DIR [--mesh D,F,T]
  o3jax convert --to hf --src WORKDIR_OR_CKPT_DIR --dst HF_DIR [--dtype bfloat16]
"""

from __future__ import annotations

import os
import shutil


def add_parser(sub) -> None:
  p = sub.add_parser("convert", help="Hugging Face <-> o3jax checkpoints")
  p.add_argument("--to", choices=("o3jax", "hf"), required=True)
  p.add_argument("--src", required=True)
  p.add_argument("--dst", required=True)
  p.add_argument(
    "--mesh",
    default="1,1,1",
    help="data,fsdp,tensor: the mesh the weights are placed on while converting",
  )
  p.add_argument("--dtype", default=None, help="dtype of the written tensors (default: as stored)")
  p.set_defaults(func=run)


def hf_to_o3jax(src: str, dst: str, mesh=None, dtype=None) -> int:
  import jax.numpy as jnp
  from flax import nnx

  from o3jax import workdir
  from o3jax.convert.hf import load_pretrained
  from o3jax.models.config import load_hf_config

  model = load_pretrained(src, dtype=jnp.dtype(dtype or "float32"), mesh=mesh)
  workdir.write_params(dst, nnx.state(model, nnx.Param), load_hf_config(src))
  for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    if os.path.exists(os.path.join(src, name)):
      shutil.copy(os.path.join(src, name), os.path.join(dst, name))
  return 0


def o3jax_to_hf(src: str, dst: str, mesh=None, dtype=None) -> int:
  import jax.numpy as jnp
  from flax import nnx

  from o3jax import sharding, workdir
  from o3jax.convert.hf import abstract_model, save_pretrained

  graphdef, abstract = nnx.split(abstract_model(workdir.read_model_config(src)))
  params = workdir.load_params_from_workdir(src, abstract, mesh or sharding.make_mesh())
  save_pretrained(
    nnx.merge(graphdef, params), dst, dtype=None if dtype is None else jnp.dtype(dtype)
  )
  if os.path.exists(os.path.join(src, "tokenizer.json")):
    shutil.copy(os.path.join(src, "tokenizer.json"), os.path.join(dst, "tokenizer.json"))
  return 0


def run(args) -> int:
  from o3jax import sharding

  data, fsdp, tensor = (int(x) for x in args.mesh.split(","))
  mesh = sharding.make_mesh(data, fsdp, tensor)
  if args.to == "o3jax":
    return hf_to_o3jax(args.src, args.dst, mesh, args.dtype)
  return o3jax_to_hf(args.src, args.dst, mesh, args.dtype)
