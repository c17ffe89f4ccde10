"""Synthetic scenes: coloured shapes on known straight-line tracks, rendered to video.

Each scene shows 2 or 3 objects of distinct colours and shapes. An object is visible
from s to e seconds (multiples of 0.5 s, frames s*fps .. e*fps inclusive) and moves in a
straight line; its box in a frame is the exact extent of its pixels. A scene is
determined by its random generator (`scene_rng(seed, prefix, i)`), so a dataset's scenes
can be rebuilt from its seed. Objects are one flat colour each, so `box_on_shape` checks
a claimed box against the pixels without annotation.
"""

import dataclasses
import os

import av
import numpy as np

from o3jax.grammar import is_number

COLOURS = {
  "red": (220, 40, 40),
  "green": (40, 180, 60),
  "blue": (50, 90, 230),
  "yellow": (235, 215, 40),
  "purple": (150, 60, 200),
  "orange": (245, 140, 30),
  "cyan": (40, 210, 215),
  "white": (245, 245, 245),
}
SHAPES = ("square", "circle", "triangle")
BACKGROUND = (25, 25, 30)


@dataclasses.dataclass(frozen=True)
class Track:
  """One object: visible on frames [first, last], moving linearly from p0 to p1 (top-left)."""

  colour: str
  shape: str
  size: int
  first: int
  last: int
  p0: tuple[float, float]
  p1: tuple[float, float]

  @property
  def name(self) -> str:
    return f"{self.colour} {self.shape}"

  def visible(self, frame: int) -> bool:
    return self.first <= frame <= self.last

  def top_left(self, frame: int) -> tuple[int, int]:
    a = (frame - self.first) / max(1, self.last - self.first)
    return (
      round(self.p0[0] + a * (self.p1[0] - self.p0[0])),
      round(self.p0[1] + a * (self.p1[1] - self.p0[1])),
    )

  def mask(self, frame: int, height: int, width: int) -> np.ndarray:
    """Pixels covered in a frame: pixel centres inside the shape."""
    x0, y0 = self.top_left(frame)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    u, v = (xs - x0) / self.size, (ys - y0) / self.size  # shape-local coordinates in [0, 1]
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if self.shape == "circle":
      inside &= (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    elif self.shape == "triangle":  # apex at the top centre
      inside &= np.abs(u - 0.5) <= v / 2
    return inside

  def direction(self) -> str:
    dx, dy = self.p1[0] - self.p0[0], self.p1[1] - self.p0[1]
    if abs(dx) >= abs(dy):
      return "from the left to the right" if dx > 0 else "from the right to the left"
    return "from the top to the bottom" if dy > 0 else "from the bottom to the top"


@dataclasses.dataclass(frozen=True)
class Scene:
  vid: str
  width: int
  height: int
  fps: int
  num_frames: int
  tracks: tuple[Track, ...]

  def render(self, frame: int) -> tuple[np.ndarray, dict[str, list[int]]]:
    """uint8 [H, W, 3] and the pixel box [x1, y1, x2, y2] of every visible object."""
    image = np.empty((self.height, self.width, 3), np.uint8)
    image[:] = BACKGROUND
    boxes = {}
    for track in self.tracks:
      if not track.visible(frame):
        continue
      mask = track.mask(frame, self.height, self.width)
      image[mask] = COLOURS[track.colour]
      rows, cols = np.nonzero(mask)
      boxes[track.name] = [
        int(cols.min()),
        int(rows.min()),
        int(cols.max()) + 1,
        int(rows.max()) + 1,
      ]
    return image, boxes

  def box(self, track: Track, frame: int) -> list[int]:
    return self.render(frame)[1][track.name]

  def normalized_box(self, track: Track, frame: int) -> list[float]:
    x1, y1, x2, y2 = self.box(track, frame)
    return [
      round(x1 / self.width, 3),
      round(y1 / self.height, 3),
      round(x2 / self.width, 3),
      round(y2 / self.height, 3),
    ]

  def seconds(self, frame: int) -> float:
    return frame / self.fps


def scene_rng(seed: int, prefix: str, i: int) -> np.random.Generator:
  """The generator of video `{prefix}{i:04d}` of a dataset written with `seed` (training
  videos "v", V-STaR videos "h"): it draws the scene, then that video's records. Anything that
  rebuilds a dataset's scenes (e.g. research/listings.py) draws them from here."""
  return np.random.default_rng([seed, 0 if prefix == "v" else 1, i])


def make_scene(vid: str, rng: np.random.Generator, width: int, height: int, fps: int) -> Scene:
  duration = int(rng.integers(4, 9))  # seconds
  num_frames = duration * fps + 1
  half = fps // 2  # frames per half second
  count = int(rng.integers(2, 4))
  colours = rng.choice(list(COLOURS), size=count, replace=False)
  shapes = rng.choice(SHAPES, size=count, replace=False)
  tracks = []
  for colour, shape in zip(colours, shapes):
    size = int(rng.integers(min(width, height) // 5, min(width, height) // 3 + 1))
    span = int(rng.integers(3, 2 * duration + 1))  # half seconds, at least 1.5 s
    start = int(rng.integers(0, 2 * duration - span + 1))
    first, last = start * half, (start + span) * half
    horizontal = rng.random() < 0.5
    lo, hi = 0, (width - size if horizontal else height - size)
    a, b = (lo, hi) if rng.random() < 0.5 else (hi, lo)
    other = float(rng.integers(0, (height - size if horizontal else width - size) + 1))
    p0, p1 = ((a, other), (b, other)) if horizontal else ((other, a), (other, b))
    tracks.append(Track(str(colour), str(shape), size, first, last, p0, p1))
  return Scene(vid, width, height, fps, num_frames, tuple(tracks))


def yuv420p_frame(rgb: np.ndarray) -> av.VideoFrame:
  """uint8 [H, W, 3] -> a yuv420p frame (BT.601, limited range, chroma averaged over 2x2
  blocks) converted in integer numpy and written with zeroed line padding: swscale's
  conversion and uninitialised padding bytes are both kept out of the encoder's input."""
  r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
  y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
  u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
  v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128
  h, w = y.shape
  pool = lambda c: (c.reshape(h // 2, 2, w // 2, 2).sum((1, 3)) + 2) // 4
  frame = av.VideoFrame(w, h, "yuv420p")
  for plane, data in zip(frame.planes, (y, pool(u), pool(v))):
    buf = np.zeros((plane.buffer_size // plane.line_size, plane.line_size), np.uint8)
    buf[: data.shape[0], : data.shape[1]] = data.clip(0, 255)
    plane.update(buf.tobytes())
  return frame


def write_video(scene: Scene, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, "w") as container:
    # Byte-identical output from run to run needs a deterministic encoder (MPEG-4 part 2,
    # one thread: libx264's output varied between runs even with one thread), explicit
    # timestamps and fully defined input frames (see yuv420p_frame).
    stream = container.add_stream("mpeg4", rate=scene.fps)
    stream.width, stream.height, stream.pix_fmt = scene.width, scene.height, "yuv420p"
    stream.codec_context.thread_count = 1
    # The encoder's default 200 kb/s smears moving shapes; at this rate the decoded frames
    # are as close to the rendered ones as libx264's at crf 18 (mean error ~1 level).
    stream.bit_rate = 4_000_000
    for frame in range(scene.num_frames):
      picture = yuv420p_frame(scene.render(frame)[0])
      picture.pts = frame
      for packet in stream.encode(picture):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def colour_mask(frame: np.ndarray, name: str) -> np.ndarray | None:
  """[H, W] bool: the pixels of a (decoded, resized) frame in the colour that starts `name`
  (within 40 per channel: video coding blurs edges); None for a name without a known colour.
  Objects are one flat colour each, so this finds one without annotation."""
  colour = COLOURS.get(name.split()[0]) if name.split() else None
  if colour is None:
    return None
  return (np.abs(frame.astype(int) - np.array(colour)) <= 40).all(-1)


def box_on_shape(frame: np.ndarray, name: str, box) -> bool:
  """Whether a claimed box sits on the named synthetic object in a frame: it holds at
  least half of the pixels of the name's colour, and those fill at least a quarter of it.
  A name without a known colour is never on."""
  mask = colour_mask(frame, name)
  if mask is None or len(box) != 4 or not all(map(is_number, box)):
    return False
  h, w = mask.shape
  x1, y1, x2, y2 = (int(round(min(max(v, 0), lim))) for v, lim in zip(box, (w, h, w, h)))
  if x2 <= x1 or y2 <= y1 or not mask.any():
    return False
  inside = mask[y1:y2, x1:x2].sum()
  return bool(inside >= 0.5 * mask.sum() and inside >= 0.25 * (x2 - x1) * (y2 - y1))
