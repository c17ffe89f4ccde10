"""Grounded evidence drawn on the frames the model saw: a PNG sheet, optionally a GIF.

A piece of evidence is one box of one claim (`<obj>NAME</obj><box>[x1,y1,x2,y2]</box>at
<t>T</t>s`, docs/reference.md section 1): pixel xyxy in the frame the model saw, and a time. It is
drawn on the shown frame nearest to its time (processing/evidence.py). Frames are enlarged
by a whole factor (nearest neighbour, so a box edge lands on exact pixels) until they are at
least `min_width` wide.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from o3jax.processing.evidence import nearest_frame

PALETTE = (
  (255, 64, 64),
  (64, 200, 255),
  (255, 220, 0),
  (80, 255, 120),
  (255, 120, 255),
  (255, 160, 40),
  (160, 160, 255),
  (255, 255, 255),
)
CAPTION_HEIGHT = 18
BACKGROUND = (16, 16, 16)
# With gold evidence beside the model's: one colour for each (PALETTE[0] is the model's).
MODEL = PALETTE[0]
GOLD = (80, 255, 120)


@dataclasses.dataclass(frozen=True)
class Evidence:
  name: str
  box: tuple[float, float, float, float]  # pixels of the frame the model saw
  time: float  # seconds


def colours(evidence: Sequence[Evidence]) -> dict[str, tuple[int, int, int]]:
  """One palette colour per object name, in order of first mention."""
  names: dict[str, tuple[int, int, int]] = {}
  for e in evidence:
    names.setdefault(e.name, PALETTE[len(names) % len(PALETTE)])
  return names


def scale_for(width: int, min_width: int) -> int:
  return max(1, math.ceil(min_width / max(width, 1)))


def box_on_panel(box, scale: int, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
  """The outline rectangle (inclusive pixel corners) of an xyxy box on a frame enlarged
  `scale` times, clipped to the (W, H) panel; None if nothing of it is inside.

  Corners are ordered, so a box written as [x2, y2, x1, y1] is drawn too."""
  x1, x2 = sorted((box[0], box[2]))
  y1, y2 = sorted((box[1], box[3]))
  w, h = size
  left, top = max(0, round(x1 * scale)), max(0, round(y1 * scale))
  right, bottom = min(w, round(x2 * scale)) - 1, min(h, round(y2 * scale)) - 1
  if right < left or bottom < top:
    return None
  return left, top, right, bottom


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow built without FreeType: a fixed bitmap font
    return ImageFont.load_default()


def draw_evidence(
  frame: np.ndarray,
  evidence: Sequence[Evidence],
  scale: int,
  palette: dict[str, tuple[int, int, int]],
  line_width: int | None = None,
  gold: Sequence[Evidence] = (),
) -> Image.Image:
  """The frame enlarged `scale` times with each box outlined and labelled `NAME T s`;
  `gold` boxes are drawn too, in GOLD colour, labelled below their box."""
  h, w = frame.shape[:2]
  image = Image.fromarray(np.asarray(frame, np.uint8)).convert("RGB")
  image = image.resize((w * scale, h * scale), Image.Resampling.NEAREST)
  draw = ImageDraw.Draw(image)
  font = _font(max(10, min(16, 4 * scale + 4)))
  width = line_width or max(2, scale // 2)
  items = [(e, GOLD, True) for e in gold] + [(e, palette[e.name], False) for e in evidence]
  for e, colour, below in items:
    rect = box_on_panel(e.box, scale, image.size)
    if rect is None:
      continue
    draw.rectangle(rect, outline=colour, width=width)
    name = e.name if len(e.name) <= 30 else e.name[:27] + "..."
    label = f"{name} {e.time:g}s"
    l, t, r, b = draw.textbbox((0, 0), label, font=font)
    above = rect[1] - (b - t) - 2
    if below or above < 0:  # gold labels under their box, the model's above (else below)
      ty = min(rect[3] + 1, image.size[1] - (b - t) - 2)
    else:
      ty = above
    tx = min(rect[0], max(0, image.size[0] - (r - l) - 2))
    draw.rectangle((tx, ty, tx + r - l + 2, ty + b - t + 2), fill=colour)
    draw.text((tx + 1 - l, ty + 1 - t), label, fill=(0, 0, 0), font=font)
  return image


def assign_frames(
  frame_times: Sequence[float], evidence: Sequence[Evidence]
) -> dict[int, list[Evidence]]:
  """Shown-frame index -> the evidence drawn on it (its nearest frame), frames in order."""
  by_frame: dict[int, list[Evidence]] = {}
  for e in evidence:
    by_frame.setdefault(nearest_frame(frame_times, e.time), []).append(e)
  return dict(sorted(by_frame.items()))


def _caption(panel: Image.Image, text: str) -> Image.Image:
  out = Image.new("RGB", (panel.size[0], panel.size[1] + CAPTION_HEIGHT), BACKGROUND)
  out.paste(panel, (0, 0))
  ImageDraw.Draw(out).text((4, panel.size[1] + 3), text, fill=(230, 230, 230), font=_font(12))
  return out


def evidence_panels(
  frames: np.ndarray,
  frame_times: Sequence[float],
  evidence: Sequence[Evidence],
  min_width: int = 320,
  gold: Sequence[Evidence] | None = None,
) -> list[Image.Image]:
  """One captioned panel per shown frame that holds evidence, in time order. With `gold`,
  the model's boxes are all MODEL colour and the gold ones GOLD, on the same frames."""
  palette = colours(evidence) if gold is None else {e.name: MODEL for e in evidence}
  scale = scale_for(frames.shape[2], min_width)
  size = (frames.shape[2] * scale, frames.shape[1] * scale)
  model_on = assign_frames(frame_times, evidence)
  gold_on = assign_frames(frame_times, gold or ())
  panels = []
  for i in sorted(set(model_on) | set(gold_on)):
    items = model_on.get(i, [])
    caption = f"frame {i + 1} at {frame_times[i]:g}s"
    hidden = sum(box_on_panel(e.box, scale, size) is None for e in items)
    if hidden:  # listed in the evidence table, but empty or outside the frame
      caption += f" ({hidden} empty or outside box{'es' if hidden > 1 else ''})"
    panel = draw_evidence(frames[i], items, scale, palette, gold=gold_on.get(i, []))
    panels.append(_caption(panel, caption))
  return panels


def _header(lines: Sequence[tuple[str, tuple[int, int, int] | None]], width: int) -> Image.Image:
  """Text lines, each after a colour swatch when it has a colour (the sheet's legend)."""
  font = _font(13)
  head = Image.new("RGB", (width, 4 + CAPTION_HEIGHT * len(lines)), BACKGROUND)
  draw = ImageDraw.Draw(head)
  for k, (text, colour) in enumerate(lines):
    y = 4 + k * CAPTION_HEIGHT
    x = 4
    if colour is not None:
      draw.rectangle((x, y + 2, x + 11, y + 13), fill=colour)
      x += 18
    draw.text((x, y), text, fill=colour or (255, 255, 255), font=font)
  return head


def evidence_sheet(
  frames: np.ndarray,
  frame_times: Sequence[float],
  evidence: Sequence[Evidence],
  title: str = "",
  columns: int = 4,
  min_width: int = 320,
  gold: Sequence[Evidence] | None = None,
  answers: tuple[str, str] | None = None,
) -> Image.Image:
  """The evidence panels in a grid of `columns`, under an optional title line. With
  `gold` (evidence) and `answers` (the model's, the gold one), the sheet compares: a legend
  line per side, the model's answer above the gold answer, both sets of boxes drawn."""
  panels = evidence_panels(frames, frame_times, evidence, min_width, gold)
  if not panels:
    scale = scale_for(frames.shape[2], min_width)
    blank = Image.new("RGB", (frames.shape[2] * scale, frames.shape[1] * scale), BACKGROUND)
    panels = [_caption(blank, "no grounded evidence in the answer")]
  pw, ph = panels[0].size
  cols = min(columns, len(panels))
  rows = -(-len(panels) // cols)
  width = cols * pw + (cols + 1) * 4
  lines: list[tuple[str, tuple[int, int, int] | None]] = [(title, None)] if title else []
  if gold is not None:
    model_answer, gold_answer = answers or ("", "")
    lines += [
      (f"model (its boxes and times): {model_answer or '(no answer)'}", MODEL),
      (f"gold (boxes and times of the annotation): {gold_answer}", GOLD),
    ]
  head = _header(lines, width) if lines else None
  top = head.size[1] if head else 0
  sheet = Image.new("RGB", (width, top + rows * ph + (rows + 1) * 4), BACKGROUND)
  if head:
    sheet.paste(head, (0, 0))
  for k, panel in enumerate(panels):
    r, c = divmod(k, cols)
    sheet.paste(panel, (4 + c * (pw + 4), top + 4 + r * (ph + 4)))
  return sheet


def evidence_gif(
  frames: np.ndarray,
  frame_times: Sequence[float],
  evidence: Sequence[Evidence],
  path: str,
  min_width: int = 320,
  frame_ms: int = 500,
) -> None:
  """Every shown frame in order, with the evidence drawn on its nearest frame."""
  palette = colours(evidence)
  scale = scale_for(frames.shape[2], min_width)
  on = assign_frames(frame_times, evidence)
  images = [
    _caption(draw_evidence(frame, on.get(i, []), scale, palette), f"{frame_times[i]:g}s")
    for i, frame in enumerate(frames)
  ]
  images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
