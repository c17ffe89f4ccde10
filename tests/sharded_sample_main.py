"""Run in a subprocess with 8 host devices: the sampler jitted under a (data=2, fsdp=2,
tensor=2) mesh, params and rows sharded, chooses the tokens of one device.

Prompts with images of several sizes, left-padded, one of them a filler row; per-row
vision (`o3jax.train.rollout.prompt_inputs`). References: the unsharded sampler on the same
inputs, and on the transformers layout (all patches concatenated, `prompt_batch`).
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from o3jax import sample, sharding  # noqa: E402
from o3jax.distributed import place_rows  # noqa: E402
from o3jax.models import Qwen2_5_VL, config as config_lib  # noqa: E402
from o3jax.sample_inputs import prompt_batch  # noqa: E402
from o3jax.train.rollout import prompt_inputs  # noqa: E402

T, GROUP, NEW = 48, 2, 10


def rl_batch(cfg, rng):
  """An RL pipeline batch of 4 prompts (the last a filler row): row r holds r + 1 images
  of grid (1, 4, 4) or (1, 4, 8), in text of random length."""
  ids = np.zeros((4, T), np.int32)
  mask = np.zeros((4, T), np.int32)
  pixels, grids = [], []
  for row in range(3):
    tokens = rng.integers(0, 900, 3).tolist()
    for i in range(row + 1):
      grid = (1, 4, 4 if (row + i) % 2 else 8)
      tokens += [cfg.vision_start_token_id] + [cfg.image_token_id] * (np.prod(grid) // 4)
      tokens += [cfg.vision_end_token_id] + rng.integers(0, 900, 2).tolist()
      pixels.append(rng.standard_normal((np.prod(grid), cfg.vision.patch_dim)))
      grids.append(grid)
    ids[row, T - len(tokens) :], mask[row, T - len(tokens) :] = tokens, 1
  pv = np.zeros((4 * 3 * 32, cfg.vision.patch_dim), np.float32)
  real = np.concatenate(pixels)
  pv[: len(real)] = real
  grid = np.zeros((4 * 3, 3), np.int32)
  grid[: len(grids)] = grids
  return {"prompt_ids": ids, "prompt_mask": mask, "pixel_values": pv, "image_grid_thw": grid}


def main():
  assert len(jax.devices()) == 8, jax.devices()
  cfg = config_lib.tiny()
  graphdef, state = nnx.split(Qwen2_5_VL(cfg, rngs=nnx.Rngs(0)))
  state = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), state)
  batch = rl_batch(cfg, np.random.default_rng(0))
  inputs = prompt_inputs(cfg, batch)
  assert inputs["pixel_values"].shape[0] == 4  # one vision row per prompt
  kw = dict(max_new_tokens=NEW, num_samples=GROUP, eos_id=[5, 6], pad_id=0)
  key = jax.random.key(3)

  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  sharded_state = jax.device_put(state, sharding.state_shardings(state, mesh))
  placed = place_rows(inputs, sample.input_shardings(inputs, mesh), 1)
  assert placed["pixel_values"].sharding.spec[0] == ("data", "fsdp")
  for greedy in (True, False):
    one = sample.sample(graphdef, state, inputs, key, greedy=greedy, **kw)
    many = sample.sample(graphdef, sharded_state, placed, key, greedy=greedy, mesh=mesh, **kw)
    assert many.tokens.sharding.spec[0] == ("data", "fsdp"), many.tokens.sharding
    tokens, ref = np.asarray(many.tokens), np.asarray(one.tokens)
    err = float(np.abs(np.asarray(many.logprobs) - np.asarray(one.logprobs)).max())
    print(f"greedy={greedy} tokens_equal={np.array_equal(tokens, ref)} logprob_err={err:.2e}")
    np.testing.assert_array_equal(tokens, ref)
    np.testing.assert_array_equal(np.asarray(many.lengths), np.asarray(one.lengths))
    assert err < 1e-5, err
    assert len(set(map(tuple, ref[: 3 * GROUP].tolist()))) > 1  # the rows differ
  # The per-row vision inputs decode as the transformers layout does (greedy).
  concat = prompt_batch(
    cfg,
    batch["prompt_ids"],
    batch["prompt_mask"],
    batch["pixel_values"],
    batch["image_grid_thw"],
    prompt_length=T,
  )
  want = sample.sample(graphdef, state, concat, key, greedy=True, **kw)
  got = sample.sample(graphdef, sharded_state, placed, key, greedy=True, mesh=mesh, **kw)
  np.testing.assert_array_equal(np.asarray(got.tokens)[: 3 * GROUP], want.tokens[: 3 * GROUP])
  print("sharded greedy tokens equal the concatenated-vision sampler's")
  return 0


if __name__ == "__main__":
  sys.exit(main())
