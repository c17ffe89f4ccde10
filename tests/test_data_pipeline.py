"""The grain pipeline: batch format, buckets, shuffling, sharding, save and restore."""

import dataclasses
import json
import os

import numpy as np
import pytest

from o3jax.data.encode import encode_record
from o3jax.data.pipeline import BatchShape, PipelineConfig, bucket_for_videos, make_iterator
from o3jax.data.records import load_records, sft_target
from o3jax.processing import frames as F
from o3jax.processing.config import TINY
from o3jax.processing.tokenizer import special_token_ids
from data_fixtures import demo_tokenizer, synthetic_dir  # noqa: F401

LARGE = bucket_for_videos(TINY, 1024, (112, 84), max_key_frames=2, image_size=(112, 84))
SMALL = dataclasses.replace(LARGE, seq_len=512)


def _config(**kw):
  base = dict(batch_size=2, buckets=(SMALL, LARGE), seed=3, shard_index=0, shard_count=1)
  return PipelineConfig(**{**base, **kw})


def _iterator(synthetic_dir, tokenizer, stage="sft", processing=TINY, **kw):
  records = load_records(
    os.path.join(synthetic_dir, "STGR-SFT.json" if stage == "sft" else "STGR-RL.json")
  )
  return make_iterator(
    records,
    tokenizer=tokenizer,
    processing=processing,
    config=_config(stage=stage, **kw),
    root=synthetic_dir,
  )


def _same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    if key == "meta":
      assert a[key] == b[key]
    else:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_bucket_for_videos_is_tight(synthetic_dir, demo_tokenizer):
  # 112x84 videos: 84x56 frames of 4x6 patches; at most 8 frames and 2 key frames.
  assert (LARGE.image_patches, LARGE.images, LARGE.video_patches, LARGE.videos) == (240, 10, 0, 0)
  native = bucket_for_videos(dataclasses.replace(TINY, presentation="video"), 512, (112, 84))
  assert (native.video_patches, native.videos) == (96, 1)
  most = 0
  for record in load_records(os.path.join(synthetic_dir, "STGR-SFT.json")):
    example = encode_record(
      record, tokenizer=demo_tokenizer, config=TINY, stage="sft", root=synthetic_dir
    )
    most = max(most, len(example.pixel_values))
  assert most == LARGE.image_patches  # a spatio-temporal record with 8 frames and 2 key frames


def test_sft_batch_format(synthetic_dir, demo_tokenizer):
  ids = special_token_ids(demo_tokenizer)
  records = load_records(os.path.join(synthetic_dir, "STGR-SFT.json"))
  iterator = _iterator(synthetic_dir, demo_tokenizer, shuffle=False, num_epochs=1)
  seen = 0
  for batch in iterator:
    t = batch["input_ids"].shape[1]
    assert t in (SMALL.seq_len, LARGE.seq_len)
    assert (
      batch["pixel_values"].shape == (2 * LARGE.image_patches, 1176)
      and batch["pixel_values"].dtype == np.float32
    )
    assert batch["image_grid_thw"].shape == (2 * LARGE.images, 3)
    for key in ("input_ids", "attention_mask", "loss_mask", "image_grid_thw"):
      assert batch[key].dtype == np.int32, key
    grid = batch["image_grid_thw"]
    real = grid[grid[:, 0] > 0]
    assert (grid[len(real) :] == 0).all()  # padding rows are (0, 0, 0) and come last
    patches = int(np.prod(real, axis=1).sum())
    assert batch["pixel_values_mask"].sum() == patches and not batch["pixel_values"][patches:].any()
    pads = batch["input_ids"] == ids["image_token_id"]
    assert pads.sum() == patches // 4
    assert not (batch["loss_mask"] & (1 - batch["attention_mask"])).any()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == ids["pad_token_id"]).all()
    for row in range(2):
      record = records[seen + row]
      trained = batch["input_ids"][row][batch["loss_mask"][row] == 1]
      frame_size = (84, 56)  # synthetic frames and images both become 84x56
      assert demo_tokenizer.decode(trained.tolist(), skip_special_tokens=False) == (
        sft_target(record, frame_size) + "<|im_end|>"
      )
      length = batch["attention_mask"][row].sum()
      assert batch["attention_mask"][row, :length].all()  # right padding
      assert batch["prompt_length"][row] == np.argmax(batch["loss_mask"][row])
    seen += 2
  assert seen == len(records)
  # The small bucket is used when every example of the batch fits it.
  assert SMALL.seq_len < LARGE.seq_len


def test_rl_batch_format(synthetic_dir, demo_tokenizer):
  ids = special_token_ids(demo_tokenizer)
  records = load_records(os.path.join(synthetic_dir, "STGR-RL.json"))
  batch = next(_iterator(synthetic_dir, demo_tokenizer, stage="rl", shuffle=False))
  assert {"prompt_ids", "prompt_mask", "meta"} <= batch.keys() and "loss_mask" not in batch
  tail = demo_tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False).ids
  for row in range(2):
    assert batch["prompt_ids"][row, -len(tail) :].tolist() == tail  # left padding: prompts end at T
    length = batch["prompt_mask"][row].sum()
    assert (
      batch["prompt_mask"][row, -length:].all() and not batch["prompt_mask"][row, :-length].any()
    )
    meta = batch["meta"][row]
    assert {key: meta[key] for key in records[row]} == records[row]  # the whole RL record
    assert meta["frame_size"] == [84, 56]
  assert batch["meta"][0]["sample_fps"] > 0 and len(batch["meta"][0]["frame_times"]) >= 8
  # the prompts hold their frames' pad tokens, one per 4 patches
  pads = int((batch["prompt_ids"] == ids["image_token_id"]).sum())
  assert pads * 4 == int(batch["pixel_values_mask"].sum())


def test_native_video_batches(synthetic_dir, demo_tokenizer):
  import decord  # pylint: disable=import-outside-toplevel

  processing = dataclasses.replace(TINY, presentation="video")
  bucket = bucket_for_videos(processing, 768, (112, 84), image_size=(112, 84))
  records = load_records(os.path.join(synthetic_dir, "STGR-SFT.json"))
  iterator = _iterator(
    synthetic_dir,
    demo_tokenizer,
    processing=processing,
    buckets=(bucket,),
    batch_size=3,
    shuffle=False,
    num_epochs=1,
  )
  expected_seconds = []  # 2 / sample_fps of every video record, in order
  for record in records:
    if "video_path" in record:
      total = len(decord.VideoReader(os.path.join(synthetic_dir, record["video_path"])))
      expected_seconds.append(2 / (F.num_frames(total, 8.0, processing) / total * 8.0))
  seconds = []
  for batch in iterator:
    grid = batch["video_grid_thw"]
    assert grid.shape == (3, 3) and batch["pixel_values_videos"].shape == (3 * 96, 1176)
    real = grid[grid[:, 0] > 0]
    seconds += batch["second_per_grid_ts"][: len(real)].tolist()
    assert not batch["second_per_grid_ts"][len(real) :].any()
    assert (
      batch["input_ids"] == special_token_ids(demo_tokenizer)["video_token_id"]
    ).sum() == np.prod(real, axis=1).sum() // 4
    assert batch["pixel_values_videos_mask"].sum() == np.prod(real, axis=1).sum()
  np.testing.assert_allclose(seconds, expected_seconds, rtol=1e-6)


def test_shuffle_is_seeded_and_changes_every_epoch(synthetic_dir, demo_tokenizer):
  def order(seed, batches):
    it = _iterator(synthetic_dir, demo_tokenizer, stage="rl", seed=seed, batch_size=4)
    return [m["id"] for _ in range(batches) for m in next(it)["meta"]]

  first = order(3, 12)  # 24 records: two epochs
  assert first == order(3, 12)
  assert first != order(4, 12)
  assert sorted(first[:24]) == sorted(first[24:]) and first[:24] != first[24:]


def test_hosts_get_disjoint_equal_shards(synthetic_dir, demo_tokenizer):
  ids = []
  for index in range(3):
    it = _iterator(
      synthetic_dir,
      demo_tokenizer,
      stage="rl",
      shard_index=index,
      shard_count=3,
      num_epochs=1,
      batch_size=1,
    )
    ids.append([b["meta"][0]["id"] for b in it])
  assert all(len(shard) == 8 for shard in ids)
  flat = [i for shard in ids for i in shard]
  assert len(set(flat)) == 24


def test_restore_gives_the_same_next_batches(synthetic_dir, demo_tokenizer):
  it = _iterator(synthetic_dir, demo_tokenizer)
  for _ in range(5):
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
  expected = [next(it) for _ in range(9)]  # crosses into the next epoch
  restored = _iterator(synthetic_dir, demo_tokenizer)
  restored.set_state(state)
  for a, b in zip(expected, [next(restored) for _ in range(9)]):
    _same(a, b)


def test_worker_processes_give_the_same_batches_and_restore(synthetic_dir, demo_tokenizer):
  """Two decoding processes: same batches as decoding in this process, and restorable."""
  reference = _iterator(synthetic_dir, demo_tokenizer, stage="rl")
  expected = [next(reference) for _ in range(6)]
  it = _iterator(synthetic_dir, demo_tokenizer, stage="rl", num_workers=2)
  try:
    got = [next(it) for _ in range(3)]
    state = it.get_state()
  finally:
    it.close()
  restored = _iterator(synthetic_dir, demo_tokenizer, stage="rl", num_workers=2)
  try:
    restored.set_state(state)
    got += [next(restored) for _ in range(3)]
  finally:
    restored.close()
  for a, b in zip(expected, got):
    _same(a, b)


def test_buckets_must_grow():
  with pytest.raises(ValueError, match="grow"):
    PipelineConfig(batch_size=1, buckets=(LARGE, SMALL))
  with pytest.raises(ValueError, match="stage"):
    PipelineConfig(batch_size=1, buckets=(LARGE,), stage="pretrain")


def test_o3jax_model_accepts_padded_batches(synthetic_dir, demo_tokenizer):
  """The padded batch gives the same logits as the unpadded example (models/ contract)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from o3jax.models import Qwen2_5_VL  # pylint: disable=import-outside-toplevel
  from o3jax.models import config as model_config  # pylint: disable=import-outside-toplevel

  ids = special_token_ids(demo_tokenizer)
  base = model_config.tiny(**{k: v for k, v in ids.items() if k != "pad_token_id"})
  cfg = base.replace(
    vision=dataclasses.replace(base.vision, depth=2, fullatt_block_indexes=(1,)),
    text=dataclasses.replace(base.text, num_hidden_layers=1),
  )  # smaller: quicker to build
  model = Qwen2_5_VL(cfg, rngs=nnx.Rngs(0))
  records = load_records(os.path.join(synthetic_dir, "STGR-SFT.json"))
  vqa = next(r for r in records if r["task"] == "visual QA")
  bucket = BatchShape(seq_len=256, image_patches=48, images=3)
  config = PipelineConfig(
    batch_size=2,
    buckets=(bucket,),
    shuffle=False,
    num_epochs=1,
    drop_remainder=False,
    shard_index=0,
    shard_count=1,
  )
  batch = next(
    make_iterator(
      [vqa], tokenizer=demo_tokenizer, processing=TINY, config=config, root=synthetic_dir
    )
  )
  assert batch["example_mask"].tolist() == [1, 0]
  logits = model(
    batch["input_ids"],
    batch["attention_mask"],
    pixel_values=jnp.asarray(batch["pixel_values"]),
    image_grid_thw=batch["image_grid_thw"],
  )
  example = encode_record(
    vqa, tokenizer=demo_tokenizer, config=TINY, stage="sft", root=synthetic_dir
  )
  n = len(example.input_ids)
  alone = model(
    example.input_ids[None],
    pixel_values=jnp.asarray(example.pixel_values),
    image_grid_thw=example.image_grid_thw,
  )
  np.testing.assert_allclose(np.asarray(logits[0, :n]), np.asarray(alone[0]), atol=1e-4, rtol=0)
