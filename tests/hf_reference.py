"""Tiny random transformers Qwen2.5-VL and Qwen3-VL models and inputs for parity tests."""

from __future__ import annotations

import numpy as np
import torch
import transformers

from o3jax.models import config as config_lib


def perturbed_hf_model(cfg, seed: int = 0):
  """A transformers model of `cfg` (Qwen2.5-VL or Qwen3-VL) in fp32 with biases and norm
  scales moved off 0/1."""
  torch.manual_seed(seed)
  if cfg.model_type == "qwen3_vl":
    hf_cfg = transformers.Qwen3VLConfig(**config_lib.to_hf_dict(cfg))
    model = transformers.Qwen3VLForConditionalGeneration(hf_cfg).eval().float()
  else:
    hf_cfg = transformers.Qwen2_5_VLConfig(**config_lib.to_hf_dict(cfg))
    model = transformers.Qwen2_5_VLForConditionalGeneration(hf_cfg).eval().float()
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("bias"):
        p.copy_(0.2 * torch.randn(p.shape, generator=gen))
      elif "norm" in name or "ln_q" in name:
        p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
  return model


def vision_block(cfg, kind: str, grid) -> list[int]:
  t, h, w = grid
  tok = cfg.image_token_id if kind == "image" else cfg.video_token_id
  return [cfg.vision_start_token_id] + [tok] * (t * h * w // 4) + [cfg.vision_end_token_id]


def text_tokens(rng: np.random.Generator, n: int) -> list[int]:
  return rng.integers(0, 900, n).tolist()  # stays clear of the special ids (>= 1000)


def mm_token_type_ids(cfg, input_ids: np.ndarray) -> np.ndarray:
  return (input_ids == cfg.image_token_id) * 1 + (input_ids == cfg.video_token_id) * 2


def hf_logits(
  model,
  cfg,
  input_ids,
  attention_mask=None,
  pixel_values=None,
  image_grid_thw=None,
  pixel_values_videos=None,
  video_grid_thw=None,
  second_per_grid_ts=None,
  position_ids=None,
) -> np.ndarray:
  t = lambda x, dt=None: None if x is None else torch.as_tensor(np.asarray(x), dtype=dt)
  kw = dict(
    input_ids=t(input_ids, torch.long),
    attention_mask=t(attention_mask, torch.long),
    pixel_values=t(pixel_values, torch.float32),
    image_grid_thw=t(image_grid_thw, torch.long),
    pixel_values_videos=t(pixel_values_videos, torch.float32),
    video_grid_thw=t(video_grid_thw, torch.long),
    second_per_grid_ts=t(second_per_grid_ts, torch.float32),
    position_ids=t(position_ids, torch.long),
    mm_token_type_ids=t(mm_token_type_ids(cfg, np.asarray(input_ids)), torch.int),
  )
  with torch.no_grad():
    out = model(**{k: v for k, v in kw.items() if v is not None}, use_cache=False)
  model.model.rope_deltas = None  # cached between calls by transformers
  return out.logits.numpy()
