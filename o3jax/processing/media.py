"""Reading videos (decord) and images (PIL) into resized uint8 frames.

Every failure is a `MediaError` that says what is wrong with which file: missing,
empty (0 bytes), unreadable or truncated, or a video without frames.
"""

import dataclasses
import os

import decord
import numpy as np
from PIL import Image

from o3jax.processing import frames as F
from o3jax.processing.config import ProcessingConfig


class MediaError(ValueError):
  """A video or image file that cannot be used."""


@dataclasses.dataclass(frozen=True)
class VideoClip:
  frames: np.ndarray  # uint8 [n, H, W, 3], resized
  indices: np.ndarray  # source frame index of each sampled frame
  sample_fps: float  # frames per second of the sampled sequence
  total_frames: int
  video_fps: float
  source_size: tuple[int, int]  # (W, H) of the file

  @property
  def frame_size(self) -> tuple[int, int]:
    """(W, H) of the frames the model sees."""
    return int(self.frames.shape[2]), int(self.frames.shape[1])


def _check_file(path: str, what: str) -> None:
  if not os.path.exists(path):
    raise MediaError(f"missing {what}: {path} does not exist")
  if not os.path.isfile(path):
    raise MediaError(f"{what} {path} is not a file")
  if os.path.getsize(path) == 0:
    raise MediaError(f"zero-length {what}: {path} is empty (0 bytes)")


def read_video(path: str, config: ProcessingConfig, num_threads: int = 1) -> VideoClip:
  """Samples and resizes the frames of a video file as docs/reference.md section 2 says."""
  _check_file(path, "video")
  try:
    reader = decord.VideoReader(path, num_threads=num_threads)
  except Exception as e:  # decord raises RuntimeError or its own DECORDError
    raise MediaError(f"unreadable or truncated video {path}: {_first_line(e)}") from None
  total = len(reader)
  if total == 0:
    raise MediaError(f"zero-length video: {path} has no frames")
  video_fps = float(reader.get_avg_fps())
  if not video_fps > 0:
    raise MediaError(f"unreadable video {path}: frame rate is {video_fps}")
  try:
    n = F.num_frames(total, video_fps, config)
  except ValueError as e:
    raise MediaError(f"video {path} is too short: {e}") from None
  indices = F.frame_indices(total, n, config)
  try:
    raw = reader.get_batch(indices.tolist()).asnumpy()
  except Exception as e:
    raise MediaError(
      f"unreadable or truncated video {path}: cannot decode frames "
      f"{indices.tolist()} of {total}: {_first_line(e)}"
    ) from None
  height, width = raw.shape[1:3]
  out_h, out_w = F.video_frame_size(height, width, n, config)
  frames = np.stack([F.resize(frame, out_h, out_w) for frame in raw])
  return VideoClip(
    frames, indices, F.sample_fps(n, total, video_fps), total, video_fps, (width, height)
  )


def read_image(path: str, what: str = "image") -> np.ndarray:
  """uint8 [H, W, 3]; transparent pixels are put on white, as qwen-vl-utils does."""
  _check_file(path, what)
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.split()[3])
        image = background
      return np.asarray(image.convert("RGB"))
  except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for unknown or truncated files
    raise MediaError(f"unreadable or truncated {what} {path}: {_first_line(e)}") from None


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__
