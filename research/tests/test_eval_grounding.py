"""research/eval_grounding.py: the tokens its box-token loss reads, and the pieces of its attention and place measurements."""

import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from o3jax.data import scenes
from o3jax.models import config as config_lib
from o3jax.models.attention import Mask
from o3jax.models.layers import layer_at
from o3jax.models.qwen2_5_vl import Qwen2_5_VL, prepare_inputs
from o3jax.models.text import mrope_cos_sin
from o3jax.processing.tokenizer import build_demo_tokenizer
from research import eval_grounding


def test_box_token_positions_are_the_digits_inside_boxes():
  demo_tokenizer = build_demo_tokenizer()
  prompt = "Where is the red circle at 2.5s? [1,2]"
  target = (
    "<think>I see the <obj>red circle</obj><box>[12,5,30,41]</box>at<t>2.5</t>s, "
    "then the <obj>red circle</obj><box>[7,60,9,88]</box>at<t>3.0</t>s.</think>"
  )
  prompt_ids = demo_tokenizer.encode(prompt).ids
  ids = np.array(prompt_ids + demo_tokenizer.encode(target).ids)
  positions = eval_grounding.box_token_positions(demo_tokenizer, ids, len(prompt_ids))
  digits = "".join(demo_tokenizer.decode([int(ids[i])]) for i in positions)
  # The coordinates of both boxes, in order; not the times, nor the numbers of the prompt.
  assert digits.replace(",", "") == "1253041" + "760988"
  assert positions.min() > len(prompt_ids) and np.all(np.diff(positions) > 0)


def test_box_token_groups_split_the_digits_by_box():
  demo_tokenizer = build_demo_tokenizer()
  target = "<obj>red circle</obj><box>[12,5,30,41]</box>at<t>2.5</t>s <obj>x</obj><box>[7,6,9,8]</box>at<t>3</t>s"
  ids = np.array(demo_tokenizer.encode(target).ids)
  text, groups = eval_grounding.box_token_groups(demo_tokenizer, ids, 0)
  assert text == target
  assert [
    "".join(demo_tokenizer.decode([int(ids[i])]) for i in g).replace(",", "") for g in groups
  ] == ["1253041", "7698"]


def test_attention_probs_rebuild_the_layers_attention():
  """The recomputed weights, applied to the layer's own values, give its attention output."""
  cfg = config_lib.tiny()
  model = Qwen2_5_VL(cfg, rngs=nnx.Rngs(0))
  layer, t = layer_at(model.text.layers, 1), 9
  x = jax.random.normal(jax.random.key(1), (1, t, cfg.text.hidden_size))
  positions = jnp.broadcast_to(jnp.array([0, 1, 2, 3, 3, 4, 9, 10, 11])[None, None], (3, 1, t))
  cos, sin = mrope_cos_sin(positions, cfg.text, jnp.float32)
  mask = jnp.tril(jnp.ones((t, t), bool))[None]
  probs = eval_grounding.attention_probs(layer, x, cos, sin, mask)
  assert probs.shape == (cfg.text.num_attention_heads, t, t)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
  assert np.all(np.triu(probs, 1) == 0)  # causal
  attn, h = layer.attn, layer.input_norm(x)
  v = jnp.repeat(
    jnp.einsum("BTD,DKH->BTKH", h, attn.v_kernel[...]) + attn.v_bias[...], attn.groups, axis=2
  )[0]
  rebuilt = jnp.einsum("TnH,nHD->TD", jnp.einsum("nTS,SnH->TnH", probs, v), attn.o_kernel[...])
  np.testing.assert_allclose(
    rebuilt, attn(h, cos, sin, Mask(causal=True))[0][0], atol=1e-5, rtol=1e-5
  )


def test_cells_holding_counts_the_named_colour_per_token_cell():
  frame = np.zeros((56, 84, 3), np.uint8)
  frame[30:40, 60:70] = scenes.COLOURS["red"]  # 100 pixels in the cell at row 1, column 2
  frame[0:2, 0:2] = scenes.COLOURS["red"]  # 4 pixels at the top left: too few
  frame[0:5, 30:35] = scenes.COLOURS["blue"]
  holds = eval_grounding.cells_holding(frame, "red square", (2, 3))
  assert holds.tolist() == [False, False, False, False, False, True]
  assert eval_grounding.cells_holding(frame, "blue circle", (2, 3)).tolist() == [
    False,
    True,
    False,
    False,
    False,
    False,
  ]
  assert not eval_grounding.cells_holding(frame, "mauve thing", (2, 3)).any()


def test_ridge_r_squared_on_a_linear_target_and_on_noise():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 5))
  y = np.c_[x @ [1.0, -2.0, 0.5, 0.0, 3.0] + 4.0, rng.normal(size=400)]
  r2 = eval_grounding.r_squared(
    eval_grounding.ridge_predict(x[:300], y[:300], x[300:], lam=1e-6), y[300:]
  )
  assert r2[0] > 1 - 1e-9  # exactly linear
  assert r2[1] < 0.05  # nothing to read
  # Hand case: the predictions equal the targets' mean -> R^2 = 0.
  np.testing.assert_allclose(
    eval_grounding.r_squared(np.full((4, 1), 2.5), np.array([[1.0], [2], [3], [4]])), [0.0]
  )


def test_decoder_states_end_in_the_models_hidden_state():
  cfg = config_lib.tiny()
  model = Qwen2_5_VL(cfg, rngs=nnx.Rngs(0))
  ids = np.array(
    [5, 6, cfg.vision_start_token_id] + [cfg.image_token_id] * 6 + [cfg.vision_end_token_id, 7, 8]
  )
  grid = np.array([[1, 4, 6]])  # 24 patches, 6 merged tokens
  pixels = np.random.default_rng(0).normal(size=(24, 1176)).astype(np.float32)
  example = types.SimpleNamespace(input_ids=ids, pixel_values=pixels)
  prepared = prepare_inputs(cfg, ids[None], pixel_values=pixels, image_grid_thw=grid)
  states, *_ = eval_grounding.decoder_states(model, example, prepared)
  assert len(states) == cfg.text.num_hidden_layers + 1
  hidden = model(ids[None], pixel_values=pixels, image_grid_thw=grid, return_hidden=True)
  np.testing.assert_allclose(model.text.norm(states[-1]), hidden, atol=1e-5, rtol=1e-5)


def test_listing_choices_are_the_words_after_is_and_and():
  demo_tokenizer = build_demo_tokenizer()
  prompt = "Is the red circle left and up in frames 2, 1?"  # the prompt's words are not choices
  target = "Frame 2: the red circle is left and up; the blue square is not visible. Frame 1: the red circle is right and down."
  prompt_ids = demo_tokenizer.encode(prompt).ids
  ids = np.array(prompt_ids + demo_tokenizer.encode(target).ids)
  choices = eval_grounding.listing_choices(demo_tokenizer, ids, len(prompt_ids))
  words = [demo_tokenizer.decode([int(ids[k])]) for k, _, _ in choices]
  assert words == [" left", " up", " not", " right", " down"]
  assert [c for _, _, c in choices] == [
    "left / right",
    "up / down",
    "not visible",
    "left / right",
    "up / down",
  ]
  for k, candidates, category in choices:
    assert int(ids[k]) in candidates and len(candidates) == (3 if category == "not visible" else 2)


def test_centre_error_against_the_object_on_its_frame_and_its_mean_place():
  frames = np.zeros((3, 60, 100, 3), np.uint8)
  frames[0, 30:40, 10:20] = scenes.COLOURS["red"]  # centre (15, 35)
  frames[1, 30:40, 50:60] = scenes.COLOURS["red"]  # centre (55, 35); frame 2 lacks it
  red = eval_grounding.object_centres(frames, "red square")
  err = eval_grounding.centre_error(red, 1, [48, 28, 64, 40])  # centre (56, 34)
  np.testing.assert_allclose(err["box"], [1, 1])
  np.testing.assert_allclose(err["pooled"], [20, 0])  # mean place (35, 35)
  assert err["across"]
  assert eval_grounding.centre_error(red, 2, [48, 28, 64, 40]) is None
  assert eval_grounding.centre_error(red, 1, [48, 28, "x", 40]) is None
  mauve = eval_grounding.object_centres(frames, "mauve square")
  assert eval_grounding.centre_error(mauve, 1, [48, 28, 64, 40]) is None
  up = dict(err, across=False, box=np.array([3.0, 5.0]), pooled=np.array([0.0, 9.0]))
  summary = eval_grounding.centre_error_summary([err, err, up])
  assert summary == {
    "moves across (2 boxes)": "x 1.0 / 20.0, y 1.0 / 0.0",
    "moves up or down (1 boxes)": "x 3.0 / 0.0, y 5.0 / 9.0",
  }


def test_on_another_object_is_a_box_on_a_shape_of_another_colour():
  frame = np.zeros((60, 100, 3), np.uint8)
  frame[30:40, 10:20] = scenes.COLOURS["red"]
  frame[10:20, 60:70] = scenes.COLOURS["blue"]
  assert eval_grounding.on_another_object(frame, "red square", [58, 8, 72, 22])  # on the blue one
  assert not eval_grounding.on_another_object(frame, "red square", [8, 28, 22, 42])  # on its own
  assert not eval_grounding.on_another_object(frame, "blue circle", [58, 8, 72, 22])
  assert not eval_grounding.on_another_object(frame, "red square", [80, 40, 95, 55])  # on nothing


def test_key_frames_boxed_counts_the_named_frames_answered_and_repeats():
  record = {
    "key_frames": [{"idx": 8, "time": 1.0}, {"idx": 24, "time": 3.0}, {"idx": 40, "time": 5.1}]
  }
  assert eval_grounding.key_frames_boxed(record, [1.0, 3.0, 5.1]) == (3, 3, 0)
  assert eval_grounding.key_frames_boxed(record, [1.0, 3.0, 3.0]) == (
    3,
    2,
    1,
  )  # frame at 5.1 s left out
  assert eval_grounding.key_frames_boxed(record, [2.0, "x", 5.12]) == (
    3,
    1,
    0,
  )  # 5.12 is within 0.05 s
  assert eval_grounding.key_frames_boxed({}, [1.0]) == (0, 0, 0)
