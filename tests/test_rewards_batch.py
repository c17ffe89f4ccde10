"""Bulk reading (batch.py) equals per-completion reading (parse.py) packed plainly, on
adversarial text, with both its fast path (integer boxes) and the per-box path taken."""

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_rewards_reference import CLAIM

from o3jax.rewards import batch, parse
from o3jax.rewards.batch import ParsedArrays, bucket, choice_keys, parse_batch
from o3jax.rewards.claims import find_claims, linear_claims
from o3jax.rewards.parse import parse_completion


def packed_reference(texts, visual):
  """ParsedArrays from parse_completion, one completion at a time, plain python."""
  parsed = [parse_completion(t) for t in texts]
  n, n_pad = len(parsed), bucket(len(parsed))
  ids = {}
  choice = [
    [
      -1 if k is None else ids.setdefault(k, len(ids))
      for k in choice_keys(p.choice) + choice_keys(p.tg_choice)
    ]
    for p in parsed
  ]
  claims = [claim for p in parsed for claim in p.claims]
  boxes = [b for _, _, claim_boxes in claims for b in claim_boxes]
  times = [t for p in parsed for t in p.times]
  think_boxes = [p.think_boxes if v else () for p, v in zip(parsed, visual)]
  vboxes = [b for p_boxes in think_boxes for b in p_boxes]
  c, q, t, v = (bucket(len(x)) for x in (claims, boxes, times, vboxes))

  def padded(values, size, dtype, width=0, fill=0):
    out = np.full((size, width) if width else (size,), fill, dtype)
    for i, value in enumerate(values):
      out[i] = value
    return out

  def owners(counts, size, fill):
    return padded([i for i, k in enumerate(counts) for _ in range(k)], size, np.int32, fill=fill)

  arrays = ParsedArrays(
    has_think=padded([p.has_think for p in parsed], n_pad, bool),
    has_answer=padded([p.has_answer for p in parsed], n_pad, bool),
    balanced=padded([p.balanced for p in parsed], n_pad, bool),
    think_tags=padded([p.think_tags for p in parsed], n_pad, np.int32, 3),
    visual_grounded=padded([p.visual_grounded for p in parsed], n_pad, bool),
    n_claims=padded([len(p.claims) for p in parsed], n_pad, np.int32),
    n_times=padded([len(p.times) for p in parsed], n_pad, np.int32),
    span=padded([p.span or (0.0, 0.0) for p in parsed], n_pad, np.float64, 2),
    span_valid=padded([p.span is not None for p in parsed], n_pad, bool),
    answer_box=padded([p.answer_box or (0.0,) * 4 for p in parsed], n_pad, np.float64, 4),
    answer_box_valid=padded([p.answer_box is not None for p in parsed], n_pad, bool),
    choice=padded(choice, n_pad, np.int32, 4, fill=-1),
    claim_sample=owners([len(p.claims) for p in parsed], c, n_pad - 1),
    claim_time=padded([time for _, time, _ in claims], c, np.float64),
    claim_valid=padded([True] * len(claims), c, bool),
    box_claim=owners([len(claim_boxes) for _, _, claim_boxes in claims], q, c - 1),
    box=padded(boxes, q, np.float64, 4),
    box_valid=padded([True] * len(boxes), q, bool),
    time_sample=owners([len(p.times) for p in parsed], t, n_pad - 1),
    time=padded(times, t, np.float64),
    time_valid=padded([True] * len(times), t, bool),
    vbox_sample=owners([len(b) for b in think_boxes], v, n_pad - 1),
    vbox=padded(vboxes, v, np.float64, 4),
    vbox_valid=padded([True] * len(vboxes), v, bool),
  )
  return arrays, ids, [p.choice for p in parsed]


def assert_same_reading(texts, visual):
  got = parse_batch(texts, visual)
  want, ids, answers = packed_reference(texts, visual)
  for name, value in want._asdict().items():
    have = getattr(got.arrays, name)
    assert have.dtype == value.dtype and have.shape == value.shape, name
    # bit for bit (nan == nan; the sign of a zero counts)
    assert np.array_equal(have.view(np.uint8), value.view(np.uint8)), (name, have, value)
  assert got.choice_ids == ids and got.answers == answers


NAMES = ["dog", "", " a b ", "x\ny", "é"]
INT_BOXES = [
  "[1,2,3,4]",
  "[10, 20, 50, 100]",
  "[ -5 ,0, -0 ,7 ]",
  "[0,0,0,0]",
  "[374,67,420,224]",
  "[999999999999999,-999999999999999,1,2]",
]
OTHER_BOXES = [
  "[01,2,3,4]",
  "[1,2,3]",
  "[1,2,3,4,5]",
  "[1.5,2,3,4]",
  "[-0.0,1,2,3]",
  "[1e3,2,3,4]",
  "[9999999999999999,1,2,3]",
  "[1,\n2,3,4]",
  "[1,\t2,3,4]",
  '["1",2,3,4]',
  "[true,1,2,3]",
  "[]",
  "[-,1,2,3]",
  "[1 2,3,4,5]",
  "[1,2,,3]",
  "[[1,2],3,4]",
  "[1,2,3,4",
  "[+1,2,3,4]",
  "[1.,2,3,4]",
  "[\u0661,2,3,4]",
  "[" + "9" * 400 + ",1,2,3]",
  "[1,2,3,1" + "0" * 400 + ".0]",
]
TIMES = [
  "1",
  "2.5",
  " 3 ",
  "4.0",
  "12.25",
  "1.2.3",
  "nan",
  "inf",
  "",
  "\u0663.5",
  "1e1",
  "-1",
  "1_0",
  "x",
]
STRAYS = [
  "<obj>",
  "</obj>",
  "<t>",
  "</t>",
  "<box>",
  "</box>",
  "<box>[1,2,3,4]</box>",
  "<obj>cup</obj><box>[1,2,3,4]</box>",
  "at<t>",
  "</t>s",
  "]</box>",
  "<box>[",
  "\n",
  "<think>",
  "</answer>",
  "<t",
  "</bo",
  "<ob",
  ">",
  "j>",
  "x>",
  "\0",
]
WORDS = ["the", "a dog", " ", "at", "s", "walks", "1", "[", "]"]


@st.composite
def claims(draw, boxes):
  name = draw(st.sampled_from(NAMES))
  units = "".join(f"<box>{b}</box>" for b in draw(st.lists(boxes, min_size=1, max_size=4)))
  return f"<obj>{name}</obj>{units}at<t>{draw(st.sampled_from(TIMES))}</t>s"


int_claims = claims(st.sampled_from(INT_BOXES))
any_claims = claims(st.sampled_from(INT_BOXES + OTHER_BOXES))
parts = (
  int_claims
  | any_claims
  | st.sampled_from(STRAYS + WORDS)
  | st.sampled_from(TIMES).map("<t>{}</t>s".format)
  | st.text(max_size=3)
)
thinks = (
  st.lists(int_claims | st.sampled_from(WORDS), max_size=12).map(" ".join)
  | st.lists(parts, max_size=12).map(" ".join)
  | st.lists(parts, max_size=12).map("".join)
)
answers = st.sampled_from(
  [
    "A",
    " (B) ",
    "[C]",
    "D.",
    "dog walks",
    "",
    "From <t>2</t>s to <t>5.5</t>s\nCorrect Option: C",
    "<obj>cup</obj><box>[1,2,3,4]</box>",
    "<box>[1, 2,3,4]</box>",
  ]
)


@st.composite
def completions(draw):
  think, answer = draw(thinks), draw(answers)
  layout = draw(
    st.sampled_from(
      [
        "{t}{a}",
        "{t}",
        "{a}",
        "{a}{t}",
        "<think>x</think>{t}{a}",
        "<think>{think}{a}",
        "{t}<answer>{answer}",
      ]
    )
  )
  return layout.format(
    t=f"<think>{think}</think>", a=f"<answer>{answer}</answer>", think=think, answer=answer
  )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(completions(), st.booleans()), min_size=1, max_size=6))
@example([("<think><obj>a</obj><box>[1,2,3,4]</box>at<t>1</t>s</think><answer>x</answer>", True)])
@example([("<think><t<obj>a</obj><box>[1,2,3,4]</box>at<t>1</t>s></think>", True)])
def test_parse_batch_equals_parse_completion(batch_items):
  texts, visual = zip(*batch_items)
  assert_same_reading(list(texts), list(visual))


def test_parse_batch_takes_both_paths(monkeypatch):
  """Non-vacuous: the fast path and the per-box path are each taken, reading the same."""
  calls = []

  def counted_read_claims(*args):
    calls.append(args)
    return parse.read_claims(*args)

  monkeypatch.setattr(batch, "read_claims", counted_read_claims)
  texts = [
    f"<think>{t}</think><answer>x</answer>"
    for t in [
      "the <obj>dog</obj><box>[1,2,3,4]</box><box>[5, 6,7,8]</box>at<t>1.5</t>s runs",
      "<obj>a</obj><box>[1,2,3,4]</box>at<t>1</t>s <t>3</t>s <box>[9,9,9,9]</box>",
      "<obj>a</obj><box>[1.5,2,3,4]</box>at<t>1</t>s",  # a decimal: per-box path
      "<obj>a</obj><box>[1,2,3,4]</box>at<t>1.2.3</t>s",  # a claim to drop
      "<obj>a</obj><obj>b</obj><box>[1,2,3,4]</box>at<t>2</t>s",  # name holding </obj>
    ]
  ]
  assert_same_reading(texts, [True] * len(texts))
  assert len(calls) == 3  # the last three


@pytest.mark.parametrize("box", INT_BOXES)
def test_integer_boxes_read_as_json(box):
  text = f"<think><obj>a</obj><box>{box}</box>at<t>1</t>s</think><answer>x</answer>"
  got = parse_batch([text]).arrays.box[0]
  want = np.array([float(v) for v in json.loads(box)])
  assert np.array_equal(got.view(np.uint8), want.view(np.uint8))  # -0 reads as 0


@settings(max_examples=1500, deadline=None)
@given(
  st.lists(
    st.sampled_from(
      [
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
    ),
    max_size=14,
  ).map("".join)
)
def test_linear_claims_equal_the_regex(text):
  """The matcher under find_claims' fast path, on its own."""
  want = [m.groups() for m in re.finditer(CLAIM, text, re.DOTALL)]
  assert linear_claims(text) == want == find_claims(text)
