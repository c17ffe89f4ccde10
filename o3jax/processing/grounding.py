"""Grounded text (SPEC.md section 1): rendering claims and converting the boxes in it.

Dataset reasoning stores boxes normalised to [0, 1]; the model reads and writes absolute
pixels of the frame it sees, so boxes are rewritten at load time as the reference does
it: `[round(x1*W),round(y1*H),round(x2*W),round(y2*H)]`, no spaces. Visual-QA text holds
pixels of the original image and is rescaled to the processed image instead.
"""

import re
from collections.abc import Sequence

# The reference's box pattern for rewriting: anything but ']' between the brackets.
BOX_PATTERN = re.compile(r"<box>\[([^\]]*)\]</box>")


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
