"""Reference SFT of Open-o3 Video (docs/reference.md section 5) on Qwen2.5-VL-7B-Instruct.

Run with `--init` pointing at the downloaded Hugging Face directory. One epoch of
STGR-SFT (31,166 records) at global batch 8 is 3,896 steps.
"""

from o3jax.data.pipeline import bucket_for_videos
from o3jax.processing.config import ProcessingConfig
from o3jax.train.config import MeshConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
  processing = ProcessingConfig()  # 2 fps, 4..16 frames, ~128*28*28 pixels a frame
  # Buckets for 16:9 videos (420x224 frames) with up to 4 key frames, up to 16,384 tokens
  # (the reference trains on prompts that long); longer records skip.
  buckets = tuple(
    bucket_for_videos(processing, n, (1280, 720), max_key_frames=4, image_size=(1280, 720))
    for n in (4096, 8192, 16384)
  )
  return TrainConfig(
    model="qwen2_5_vl_7b",
    compute_dtype="bfloat16",
    remat="full",
    mesh=MeshConfig(data=1, fsdp=8, tensor=1),
    optim=OptimConfig(
      learning_rate=1e-6, warmup_steps=0, decay="linear", weight_decay=0.01, max_grad_norm=5.0
    ),
    total_steps=3896,
    batch_size=8,
    micro_batches=1,
    max_length=16384,
    checkpoint_every=500,
    keep_checkpoints=3,
    data_workers=8,
    processing={},
    buckets=buckets,
  )
