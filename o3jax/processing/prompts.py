"""System prompts and user-text conventions of the reference (Open-o3 Video); the task
names live in o3jax.grammar.

The reference trains SFT and RL with different system prompts: the RL ones spell out the
grounded output format, the SFT ones are shorter. Temporal and general video questions
get a "Question: " prefix in SFT only.
"""

from o3jax.grammar import RELEVANCE_RATING, TEMPORAL_TASKS

STAGES = ("sft", "rl")

_THINK_ANSWER = (
  "The assistant MUST first think about the reasoning process in the mind and then provide the "
  "user with the answer. The reasoning process and answer are enclosed within <think> </think> "
  "and <answer> </answer> tags, respectively."
)
_IMAGE = "A conversation between user and assistant. The user provides an image and asks a question, and the Assistant solves it. "
_VIDEO = "A conversation between user and assistant. The user provides a video and asks a question, and the Assistant solves it. "
_VIDEO_MCQ = (
  "A conversation between user and assistant. The user provides a video and asks a multiple-choice "
  "question, and the Assistant solves it. "
)
_TEMPORAL = (
  "A conversation between user and assistant. The user provides a video and asks a question, and the "
  "Assistant determines the precise time period that answers the question. "
)
_TEMPORAL_MCQ = (
  "A conversation between user and assistant. The user provides a video and a multiple-choice "
  "question, and the Assistant determines the precise time period that answers the question and "
  "selects the correct option. "
)
_GROUNDED = (
  " All reasoning must be grounded in visual evidence from the video. When you mention any related "
  "object, person, or specific visual element{where}, you must strictly follow the following format: "
  "`<obj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`."
)
_NO_TAGS = (
  " The answer part only requires a text response; tags like <obj>, <box>, <t> are not needed."
)
_TIME_FORMAT = " When mentioning time during the reasoning process, the assistant must use the format: `<t>time_in_seconds</t>s'."
# The reference writes "\\n" here: the prompt shows a backslash and an n, not a line break.
_MCQ_FORMAT = (
  " The answer must strictly follow the following format: `From <t>start_time</t>s to "
  "<t>end_time</t>s.\\nCorrect Option: [ONLY THE LETTER]'."
)

# The reference SFT script has no temporal-MCQ branch; its RL prompt is used for both stages.
SYSTEM_PROMPTS = {
  "sft": {
    "visual QA": _IMAGE
    + _THINK_ANSWER
    + " When referring to particular objects in the reasoning process, "
    "the assistant MUST localize the object with bounding box coordinates between <box> and </box>. You MUST "
    "strictly follow the format.",
    "temporal-spatial free-form QA": _VIDEO + _THINK_ANSWER + _GROUNDED.format(where=""),
    "temporal QA": _TEMPORAL
    + _THINK_ANSWER
    + " The answer must strictly follow the following format: "
    "`From <t>start_time</t>s to <t>end_time</t>s'",
    "temporal QA (MCQ)": _TEMPORAL_MCQ + _THINK_ANSWER + _TIME_FORMAT + _MCQ_FORMAT,
    "General video QA MCQ": _VIDEO_MCQ
    + _THINK_ANSWER
    + " Only output the correct option in the <answer> "
    "</answer> section.",
    "General video QA Free-form": _VIDEO + _THINK_ANSWER,
  },
  "rl": {
    "visual QA": _IMAGE
    + _THINK_ANSWER
    + " When referring to particular objects in the reasoning process, "
    "the assistant must localize the object with bounding box coordinates between <box> and </box>. The "
    "answer must strictly follow the following format:`<obj>object_name</obj><box>bounding_box</box>'.",
    "temporal-spatial free-form QA": _VIDEO
    + _THINK_ANSWER
    + _GROUNDED.format(where=" in the reasoning process")
    + _NO_TAGS,
    "temporal QA": _TEMPORAL + _THINK_ANSWER + _TIME_FORMAT + "The answer must strictly follow the "
    "following format: `From <t>start_time</t>s to <t>end_time</t>s'.",
    "temporal QA (MCQ)": _TEMPORAL_MCQ + _THINK_ANSWER + _TIME_FORMAT + _MCQ_FORMAT,
    "General video QA MCQ": _VIDEO_MCQ
    + _THINK_ANSWER
    + _GROUNDED.format(where=" in the reasoning process")
    + " Only output the correct option in the <answer> </answer> section.",
    "General video QA Free-form": _VIDEO
    + _THINK_ANSWER
    + _GROUNDED.format(where=" in the reasoning process")
    + _NO_TAGS,
  },
}


RATING_PROMPT = (
  "Question: {question}\nThis image is a region cropped from a frame of the video. How "
  "relevant is it to answering the question? Reply with one number: 0 = not relevant, "
  "1 = partly relevant, 2 = clearly relevant."
)


def system_prompt(task: str, stage: str) -> str | None:
  """The task's system prompt; None for a relevance rating (asked without one)."""
  if task == RELEVANCE_RATING:
    return None
  return SYSTEM_PROMPTS[stage][task]


def question_text(task: str, question: str, stage: str) -> str:
  """The user's text after the visual input."""
  if task == RELEVANCE_RATING:
    return RATING_PROMPT.format(question=question)
  if stage == "sft" and (task in TEMPORAL_TASKS or task.startswith("General video QA")):
    return "Question: " + question
  return question


def frame_label(k: int, seconds: float) -> str:
  """Text before the k-th (1-based) frame image in the reference training format."""
  return f"Frame {k} at {seconds}s: "


def duration_line(seconds: int) -> str:
  return f"The video is in total {seconds} seconds.\n"
