"""Vision inputs with a row axis: each row's patches encoded on the device holding the row.

Axis letters: B rows, T tokens, N patches per row (padded to a bucket), P patch features,
U merged units per row (N / merge unit), E output width (the text model's width),
R vision rows (one per distinct prompt; rows may share one, as GSPO's G rollouts do).

The concatenated layout of transformers (all patches of a batch in one [N, P] array) has
no batch axis, so under data parallelism every device would encode every row's images.
Here pixels are [R, N, P] and every leaf of the `VisionLayout` has the same leading R:
the tower runs under `jax.vmap` over R (a batched gather per row, so a mesh split over R
keeps each row's encoding on its device), and features [R, U, E] are scattered per row
into that row's pad tokens. A model whose tower maps (pixels [N, P], layout) -> [U, E]
(Qwen2.5-VL, and Qwen3-VL likewise) uses both functions unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def encode_rows(tower, pixel_values: jax.Array, layout) -> jax.Array:
  """tower(pixels [N, P], layout) -> [U, E] applied to every row: [R, N, P] -> [R, U, E]."""
  return jax.vmap(tower)(pixel_values, layout)


def scatter_rows(x, input_ids, token_id: int, feats, vision_row=None):
  """x [B, T, D] with row b's `token_id` positions replaced, in order, by the rows of
  feats[vision_row[b]] (feats [R, U, E]; `vision_row` [B] defaults to b itself)."""
  if vision_row is not None:
    feats = feats[vision_row]
  is_tok = input_ids == token_id
  idx = jnp.clip(jnp.cumsum(is_tok, axis=-1) - 1, 0, feats.shape[1] - 1)
  picked = jnp.take_along_axis(feats, idx[..., None], axis=1)
  return jnp.where(is_tok[..., None], picked.astype(x.dtype), x)
