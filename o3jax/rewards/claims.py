"""Linear-time matcher for the grounded-claim regex of SPEC.md section 1.

The claim regex

    <obj>(.*?)</obj>((?:<box>\\[.*?\\]</box>)+)at<t>(.*?)</t>s      (re.DOTALL)

backtracks exponentially in Python's `re` when a run of boxes is not followed by
`at<t>...</t>s` (30 boxes take minutes: every split of the run into `<box>[..]</box>`
units is tried). `find_claims` returns exactly what `re.finditer` returns (same spans,
same groups), in time linear in the text up to a log factor.

Why it is exact. After `</obj>` ends at position a, one box unit starting at p can end
at any `]</box>` that ends at or after p + 13 (`.*?` may swallow anything, tags
included); the engine tries those ends in increasing order and, greedy `+`, first tries
another unit from the end it reached, then the tail `at<t>(.*?)</t>s` there. That is a
post-order depth-first search whose subtree at an end e depends on e alone, so the first
end whose tail succeeds can be memoised per end, computed once from the back of the
text (`_first_exit`). The object name's `.*?` tries the `</obj>` occurrences in order;
if the first `<obj>` of the remaining text has no match, no later one has either.
"""

import bisect
import re

_BOX_END = re.compile(r"\]</box>")
_OBJ_CLOSE = re.compile(r"</obj>")
_UNIT_MIN = len("<box>[]</box>")


def _first_exit(text: str, ends: list[int]) -> list[int | None]:
    """first[j]: the run end found first by the search over ends[j:], or None."""
    last_close = text.rfind("</t>s")
    first: list[int | None] = [None] * (len(ends) + 1)
    for j in range(len(ends) - 1, -1, -1):
        e = ends[j]
        found = None
        if text.startswith("<box>[", e):  # greedy: one more unit from e first
            found = first[bisect.bisect_left(ends, e + _UNIT_MIN)]
        if found is None and text.startswith("at<t>", e) and last_close >= e + 5:
            found = e
        first[j] = found if found is not None else first[j + 1]
    return first


def find_claims(text: str) -> list[tuple[str, str, str]]:
    """(name, box run, time) for each match of the claim regex, as re.finditer gives."""
    start = text.find("<obj>")
    if start < 0:
        return []
    ends = [m.end() for m in _BOX_END.finditer(text)]
    first = _first_exit(text, ends)

    def run_end(after_obj: int) -> int | None:
        if not text.startswith("<box>[", after_obj):
            return None
        return first[bisect.bisect_left(ends, after_obj + _UNIT_MIN)]

    closes = [m.start() for m in _OBJ_CLOSE.finditer(text)]
    exits = [run_end(k + len("</obj>")) for k in closes]
    next_good: list[int | None] = [None] * (len(closes) + 1)  # first close >= i that matches
    for i in range(len(closes) - 1, -1, -1):
        next_good[i] = i if exits[i] is not None else next_good[i + 1]

    claims = []
    while start >= 0:
        good = next_good[bisect.bisect_left(closes, start + len("<obj>"))]
        if good is None:  # later starts see a subset of these closes: none can match
            break
        close, end = closes[good], exits[good]
        time_end = text.find("</t>s", end + len("at<t>"))
        claims.append((text[start + len("<obj>"):close], text[close + len("</obj>"):end],
                       text[end + len("at<t>"):time_end]))
        start = text.find("<obj>", time_end + len("</t>s"))
    return claims
