"""How frames and images are sampled, sized and presented to the model (docs/reference.md section 2).

The defaults are the reference training setup (qwen-vl-utils as patched by Open-o3 Video):
2 fps, 4..16 frames, every video frame resized to about 128*28*28 pixels, images to at
most 256*28*28 pixels, frames shown as a sequence of images. `TINY` is the small setup
used by the tests and the CPU demo.

`model_type` says whose processing applies: "qwen2_5_vl" (qwen-vl-utils' frame sampling
and per-frame budget, 14-pixel patches, CLIP normalisation) or "qwen3_vl" (transformers'
Qwen3VLVideoProcessor sampling and clip budget, 16-pixel patches, mean = std = 0.5, a
native video laid out frame by frame after timestamp text). `for_model` is the one place
that picks it: the model's family decides, whatever budget preset is used.
"""

import dataclasses

# OpenAI CLIP normalisation, the constants of Qwen2-VL's image processor.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# transformers' IMAGENET_STANDARD_MEAN / _STD, the constants of Qwen3-VL's processors.
HALF = (0.5, 0.5, 0.5)

PRESENTATIONS = ("frames", "video")
MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl")
# What a model family fixes, whatever the budgets: patch size and pixel normalisation.
_GEOMETRY = {
  "qwen2_5_vl": dict(patch_size=14, image_mean=CLIP_MEAN, image_std=CLIP_STD),
  "qwen3_vl": dict(patch_size=16, image_mean=HALF, image_std=HALF),
}


@dataclasses.dataclass(frozen=True)
class ProcessingConfig:
  """Frame sampling, pixel budgets and patch geometry.

  presentation: "frames" is the reference training format (each sampled frame is an
    image after `Frame {k} at {t}s: `); "video" is Qwen2.5-VL's native video input
    (temporal patches of 2 frames, `second_per_grid_ts`).
  video_total_pixels: qwen-vl-utils' budget for a whole video; a frame may use at most
    max(min(video_max_pixels, total / n_frames * 2), int(video_min_pixels * 1.05)).
    Under "qwen3_vl" the three video budgets are those of transformers' Qwen3-VL video
    processor: video_min_pixels and video_total_pixels bound the whole clip (its
    size["shortest_edge"] and size["longest_edge"]), video_max_pixels caps each frame
    (`cap_pixels_per_frame=True` with max_video_tokens * 32**2 = video_max_pixels; None
    leaves frames uncapped, transformers' default).
  prompt_style: "stage" uses the system prompts of the record's stage, as the reference
    (SFT and RL prompts differ); "sft" or "rl" uses that stage's prompts for both, e.g.
    so that a tiny CPU model, which cannot generalise across prompt wordings, is
    rewarded on the prompts it was fine-tuned on.
  """

  model_type: str = "qwen2_5_vl"
  fps: float = 2.0
  min_frames: int = 4
  max_frames: int = 16
  video_min_pixels: int = 128 * 28 * 28
  video_max_pixels: int | None = 128 * 28 * 28
  video_total_pixels: int = int(128000 * 28 * 28 * 0.9)
  image_min_pixels: int = 4 * 28 * 28
  image_max_pixels: int = 256 * 28 * 28
  patch_size: int = 14
  temporal_patch_size: int = 2
  merge_size: int = 2
  presentation: str = "frames"
  prompt_style: str = "stage"
  image_mean: tuple[float, float, float] = CLIP_MEAN
  image_std: tuple[float, float, float] = CLIP_STD

  def __post_init__(self):
    if self.prompt_style not in ("stage", "sft", "rl"):
      raise ValueError(f"prompt_style must be stage, sft or rl, got {self.prompt_style!r}")
    if self.presentation not in PRESENTATIONS:
      raise ValueError(f"presentation must be one of {PRESENTATIONS}, got {self.presentation!r}")
    if self.min_frames < 1 or self.max_frames < self.min_frames:
      raise ValueError(
        f"need 1 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}"
      )
    if self.fps <= 0:
      raise ValueError(f"fps must be positive, got {self.fps}")
    if self.model_type not in MODEL_TYPES:
      raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
    if self.video_max_pixels is None and self.model_type != "qwen3_vl":
      raise ValueError("video_max_pixels=None (no per-frame cap) is a qwen3_vl setting")

  def prompt_stage(self, stage: str) -> str:
    """Whose system prompts a `stage` ("sft" or "rl") example is shown with."""
    return stage if self.prompt_style == "stage" else self.prompt_style

  @property
  def factor(self) -> int:
    """Side lengths are multiples of this: one merged token covers factor x factor pixels."""
    return self.patch_size * self.merge_size

  @property
  def patch_dim(self) -> int:
    """Length of one row of pixel_values: 3 * temporal_patch * patch * patch (1176)."""
    return 3 * self.temporal_patch_size * self.patch_size * self.patch_size


# Small frames and few of them: a 112x84 video becomes 84x56 frames of 6 tokens each.
TINY = ProcessingConfig(
  max_frames=8,
  video_min_pixels=4 * 28 * 28,
  video_max_pixels=8 * 28 * 28,
  image_min_pixels=4 * 28 * 28,
  image_max_pixels=8 * 28 * 28,
)


# The reference's evaluation of the general video benchmarks (eval/bench_run.py): native
# video, at most 16 frames of at most 2,097,152 pixels (eval/config/vstar.yaml), images
# within vLLM's default Qwen2.5-VL budget.
REFERENCE_EVAL = ProcessingConfig(
  presentation="video", max_frames=16, video_max_pixels=2097152, image_max_pixels=12845056
)


# transformers' Qwen3-VL defaults: Qwen3VLVideoProcessor's class attributes (2 fps,
# 4..768 frames, 128*32*32..768*32*32 pixels over the whole clip, no per-frame cap) and
# the image budget of the released checkpoints' preprocessor_config.json (65,536 to
# 16,777,216 pixels); a native video, as the model was trained to see one.
QWEN3_VL = ProcessingConfig(
  model_type="qwen3_vl",
  max_frames=768,
  video_min_pixels=128 * 32 * 32,
  video_max_pixels=None,
  video_total_pixels=768 * 32 * 32,
  image_min_pixels=65536,
  image_max_pixels=16777216,
  presentation="video",
  **_GEOMETRY["qwen3_vl"],
)


def for_model(config: ProcessingConfig, model_type: str) -> ProcessingConfig:
  """`config`'s budgets with the processing of a model family (its model_type): the one
  place where a model decides how its inputs are made. A Qwen3-VL model given a
  Qwen2.5-VL budget preset keeps the budgets and takes Qwen3-VL's patches,
  normalisation, frame sampling and video layout."""
  if model_type not in MODEL_TYPES:
    raise ValueError(f"no processing for model_type {model_type!r}; expected one of {MODEL_TYPES}")
  return dataclasses.replace(config, model_type=model_type, **_GEOMETRY[model_type])
