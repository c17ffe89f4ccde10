"""Reference GSPO of Open-o3 Video (docs/reference.md section 5) on Qwen3-VL-8B, from the
SFT run's workdir: the GSPO settings of `qwen2_5_vl_7b_gspo.py` (G = 4, temperature 1.0,
top_p 0.95, 768 new tokens, eps 0.2, beta 0.04, lr 1e-6 cosine, 4,654 steps) on the
model, mesh, buckets and processing of `qwen3_vl_8b_sft.py`.
"""

import os

from o3jax.train.config import load_config

HERE = os.path.dirname(__file__)


def get_config():
  sft = load_config(os.path.join(HERE, "qwen3_vl_8b_sft.py"))
  gspo = load_config(os.path.join(HERE, "qwen2_5_vl_7b_gspo.py"))
  return gspo.replace(model=sft.model, processing=sft.processing, buckets=sft.buckets)
