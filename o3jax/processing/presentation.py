"""How a video or an image is laid out in the user turn, with its pixel arrays.

"frames" (reference training format, docs/reference.md section 2): every sampled frame is an image
after `Frame {k} at {t}s: ` (k from 1, t = round(i / sample_fps, 1)), each followed by a
line break; annotated key frames (already resized to the frame size) are inserted in time
order before the first sampled frame whose whole second int(i / sample_fps) is >= the
key frame's time, labelled with round(time, 1); then
`The video is in total {int(n / sample_fps)} seconds.\\n`. Key frames later than every
sampled frame's second go after the last frame (the reference drops them).
"video" (Qwen2.5-VL native): one video placeholder, temporal patches of 2 frames,
second_per_grid_ts = 2 / sample_fps; key frames are not shown. Qwen3-VL's native video
(config.model_type "qwen3_vl") is the same pixels laid out as Qwen3VLProcessor expands
its video token: per temporal patch, `<{t:.1f} seconds>` then the patch's own
vision-start, pads and vision-end (t from `frames.frame_timestamps`).
"""

import dataclasses
from typing import Sequence

import numpy as np

from o3jax.processing import frames as F
from o3jax.processing import patchify, prompts
from o3jax.processing.chat import Content, Vision
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.media import VideoClip


@dataclasses.dataclass(frozen=True)
class VisualInput:
  """The user-turn content before the question, and the arrays its placeholders stand for."""

  content: Content
  pixel_values: np.ndarray  # float32 [patches, 1176], all images in placeholder order
  image_grid_thw: np.ndarray  # int64 [images, 3]
  pixel_values_videos: np.ndarray  # float32 [patches, 1176]
  video_grid_thw: np.ndarray  # int64 [videos, 3]
  second_per_grid_ts: np.ndarray  # float32 [videos]
  frame_size: tuple[int, int]  # (W, H) of what the model sees
  frame_times: tuple[float, ...] = ()  # label of each image shown, in order (frames mode)


def _no_pixels(config: ProcessingConfig):
  return np.zeros((0, config.patch_dim), np.float32), np.zeros((0, 3), np.int64)


def present_video(
  clip: VideoClip, config: ProcessingConfig, key_frames: list[tuple[float, np.ndarray]] = ()
) -> VisualInput:
  """Lays out a sampled clip; key_frames are (time in seconds, uint8 frame of clip.frame_size)."""
  if config.presentation == "video":
    pixels, grid = patchify.patchify(clip.frames, config, as_images=False)
    empty_pixels, empty_grid = _no_pixels(config)
    seconds = np.array([config.temporal_patch_size / clip.sample_fps], np.float32)
    return VisualInput(
      _video_content(clip, config, tuple(int(v) for v in grid[0])),
      empty_pixels,
      empty_grid,
      pixels,
      grid,
      seconds,
      clip.frame_size,
    )

  width, height = clip.frame_size
  pending = sorted(key_frames, key=lambda kf: kf[0])
  for time, frame in pending:
    if frame.shape != (height, width, 3):
      raise ValueError(
        f"key frame at {time}s has shape {frame.shape}, expected {(height, width, 3)}"
      )
  shown, times = [], []
  for i, frame in enumerate(clip.frames):
    while pending and int(i / clip.sample_fps) >= pending[0][0]:
      time, key_frame = pending.pop(0)
      shown.append(key_frame)
      times.append(round(float(time), 1))
    shown.append(frame)
    times.append(F.label_time(i, clip.sample_fps))
  for time, key_frame in pending:
    shown.append(key_frame)
    times.append(round(float(time), 1))

  pixels, grid = patchify.patchify(np.stack(shown), config, as_images=True)
  content: Content = []
  for k, (t, thw) in enumerate(zip(times, grid), start=1):
    content += [prompts.frame_label(k, t), Vision("image", tuple(int(v) for v in thw)), "\n"]
  content.append(prompts.duration_line(int(len(clip.frames) / clip.sample_fps)))
  empty_pixels, empty_grid = _no_pixels(config)
  return VisualInput(
    content,
    pixels,
    grid,
    empty_pixels,
    empty_grid,
    np.zeros(0, np.float32),
    clip.frame_size,
    tuple(times),
  )


def _video_content(
  clip: VideoClip, config: ProcessingConfig, grid: tuple[int, int, int]
) -> Content:
  if config.model_type != "qwen3_vl":
    return [Vision("video", grid)]
  times = F.frame_timestamps(clip.indices, clip.video_fps, config.temporal_patch_size)
  content: Content = []
  for t in times:  # one block of grid (1, h, w) per temporal patch: the rope index's frames
    content += [f"<{t:.1f} seconds>", Vision("video", (1, grid[1], grid[2]))]
  return content


def present_image(image: np.ndarray, config: ProcessingConfig) -> VisualInput:
  """One still image, resized within the image pixel budget."""
  height, width = F.image_size(image.shape[0], image.shape[1], config)
  resized = F.resize(image, height, width)
  pixels, grid = patchify.patchify(resized[None], config, as_images=True)
  empty_pixels, empty_grid = _no_pixels(config)
  return VisualInput(
    [Vision("image", tuple(int(v) for v in grid[0]))],
    pixels,
    grid,
    empty_pixels,
    empty_grid,
    np.zeros(0, np.float32),
    (width, height),
  )


def joined(visuals: Sequence[VisualInput]) -> VisualInput:
  """Several visual inputs shown one after the other in one user turn (e.g. a video, then
  an image; or several images), their arrays concatenated in placeholder order."""
  first = visuals[0]
  return VisualInput(
    [part for v in visuals for part in v.content],
    np.concatenate([v.pixel_values for v in visuals]),
    np.concatenate([v.image_grid_thw for v in visuals]),
    np.concatenate([v.pixel_values_videos for v in visuals]),
    np.concatenate([v.video_grid_thw for v in visuals]),
    np.concatenate([v.second_per_grid_ts for v in visuals]),
    first.frame_size,
    tuple(t for v in visuals for t in v.frame_times),
  )
