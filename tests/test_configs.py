"""The shipped configs load, and the buckets of the tiny configs hold every synthetic example
of the tasks they train on (an example larger than every bucket would be skipped)."""

import glob
import os

import pytest

from o3jax.train.config import TrainConfig, load_config
from o3jax.train.sft import data_iterator
from data_fixtures import CONFIGS, demo_tokenizer, synthetic_dir  # noqa: F401


@pytest.mark.parametrize(
  "path", sorted(glob.glob(os.path.join(CONFIGS, "*.py"))), ids=os.path.basename
)
def test_config_loads(path):
  assert isinstance(load_config(path), TrainConfig)


def test_tiny_buckets_hold_every_synthetic_example(synthetic_dir, demo_tokenizer):
  cfg = load_config(os.path.join(CONFIGS, "tiny_synthetic.py")).replace(
    batch_size=4, strict_data=True
  )
  data = data_iterator(
    cfg, synthetic_dir, demo_tokenizer, "sft", "STGR-SFT.json", shuffle=False, num_epochs=1
  )
  rows = sum(int(batch["example_mask"].sum()) for batch in data)
  # 4 videos: 6 STGR records + 3 relevance ratings each.
  assert rows == 36 and data.skipped == 0
