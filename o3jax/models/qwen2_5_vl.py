"""Qwen2.5-VL in Flax NNX: vision tower + text decoder, vision features at the pad tokens.

Axis letters: B batch, T length, S key length, D text width, V vocabulary,
N vision patches, U merged vision units.

`__call__` takes the keyword arguments of transformers' forward and returns logits
[B, T, V]. Everything that depends on the *values* of the grids (window order, attention
segments, 3-D positions) is host work: pass it precomputed (`image_layout`,
`video_layout`, `position_ids`, as `prepare_inputs` builds them) inside jit; when it is
missing the model computes it with numpy, which needs concrete (non-traced) inputs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.models.attention import Mask, padding_range
from o3jax.models.config import Qwen2_5_VLConfig
from o3jax.models.rope_index import rope_index_for
from o3jax.models.text import TextDecoder
from o3jax.models.vision import VisionTower
from o3jax.models.vision_layout import VisionLayout, layout_for
from o3jax.models.vision_rows import encode_rows, scatter_rows


def _concrete(x, name: str) -> np.ndarray:
  if isinstance(x, jax.core.Tracer):
    raise ValueError(
      f"{name} is traced: inside jit pass the precomputed host arrays from "
      "o3jax.models.prepare_inputs (position_ids, image_layout, video_layout)"
    )
  return np.asarray(x)


def prepare_inputs(
  config: Qwen2_5_VLConfig,
  input_ids,
  attention_mask=None,
  pixel_values=None,
  image_grid_thw=None,
  pixel_values_videos=None,
  video_grid_thw=None,
  second_per_grid_ts=None,
  position_ids=None,
  rope_rule: str = "qwen",
  image_padding: dict | None = None,
  video_padding: dict | None = None,
) -> dict[str, Any]:
  """Host-side (numpy) inputs for a jitted forward: adds positions and vision layouts.

  `image_padding` / `video_padding` are forwarded to `vision_layout` (num_patches,
  num_windows, num_frames, frame_length) to keep shapes fixed across batches.
  """
  input_ids = _concrete(input_ids, "input_ids")
  if attention_mask is not None:
    attention_mask = _concrete(attention_mask, "attention_mask")
  image_grid_thw = None if image_grid_thw is None else _concrete(image_grid_thw, "image_grid_thw")
  video_grid_thw = None if video_grid_thw is None else _concrete(video_grid_thw, "video_grid_thw")
  _check_token_counts(config, input_ids, attention_mask, image_grid_thw, video_grid_thw)
  if position_ids is None:
    position_ids, _ = rope_index_for(
      config,
      input_ids,
      attention_mask,
      image_grid_thw,
      video_grid_thw,
      None if second_per_grid_ts is None else _concrete(second_per_grid_ts, "second_per_grid_ts"),
      rule=rope_rule,
    )
  out = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
  if pixel_values is not None:
    pad = {"num_patches": np.shape(pixel_values)[0], **(image_padding or {})}
    out.update(pixel_values=pixel_values, image_layout=layout_for(config, image_grid_thw, **pad))
  if pixel_values_videos is not None:
    pad = {"num_patches": np.shape(pixel_values_videos)[0], **(video_padding or {})}
    out.update(
      pixel_values_videos=pixel_values_videos,
      video_layout=layout_for(config, video_grid_thw, **pad),
    )
  return out


def _check_token_counts(config, input_ids, attention_mask, image_grid_thw, video_grid_thw):
  valid = np.ones_like(input_ids, bool) if attention_mask is None else attention_mask.astype(bool)
  mu = config.vision.merge_unit
  for name, tok, grid in (
    ("image", config.image_token_id, image_grid_thw),
    ("video", config.video_token_id, video_grid_thw),
  ):
    have = int(((input_ids == tok) & valid).sum())
    want = 0 if grid is None else int(np.prod(np.asarray(grid).reshape(-1, 3), -1).sum()) // mu
    if have != want:
      raise ValueError(
        f"{name} features and {name} pad tokens do not match: input_ids hold "
        f"{have} {name} tokens, {name}_grid_thw gives {want}"
      )


def _scatter_features(x, input_ids, token_id, feats):
  """Replace the embeddings at `token_id` positions, in order, with rows of `feats`."""
  is_tok = input_ids == token_id
  idx = jnp.cumsum(is_tok.reshape(-1)) - 1
  idx = jnp.clip(idx, 0, feats.shape[0] - 1).reshape(input_ids.shape)
  return jnp.where(is_tok[..., None], feats[idx].astype(x.dtype), x)


def causal_mask(attention_mask: jax.Array | None) -> Mask:
  """Key s visible from query t when s <= t and s is not padding (padding on either side
  of each row's one run of real tokens)."""
  if attention_mask is None:
    return Mask(causal=True)
  start, end = padding_range(attention_mask)
  return Mask(causal=True, kv_start=start, kv_end=end)


class Qwen2_5_VL(nnx.Module):
  def __init__(
    self,
    config: Qwen2_5_VLConfig,
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
    self.visual = VisionTower(config.vision, **kw)
    self.text = TextDecoder(config.text, **kw)

  def embed(
    self,
    input_ids,
    pixel_values=None,
    image_layout: VisionLayout | None = None,
    pixel_values_videos=None,
    video_layout: VisionLayout | None = None,
    vision_row=None,
  ):
    """Token embeddings with image and video features scattered at their pad tokens.

    Pixels [N, P] are all patches of the batch concatenated (transformers' layout); pixels
    [R, N, P] with layouts of leading axis R are per row (`vision_rows.py`): row b reads
    vision row `vision_row[b]` (default b), so rows sharing a prompt encode it once."""
    x = self.text.embed_tokens(input_ids)
    for pixels, layout, token_id in (
      (pixel_values, image_layout, self.config.image_token_id),
      (pixel_values_videos, video_layout, self.config.video_token_id),
    ):
      if pixels is None:
        continue
      if pixels.ndim == 3:
        feats = encode_rows(self.visual, pixels, layout)
        x = scatter_rows(x, input_ids, token_id, feats, vision_row)
      else:
        x = _scatter_features(x, input_ids, token_id, self.visual(pixels, layout))
    return x

  def embed_prompt(self, input_ids, *vision):
    """(`embed(...)`, None): the sampler's prefill interface, which Qwen3-VL extends with
    its deepstack features."""
    return self.embed(input_ids, *vision), None

  def __call__(
    self,
    input_ids,
    attention_mask=None,
    pixel_values=None,
    image_grid_thw=None,
    pixel_values_videos=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    position_ids=None,
    image_layout=None,
    video_layout=None,
    rope_rule: str = "qwen",
    return_hidden: bool = False,
    vision_row=None,
  ):
    needs_host = (
      position_ids is None
      or (pixel_values is not None and image_layout is None)
      or (pixel_values_videos is not None and video_layout is None)
    )
    if needs_host:
      prepared = prepare_inputs(
        self.config,
        input_ids,
        attention_mask,
        pixel_values,
        image_grid_thw,
        pixel_values_videos,
        video_grid_thw,
        second_per_grid_ts,
        position_ids,
        rope_rule,
      )
      position_ids = prepared["position_ids"]
      image_layout = image_layout or prepared.get("image_layout")
      video_layout = video_layout or prepared.get("video_layout")
    input_ids = jnp.asarray(input_ids)
    b, t = input_ids.shape
    position_ids = jnp.asarray(position_ids)
    if position_ids.ndim == 2:  # plain 1-D positions, as transformers accepts
      position_ids = jnp.broadcast_to(position_ids[None], (3, b, t))
    # Qwen3-VL's forward is this one: its embed_prompt also returns the deepstack.
    x, deepstack = self.embed_prompt(
      input_ids, pixel_values, image_layout, pixel_values_videos, video_layout, vision_row
    )
    h, _ = self.text(x, position_ids, causal_mask(attention_mask), deepstack=deepstack)
    return h if return_hidden else self.text.logits(h)
