"""Demo tokenizer, chat template, pad expansion, loss mask, and what the model accepts."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from o3jax.processing import chat
from o3jax.processing import tokenizer as tok
from o3jax.processing.config import TINY, ProcessingConfig
from o3jax.processing.media import VideoClip
from o3jax.processing.presentation import present_image, present_video
from data_fixtures import demo_tokenizer, hf_tiny_model  # noqa: F401  (pytest fixture)

GROUNDED = (
  "<think>The <obj>woman</obj><box>[374,67,420,224]</box>at<t>9.2</t>s wears a red vest, "
  "then <obj>dog</obj><box>[1,2,3,4]</box><box>[5.5,6,7,8]</box>at<t>10</t>s.</think>\n"
  "<answer>From <t>1.5</t>s to <t>12.25</t>s\nCorrect Option: (B)</answer>"
)


def test_demo_tokenizer_vocabulary_and_special_ids(demo_tokenizer):
  assert demo_tokenizer.get_vocab_size() <= 1024
  ids = tok.special_token_ids(demo_tokenizer)
  assert set(ids) == {
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "eos_token_id",
    "pad_token_id",
  }
  assert len(set(ids.values())) == 6 and max(ids.values()) < 1024
  for token in tok.SPECIAL_TOKENS:  # each special token is one id, never split
    assert demo_tokenizer.encode(token, add_special_tokens=False).ids == [
      demo_tokenizer.token_to_id(token)
    ]
  assert ids["eos_token_id"] == demo_tokenizer.token_to_id("<|im_end|>")


def test_demo_tokenizer_is_deterministic(demo_tokenizer):
  assert tok.build_demo_tokenizer().to_str() == demo_tokenizer.to_str()


def test_demo_tokenizer_round_trips_grounded_text(demo_tokenizer):
  ids = demo_tokenizer.encode(GROUNDED, add_special_tokens=False).ids
  assert demo_tokenizer.decode(ids, skip_special_tokens=False) == GROUNDED
  assert len(ids) < len(GROUNDED)  # the merges do shorten it


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=9, max_codepoint=0x2FF), max_size=80))
def test_demo_tokenizer_round_trips_any_text(text):
  tokenizer = _SHARED.setdefault("tok", tok.build_demo_tokenizer())
  assert (
    tokenizer.decode(
      tokenizer.encode(text, add_special_tokens=False).ids, skip_special_tokens=False
    )
    == text
  )


_SHARED = {}


def test_load_tokenizer_from_json(tmp_path, demo_tokenizer):
  path = tmp_path / "tokenizer.json"
  demo_tokenizer.save(str(path))
  loaded = tok.load_tokenizer(str(path))
  assert loaded.encode(GROUNDED).ids == demo_tokenizer.encode(GROUNDED).ids
  assert tok.special_token_ids(loaded) == tok.special_token_ids(demo_tokenizer)


def test_qwen_layout_tokenizer(tmp_path):
  """Like Qwen's tokenizer.json: a byte-level BPE whose special tokens are added after the
  vocabulary (large ids), loaded from a file."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # pylint: disable=import-outside-toplevel

  base = Tokenizer(models.BPE())
  base.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  base.decoder = decoders.ByteLevel()
  base.train_from_iterator(
    [GROUNDED, "Frame 1 at 0.5s: What colour is it?"] * 3,
    trainers.BpeTrainer(
      vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    ),
  )
  base.add_special_tokens(list(tok.SPECIAL_TOKENS))
  base.save(str(tmp_path / "tokenizer.json"))
  loaded = tok.load_tokenizer(str(tmp_path / "tokenizer.json"))
  ids = tok.special_token_ids(loaded)
  assert min(ids.values()) >= loaded.get_vocab_size() - len(tok.SPECIAL_TOKENS)
  messages = _messages(
    ["Frame 1 at 0.5s: ", chat.Vision("image", (1, 2, 4)), "\nWhat colour is it?"]
  )
  tokens = chat.tokenize(loaded, messages)
  assert (
    tokens.input_ids.tolist() == loaded.encode(chat.render(messages), add_special_tokens=False).ids
  )
  assert (tokens.input_ids == ids["image_token_id"]).sum() == 2
  trained = tokens.input_ids[tokens.loss_mask == 1].tolist()
  assert loaded.decode(trained, skip_special_tokens=False) == GROUNDED + "<|im_end|>"


def _messages(content, target=GROUNDED):
  return [
    chat.Message("system", ["You are a helpful assistant."]),
    chat.Message("user", content),
    chat.Message("assistant", [target]),
  ]


def test_render_follows_qwen_template():
  text = chat.render(_messages([chat.Vision("image", (1, 4, 6)), "What?"], "Yes."), merge_size=2)
  assert text == (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * 6 + "<|vision_end|>What?<|im_end|>\n"
    "<|im_start|>assistant\nYes.<|im_end|>\n"
  )
  prompt = chat.render(_messages(["Hi"])[:2], add_generation_prompt=True)
  assert prompt.endswith("Hi<|im_end|>\n<|im_start|>assistant\n")


def test_tokenize_equals_encoding_the_rendered_text(demo_tokenizer):
  content = [
    "Frame 1 at 0.0s: ",
    chat.Vision("image", (1, 4, 6)),
    "\n",
    "Frame 2 at 0.5s: ",
    chat.Vision("image", (1, 2, 2)),
    "\nThe video is in total 1 seconds.\n",
    "What colour?",
    chat.Vision("video", (3, 4, 4)),
  ]
  messages = _messages(content)
  tokens = chat.tokenize(demo_tokenizer, messages)
  whole = demo_tokenizer.encode(chat.render(messages), add_special_tokens=False).ids
  assert tokens.input_ids.tolist() == whole
  ids = tok.special_token_ids(demo_tokenizer)
  assert (tokens.input_ids == ids["image_token_id"]).sum() == 6 + 1
  assert (tokens.input_ids == ids["video_token_id"]).sum() == 3 * 4 * 4 // 4


def test_loss_mask_is_the_assistant_turn(demo_tokenizer):
  tokens = chat.tokenize(demo_tokenizer, _messages([chat.Vision("image", (1, 2, 2)), "Q?"]))
  trained = tokens.input_ids[tokens.loss_mask == 1].tolist()
  assert demo_tokenizer.decode(trained, skip_special_tokens=False) == GROUNDED + "<|im_end|>"
  first = int(np.argmax(tokens.loss_mask))  # one contiguous run ending at <|im_end|>
  assert tokens.loss_mask[first : first + len(trained)].all() and tokens.loss_mask.sum() == len(
    trained
  )
  prompt = chat.tokenize(
    demo_tokenizer,
    _messages([chat.Vision("image", (1, 2, 2)), "Q?"])[:2],
    add_generation_prompt=True,
  )
  assert tokens.input_ids[:first].tolist() == prompt.input_ids.tolist()


def test_image_pad_count_matches_transformers_processor():
  processor = Qwen2VLImageProcessorPil(
    min_pixels=TINY.image_min_pixels, max_pixels=TINY.image_max_pixels
  )
  for height, width in ((84, 112), (40, 300), (500, 90)):
    image = np.zeros((height, width, 3), np.uint8)
    visual = present_image(image, TINY)
    (vision,) = visual.content
    assert vision.num_tokens() == processor.get_number_of_image_patches(height, width) // 4
    assert len(visual.pixel_values) == processor.get_number_of_image_patches(height, width)


def _clip(num=4, sample_fps=2.0, size=(56, 84)):
  rng = np.random.default_rng(num)
  frames = rng.integers(0, 256, (num, *size, 3), dtype=np.uint8)
  return VideoClip(frames, np.arange(num), sample_fps, num * 4, sample_fps * 4, (size[1], size[0]))


def test_frames_presentation_text():
  clip = _clip()
  key = np.full((56, 84, 3), 7, np.uint8)
  visual = present_video(clip, TINY, key_frames=[(5.0, key), (1, key)])
  pads = "<|vision_start|>" + "<|image_pad|>" * 6 + "<|vision_end|>\n"
  expected = (
    f"Frame 1 at 0.0s: {pads}Frame 2 at 0.5s: {pads}Frame 3 at 1.0s: {pads}Frame 4 at 1.0s: {pads}"
    f"Frame 5 at 1.5s: {pads}Frame 6 at 5.0s: {pads}The video is in total 2 seconds.\n"
  )
  assert (
    chat.render([chat.Message("user", visual.content)])
    == f"<|im_start|>user\n{expected}<|im_end|>\n"
  )
  assert visual.image_grid_thw.tolist() == [[1, 4, 6]] * 6 and len(visual.pixel_values) == 6 * 24
  # The key frames sit at positions 3 and 6 of the images.
  key_rows = present_image(
    key, ProcessingConfig(image_min_pixels=56 * 84, image_max_pixels=56 * 84)
  ).pixel_values
  np.testing.assert_array_equal(visual.pixel_values[2 * 24 : 3 * 24], key_rows)
  np.testing.assert_array_equal(visual.pixel_values[5 * 24 : 6 * 24], key_rows)
  assert visual.frame_times == (0.0, 0.5, 1.0, 1.0, 1.5, 5.0)


def test_native_video_presentation():
  clip = _clip(num=6, sample_fps=1.5)
  visual = present_video(clip, ProcessingConfig(presentation="video"), key_frames=[])
  assert [type(p).__name__ for p in visual.content] == ["Vision"]
  assert visual.video_grid_thw.tolist() == [[3, 4, 6]] and visual.content[0].num_tokens() == 18
  np.testing.assert_allclose(visual.second_per_grid_ts, [2 / 1.5])
  assert len(visual.pixel_values) == 0 and len(visual.pixel_values_videos) == 72


def _hf_forward(model, tokenizer, visual, ids):
  tokens = chat.tokenize(tokenizer, _messages(visual.content + ["What?"], "Yes."))
  input_ids = torch.tensor(tokens.input_ids[None].astype(np.int64))
  types = (input_ids == ids["image_token_id"]).long() + 2 * (
    input_ids == ids["video_token_id"]
  ).long()
  kwargs = dict(input_ids=input_ids, mm_token_type_ids=types)
  if len(visual.image_grid_thw):
    kwargs.update(
      pixel_values=torch.tensor(visual.pixel_values),
      image_grid_thw=torch.tensor(visual.image_grid_thw),
    )
  if len(visual.video_grid_thw):
    kwargs.update(
      pixel_values_videos=torch.tensor(visual.pixel_values_videos),
      video_grid_thw=torch.tensor(visual.video_grid_thw),
      second_per_grid_ts=torch.tensor(visual.second_per_grid_ts),
    )
  with torch.no_grad():
    return model(**kwargs).logits, kwargs


def test_transformers_qwen2_5_vl_accepts_our_inputs(demo_tokenizer):
  ids = tok.special_token_ids(demo_tokenizer)
  model = hf_tiny_model(ids)
  image = np.random.default_rng(0).integers(0, 256, (84, 112, 3), dtype=np.uint8)
  cases = [
    present_image(image, TINY),
    present_video(_clip(), TINY, key_frames=[(1.0, _clip(1).frames[0])]),
    present_video(_clip(num=6, sample_fps=1.5), ProcessingConfig(presentation="video")),
  ]
  for visual in cases:
    logits, kwargs = _hf_forward(model, demo_tokenizer, visual, ids)
    assert logits.shape[:2] == kwargs["input_ids"].shape and torch.isfinite(logits).all()
  # The check is real: one pad token too few is refused.
  _, kwargs = _hf_forward(model, demo_tokenizer, cases[1], ids)
  first_pad = int((kwargs["input_ids"][0] == ids["image_token_id"]).nonzero()[0])
  kwargs["input_ids"] = torch.cat(
    [kwargs["input_ids"][:, :first_pad], kwargs["input_ids"][:, first_pad + 1 :]], 1
  )
  kwargs["mm_token_type_ids"] = torch.cat(
    [kwargs["mm_token_type_ids"][:, :first_pad], kwargs["mm_token_type_ids"][:, first_pad + 1 :]], 1
  )
  with pytest.raises(ValueError, match="do not match"):
    model(**kwargs)
