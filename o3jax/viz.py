"""Grounded evidence drawn on the frames the model saw: a PNG sheet, optionally a GIF.

A piece of evidence is one box of one claim (`<obj>NAME</obj><box>[x1,y1,x2,y2]</box>at
<t>T</t>s`, SPEC.md section 1): pixel xyxy in the frame the model saw, and a time. It is
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
) -> Image.Image:
  """The frame enlarged `scale` times with each box outlined and labelled `NAME T s`."""
  h, w = frame.shape[:2]
  image = Image.fromarray(np.asarray(frame, np.uint8)).convert("RGB")
  image = image.resize((w * scale, h * scale), Image.Resampling.NEAREST)
  draw = ImageDraw.Draw(image)
  font = _font(max(10, min(16, 4 * scale + 4)))
  width = line_width or max(1, scale // 2)
  for e in evidence:
    rect = box_on_panel(e.box, scale, image.size)
    if rect is None:
      continue
    colour = palette[e.name]
    draw.rectangle(rect, outline=colour, width=width)
    name = e.name if len(e.name) <= 30 else e.name[:27] + "..."
    label = f"{name} {e.time:g}s"
    tx, ty = rect[0], rect[1]
    l, t, r, b = draw.textbbox((0, 0), label, font=font)
    ty = ty - (b - t) - 2 if ty - (b - t) - 2 >= 0 else rect[3] + 1  # above the box, else below
    tx = min(tx, max(0, image.size[0] - (r - l) - 2))
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
) -> list[Image.Image]:
  """One captioned panel per shown frame that holds evidence, in time order."""
  palette = colours(evidence)
  scale = scale_for(frames.shape[2], min_width)
  size = (frames.shape[2] * scale, frames.shape[1] * scale)
  panels = []
  for i, items in assign_frames(frame_times, evidence).items():
    caption = f"frame {i + 1} at {frame_times[i]:g}s"
    hidden = sum(box_on_panel(e.box, scale, size) is None for e in items)
    if hidden:  # listed in the evidence table, but empty or outside the frame
      caption += f" ({hidden} empty or outside box{'es' if hidden > 1 else ''})"
    panels.append(_caption(draw_evidence(frames[i], items, scale, palette), caption))
  return panels


def evidence_sheet(
  frames: np.ndarray,
  frame_times: Sequence[float],
  evidence: Sequence[Evidence],
  title: str = "",
  columns: int = 4,
  min_width: int = 320,
) -> Image.Image:
  """The evidence panels in a grid of `columns`, under an optional title line."""
  panels = evidence_panels(frames, frame_times, evidence, min_width)
  if not panels:
    scale = scale_for(frames.shape[2], min_width)
    blank = Image.new("RGB", (frames.shape[2] * scale, frames.shape[1] * scale), BACKGROUND)
    panels = [_caption(blank, "no grounded evidence in the answer")]
  pw, ph = panels[0].size
  cols = min(columns, len(panels))
  rows = -(-len(panels) // cols)
  head = CAPTION_HEIGHT + 4 if title else 0
  sheet = Image.new(
    "RGB", (cols * pw + (cols + 1) * 4, head + rows * ph + (rows + 1) * 4), BACKGROUND
  )
  if title:
    ImageDraw.Draw(sheet).text((4, 4), title, fill=(255, 255, 255), font=_font(13))
  for k, panel in enumerate(panels):
    r, c = divmod(k, cols)
    sheet.paste(panel, (4 + c * (pw + 4), head + 4 + r * (ph + 4)))
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
