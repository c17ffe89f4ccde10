"""V-STaR query prompts: the five single-turn queries of a sample, and the judge's.

Modelled on the V-STaR reference prompts: what (free-form), chain 1 when (`[s, e]`
seconds), chain 1 where (a JSON object second -> [x1, y1, x2, y2] for each whole second
of the gold span), chain 2 where (told how many boxes), chain 2 when (given the gold
boxes without their times). Each returns the text that follows the video frames;
think=True appends the grounded-reasoning instruction (docs/reference.md section 1).
"""

from __future__ import annotations

from o3jax.eval.vstar import gold_boxes, gold_span, record_field, span_seconds, video_duration

THINK_INSTRUCTION = (
  "First think about the question inside <think> </think>, then give the final answer "
  "inside <answer> </answer>. Ground your reasoning in the video: whenever you mention "
  "an object, write it as <obj>name</obj><box>[x1,y1,x2,y2]</box>at<t>seconds</t>s."
)


def _finish(prompt: str, think: bool) -> str:
  return f"{prompt}\n{THINK_INSTRUCTION}" if think else prompt


def _size(record: dict, size) -> tuple[int, int]:
  if size is not None:
    return tuple(size)
  return record_field(record, "width"), record_field(record, "height")


def _fmt(x: float):
  return int(x) if x == int(x) else x


def what_prompt(record: dict, think: bool = True) -> str:
  """What: the free-form question."""
  prompt = (
    f"Answer the question about the video: {record_field(record, 'question')}\n"
    "(If the answer is a person, describe the person instead of naming them.)"
  )
  return _finish(prompt, think)


def when_prompt(record: dict, think: bool = True) -> str:
  """Chain 1 when: the moment the temporal question asks about, as [s, e] seconds."""
  prompt = (
    f"The video is {video_duration(record)} seconds long.\n"
    f"Answer the question about the video: {record_field(record, 'temporal_question')}\n"
    "Give the start and end time of that moment in seconds as [s, e], "
    "for example [3.0, 7.5]."
  )
  return _finish(prompt, think)


def where_prompt(record: dict, think: bool = True, size=None) -> str:
  """Chain 1 where: one box per whole second of the gold span, as JSON second -> box.

  size: (W, H) of the frames the boxes are to be given in (default: the record's).
  """
  w, h = _size(record, size)
  seconds = span_seconds(gold_span(record, None))
  prompt = (
    f"The video is {video_duration(record)} seconds long; its frames are {w}x{h} "
    "pixels (width x height).\n"
    "Answer the question about the video with bounding boxes: "
    f"{record_field(record, 'spatial_question')}\n"
    f"For each whole second in {seconds} (both ends included), give the box "
    "[x1, y1, x2, y2] of the object in pixels. Answer with one JSON object whose keys "
    "are the seconds as strings and whose values are the boxes, for example "
    f'{{"{seconds[0]}": [x1, y1, x2, y2], ...}}.'
  )
  return _finish(prompt, think)


def where_given_count_prompt(record: dict, think: bool = True, size=None) -> str:
  """Chain 2 where: the model picks the seconds itself and is told how many boxes."""
  w, h = _size(record, size)
  n = len(gold_boxes(record, None))
  prompt = (
    f"The video is {video_duration(record)} seconds long; its frames are {w}x{h} "
    "pixels (width x height).\n"
    "Answer the question about the video with bounding boxes: "
    f"{record_field(record, 'spatial_question_2')}\n"
    f"Find the whole seconds at which the object relevant to the question is visible "
    f"and give exactly {n} box(es) [x1, y1, x2, y2] in pixels, one per second; "
    "leave out the seconds that are not relevant. Answer with one JSON object whose "
    "keys are the seconds as strings and whose values are the boxes, for example "
    '{"4": [x1, y1, x2, y2], "5": [x1, y1, x2, y2]}.'
  )
  return _finish(prompt, think)


def when_given_boxes_prompt(record: dict, think: bool = True, size=None) -> str:
  """Chain 2 when: the gold boxes (without their times) are given as a hint.

  size: (W, H) of the frames the model sees; the gold boxes (in the record's
  width x height pixels) are rescaled to it and rounded to whole pixels.
  """
  w0, h0 = _size(record, None)
  w, h = _size(record, size)
  sx, sy = w / w0, h / h0
  scales = (sx, sy, sx, sy)
  boxes = [
    [_fmt(round(v * s)) if size is not None else _fmt(v) for v, s in zip(box, scales)]
    for _, box in gold_boxes(record, None)
  ]
  prompt = (
    f"The video is {video_duration(record)} seconds long; its frames are {w}x{h} "
    "pixels (width x height).\n"
    f"Answer the question about the video: {record_field(record, 'temporal_question')}\n"
    f"The key object appears in these {len(boxes)} bounding box(es) [x1, y1, x2, y2], "
    f"at times not given: {boxes}.\n"
    "Give the start and end time of that moment in seconds as [s, e], "
    "for example [3.0, 7.5]."
  )
  return _finish(prompt, think)


# ---------------------------------------------------------------- what-judge

JUDGE_SYSTEM_PROMPT = (
  "You compare a candidate answer with the correct answer to a question about a video. "
  "Rate how well the candidate's meaning matches the correct answer, ignoring grammar "
  "and wording: 0 = unrelated or wrong, 1 = mostly wrong, 2 = mostly right, "
  "3 = fully right. Reply with a single integer: 0, 1, 2 or 3."
)


def judge_prompt(question: str, gold: str, candidate: str) -> str:
  """User turn for a judge model (system turn: JUDGE_SYSTEM_PROMPT)."""
  return f"Question: {question}\nCorrect answer: {gold}\nCandidate answer: {candidate}\nScore:"
