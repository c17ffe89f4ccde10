"""What `o3jax eval` prints after scoring: a headline per benchmark and its breakdowns,
x100 (the metrics files hold fractions)."""

from __future__ import annotations

from o3jax.eval import tvg, vstar


def pct(x: float) -> str:
  return f"{round(100 * x, 1) + 0.0:.1f}"  # + 0.0: a score that rounds to zero is not "-0.0"


def vstar_summary(m: dict) -> str:
  lines = [
    f"V-STaR (N={m['n']}): Acc {pct(m['acc'])}"
    f" | tIoU {pct(m['m_tiou_1'])}/{pct(m['m_tiou_2'])}"
    f" | vIoU {pct(m['m_viou_1'])}/{pct(m['m_viou_2'])} | mAM {pct(m['mam'])}"
    f" | mLGM {pct(m['mlgm'])}"
  ]
  for k in (1, 2):
    r1 = " ".join(f"R1@{th} {pct(m[f'r1@{th}_{k}'])}" for th in vstar.R1_THRESHOLDS)
    ap = " ".join(f"AP@{th} {pct(m[f'ap@{th}_{k}'])}" for th in vstar.AP_THRESHOLDS)
    lines.append(f"  chain {k}: {r1} | {ap}")
  for key in ("by_duration", "by_domain"):
    for name, g in m[key].items():
      lines.append(
        f"  {key[3:]} {name} (N={g['n']}): Acc {pct(g['acc'])} mAM {pct(g['mam'])}"
        f" mLGM {pct(g['mlgm'])}"
      )
  return "\n".join(lines)


def tvg_summary(m: dict) -> str:
  r1 = " ".join(f"R1@{th} {pct(m[f'r1@{th}'])}" for th in tvg.R1_THRESHOLDS)
  return f"TVGBench (N={m['n']}, unparsed {m['n_unparsed']}): mIoU {pct(m['miou'])} | {r1}"


def accuracy_summary(head: str, m: dict) -> str:
  """Multiple-choice accuracy under `head`, then one line per group of each by_* field."""
  lines = [f"{head}: Acc {pct(m['acc'])}"]
  for key, groups in m.items():
    if key.startswith("by_"):
      lines += [
        f"  {key[3:]} {name} (N={g['n']}): Acc {pct(g['acc'])}" for name, g in groups.items()
      ]
  return "\n".join(lines)
