"""Run in a subprocess with 8 host devices: sharded forward == single-device forward."""

import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from o3jax import sharding  # noqa: E402
from o3jax.convert import load_pretrained, save_pretrained  # noqa: E402
from o3jax.models import Qwen2_5_VL, config as config_lib, prepare_inputs  # noqa: E402


def main():
  assert len(jax.devices()) == 8, jax.devices()
  cfg = config_lib.tiny()
  model = Qwen2_5_VL(cfg, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  # Move biases and norm scales away from 0/1 so their sharding bugs would show.
  state = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), state)

  rng = np.random.default_rng(0)
  grid = np.array([[1, 6, 8]] * 4)
  block = [cfg.vision_start_token_id] + [cfg.image_token_id] * 12 + [cfg.vision_end_token_id]
  ids = np.array(
    [rng.integers(0, 900, 3).tolist() + block + rng.integers(0, 900, 5).tolist() for _ in range(4)]
  )
  mask = np.ones_like(ids)
  mask[1, :2] = 0
  pv = rng.standard_normal((4 * 48, cfg.vision.patch_dim)).astype(np.float32)
  inputs = prepare_inputs(cfg, ids, mask, pixel_values=pv, image_grid_thw=grid)

  def forward(state, inputs):
    m = nnx.merge(graphdef, state)
    return m(
      inputs["input_ids"],
      inputs["attention_mask"],
      pixel_values=inputs["pixel_values"],
      position_ids=inputs["position_ids"],
      image_layout=inputs["image_layout"],
    )

  single = np.asarray(jax.jit(forward)(state, inputs))

  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  state_sh = sharding.state_shardings(state, mesh)
  state = jax.device_put(state, state_sh)
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp")))
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  in_sh = jax.tree.map(lambda _: repl, inputs)
  for k in ("input_ids", "attention_mask"):
    in_sh[k] = batch
  with sharding.use_mesh(mesh):
    fn = jax.jit(forward, in_shardings=(state_sh, in_sh), out_shardings=batch)
    sharded = fn(state, jax.device_put(inputs, in_sh))
  err = float(np.max(np.abs(np.asarray(sharded) - single)))
  specs = {str(v.get_value().sharding.spec) for _, v in nnx.to_flat_state(state)}
  n_sharded = sum(
    len(v.get_value().sharding.device_set) > 1 and not v.get_value().sharding.is_fully_replicated
    for _, v in nnx.to_flat_state(state)
  )
  print(
    f"max_abs_err={err:.3e} max_abs={np.max(np.abs(single)):.3e} "
    f"sharded_params={n_sharded} specs={sorted(specs)}"
  )
  # Stacked layers: the leading "layers" axis is not sharded.
  q = state["text"]["layers"]["attn"]["q_kernel"].get_value()
  assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None), (
    q.sharding.spec
  )
  assert q.addressable_shards[0].data.shape == (2, 32, 2, 16)
  assert err < 1e-5, err
  assert sharded.sharding.spec == batch.spec

  # A Hugging Face directory loads straight into these shards, stacked arrays layer by layer.
  with tempfile.TemporaryDirectory() as hf:
    save_pretrained(nnx.merge(graphdef, state), hf)
    loaded = nnx.state(load_pretrained(hf, mesh=mesh), nnx.Param)
  want = dict(nnx.to_flat_state(state))
  for path, var in nnx.to_flat_state(loaded):
    got, ref = var.get_value(), want[path].get_value()
    assert got.sharding.is_equivalent_to(ref.sharding, got.ndim), (path, got.sharding)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref), err_msg=str(path))
  return 0


if __name__ == "__main__":
  sys.exit(main())
