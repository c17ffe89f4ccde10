"""The grounded-text grammar (docs/reference.md sections 1 and 3): task names, the tags of an
answer, and how boxes, times and claims are written and read.

One home for what the data writes, the rewards parse and the benchmarks read, so the three
cannot drift apart. Nothing here imports o3jax: every layer may read it.

    <think>... <obj>NAME</obj><box>[x1,y1,x2,y2]</box>...at<t>T</t>s ...</think>
    <answer>... From <t>S</t>s to <t>E</t>s. Correct Option: B</answer>

Dataset reasoning stores boxes normalised to [0, 1]; the model reads and writes absolute
pixels of the frame it sees, so boxes are rewritten at load time as the reference does
it: `[round(x1*W),round(y1*H),round(x2*W),round(y2*H)]`, no spaces. Visual-QA text holds
pixels of the original image and is rescaled to the processed image instead.

The claim pattern `<obj>(.*?)</obj>((?:<box>\\[.*?\\]</box>)+)at<t>(.*?)</t>s` (DOTALL) is
matched by `o3jax.rewards.claims`, in linear time.
"""

import math
import re
from collections.abc import Sequence

# ---------------------------------------------------------------------------- tasks

SPATIO_TEMPORAL = "temporal-spatial free-form QA"
TEMPORAL = "temporal QA"
TEMPORAL_MCQ = "temporal QA (MCQ)"
VISUAL = "visual QA"
GENERAL_MCQ = "General video QA MCQ"
GENERAL_FREE_FORM = "General video QA Free-form"
# The six STGR tasks, in the order of the reward tables (rewards/kernels.py).
TASKS = (SPATIO_TEMPORAL, TEMPORAL, TEMPORAL_MCQ, VISUAL, GENERAL_MCQ, GENERAL_FREE_FORM)
# Not an STGR task: SFT records that teach a model to answer the one-crop relevance-rating
# prompt of our per-crop test-time scaling (`rating="per_crop"`; the reference's joint
# prompt is eval/bench_prompts.RATING_*). No system prompt, no think block: the user turn
# is an evidence crop and RATING_PROMPT, the target one digit.
RELEVANCE_RATING = "relevance rating"
SFT_ONLY_TASKS = (RELEVANCE_RATING,)
TEMPORAL_TASKS = (TEMPORAL, TEMPORAL_MCQ)
IMAGE_TASKS = (VISUAL, RELEVANCE_RATING)

# ---------------------------------------------------------------------------- tags

THINK = ("<think>", "</think>")
ANSWER = ("<answer>", "</answer>")
CORRECT_OPTION = "Correct Option:"
# The answer block as the benchmarks read it: an unclosed one runs to the end.
ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
# A time in think (the reward's reading); `1.2.3` matches and then fails float().
TIME_RE = re.compile(r"<t>([\d.]+)</t>s")
# A time as the answer of a temporal question writes it.
SECONDS_RE = re.compile(r"<t>(\d+\.?\d*)</t>s")
SPAN_RE = re.compile(r"<t>(\d+\.?\d*)</t>s to <t>(\d+\.?\d*)</t>s")
BOX_RE = re.compile(r"<box>(\[.*?\])</box>")  # a box as the rewards read it (JSON inside)
CLAIM_BOX_RE = re.compile(r"\[.*?\]")  # one box of a claim's box run
VISUAL_GROUNDING_RE = re.compile(r"<obj>(\w+)</obj><box>(\[.*?\])</box>")
# The reference's box pattern for rewriting: anything but ']' between the brackets.
BOX_PATTERN = re.compile(r"<box>\[([^\]]*)\]</box>")

# ---------------------------------------------------------------------------- values


def is_number(x) -> bool:
  """A finite int or float (bool excluded: JSON `true` is not a coordinate)."""
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def answer_block(text: str) -> str:
  """Content of the first <answer> block (to the end if unclosed), else the text; stripped.
  The benchmarks' lenient reading (the rewards read closed blocks only: rewards/parse.py)."""
  found = ANSWER_RE.search(text)
  return found.group(1).strip() if found else text.strip()


def parse_box(inside: str) -> list[float]:
  """The numbers of one `<box>[...]</box>` body; raises ValueError if malformed."""
  values = [float(v) for v in inside.split(",")]
  if len(values) != 4:
    raise ValueError(f"a box needs 4 numbers, got {len(values)}: [{inside}]")
  return values


def find_boxes(text: str) -> list[str]:
  """The bodies of all `<box>[...]</box>` in text, in order."""
  return BOX_PATTERN.findall(text)


def format_box(box: Sequence[float]) -> str:
  """`<box>[x1,y1,x2,y2]</box>` with integers, or numbers as given if not integral."""
  return "<box>[" + ",".join(_number(v) for v in box) + "]</box>"


def format_claim(name: str, boxes: Sequence[Sequence[float]], seconds: float) -> str:
  """`<obj>NAME</obj><box>[..]</box>...at<t>T</t>s`."""
  return (
    f"<obj>{name}</obj>"
    + "".join(format_box(b) for b in boxes)
    + f"at<t>{round(float(seconds), 2)}</t>s"
  )


def normalized_to_pixels(text: str, frame_size: tuple[int, int]) -> str:
  """Rewrites every normalised box in text to pixels of a (W, H) frame."""
  width, height = frame_size
  scale = (width, height, width, height)
  return BOX_PATTERN.sub(
    lambda m: format_box([round(v * s) for v, s in zip(parse_box(m.group(1)), scale)]), text
  )


def rescale_pixels(text: str, old_size: tuple[int, int], new_size: tuple[int, int]) -> str:
  """Rewrites every pixel box in text from an (W, H) image to a resized (W', H') one."""
  rx, ry = new_size[0] / old_size[0], new_size[1] / old_size[1]
  scale = (rx, ry, rx, ry)
  return BOX_PATTERN.sub(
    lambda m: format_box([round(v * s) for v, s in zip(parse_box(m.group(1)), scale)]), text
  )


def _number(value: float) -> str:
  if float(value).is_integer():
    return str(int(value))
  return repr(round(float(value), 3))
