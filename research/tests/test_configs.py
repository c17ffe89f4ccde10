"""The research configs load, and the grounding stage's buckets hold every synthetic
visual-QA example (an example larger than every bucket would be skipped)."""

import glob
import os

import pytest

from data_fixtures import demo_tokenizer, synthetic_dir  # noqa: F401
from o3jax.train.config import TrainConfig, load_config
from o3jax.train.sft import data_iterator

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@pytest.mark.parametrize(
  "path", sorted(glob.glob(os.path.join(CONFIGS, "*.py"))), ids=os.path.basename
)
def test_config_loads(path):
  assert isinstance(load_config(path), TrainConfig)


def test_grounding_buckets_hold_every_visual_qa_example(synthetic_dir, demo_tokenizer):
  path = os.path.join(CONFIGS, "tiny_synthetic_grounding.py")
  cfg = load_config(path).replace(batch_size=4, strict_data=True)
  data = data_iterator(
    cfg, synthetic_dir, demo_tokenizer, "sft", "STGR-SFT.json", shuffle=False, num_epochs=1
  )
  rows = sum(int(batch["example_mask"].sum()) for batch in data)
  assert cfg.tasks == ("visual QA",) and rows == 4 and data.skipped == 0  # one per video
