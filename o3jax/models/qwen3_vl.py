"""Qwen3-VL (dense) in Flax NNX: vision tower + text decoder, vision features at the pad
tokens and deepstack features added to the first decoder layers.

Axis letters: B batch, T length, D text width, V vocabulary, K deepstack taps,
R vision rows, U merged vision units.

The interface is Qwen2.5-VL's (`qwen2_5_vl.py`): `__call__` takes transformers' keyword
arguments (or the host arrays `prepare_inputs` builds, inside jit) and returns logits
[B, T, V]; `embed_prompt`, `embed` and the decoder's `init_cache` and `forward_cached`
(`text.py`) are what `o3jax.sample` decodes with. The deepstack features of a prompt
([K, B, T, D]: tap k's features at the vision tokens, zeros elsewhere) exist only where
vision is embedded (the forward and the prefill), never in the decode steps, which see
text tokens only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from o3jax.models.qwen2_5_vl import Qwen2_5_VL, _scatter_features
from o3jax.models.qwen3_vl_config import Qwen3VLConfig
from o3jax.models.qwen3_vl_vision import Qwen3VisionLayout, Qwen3VisionTower
from o3jax.models.text import TextDecoder
from o3jax.models.vision_rows import scatter_rows


class Qwen3_VL(nnx.Module):
  def __init__(
    self,
    config: Qwen3VLConfig,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.config = config
    kw = dict(
      dtype=dtype,
      param_dtype=param_dtype,
      attention_impl=config.attention_impl,
      remat=config.remat,
      rngs=rngs,
    )
    self.visual = Qwen3VisionTower(config.vision, **kw)
    self.text = TextDecoder(config.text, **kw)

  def embed(self, input_ids, *vision):
    """Token embeddings of text tokens (the decode steps); prompts with vision go through
    `embed_prompt`, which also returns their deepstack features."""
    if any(v is not None for v in vision):
      raise ValueError("Qwen3_VL.embed takes text tokens only: use embed_prompt for vision")
    return self.text.embed_tokens(input_ids)

  def embed_prompt(
    self,
    input_ids,
    pixel_values=None,
    image_layout: Qwen3VisionLayout | None = None,
    pixel_values_videos=None,
    video_layout: Qwen3VisionLayout | None = None,
    vision_row=None,
  ):
    """(embeddings [B, T, D] with image and video features at their pad tokens, deepstack
    [K, B, T, D] or None without vision). Pixels [N, P] concatenate the batch's patches;
    [R, N, P] (layouts with a leading R) are per vision row (see `vision_rows.py`)."""
    x = self.text.embed_tokens(input_ids)
    deepstack = None
    for pixels, layout, token_id in (
      (pixel_values, image_layout, self.config.image_token_id),
      (pixel_values_videos, video_layout, self.config.video_token_id),
    ):
      if pixels is None:
        continue
      if pixels.ndim == 3:
        feats, taps = jax.vmap(self.visual)(pixels, layout)  # [R, U, E], [R, K, U, E]
        scatter = lambda y, f: scatter_rows(y, input_ids, token_id, f, vision_row)
        taps = jnp.swapaxes(taps, 0, 1)
      else:
        feats, taps = self.visual(pixels, layout)  # [U, E], [K, U, E]
        scatter = lambda y, f: _scatter_features(y, input_ids, token_id, f)
      x = scatter(x, feats)
      if deepstack is None:
        deepstack = jnp.zeros((taps.shape[0], *x.shape), x.dtype)
      # Image and video tokens are disjoint: each scatter fills its own positions.
      deepstack = jax.vmap(scatter)(deepstack, taps)
    return x, deepstack

  # The forward of Qwen2.5-VL (transformers' keyword arguments, host-built positions and
  # layouts when missing), which adds the deepstack `embed_prompt` returns.
  __call__ = Qwen2_5_VL.__call__
