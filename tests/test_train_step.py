"""Train-step pieces: remat changes nothing numerically; schedules; freezing."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.models import config as config_lib
from o3jax.train import optim, state as state_lib, step as step_lib
from o3jax.train.batch import model_batch
from o3jax.train.config import OptimConfig
from o3jax.train import loss as loss_lib
from o3jax.train.loss import chunked_token_logprobs, sft_loss, token_logprobs


def _batch(cfg, rng, b=2, t=40):
  ids = rng.integers(0, 900, (b, t)).astype(np.int32)
  block = [cfg.vision_start_token_id] + [cfg.image_token_id] * 6 + [cfg.vision_end_token_id]
  ids[:, 3 : 3 + len(block)] = block
  pv = rng.standard_normal((b * 24, cfg.vision.patch_dim)).astype(np.float32)
  mask = np.ones_like(ids)
  loss_mask = np.zeros_like(ids)
  loss_mask[:, 20:] = 1
  return model_batch(
    cfg,
    {
      "input_ids": ids,
      "attention_mask": mask,
      "loss_mask": loss_mask,
      "pixel_values": pv,
      "image_grid_thw": np.array([[1, 4, 6]] * b),
    },
  )


def test_remat_gives_the_same_loss_and_gradients():
  cfg = config_lib.tiny()
  mb = jax.tree.map(lambda x: x[0], _batch(cfg, np.random.default_rng(0)))
  out = []
  for remat in ("none", "full", "dots"):
    model = state_lib.build_model(cfg, jax.random.key(0), remat=remat)
    graphdef, params = nnx.split(model)
    f = lambda p: sft_loss(nnx.merge(graphdef, p), mb)[0][0]
    out.append(jax.jit(jax.value_and_grad(f))(params))
  (l0, g0) = out[0]
  for l1, g1 in out[1:]:
    np.testing.assert_allclose(float(l0), float(l1), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
      # Recomputation may reassociate fp32 sums: a few ulp of the summed terms, never
      # more. A bias gradient sums terms of the leaf's largest size (the merger's fc2 bias:
      # ~4 per image token), so its ulp-level error scales with that, not with the entry.
      scale = max(1.0, float(np.abs(np.asarray(a)).max()))
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6 * scale, rtol=1e-6)


def test_chunked_logprobs_hand_computed():
  # Identity head: the hidden states are the logits. Chunks of 2 over 3 positions.
  logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
  lp = chunked_token_logprobs(logits, jnp.eye(3), jnp.array([[1, 1, 2]]), chunk=2)
  np.testing.assert_allclose(np.asarray(lp), np.log([[0.25, 0.8, 1 / 3]]), rtol=1e-6)


def test_chunked_sft_loss_equals_full_logits_loss(monkeypatch):
  """fp32: the chunked loss (chunks of 7 over 40 positions, the last one padded) against
  the loss through the whole [B,T,V] logits: value to 1e-6, gradient to 1e-5."""
  cfg = config_lib.tiny()
  mb = jax.tree.map(lambda x: x[0], _batch(cfg, np.random.default_rng(1)))
  graphdef, params = nnx.split(state_lib.build_model(cfg, jax.random.key(2)))

  def full(p):
    model = nnx.merge(graphdef, p)
    logits = model.text.logits(loss_lib.batch_hidden(model, mb))
    lp = token_logprobs(logits[:, :-1], mb["input_ids"][:, 1:])
    mask = mb["loss_mask"][:, 1:].astype(jnp.float32)
    return -(lp * mask).sum(), mask.sum()

  monkeypatch.setattr(loss_lib, "LOSS_CHUNK", 7)
  chunked = lambda p: sft_loss(nnx.merge(graphdef, p), mb)[0]
  (l_full, n_full), g_full = jax.value_and_grad(full, has_aux=True)(params)
  (l_chunk, n_chunk), g_chunk = jax.value_and_grad(chunked, has_aux=True)(params)
  assert float(n_full) == float(n_chunk) == 2 * 20
  np.testing.assert_allclose(float(l_chunk), float(l_full), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g_chunk), jax.tree.leaves(g_full)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)


def test_schedules():
  cos = optim.schedule(
    OptimConfig(learning_rate=1.0, warmup_steps=10, decay="cosine", end_lr_fraction=0.1), 110
  )
  lin = optim.schedule(OptimConfig(learning_rate=1.0, warmup_steps=0, decay="linear"), 100)
  assert float(cos(0)) == 0 and abs(float(cos(5)) - 0.5) < 1e-6 and abs(float(cos(10)) - 1) < 1e-6
  assert abs(float(cos(60)) - (0.1 + 0.9 * 0.5)) < 1e-5 and abs(float(cos(110)) - 0.1) < 1e-6
  assert abs(float(lin(25)) - 0.75) < 1e-6 and float(lin(100)) == 0


def test_frozen_vision_tower_does_not_move():
  cfg = config_lib.tiny()
  ocfg = OptimConfig(learning_rate=1e-2, freeze=(r"^visual\.",))
  graphdef, params = nnx.split(state_lib.build_model(cfg, jax.random.key(0)))
  tx = optim.make_optimizer(ocfg, 10, params)
  state = state_lib.TrainState(
    step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)
  )
  fn = jax.jit(step_lib.make_train_step(graphdef, sft_loss, tx, optim.schedule(ocfg, 10)))
  new, metrics = fn(state, _batch(cfg, np.random.default_rng(1)))
  before, after = state.params, new.params
  for path, v in nnx.to_flat_state(before):
    a = np.asarray(v.get_value())
    b = np.asarray(dict(nnx.to_flat_state(after))[path].get_value())
    if path[0] == "visual":
      np.testing.assert_array_equal(a, b)
    elif path[-1] == "q_kernel":
      assert np.abs(a - b).max() > 1e-4
