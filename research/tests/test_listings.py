"""Frame listings: every line is what the named frame shows, checked on the rendered pixels."""

import json
import os
import re

import numpy as np
import pytest
from data_fixtures import demo_tokenizer, synthetic_dir  # noqa: F401

from o3jax.data import scenes
from o3jax.data.encode import encode_record
from o3jax.data.records import check_record, load_records, reward_meta, sft_target
from o3jax.processing import frames
from o3jax.processing.config import TINY
from o3jax.rewards.score import score
from o3jax.train.config import load_config
from o3jax.train.sft import data_iterator
from research import listings

RESEARCH_CONFIGS = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs"
)

LINE = re.compile(r"Frame (\d+): (.*?)\.(?: |$)")
HALVES_ITEM = re.compile(r"the (\w+ \w+) is (?:(left|right) and (up|down)|(not visible))")
CLAIM = re.compile(r"the <obj>(.*?)</obj><box>\[(.*?)\]</box>at<t>(.*?)</t>s")


def _scenes(count=6, seed=3):
  return [
    scenes.make_scene(f"v{i:04d}", np.random.default_rng([seed, 0, i]), 112, 84, 8)
    for i in range(count)
  ]


def _pixels(scene, frame, name):
  """(centre x, centre y) of the name's colour in the rendered frame, None when absent."""
  image = scene.render(frame)[0]
  match = (image == np.array(scenes.COLOURS[name.split()[0]])).all(-1)
  if not match.any():
    return None
  rows, cols = np.nonzero(match)
  return (cols.min() + cols.max() + 1) / 2, (rows.min() + rows.max() + 1) / 2


def test_halves_listing_says_what_each_named_frame_shows():
  for scene in _scenes():
    shown = frames.shown_frames(scene.num_frames, scene.fps, TINY)
    record = listings.listing_record(scene, np.random.default_rng(0), "halves", 0)
    lines = LINE.findall(record["reasoning_process"])
    order = [int(k) for k, _ in lines]
    assert sorted(order) == list(range(1, len(shown) + 1))  # every shown frame once
    assert record["question"] == f"Where are the objects in frames {', '.join(map(str, order))}?"
    for k, text in lines:
      items = HALVES_ITEM.findall(text)
      assert sorted(i[0] for i in items) == sorted(t.name for t in scene.tracks)
      for name, across, down, absent in items:
        centre = _pixels(scene, shown[int(k) - 1][0], name)
        if absent:
          assert centre is None
        else:
          assert across == ("left" if centre[0] < 56 else "right") and down == (
            "up" if centre[1] < 42 else "down"
          )


def test_named_and_objects_listings_claim_boxes_on_the_shapes_at_the_frames_label():
  named = 0
  for scene in _scenes():
    shown = frames.shown_frames(scene.num_frames, scene.fps, TINY)
    rng = np.random.default_rng(1)
    for kind in ("named", "objects"):
      record = listings.listing_record(scene, rng, kind, 0)
      if record is None:  # named: its object is on no shown frame
        continue
      lines = LINE.findall(record["reasoning_process"])
      assert len(lines) == 3 and len({k for k, _ in lines}) == 3
      for k, text in lines:
        frame, label = shown[int(k) - 1]
        for name, box, time in CLAIM.findall(text):
          pixel_box = [float(v) * s for v, s in zip(box.split(","), (112, 84, 112, 84))]
          assert float(time) == label and scenes.box_on_shape(
            scene.render(frame)[0], name, pixel_box
          )
        for name in re.findall(r"the (\w+ \w+) is not visible", text):
          assert _pixels(scene, frame, name) is None
      if kind == "named":
        named += 1
        name = re.match(r"Where is the (\w+ \w+) in frames", record["question"]).group(1)
        seen = len(CLAIM.findall(record["reasoning_process"]))
        track = next(t for t in scene.tracks if t.name == name)
        assert (
          seen >= min(2, sum(track.visible(f) for f, _ in shown))
          and f"seen in {seen} of the 3" in record["answer"]
        )
  assert named >= 4


def test_cli_writes_valid_listings_after_the_synth_records(synthetic_dir, tmp_path):
  out = str(tmp_path / "listed")
  args = [
    "--synth",
    synthetic_dir,
    "--seed",
    "7",
    "--videos",
    "4",
    "--halves",
    "2",
    "--objects",
    "1",
    "--named",
    "1",
    "--with-records",
  ]
  assert listings.main(args + ["--out", out]) == 0
  base = load_records(os.path.join(synthetic_dir, "STGR-SFT.json"))
  records = load_records(os.path.join(out, "STGR-SFT.json"))
  listed = records[len(base) :]
  assert records[: len(base)] == base
  assert [listings.kind_of(r) for r in listed].count("halves") == 8 and all(
    listings.kind_of(r) for r in listed
  )
  assert not any(listings.kind_of(r) for r in base)
  rl = load_records(os.path.join(out, "STGR-RL.json"))
  assert len(rl) == len(load_records(os.path.join(synthetic_dir, "STGR-RL.json"))) + len(listed)
  for record in listed:
    check_record(record, stage="sft", root=out)
  for record in rl[-len(listed) :]:
    check_record(record, stage="rl", root=out)
  # The listings are of the synth directory's own videos: rebuilt from its seed, they match its records.
  scene = scenes.make_scene("v0000", np.random.default_rng([7, 0, 0]), 112, 84, 8)
  assert all(
    t.name in json.dumps([r for r in base if r.get("video_path") == "videos/v0000.mp4"])
    for t in scene.tracks
  )
  # Deterministic: the same call writes the same records.
  again = str(tmp_path / "again")
  assert listings.main(args + ["--out", again]) == 0
  assert load_records(os.path.join(again, "STGR-SFT.json")) == records


def test_listings_refuse_missing_videos_and_unknown_kinds(synthetic_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="v0004.mp4"):
    listings.write_listings(synthetic_dir, str(tmp_path / "x"), 7, 5, {"halves": 1})
  with pytest.raises(ValueError, match="thirds"):
    listings.write_listings(synthetic_dir, str(tmp_path / "y"), 7, 1, {"thirds": 1})


def test_binding_config_buckets_hold_every_listing(synthetic_dir, demo_tokenizer, tmp_path):
  out = str(tmp_path / "fit")
  written = listings.write_listings(
    synthetic_dir, out, 7, 4, {"halves": 2, "objects": 2, "named": 2}
  )
  cfg = load_config(os.path.join(RESEARCH_CONFIGS, "tiny_synthetic_binding.py")).replace(
    batch_size=4, strict_data=True
  )
  data = data_iterator(
    cfg, out, demo_tokenizer, "sft", "STGR-SFT.json", shuffle=False, num_epochs=1
  )
  assert (
    sum(int(batch["example_mask"].sum()) for batch in data) == written["records"]
    and data.skipped == 0
  )


def test_named_listing_rl_gold_scores_its_own_boxes_and_shows_no_extra_image(
  synthetic_dir, demo_tokenizer, tmp_path
):
  """A named listing's RL prompt carries the named frames' boxes as image-less key frames:
  GSPO's thk_spatial gives its own SFT answer about full marks, a box elsewhere nothing, and the
  model is shown the sampled frames only."""
  out = str(tmp_path / "named")
  listings.write_listings(synthetic_dir, out, 7, 4, {"named": 2})
  sft, rl = (
    load_records(os.path.join(out, "STGR-SFT.json")),
    load_records(os.path.join(out, "STGR-RL.json")),
  )
  assert sft and all(r["task"] == "temporal-spatial free-form QA" for r in rl)
  size = (84, 56)  # the frame TINY shows a 112x84 video at
  for record, prompt in zip(sft, rl):
    assert prompt["id"] == record["id"][:-4] + "-rl" and "reasoning_process" not in prompt
    check_record(prompt, stage="rl", root=out)
    example = encode_record(prompt, tokenizer=demo_tokenizer, config=TINY, stage="rl", root=out)
    vid = os.path.basename(record["video_path"]).removesuffix(".mp4")  # "v0003"
    scene = scenes.make_scene(vid, scenes.scene_rng(7, "v", int(vid[1:])), 112, 84, 8)
    shown = frames.shown_frames(scene.num_frames, scene.fps, TINY)
    assert len(example.image_grid_thw) == len(shown)
    # The gold is each claimed frame's box at the claim's time: the record's own answer scores
    # about 1 (its boxes are rounded to whole pixels), boxes in a corner 0.
    own = sft_target(record, size)
    claims = CLAIM.findall(record["reasoning_process"])
    assert len(prompt["key_frames"]) == len(claims) >= 1
    meta = reward_meta(prompt, size)
    off = re.sub(r"<box>\[.*?\]</box>", "<box>[0,0,1,1]</box>", own)
    got = score([own, off], [meta, meta], 0.5)
    assert got["thk_spatial"][0] > 0.9 and got["thk_spatial"][1] == 0.0
    assert got["thk_temporal_point"][0] == pytest.approx(1.0) and got["format"][0] == 1.0
