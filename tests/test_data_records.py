"""STGR record validation, SFT targets, and bad records in strict and lenient runs."""

import copy
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
from data_fixtures import demo_tokenizer, synthetic_dir, truncate, write_test_video  # noqa: F401
from PIL import Image

from o3jax import grammar
from o3jax.data.encode import EncodeRecord, Skipped, encode_record
from o3jax.data.pipeline import BatchShape, PipelineConfig, make_iterator
from o3jax.data.records import RecordError, check_record, load_records, sft_target
from o3jax.eval.generate import image_query
from o3jax.processing import chat, prompts
from o3jax.processing.config import TINY


@pytest.fixture(scope="module")
def good(synthetic_dir):
  """One SFT record of every task, with absolute media paths so any root works."""
  records = {}
  for record in load_records(os.path.join(synthetic_dir, "STGR-SFT.json")):
    record = copy.deepcopy(record)
    for key in ("video_path", "image_path"):
      if key in record:
        record[key] = os.path.join(synthetic_dir, record[key])
    for kf in record.get("key_frames", []):
      kf["path"] = os.path.join(synthetic_dir, kf["path"])
    records.setdefault(record["task"], record)
  assert len(records) == 7  # the six STGR tasks and relevance ratings
  return records


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, good):
  root = tmp_path_factory.mktemp("bad")
  video = good["temporal QA"]["video_path"]
  truncate(video, str(root / "truncated.mp4"))
  faststart = write_test_video(str(root / "faststart.mp4"), frames=48, faststart=True)
  truncate(faststart, str(root / "truncated_faststart.mp4"), 0.4)
  (root / "empty.mp4").write_bytes(b"")
  (root / "junk.mp4").write_bytes(b"this is not a video at all" * 50)
  (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
  truncate(
    good["temporal-spatial free-form QA"]["key_frames"][0]["path"], str(root / "truncated.png"), 0.5
  )
  return str(root)


def _edit(record, **changes):
  record = copy.deepcopy(record)
  for key, value in changes.items():
    if value is None:
      record.pop(key, None)
    else:
      record[key] = value
  return record


def bad_cases(good, bad_files):
  """(record, field, message fragment) for every kind of bad input."""
  st, tg, vqa = good["temporal-spatial free-form QA"], good["temporal QA"], good["visual QA"]
  path = lambda name: os.path.join(bad_files, name)  # noqa: E731
  key = next(iter(st["key_items"]))
  name = next(iter(st["key_items"][key]))
  outside = _edit(st, key_items={key: {name: [[0.5, 0.5, 1.2, 0.9]]}})
  flipped = _edit(
    st, reasoning_process="The <obj>x</obj><box>[0.5,0.1,0.4,0.3]</box>at<t>1.0</t>s."
  )
  bad_key_frame = _edit(st, key_frames=[dict(st["key_frames"][0], path=path("truncated.png"))])
  return [
    (_edit(tg, id="missing-video", video_path=path("nope.mp4")), "video_path", "does not exist"),
    (_edit(tg, id="no-video-field", video_path=None), "video_path", "missing video_path"),
    (_edit(vqa, id="missing-image", image_path=path("nope.png")), "image_path", "does not exist"),
    (_edit(vqa, id="unreadable-image", image_path=path("junk.png")), "image_path", "unreadable"),
    (_edit(tg, id="unreadable-video", video_path=path("junk.mp4")), "video_path", "unreadable"),
    (_edit(tg, id="truncated-video", video_path=path("truncated.mp4")), "video_path", "truncated"),
    (
      _edit(tg, id="truncated-faststart", video_path=path("truncated_faststart.mp4")),
      "video_path",
      "truncated",
    ),
    (_edit(tg, id="empty-video", video_path=path("empty.mp4")), "video_path", "zero-length"),
    (_edit(outside, id="box-outside"), f"key_items[{key}][{name}][0]", "outside [0,1]"),
    (_edit(flipped, id="box-flipped"), "reasoning_process", "x2 <= x1"),
    (
      _edit(vqa, id="vqa-box-outside", answer="<obj>a</obj><box>[10,10,500,40]</box>"),
      "answer",
      "outside",
    ),
    (
      _edit(tg, id="end-before-start", answer="From <t>5.0</t>s to <t>2.0</t>s"),
      "answer",
      "ends before",
    ),
    (
      _edit(good["temporal QA (MCQ)"], id="mcq-end-before-start", answer="B\n[4.0, 1.5]"),
      "answer",
      "ends before",
    ),
    (_edit(tg, id="unknown-task", task="video captioning"), "task", "unknown task"),
    (_edit(tg, id="no-reasoning", reasoning_process=None), "reasoning_process", "missing"),
    (_edit(bad_key_frame, id="truncated-key-frame"), "key_frames[0].path", "truncated"),
    (
      _edit(good[grammar.RELEVANCE_RATING], id="rating-3", answer="3"),
      "answer",
      "one of ['0', '1', '2']",
    ),
    (
      _edit(good[grammar.RELEVANCE_RATING], id="rating-no-image", image_path=path("nope.png")),
      "image_path",
      "does not exist",
    ),
  ]


def test_good_records_encode(good, demo_tokenizer):
  for record in good.values():
    check_record(record, stage="sft")
    example = encode_record(record, tokenizer=demo_tokenizer, config=TINY, stage="sft")
    assert example.id == record["id"] and example.loss_mask.sum() > 0


def test_every_bad_input_names_record_and_field(good, bad_files, demo_tokenizer):
  for record, field, fragment in bad_cases(good, bad_files):
    with pytest.raises(RecordError) as info:
      encode_record(record, tokenizer=demo_tokenizer, config=TINY, stage="sft", root=bad_files)
    error = info.value
    assert (error.record_id, error.field) == (record["id"], field), str(error)
    assert fragment in error.message, str(error)
    assert f"record {record['id']!r}" in str(error) and f"field {field!r}" in str(error)
    # The lenient path returns the same error instead of raising.
    skipped = EncodeRecord(demo_tokenizer, TINY, "sft", bad_files)((0, record))
    assert isinstance(skipped, Skipped) and str(skipped.error) == str(error)


def test_record_without_id_is_named_by_index(demo_tokenizer):
  with pytest.raises(RecordError, match=r"record '#3': field 'record'"):
    check_record(["not", "an", "object"], stage="rl", index=3)
  skipped = EncodeRecord(demo_tokenizer, TINY, "rl")((5, {"task": "temporal QA"}))
  assert skipped.error.record_id == "#5" and skipped.error.field == "question"


def test_relevance_rating_is_sft_only_and_encodes_as_the_rater_asks(good, demo_tokenizer):
  """The SFT prompt of a rating record is, token for token and pixel for pixel, the query
  test-time scaling sends (mcq_run.model_rater): no system prompt, crop, RATING_PROMPT."""
  record = good[grammar.RELEVANCE_RATING]
  with pytest.raises(RecordError, match="for SFT only"):
    check_record(record, stage="rl")
  example = encode_record(record, tokenizer=demo_tokenizer, config=TINY, stage="sft")
  crop = np.asarray(Image.open(record["image_path"]).convert("RGB"))
  query = image_query(crop, prompts.RATING_PROMPT.format(question=record["question"]), TINY)
  asked = chat.tokenize(
    demo_tokenizer, query.messages(), add_generation_prompt=True, merge_size=TINY.merge_size
  )
  np.testing.assert_array_equal(example.input_ids[: example.prompt_length], asked.input_ids)
  np.testing.assert_array_equal(example.pixel_values, query.visual.pixel_values)
  target = demo_tokenizer.decode(example.input_ids[example.loss_mask == 1].tolist())
  assert target.startswith(record["answer"]) and "<think>" not in target
  assert "system" not in demo_tokenizer.decode(example.input_ids.tolist())


def test_rl_records_need_no_reasoning(synthetic_dir):
  for record in load_records(os.path.join(synthetic_dir, "STGR-RL.json")):
    check_record(record, stage="rl", root=synthetic_dir)
    with pytest.raises(RecordError, match="reasoning_process"):
      check_record(record, stage="sft", root=synthetic_dir)


def test_malformed_json_names_file_and_line(tmp_path):
  path = tmp_path / "broken.json"
  path.write_text('[{"id": "a",\n "task": }]')
  with pytest.raises(ValueError, match=r"broken.json: malformed JSON at line 2"):
    load_records(str(path))
  path.write_text('{"id": "a"}')
  with pytest.raises(ValueError, match="expected a JSON list"):
    load_records(str(path))


def test_sft_target_converts_boxes_to_processed_pixels():
  record = {
    "task": "temporal QA",
    "reasoning_process": "<obj>a</obj><box>[0.1,0.25,0.5,1]</box>at<t>1</t>s",
    "answer": "From <t>1.0</t>s to <t>2.0</t>s",
  }
  assert sft_target(record, (84, 56)) == (
    "<think><obj>a</obj><box>[8,14,42,56]</box>at<t>1</t>s</think>\n"
    "<answer>From <t>1.0</t>s to <t>2.0</t>s</answer>"
  )
  # Visual QA: pixels of the 112x84 original rescaled to 84x56 (Python rounding, half to even).
  record = {
    "task": "visual QA",
    "image_size": [112, 84],
    "reasoning_process": "<obj>b</obj><box>[42,31,70,59]</box>",
    "answer": "<obj>b</obj><box>[42, 31, 70, 59]</box>",
  }
  assert sft_target(record, (84, 56)) == (
    "<think><obj>b</obj><box>[32,21,52,39]</box></think>\n"
    "<answer><obj>b</obj><box>[32,21,52,39]</box></answer>"
  )


def _bucket():
  return (BatchShape(seq_len=1024, image_patches=240, images=10),)


def test_pipeline_skips_and_counts_bad_records(good, bad_files, demo_tokenizer, tmp_path):
  cases = bad_cases(good, bad_files)
  records = []
  for i, record in enumerate(good.values()):  # good and bad interleaved
    records.append(record)
    records += [case[0] for case in cases[3 * i : 3 * i + 3]]
  assert len(records) == len(good) + len(cases)
  path = tmp_path / "mixed.json"
  path.write_text(json.dumps(records))
  records = load_records(str(path))
  config = PipelineConfig(
    batch_size=2,
    buckets=_bucket(),
    num_epochs=1,
    shuffle=False,
    drop_remainder=False,
    shard_index=0,
    shard_count=1,
  )
  iterator = make_iterator(
    records, tokenizer=demo_tokenizer, processing=TINY, config=config, root=bad_files
  )
  batches = list(iterator)
  assert sum(int(b["example_mask"].sum()) for b in batches) == len(good)
  assert iterator.skipped == len(cases)
  expected_fields = {}
  for _, field, _ in cases:
    expected_fields[field] = expected_fields.get(field, 0) + 1
  assert iterator.skipped_by_field == expected_fields
  assert iterator.get_state()["skipped"] == len(cases)

  strict = dataclasses.replace(config, strict=True)
  iterator = make_iterator(
    records, tokenizer=demo_tokenizer, processing=TINY, config=strict, root=bad_files
  )
  with pytest.raises(RecordError) as info:
    list(iterator)
  assert info.value.record_id == cases[0][0]["id"]  # the first bad record in file order


def test_pipeline_refuses_examples_larger_than_every_bucket(good, demo_tokenizer):
  config = PipelineConfig(
    batch_size=1,
    buckets=(BatchShape(seq_len=64, image_patches=240, images=10),),
    num_epochs=1,
    shuffle=False,
    shard_index=0,
    shard_count=1,
  )
  records = [good["temporal QA"]]
  iterator = make_iterator(records, tokenizer=demo_tokenizer, processing=TINY, config=config)
  assert list(iterator) == [] and iterator.skipped_by_field == {"input_ids": 1}
  strict = dataclasses.replace(config, strict=True)
  with pytest.raises(RecordError, match="does not fit the largest bucket"):
    list(make_iterator(records, tokenizer=demo_tokenizer, processing=TINY, config=strict))


def test_all_bad_records_stop_an_endless_run(good, bad_files, demo_tokenizer):
  records = [case[0] for case in bad_cases(good, bad_files)[:3]]
  config = PipelineConfig(batch_size=1, buckets=_bucket(), shard_index=0, shard_count=1)
  iterator = make_iterator(
    records, tokenizer=demo_tokenizer, processing=TINY, config=config, root=bad_files
  )
  with pytest.raises(RuntimeError, match="no usable record"):
    next(iterator)


def test_copying_synthetic_dir_keeps_relative_paths(synthetic_dir, tmp_path):
  moved = tmp_path / "moved"
  shutil.copytree(synthetic_dir, moved)
  for name in ("STGR-SFT.json", "STGR-RL.json"):
    stage = "sft" if "SFT" in name else "rl"
    for record in load_records(str(moved / name)):
      check_record(record, stage=stage, root=str(moved))


def test_key_frame_without_a_path_is_gold_only(good, demo_tokenizer):
  """An o3jax extension: a spatio-temporal key frame without `path` is not shown (one image
  fewer than with its path) but stays in the reward metadata."""
  st = good["temporal-spatial free-form QA"]
  shown = encode_record(st, tokenizer=demo_tokenizer, config=TINY, stage="rl")
  hidden_frames = [{k: v for k, v in kf.items() if k != "path"} for kf in st["key_frames"]]
  hidden = encode_record(
    _edit(st, key_frames=hidden_frames), tokenizer=demo_tokenizer, config=TINY, stage="rl"
  )
  assert len(shown.image_grid_thw) == len(hidden.image_grid_thw) + len(st["key_frames"])
  assert hidden.meta["key_frames"] == hidden_frames and hidden.meta["key_items"] == st["key_items"]
