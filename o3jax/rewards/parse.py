"""Completion text -> the values the rewards read (host side; never raises).

Reading of docs/reference.md section 4, first match everywhere (the patterns live in o3jax.grammar):
- think = group 1 of `<think>(.*?)</think>` (DOTALL); the answer block is
  `<answer>.*?</answer>`; answer text = `<answer>\\s*(.*?)\\s*</answer>` stripped, "" when
  absent. Both are found with str.find, which gives the same first match as the regex
  without its quadratic cost on unclosed tags.
- Claims: the claim regex (see claims.py) inside think. A claim's boxes are the
  `\\[.*?\\]` matches (no DOTALL) of its box run, as in the reference code. The claim is
  dropped when `float(time.strip())` fails or one box is not valid JSON (Python's
  json.loads; nesting too deep to decode counts as invalid). `nan`/`inf` times parse (as
  in the reference) and then gate to no key frame. A box that is JSON but not four
  finite numbers (bool is not a number) has IoU 0, so it is left out of the box list:
  the claim keeps its place in the denominator.
- Think times: `<t>([\\d.]+)</t>s` in think; one that float() rejects (`1.2.3`) leaves
  no times, which zeroes both thk_temporal terms.
- Answer span: `<t>(\\d+\\.?\\d*)</t>s to <t>(\\d+\\.?\\d*)</t>s`, kept only if end >= start.
  Answer box: the first `<box>(\\[.*?\\])</box>` of the answer, kept if four finite
  numbers. Visual-QA think boxes: every `<box>(\\[.*?\\])</box>` in think holding four
  finite numbers.
- MCQ choice: the answer text; temporal MCQ: the text between the first
  `Correct Option:` and the next one (the reference's `split(...)[1]`), stripped.

`parse_completion` reads one completion into python values; batch.py reads a batch into
the kernels' arrays with the same functions and a fast path for integer boxes.
"""

import dataclasses
import json
import math
from typing import NamedTuple

from o3jax.grammar import (
  ANSWER,
  BOX_RE,
  CLAIM_BOX_RE,
  CORRECT_OPTION,
  SPAN_RE,
  THINK,
  TIME_RE,
  VISUAL_GROUNDING_RE,
)
from o3jax.rewards.claims import find_claims

Box = tuple[float, float, float, float]
_INVALID_JSON = object()


def block(text: str, tags: tuple[str, str]) -> str | None:
  """Group 1 of the first match of `open(.*?)close` (DOTALL), or None."""
  start = text.find(tags[0])
  if start < 0:
    return None
  end = text.find(tags[1], start + len(tags[0]))
  return None if end < 0 else text[start + len(tags[0]) : end]


def answer_text(text: str) -> str:
  """`<answer>\\s*(.*?)\\s*</answer>` group 1, stripped; "" when there is none."""
  inner = block(text, ANSWER)
  return "" if inner is None else inner.strip()


_DECODER = json.JSONDecoder()
_JSON_NUMBERS = {int, float}  # the types json gives numbers; bool is none of them


def four_numbers(value) -> Box | None:
  """A JSON value as a box if it is a list of four finite numbers, else None."""
  if type(value) is not list or len(value) != 4 or not set(map(type, value)) <= _JSON_NUMBERS:
    return None
  try:
    box = tuple(map(float, value))
  except OverflowError:  # an int beyond float range
    return None
  return box if all(map(math.isfinite, box)) else None


def box_value(text: str):
  """json.loads(text) read as a box, for `[...]` text as the box regexes capture it:
  a Box, None (valid JSON but not four finite numbers) or _INVALID_JSON."""
  try:  # json.loads without its whitespace scans, which `[...]` text does not need
    value, end = _DECODER.raw_decode(text)
  except Exception:  # JSONDecodeError, RecursionError on deep nesting, int digit limit
    return _INVALID_JSON
  return four_numbers(value) if end == len(text) else _INVALID_JSON


def _float(text: str) -> float | None:
  try:
    return float(text)
  except ValueError:
    return None


@dataclasses.dataclass(frozen=True)
class ParsedCompletion:
  has_think: bool
  has_answer: bool
  balanced: bool  # tag counts pair up (format reward)
  think_tags: tuple[int, int, int]  # counts of <obj>, <t>, <box> inside think
  visual_grounded: bool  # `<obj>(\w+)</obj><box>(\[.*?\])</box>` anywhere
  times: tuple[float, ...]  # think times; empty when one failed to parse
  span: tuple[float, float] | None
  answer_box: Box | None
  choice: str  # MCQ: the answer text
  tg_choice: str | None  # temporal MCQ: after `Correct Option:`; None if absent
  claims: tuple[tuple[str, float, tuple[Box, ...]], ...]  # (name, time, 4-number boxes)
  think_boxes: tuple[Box, ...]  # visual QA


class Fields(NamedTuple):
  """A completion's values but its think times, claims and think boxes."""

  has_think: bool
  has_answer: bool
  balanced: bool
  think_tags: tuple[int, int, int]
  visual_grounded: bool
  span: tuple[float, float] | None
  answer_box: Box | None
  choice: str
  tg_choice: str | None


def read_times(think: str) -> tuple[float, ...]:
  """The think times; none when one fails to parse."""
  try:
    return tuple(map(float, TIME_RE.findall(think)))
  except ValueError:  # `1.2.3`
    return ()


def _span(answer: str) -> tuple[float, float] | None:
  match = SPAN_RE.search(answer)
  if match is None:
    return None
  start, end = _float(match.group(1)), _float(match.group(2))
  if start is None or end is None or end < start:
    return None
  return start, end


def _first_box(text: str) -> Box | None:
  match = BOX_RE.search(text)
  value = None if match is None else box_value(match.group(1))
  return None if value is _INVALID_JSON else value


# Tags whose counts inside think the format reward reads, each opening before its closing.
THINK_TAGS = ("<obj>", "</obj>", "<t>", "</t>", "<box>", "</box>")


def tag_counts(think: str) -> tuple[int, ...]:
  """The number of times each of THINK_TAGS occurs in think."""
  return tuple(map(think.count, THINK_TAGS))


def read_fields(text: str, think: str | None, think_counts: tuple[int, ...]) -> Fields:
  """The fields of a completion, given its think text (None without a think block) and
  tag_counts of it."""
  answer_block = block(text, ANSWER)
  answer = "" if answer_block is None else answer_block.strip()
  balanced = text.count(THINK[0]) == text.count(THINK[1]) and text.count(ANSWER[0]) == text.count(
    ANSWER[1]
  )
  think_tags = (0, 0, 0)
  if think is not None:
    think_tags = think_counts[::2]  # <obj>, <t>, <box>
    balanced = balanced and think_tags == think_counts[1::2]
  options = answer.split(CORRECT_OPTION)
  return Fields(
    has_think=think is not None,
    has_answer=answer_block is not None,
    balanced=balanced,
    think_tags=think_tags,
    visual_grounded=VISUAL_GROUNDING_RE.search(text) is not None,
    span=_span(answer),
    answer_box=_first_box(answer),
    choice=answer,
    tg_choice=options[1].strip() if len(options) > 1 else None,
  )


class BoxValues(dict):
  """box_value per distinct `[...]` text (claim and think boxes are mostly the same)."""

  def __missing__(self, text: str):
    self[text] = value = box_value(text)
    return value


def read_claims(found: list[tuple[str, str, str]], boxes: BoxValues) -> list:
  """(name, time, 4-number boxes) of find_claims' claims, less those dropped."""
  claims = []
  for name, run, time_text in found:
    time = _float(time_text.strip())
    values = [boxes[b] for b in CLAIM_BOX_RE.findall(run)]
    if time is None or _INVALID_JSON in values:
      continue
    claims.append((name.strip(), time, tuple(filter(None, values))))  # drop non-boxes
  return claims


def read_think_boxes(think: str, boxes: BoxValues) -> list[Box]:
  """Every `<box>(\\[.*?\\])</box>` of think holding four finite numbers."""
  values = (boxes[b] for b in BOX_RE.findall(think))
  return [b for b in values if b is not None and b is not _INVALID_JSON]


def parse_completion(text: str) -> ParsedCompletion:
  think = block(text, THINK)
  think_text, boxes = think or "", BoxValues()
  return ParsedCompletion(
    **read_fields(text, think, tag_counts(think_text))._asdict(),
    times=read_times(think_text),
    claims=tuple(read_claims(find_claims(think_text), boxes)),
    think_boxes=tuple(read_think_boxes(think_text, boxes)),
  )
