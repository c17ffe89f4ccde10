"""Qwen chat template, vision pad expansion and tokenization with an assistant loss mask.

Template (Qwen2-VL / Qwen2.5-VL): every message is
`<|im_start|>{role}\\n{content}<|im_end|>\\n`; an image in the content is
`<|vision_start|>` + n x `<|image_pad|>` + `<|vision_end|>` (videos: `<|video_pad|>`),
n = t*h*w / merge_size**2 for its grid_thw; `add_generation_prompt` appends
`<|im_start|>assistant\\n`. The templates of Qwen2.5-VL and Qwen3-VL (Instruct) render
these messages alike; they differ in the system turn written when a conversation has
none (`default_system_prompt`). A Qwen3-VL video's per-frame timestamp layout is in its
content (processing/presentation.py).

Tokenization encodes each maximal run of text between special tokens as one string, so
the ids equal encoding the whole rendered text at once (special tokens always split the
text). The loss mask is 1 on the tokens of assistant contents and on the `<|im_end|>`
that closes them (so the model learns to stop), 0 elsewhere.
"""

import dataclasses

import numpy as np
from tokenizers import Tokenizer

from o3jax.processing import tokenizer as tok


# The system turn a chat template writes when the conversation starts without one:
# Qwen2.5-VL's adds this one, Qwen3-VL's none.
_DEFAULT_SYSTEM = {"qwen2_5_vl": "You are a helpful assistant.", "qwen3_vl": None}


def default_system_prompt(model_type: str) -> str | None:
  """The system prompt the chat template of `model_type` adds to a conversation without one."""
  return _DEFAULT_SYSTEM[model_type]


@dataclasses.dataclass(frozen=True)
class Vision:
  """A placeholder for one image or video in a message, with its patch grid."""

  kind: str  # "image" or "video"
  grid_thw: tuple[int, int, int]

  def num_tokens(self, merge_size: int = 2) -> int:
    t, h, w = self.grid_thw
    return t * h * w // (merge_size * merge_size)


Content = list[str | Vision]


@dataclasses.dataclass(frozen=True)
class Message:
  role: str  # "system", "user" or "assistant"
  content: Content


@dataclasses.dataclass(frozen=True)
class Tokens:
  input_ids: np.ndarray  # int32 [L]
  loss_mask: np.ndarray  # int32 [L], 1 on assistant tokens


def _pad_token(kind: str) -> str:
  if kind not in ("image", "video"):
    raise ValueError(f"unknown vision kind {kind!r}")
  return tok.IMAGE_PAD if kind == "image" else tok.VIDEO_PAD


def _pieces(messages: list[Message], add_generation_prompt: bool, merge_size: int):
  """The template as a flat list of (text, trainable) and (special token, count, trainable)."""
  pieces = []
  for message in messages:
    trainable = message.role == "assistant"
    pieces += [(tok.IM_START, 1, False), (message.role + "\n", False)]
    for part in message.content:
      if isinstance(part, Vision):
        # Vision tokens are inputs, never targets.
        pieces += [
          (tok.VISION_START, 1, False),
          (_pad_token(part.kind), part.num_tokens(merge_size), False),
          (tok.VISION_END, 1, False),
        ]
      else:
        pieces.append((part, trainable))
    pieces += [(tok.IM_END, 1, trainable), ("\n", False)]
  if add_generation_prompt:
    pieces += [(tok.IM_START, 1, False), ("assistant\n", False)]
  return pieces


def render(
  messages: list[Message], add_generation_prompt: bool = False, merge_size: int = 2
) -> str:
  """The template as text, vision pads expanded."""
  out = []
  for piece in _pieces(messages, add_generation_prompt, merge_size):
    out.append(piece[0] * piece[1] if len(piece) == 3 else piece[0])
  return "".join(out)


def tokenize(
  tokenizer: Tokenizer,
  messages: list[Message],
  add_generation_prompt: bool = False,
  merge_size: int = 2,
) -> Tokens:
  """Token ids of the rendered template and the assistant loss mask."""
  ids: list[np.ndarray] = []
  mask: list[np.ndarray] = []
  run: list[tuple[str, bool]] = []

  def flush():
    if not run:
      return
    text = "".join(t for t, _ in run)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    # A token is trainable when it starts inside a trainable stretch of the text.
    char_trainable = np.concatenate(
      [np.full(len(t), flag, bool) for t, flag in run] + [np.zeros(1, bool)]
    )
    starts = np.array([start for start, _ in encoding.offsets], np.int64)
    ids.append(np.asarray(encoding.ids, np.int32))
    mask.append(char_trainable[starts].astype(np.int32) if len(starts) else np.zeros(0, np.int32))
    run.clear()

  for piece in _pieces(messages, add_generation_prompt, merge_size):
    if len(piece) == 2:
      if piece[0]:
        run.append(piece)
      continue
    flush()
    token, count, trainable = piece
    ids.append(np.full(count, tok.token_id(tokenizer, token), np.int32))
    mask.append(np.full(count, int(trainable), np.int32))
  flush()
  return Tokens(np.concatenate(ids), np.concatenate(mask))
