"""Completion parsing time against length, on unclosed boxes (issue 22).

    PYTHONPATH=. python scripts/bench_parse.py

For n = 1000 .. 8000 repeats of `<obj>a</obj><box>[` (18 n characters in one line),
prints the median time of `parse_completion` and, as the baseline measured in the same
run, of the two `re` searches it replaced (`BOX_RE.findall`, `VISUAL_GROUNDING_RE.search`),
which are quadratic; linear parsing keeps time / n flat.
"""

import statistics
import time

from o3jax.grammar import BOX_RE, VISUAL_GROUNDING_RE
from o3jax.rewards.parse import parse_completion


def median_time(fn, text: str, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(text)
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  print(f"{'n':>6} {'chars':>8} {'parse s':>9} {'parse us/n':>11} {'re s':>8} {'re/parse':>9}")
  for n in (1000, 2000, 4000, 8000):
    text = f"<think>{'<obj>a</obj><box>[' * n}</think><answer>A</answer>"
    parse = median_time(parse_completion, text, 5)
    regex = median_time(
      lambda t: (BOX_RE.findall(t), VISUAL_GROUNDING_RE.search(t)), text, 1 if n > 2000 else 3
    )
    print(f"{n:>6} {len(text):>8} {parse:>9.4f} {parse / n * 1e6:>11.2f} {regex:>8.2f} "
          f"{regex / parse:>9.0f}")  # fmt: skip


if __name__ == "__main__":
  main()
