"""Jitted sampler: greedy equals transformers `generate`, sampling follows its warpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
  TemperatureLogitsWarper,
  TopKLogitsWarper,
  TopPLogitsWarper,
)

from hf_reference import mm_token_type_ids, perturbed_hf_model, text_tokens, vision_block
from o3jax import sample as sampling, sample_inputs
from o3jax.convert import load_pretrained
from o3jax.models import config as config_lib

CFG = config_lib.tiny()
NEW = 32
PAD = 0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  hf = perturbed_hf_model(CFG)
  path = tmp_path_factory.mktemp("hf_tiny_sample")
  hf.save_pretrained(path)
  return hf, load_pretrained(str(path))


@pytest.fixture(scope="module")
def prompts():
  """Two left-padded video prompts of different lengths; the first video's time ids
  (0, 3, 6, 9) run past its 3 x 5 spatial extent, where the rotary rules differ."""
  rng = np.random.default_rng(0)
  grids = np.array([[4, 6, 10], [2, 4, 6]])
  rows = [
    text_tokens(rng, 4) + vision_block(CFG, "video", grids[0]) + text_tokens(rng, 7),
    text_tokens(rng, 6) + vision_block(CFG, "video", grids[1]) + text_tokens(rng, 3),
  ]
  n = max(map(len, rows))
  ids = np.zeros((2, n), np.int64)
  mask = np.zeros((2, n), np.int64)
  for i, row in enumerate(rows):
    ids[i, n - len(row) :], mask[i, n - len(row) :] = row, 1
  pv = rng.standard_normal((int(np.prod(grids, -1).sum()), CFG.vision.patch_dim))
  return dict(
    input_ids=ids,
    attention_mask=mask,
    pixel_values_videos=pv.astype(np.float32),
    video_grid_thw=grids,
    second_per_grid_ts=np.array([1.5, 2.0], np.float32),
  )


def hf_generate(hf, inputs, eos_id, position_ids=None, **generate_kw):
  """transformers greedy generate -> (new tokens [B, NEW] padded with PAD, logits)."""
  t = {k: torch.as_tensor(v) for k, v in inputs.items()}
  t["mm_token_type_ids"] = torch.as_tensor(mm_token_type_ids(CFG, inputs["input_ids"]))
  if position_ids is not None:
    t["position_ids"] = torch.as_tensor(position_ids, dtype=torch.long)
  with torch.no_grad():
    out = hf.generate(
      **t,
      max_new_tokens=NEW,
      do_sample=False,
      eos_token_id=eos_id,
      pad_token_id=PAD,
      output_logits=True,
      return_dict_in_generate=True,
      **generate_kw,
    )
  hf.model.rope_deltas = None
  new = out.sequences[:, inputs["input_ids"].shape[1] :].numpy()
  logits = torch.stack(out.logits, 1).numpy()
  return np.pad(new, ((0, 0), (0, NEW - new.shape[1])), constant_values=PAD), logits


def hf_teacher_forced_logits(hf, inputs, num_samples, tokens):
  """transformers logits over each prompt (repeated G times) followed by its rollout."""
  g = num_samples
  ids = np.concatenate([np.repeat(inputs["input_ids"], g, 0), tokens], 1)
  mask = np.concatenate([np.repeat(inputs["attention_mask"], g, 0), np.ones_like(tokens)], 1)
  grids = inputs["video_grid_thw"]
  per_video = np.split(inputs["pixel_values_videos"], np.cumsum(np.prod(grids, -1))[:-1])
  with torch.no_grad():
    logits = hf(
      input_ids=torch.as_tensor(ids),
      attention_mask=torch.as_tensor(mask),
      pixel_values_videos=torch.as_tensor(np.concatenate([p for p in per_video for _ in range(g)])),
      video_grid_thw=torch.as_tensor(np.repeat(grids, g, 0)),
      second_per_grid_ts=torch.as_tensor(np.repeat(inputs["second_per_grid_ts"], g)),
      mm_token_type_ids=torch.as_tensor(mm_token_type_ids(CFG, ids)),
      use_cache=False,
    ).logits
  hf.model.rope_deltas = None
  return logits[:, inputs["input_ids"].shape[1] - 1 : -1].numpy()  # predicting each new token


def log_softmax(x, axis=-1):
  x = x - x.max(axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis, keepdims=True))


def assert_close(ours, ref, rtol=1e-4):
  err = np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref))
  assert err < rtol, f"max error relative to max |ref| = {err:.2e}"


@pytest.fixture(scope="module")
def greedy(models, prompts):
  """Our greedy rollouts and transformers' with an eos id that never fires."""
  hf, ours = models
  ref, ref_logits = hf_generate(hf, prompts, eos_id=CFG.eos_token_id)
  out = sampling.generate(
    ours,
    jax.random.key(0),
    max_new_tokens=NEW,
    greedy=True,
    eos_id=CFG.eos_token_id,
    pad_id=PAD,
    rope_rule="transformers5",
    **prompts,
  )
  return out, ref, ref_logits


def test_greedy_video_equals_transformers_generate(greedy):
  out, ref, ref_logits = greedy
  assert (ref != CFG.eos_token_id).all()  # 32 full tokens on both rows
  np.testing.assert_array_equal(out.tokens, ref)
  np.testing.assert_array_equal(out.lengths, [NEW, NEW])
  ref_logp = np.take_along_axis(log_softmax(ref_logits), ref[..., None], -1)[..., 0]
  assert_close(out.logprobs, ref_logp)


def test_greedy_stops_each_row_at_eos(models, prompts, greedy):
  hf, ours = models
  first, second = greedy[1]
  # An id only the second row emits (it stops, the first runs on), then one both rows emit
  # (both stop early and the decode loop exits before NEW steps).
  only_second = next(int(x) for x in second[1:] if x not in first)
  both = next(int(x) for x in second[1:] if x in first[1:])
  for eos in (only_second, both):
    ref, _ = hf_generate(hf, prompts, eos_id=[CFG.eos_token_id, eos])
    out = sampling.generate(
      ours,
      jax.random.key(0),
      max_new_tokens=NEW,
      greedy=True,
      eos_id=[CFG.eos_token_id, eos],
      pad_id=PAD,
      rope_rule="transformers5",
      **prompts,
    )
    np.testing.assert_array_equal(out.tokens, ref)
    for row, length in zip(greedy[1], out.lengths):
      assert length == (row.tolist().index(eos) + 1 if eos in row else NEW)
    assert (out.logprobs[np.arange(NEW)[None] >= out.lengths[:, None]] == 0).all()
  assert out.lengths.max() < NEW


def test_greedy_qwen_rule_equals_generate_given_qwen_positions(models, prompts):
  """Qwen's rotary rule: transformers generate fed our prompt positions continues them the
  same way as our sampler."""
  hf, ours = models
  host = sample_inputs.prepare_prompts(
    CFG, rope_rule="qwen", prompt_length=prompts["input_ids"].shape[1], **prompts
  )
  ref, _ = hf_generate(hf, prompts, CFG.eos_token_id, position_ids=host["position_ids"])
  out = sampling.generate(
    ours,
    jax.random.key(0),
    max_new_tokens=NEW,
    greedy=True,
    pad_id=PAD,
    rope_rule="qwen",
    **prompts,
  )
  np.testing.assert_array_equal(out.tokens, ref)


@pytest.fixture(scope="module")
def sampled(models, prompts):
  hf, ours = models
  kw = dict(
    max_new_tokens=NEW,
    num_samples=2,
    temperature=0.8,
    top_p=0.9,
    top_k=40,
    eos_id=CFG.eos_token_id,
    pad_id=PAD,
    rope_rule="transformers5",
    **prompts,
  )
  return [sampling.generate(ours, jax.random.key(k), **kw) for k in (7, 7, 8)]


def test_sampling_is_reproducible_and_key_dependent(sampled):
  a, b, c = sampled
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert a.tokens.shape == (4, NEW)
  assert (a.tokens != c.tokens).mean() > 0.5
  assert (a.tokens[0] != a.tokens[1]).mean() > 0.5  # the G samples of one prompt differ


def test_sampled_logprobs_and_support_match_transformers(models, prompts, sampled):
  """Teacher-forced transformers logits at the sampled tokens: our log-probs are
  log softmax(logits / T), and every token survives transformers' warpers."""
  hf, _ = models
  out = sampled[0]
  logits = hf_teacher_forced_logits(hf, prompts, 2, out.tokens)
  valid = np.arange(NEW)[None] < out.lengths[:, None]
  ref = np.take_along_axis(log_softmax(logits / 0.8), out.tokens[..., None], -1)[..., 0]
  assert_close(out.logprobs[valid], ref[valid])
  warped = torch.as_tensor(logits.reshape(-1, logits.shape[-1]))
  for warp in (TemperatureLogitsWarper(0.8), TopKLogitsWarper(40), TopPLogitsWarper(0.9)):
    warped = warp(None, warped)
  kept = np.isfinite(warped.numpy()).reshape(logits.shape)
  chosen = np.take_along_axis(kept, out.tokens[..., None], -1)[..., 0]
  assert chosen[valid].all()


def top_one(ours, prompts):
  """top-k 1 sampling, 3 per prompt, vision inputs padded to fixed shapes."""
  padding = dict(num_patches=320, num_windows=40, num_frames=8, frame_length=64)
  return sampling.generate(
    ours,
    jax.random.key(3),
    max_new_tokens=NEW,
    num_samples=3,
    top_k=1,
    eos_id=CFG.eos_token_id,
    pad_id=PAD,
    rope_rule="transformers5",
    video_padding=padding,
    **prompts,
  )


def test_top_k_one_samples_the_greedy_rollout_for_every_copy(models, prompts, greedy):
  """Also with the vision inputs padded to fixed shapes (288 real patches, 6 frames)."""
  out = top_one(models[1], prompts)
  np.testing.assert_array_equal(out.tokens, np.repeat(greedy[1], 3, 0))


def test_filler_prompt_row_leaves_the_others_alone(models, prompts, greedy):
  """A row without tokens (a partial batch) samples noise without disturbing row 0."""
  grid = prompts["video_grid_thw"][:1]
  filler = dict(
    prompts,
    attention_mask=prompts["attention_mask"] * [[1], [0]],
    video_grid_thw=grid,
    second_per_grid_ts=prompts["second_per_grid_ts"][:1],
    pixel_values_videos=prompts["pixel_values_videos"][: int(np.prod(grid))],
  )
  out = top_one(models[1], filler)
  np.testing.assert_array_equal(out.tokens[:3], np.repeat(greedy[1][:1], 3, 0))
  assert np.isfinite(out.logprobs).all()


@pytest.mark.parametrize(
  "temperature,top_k,top_p",
  [(1.0, 5, 1.0), (0.7, 0, 0.8), (1.3, 20, 0.5), (1.0, 0, 1.0), (0.5, 3, 0.999), (1.0, 80, 0.9)],
)
def test_filter_logits_equals_transformers_warpers(temperature, top_k, top_p):
  logits = np.random.default_rng(0).standard_normal((6, 50)).astype(np.float32) * 3
  ref = torch.as_tensor(logits)
  warpers = [TemperatureLogitsWarper(temperature)]
  warpers += [TopKLogitsWarper(top_k)] if top_k else []
  warpers += [TopPLogitsWarper(top_p)] if top_p < 1 else []
  for warp in warpers:
    ref = warp(None, ref)
  ours = np.asarray(sampling.filter_logits(jnp.asarray(logits), temperature, top_k, top_p))
  np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(ref.numpy()))
  np.testing.assert_allclose(ours[np.isfinite(ours)], ref.numpy()[np.isfinite(ours)], rtol=1e-6)


def test_choose_tokens_frequencies_follow_filtered_softmax():
  logits = jnp.asarray([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])
  keys = jax.random.split(jax.random.key(0), 20000)
  choose = lambda k: sampling.choose_tokens(
    logits, k, temperature=0.5, top_k=4, top_p=0.95, greedy=False
  )
  tokens, logp = jax.vmap(choose)(keys)
  freq = np.bincount(np.asarray(tokens)[:, 0], minlength=6) / len(keys)
  # Hand computation: logits / 0.5 = [4, 2, 1, 0, -2, -6]; top-4 keeps the first four
  # (probs .8438 .1142 .0420 .0155); top-p 0.95 drops the last (cum .0155 <= .05).
  p = np.exp([4.0, 2.0, 1.0])
  np.testing.assert_allclose(freq, np.r_[p / p.sum(), 0, 0, 0], atol=0.01)
  full = np.log(np.exp([4.0, 2, 1, 0, -2, -6]) / np.exp([4.0, 2, 1, 0, -2, -6]).sum())
  np.testing.assert_allclose(np.asarray(logp)[:, 0], full[np.asarray(tokens)[:, 0]], rtol=1e-5)


def test_left_pad_and_next_positions():
  ids = np.array([[5, 6, 7, 0], [0, 8, 9, 0]])
  mask = np.array([[1, 1, 1, 0], [0, 1, 1, 0]])
  got, got_mask = sample_inputs.left_pad(ids, mask, 5, pad_id=3)
  np.testing.assert_array_equal(got, [[3, 3, 5, 6, 7], [3, 3, 3, 8, 9]])
  np.testing.assert_array_equal(got_mask, [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1]])
  # A prompt ending in a vision token whose ids are (9, 4, 6): transformers 5 continues each
  # row; Qwen's rule starts every row at max + 1.
  pos = np.array([[[1, 2, 9]], [[1, 2, 4]], [[1, 2, 6]]])
  m = np.array([[1, 1, 1]])
  np.testing.assert_array_equal(
    sample_inputs.next_positions(pos, m, "transformers5"), [[10], [5], [7]]
  )
  np.testing.assert_array_equal(sample_inputs.next_positions(pos, m, "qwen"), [[10], [10], [10]])
  np.testing.assert_array_equal(sample_inputs.next_positions(pos, 0 * m, "qwen"), [[0], [0], [0]])
  with pytest.raises(ValueError, match="does not fit"):
    sample_inputs.left_pad(ids, mask, 2)


def test_missing_inputs_are_named():
  with pytest.raises(ValueError, match="next_position"):
    sampling.sample(
      None,
      None,
      {"input_ids": np.zeros((1, 4), np.int32)},
      jax.random.key(0),
      max_new_tokens=2,
      eos_id=1,
    )
  right_padded = dict(
    input_ids=np.ones((1, 3)),
    attention_mask=np.array([[1, 1, 0]]),
    position_ids=np.zeros((3, 1, 3)),
    next_position=np.zeros((3, 1)),
  )
  with pytest.raises(ValueError, match="left-padded"):
    sampling.sample(None, None, right_padded, jax.random.key(0), max_new_tokens=2, eos_id=1)
  with pytest.raises(ValueError, match="eos_id"):
    sampling.sample(None, None, {}, jax.random.key(0), max_new_tokens=2, eos_id=list(range(9)))


def test_vision_placeholders_are_never_sampled():
  from o3jax.sample import choose_tokens

  logits = jnp.full((64, 8), -5.0).at[:, 3].set(5.0).at[:, 5].set(4.0)
  tokens, logp = choose_tokens(
    logits, jax.random.key(0), temperature=1.0, top_k=0, top_p=1.0, greedy=False, banned=(3,)
  )
  assert not np.any(np.asarray(tokens) == 3)
  full = jax.nn.log_softmax(logits, axis=-1)
  np.testing.assert_allclose(np.asarray(logp), np.asarray(full[0, tokens]), rtol=1e-6)
  greedy, _ = choose_tokens(
    logits, jax.random.key(0), temperature=1.0, top_k=0, top_p=1.0, greedy=True, banned=(3,)
  )
  assert np.all(np.asarray(greedy) == 5)


@pytest.fixture(scope="module")
def unpadded_prompts():
  """Two video prompts of one length: no padding, which transformers' repetition penalty
  would count as a repeated token (o3jax, like vLLM, counts only the real tokens)."""
  rng = np.random.default_rng(1)
  grid = np.array([2, 4, 6])
  rows = [text_tokens(rng, 6) + vision_block(CFG, "video", grid) + text_tokens(rng, 5)]
  rows.append(text_tokens(rng, 6) + vision_block(CFG, "video", grid) + text_tokens(rng, 5))
  pv = rng.standard_normal((2 * int(np.prod(grid)), CFG.vision.patch_dim)).astype(np.float32)
  return dict(
    input_ids=np.array(rows, np.int64),
    attention_mask=np.ones((2, len(rows[0])), np.int64),
    pixel_values_videos=pv,
    video_grid_thw=np.array([grid, grid]),
    second_per_grid_ts=np.array([1.0, 1.0], np.float32),
  )


@pytest.mark.parametrize("penalty", [1.05, 1.5])
def test_greedy_with_repetition_penalty_equals_transformers_generate(
  models, unpadded_prompts, penalty
):
  hf, ours = models
  kw = dict(max_new_tokens=NEW, greedy=True, eos_id=CFG.eos_token_id, pad_id=PAD)
  kw.update(rope_rule="transformers5", **unpadded_prompts)
  ref, _ = hf_generate(hf, unpadded_prompts, CFG.eos_token_id, repetition_penalty=penalty)
  out = sampling.generate(ours, jax.random.key(0), repetition_penalty=penalty, **kw)
  np.testing.assert_array_equal(out.tokens, ref)
  plain = sampling.generate(ours, jax.random.key(0), **kw)
  if penalty == 1.5:  # the penalty acts: without it the rollouts repeat themselves more
    assert (plain.tokens != out.tokens).any()
    repeats = lambda t: sum(len(r) - len(set(r.tolist())) for r in t)
    assert repeats(out.tokens) < repeats(plain.tokens)
