"""Completion text -> flat arrays for the reward kernels (host side; never raises).

Reading of SPEC.md section 4, first match everywhere:
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

Arrays (`ParsedArrays`) are per completion [N] or flat over the batch with the owning
completion's index (claims [C], claim boxes [Q], think times [T], visual think boxes
[V]), each padded to a power-of-two bucket with a validity mask, so jit compiles once
per bucket and no claim is ever truncated.
"""

import dataclasses
import json
import math
import re
from typing import NamedTuple

import numpy as np

from o3jax.rewards.claims import find_claims

THINK = ("<think>", "</think>")
ANSWER = ("<answer>", "</answer>")
TIME_RE = re.compile(r"<t>([\d.]+)</t>s")
SPAN_RE = re.compile(r"<t>(\d+\.?\d*)</t>s to <t>(\d+\.?\d*)</t>s")
BOX_RE = re.compile(r"<box>(\[.*?\])</box>")
CLAIM_BOX_RE = re.compile(r"\[.*?\]")
VISUAL_GROUNDING_RE = re.compile(r"<obj>(\w+)</obj><box>(\[.*?\])</box>")
CORRECT_OPTION = "Correct Option:"

Box = tuple[float, float, float, float]
_INVALID_JSON = object()


def block(text: str, tags: tuple[str, str]) -> str | None:
    """Group 1 of the first match of `open(.*?)close` (DOTALL), or None."""
    start = text.find(tags[0])
    if start < 0:
        return None
    end = text.find(tags[1], start + len(tags[0]))
    return None if end < 0 else text[start + len(tags[0]):end]


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
    claims: tuple[tuple[str, float, tuple[Box, ...]], ...]  # (name, time, 4-number boxes)
    times: tuple[float, ...]  # think times; empty when one failed to parse
    think_boxes: tuple[Box, ...]  # visual QA
    span: tuple[float, float] | None
    answer_box: Box | None
    choice: str  # MCQ: the answer text
    tg_choice: str | None  # temporal MCQ: after `Correct Option:`; None if absent


def _claims(think: str, box) -> tuple:
    claims = []
    for name, run, time_text in find_claims(think):
        time = _float(time_text.strip())
        values = [box(b) for b in CLAIM_BOX_RE.findall(run)]
        if time is None or _INVALID_JSON in values:
            continue
        claims.append((name.strip(), time, tuple(filter(None, values))))  # drop non-boxes
    return tuple(claims)


def _times(think: str) -> tuple[float, ...]:
    times = [_float(t) for t in TIME_RE.findall(think)]
    return () if None in times else tuple(times)


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


def parse_completion(text: str) -> ParsedCompletion:
    think = block(text, THINK)
    answer_block = block(text, ANSWER)
    answer = "" if answer_block is None else answer_block.strip()
    balanced = (text.count(THINK[0]) == text.count(THINK[1])
                and text.count(ANSWER[0]) == text.count(ANSWER[1]))
    think_tags = (0, 0, 0)
    if think is not None:
        think_tags = (think.count("<obj>"), think.count("<t>"), think.count("<box>"))
        balanced = (balanced and think_tags[0] == think.count("</obj>")
                    and think_tags[1] == think.count("</t>")
                    and think_tags[2] == think.count("</box>"))
    think_text = think or ""
    options = answer.split(CORRECT_OPTION)
    values: dict[str, object] = {}  # claim boxes and think boxes are mostly the same text

    def box(box_text: str):
        if box_text not in values:
            values[box_text] = box_value(box_text)
        return values[box_text]

    claims = _claims(think_text, box)
    think_boxes = tuple(b for b in map(box, BOX_RE.findall(think_text))
                        if b is not None and b is not _INVALID_JSON)
    return ParsedCompletion(
        has_think=think is not None,
        has_answer=answer_block is not None,
        balanced=balanced,
        think_tags=think_tags,
        visual_grounded=VISUAL_GROUNDING_RE.search(text) is not None,
        claims=claims,
        times=_times(think_text),
        think_boxes=think_boxes,
        span=_span(answer),
        answer_box=_first_box(answer),
        choice=answer,
        tg_choice=options[1].strip() if len(options) > 1 else None,
    )


def bucket(n: int, minimum: int = 8) -> int:
    """Padded size: the next power of two, at least `minimum`."""
    return max(minimum, 1 << max(n - 1, 0).bit_length())


def choice_keys(choice: str) -> tuple[str, str | None]:
    """The gold letters g this stripped choice accepts, as one of g, g., (g), [g]."""
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
    claim_name: np.ndarray  # int32 [C], into ParsedBatch.object_names
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
    object_names: list[str]


def _padded(values, size: int, dtype, width: int = 0, fill=0) -> np.ndarray:
    shape = (size, width) if width else (size,)
    out = np.full(shape, fill, dtype)
    if len(values):
        out[:len(values)] = np.asarray(values, dtype).reshape((len(values),) + shape[1:])
    return out


def _valid(n: int, size: int) -> np.ndarray:
    return np.arange(size) < n


def pack(parsed: list[ParsedCompletion], n_pad: int | None = None) -> ParsedBatch:
    """Stack parsed completions into padded arrays (N padded to n_pad or a bucket)."""
    n = len(parsed)
    n_pad = bucket(n) if n_pad is None else n_pad
    ids: dict[str, int] = {}
    names: dict[str, int] = {}

    def intern(table: dict[str, int], key: str | None) -> int:
        return -1 if key is None else table.setdefault(key, len(table))

    choice = [[intern(ids, k) for k in choice_keys(p.choice) + (
        choice_keys(p.tg_choice) if p.tg_choice is not None else (None, None))] for p in parsed]
    claims = [claim for p in parsed for claim in p.claims]
    claim_sample = np.repeat(np.arange(n), [len(p.claims) for p in parsed])
    claim_time = [time for _, time, _ in claims]
    claim_name = [intern(names, name) for name, _, _ in claims]
    box_claim = np.repeat(np.arange(len(claims)), [len(boxes) for _, _, boxes in claims])
    boxes = [box for _, _, claim_boxes in claims for box in claim_boxes]
    time_sample = np.repeat(np.arange(n), [len(p.times) for p in parsed])
    times = [time for p in parsed for time in p.times]
    vbox_sample = np.repeat(np.arange(n), [len(p.think_boxes) for p in parsed])
    vboxes = [box for p in parsed for box in p.think_boxes]

    c, q, t, v = (bucket(len(x)) for x in (claim_sample, boxes, times, vboxes))
    arrays = ParsedArrays(
        has_think=_padded([p.has_think for p in parsed], n_pad, bool),
        has_answer=_padded([p.has_answer for p in parsed], n_pad, bool),
        balanced=_padded([p.balanced for p in parsed], n_pad, bool),
        think_tags=_padded([p.think_tags for p in parsed], n_pad, np.int32, 3),
        visual_grounded=_padded([p.visual_grounded for p in parsed], n_pad, bool),
        n_claims=_padded([len(p.claims) for p in parsed], n_pad, np.int32),
        n_times=_padded([len(p.times) for p in parsed], n_pad, np.int32),
        span=_padded([p.span or (0.0, 0.0) for p in parsed], n_pad, np.float64, 2),
        span_valid=_padded([p.span is not None for p in parsed], n_pad, bool),
        answer_box=_padded([p.answer_box or (0.0,) * 4 for p in parsed], n_pad, np.float64, 4),
        answer_box_valid=_padded([p.answer_box is not None for p in parsed], n_pad, bool),
        choice=np.pad(np.asarray(choice, np.int32).reshape(n, 4), ((0, n_pad - n), (0, 0)),
                      constant_values=-1),
        # Padding entries belong to the last owner so owner indices stay sorted.
        claim_sample=_padded(claim_sample, c, np.int32, fill=n_pad - 1),
        claim_time=_padded(claim_time, c, np.float64),
        claim_name=_padded(claim_name, c, np.int32),
        claim_valid=_valid(len(claim_sample), c),
        box_claim=_padded(box_claim, q, np.int32, fill=c - 1),
        box=_padded(boxes, q, np.float64, 4),
        box_valid=_valid(len(boxes), q),
        time_sample=_padded(time_sample, t, np.int32, fill=n_pad - 1),
        time=_padded(times, t, np.float64),
        time_valid=_valid(len(times), t),
        vbox_sample=_padded(vbox_sample, v, np.int32, fill=n_pad - 1),
        vbox=_padded(vboxes, v, np.float64, 4),
        vbox_valid=_valid(len(vboxes), v),
    )
    return ParsedBatch(arrays, ids, list(names))
