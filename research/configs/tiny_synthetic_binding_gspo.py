"""Phase 8 of frame binding (see `research/configs/tiny_synthetic_binding.py`): GSPO on the named
listings, from a binding phase (`--init`). A named listing's RL prompt is a
spatio-temporal record whose gold key frames are the named frames that show the object,
so thk_spatial (IoU of each claimed box with the object's box on the frame at the claimed
time) rewards a box by how near it is, where SFT's cross-entropy on the box digits does
not (a units digit one off costs as much as one five off).

  python -m research.listings --synth runs/syn --seed 7 --videos 2000 --out runs/list8rl \\
      --halves 0 --objects 0 --named 4
  o3jax gspo --config research/configs/tiny_synthetic_binding_gspo.py --data runs/list8rl \\
      --workdir runs/bind8rl --init runs/bind8

(runs/bind8: phase 7's SFT pass again, on listings whose named kind is spatio-temporal,
so that the model knows that prompt; commands in research/tiny_grounding.md.)

Same departures as `configs/tiny_synthetic_gspo.py` (temperature 0.7, no KL term, two
updates per rollout batch). The learning rate is twice that one's, since the format is
settled here (at 3e-4 the boxes got worse within 150 steps).

thk_spatial is scored per key frame (`spatial_rule="per_key_frame"`). With the
reference's mean over claims, 600 steps taught the model to game that mean: it boxed 135
of 246 held-out named frames, where the SFT model boxed 240, and 62 of its 210 claims
repeated a time. Per key frame, 600 steps boxed 231 and repeated none, and the share of
boxes on the shape stayed at 30%. Neither run raised the rollouts' thk_spatial. Measured
in research/tiny_grounding.md.
"""

import dataclasses
import os

from o3jax.train.config import load_config

HERE = os.path.dirname(os.path.abspath(__file__))
PRODUCT_CONFIGS = os.path.join(HERE, "..", "..", "configs")


def get_config():
  cfg = load_config(os.path.join(PRODUCT_CONFIGS, "tiny_synthetic_gspo.py"))
  return cfg.replace(
    optim=dataclasses.replace(cfg.optim, learning_rate=1e-4),
    gspo=dataclasses.replace(cfg.gspo, max_new_tokens=160, spatial_rule="per_key_frame"),
    total_steps=600,
    checkpoint_every=50,
    keep_checkpoints=12,
  )
