"""What a user reads: strict JSON files and lines, the demo's table, one-line summaries,
and the evidence sheet that sets the model's boxes beside the gold ones."""

import json
import math

import numpy as np

from o3jax import jsonio, viz
from o3jax.demo import KEYS, table
from o3jax.train.cli import summary
from o3jax.workdir import MetricsLog


def test_strict_json_writes_null_for_non_finite_and_no_negative_zero():
  value = {"a": math.nan, "b": [-math.inf, -0.0, np.float32(0.5)], "c": (1, "x")}
  text = jsonio.dumps(value)
  assert json.loads(text) == {"a": None, "b": [None, 0.0, 0.5], "c": [1, "x"]}
  assert "-0.0" not in text and "NaN" not in text


def test_metrics_lines_are_strict_json(tmp_path):
  log = MetricsLog(str(tmp_path), total=2, resume_step=0)
  log.write(1, {"loss": np.float32(np.nan), "grad_norm": 1.5})
  log.write(2, {"loss": 0.25, "grad_norm": np.inf})
  log.close()
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  rows = [json.loads(line) for line in lines]  # json.loads accepts NaN: check the text too
  assert all("NaN" not in line and "Infinity" not in line for line in lines)
  assert (rows[0]["loss"], rows[0]["grad_norm"]) == (None, 1.5)
  assert (rows[1]["loss"], rows[1]["grad_norm"]) == (0.25, None)


def test_demo_table_fits_100_columns_without_negative_zero():
  row = {k: -0.0 for k in KEYS} | {"total": 1.8712, "mam": 0.0123, "mlgm": math.inf}
  text = table({"base": {k: 0.0 for k in KEYS}, "gspo": row})
  lines = text.splitlines()
  assert max(len(line) for line in lines) <= 100
  assert "-0.000" not in text
  cells = lines[-1].split()
  assert cells[0] == "gspo" and cells[6] == "1.871" and cells[7] == "1.230"  # mAM x100
  assert cells[8] == "inf"


def test_training_summary_is_one_line():
  done = summary("sft", "runs/sft", {"step": 400, "loss": 0.1234567})
  assert done == (
    "o3jax sft: step 400 done, loss 0.1235; checkpoint in runs/sft/checkpoints/400, "
    "metrics in runs/sft/metrics.jsonl"
  )
  assert "already at the requested step" in summary("gspo", "w", {})
  assert "\n" not in summary("gspo", "w", {"step": 3, "loss": 0.5, "reward/total": 1.25})


def test_sheet_draws_gold_and_model_boxes_in_two_colours_with_both_answers():
  frames = np.zeros((2, 20, 30, 3), np.uint8)
  model = [viz.Evidence("shape", (2, 2, 10, 10), 0.0)]
  gold = [viz.Evidence("shape", (15, 5, 28, 18), 1.0)]
  sheet = viz.evidence_sheet(
    frames, (0.0, 1.0), model, title="Q", min_width=60, gold=gold, answers=("left", "right")
  )
  image = np.asarray(sheet)
  # header: title + model line + gold line; each line after a swatch of its colour
  assert sheet.size[1] > 3 * viz.CAPTION_HEIGHT + 40
  assert (image == viz.MODEL).all(-1).sum() > 0 and (image == viz.GOLD).all(-1).sum() > 0
  # two panels (frame 1: the model's box, frame 2: the gold box), side by side
  assert sheet.size[0] == 2 * 60 + 3 * 4
  panels_top = 4 + 3 * viz.CAPTION_HEIGHT + 4
  first = image[panels_top : panels_top + 40, 4 : 4 + 60]
  second = image[panels_top : panels_top + 40, 68 : 68 + 60]
  assert (first == viz.MODEL).all(-1).any() and not (first == viz.GOLD).all(-1).any()
  assert (second == viz.GOLD).all(-1).any() and not (second == viz.MODEL).all(-1).any()


def test_eval_summary_has_no_negative_zero():
  from o3jax.eval.summary import vstar_summary

  zero = {k: -0.0 for k in ("acc", "m_tiou_1", "m_tiou_2", "m_viou_1", "m_viou_2")}
  m = {"n": 6, **zero, "mam": 0.006172839506172839, "mlgm": -1e-9, "by_duration": {}}
  m |= {
    f"{s}@{t}_{k}": -0.0 for s in ("r1", "ap") for t in (0.1, 0.3, 0.5, 0.7, 0.9) for k in (1, 2)
  }
  text = vstar_summary(m | {"by_domain": {}})
  assert "-0.0" not in text
  assert text.splitlines()[0].endswith("| mAM 0.6 | mLGM 0.0")
