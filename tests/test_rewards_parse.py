"""Host side: parser equal to the SPEC regexes, pathological text, never-raise properties,
memoised ROUGE equal to rouge_score (hypothesis)."""

import json
import math
import re

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer
from test_rewards_reference import CLAIM, HAND_CASES

from o3jax.rewards import parse_completion, score
from o3jax.rewards.claims import find_claims
from o3jax.rewards.rouge import rouge_accuracy
from o3jax.rewards.parse import (
  _INVALID_JSON,
  ANSWER,
  THINK,
  answer_text,
  block,
  box_value,
  four_numbers,
)

FRAGMENTS = [
  "<obj>",
  "</obj>",
  "<box>[",
  "]</box>",
  "<box>",
  "</box>",
  "[",
  "]",
  "at<t>",
  "</t>s",
  "</t>",
  "<t>",
  "at",
  "s",
  "a",
  "1",
  "2.5",
  ".",
  " ",
  "\n",
  ",",
  "<obj>a</obj>",
  "<box>[1,2,3,4]</box>",
  "<box>[10, 20, 50, 100]</box>",
  "at<t>2.0</t>s",
  "<t>1.2.3</t>s",
  "<think>",
  "</think>",
  "<answer>",
  "</answer>",
  "Correct Option:",
  " B",
  "(C)",
  "From <t>3</t>s to <t>8.5</t>s",
  "nan",
  "1e999",
  '"x"',
  "null",
  "[[",
  "]]",
  "\u0663",
]
fragment_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)
any_text = fragment_text | st.text(max_size=200)


CLAIM_PIECES = [
  "<obj>a</obj>",
  "<obj>",
  "</obj>",
  "<box>[1]</box>",
  "<box>[1,2,3,4]</box>",
  "at<t>1</t>s",
  "at<t>",
  "</t>s",
  "<box>[",
  "]</box>",
  "x",
  "\n",
]
claim_dense_text = st.lists(st.sampled_from(CLAIM_PIECES), max_size=14).map("".join)


@settings(max_examples=1500, deadline=None)
@given(
  claim_dense_text
  | st.lists(st.sampled_from(FRAGMENTS[:25]) | st.text(max_size=2), max_size=16).map("".join)
)
@example("<obj>a</obj><obj>b</obj><box>[1]</box>at<t>1</t>s<obj>c</obj><box>[2]</box>at<t>2</t>s")
@example("<obj>a</obj><box>[1]</box><box>[2]</box>at<t>x</t><box>[3]</box>at<t>3</t>s")
def test_find_claims_equals_the_regex(text):
  want = [m.groups() for m in re.finditer(CLAIM, text, re.DOTALL)]
  assert find_claims(text) == want


@settings(max_examples=500, deadline=None)
@given(any_text)
def test_blocks_equal_the_regexes(text):
  think = re.search(r"<think>(.*?)</think>", text, re.DOTALL)
  assert block(text, THINK) == (think.group(1) if think else None)
  answer = re.search(r"<answer>\s*(.*?)\s*</answer>", text, re.DOTALL)
  assert answer_text(text) == (answer.group(1).strip() if answer else "")
  assert (block(text, ANSWER) is not None) == bool(
    re.search(r"<answer>.*?</answer>", text, re.DOTALL)
  )


VALUES = [
  "0",
  "-0",
  "12",
  "-3.5",
  "1e3",
  "2E-2",
  "1e999",
  "-1e999",
  "01",
  "1.",
  ".5",
  "+1",
  "NaN",
  "Infinity",
  "9" * 400,
  "1" * 5000,
  "true",
  "null",
  '"1"',
  "[1]",
  "{}",
  "1_0",
  "\u0663",
  "]",
  "[",
  ",",
  "",
  " ",
  "\n",
  "\u00a0",
  "1] [2",
]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(VALUES), max_size=6))
def test_box_value_equals_json_loads(values):
  text = "[" + ",".join(values) + "]"
  try:
    want = four_numbers(json.loads(text))
  except ValueError:
    want = _INVALID_JSON
  assert box_value(text) == want


def test_long_box_runs_do_not_backtrack():
  """re.finditer needs ~2^n steps here (minutes at n = 30); the matcher is linear."""
  run = "<obj>a</obj>" + "<box>[1,2,3,4]</box>" * 2000
  assert find_claims(run + " then at <t>1</t>s") == []
  text = f"<think>{run}<obj>b</obj><box>[1,2,3,4]</box>at<t>2</t>s</think><answer>x</answer>"
  parsed = parse_completion(text)
  assert [c[1] for c in parsed.claims] == [2.0]  # the long run swallows nothing
  assert len(parsed.claims[0][2]) == 2001


def test_parse_keeps_reference_edge_semantics():
  p = parse_completion(
    "<think><obj> dog </obj><box>[1,2,3,4]</box><box>[1,2,3]</box>at<t> 4.5 </t>s "
    "<obj>x</obj><box>[1,2,,3]</box>at<t>1</t>s <obj>y</obj><box>[1,2,3,4]</box>at<t>nan</t>s"
    "<obj>z</obj><box>[0,0,1,1]</box>at<t>t1</t>s</think><answer> From <t>2</t>s to "
    "<t>1.5</t>s\nCorrect Option: B. Correct Option: C </answer>"
  )
  assert [(name, boxes) for name, _, boxes in p.claims] == [
    ("dog", ((1.0, 2.0, 3.0, 4.0),)),
    ("y", ((1.0, 2.0, 3.0, 4.0),)),
  ]
  assert p.claims[0][1] == 4.5 and math.isnan(p.claims[1][1])
  assert p.times == (1.0,)  # `<t>([\d.]+)</t>s` takes no spaces; dropped claims' times count
  assert p.span is None and p.tg_choice == "B."


def _records():
  return [case[1] for case in HAND_CASES if case[3] == "symmetric"] + [
    {"id": "g", "task": "General video QA Free-form", "question": "q", "answer": "a dog"}
  ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text)
def test_parse_never_raises(text):
  parsed = parse_completion(text)
  assert all(math.isfinite(v) for _, _, boxes in parsed.claims for b in boxes for v in b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_text, min_size=1, max_size=7), st.floats(0, 1), st.booleans())
def test_score_never_raises_and_stays_in_range(texts, fraction, one_sided):
  records = _records()
  records = [records[i % len(records)] for i in range(len(texts))]
  got = score(texts, records, fraction, temporal_gate="one_sided" if one_sided else "symmetric")
  for name, values in got.items():
    assert values.shape == (len(texts),) and np.isfinite(values).all(), name
    assert (values >= 0).all() and (values <= (4 if name == "total" else 1)).all(), name
  assert np.isin(got["format"], [0.0, 0.5, 1.0]).all()


@settings(max_examples=300, deadline=None)
@given(
  st.text(max_size=80)
  | st.lists(
    st.sampled_from(
      ["running", "runs", "ran", "the", "dogs", "dog's", "Dog", "RED", "vest,", "é", "12", "-"]
    ),
    max_size=12,
  ).map(" ".join),
  st.text(max_size=40),
)
def test_memoised_rouge_equals_rouge_score(prediction, reference):
  scores = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score(
    reference, prediction
  )
  mean = sum(s.fmeasure for s in scores.values()) / 3
  assert rouge_accuracy(reference, prediction) == min(1.0, max(0.0, mean))
  assert rouge_accuracy(reference, prediction) == rouge_accuracy(reference, prediction)
