"""TVGBench and multiple-choice scoring: hand-computed cases and malformed answers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from o3jax.eval import mcq, tvg


# ---------------------------------------------------------------- TVGBench


@pytest.mark.parametrize(
  "text,expected",
  [
    ("The event happens from 2.5 to 7 seconds.", (2.5, 7.0)),
    ("<think>maybe 1 to 2</think><answer>3 to 9</answer>", (3.0, 9.0)),  # last match wins
    ("between 4 and 6", (4.0, 6.0)),
    ("12. to 14", (12.0, 14.0)),
    ("4-6", None),
    ("4 until 6", None),
    ("", None),
    (None, None),
    ("from  3 to 5", (3.0, 5.0)),
  ],
)
def test_parse_tvg_answer(text, expected):
  assert tvg.parse_tvg_answer(text) == expected


def test_tvg_hand_computed():
  outputs = ["0 to 5", "<answer>2 to 8</answer>", "9 to 3", "no idea", "It is 0 and 10."]
  # tIoU vs [0, 10]: 0.5, 0.6, 0 (end < start), 0 (unparsed), 1
  records = [{"qid": f"q{i}", "output": o, "target": [0, 10]} for i, o in enumerate(outputs)]
  m = tvg.score_tvg(records)
  assert [i["tiou"] for i in m["per_item"]] == pytest.approx([0.5, 0.6, 0.0, 0.0, 1.0])
  assert m["miou"] == pytest.approx(2.1 / 5)
  assert m["r1@0.3"] == pytest.approx(3 / 5)
  assert m["r1@0.5"] == pytest.approx(2 / 5)  # 0.5 itself is not > 0.5
  assert m["r1@0.7"] == pytest.approx(1 / 5)
  assert m["n"] == 5 and m["n_unparsed"] == 1
  assert m["per_item"][0]["qid"] == "q0"


def test_tvg_field_aliases_and_errors():
  m = tvg.score_tvg(
    [{"output_text": "1 to 3", "timestamp": [1, 3]}, {"response": "1 to 2", "gt": [0, 4]}]
  )
  assert m["miou"] == pytest.approx((1 + 0.25) / 2)
  with pytest.raises(ValueError, match="record 1: none of the fields target"):
    tvg.score_tvg([{"output": "1 to 2", "target": [0, 3]}, {"output": "1 to 2"}])
  with pytest.raises(ValueError, match="record 0: gold span ends before it starts"):
    tvg.score_tvg([{"output": "1 to 2", "target": [5, 3]}])
  with pytest.raises(ValueError, match="record 0: none of the fields output"):
    tvg.score_tvg([{"target": [0, 3]}])
  with pytest.raises(ValueError, match="no records"):
    tvg.score_tvg([])


def test_tvg_non_text_output_scores_zero():
  m = tvg.score_tvg([{"output": None, "target": [0, 3]}, {"output": 5, "target": [0, 3]}])
  assert m["miou"] == 0.0 and m["n_unparsed"] == 2


# ---------------------------------------------------------------- MCQ

OPTIONS = ["A. a blue car", "B. a red car", "C. a dog", "D. nothing"]


@pytest.mark.parametrize(
  "text,options,expected",
  [
    ("B", None, "B"),
    ("(B)", None, "B"),
    ("[C].", None, "C"),
    ("B: a dog", None, "B"),
    ("B. a red car", None, "B"),
    ("The correct answer is (B).", None, "B"),
    ("Best option: C", None, "C"),
    ("Option A", None, "A"),
    ("I think the answer is D because", None, "D"),
    ("<think>A or B?</think><answer>C</answer>", None, "C"),
    ("Between <t>1</t>s and <t>4</t>s.\nCorrect Option: D", None, "D"),
    ("The man in the video is A", None, "A"),
    ("A man is cooking", None, None),  # article, not an option
    ("A man holds B", None, "B"),
    ("answer: a dog", None, None),  # lowercase is not a letter
    ("B or C", None, None),  # ambiguous
    ("E", OPTIONS, None),  # not a valid option
    ("a red car", OPTIONS, "B"),
    ("A Red Car!", OPTIONS, "B"),
    ("a red car", None, None),
    ("", None, None),
    (None, None, None),
    (3, None, None),
  ],
)
def test_extract_letter(text, options, expected):
  assert mcq.extract_letter(text, options) == expected


def test_mcq_hand_computed_with_breakdowns():
  rows = [  # id, gold, response, duration, task type, options
    ("1", "A", "A", "short", "counting", None),
    ("2", "B", "The answer is (C).", "short", "counting", None),
    ("3", "C", "<answer>C. a dog</answer>", "long", "ocr", None),
    ("4", "D", "no idea", "long", "ocr", OPTIONS),
    ("5", "B. a red car", "a red car", "long", "ocr", OPTIONS),
  ]
  records = [
    {
      "question_id": i,
      "answer": gold,
      "response": text,
      "duration": duration,
      "task_type": task,
      **({"options": options} if options else {}),
    }
    for i, gold, text, duration, task, options in rows
  ]
  m = mcq.score_mcq(records)
  assert m["n"] == 5 and m["acc"] == pytest.approx(3 / 5) and m["n_unparsed"] == 1
  assert m["by_duration"] == {
    "long": {"n": 3, "acc": pytest.approx(2 / 3)},
    "short": {"n": 2, "acc": 0.5},
  }
  assert m["by_task_type"]["ocr"]["acc"] == pytest.approx(2 / 3)
  assert "by_domain" not in m
  assert [i["pred"] for i in m["per_item"]] == ["A", "C", "C", None, "B"]
  assert [i["id"] for i in m["per_item"]] == ["1", "2", "3", "4", "5"]
  only = mcq.score_mcq(records, group_fields=("task_type",))
  assert set(k for k in only if k.startswith("by_")) == {"by_task_type"}


def test_mcq_errors_name_the_record():
  with pytest.raises(ValueError, match="MCQ record 1: field 'answer' holds no option letter"):
    mcq.score_mcq([{"answer": "A", "response": "A"}, {"answer": "maybe", "response": "A"}])
  with pytest.raises(ValueError, match="MCQ record 0: field 'answer' is missing"):
    mcq.score_mcq([{"response": "A"}])
  with pytest.raises(ValueError, match="MCQ record 0: none of the fields response"):
    mcq.score_mcq([{"answer": "A"}])


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ABCDEabc()[].: \n<>/answerCorrectOption0123456789to", max_size=60))
def test_text_parsers_never_raise(text):
  letter = mcq.extract_letter(text, OPTIONS)
  assert letter is None or letter in "ABCD"
  span = tvg.parse_tvg_answer(text)
  assert span is None or len(span) == 2
