"""Which frames of a video are shown, and at what size (docs/reference.md section 2).

Qwen2.5-VL: formulas of qwen-vl-utils (`smart_nframes`, `fetch_video`) and transformers'
`smart_resize`; frame indices follow `torch.linspace(0, total - 1, n).round()`.
Qwen3-VL (config.model_type "qwen3_vl"): transformers' Qwen3VLVideoProcessor
(`sample_frames`, its clip-level `smart_resize` and per-frame cap) and Qwen3VLProcessor's
`_calculate_timestamps`.
"""

import math

import numpy as np
from PIL import Image

from o3jax.processing.config import ProcessingConfig

MAX_ASPECT_RATIO = 200


def _check_aspect_ratio(height: int, width: int) -> None:
  if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
    raise ValueError(
      f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, "
      f"got {max(height, width) / min(height, width)}"
    )


def smart_resize(
  height: int,
  width: int,
  factor: int = 28,
  min_pixels: int = 56 * 56,
  max_pixels: int = 28 * 28 * 1280,
) -> tuple[int, int]:
  """Returns (height, width): multiples of `factor`, area in [min_pixels, max_pixels],
  aspect ratio kept as closely as possible (transformers' Qwen2-VL `smart_resize`)."""
  if min(height, width) <= 0:
    raise ValueError(f"image size must be positive, got {width}x{height}")
  _check_aspect_ratio(height, width)
  h_bar = round(height / factor) * factor
  w_bar = round(width / factor) * factor
  if h_bar * w_bar > max_pixels:
    beta = math.sqrt((height * width) / max_pixels)
    h_bar = max(factor, math.floor(height / beta / factor) * factor)
    w_bar = max(factor, math.floor(width / beta / factor) * factor)
  elif h_bar * w_bar < min_pixels:
    beta = math.sqrt(min_pixels / (height * width))
    h_bar = math.ceil(height * beta / factor) * factor
    w_bar = math.ceil(width * beta / factor) * factor
  return h_bar, w_bar


def num_frames(total_frames: int, video_fps: float, config: ProcessingConfig) -> int:
  """Frames to sample: `fps` per second, clipped to [min_frames, max_frames] and to the
  video, rounded down to a multiple of the temporal patch (2) (Qwen3-VL: int() of the
  count, not rounded to the patch; the last frame pads it). Raises if fewer than 2."""
  if config.model_type == "qwen3_vl":
    n = int(total_frames / video_fps * config.fps)
    n = min(max(n, config.min_frames), config.max_frames, total_frames)
    if n < config.temporal_patch_size:
      raise ValueError(
        f"cannot sample frames: {n} frames from a video of {total_frames} frames "
        f"(need at least {config.temporal_patch_size})"
      )
    return n
  factor = config.temporal_patch_size
  min_frames = math.ceil(config.min_frames / factor) * factor
  max_frames = math.floor(min(config.max_frames, total_frames) / factor) * factor
  n = total_frames / video_fps * config.fps
  n = min(min(max(n, min_frames), max_frames), total_frames)
  n = math.floor(n / factor) * factor
  if not factor <= n <= total_frames:
    raise ValueError(
      f"cannot sample frames: {n} frames from a video of {total_frames} frames "
      f"(need at least {factor})"
    )
  return n


def frame_indices(total_frames: int, n: int, config: ProcessingConfig | None = None) -> np.ndarray:
  """`torch.linspace(0, total_frames - 1, n).round()` reproduced in float32: the first
  half counts up from 0, the second half down from the end, ties round to even.
  Qwen3-VL: numpy's float64 `np.linspace(0, total - 1, n).round()`."""
  if config is not None and config.model_type == "qwen3_vl":
    return np.linspace(0, total_frames - 1, n).round().astype(np.int64)
  if n == 1:
    return np.zeros(1, np.int64)
  start, end = np.float32(0), np.float32(total_frames - 1)
  step = (end - start) / np.float32(n - 1)
  i = np.arange(n, dtype=np.float32)
  values = np.where(np.arange(n) < n // 2, start + step * i, end - step * (np.float32(n - 1) - i))
  return np.rint(values.astype(np.float32)).astype(np.int64)


def sample_fps(n: int, total_frames: int, video_fps: float) -> float:
  """Frames per second of the sampled sequence (the reference's `video_kwargs['fps']`)."""
  return n / max(total_frames, 1e-6) * video_fps


def label_time(i: int, fps: float) -> float:
  """The time shown frame i is labelled with (`Frame {i+1} at {t}s`): its place in the
  sampled sequence over the sampling rate, as the reference writes it. It runs behind the
  frame's own time (index / video fps) by up to a second on long clips."""
  return round(i / fps, 1)


def shown_frames(
  total_frames: int, video_fps: float, config: ProcessingConfig
) -> list[tuple[int, float]]:
  """(frame index, label time) of every frame a video of `total_frames` is shown with."""
  n = num_frames(total_frames, video_fps, config)
  fps = sample_fps(n, total_frames, video_fps)
  return [
    (int(index), label_time(i, fps))
    for i, index in enumerate(frame_indices(total_frames, n, config))
  ]


def qwen3_video_smart_resize(
  num_frames: int,
  height: int,
  width: int,
  temporal_factor: int = 2,
  factor: int = 32,
  min_pixels: int = 128 * 32 * 32,
  max_pixels: int = 768 * 32 * 32,
) -> tuple[int, int]:
  """transformers' Qwen3-VL video `smart_resize`: the budget bounds the whole clip
  (frames rounded to the temporal patch), sides too short for one token are scaled up."""
  if num_frames < temporal_factor:
    raise ValueError(f"t:{num_frames} must be larger than temporal_factor:{temporal_factor}")
  if height < factor or width < factor:
    scale = max(factor / height, factor / width)
    height, width = int(height * scale), int(width * scale)
  _check_aspect_ratio(height, width)
  h_bar = round(height / factor) * factor
  w_bar = round(width / factor) * factor
  t_bar = round(num_frames / temporal_factor) * temporal_factor
  if t_bar * h_bar * w_bar > max_pixels:
    beta = math.sqrt((num_frames * height * width) / max_pixels)
    h_bar = max(factor, math.floor(height / beta / factor) * factor)
    w_bar = max(factor, math.floor(width / beta / factor) * factor)
  elif t_bar * h_bar * w_bar < min_pixels:
    beta = math.sqrt(min_pixels / (num_frames * height * width))
    h_bar = math.ceil(height * beta / factor) * factor
    w_bar = math.ceil(width * beta / factor) * factor
  return h_bar, w_bar


def frame_timestamps(indices, video_fps: float, temporal_patch_size: int = 2) -> list[float]:
  """Seconds of each temporal patch (Qwen3VLProcessor `_calculate_timestamps`): indices
  padded with the last to a multiple of the patch, then the mean of the times of the
  first and last frame of each patch."""
  indices = [int(i) for i in indices]
  if len(indices) % temporal_patch_size:
    indices += [indices[-1]] * (temporal_patch_size - len(indices) % temporal_patch_size)
  seconds = [i / video_fps for i in indices]
  return [
    (seconds[i] + seconds[i + temporal_patch_size - 1]) / 2
    for i in range(0, len(seconds), temporal_patch_size)
  ]


def video_frame_size(height: int, width: int, n: int, config: ProcessingConfig) -> tuple[int, int]:
  """(height, width) every sampled frame is resized to; the per-frame pixel cap is
  qwen-vl-utils' max(min(max_pixels, total_pixels / n * 2), int(min_pixels * 1.05)).
  Qwen3-VL: `qwen3_video_smart_resize` within [video_min_pixels, video_total_pixels] over
  the clip, or with video_max_pixels set, within n * max(min(video_max_pixels,
  video_total_pixels // n), int(video_min_pixels * 1.05)) (`cap_pixels_per_frame`)."""
  if config.model_type == "qwen3_vl":
    max_pixels = config.video_total_pixels
    if config.video_max_pixels is not None:
      per_frame = min(config.video_max_pixels, config.video_total_pixels // n)
      max_pixels = max(per_frame, int(config.video_min_pixels * 1.05)) * n
    return qwen3_video_smart_resize(
      n,
      height,
      width,
      config.temporal_patch_size,
      config.factor,
      config.video_min_pixels,
      max_pixels,
    )
  max_pixels = max(
    min(config.video_max_pixels, config.video_total_pixels / n * config.temporal_patch_size),
    int(config.video_min_pixels * 1.05),
  )
  return smart_resize(height, width, config.factor, config.video_min_pixels, max_pixels)


def image_size(height: int, width: int, config: ProcessingConfig) -> tuple[int, int]:
  """(height, width) a still image is resized to."""
  return smart_resize(
    height, width, config.factor, config.image_min_pixels, config.image_max_pixels
  )


def resize(image: np.ndarray | Image.Image, height: int, width: int) -> np.ndarray:
  """Bicubic resize of one RGB frame to uint8 [height, width, 3] (a no-op at equal size)."""
  if isinstance(image, np.ndarray):
    if image.shape[:2] == (height, width):
      return image
    image = Image.fromarray(image)
  if image.mode != "RGB":
    image = image.convert("RGB")
  if image.size != (width, height):
    image = image.resize((width, height), Image.Resampling.BICUBIC)
  return np.asarray(image)
