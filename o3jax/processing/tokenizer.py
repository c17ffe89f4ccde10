"""Tokenizers: a real Qwen `tokenizer.json`, or the small demo tokenizer.

The demo tokenizer is a byte-level BPE with Qwen2's pre-tokenizer regex and all of
Qwen2.5-VL's special tokens, trained on a fixed built-in corpus (system prompts, frame
labels, grounded reasoning) to at most 1024 ids so the tiny model can embed every id.
Being byte-level it round-trips any text exactly; training is deterministic.
"""

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from o3jax.processing import prompts

# Qwen2.5-VL's special tokens (ids 151643..151656 in the real vocabulary).
SPECIAL_TOKENS = (
  "<|endoftext|>",
  "<|im_start|>",
  "<|im_end|>",
  "<|object_ref_start|>",
  "<|object_ref_end|>",
  "<|box_start|>",
  "<|box_end|>",
  "<|quad_start|>",
  "<|quad_end|>",
  "<|vision_start|>",
  "<|vision_end|>",
  "<|vision_pad|>",
  "<|image_pad|>",
  "<|video_pad|>",
)
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"

# Qwen2's pre-tokenizer: digits one by one, letters with one leading non-letter, etc.
QWEN_SPLIT = (
  r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
  r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEMO_VOCAB_SIZE = 1024


def load_tokenizer(path: str) -> Tokenizer:
  """A tokenizer from a `tokenizer.json` (e.g. Qwen2.5-VL's); checks the special tokens."""
  tokenizer = Tokenizer.from_file(str(path))
  special_token_ids(tokenizer)
  return tokenizer


def token_id(tokenizer: Tokenizer, token: str) -> int:
  index = tokenizer.token_to_id(token)
  if index is None:
    raise ValueError(f"tokenizer has no token {token!r}")
  return index


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
  """The ids a Qwen2.5-VL model config needs. eos is <|im_end|> (the end of an assistant
  turn, as in Qwen2.5-VL-Instruct), pad is <|endoftext|>."""
  return {
    "image_token_id": token_id(tokenizer, IMAGE_PAD),
    "video_token_id": token_id(tokenizer, VIDEO_PAD),
    "vision_start_token_id": token_id(tokenizer, VISION_START),
    "vision_end_token_id": token_id(tokenizer, VISION_END),
    "eos_token_id": token_id(tokenizer, IM_END),
    "pad_token_id": token_id(tokenizer, END_OF_TEXT),
  }


def _demo_corpus() -> list[str]:
  """Text the demo merges are learnt from: what the demo model reads and writes."""
  texts = [p for stage in prompts.SYSTEM_PROMPTS.values() for p in stage.values()]
  texts += [prompts.frame_label(k, k / 2) + "\n" for k in range(1, 33)]
  texts += [prompts.duration_line(s) for s in range(1, 61)]
  colours = ("red", "green", "blue", "yellow", "purple", "orange", "white", "cyan")
  shapes = ("square", "circle", "triangle", "rectangle", "diamond")
  for i, colour in enumerate(colours):
    for j, shape in enumerate(shapes):
      t, x = (i + j) % 9, 10 * i + 3 * j
      texts.append(
        f"<think>The <obj>{colour} {shape}</obj><box>[{x},{2 * x},{x + 21},{2 * x + 17}]</box>at"
        f"<t>{t}.5</t>s moves to the right. It enters at <t>{t}</t>s and leaves at <t>{t + 3}.0</t>s."
        f"</think>\n<answer>From <t>{t}</t>s to <t>{t + 3}.0</t>s\nCorrect Option: B</answer>"
      )
      texts.append(
        f"Question: When does the {colour} {shape} appear? What colour is the {shape}? Where is "
        f"the {shape}? How many objects are visible? Which shape is {colour}? Options: A. B. C. D."
      )
      texts.append(
        f"<answer>The {shape} is {colour}. It moves from the left to the right, up and down."
        f"</answer> [{t}.0, {t + 2}.5] <obj>{shape}</obj><box>[{x},{x},{x + 9},{x + 9}]</box>"
      )
  return texts


def build_demo_tokenizer(extra_texts: Iterable[str] = ()) -> Tokenizer:
  """Byte-level BPE with Qwen's special tokens and at most 1024 ids in all."""
  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
    [
      pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]
  )
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=DEMO_VOCAB_SIZE,
    min_frequency=2,
    special_tokens=list(SPECIAL_TOKENS),
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    show_progress=False,
  )
  tokenizer.train_from_iterator(_demo_corpus() + list(extra_texts), trainer)
  return tokenizer
