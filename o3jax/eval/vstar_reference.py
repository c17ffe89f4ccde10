"""The V-STaR evaluation protocol of the paper, as data: prompts, system prompts, settings.

Benchmark protocol reproduced byte for byte (the strings are the reference's; the code
that fills them in is o3jax's):
- generation: marinero4972/Open-o3-Video `eval/test/test_vstar_multi_images.py` (commit
  b3b396d1): the five queries (`get_answer_vqa`, `get_answer_temporal`,
  `get_answer_spatial`, `get_answer_spatial_2`, `get_answer_temporal_2`) and the frame
  labels (`create_frame_prompt`); system prompt "You are a helpful assistant."; frames
  at 1 fps, at most `video_max_frames` (16, `eval/config/vstar.yaml`);
  `eval/models/model_vllm.py`: greedy (temperature 0), repetition penalty 1.05,
  `max_tokens` 2,048 (vstar.yaml).
- judge: `eval/test/eval_vstar.py` (commit fed0e79e; the same text as the V-STaR repo's
  `eval.py`): system prompt and user template, Qwen2.5-72B-Instruct, greedy, 512 new
  tokens.

Each query holds the video placeholder `VIDEO_PLACEHOLDER` where the frames go (the what
query has none: the frames go first); `frame_lines` gives what replaces it.
"""

from __future__ import annotations

import math

SOURCE = "marinero4972/Open-o3-Video eval/test/test_vstar_multi_images.py"
JUDGE_SOURCE = "marinero4972/Open-o3-Video eval/test/eval_vstar.py (= V-STaR-Bench/V-STaR eval.py)"

# eval/config/vstar.yaml and eval/models/model_vllm.py
FPS = 1.0
MAX_FRAMES = 16
MAX_NEW_TOKENS = 2048
REPETITION_PENALTY = 1.05
JUDGE_MAX_NEW_TOKENS = 512
# qwen-vl-utils' defaults for an image given without a pixel budget (each frame is one)
IMAGE_MIN_PIXELS = 4 * 28 * 28
IMAGE_MAX_PIXELS = 16384 * 28 * 28

SYSTEM_PROMPT = "You are a helpful assistant."
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
FRAME_LINE = "Frame {index} at {seconds}s: " + IMAGE_PLACEHOLDER + "\n"

_THINK = (
  "You must first think about the reasoning process in the mind and then provide the user with"
  " the answer. The reasoning process and answer are enclosed within <think> </think> and"
  " <answer> </answer> tags, respectively."
)
_FROM_TO = "`From <t>start_time</t>s to <t>end_time</t>s'"

# (think mode, direct mode) per answer field
PROMPTS = {
  "answer_vqa": (
    "Answer the question about the video: {question} \n (If the answer is a person, you don't"
    " need to identify the person.)" + _THINK + " All reasoning must be grounded in visual"
    " evidence from the video. When you mention any related object, person, or specific visual"
    " element, you must strictly follow the following format:"
    " `<obj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`. Do not use"
    " <box>, <obj> and <t> in the answer part.",
    "Answer the question about the video: {question} \n (If the answer is a person, you don't"
    " need to identify the person.)",
  ),
  "answer_temporal": (
    "This video is {length} seconds long. " + VIDEO_PLACEHOLDER + "\nAnswer the question about"
    " the video: {temporal_question} \n. " + _THINK + " The answer must follow the following"
    " format: " + _FROM_TO,
    "This video is {length} seconds long. " + VIDEO_PLACEHOLDER + "\nAnswer the question about"
    " the video: {temporal_question} \nDirectly output the start and end moment timestamps. You"
    " must follow the following format: " + _FROM_TO + ".",
  ),
  "answer_spatial": (
    VIDEO_PLACEHOLDER + "\nPlease answer the question about the video: {spatial_question} with"
    " a series of bounding boxes in [x1, y1, x2, y2] format.\n" + _THINK + "\nIn the answer"
    " part, for each whole second within the time range {time_range} provided (inclusive of the"
    " boundaries), output a series of bounding boxes of the object in JSON format. The keys"
    " should be the whole seconds (as strings), and the values should be the box in [x1, y1, x2,"
    ' y2] format.\nExample output of the answer part: {{"{first_second}": [x1, y1, x2,'
    " y2],...}}\n",
    VIDEO_PLACEHOLDER + "\nPlease answer the question about the video: {spatial_question} with"
    " a series of bounding boxes in [x1, y1, x2, y2] format.\nFor each whole second within the"
    " time range {time_range} provided (inclusive of the boundaries), output a series of"
    " bounding boxes of the object in JSON format. The keys should be the whole seconds (as"
    " strings), and the values should be the box in [x1, y1, x2, y2] format.\nExample output:"
    ' {{"{first_second}": [x1, y1, x2, y2],...}}\n',
  ),
  "answer_spatial_2": (
    VIDEO_PLACEHOLDER + "\nPlease answer the question about the video: {spatial_question_2}"
    " with a series of bounding boxes in [x1, y1, x2, y2] format.\n" + _THINK + "\nIn the"
    " answer part, for each whole second that may related to the question, output a series of"
    " bounding boxes of the object in JSON format. You only need to output {num_boxes} bbox(es)."
    " You need to determine which frame is related to the question, and you don't need to"
    " output the bbox for the frames not related to the question.\nThe keys should be the whole"
    " seconds (as strings), and the values should be the bounding box in [x0,y0,x1,y1]"
    ' format.\n\nExample output of the answer part:\n{{"0": [x0,y0,x1,y1], "1":..., ...,'
    ' "{num_boxes}":...}} (if the frames at 0~{num_boxes} second are related to the'
    " questions)\n",
    VIDEO_PLACEHOLDER + "\nPlease answer the question about the video: {spatial_question_2}"
    " with a series of bounding boxes in [x1, y1, x2, y2] format.\nFor each whole second that"
    " may related to the question, output a series of bounding boxes of the object in JSON"
    " format. You only need to output {num_boxes} bbox(es). You need to determine which frame is"
    " related to the question, and you don't need to output the bbox for the frames not related"
    " to the question.\nThe keys should be the whole seconds (as strings), and the values should"
    ' be the bounding box in [x0,y0,x1,y1] format.\n\nExample output:\n{{"0": [x0,y0,x1,y1],'
    ' "1":..., ..., "{num_boxes}":...}} (if the frames at 0~{num_boxes} second are related to'
    " the questions)\n",
  ),
  "answer_temporal_2": (
    "This video is {length} seconds long with a resolution of {width}x{height} (width x"
    " height). " + VIDEO_PLACEHOLDER + "\nAnswer the question about the video:"
    " {temporal_question} \nThere are {num_boxes} bounding boxes of the key object related to"
    " the question in the video without knowing the time, which are:{boxes}. " + _THINK + " The"
    " answer must follow the following format: " + _FROM_TO,
    "This video is {length} seconds long with a resolution of {width}x{height} (width x"
    " height). " + VIDEO_PLACEHOLDER + "\nAnswer the question about the video:"
    " {temporal_question} \nThere are {num_boxes} bounding boxes of the key object related to"
    " the question in the video without knowing the time, which are:{boxes}. Directly output"
    " the start and end moment timestamps. You must follow the following format: " + _FROM_TO + ".",
  ),
}

JUDGE_SYSTEM_PROMPT = (
  "\nAs an AI assistant, your task is to evaluate a candidate answer in comparison to a given"
  " correct answer.\nThe question itself, the correct 'groundtruth' answer, and the candidate"
  " answer will be provided to you.\nYour assessment should range from 0 to 3, based solely on"
  " the semantic similarity between the groundtruth and the candidate answer, disregarding any"
  " grammatical differences.\nA rating of 0 suggests no similarity, implying the candidate"
  " answer is entirely incorrect.\nA rating of 1 suggests low similarity, meaning the candidate"
  " answer is largely incorrect.\nA rating of 2 suggests high similarity, meaning the candidate"
  " answer is largely correct.\nLastly, a rating of 3 indicates complete similarity, which"
  " means the candidate answer is entirely correct.\nYour response should be a single integer"
  " from 0, 1, 2, or 3.\n"
)
JUDGE_TEMPLATE = "Question: {}\nGroundtruth answer: {}\nCandidate answer: {}\nYour response: "


def judge_user_prompt(question: str, gold: str, candidate: str) -> str:
  return JUDGE_TEMPLATE.format(question, gold, candidate)


def gold_box_lists(record: dict) -> list[list]:
  """[xmin, ymin, xmax, ymax] of each gold box, the numbers as the annotation writes them
  (the reference prints this list into the chain-2 when prompt)."""
  return [[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in record["bboxes"]]


def query_texts(record: dict, think: bool = True) -> dict[str, str]:
  """The five queries of a V-STaR annotation record (the reference's reading of its fields:
  a missing one raises KeyError naming it)."""
  start, end = record["timestamps"]
  time_range = list(range(math.ceil(start), math.floor(end) + 1))
  boxes = gold_box_lists(record)
  fields = dict(
    question=record["question"],
    temporal_question=record["temporal_question"],
    spatial_question=record["spatial_question"],
    spatial_question_2=record["spatial_question_2"],
    length=round(record["frame_count"] / record["fps"], 2),
    width=record["width"],
    height=record["height"],
    time_range=time_range,
    first_second=time_range[0] if time_range else "",
    num_boxes=len(boxes),
    boxes=boxes,
  )
  return {f: pair[0 if think else 1].format(**fields) for f, pair in PROMPTS.items()}


def frame_lines(frame_times) -> str:
  """`Frame {k} at {t}s: <image>` lines for frames at `frame_times` seconds (t rounded to 0.1)."""
  return "".join(
    FRAME_LINE.format(index=i + 1, seconds=round(float(t), 1)) for i, t in enumerate(frame_times)
  )


def with_frames(text: str, frame_times) -> str:
  """The query with its placeholder replaced by the frame lines (prepended if it has none)."""
  lines = frame_lines(frame_times)
  return text.replace(VIDEO_PLACEHOLDER, lines) if VIDEO_PLACEHOLDER in text else lines + text
