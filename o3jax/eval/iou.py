"""Host-side overlap measures for evaluation: temporal IoU of spans, IoU of xyxy boxes.

Plain python on single items (benchmarks hold a few thousand); the jitted, batched
versions used as rewards live in o3jax/rewards. Same formulas (docs/reference.md sections 4 and 6):
continuous coordinates, no +1, a degenerate union gives 0, a span whose end is before
its start gives 0.
"""

from __future__ import annotations

from o3jax.grammar import is_number


def temporal_iou(gold, pred) -> float:
  """tIoU of two [start, end] spans in seconds; 0 if pred is missing or end < start."""
  if pred is None:
    return 0.0
  (gs, ge), (ps, pe) = gold, pred
  if pe < ps:
    return 0.0
  inter = max(0.0, min(ge, pe) - max(gs, ps))
  union = max(ge, pe) - min(gs, ps)
  return inter / union if union > 0 else 0.0


def box_iou(gold, pred) -> float:
  """IoU of two [x1, y1, x2, y2] boxes; 0 if pred is not 4 finite numbers."""
  if not isinstance(pred, (list, tuple)) or len(pred) != 4 or not all(map(is_number, pred)):
    return 0.0
  gx1, gy1, gx2, gy2 = gold
  px1, py1, px2, py2 = pred
  inter = max(0.0, min(gx2, px2) - max(gx1, px1)) * max(0.0, min(gy2, py2) - max(gy1, py1))
  area_g = max(0.0, gx2 - gx1) * max(0.0, gy2 - gy1)
  area_p = max(0.0, px2 - px1) * max(0.0, py2 - py1)
  union = area_g + area_p - inter
  return inter / union if union > 0 else 0.0
