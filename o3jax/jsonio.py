"""Strict JSON for every file and line o3jax writes.

JSON has no NaN or infinity: a non-finite number is written as null (V-STaR's LGM is
infinite when a component is 1; a diverged loss is NaN). numpy scalars become python
numbers and -0.0 becomes 0.0, so what is written reads back the same everywhere.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(value: Any) -> Any:
  """`value` with every non-finite float replaced by None (dicts, lists, tuples walked)."""
  if isinstance(value, dict):
    return {k: finite_or_none(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_none(v) for v in value]
  if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy / jax scalar
    value = value.item()
  if isinstance(value, float):
    return value + 0.0 if math.isfinite(value) else None  # + 0.0: no -0.0
  return value


def dumps(value: Any, **kwargs) -> str:
  """json.dumps of `value` after `finite_or_none`; raises rather than write NaN."""
  return json.dumps(finite_or_none(value), allow_nan=False, **kwargs)


def dump(value: Any, path: str, indent: int | None = 1) -> None:
  """`value` as strict JSON in the file `path` (UTF-8)."""
  with open(path, "w", encoding="utf-8") as f:
    f.write(dumps(value, indent=indent))
