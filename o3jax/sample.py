"""Jitted sampling: one prefill over the prompt (images, videos), then a KV-cache decode.

Axis letters: B prompts, G samples per prompt, N = B*G rollouts, T prompt length (padded
to a bucket), M max new tokens, S = T + M cache slots, V vocabulary, D width.

`sample` is a pure function of (graphdef, state, inputs, key): it prefills the B prompts
once, broadcasts their KV cache to G rows each (rollout n = b*G + g continues prompt b)
and decodes all N rows in a `jax.lax.while_loop` that stops when every row has emitted an
end-of-sequence id or M tokens. Shapes are fixed by (B, T, vision padding, M), so a run
compiles once per prompt bucket.

Token choice follows transformers' `generate`: the repetition penalty (a token already in
the prompt or the completion has its logit divided by the penalty when positive,
multiplied when negative; prompt padding does not count, as in vLLM), then logits /
temperature, then top-k, then top-p (nucleus); greedy takes the argmax. The vision
placeholder ids (image/video pad, vision start/end) are never chosen. The returned
log-probs are those of the chosen token under softmax(logits / temperature) -- temperature applied, top-k/top-p truncation
not (greedy: temperature 1). This is the policy that GSPO's trainer recomputes (TRL also
scales by the sampling temperature), so pi_old and pi_theta are the same distribution.

Positions of new tokens: the first one continues the prompt's last column by one on each
of the three rotary rows (transformers 5.x `generate`), or at max(prompt ids) + 1 on all
rows under Qwen's rule (Qwen, transformers 4.x, vLLM). For a prompt ending in text (every
chat prompt) both give the same ids; `prepare_prompts` computes them on the host.

`o3jax.sample_inputs` builds the host dict `sample` takes (left padding to a bucket,
positions, vision layouts); `generate` does both and returns numpy arrays.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax import sharding
from o3jax.models import Qwen2_5_VL
from o3jax.models.text import KVCache
from o3jax.sample_inputs import prepare_prompts

TEXT_KEYS = ("input_ids", "attention_mask", "position_ids", "next_position")
MAX_EOS_IDS = 8  # eos ids are padded to this many so that their number does not recompile


class SampleOutput(NamedTuple):
  tokens: Any  # [N, M] int32; pad_id after the end-of-sequence token
  logprobs: Any  # [N, M] float32; 0 after the end-of-sequence token
  lengths: Any  # [N] int32: new tokens up to and including the end-of-sequence token


# ------------------------------------------------------------------- choosing a token


def filter_logits(
  logits: jax.Array, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> jax.Array:
  """logits [..., V] -> float32 logits / temperature with the filtered-out tokens at -inf.

  Same rules and order as transformers' temperature, top-k and top-p warpers: top-k keeps
  the tokens at least as likely as the k-th most likely; top-p keeps a token when the
  probability of the tokens more likely than it is < top_p (transformers: removes it when
  the ascending cumulative probability up to it is <= 1 - top_p), so the most likely one
  always stays.
  """
  logits = logits.astype(jnp.float32) / temperature
  if top_k > 0:
    probs = jax.nn.softmax(logits, axis=-1)
    count_above = lambda x: jnp.sum(probs > x, axis=-1, keepdims=True)
    logits = jnp.where(probs >= _smallest_kept(probs, count_above, top_k), logits, -jnp.inf)
  if top_p < 1.0:
    probs = jax.nn.softmax(logits, axis=-1)
    mass_above = lambda x: jnp.sum(jnp.where(probs > x, probs, 0.0), axis=-1, keepdims=True)
    logits = jnp.where(probs >= _smallest_kept(probs, mass_above, top_p), logits, -jnp.inf)
  return logits


def _smallest_kept(probs: jax.Array, above, limit) -> jax.Array:
  """[..., 1] the smallest probability x with above(x) < limit, where above(x) sums (top-p)
  or counts (top-k) the probabilities > x: the least likely token kept.

  above(x) only falls, and exactly at the probabilities themselves, so the smallest float
  x with above(x) < limit is one of them. Non-negative floats order as their int32 bit
  patterns: bisecting the bits finds x exactly in 31 masked reductions over V, without
  sorting the vocabulary (sorts and top-k are slow on CPU, and V is 152k).
  """
  to_bits = lambda x: jax.lax.bitcast_convert_type(x, jnp.int32)
  to_float = lambda b: jax.lax.bitcast_convert_type(b, jnp.float32)

  def halve(_, bounds):  # invariant: above(lo) >= limit > above(hi)
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    below = above(to_float(mid)) < limit
    return jnp.where(below, lo, mid), jnp.where(below, mid, hi)

  hi = to_bits(jnp.max(probs, axis=-1, keepdims=True))
  _, hi = jax.lax.fori_loop(0, 31, halve, (jnp.zeros_like(hi), hi), unroll=True)
  return to_float(hi)


def choose_tokens(
  logits: jax.Array,
  key: jax.Array,
  *,
  temperature: float,
  top_k: int,
  top_p: float,
  greedy: bool,
  banned: tuple[int, ...] = (),
  seen: jax.Array | None = None,
  repetition_penalty: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
  """logits [N, V] -> (tokens [N] int32, log-probs [N] float32, see the module docstring).

  `banned` ids are never chosen; `seen` [N, V] bool marks the tokens the repetition
  penalty applies to; the log-probs stay those of the unmodified policy."""
  logits = logits.astype(jnp.float32)
  allowed = logits
  if seen is not None and repetition_penalty != 1.0:
    penalized = jnp.where(logits < 0, logits * repetition_penalty, logits / repetition_penalty)
    allowed = jnp.where(seen, penalized, logits)
  if banned:
    allowed = allowed.at[:, jnp.asarray(banned, jnp.int32)].set(-jnp.inf)
  if greedy:
    tokens = jnp.argmax(allowed, axis=-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
  else:
    tokens = jax.random.categorical(key, filter_logits(allowed, temperature, top_k, top_p))
    logp = jax.nn.log_softmax(logits / temperature, axis=-1)
  tokens = tokens.astype(jnp.int32)
  return tokens, jnp.take_along_axis(logp, tokens[:, None], axis=-1)[:, 0]


# ------------------------------------------------------------------------ the sampler


def _prefill(model: Qwen2_5_VL, inputs: dict, max_new_tokens: int):
  """Embeds and runs the prompts at cache slots 0..T-1; logits of the last column only
  (the [B, T, V] logits of every prompt column would be gigabytes at a real vocabulary)."""
  ids = inputs["input_ids"]
  b, t = ids.shape
  x, deepstack = model.embed_prompt(
    ids,
    inputs.get("pixel_values"),
    inputs.get("image_layout"),
    inputs.get("pixel_values_videos"),
    inputs.get("video_layout"),
  )
  cache = model.text.init_cache(b, t + max_new_tokens)
  cache_mask = jnp.concatenate(
    [inputs["attention_mask"].astype(bool), jnp.ones((b, max_new_tokens), bool)], axis=1
  )
  logits, cache = model.text.forward_cached(
    x, inputs["position_ids"], cache_mask, cache, 0, last_only=True, deepstack=deepstack
  )
  return logits[:, 0], cache, cache_mask


class _Decoding(NamedTuple):
  """The while-loop state."""

  step: jax.Array  # index of the next token to choose
  tokens: jax.Array  # [N, M]
  logprobs: jax.Array  # [N, M]
  lengths: jax.Array  # [N]
  done: jax.Array  # [N] bool: the row has emitted an end-of-sequence id
  cache: KVCache
  seen: jax.Array | None  # [N, V] bool: tokens of the prompt and completion (penalty only)


def _sample(graphdef, state, inputs, key, eos_ids, pad_id, *, mesh=None, **kw) -> SampleOutput:
  """`_decode`, under `mesh` when given (static): the model's activations, the KV cache and
  the results split over its batch axes, so each device decodes its own rows."""
  if mesh is None:
    return _decode(graphdef, state, inputs, key, eos_ids, pad_id, **kw)
  with sharding.use_mesh(mesh):
    out = _decode(graphdef, state, inputs, key, eos_ids, pad_id, **kw)
    return SampleOutput(*(_rows(x) for x in out))


def _rows(x):
  """x split over the mesh's batch axes along its first axis (no-op without a mesh)."""
  return sharding.constrain(x, ("batch",) + (None,) * (x.ndim - 1))


def _decode(
  graphdef,
  state,
  inputs: dict,
  key: jax.Array,
  eos_ids: jax.Array,
  pad_id: jax.Array,
  *,
  max_new_tokens: int,
  num_samples: int,
  temperature: float,
  top_p: float,
  top_k: int,
  greedy: bool,
  repetition_penalty: float = 1.0,
) -> SampleOutput:
  model = nnx.merge(graphdef, state)
  t = inputs["input_ids"].shape[1]
  logits, cache, cache_mask = _prefill(model, inputs, max_new_tokens)

  # G rollouts per prompt share its prefill: rows b*G .. b*G+G-1 copy row b.
  rep = lambda x, axis=0: jnp.repeat(x, num_samples, axis=axis)
  cache_axes = (None, "batch", None, "kv_heads", None)  # [layers, N, S, heads, head_dim]
  cache = jax.tree.map(lambda c: sharding.constrain(rep(c, 1), cache_axes), cache)
  logits, cache_mask = rep(logits), rep(cache_mask)
  next_position = rep(inputs["next_position"], 1)  # [3, N]
  n = logits.shape[0]
  # Vision placeholders are never generated: a completion holding one could not be fed
  # back to the model (its pad tokens would claim image features that do not exist).
  c = model.config
  vision_ids = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
  banned = tuple(getattr(c, f) for f in vision_ids if getattr(c, f, None) is not None)
  seen = None
  if repetition_penalty != 1.0:
    ids, real = inputs["input_ids"], inputs["attention_mask"].astype(jnp.int8)
    rows = jnp.arange(ids.shape[0])[:, None]
    prompt_seen = jnp.zeros((ids.shape[0], logits.shape[-1]), jnp.int8).at[rows, ids].max(real)
    seen = rep(prompt_seen > 0)

  def record(s: _Decoding, logits) -> _Decoding:
    """Chooses token s.step from logits [N, V]; rows already finished write padding."""
    token, logp = choose_tokens(
      logits,
      jax.random.fold_in(key, s.step),
      temperature=temperature,
      top_k=top_k,
      top_p=top_p,
      greedy=greedy,
      banned=banned,
      seen=s.seen,
      repetition_penalty=repetition_penalty,
    )
    token = jnp.where(s.done, pad_id, token)
    return s._replace(
      step=s.step + 1,
      tokens=s.tokens.at[:, s.step].set(token),
      logprobs=s.logprobs.at[:, s.step].set(jnp.where(s.done, 0.0, logp)),
      lengths=s.lengths + (~s.done).astype(jnp.int32),
      done=s.done | jnp.isin(token, eos_ids),
      seen=None if s.seen is None else s.seen.at[jnp.arange(token.shape[0]), token].set(True),
    )

  def decode(s: _Decoding) -> _Decoding:
    """Runs token s.step - 1 at cache slot t + s.step - 1, then chooses token s.step."""
    x = model.embed(s.tokens[:, s.step - 1][:, None])
    positions = (next_position + s.step - 1)[:, :, None]
    logits, cache = model.text.forward_cached(x, positions, cache_mask, s.cache, t + s.step - 1)
    return record(s._replace(cache=cache), logits[:, 0])

  def running(s: _Decoding):
    return (s.step < max_new_tokens) & ~jnp.all(s.done)

  s = _Decoding(
    jnp.int32(0),
    jnp.full((n, max_new_tokens), pad_id, jnp.int32),
    jnp.zeros((n, max_new_tokens), jnp.float32),
    jnp.zeros((n,), jnp.int32),
    jnp.zeros((n,), bool),
    cache,
    seen,
  )
  s = jax.lax.while_loop(running, decode, record(s, logits))
  return SampleOutput(s.tokens, s.logprobs, s.lengths)


_sample_jit = jax.jit(
  _sample,
  static_argnames=(
    "graphdef",
    "max_new_tokens",
    "num_samples",
    "temperature",
    "top_p",
    "top_k",
    "greedy",
    "repetition_penalty",
    "mesh",
  ),
)


def sample(
  graphdef,
  state,
  inputs: dict,
  key: jax.Array,
  *,
  max_new_tokens: int,
  num_samples: int = 1,
  temperature: float = 1.0,
  top_p: float = 1.0,
  top_k: int = 0,
  greedy: bool = False,
  eos_id: int | Sequence[int],
  pad_id: int = 0,
  repetition_penalty: float = 1.0,
  mesh=None,
) -> SampleOutput:
  """Samples `num_samples` continuations of each prompt; jitted.

  graphdef, state: `nnx.split(model)` of a `Qwen2_5_VL`.
  inputs: host dict from `prepare_prompts` (left-padded input_ids, attention_mask,
    position_ids [3, B, T], next_position [3, B], and pixel values + vision layouts).
  key: a jax PRNG key; the same key gives the same samples.
  repetition_penalty: transformers' (1.0: none; the reference evaluates with 1.05).
  eos_id: one id or several (e.g. Qwen's <|im_end|> and <|endoftext|>); a row stops after
    emitting any of them. eos_id and pad_id are traced: changing them does not recompile.
  mesh: run under this mesh (a 7B's rollouts over an fsdp/tensor mesh): `state` laid out
    on it (`sharding.state_shardings`), `inputs` global arrays whose rows are split over
    its batch axes (`input_shardings`, per-row vision: `train.rollout.prompt_inputs`); the
    outputs' rows are split likewise.
  Returns SampleOutput(tokens [B*G, M], logprobs [B*G, M], lengths [B*G]); rollout b*G+g
  continues prompt b.
  """
  if max_new_tokens < 1 or num_samples < 1:
    raise ValueError(
      f"max_new_tokens ({max_new_tokens}) and num_samples ({num_samples}) must be >= 1"
    )
  if not greedy and (temperature <= 0 or not 0 < top_p <= 1 or top_k < 0):
    raise ValueError(
      f"need temperature > 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}"
    )
  if not repetition_penalty > 0:
    raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
  eos_ids = np.atleast_1d(np.asarray(eos_id, np.int32))
  if not 1 <= eos_ids.size <= MAX_EOS_IDS or eos_ids.ndim != 1:
    raise ValueError(f"eos_id must be 1 to {MAX_EOS_IDS} ids, got {eos_id!r}")
  eos_ids = np.pad(eos_ids, (0, MAX_EOS_IDS - eos_ids.size), mode="edge")
  missing = [k for k in TEXT_KEYS if k not in inputs]
  if missing:
    raise ValueError(f"inputs lack {missing}: build them with o3jax.sample_inputs")
  mask = inputs["attention_mask"]
  if isinstance(mask, np.ndarray) and (mask.any(1) & (mask[:, -1] == 0)).any():
    raise ValueError(
      "inputs['attention_mask'] has padding in the last column: prompts must be "
      "left-padded (o3jax.sample_inputs does it)"
    )
  return _sample_jit(
    graphdef,
    state,
    inputs,
    key,
    eos_ids,
    jnp.int32(pad_id),
    max_new_tokens=max_new_tokens,
    num_samples=num_samples,
    temperature=float(temperature),
    top_p=float(top_p),
    top_k=int(top_k),
    greedy=bool(greedy),
    repetition_penalty=float(repetition_penalty),
    mesh=mesh,
  )


# The batch axis of each sampler input (vision layouts: every leaf's first).
_ROW_AXIS = {"position_ids": 1, "next_position": 1}


def input_shardings(inputs: dict, mesh, row_shards: int = 1):
  """NamedShardings for sampler inputs under `mesh`: every array split over the batch axes
  along its rows (per-row vision: pixels [B, N, P], layouts [B, ...]), for inputs holding
  1 / `row_shards` of the global rows (`o3jax.distributed.row_shard`); with one process
  an indivisible batch is replicated."""
  P = jax.sharding.PartitionSpec
  ways = mesh.shape["data"] * mesh.shape["fsdp"]
  out = {}
  for name, value in inputs.items():
    axis = _ROW_AXIS.get(name, 0)

    def one(x, axis=axis, name=name):
      rows = np.shape(x)[axis] * row_shards
      if rows % ways == 0:
        return jax.sharding.NamedSharding(mesh, P(*[None] * axis, ("data", "fsdp")))
      if row_shards > 1:
        raise ValueError(f"{name}: {rows} rows do not split over {ways} data x fsdp devices")
      return jax.sharding.NamedSharding(mesh, P())

    out[name] = jax.tree.map(one, value)
  return out


@functools.partial(jax.jit, static_argnums=1)
def cast_params(state, dtype):
  """The floating-point weights in `dtype`, once per rollout phase: the decode loop then
  reads bf16 weights instead of casting fp32 master weights at every matmul of every step."""
  return jax.tree.map(
    lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, state
  )


def generate(
  model: Qwen2_5_VL,
  key: jax.Array,
  *,
  max_new_tokens: int,
  eos_id=None,
  pad_id: int = 0,
  num_samples: int = 1,
  temperature: float = 1.0,
  top_p: float = 1.0,
  top_k: int = 0,
  greedy: bool = False,
  repetition_penalty: float = 1.0,
  rope_rule: str = "qwen",
  bucket: int = 64,
  prompt_length: int | None = None,
  image_padding: dict | None = None,
  video_padding: dict | None = None,
  **hf_inputs,
) -> SampleOutput:
  """`prepare_prompts` + `sample` on a model; numpy results.

  `hf_inputs` are transformers' names: input_ids, attention_mask, pixel_values,
  image_grid_thw, pixel_values_videos, video_grid_thw, second_per_grid_ts. `eos_id`
  defaults to the config's eos_token_id.
  """
  inputs = prepare_prompts(
    model.config,
    rope_rule=rope_rule,
    bucket=bucket,
    prompt_length=prompt_length,
    pad_id=pad_id,
    image_padding=image_padding,
    video_padding=video_padding,
    **hf_inputs,
  )
  graphdef, state = nnx.split(model)
  out = sample(
    graphdef,
    state,
    inputs,
    key,
    max_new_tokens=max_new_tokens,
    num_samples=num_samples,
    temperature=temperature,
    top_p=top_p,
    top_k=top_k,
    greedy=greedy,
    eos_id=model.config.eos_token_id if eos_id is None else eos_id,
    pad_id=pad_id,
    repetition_penalty=repetition_penalty,
  )
  return SampleOutput(*(np.asarray(x) for x in out))
