"""scripts/eval_grounding.py: which tokens its box-token loss reads."""

import os
import sys

import numpy as np

from o3jax.processing.tokenizer import build_demo_tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))

import eval_grounding  # noqa: E402


def test_box_token_positions_are_the_digits_inside_boxes():
  demo_tokenizer = build_demo_tokenizer()
  prompt = "Where is the red circle at 2.5s? [1,2]"
  target = ("<think>I see the <obj>red circle</obj><box>[12,5,30,41]</box>at<t>2.5</t>s, "
            "then the <obj>red circle</obj><box>[7,60,9,88]</box>at<t>3.0</t>s.</think>")
  prompt_ids = demo_tokenizer.encode(prompt).ids
  ids = np.array(prompt_ids + demo_tokenizer.encode(target).ids)
  positions = eval_grounding.box_token_positions(demo_tokenizer, ids, len(prompt_ids))
  digits = "".join(demo_tokenizer.decode([int(ids[i])]) for i in positions)
  # The coordinates of both boxes, in order; not the times, nor the numbers of the prompt.
  assert digits.replace(",", "") == "1253041" + "760988"
  assert positions.min() > len(prompt_ids) and np.all(np.diff(positions) > 0)
