"""Completions -> padded flat arrays for the reward kernels, read in bulk (host side).

`parse_batch` reads what parse.py's `parse_completion` reads, with the same functions,
straight into flat lists and arrays of numbers: no tuple per claim or box. Its fast path
is for a think whose claim boxes are all integers, as the training targets write them.

`_INT_CLAIM` is the claim regex with no `<` in the name or the time and boxes of four
JSON integers of at most 15 digits, spaces around them. The think is split at its
matches. Each match holds one `<obj>`, `</obj>`, `<t>`, `</t>` and one `<box>`, `</box>`
per unit, and no tag straddles its edges (a tag holds `<` only first; a match starts at
`<obj>` and ends with `</t>s`), so the think's tag counts (THINK_TAGS) are the matches'
plus those of the text between them, joined with a NUL that no tag holds. When that
text holds no `<obj>`, every `<obj>` starts a match and, as in claims.py's fast path
(whose argument holds for any box contents without `<` or `]`), the matches are the
claim regex's. Then the `\\[.*?\\]` matches of a run are its units (they hold no `]` nor
newline), each is valid JSON and four finite numbers, and float64 holds each integer
exactly: np.fromstring reads them all from their fields joined with commas. With every
claim time parsing too, no claim is dropped and no box left out. When the text between
the matches holds no `<t>` and the claim times are `[\\d.]+`, the think times are the
claim times; when it holds no `<box>`, the visual think boxes are the units. Anything
else goes through parse.py's per-box path. test_rewards_parse checks that both paths
read the same on adversarial text.

Arrays (`ParsedArrays`) are per completion [N] or flat over the batch with the owning
completion's index (claims [C], claim boxes [Q], think times [T], visual think boxes
[V]), each padded to a power-of-two bucket with a validity mask, so jit compiles once
per bucket and no claim is ever truncated.
"""

import dataclasses
import itertools
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from o3jax.grammar import THINK
from o3jax.rewards.claims import find_claims
from o3jax.rewards.parse import (
  BoxValues,
  Fields,
  block,
  read_claims,
  read_fields,
  read_think_boxes,
  read_times,
  tag_counts,
)

# A JSON integer of at most 15 digits (exact in float64), spaces around it.
_INT = r" *+-?+(?:0|[1-9][0-9]{0,14}+) *+"
# The claim regex less any `<` in the name or time, with integer boxes (module docstring).
_INT_CLAIM = re.compile(
  rf"<obj>[^<]*</obj>((?:<box>\[{_INT},{_INT},{_INT},{_INT}\]</box>)+)at<t>([^<]*)</t>s"
)
_TIME_TEXTS = re.compile(r"[\d.]*")  # TIME_RE's time characters


def bucket(n: int, minimum: int = 8) -> int:
  """Padded size: the next power of two, at least `minimum`."""
  return max(minimum, 1 << max(n - 1, 0).bit_length())


def choice_keys(choice: str | None) -> tuple[str | None, str | None]:
  """The gold letters g this stripped choice accepts, as one of g, g., (g), [g]."""
  if choice is None:
    return None, None
  if choice.endswith("."):
    return choice, choice[:-1]
  if len(choice) >= 2 and (choice[0], choice[-1]) in (("(", ")"), ("[", "]")):
    return choice, choice[1:-1]
  return choice, None


class ParsedArrays(NamedTuple):
  """Kernel input read from completions; numpy, padded (see module docstring)."""

  has_think: np.ndarray  # bool [N]
  has_answer: np.ndarray  # bool [N]
  balanced: np.ndarray  # bool [N]
  think_tags: np.ndarray  # int32 [N, 3]: <obj>, <t>, <box> counts inside think
  visual_grounded: np.ndarray  # bool [N]
  n_claims: np.ndarray  # int32 [N]
  n_times: np.ndarray  # int32 [N]
  span: np.ndarray  # float64 [N, 2]
  span_valid: np.ndarray  # bool [N]
  answer_box: np.ndarray  # float64 [N, 4]
  answer_box_valid: np.ndarray  # bool [N]
  choice: np.ndarray  # int32 [N, 4]: ids of choice_keys(choice) + choice_keys(tg_choice)
  claim_sample: np.ndarray  # int32 [C]
  claim_time: np.ndarray  # float64 [C]
  claim_valid: np.ndarray  # bool [C]
  box_claim: np.ndarray  # int32 [Q], into the claim axis
  box: np.ndarray  # float64 [Q, 4] xyxy pixels
  box_valid: np.ndarray  # bool [Q]
  time_sample: np.ndarray  # int32 [T]
  time: np.ndarray  # float64 [T]
  time_valid: np.ndarray  # bool [T]
  vbox_sample: np.ndarray  # int32 [V]
  vbox: np.ndarray  # float64 [V, 4]
  vbox_valid: np.ndarray  # bool [V]


@dataclasses.dataclass(frozen=True)
class ParsedBatch:
  arrays: ParsedArrays
  choice_ids: dict[str, int]  # interned choice strings; -1 in `choice` is none
  answers: list[str]  # answer text of each completion (ROUGE reads it)


class _Reader:
  """Reads completions in order: their Fields, and per completion counts and flat
  values of claims, claim boxes, think times and think boxes (box coordinates in one
  array per completion)."""

  def __init__(self):
    self.n_claims, self.claim_time, self.n_boxes, self.box = [], [], [], []
    self.n_times, self.time, self.n_vboxes, self.vbox = [], [], [], []

  def read(self, text: str, visual: bool) -> Fields:
    think = block(text, THINK)
    pieces = _INT_CLAIM.split(think or "")  # outside, (run, time, outside) per match
    runs, time_texts = pieces[1::3], pieces[2::3]
    n_units = list(map(str.count, runs, itertools.repeat("<box>")))
    outside = tag_counts("\0".join(pieces[::3]))
    k, u = len(runs), sum(n_units)  # each match holds <obj>, </obj>, <t>, </t> once
    fields = read_fields(
      text,
      think,
      (
        outside[0] + k,
        outside[1] + k,
        outside[2] + k,
        outside[3] + k,
        outside[4] + u,
        outside[5] + u,
      ),
    )
    think = think or ""
    numbers = claim_times = None
    if outside[0] == 0:  # every <obj> starts a match: they are all the claims
      units = "".join(runs)[len("<box>[") : -len("]</box>")]
      numbers = np.fromstring(units.replace("]</box><box>[", ","), np.int64, sep=",")
      try:
        claim_times = list(map(float, map(str.strip, time_texts)))
      except ValueError:  # a claim to drop
        pass
    boxes = BoxValues()
    if claim_times is not None:  # fast path: no claim dropped, no box left out
      self.n_claims.append(k)
      self.claim_time += claim_times
      self.n_boxes += n_units
      self.box.append(numbers)
    else:
      claims = read_claims(find_claims(think), boxes)
      self.n_claims.append(len(claims))
      self.claim_time += [time for _, time, _ in claims]
      self.n_boxes += [len(claim_boxes) for _, _, claim_boxes in claims]
      self.box.append(np.array([b for _, _, claim_boxes in claims for b in claim_boxes]))

    every_time_a_claims = outside[2] == 0 and _TIME_TEXTS.fullmatch("".join(time_texts))
    if claim_times is not None and every_time_a_claims:
      times = claim_times  # each <t> is a claim's `at<t>T</t>s` with T `[\d.]+`
    else:
      times = read_times(think)
    self.n_times.append(len(times))
    self.time += times

    if not visual:
      self.n_vboxes.append(0)
    elif numbers is not None and outside[4] == 0:  # every <box> is a claim's
      self.n_vboxes.append(u)
      self.vbox.append(numbers)
    else:
      vboxes = read_think_boxes(think, boxes)
      self.n_vboxes.append(len(vboxes))
      self.vbox.append(np.array(vboxes))
    return fields


def _stacked(chunks: list[np.ndarray]) -> np.ndarray:
  """Box coordinate chunks as one float64 [k, 4] array."""
  return np.concatenate([np.zeros(0)] + [c.ravel() for c in chunks]).reshape(-1, 4)


def _padded(values, size: int, dtype, width: int = 0, fill=0) -> np.ndarray:
  shape = (size, width) if width else (size,)
  out = np.full(shape, fill, dtype)
  if len(values):
    out[: len(values)] = np.asarray(values, dtype).reshape((len(values),) + shape[1:])
  return out


def _owners(counts: list[int], size: int, fill: int) -> np.ndarray:
  """Owner index of each flat entry ([sum(counts)] padded to size with fill)."""
  return _padded(np.repeat(np.arange(len(counts)), counts), size, np.int32, fill=fill)


def _valid(n: int, size: int) -> np.ndarray:
  return np.arange(size) < n


def parse_batch(
  texts: Sequence[str], visual: Sequence[bool] | None = None, n_pad: int | None = None
) -> ParsedBatch:
  """Read completions into padded arrays (N padded to n_pad or a bucket).

  visual: per completion, whether its think boxes are read (only visual QA scores
  them); all by default.
  """
  reader = _Reader()
  fields = [reader.read(text, visual is None or visual[i]) for i, text in enumerate(texts)]
  return _pack(fields, reader, bucket(len(texts)) if n_pad is None else n_pad)


def _pack(fields: list[Fields], flat: _Reader, n_pad: int) -> ParsedBatch:
  """Stack the fields and the reader's flat values into padded arrays."""
  n = len(fields)
  keys = [k for f in fields for k in choice_keys(f.choice) + choice_keys(f.tg_choice)]
  unique = dict.fromkeys(keys)
  unique.pop(None, None)
  ids = dict(zip(unique, range(len(unique))))  # interned choice strings
  choice = np.fromiter(map({**ids, None: -1}.__getitem__, keys), np.int32, len(keys))
  boxes, vboxes = _stacked(flat.box), _stacked(flat.vbox)
  c, q, t, v = (bucket(len(x)) for x in (flat.claim_time, boxes, flat.time, vboxes))
  arrays = ParsedArrays(
    has_think=_padded([f.has_think for f in fields], n_pad, bool),
    has_answer=_padded([f.has_answer for f in fields], n_pad, bool),
    balanced=_padded([f.balanced for f in fields], n_pad, bool),
    think_tags=_padded([f.think_tags for f in fields], n_pad, np.int32, 3),
    visual_grounded=_padded([f.visual_grounded for f in fields], n_pad, bool),
    n_claims=_padded(flat.n_claims, n_pad, np.int32),
    n_times=_padded(flat.n_times, n_pad, np.int32),
    span=_padded([f.span or (0.0, 0.0) for f in fields], n_pad, np.float64, 2),
    span_valid=_padded([f.span is not None for f in fields], n_pad, bool),
    answer_box=_padded([f.answer_box or (0.0,) * 4 for f in fields], n_pad, np.float64, 4),
    answer_box_valid=_padded([f.answer_box is not None for f in fields], n_pad, bool),
    choice=np.pad(choice.reshape(n, 4), ((0, n_pad - n), (0, 0)), constant_values=-1),
    # Padding entries belong to the last owner so owner indices stay sorted.
    claim_sample=_owners(flat.n_claims, c, n_pad - 1),
    claim_time=_padded(flat.claim_time, c, np.float64),
    claim_valid=_valid(len(flat.claim_time), c),
    box_claim=_owners(flat.n_boxes, q, c - 1),
    box=_padded(boxes, q, np.float64, 4),
    box_valid=_valid(len(boxes), q),
    time_sample=_owners(flat.n_times, t, n_pad - 1),
    time=_padded(flat.time, t, np.float64),
    time_valid=_valid(len(flat.time), t),
    vbox_sample=_owners(flat.n_vboxes, v, n_pad - 1),
    vbox=_padded(vboxes, v, np.float64, 4),
    vbox_valid=_valid(len(vboxes), v),
  )
  return ParsedBatch(arrays, ids, [f.choice for f in fields])
