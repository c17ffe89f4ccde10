"""VideoMME, WorldSense and VideoMMMU from small files in their published formats (column
names and types as published), written here with videos made here: loading, the reference's
prompts, hand-scored accuracies per category, and end-to-end runs with the tiny model."""

import csv
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_fixtures import write_test_video
from o3jax.eval import bench_score, benchmarks
from test_eval_generate import _run_cli, make_tiny_model_dirs

OPTS = ["A. red", "B. blue", "C. green", "D. white"]


def write_videomme(root: str) -> str:
  os.makedirs(os.path.join(root, "videomme"))
  os.makedirs(os.path.join(root, "data"))
  rows = []
  for i, (duration, domain, task, answer) in enumerate(
    [
      ("short", "Knowledge", "Counting Problem", "A"),
      ("short", "Life Record", "OCR Problems", "B"),
      ("medium", "Knowledge", "Counting Problem", "C"),
    ]
  ):
    write_test_video(os.path.join(root, "data", f"vid{i}.mp4"), frames=8, seed=i)
    rows.append(
      dict(
        video_id=f"{i + 1:03d}",
        duration=duration,
        domain=domain,
        sub_category="Humanity & History",
        url=f"https://www.youtube.com/watch?v=vid{i}",
        videoID=f"vid{i}",
        question_id=f"{i + 1:03d}-1",
        task_type=task,
        question="What colour is the bar?",
        options=OPTS,
        answer=answer,
      )
    )
  schema = pa.schema(
    [(k, pa.string()) for k in list(rows[0])[:9]]
    + [("options", pa.list_(pa.string())), ("answer", pa.string())]
  )
  pq.write_table(pa.Table.from_pylist(rows, schema), os.path.join(root, benchmarks.VIDEOMME_FILE))
  return root


def write_worldsense(root: str) -> str:
  os.makedirs(root)
  header = ["index", "video", "question", "candidates", "answer", "duration", "domain"]
  header += ["sub_category", "task_domain", "task_type", "audio_class"]
  rows = [
    [0, "ws0", "Who speaks?", str(OPTS), "A", "<1min", "Sports", "Soccer", "Recognition"],
    [1, "ws1", "Who sings?", str(OPTS), "D", "1-2min", "Music", "Covers", "Reasoning"],
  ]
  rows[0] += ["Audio Recognition", "['Speech', 'Music']"]
  rows[1] += ["Causal Reasoning", "['Music']"]
  with open(os.path.join(root, benchmarks.WORLDSENSE_FILE), "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL)
    writer.writerows([header] + rows)
  for i in range(2):
    write_test_video(os.path.join(root, f"ws{i}.mp4"), frames=8, seed=10 + i)
  return root


def write_videommmu(root: str) -> str:
  png = io.BytesIO()
  Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(png, format="PNG")
  schema = pa.schema(
    [
      ("id", pa.string()),
      ("question", pa.string()),
      ("options", pa.list_(pa.string())),
      ("answer", pa.string()),
      ("link_selected", pa.string()),
      ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
      ("question_type", pa.string()),
    ]
  )
  ten = [f"option {k}" for k in range(10)]
  splits = {
    "Perception": [("validation_Art_1", ten, "J", None, "multiple-choice")],
    "Comprehension": [("validation_Math_2", [], "12.5", None, "open")],
    "Adaptation": [
      (
        "validation_Math_3",
        OPTS,
        "B",
        {"bytes": png.getvalue(), "path": "q.png"},
        "multiple-choice",
      )
    ],
  }
  for split, rows in splits.items():
    os.makedirs(os.path.join(root, split))
    table = [
      dict(id=i, question="Q?", options=o, answer=a, link_selected="", image=im, question_type=t)
      for i, o, a, im, t in rows
    ]
    path = os.path.join(root, split, benchmarks.VIDEOMMMU_FILE)
    pq.write_table(pa.Table.from_pylist(table, schema), path)
    for item_id, *_ in rows:
      write_test_video(os.path.join(root, f"{item_id}.mp4"), frames=8, seed=len(item_id))
  return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("benchmarks"))
  return {
    "videomme": write_videomme(os.path.join(root, "Video-MME")),
    "worldsense": write_worldsense(os.path.join(root, "WorldSense")),
    "videommmu": write_videommmu(os.path.join(root, "VideoMMMU")),
  }


def test_loaders_read_the_published_files_with_the_reference_prompts(data):
  mme = benchmarks.load("videomme", data["videomme"])
  assert [i.id for i in mme] == ["001-1", "002-1", "003-1"] and mme[0].letters == "ABCD"
  assert mme[0].video.endswith("data/vid0.mp4") and mme[1].categories["domain"] == "Life Record"
  question = "What colour is the bar?\nA. red\nB. blue\nC. green\nD. white"
  assert mme[0].prompt.startswith("Question:" + question + "\nSelect the best answer to the ")
  assert mme[0].prompt.endswith(
    "respond with only the letter (A, B, C, or D) of the correct option."
  )
  plain = benchmarks.load("videomme", data["videomme"], think=False)[0].prompt
  assert plain == (
    "Select the best answer to the multiple-choice question based on the video. Respond with "
    "only the letter (A, B, C, or D) of the correct option.\n" + question + "\n"
  )
  ws = benchmarks.load("worldsense", data["worldsense"], think=False)
  assert ws[0].options == OPTS and ws[0].video.endswith("WorldSense/ws0.mp4")
  assert ws[0].categories["audio_class"] == ["Speech", "Music"]
  assert ws[0].prompt == (
    "Carefully watch this video and pay attention to every detail. Based on your observations, "
    "select the best option that accurately addresses the question.\nThese are the frames of a "
    "video. Audio transcripts of the video:\nThis video does not have audio transcripts. "
    "Question: Who speaks?\nA. red\nB. blue\nC. green\nD. white\n\nSelect the best answer to the "
    "multiple-choice question based on the video. Respond with only the letter (A, B, C, or D) "
    "of the correct option. "
  )
  assert (
    "100 words.In the answer part" in benchmarks.load("worldsense", data["worldsense"])[0].prompt
  )
  mmmu = benchmarks.load("videommmu", data["videommmu"])
  assert [(i.categories["track"], i.question_type) for i in mmmu] == [
    ("Perception", "multiple-choice"),
    ("Comprehension", "open"),
    ("Adaptation", "multiple-choice"),
  ]
  assert mmmu[0].letters == "ABCDEFGHIJ" and "\nJ. option 9\n" in mmmu[0].prompt
  assert mmmu[1].prompt.endswith("In the answer part, respond with only the final answer.")
  assert mmmu[2].image.shape == (40, 60, 3) and mmmu[0].image is None
  assert mmmu[2].categories == {"track": "Adaptation", "discipline": "Science", "subject": "Math"}


def test_bad_rows_name_the_file_row_and_field(tmp_path, data):
  with pytest.raises(FileNotFoundError, match="WorldSense.tsv"):
    benchmarks.load("worldsense", str(tmp_path))
  bad = tmp_path / "ws"
  bad.mkdir()
  text = open(os.path.join(data["worldsense"], "WorldSense.tsv")).read()
  (bad / "WorldSense.tsv").write_text(text.replace("\"['A. red'", "\"[oops'", 1))
  with pytest.raises(ValueError, match="WorldSense.tsv row 0: field 'candidates'"):
    benchmarks.load("worldsense", str(bad))


def _record(benchmark, item, response):
  return {
    "id": item.id,
    "question_type": item.question_type,
    "answer": item.answer,
    "options": item.options,
    "categories": item.categories,
    "response": response,
  }


def test_hand_scored_accuracy_per_category(data):
  mme = benchmarks.load("videomme", data["videomme"])
  # right (A), wrong (C for B), right by the parser ("The answer is (C).")
  responses = ["A", "C", "The answer is (C)."]
  m = bench_score.score("videomme", [_record("videomme", i, r) for i, r in zip(mme, responses)])
  assert m["acc"] == pytest.approx(2 / 3)
  assert m["by_duration"] == {"medium": {"n": 1, "acc": 1.0}, "short": {"n": 2, "acc": 0.5}}
  assert m["by_domain"]["Knowledge"] == {"n": 2, "acc": 1.0}
  assert m["by_task_type"]["OCR Problems"] == {"n": 1, "acc": 0.0}

  ws = benchmarks.load("worldsense", data["worldsense"])
  # "no idea" has no letter: the reference draws random.choice after seed 42, i.e. "A" (right)
  m = bench_score.score(
    "worldsense", [_record("worldsense", i, r) for i, r in zip(ws, ["no idea", "B"])]
  )
  assert m["acc"] == 0.5
  assert m["by_audio_class"] == {"Music": {"n": 2, "acc": 0.5}, "Speech": {"n": 1, "acc": 1.0}}
  assert m["by_task_domain"] == {
    "Reasoning": {"n": 1, "acc": 0.0},
    "Recognition": {"n": 1, "acc": 1.0},
  }

  mmmu = benchmarks.load("videommmu", data["videommmu"])
  responses = ["J", "<think>..</think><answer>So the result is 12.50 m</answer>", "A"]
  m = bench_score.score("videommmu", [_record("videommmu", i, r) for i, r in zip(mmmu, responses)])
  assert m["acc"] == pytest.approx(2 / 3)  # J right; 12.50 == 12.5 right; A wrong
  assert m["by_track"]["Comprehension"] == {"n": 1, "acc": 1.0}
  assert m["by_discipline"] == {"Art": {"n": 1, "acc": 1.0}, "Science": {"n": 2, "acc": 0.5}}
  m = bench_score.score(
    "videommmu", [_record("videommmu", i, r) for i, r in zip(mmmu, ["", "12", "B"])]
  )
  assert (m["n"], m["n_excluded"], m["acc"]) == (2, 1, 0.5)  # the empty one leaves the means
  assert bench_score.open_correct("12.5", bench_score.parse_open_response("It is 12.5.")) is True
  assert (
    bench_score.open_correct("cat", bench_score.parse_open_response("the answer is dog")) is False
  )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  return make_tiny_model_dirs(str(tmp_path_factory.mktemp("tiny_model")))[0]


@pytest.mark.parametrize("name", benchmarks.BENCHMARKS)
def test_end_to_end_with_the_tiny_model(name, data, model_dir, tmp_path, capsys):
  benchmark = name
  out = tmp_path / "m.json"
  argv = ["eval", benchmark, "--data", data[benchmark], "--model", model_dir, "--processing"]
  argv += ["tiny", "--presentation", "video", "--max-new-tokens", "6", "--out", str(out)]
  if benchmark == "worldsense":
    argv += ["--n", "2", "--vote", "confidence", "--temperature", "1.0"]
  assert _run_cli(argv) == 0
  results = json.loads((tmp_path / "m.results.json").read_text())
  items = benchmarks.load(benchmark, data[benchmark])
  assert [r["id"] for r in results] == [i.id for i in items]
  metrics = json.loads(out.read_text())
  for r in results:
    if r["question_type"] != "open":
      assert r["response"] in r["row"].get("answer", "") + "ABCDEFGHIJ"  # the vote's letter
      assert len(r["responses"]) == (2 if benchmark == "worldsense" else 1)
  # the printed accuracy is the hand count over the results file
  kept = [r for r in results if benchmark != "videommmu" or r["response"] != ""]
  hand = np.mean(
    [
      r["response"] == r["answer"]  # a voted letter
      if r["question_type"] != "open"
      else bench_score.score_record(benchmark, r, 0)["correct"]
      for r in kept
    ]
  )
  assert metrics["acc"] == pytest.approx(hand)
  assert metrics["generation"]["presentation"] == "video"
  assert f"{benchmark} (N={len(kept)})" in capsys.readouterr().out
  if benchmark == "worldsense":
    assert "tts" in metrics and set(results[0]) >= {"majority", "confidence", "weights", "ratings"}
  rescored = tmp_path / "again.json"
  argv = ["eval", benchmark, "--results", str(tmp_path / "m.results.json"), "--out", str(rescored)]
  assert _run_cli(argv) == 0
  assert json.loads(rescored.read_text())["acc"] == metrics["acc"]
