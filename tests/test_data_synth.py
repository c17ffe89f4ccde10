"""The synthetic grounded-video generator: determinism, exact answers, all six tasks, V-STaR."""

import json
import math
import os
import re

import decord
import numpy as np
from data_fixtures import SHOWN_FRAME_CLAIM_TASKS, files_under, synthetic_dir, tiny_processing  # noqa: F401
from PIL import Image

from o3jax import cli, grammar
from o3jax.data import scenes, synth
from o3jax.data.records import check_record, load_records, parse_segment, temporal_segment_text
from o3jax.grammar import TASKS
from o3jax.processing import media
from o3jax.processing.presentation import present_video

# docs/reference.md section 1
CLAIM = re.compile(r"<obj>(.*?)</obj>((?:<box>\[.*?\]</box>)+)at<t>(.*?)</t>s")
VSTAR_FIELDS = {
  "vid",
  "fps",
  "width",
  "height",
  "frame_count",
  "question",
  "answer",
  "timestamps",
  "bboxes",
  "temporal_question",
  "spatial_question",
  "spatial_question_2",
}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
  for name, seed in (("a", 11), ("b", 11), ("c", 12)):
    synth.synthesize(str(tmp_path / name), videos=2, seed=seed, vstar_videos=1, progress=False)
  a, b, c = (files_under(str(tmp_path / n)) for n in "abc")
  assert a == b
  assert a["STGR-SFT.json"] != c["STGR-SFT.json"] and a["videos/v0000.mp4"] != c["videos/v0000.mp4"]


def test_cli_writes_the_dataset(tmp_path):
  out = tmp_path / "cli"
  assert cli.main(["data", "synth", "--out", str(out), "--videos", "1", "--seed", "3"]) == 0
  for name in (
    "STGR-SFT.json",
    "STGR-RL.json",
    "vstar.json",
    "videos/v0000.mp4",
    "videos/h0000.mp4",
  ):
    assert (out / name).is_file(), name


def test_records_cover_all_tasks_and_are_valid(synthetic_dir):
  for name, stage in (("STGR-SFT.json", "sft"), ("STGR-RL.json", "rl")):
    records = load_records(os.path.join(synthetic_dir, name))
    # SFT adds three rated evidence crops for one of a video's two MCQ questions.
    tasks = TASKS + (grammar.RELEVANCE_RATING,) * (stage == "sft")
    assert len(records) == 4 * (6 + 3 * (stage == "sft")) and sorted(
      {r["task"] for r in records}
    ) == sorted(tasks)
    assert len({r["id"] for r in records}) == len(records)
    for record in records:
      check_record(record, stage=stage, root=synthetic_dir)
      paths = [record.get("video_path"), record.get("image_path")] + [
        k["path"] for k in record.get("key_frames", [])
      ]
      for path in filter(None, paths):
        assert not os.path.isabs(path) and ".." not in path


def _colour_extent(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 0):
  match = (np.abs(image.astype(int) - np.array(colour)) <= tolerance).all(-1)
  rows, cols = np.nonzero(match)
  if not len(rows):
    return None, 0
  return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1], int(
    match.sum()
  )


def test_key_frame_boxes_are_exact(synthetic_dir):
  """Boxes from the key-frame images themselves: the object's pixels lie inside its box, and
  the box is their exact extent unless another object overlaps it."""
  checked = exact = 0
  for record in load_records(os.path.join(synthetic_dir, "STGR-SFT.json")):
    for kf in record.get("key_frames", []):
      image = np.asarray(Image.open(os.path.join(synthetic_dir, kf["path"])).convert("RGB"))
      height, width = image.shape[:2]
      for name, boxes in record["key_items"][str(kf["idx"])].items():
        box = [round(v * s) for v, s in zip(boxes[0], (width, height, width, height))]
        extent, _ = _colour_extent(image, scenes.COLOURS[name.split()[0]])
        assert extent is not None
        assert (
          box[0] <= extent[0]
          and box[1] <= extent[1]
          and extent[2] <= box[2]
          and extent[3] <= box[3]
        )
        inside = image[box[1] : box[3], box[0] : box[2]].reshape(-1, 3)
        others = {tuple(c) for c in inside} - {scenes.BACKGROUND, scenes.COLOURS[name.split()[0]]}
        checked += 1
        if not others:
          assert extent == box
          exact += 1
  assert checked == 8 and exact >= 4


def test_visual_qa_answer_box_is_exact(synthetic_dir):
  for record in load_records(os.path.join(synthetic_dir, "STGR-RL.json")):
    if record["task"] != "visual QA":
      continue
    image = np.asarray(Image.open(os.path.join(synthetic_dir, record["image_path"])).convert("RGB"))
    assert list(image.shape[1::-1]) == record["image_size"]
    box = json.loads(re.search(r"<box>(\[.*?\])</box>", record["answer"]).group(1))
    colour = re.search(r"Where is the (\w+) ", record["question"]).group(1)
    extent, _ = _colour_extent(image, scenes.COLOURS[colour])
    assert (
      box[0] <= extent[0] and box[1] <= extent[1] and extent[2] <= box[2] and extent[3] <= box[3]
    )


def test_temporal_answers_match_the_video(synthetic_dir):
  """Decode the mp4: the object is on screen at the answer's start and end frames, and not
  on the frames just outside."""
  checked = 0
  for record in load_records(os.path.join(synthetic_dir, "STGR-RL.json")):
    if record["task"] not in ("temporal QA", "temporal QA (MCQ)"):
      continue
    start, end = parse_segment(temporal_segment_text(record))
    colour = re.search(r"the (\w+) \w+ (appear|visible)", record["question"]).group(1)
    reader = decord.VideoReader(os.path.join(synthetic_dir, record["video_path"]))
    fps = reader.get_avg_fps()
    first, last = round(start * fps), round(end * fps)

    def pixels(frame):
      return _colour_extent(reader[frame].asnumpy(), scenes.COLOURS[colour], tolerance=40)[1]

    size = 84 // 5  # the smallest object side in a 112x84 video
    assert pixels(first) > 0.3 * size * size and pixels(last) > 0.3 * size * size
    for outside in (first - 1, last + 1):
      if 0 <= outside < len(reader):
        assert pixels(outside) < 0.05 * size * size
    checked += 1
  assert checked == 8


def test_video_claims_sit_on_shown_frames(synthetic_dir):
  """Outside spatio-temporal records (whose key frames are inserted), every claim is at
  the label time of a frame the tiny configs show the model, with the box the object has
  on that decoded, resized frame."""
  processing = tiny_processing()
  checked = 0
  for record in load_records(os.path.join(synthetic_dir, "STGR-SFT.json")):
    if record["task"] not in SHOWN_FRAME_CLAIM_TASKS:
      continue
    clip = media.read_video(os.path.join(synthetic_dir, record["video_path"]), processing)
    times = present_video(clip, processing).frame_times
    for name, boxes, seconds in CLAIM.findall(record["reasoning_process"]):
      assert float(seconds) in times, (record["id"], seconds, times)
      frame = clip.frames[times.index(float(seconds))]
      extent, count = _colour_extent(frame, scenes.COLOURS[name.split()[0]], tolerance=40)
      box = np.array(json.loads(boxes[5:-6]))
      h, w = frame.shape[:2]
      if count < 0.3 * (box[2] - box[0]) * w * (box[3] - box[1]) * h:
        continue  # mostly hidden behind an object drawn over it
      np.testing.assert_allclose(box, np.array(extent) / [w, h, w, h], atol=0.05)
      checked += 1
  assert checked >= 16


def test_box_on_shape_hand_cases():
  frame = np.zeros((20, 30, 3), np.uint8)
  frame[5:9, 10:16] = scenes.COLOURS["red"]  # 24 red pixels, 6 wide and 4 high
  frame[5, 10] = (200, 60, 60)  # within 40 of red: counted
  assert scenes.box_on_shape(frame, "red square", [10, 5, 16, 9])
  assert scenes.box_on_shape(frame, "red square", [10, 5, 13, 9])  # half the red, all of it red
  assert not scenes.box_on_shape(frame, "red square", [10, 5, 12, 9])  # 8 of 24 red pixels
  assert not scenes.box_on_shape(frame, "red square", [0, 0, 30, 20])  # 24 of 600 filled
  assert scenes.box_on_shape(frame, "red square", [10, 5, 100, 9])  # clipped to x2 = 30: 24 of 80
  assert not scenes.box_on_shape(frame, "blue square", [10, 5, 16, 9])  # no blue anywhere
  assert not scenes.box_on_shape(frame, "mauve thing", [10, 5, 16, 9])
  assert not scenes.box_on_shape(frame, "", [10, 5, 16, 9])
  assert not scenes.box_on_shape(frame, "red square", [10, 5, 16])
  assert not scenes.box_on_shape(frame, "red square", [16, 9, 10, 5])  # corners swapped: empty


def test_relevance_ratings_follow_the_crop(tmp_path):
  """The share of a crop in the subject's colour (counting questions: any object's colour)
  grows with the rating; a crop rated 0 is mostly something else. (A crop rated 2 can be
  mostly another colour: an object drawn later may cover the subject.)"""
  synthetic_dir = str(tmp_path)
  synth.synthesize(synthetic_dir, videos=16, seed=5, vstar_videos=1, progress=False)
  shares = {0: [], 1: [], 2: []}
  for record in load_records(os.path.join(synthetic_dir, "STGR-SFT.json")):
    if record["task"] != grammar.RELEVANCE_RATING:
      continue
    image = np.asarray(Image.open(os.path.join(synthetic_dir, record["image_path"])).convert("RGB"))
    assert list(image.shape[1::-1]) == record["image_size"]
    named = re.search(r"When is the (\w+) \w+ visible", record["question"])
    if named:
      colours = [scenes.COLOURS[named.group(1)]]
    elif record["question"].startswith("How many objects"):
      colours = list(scenes.COLOURS.values())
    else:  # "Which colour is the circle?": the colour is the question
      continue
    share = max((np.abs(image.astype(int) - np.array(c)) <= 40).all(-1).mean() for c in colours)
    shares[int(record["answer"])].append(share)
  assert all(len(v) >= 3 for v in shares.values()), shares
  assert max(shares[0]) < 0.5 and min(shares[2]) > 0.1
  assert np.mean(shares[0]) < np.mean(shares[1]) < np.mean(shares[2])


def test_relevance_rule_on_hand_boxes():
  subject = [[10, 10, 30, 30]]
  assert synth.relevance([10, 10, 30, 30], subject) == 2
  assert synth.relevance([12, 10, 34, 30], subject) == 2  # IoU 18*20 / (22*20) = 0.82
  assert synth.relevance([20, 10, 40, 30], subject) == 1  # IoU 1/3, half of the subject
  assert synth.relevance([27, 10, 47, 30], subject) == 0  # 15% of the subject
  assert synth.relevance([14, 14, 18, 18], subject) == 1  # inside it: 4% of it, all of the crop
  assert synth.relevance([50, 50, 60, 60], subject) == 0
  assert synth.relevance([50, 50, 60, 60], subject + [[50, 50, 61, 60]]) == 2


def test_reasoning_is_grounded(synthetic_dir):
  for record in load_records(os.path.join(synthetic_dir, "STGR-SFT.json")):
    if record["task"] == grammar.RELEVANCE_RATING:
      continue
    think = record["reasoning_process"]
    if record["task"] == "visual QA":
      assert re.search(r"<obj>(\w+)</obj><box>(\[.*?\])</box>", think)
      continue
    claims = CLAIM.findall(think)
    assert claims, record["id"]
    for name, boxes, seconds in claims:
      assert float(seconds) >= 0 and all(0 <= v <= 1 for v in json.loads(boxes[5:-6]))
    if record["task"] == "temporal-spatial free-form QA":
      key_times = {kf["time"] for kf in record["key_frames"]}
      assert {float(s) for _, _, s in claims} == key_times
    if record["task"] in ("temporal QA", "temporal QA (MCQ)"):
      assert think.count("<t>") >= 2
      start, end = parse_segment(record["answer"])
      assert all(start <= float(t) <= end for t in re.findall(r"<t>([\d.]+)</t>s", think))


def test_vstar_benchmark_format(synthetic_dir):
  items = json.load(open(os.path.join(synthetic_dir, "vstar.json"), encoding="utf-8"))
  assert len(items) == 2
  for item in items:
    assert VSTAR_FIELDS <= item.keys()
    reader = decord.VideoReader(os.path.join(synthetic_dir, item["video_path"]))
    assert item["video_path"] == f"videos/{item['vid']}.mp4"
    assert item["frame_count"] == len(reader) and item["fps"] == reader.get_avg_fps()
    assert [item["width"], item["height"]] == list(reader[0].shape[1::-1])
    start, end = item["timestamps"]
    assert 0 <= start < end <= (item["frame_count"] - 1) / item["fps"]
    seconds = [b["timestamp"] for b in item["bboxes"]]
    assert seconds == list(range(math.ceil(start), math.floor(end) + 1))
    for b in item["bboxes"]:
      assert b["frame_index"] == b["timestamp"] * item["fps"]
      assert (
        0 <= b["xmin"] < b["xmax"] <= item["width"] and 0 <= b["ymin"] < b["ymax"] <= item["height"]
      )
    assert item["answer"].split()[-1].rstrip(".") in scenes.COLOURS


def test_decoded_frames_match_the_rendered_scene(tmp_path):
  """The encoder must not smear the shapes: decoded frames stay close to the rendering."""
  import decord
  import numpy as np

  rng = np.random.default_rng([3, 0, 0])
  scene = scenes.make_scene("v0000", rng, 112, 84, 8)
  path = str(tmp_path / "v.mp4")
  scenes.write_video(scene, path)
  frames = decord.VideoReader(path).get_batch(list(range(scene.num_frames))).asnumpy()
  errors = [
    np.abs(frames[i].astype(float) - scene.render(i)[0]).mean() for i in range(scene.num_frames)
  ]
  # 4 Mb/s gives at most ~1.2 levels of mean error here; the default 200 kb/s gave 3.5.
  assert len(frames) == scene.num_frames and max(errors) < 2.0, max(errors)
