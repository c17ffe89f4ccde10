"""Tiny model on the synthetic grounded videos (`o3jax data synth`), for CPU runs."""

from o3jax.data.pipeline import bucket_for_videos
from o3jax.processing.config import TINY
from o3jax.train.config import GSPOConfig, MeshConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
  processing = {
    "max_frames": TINY.max_frames,
    "video_min_pixels": TINY.video_min_pixels,
    "video_max_pixels": TINY.video_max_pixels,
    "image_min_pixels": TINY.image_min_pixels,
    "image_max_pixels": TINY.image_max_pixels,
    # A model this small cannot carry the SFT format over to the reference's
    # differently worded RL prompts: it is rewarded on the SFT ones.
    "prompt_style": "sft",
  }
  # Synthetic videos are 112x84; spatio-temporal records add up to 2 key frames.
  bucket = bucket_for_videos(TINY, 640, (112, 84), max_key_frames=2, image_size=(112, 84))
  return TrainConfig(
    model="tiny",
    mesh=MeshConfig(data=1, fsdp=1, tensor=1),
    optim=OptimConfig(
      learning_rate=3e-3,
      warmup_steps=10,
      decay="cosine",
      end_lr_fraction=0.1,
      weight_decay=0.01,
      max_grad_norm=1.0,
    ),
    gspo=GSPOConfig(
      group_size=4,
      temperature=1.0,
      top_p=1.0,
      # The answer length of evaluation and inference (recorded in the workdir's
      # inference.json); the GSPO config rolls out as long.
      max_new_tokens=192,
      eps_low=0.2,
      eps_high=0.2,
      beta=0.0,
      updates_per_batch=2,
    ),
    total_steps=400,
    batch_size=8,
    micro_batches=1,
    max_length=640,
    checkpoint_every=50,
    keep_checkpoints=2,
    processing=processing,
    buckets=(bucket,),
  )
