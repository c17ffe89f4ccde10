"""V-STaR scoring: published rows from their components, hand-computed cases, parsing."""

import json
import math
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o3jax.jsonio import finite_or_none
from o3jax.eval import vstar, vstar_prompts
from o3jax.eval.iou import box_iou, temporal_iou


def round1(x: float) -> float:
  """Round half up to 0.1 (papers' tables), immune to float noise like 33.649999."""
  return float(Decimal(repr(round(x, 9))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


# ---------------------------------------------------------------- published rows

# (Acc, tIoU1, tIoU2, vIoU1, vIoU2) -> (mAM, mLGM), x100, docs/reference.md section 6.
PUBLISHED = {
  "Qwen2.5-VL-7B": ((33.5, 15.4, 13.8, 17.0, 2.5), (19.3, 22.4)),
  "Open-o3 Video": ((61.0, 24.5, 24.0, 25.4, 6.0), (33.7, 46.6)),
  "GPT-4o": ((60.8, 16.7, 12.8, 6.5, 3.0), (26.8, 38.2)),
}


def _synthetic_record(i, score, t1, t2, v1, v2):
  """A record whose chain-1/2 tIoU and vIoU are exactly t1, t2, v1, v2.

  Gold span [0, 10]: predicting [0, 10 t] gives tIoU t. Gold box [0, 0, 100, 100] at
  second 2: predicting [0, 0, 100, 100 v] gives IoU v.
  """

  def span(t):
    return [0.0, 10.0 * t] if t > 0 else [20.0, 30.0]

  def boxes(v):
    return {"2": [0, 0, 100, 100 * v]} if v > 0 else {}

  return {
    "vid": f"v{i}",
    "fps": 10.0,
    "frame_count": 300,
    "width": 640,
    "height": 360,
    "domain": "synthetic",
    "question": "q",
    "answer": "a",
    "answer_vqa": "x",
    "timestamps": [0.0, 10.0],
    "bboxes": [{"timestamp": 2, "frame_index": 20, "xmin": 0, "ymin": 0, "xmax": 100, "ymax": 100}],
    "vqa_score": score,
    "answer_temporal": span(t1),
    "answer_temporal_2": span(t2),
    "answer_spatial": boxes(v1),
    "answer_spatial_2": boxes(v2),
  }


def _records_for(components, n=1000):
  """n records realising the components; per-sample values vary around the means."""
  acc, t1, t2, v1, v2 = (c / 100 for c in components)
  n_correct = round(acc * n)
  records = []
  for i in range(n):
    score = (3 if i % 2 else 2) if i < n_correct else (1 if i % 2 else 0)
    sign = 1 if i % 2 == 0 else -1  # n even: the +d and -d halves cancel exactly

    def vary(x):
      return x + sign * min(x, 1 - x, 0.05) * 0.5

    records.append(_synthetic_record(i, score, vary(t1), vary(t2), vary(v1), vary(v2)))
  return records


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_rows_reproduce_from_components(name):
  components, (mam, mlgm) = PUBLISHED[name]
  metrics = vstar.score_vstar(_records_for(components), judge=None)
  row = vstar.reported_row(metrics)
  for key, value in zip(("acc", "m_tiou_1", "m_tiou_2", "m_viou_1", "m_viou_2"), components):
    assert row[key] == pytest.approx(value, abs=1e-9)
  assert round1(row["mam"]) == mam
  assert round1(row["mlgm"]) == mlgm
  # The same from the components alone.
  direct = vstar.combine(*(c / 100 for c in components))
  assert round1(100 * direct["mam"]) == mam and round1(100 * direct["mlgm"]) == mlgm


def test_open_o3_row_values():
  # Plain SPEC formulas: mAM = 33.65 exactly (half-up -> 33.7), mLGM = 46.56.
  a, t1, t2, v1, v2 = 0.61, 0.245, 0.24, 0.254, 0.06
  m = vstar.combine(a, t1, t2, v1, v2)
  assert 100 * m["mam"] == pytest.approx((61 + 24.5 + 25.4 + 61 + 24 + 6) / 6, abs=1e-12)
  lgm1 = -(math.log(0.39) + math.log(0.755) + math.log(0.746)) / 3
  lgm2 = -(math.log(0.39) + math.log(0.76) + math.log(0.94)) / 3
  assert m["lgm_1"] == pytest.approx(lgm1, abs=1e-12)
  assert m["mlgm"] == pytest.approx((lgm1 + lgm2) / 2, abs=1e-12)
  assert 100 * m["mlgm"] == pytest.approx(46.5599, abs=1e-4)


def test_lgm_of_a_perfect_component_is_infinite():
  assert vstar.combine(1.0, 0.5, 0.5, 0.5, 0.5)["mlgm"] == math.inf
  # Written as null: strict JSON has no infinity.
  report = finite_or_none({"mlgm": math.inf, "r": [0.5, -math.inf, math.nan], "n": 3})
  assert json.loads(json.dumps(report, allow_nan=False)) == {
    "mlgm": None,
    "r": [0.5, None, None],
    "n": 3,
  }


# ---------------------------------------------------------------- hand-computed file


def _box(t, x2, y2, upstream=False):
  if upstream:
    return {f"{t}_{t * 25}": {"xmin": 0, "ymin": 0, "xmax": x2, "ymax": y2}}
  return {"timestamp": t, "frame_index": t * 10, "xmin": 0, "ymin": 0, "xmax": x2, "ymax": y2}


def hand_records():
  base = {
    "width": 640,
    "height": 360,
    "question": "What does he hold?",
    "answer": "a red car",
    "temporal_question": "When?",
    "spatial_question": "Where?",
    "spatial_question_2": "Where 2?",
  }
  return [
    {
      **base,
      "vid": "r0",
      "domain": "sports",
      "fps": 10,
      "frame_count": 300,  # 30 s: short
      "timestamps": [2, 6],
      "bboxes": [_box(3, 10, 10), _box(4, 10, 10), _box(5, 10, 10)],
      "answer_vqa": "a car",
      "vqa_score": 3,
      "answer_temporal": [4, 8],  # 2/6
      "answer_temporal_2": "From <t>2</t>s to <t>6</t>s",  # 1
      # IoUs 1, .5, 0 ("5.5" is not a whole second)
      "answer_spatial": {"3": [0, 0, 10, 10], "4": [0, 0, 10, 5], "5.5": [0, 0, 10, 10]},
      "answer_spatial_2": "<answer>```json\n{'3': [[20, 20, 30, 30], [0, 0, 10, 10]], '4': 'oops'}\n```</answer>",
    },
    {
      **base,
      "vid": "r1",
      "domain": "sports",
      "fps": 25,
      "frame_count": 2500,  # 100 s: medium
      "timestamps": [10, 20],
      "bboxes": [_box(12, 20, 10, upstream=True)],
      "answer_vqa": "",  # empty: score 0, no judge call
      "answer_temporal": [15, 5],  # end < start: 0
      "answer_temporal_2": "I cannot tell",  # 0
      "answer_spatial": "{not json",  # 0
      "answer_spatial_2": {"12": [0, 0, 10, 10]},
    },  # 100/200
    {
      **base,
      "vid": "r2",
      "domain": "life",
      "fps": 30,
      "frame_count": 6000,  # 200 s: long
      "timestamps": [0, 10],
      "bboxes": [_box(0, 4, 4), _box(9, 4, 4)],
      "answer_vqa": "<think>hmm</think><answer>a red car</answer>",  # judged
      "answer_temporal": "[0, 5]",  # 0.5
      "answer_temporal_2": [],
      "answer_temporal_pre_2": "<answer>From 0:00 to 0:10</answer>",  # 1
      "answer_spatial": [{"0": [0, 0, 2, 2]}, {"9": [0, 0, 4, 4]}],  # 0.25, 1
      "answer_spatial_2": None,
    },  # 0, 0
  ]


def test_hand_computed_metrics():
  calls = []

  def judge(question, gold, candidate):
    calls.append((question, gold, candidate))
    return " 2\n"

  m = vstar.score_vstar(hand_records(), judge=judge)
  assert calls == [("What does he hold?", "a red car", "a red car")]
  assert m["n"] == 3 and m["acc"] == pytest.approx(2 / 3)
  # chain 1 when: tIoU [1/3, 0, 1/2]
  assert m["m_tiou_1"] == pytest.approx(5 / 18)
  assert (m["r1@0.3_1"], m["r1@0.5_1"], m["r1@0.7_1"]) == pytest.approx((2 / 3, 1 / 3, 0))
  # chain 2 when: [1, 0, 1]
  assert m["m_tiou_2"] == pytest.approx(2 / 3)
  assert (m["r1@0.3_2"], m["r1@0.5_2"], m["r1@0.7_2"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
  # chain 1 where: per-frame IoUs [1, .5, 0], [0], [.25, 1]
  assert m["m_viou_1"] == pytest.approx((0.5 + 0 + 0.625) / 3)
  ap1 = [m[f"ap@{th}_1"] for th in vstar.AP_THRESHOLDS]
  assert ap1 == pytest.approx([5 / 9, 7 / 18, 7 / 18, 5 / 18, 5 / 18])
  # chain 2 where: [1, 0, 0], [.5], [0, 0]
  assert m["m_viou_2"] == pytest.approx((1 / 3 + 0.5 + 0) / 3)
  ap2 = [m[f"ap@{th}_2"] for th in vstar.AP_THRESHOLDS]
  assert ap2 == pytest.approx([4 / 9, 4 / 9, 4 / 9, 1 / 9, 1 / 9])
  acc, t1, t2, v1, v2 = 2 / 3, 5 / 18, 2 / 3, 1.125 / 3, 5 / 18
  am1, am2 = (acc + t1 + v1) / 3, (acc + t2 + v2) / 3
  lgm1 = -(math.log(1 - acc) + math.log(1 - t1) + math.log(1 - v1)) / 3
  lgm2 = -(math.log(1 - acc) + math.log(1 - t2) + math.log(1 - v2)) / 3
  assert (m["am_1"], m["am_2"], m["mam"]) == pytest.approx((am1, am2, (am1 + am2) / 2))
  assert (m["lgm_1"], m["lgm_2"], m["mlgm"]) == pytest.approx((lgm1, lgm2, (lgm1 + lgm2) / 2))
  # breakdowns
  assert {k: g["n"] for k, g in m["by_duration"].items()} == {"short": 1, "medium": 1, "long": 1}
  assert m["by_duration"]["long"]["m_viou_1"] == pytest.approx(0.625)
  sports = m["by_domain"]["sports"]
  assert sports["n"] == 2 and sports["acc"] == 0.5
  assert sports["m_tiou_1"] == pytest.approx(1 / 6) and sports["m_viou_2"] == pytest.approx(5 / 12)
  assert m["by_domain"]["life"]["acc"] == 1.0
  assert [s["vqa_score"] for s in m["per_sample"]] == [3, 0, 2]


def test_reference_skip_empty_vqa():
  m = vstar.score_vstar(hand_records(), judge=lambda q, g, c: 2, reference_skip_empty_vqa=True)
  assert m["n"] == 2
  assert m["acc"] == pytest.approx(2 / 3)  # still over all 3 records
  assert m["m_tiou_1"] == pytest.approx((1 / 3 + 0.5) / 2)
  assert m["m_viou_2"] == pytest.approx((1 / 3 + 0) / 2)
  assert m["by_domain"]["sports"]["n"] == 1 and m["by_domain"]["sports"]["acc"] == 1.0
  assert "medium" not in m["by_duration"]


def test_unreadable_judge_counts_zero():
  records = hand_records()
  m = vstar.score_vstar(records, judge=lambda q, g, c: "I think it is fine")
  assert m["acc"] == pytest.approx(1 / 3) and m["n_unreadable_score"] == 1


def test_missing_judge_and_score_is_an_error():
  with pytest.raises(ValueError, match=r"record 2 \(vid r2\).*vqa_score"):
    vstar.score_vstar(hand_records(), judge=None)


@pytest.mark.parametrize(
  "field,value,msg",
  [
    ("timestamps", None, "'timestamps' is missing"),
    ("timestamps", [6, 2], "ends before it starts"),
    ("bboxes", [{"timestamp": 3, "xmin": 0, "ymin": 0, "xmax": "a", "ymax": 1}], "bad box"),
    ("fps", 0, "'fps' is not a positive number"),
  ],
)
def test_bad_annotation_names_record_and_field(field, value, msg):
  records = hand_records()
  records[1][field] = value
  with pytest.raises(ValueError, match=rf"record 1 \(vid r1\).*{msg}"):
    vstar.score_vstar(records, judge=lambda q, g, c: 0)


def test_no_records_is_an_error():
  with pytest.raises(ValueError, match="no records"):
    vstar.score_vstar([])


# ---------------------------------------------------------------- parsing and IoU


@pytest.mark.parametrize(
  "pred,expected",
  [
    ([4, 8], (4.0, 8.0)),
    ((4.5, 8), (4.5, 8.0)),
    ("[4, 8]", (4.0, 8.0)),
    (
      "<think>at <t>1</t>s and <t>3</t>s</think><answer>From <t>4</t>s to <t>8.5</t>s</answer>",
      (4.0, 8.5),
    ),
    ("From 0:04 to 1:02", (4.0, 62.0)),
    ("between 4 and 6 and 8", None),
    ("", None),
    (None, None),
    ([], None),
    ([1, 2, 3], None),
    ([1, "b"], None),
    ([True, 2], None),
    ({"s": 1}, None),
    (12, None),
    ([float("nan"), 2], None),
  ],
)
def test_parse_span(pred, expected):
  assert vstar.parse_span(pred) == expected


def test_temporal_iou_hand_cases():
  assert temporal_iou([4, 8], [2, 6]) == pytest.approx(2 / 6)
  assert temporal_iou([0, 10], [0, 5]) == 0.5
  assert temporal_iou([0, 10], [6, 2]) == 0.0  # end before start
  assert temporal_iou([0, 10], [12, 15]) == 0.0  # disjoint
  assert temporal_iou([3, 3], [3, 3]) == 0.0  # degenerate union
  assert temporal_iou([0, 10], None) == 0.0


def test_box_iou_hand_cases():
  assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
  assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
  assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
  assert box_iou([0, 0, 10, 10], [10, 10, 5, 5]) == 0.0  # inverted
  assert box_iou([0, 0, 10, 10], [0, 0, 10]) == 0.0
  assert box_iou([0, 0, 10, 10], [0, 0, "10", 10]) == 0.0
  assert box_iou([0, 0, 10, 10], [0, 0, float("inf"), 10]) == 0.0
  assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


@pytest.mark.parametrize(
  "pred,expected",
  [
    ({"3": [1, 2, 3, 4]}, {3: [[1, 2, 3, 4]]}),
    (
      {
        3: [1, 2, 3, 4],
        "4.0": [[1, 2, 3, 4], [5, 6, 7, 8]],
        "5s": [1, 2, 3, 4],
        "3.5": [0, 0, 1, 1],
      },
      {3: [[1, 2, 3, 4]], 4: [[1, 2, 3, 4], [5, 6, 7, 8]], 5: [[1, 2, 3, 4]]},
    ),
    ('{"3": [1, 2, 3, 4], "4": [1, 2, 3', {3: [[1, 2, 3, 4]], 4: []}),  # truncated: closed
    ("Sure! {'7': [1, 2, 3, 4]} hope it helps", {7: [[1, 2, 3, 4]]}),
    ('[{"1": [1, 2, 3, 4]}, {"2": [5, 6, 7, 8]}]', {1: [[1, 2, 3, 4]], 2: [[5, 6, 7, 8]]}),
    ([[1, [1, 2, 3, 4]], ["2", [5, 6, 7, 8]]], {1: [[1, 2, 3, 4]], 2: [[5, 6, 7, 8]]}),
    ({"3": "box", "4": None, "x": [1, 2, 3, 4]}, {3: [], 4: []}),
    ("no boxes here", {}),
    ("{{{[[[", {}),
    ("", {}),
    (None, {}),
    (42, {}),
    ([1, 2, 3, 4], {}),
  ],
)
def test_parse_boxes(pred, expected):
  assert vstar.parse_boxes(pred) == expected


def test_spatial_ious_missing_second_and_multiple_boxes():
  gold = [(3, [0, 0, 10, 10]), (4, [0, 0, 10, 10]), (5, [0, 0, 10, 10])]
  pred = {"3": [[20, 20, 30, 30], [0, 0, 10, 5]], "5": [0, 0, 10, 10, 1]}
  assert vstar.spatial_ious(gold, pred) == pytest.approx([0.5, 0.0, 0.0])
  assert vstar.spatial_ious([], pred) == []


def test_gold_box_forms_and_seconds():
  record = {
    "bboxes": [
      {"timestamp": 3.7, "frame_index": 1, "xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4},
      {"12_300": {"xmin": 5, "ymin": 6, "xmax": 7, "ymax": 8}},
    ]
  }
  assert vstar.gold_boxes(record) == [(3, [1, 2, 3, 4]), (12, [5, 6, 7, 8])]


@pytest.mark.parametrize(
  "raw,expected",
  [
    (3, 3),
    (0, 0),
    (2.0, 2),
    ("2", 2),
    (" 1\n", 1),
    ("Score: 2", 2),
    ("4", None),
    ("-1", None),
    ("none", None),
    (None, None),
    (True, None),
    (2.5, None),
  ],
)
def test_parse_judge_score(raw, expected):
  assert vstar.parse_judge_score(raw) == expected


@pytest.mark.parametrize(
  "gold,candidate,expected",
  [
    ("a man opens the red door", "a man opens the door", 3),  # F = 10/11
    ("red car parked outside", "a red truck parked", 2),  # F = 1/2
    ("the woman wears a red vest", "a blue shirt", 1),  # F = 2/9
    ("the woman wears a red vest", "dogs bark loudly", 0),
    ("a dog", "", 0),
  ],
)
def test_offline_judge(gold, candidate, expected):
  assert vstar.offline_judge("q", gold, candidate) == expected


def test_duration_bins():
  assert [vstar.duration_bin(s) for s in (0.5, 60.0, 60.01, 180.0, 180.01)] == [
    "short",
    "short",
    "medium",
    "medium",
    "long",
  ]


def test_prompts():
  record = hand_records()[0] | {"timestamps": [1.5, 6.2]}
  where = vstar_prompts.where_prompt(record, think=False)
  assert "[2, 3, 4, 5, 6]" in where and '{"2": [x1, y1, x2, y2]' in where and "640x360" in where
  assert "<think>" not in where
  assert "420x224" in vstar_prompts.where_prompt(record, size=(420, 224))
  when = vstar_prompts.when_prompt(record)
  assert "30.0 seconds" in when and "[s, e]" in when and "<think>" in when and "When?" in when
  assert "exactly 3 box(es)" in vstar_prompts.where_given_count_prompt(
    record
  ) and "Where 2?" in vstar_prompts.where_given_count_prompt(record)
  hint = vstar_prompts.when_given_boxes_prompt(hand_records()[1])
  assert "[[0, 0, 20, 10]]" in hint and "these 1 bounding box(es)" in hint
  scaled = vstar_prompts.when_given_boxes_prompt(hand_records()[1], size=(320, 180))  # x0.5
  assert "[[0, 0, 10, 5]]" in scaled and "320x180" in scaled
  assert "What does he hold?" in vstar_prompts.what_prompt(record)
  assert vstar.span_seconds([2.2, 2.8]) == [2]
  with pytest.raises(ValueError, match="'spatial_question' is missing"):
    vstar_prompts.where_prompt({k: v for k, v in record.items() if k != "spatial_question"})
  assert "Candidate answer: x" in vstar_prompts.judge_prompt("q", "g", "x")


json_values = st.recursive(
  st.none()
  | st.booleans()
  | st.integers(-10, 100)
  | st.floats(allow_nan=True)
  | st.text(max_size=8),
  lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=4), kids, max_size=5),
  max_leaves=20,
)
box_texts = st.text(alphabet="{}[]\"':,0123456789. sabx<>/\n`", max_size=60)


@settings(max_examples=300, deadline=None)
@given(answer=json_values | box_texts)
def test_model_output_never_raises(answer):
  record = hand_records()[0] | {
    "answer_temporal": answer,
    "answer_temporal_2": answer,
    "answer_spatial": answer,
    "answer_spatial_2": answer,
  }
  sample = vstar.score_sample(record, 0, judge=None)
  for k in (1, 2):
    assert 0.0 <= sample[f"tiou_{k}"] <= 1.0
    assert len(sample[f"ious_{k}"]) == 3 and all(0.0 <= i <= 1.0 for i in sample[f"ious_{k}"])
