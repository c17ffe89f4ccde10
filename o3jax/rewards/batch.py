"""Completions -> padded flat arrays for the reward kernels, read in bulk (host side).

`parse_batch` reads what parse.py's `parse_completion` reads, with the same functions,
straight into flat lists of numbers: no tuple per claim or box. Its fast path is for
the think texts whose claim boxes are all plain: the box runs, joined, are `<box>[a,b,c,d]
</box>` units with fields of at most 24 of the characters `0-9 . - space` (`_PLAIN_RUNS`).
Then each claim's boxes are its units (the `\\[.*?\\]` matches of its run hold no `]` nor
newline), and all of them are decoded by one json.loads of their fields joined with
commas. That succeeds exactly when every field is a JSON number, that is when every box
is valid JSON; then every box is four numbers, finite (24 characters), so none is
dropped, and json reads each number as it does inside its box. When every claim time
parses too, no claim is dropped. When, further, the think holds as many `<box>` as the
claims' runs, its visual think boxes are the same units. Any other think goes through
parse.py's per-box path. The equality is tested on adversarial text (test_rewards_parse).

Arrays (`ParsedArrays`) are per completion [N] or flat over the batch with the owning
completion's index (claims [C], claim boxes [Q], think times [T], visual think boxes
[V]), each padded to a power-of-two bucket with a validity mask, so jit compiles once
per bucket and no claim is ever truncated.
"""

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from o3jax.rewards.claims import find_claims
from o3jax.rewards.parse import BoxValues, read_claims, read_fields, read_think_boxes

_FIELD = r"[0-9. -]{1,24}"
_PLAIN_RUNS = re.compile(rf"(?:<box>\[{_FIELD},{_FIELD},{_FIELD},{_FIELD}\]</box>)*")


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


def _plain_numbers(runs: str) -> list | None:
    """The numbers of plain box runs (module docstring), flat; None for any other text."""
    if _PLAIN_RUNS.fullmatch(runs) is None:
        return None
    try:
        return json.loads("[" + runs.replace("<box>[", "").replace("]</box>", ",")[:-1] + "]")
    except ValueError:
        return None


class _Flat:
    """Per completion counts and flat values of claims, claim boxes and think boxes."""

    def __init__(self):
        self.n_claims, self.claim_time, self.n_boxes, self.box = [], [], [], []
        self.n_vboxes, self.vbox = [], []

    def add(self, think: str, box_count: int, visual: bool):
        found = find_claims(think)
        runs = [run for _, run, _ in found]
        numbers = _plain_numbers("".join(runs))
        times = None
        if numbers is not None:
            try:
                times = [float(time.strip()) for _, _, time in found]
            except ValueError:  # a claim to drop
                pass
        boxes = BoxValues()
        if times is not None:
            self.n_claims.append(len(found))
            self.claim_time += times
            self.n_boxes += [run.count("<box>") for run in runs]
            self.box += numbers
        else:
            claims = read_claims(found, boxes)
            self.n_claims.append(len(claims))
            self.claim_time += [time for _, time, _ in claims]
            self.n_boxes += [len(claim_boxes) for _, _, claim_boxes in claims]
            self.box += [v for _, _, claim_boxes in claims for b in claim_boxes for v in b]
        if not visual:
            self.n_vboxes.append(0)
        elif numbers is not None and len(numbers) == 4 * box_count:  # every <box> in a claim
            self.n_vboxes.append(box_count)
            self.vbox += numbers
        else:
            vboxes = read_think_boxes(think, boxes)
            self.n_vboxes.append(len(vboxes))
            self.vbox += [v for b in vboxes for v in b]


def _padded(values, size: int, dtype, width: int = 0, fill=0) -> np.ndarray:
    shape = (size, width) if width else (size,)
    out = np.full(shape, fill, dtype)
    if len(values):
        out[:len(values)] = np.asarray(values, dtype).reshape((len(values),) + shape[1:])
    return out


def _owners(counts: list[int], size: int, fill: int) -> np.ndarray:
    """Owner index of each flat entry ([sum(counts)] padded to size with fill)."""
    return _padded(np.repeat(np.arange(len(counts)), counts), size, np.int32, fill=fill)


def _valid(n: int, size: int) -> np.ndarray:
    return np.arange(size) < n


def parse_batch(texts: Sequence[str], visual: Sequence[bool] | None = None,
                n_pad: int | None = None) -> ParsedBatch:
    """Read completions into padded arrays (N padded to n_pad or a bucket).

    visual: per completion, whether its think boxes are read (only visual QA scores
    them); all by default.
    """
    n = len(texts)
    n_pad = bucket(n) if n_pad is None else n_pad
    fields, flat = [], _Flat()
    for i, text in enumerate(texts):
        think, f = read_fields(text)
        fields.append(f)
        flat.add(think or "", f.think_tags[2], visual is None or visual[i])

    ids: dict[str, int] = {}

    def intern(key: str | None) -> int:
        return -1 if key is None else ids.setdefault(key, len(ids))

    choice = [[intern(k) for k in choice_keys(f.choice) + (
        choice_keys(f.tg_choice) if f.tg_choice is not None else (None, None))] for f in fields]
    n_times = [len(f.times) for f in fields]
    times = [t for f in fields for t in f.times]
    boxes = np.asarray(flat.box, np.float64).reshape(-1, 4)
    vboxes = np.asarray(flat.vbox, np.float64).reshape(-1, 4)
    c, q, t, v = (bucket(len(x)) for x in (flat.claim_time, boxes, times, vboxes))
    arrays = ParsedArrays(
        has_think=_padded([f.has_think for f in fields], n_pad, bool),
        has_answer=_padded([f.has_answer for f in fields], n_pad, bool),
        balanced=_padded([f.balanced for f in fields], n_pad, bool),
        think_tags=_padded([f.think_tags for f in fields], n_pad, np.int32, 3),
        visual_grounded=_padded([f.visual_grounded for f in fields], n_pad, bool),
        n_claims=_padded(flat.n_claims, n_pad, np.int32),
        n_times=_padded(n_times, n_pad, np.int32),
        span=_padded([f.span or (0.0, 0.0) for f in fields], n_pad, np.float64, 2),
        span_valid=_padded([f.span is not None for f in fields], n_pad, bool),
        answer_box=_padded([f.answer_box or (0.0,) * 4 for f in fields], n_pad, np.float64, 4),
        answer_box_valid=_padded([f.answer_box is not None for f in fields], n_pad, bool),
        choice=np.pad(np.asarray(choice, np.int32).reshape(n, 4), ((0, n_pad - n), (0, 0)),
                      constant_values=-1),
        # Padding entries belong to the last owner so owner indices stay sorted.
        claim_sample=_owners(flat.n_claims, c, n_pad - 1),
        claim_time=_padded(flat.claim_time, c, np.float64),
        claim_valid=_valid(len(flat.claim_time), c),
        box_claim=_owners(flat.n_boxes, q, c - 1),
        box=_padded(boxes, q, np.float64, 4),
        box_valid=_valid(len(boxes), q),
        time_sample=_owners(n_times, t, n_pad - 1),
        time=_padded(times, t, np.float64),
        time_valid=_valid(len(times), t),
        vbox_sample=_owners(flat.n_vboxes, v, n_pad - 1),
        vbox=_padded(vboxes, v, np.float64, 4),
        vbox_valid=_valid(len(vboxes), v),
    )
    return ParsedBatch(arrays, ids, [f.choice for f in fields])
