"""Linear-time matcher for the grounded-claim regex of docs/reference.md section 1.

The claim regex

    <obj>(.*?)</obj>((?:<box>\\[.*?\\]</box>)+)at<t>(.*?)</t>s      (re.DOTALL)

backtracks exponentially in Python's `re` when a run of boxes is not followed by
`at<t>...</t>s` (30 boxes take minutes: every split of the run into `<box>[..]</box>`
units is tried). `find_claims` returns exactly what `re.finditer` returns (same groups),
in O(n log n).

Why it is exact. The box run after `</obj>` (at a) must start with `<box>[`; since `.*?`
may swallow anything, tags included, it can end at any `]</box>` ending at or after
a + 13. The engine's search over run ends is depth first: from an end e it first tries
one more unit (only if `<box>[` follows e, and then every later end is reachable, as no
`]</box>` can end within 13 characters of e), and only then the tail `at<t>` at e,
which cannot match where `<box>[` follows. So ends are tried in increasing order and
the run ends at the first `]</box>` followed by `at<t>` with a `</t>s` after it. The
object name's `.*?` tries the `</obj>` occurrences in order; if the first `<obj>` of
the remaining text has no match, no later `<obj>` has one either.

Fast path. Well-formed text is read with `_SIMPLE`, the claim regex with no `<` in the
name, the box contents (nor `]`) or the time, which cannot backtrack. Each of its
matches holds exactly one `<obj>`, at its start, so when it matches as many times as
`<obj>` occurs, every `<obj>` starts one of its matches. The claim regex, tried at
such an `<obj>`, takes the first `</obj>` (the name has no `<`), then the shortest box
unit each time (the contents hold no `]`), as many units as follow one another, and the
first `</t>s` (the time has no `<`): the same match. Its search from the end of one match
starts at the next `<obj>`, so both give the same list. Otherwise the matcher below runs.
"""

import bisect
import re

_SIMPLE = re.compile(r"<obj>([^<]*)</obj>((?:<box>\[[^<\]]*\]</box>)+)at<t>([^<]*)</t>s")
_EXIT = re.compile(r"\]</box>(?=at<t>)")
_OBJ_CLOSE = re.compile(r"</obj>")
_UNIT_MIN = len("<box>[]</box>")


def find_claims(text: str) -> list[tuple[str, str, str]]:
  """(name, box run, time) for each match of the claim regex, as re.finditer gives."""
  simple = _SIMPLE.findall(text)
  return simple if len(simple) == text.count("<obj>") else linear_claims(text)


def linear_claims(text: str) -> list[tuple[str, str, str]]:
  """find_claims without the fast path (exact on any text)."""
  start = text.find("<obj>")
  if start < 0:
    return []
  last_close = text.rfind("</t>s")
  exits = [m.end() for m in _EXIT.finditer(text)]
  del exits[bisect.bisect_right(exits, last_close - len("at<t>")) :]  # no `</t>s` after

  def run_end(after_obj: int) -> int | None:
    if not text.startswith("<box>[", after_obj):
      return None
    k = bisect.bisect_left(exits, after_obj + _UNIT_MIN)
    return exits[k] if k < len(exits) else None

  closes = [m.start() for m in _OBJ_CLOSE.finditer(text)]
  ends = [run_end(k + len("</obj>")) for k in closes]
  next_good: list[int | None] = [None] * (len(closes) + 1)  # first close >= i that matches
  for i in range(len(closes) - 1, -1, -1):
    next_good[i] = i if ends[i] is not None else next_good[i + 1]

  claims = []
  while start >= 0:
    good = next_good[bisect.bisect_left(closes, start + len("<obj>"))]
    if good is None:  # later starts see a subset of these closes: none can match
      break
    close, end = closes[good], ends[good]
    time_end = text.find("</t>s", end + len("at<t>"))
    claims.append(
      (
        text[start + len("<obj>") : close],
        text[close + len("</obj>") : end],
        text[end + len("at<t>") : time_end],
      )
    )
    start = text.find("<obj>", time_end + len("</t>s"))
  return claims
