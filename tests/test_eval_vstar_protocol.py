"""The reference V-STaR protocol: answer extraction, results built from completions and
read by a re-derivation of the official scorer, judge replies."""

import argparse
import json
import math

import numpy as np
import pytest

from o3jax.eval import cli, vstar, vstar_protocol as P


# ------------------------------------------------------------ the official scorer, re-derived
# From the V-STaR repo's eval.py as specified there (not imported: it loads a 72B judge at
# import): tIoU of a list [s, e] (a string is read as a python literal, anything else
# scores 0); per gold box, the key str(timestamp) must be in the answer dict, whose value
# is a box or a list of boxes (best IoU); vIoU is the mean over gold boxes; an empty or
# missing answer scores 0.


def official_tiou(gt, pred):
  if not pred:
    return 0.0
  if isinstance(pred, str):
    import ast

    try:
      pred = ast.literal_eval(pred)
    except (ValueError, SyntaxError):
      return 0.0
  if not isinstance(pred, (list, tuple)) or len(pred) != 2:
    return 0.0
  if not all(isinstance(x, (int, float)) for x in pred):
    return 0.0
  inter = max(0, min(gt[1], pred[1]) - max(gt[0], pred[0]))
  union = max(gt[1], pred[1]) - min(gt[0], pred[0])
  return inter / union if union > 0 else 0.0


def _official_box_iou(g, p):
  if not isinstance(p, (list, tuple)) or len(p) != 4:
    return 0.0
  inter = max(0, min(g["xmax"], p[2]) - max(g["xmin"], p[0])) * max(
    0, min(g["ymax"], p[3]) - max(g["ymin"], p[1])
  )
  union = (g["xmax"] - g["xmin"]) * (g["ymax"] - g["ymin"]) + (p[2] - p[0]) * (p[3] - p[1]) - inter
  return inter / union if union > 0 else 0.0


def official_viou(gt_boxes, pred):
  if not pred:
    return 0.0, [0.0] * 5
  ious = []
  for g in gt_boxes:
    key = str(g["timestamp"])
    if key in pred:
      value = pred[key]
      if value and isinstance(value[0], (int, float)) and len(value) == 4:
        value = [value]
      ious.append(max((_official_box_iou(g, p) for p in value), default=0.0))
    else:
      ious.append(0.0)
  aps = [float(np.mean([i >= th for i in ious])) for th in (0.1, 0.3, 0.5, 0.7, 0.9)]
  return float(np.mean(ious)), aps


# ------------------------------------------------------------ data


def _box(t, x, y, w=10, h=10):
  return {"timestamp": t, "frame_index": t * 10, "xmin": x, "ymin": y, "xmax": x + w, "ymax": y + h}


def annotations():
  base = {
    "domain": "d",
    "fps": 10.0,
    "frame_count": 200,
    "width": 320,
    "height": 240,
    "question": "What is it?",
    "answer": "a red ball",
    "temporal_question": "When?",
    "spatial_question": "Where?",
    "spatial_question_2": "Where 2?",
  }
  return [
    {**base, "vid": "a", "timestamps": [2.0, 6.0], "bboxes": [_box(2, 0, 0), _box(3, 10, 10)]},
    {**base, "vid": "b", "timestamps": [10.0, 12.0], "bboxes": [_box(10, 0, 0), _box(11, 0, 0)]},
  ]


# (field, completion, what the reference reads) -- the implied tIoU / boxes are below
COMPLETIONS = [
  (0, "answer_vqa", "<think>round, red</think>\n<answer> a red ball </answer>"),
  (0, "answer_temporal", "<think>at <t>3</t>s</think><answer>From <t>2</t>s to <t>4</t>s</answer>"),
  (0, "answer_temporal_2", "<answer>From 0:02 to 0:06</answer>"),
  (
    0,
    "answer_spatial",
    '<think>..</think><answer>```json\n{"2": [0, 0, 10, 5], "3": [[10, 10, 20, 20], [0, 0, 1, 1]]}\n```</answer>',
  ),
  (0, "answer_spatial_2", "<answer>[{'2': [0, 0, 10, 10]}, {'3': [15, 10, 25, 20]}]</answer>"),
  (1, "answer_vqa", "no answer block, a blue cube"),
  (1, "answer_temporal", "<answer>From <t>9</t>s to <t>12</t>s or 13</answer>"),  # 3 numbers
  (1, "answer_temporal_2", "From <t>11</t>s to <t>12</t>s"),
  (1, "answer_spatial", '<answer>[["10", [0, 0, 10, 10]], ["11", [5, 0, 15, 10]]]</answer>'),
  (1, "answer_spatial_2", '<answer>{"10": [0, 0, 10, 10], "11": [0, 0, 5, 10]'),  # unclosed
]
# tIoU per record and chain, vIoU per record and chain, as the answers imply
IMPLIED_TIOU = {(0, 1): 0.5, (0, 2): 1.0, (1, 1): 0.0, (1, 2): 0.5}
# (1, 2): no closing brace and no </answer>: the reference finds no object, reads the
# inner "[..], .. [..]" span, fails, repairs nothing and gives up: no boxes.
IMPLIED_VIOU = {(0, 1): (0.5 + 1) / 2, (0, 2): (1 + 1 / 3) / 2, (1, 1): (1 + 1 / 3) / 2}
IMPLIED_VIOU[(1, 2)] = 0.0


def test_extraction_follows_the_reference_rules():
  assert P.extract_span("<answer>From <t>2.5</t>s to <t>7</t>s</answer>") == [2.5, 7.0]
  assert P.extract_span("<answer>From 1:05 to 1:10</answer>") == [65.0, 70.0]
  assert P.extract_span("From 3s to 7s") == []  # "3s": no word boundary after the 3
  assert P.extract_span("<answer>[3, 7]</answer> then 9") == [3.0, 7.0]  # answer block only
  assert P.extract_span("between 3 and 7, not 9") == []
  assert P.extract_boxes("<answer>nothing</answer>") is None
  assert P.extract_boxes('{"1": [1, 2, 3, 4]} and {"2": [1, 1, 2, 2]}') is None  # 1st { to last }
  assert P.extract_boxes("[[1, 2], 3]") == [[1, 2], 3]  # not pairs: the repaired list is kept
  assert P.spatial_answer("[[1, 2], 3]") == {}
  assert P.extract_boxes('{"1": [1, 2, 3, 4]') == [1, 2, 3, 4]  # no "}": the inner list
  assert P.extract_boxes('[["1", [1, 2, 3, 4]]') == [["1", [1, 2, 3, 4]]]  # repaired: a list
  assert P.answer_fields("answer_vqa", "<answer> x </answer>") == {
    "answer_vqa": "x",
    "answer_vqa_raw_output": "<answer> x </answer>",
  }
  with pytest.raises(ValueError, match="answer_what"):
    P.answer_fields("answer_what", "")


@pytest.mark.parametrize(
  "reply, score",
  [("2", 2), (" 3\n", 3), ("7", 3), ("-2", -1), ("2.", -1), ("Score: 2", -1), ("", -1)],
)
def test_judge_reply(reply, score):
  assert P.parse_judge_reply(reply) == score


def test_reference_frame_indices():
  assert P.frame_indices(95, 10.0, 1.0, 16) == list(range(0, 95, 10))
  assert P.frame_indices(300, 10.0, 1.0, 16) == np.linspace(0, 299, 16, dtype=int).tolist()
  assert P.frame_indices(170, 10.0, 1.0, 16)[1] == 11  # 17 s > 16: spread evenly
  assert P.frame_indices(165, 10.0, 1.0, 16) == list(range(0, 160, 10))  # 16.5 s: 17 cut to 16


def _run_cli(argv):
  parser = argparse.ArgumentParser(prog="o3jax")
  cli.add_parser(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  return args.func(args)


def test_completions_give_results_the_official_scorer_reads(tmp_path):
  ann = tmp_path / "vstar.json"
  ann.write_text(json.dumps(annotations()))
  comp = tmp_path / "completions.jsonl"
  lines = [{"index": i, "field": f, "completion": c} for i, f, c in COMPLETIONS]
  lines.append({"index": 5, "field": "answer_vqa", "completion": "x"})  # bad: reported, skipped
  comp.write_text("\n".join(json.dumps(line) for line in lines))
  results, out = tmp_path / "results.json", tmp_path / "metrics.json"
  argv = ["eval", "vstar", "--annotations", str(ann), "--completions", str(comp)]
  assert _run_cli(argv + ["--results", str(results), "--out", str(out)]) == 0
  data = json.loads(results.read_text())
  assert data[0]["answer_vqa"] == "a red ball" and data[1]["answer_vqa"] == COMPLETIONS[5][2]
  assert data[0]["answer_temporal"] == [2.0, 4.0] and data[1]["answer_temporal"] == []
  assert data[0]["answer_temporal_pre"] == COMPLETIONS[1][2]
  assert data[0]["answer_spatial_pre_2"] == COMPLETIONS[4][2]
  assert all(isinstance(r[f], dict) for r in data for f in ("answer_spatial", "answer_spatial_2"))
  for i, record in enumerate(data):
    for chain, suffix in ((1, ""), (2, "_2")):
      assert official_tiou(record["timestamps"], record["answer_temporal" + suffix]) == (
        pytest.approx(IMPLIED_TIOU[(i, chain)])
      )
      viou, _ = official_viou(record["bboxes"], record["answer_spatial" + suffix])
      assert viou == pytest.approx(IMPLIED_VIOU[(i, chain)])
  # o3jax's metrics agree with the official ones
  m = vstar.score_vstar(data, judge=lambda q, g, c: 3)
  for chain, suffix in ((1, ""), (2, "_2")):
    tious = [official_tiou(r["timestamps"], r["answer_temporal" + suffix]) for r in data]
    vious = [official_viou(r["bboxes"], r["answer_spatial" + suffix]) for r in data]
    assert m[f"m_tiou_{chain}"] == pytest.approx(np.mean(tious))
    assert m[f"m_viou_{chain}"] == pytest.approx(np.mean([v for v, _ in vious]))
    for k, th in enumerate(vstar.AP_THRESHOLDS):
      assert m[f"ap@{th}_{chain}"] == pytest.approx(np.mean([aps[k] for _, aps in vious]))
    for th in vstar.R1_THRESHOLDS:
      assert m[f"r1@{th}_{chain}"] == pytest.approx(np.mean([t >= th for t in tious]))
  assert math.isclose(m["acc"], 1.0)


def test_completions_cli_scores_and_reports_bad_lines(tmp_path, capsys):
  ann = tmp_path / "vstar.json"
  ann.write_text(json.dumps(annotations()))
  comp = tmp_path / "c.jsonl"
  lines = [{"index": i, "field": f, "completion": c} for i, f, c in COMPLETIONS]
  lines.append({"index": 5, "field": "answer_vqa", "completion": "x"})
  comp.write_text("\n".join(json.dumps(line) for line in lines))
  out = tmp_path / "m.json"
  argv = ["eval", "vstar", "--annotations", str(ann), "--completions", str(comp), "--out", str(out)]
  assert _run_cli(argv) == 0
  assert "completion line 11: field 'index'" in capsys.readouterr().err
  m = json.loads(out.read_text())
  assert m["settings"]["judge"] == "offline_judge"
  assert "every record counts" in m["settings"]["empty_answer_rule"]
  assert m["m_tiou_1"] == pytest.approx(0.25) and m["m_tiou_2"] == pytest.approx(0.75)
  with pytest.raises(SystemExit, match="completion line 11"):
    _run_cli(argv + ["--strict"])


# The reference's strings (Open-o3-Video eval/test/test_vstar_multi_images.py, b3b396d1;
# eval/test/eval_vstar.py, fed0e79e), filled in by hand for RECORD.
RECORD = {
  "fps": 30.0,
  "frame_count": 305,
  "width": 640,
  "height": 360,
  "question": "What is the man holding?",
  "temporal_question": "When does he pick it up?",
  "spatial_question": "Where is the cup?",
  "spatial_question_2": "Where is the cup he picks up?",
  "timestamps": [2.4, 5.0],
  "bboxes": [
    {"timestamp": 3, "frame_index": 90, "xmin": 10, "ymin": 20.5, "xmax": 110, "ymax": 220},
    {"timestamp": 4, "frame_index": 120, "xmin": 12, "ymin": 22, "xmax": 112, "ymax": 222},
  ],
}
THINK = (
  "You must first think about the reasoning process in the mind and then provide the user with "
  "the answer. The reasoning process and answer are enclosed within <think> </think> and "
  "<answer> </answer> tags, respectively."
)
V = "<|vision_start|><|video_pad|><|vision_end|>"
EXPECTED = {
  "answer_vqa": "Answer the question about the video: What is the man holding? \n (If the answer is a person, you don't need to identify the person.)You must first think about the reasoning process in the mind and then provide the user with the answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, respectively. All reasoning must be grounded in visual evidence from the video. When you mention any related object, person, or specific visual element, you must strictly follow the following format: `<obj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`. Do not use <box>, <obj> and <t> in the answer part.",
  "answer_temporal": f"This video is 10.17 seconds long. {V}\nAnswer the question about the video: When does he pick it up? \n. {THINK} The answer must follow the following format: `From <t>start_time</t>s to <t>end_time</t>s'",
  "answer_spatial": f'{V}\nPlease answer the question about the video: Where is the cup? with a series of bounding boxes in [x1, y1, x2, y2] format.\n{THINK}\nIn the answer part, for each whole second within the time range [3, 4, 5] provided (inclusive of the boundaries), output a series of bounding boxes of the object in JSON format. The keys should be the whole seconds (as strings), and the values should be the box in [x1, y1, x2, y2] format.\nExample output of the answer part: {{"3": [x1, y1, x2, y2],...}}\n',
  "answer_spatial_2": f'{V}\nPlease answer the question about the video: Where is the cup he picks up? with a series of bounding boxes in [x1, y1, x2, y2] format.\n{THINK}\nIn the answer part, for each whole second that may related to the question, output a series of bounding boxes of the object in JSON format. You only need to output 2 bbox(es). You need to determine which frame is related to the question, and you don\'t need to output the bbox for the frames not related to the question.\nThe keys should be the whole seconds (as strings), and the values should be the bounding box in [x0,y0,x1,y1] format.\n\nExample output of the answer part:\n{{"0": [x0,y0,x1,y1], "1":..., ..., "2":...}} (if the frames at 0~2 second are related to the questions)\n',
  "answer_temporal_2": f"This video is 10.17 seconds long with a resolution of 640x360 (width x height). {V}\nAnswer the question about the video: When does he pick it up? \nThere are 2 bounding boxes of the key object related to the question in the video without knowing the time, which are:[[10, 20.5, 110, 220], [12, 22, 112, 222]]. {THINK} The answer must follow the following format: `From <t>start_time</t>s to <t>end_time</t>s'",
}
EXPECTED_DIRECT_TEMPORAL = f"This video is 10.17 seconds long. {V}\nAnswer the question about the video: When does he pick it up? \nDirectly output the start and end moment timestamps. You must follow the following format: `From <t>start_time</t>s to <t>end_time</t>s'."
EXPECTED_JUDGE_SYSTEM = """
As an AI assistant, your task is to evaluate a candidate answer in comparison to a given correct answer.
The question itself, the correct 'groundtruth' answer, and the candidate answer will be provided to you.
Your assessment should range from 0 to 3, \
based solely on the semantic similarity between the groundtruth and the candidate answer, \
disregarding any grammatical differences.
A rating of 0 suggests no similarity, implying the candidate answer is entirely incorrect.
A rating of 1 suggests low similarity, meaning the candidate answer is largely incorrect.
A rating of 2 suggests high similarity, meaning the candidate answer is largely correct.
Lastly, a rating of 3 indicates complete similarity, which means the candidate answer is entirely correct.
Your response should be a single integer from 0, 1, 2, or 3.
"""


def test_prompts_are_the_reference_strings():
  from o3jax.eval import vstar_reference as R

  texts = R.query_texts(RECORD)
  for field, expected in EXPECTED.items():
    assert texts[field].encode() == expected.encode(), field
  assert R.query_texts(RECORD, think=False)["answer_temporal"] == EXPECTED_DIRECT_TEMPORAL
  assert R.JUDGE_SYSTEM_PROMPT.encode() == EXPECTED_JUDGE_SYSTEM.encode()
  assert (
    R.judge_user_prompt("q?", "g", "c")
    == "Question: q?\nGroundtruth answer: g\nCandidate answer: c\nYour response: "
  )
  assert R.SYSTEM_PROMPT == "You are a helpful assistant."
  frames = "Frame 1 at 0.0s: <|vision_start|><|image_pad|><|vision_end|>\nFrame 2 at 1.0s: <|vision_start|><|image_pad|><|vision_end|>\n"
  assert R.with_frames(texts["answer_temporal"], [0.0, 1.0]) == EXPECTED["answer_temporal"].replace(
    V, frames
  )
  assert R.with_frames(texts["answer_vqa"], [0.0, 1.0]) == frames + EXPECTED["answer_vqa"]
