"""Gold targets read from records: conversions, and clear errors for malformed records."""

import copy

import numpy as np
import pytest
from test_rewards_reference import (
  HAND_CASES,
  MCQ_RECORD,
  ST_RECORD,
  TG_MCQ_RECORD,
  TG_RECORD,
  VQA_RECORD,
)

from o3jax.rewards import RecordError, record_gold, score


def test_gold_conversions():
  st = record_gold(ST_RECORD)
  assert st.key_times == (2.0, 5.0)
  assert st.key_boxes[0] == (((10.0, 20.0, 50.0, 100.0),),)  # normalized * (100, 200)
  assert st.key_boxes[1][1][1] == pytest.approx((40.0, 80.0, 60.0, 120.0))
  assert st.answer == "The person walks the dog."
  assert record_gold(TG_RECORD).span == (2.0, 6.0)
  mcq = record_gold(TG_MCQ_RECORD)
  assert (mcq.answer, mcq.span) == ("C", (2.0, 6.0))
  assert record_gold(VQA_RECORD).box == (10.0, 10.0, 50.0, 30.0)  # [200,100] -> [100,50]
  assert record_gold({**MCQ_RECORD, "answer": " B \n"}).answer == "B"


def _broken(record, path, value):
  record = copy.deepcopy(record)
  target = record
  for key in path[:-1]:
    target = target[key]
  if value is KeyError:
    del target[path[-1]]
  else:
    target[path[-1]] = value
  return record


@pytest.mark.parametrize(
  "record,path,value,field",
  [
    (ST_RECORD, ["task"], "video QA", "task"),
    (ST_RECORD, ["answer"], KeyError, "answer"),
    (ST_RECORD, ["frame_size"], KeyError, "frame_size"),
    (ST_RECORD, ["frame_size"], [100, 0], "frame_size"),
    (ST_RECORD, ["key_frames", 1, "time"], "5s", "key_frames[1]"),
    (ST_RECORD, ["key_items", "10"], KeyError, "key_items['10']"),
    (ST_RECORD, ["key_items", "4", "person", 0], [0.5, 0.1, 0.1, 0.5], "key_items['4']['person']"),
    (ST_RECORD, ["key_items", "4", "person", 0], [0.1, 0.1, 0.5], "key_items['4']['person']"),
    (TG_RECORD, ["answer"], "[6.0, 2.0]", "answer"),
    (TG_RECORD, ["answer"], "from 2 to 6", "answer"),
    (TG_MCQ_RECORD, ["answer"], "[2.0, 6.0]", "answer"),
    (TG_MCQ_RECORD, ["answer"], " \n[2.0, 6.0]", "answer"),
    (VQA_RECORD, ["answer"], "<obj>cup</obj>", "answer"),
    (VQA_RECORD, ["image_size"], KeyError, "image_size"),
    (MCQ_RECORD, ["answer"], "  ", "answer"),
  ],
)
def test_malformed_records_name_the_record_and_field(record, path, value, field):
  bad = _broken(record, path, value)
  with pytest.raises(RecordError) as info:
    record_gold(bad)
  assert repr(record["id"]) in str(info.value) and repr(field) in str(info.value)
  with pytest.raises(RecordError):  # score checks records before any completion
    score(["<think></think><answer>x</answer>"], [bad], 0.5)


def test_records_without_key_frames_score_zero_on_them():
  record = {**ST_RECORD, "key_frames": [], "key_items": {}}
  got = score(
    ["<think><obj>p</obj><box>[10,20,50,100]</box>at<t>2.0</t>s</think><answer>x</answer>"],
    [record],
    0.5,
  )
  assert got["thk_spatial"][0] == 0.0 and got["thk_temporal_point"][0] == 0.0
  assert got["format"][0] == 1.0


def test_numbers_in_bulk_equal_one_at_a_time():
  from o3jax.rewards.gold import _number, _numbers

  values = [
    1,
    2.5,
    -0.0,
    True,
    False,
    None,
    "1",
    10**400,
    float("nan"),
    float("inf"),
    np.float64(3.5),
    np.int64(2),
    1e308,
    -(10**20),
  ]
  for a in values:
    for b in values:
      got, want = _numbers([a, b, 1, 2.0]), [_number(v) for v in (a, b, 1, 2.0)]
      assert got == want or (np.isnan(got[0]) and np.isnan(want[0])), (a, b)


def test_records_shared_by_a_group_score_as_copies():
  """Gold is read and packed once per shared record object, then gathered."""
  texts = [case[0] for case in HAND_CASES]
  shared = {}
  records = [shared.setdefault(case[1]["id"], case[1]) for case in HAND_CASES]
  assert len({id(r) for r in records}) < len(records)
  got = score(texts, records, 0.5)
  want = score(texts, [copy.deepcopy(r) for r in records], 0.5)
  for k in got:
    np.testing.assert_array_equal(got[k], want[k])
