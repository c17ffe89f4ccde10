"""The jitted train step: micro-batch accumulation, AdamW update, metrics.

`make_train_step(graphdef, loss_fn, tx, ...)` returns a pure
`train_step(state, batch) -> (state, metrics)`, jitted once with in/out shardings and the
state donated. `batch` leaves carry a leading micro-batch axis M; gradients of the loss
*sums* are accumulated over M with `lax.scan` and divided by the total denominator once,
so M micro-batches of b give the same update as one batch of M*b.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from o3jax import distributed, sharding
from o3jax.train.state import TrainState

# loss_fn(model, micro_batch) -> ((loss_sum, denominator), aux metrics dict of sums)
LossFn = Callable


def make_train_step(
  graphdef,
  loss_fn: LossFn,
  tx: optax.GradientTransformation,
  schedule: optax.Schedule,
):
  def micro_loss(params, mb):
    (total, denom), aux = loss_fn(nnx.merge(graphdef, params), mb)
    return total, (denom, aux)

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def train_step(state: TrainState, batch):
    def body(carry, mb):
      grads, loss_sum, denom_sum, aux_sum = carry
      (loss, (denom, aux)), g = grad_fn(state.params, mb)
      grads = jax.tree.map(jnp.add, grads, g)
      aux_sum = jax.tree.map(jnp.add, aux_sum, aux)
      return (grads, loss_sum + loss, denom_sum + denom, aux_sum), None

    first = jax.tree.map(lambda x: x[0], batch)
    aux0 = jax.eval_shape(lambda: micro_loss(state.params, first)[1][1])
    zeros = jax.tree.map(jnp.zeros_like, state.params)
    init = (
      zeros,
      jnp.zeros((), jnp.float32),
      jnp.zeros((), jnp.float32),
      jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), aux0),
    )
    (grads, loss_sum, denom, aux), _ = jax.lax.scan(body, init, batch)
    scale = 1.0 / jnp.maximum(denom, 1.0)
    grads = jax.tree.map(lambda g: g * scale, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
      "loss": loss_sum * scale,
      "grad_norm": optax.tree.norm(grads),
      "param_norm": optax.tree.norm(params),
      "lr": schedule(state.step),
      "tokens": denom,
      **{k: v for k, v in aux.items()},
    }
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def jit_train_step(train_step, state_shardings, batch_shardings, mesh):
  """jit with explicit shardings; the old state is donated."""
  repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  jitted = jax.jit(
    train_step,
    in_shardings=(state_shardings, batch_shardings),
    out_shardings=(state_shardings, repl),
    donate_argnums=(0,),
  )

  def run(state, batch):
    with sharding.use_mesh(mesh):
      return jitted(state, batch)

  return run


# Arrays [M, B, ...] with one row per sequence (vision: one per vision row, see
# `o3jax.models.vision_rows`): split over (data, fsdp) along B.
ROW_KEYS = (
  "input_ids",
  "attention_mask",
  "loss_mask",
  "completion_mask",
  "old_logprobs",
  "ref_logprobs",
  "advantages",
  "row_mask",
  "pixel_values",
  "pixel_values_videos",
  "image_layout",
  "video_layout",
  "vision_row",
)


def batch_shardings(batch, mesh, row_shards: int = 1):
  """Row arrays split over (data, fsdp) along their batch axis: tokens [M, B, T], position
  ids [M, 3, B, T], pixels [M, B, N, P] and every leaf of their layouts [M, B, ...], so
  each device encodes only its own rows' images. Anything else is replicated.

  `batch` holds this process's rows, 1 / `row_shards` of the global batch's
  (`o3jax.distributed.row_shard`); with one process an indivisible batch is replicated."""
  P = jax.sharding.PartitionSpec
  ways = mesh.shape["data"] * mesh.shape["fsdp"]

  def one(path, x):
    name = str(path[0].key) if path and hasattr(path[0], "key") else ""
    axis = 2 if name == "position_ids" else 1 if name in ROW_KEYS else None
    if axis is None:
      return jax.sharding.NamedSharding(mesh, P())
    rows = x.shape[axis] * row_shards
    if rows % ways == 0:
      return jax.sharding.NamedSharding(mesh, P(*[None] * axis, ("data", "fsdp")))
    if row_shards > 1:
      raise ValueError(f"{name}: {rows} rows do not split over {ways} data x fsdp devices")
    return jax.sharding.NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(one, batch)


def place_batch(batch, mesh):
  """A host model batch of this process's rows -> (global arrays on the mesh, their
  shardings): each process hands its devices only its own rows."""
  index, count = distributed.row_shard(mesh)
  if "vision_row" in batch and count > 1:
    # `model_batch` numbers this process's vision rows from 0; in the global array they
    # follow the vision rows of the blocks before this one.
    held = next(batch[k].shape[1] for k in ("pixel_values", "pixel_values_videos") if k in batch)
    batch = {**batch, "vision_row": np.asarray(batch["vision_row"]) + index * held}
  shardings = batch_shardings(batch, mesh, count)
  return distributed.place_rows(batch, shardings, count), shardings


def pixel_bytes(batch) -> int:
  """Bytes of a batch's pixels (host arrays, or the global arrays' whole size)."""
  keys = ("pixel_values", "pixel_values_videos")
  return sum(int(np.prod(batch[k].shape)) * batch[k].dtype.itemsize for k in keys if k in batch)
