"""`o3jax eval {vstar,tvg,mcq}` end to end on small synthetic results files."""

import argparse
import json
import math
import subprocess
import sys

import pytest

from o3jax.eval import cli, vstar
from o3jax.jsonio import finite_or_none
from test_eval_vstar import hand_records


def _run(argv):
  parser = argparse.ArgumentParser(prog="o3jax")
  cli.add_parser(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  return args.func(args)


def test_vstar_cli_end_to_end(tmp_path, capsys):
  records = hand_records()
  records[2]["vqa_score"] = 2  # what the judge said in test_hand_computed_metrics
  results = tmp_path / "vstar_results.json"
  results.write_text(json.dumps(records))
  out = tmp_path / "metrics" / "vstar.json"
  argv = ["eval", "vstar", "--results", str(results), "--out", str(out), "--judge", "none"]
  assert _run(argv) == 0
  m = json.loads(out.read_text())
  assert m["benchmark"] == "vstar" and m["n"] == 3
  assert m["acc"] == pytest.approx(2 / 3)
  assert (m["m_tiou_1"], m["m_tiou_2"]) == pytest.approx((5 / 18, 2 / 3))
  assert (m["m_viou_1"], m["m_viou_2"]) == pytest.approx((0.375, 5 / 18))
  assert m["ap@0.1_1"] == pytest.approx(5 / 9) and m["r1@0.5_2"] == pytest.approx(2 / 3)
  assert set(m["by_duration"]) == {"short", "medium", "long"}
  assert set(m["by_domain"]) == {"sports", "life"}
  assert m["settings"]["judge"] == "vqa_score only"
  printed = capsys.readouterr().out
  assert "V-STaR (N=3): Acc 66.7 | tIoU 27.8/66.7 | vIoU 37.5/27.8" in printed
  assert f"mAM {100 * m['mam']:.1f}" in printed


def test_vstar_cli_offline_judge_and_reference_mode(tmp_path):
  records = hand_records()
  results = tmp_path / "r.json"
  results.write_text(json.dumps(records))
  out = tmp_path / "m.json"
  _run(
    ["eval", "vstar", "--results", str(results), "--out", str(out), "--reference-skip-empty-vqa"]
  )
  m = json.loads(out.read_text())
  # offline judge: "a red car" vs gold "a red car" -> 3 (correct); r1 (empty answer) dropped
  assert m["n"] == 2 and m["acc"] == pytest.approx(2 / 3)
  assert m["per_sample"][2]["vqa_score"] == 3
  assert m["settings"] == {
    "duration_bins": "short <= 60 s < medium <= 180 s < long",
    "reference_skip_empty_vqa": True,
    "empty_answer_rule": "reference: a record with an empty answer_vqa is left out of every"
    " mean but Acc's denominator",
    "judge": "offline_judge",
  }
  scores = vstar.score_vstar(records, vstar.offline_judge, reference_skip_empty_vqa=True)
  assert math.isinf(scores["by_duration"]["long"]["mlgm"])  # acc 1: strict JSON holds it as null
  assert m == json.loads(
    json.dumps(finite_or_none({"benchmark": "vstar", "results": str(results), **scores}))
  )
  assert m["by_duration"]["long"]["mlgm"] is None


def test_vstar_cli_errors(tmp_path):
  results = tmp_path / "r.json"
  results.write_text(json.dumps(hand_records()))
  with pytest.raises(SystemExit, match="vid r2.*vqa_score"):
    _run(["eval", "vstar", "--results", str(results), "--judge", "none"])
  with pytest.raises(SystemExit, match="needs --model DIR and --annotations FILE"):
    _run(["eval", "vstar", "--model", "ckpt", "--videos", "vids/"])
  with pytest.raises(SystemExit, match="needs --model DIR and --annotations FILE"):
    _run(["eval", "tvg", "--results", str(results), "--model", "ckpt"])
  with pytest.raises(SystemExit, match="--results FILE is required"):
    _run(["eval", "mcq"])
  with pytest.raises(SystemExit, match="results file not found"):
    _run(["eval", "mcq", "--results", str(tmp_path / "missing.json")])
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"output": "1 to 2", "target": [0, 2]}\n{oops\n')
  with pytest.raises(SystemExit, match="line 2 is not JSON"):
    _run(["eval", "tvg", "--results", str(bad)])


def test_tvg_cli_jsonl(tmp_path, capsys):
  results = tmp_path / "tvg.jsonl"
  lines = [
    {"qid": 1, "output": "<answer>0 to 5</answer>", "target": [0, 10]},
    {"qid": 2, "output": "from 2 to 8", "target": [0, 10]},
    {"qid": 3, "output": "garbage", "target": [0, 10]},
  ]
  results.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
  out = tmp_path / "tvg.json"
  _run(["eval", "tvg", "--results", str(results), "--out", str(out)])
  m = json.loads(out.read_text())
  assert m["miou"] == pytest.approx(1.1 / 3)
  assert (m["r1@0.3"], m["r1@0.5"], m["r1@0.7"]) == pytest.approx((2 / 3, 1 / 3, 0))
  printed = capsys.readouterr().out
  assert "TVGBench (N=3, unparsed 1): mIoU 36.7 | R1@0.3 66.7 R1@0.5 33.3 R1@0.7 0.0" in printed


def test_mcq_cli_via_module(tmp_path):
  results = tmp_path / "mcq.json"
  results.write_text(
    json.dumps(
      [
        {"answer": "A", "response": "A.", "domain": "Sports"},
        {"answer": "B", "response": "C", "domain": "Sports"},
        {"answer": "C", "response": "The answer is C", "domain": "Music"},
      ]
    )
  )
  out = tmp_path / "mcq_metrics.json"
  argv = ["eval", "mcq", "--results", str(results), "--out", str(out), "--group-by", "domain"]
  proc = subprocess.run(
    [sys.executable, "-m", "o3jax.eval.cli", *argv], capture_output=True, text=True, timeout=60
  )
  assert proc.returncode == 0, proc.stderr
  m = json.loads(out.read_text())
  assert m["acc"] == pytest.approx(2 / 3)
  assert m["by_domain"] == {"Music": {"n": 1, "acc": 1.0}, "Sports": {"n": 2, "acc": 0.5}}
  assert "domain Sports (N=2): Acc 50.0" in proc.stdout
