"""Answering benchmarks with a model: loading, batched sampling, V-STaR / MCQ / TVG
results files, confidence-aware test-time scaling."""

import argparse
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx
from tokenizers import Tokenizer, models

from hf_reference import hf_logits, perturbed_hf_model
from o3jax import sample, sample_inputs
from o3jax.eval import (
  cli,
  generate as G,
  mcq,
  mcq_run,
  tts,
  tvg_run,
  vstar,
  vstar_protocol,
  vstar_run,
)
from o3jax.models import config as config_lib
from o3jax.processing.tokenizer import SPECIAL_TOKENS, build_demo_tokenizer, special_token_ids

PROCESSING = G.processing_config("tiny")


def make_tiny_model_dirs(root: str):
  """A random tiny transformers model with the demo tokenizer, saved as a Hugging Face
  directory and converted to an o3jax checkpoint directory (`o3jax convert --to o3jax`).
  Returns (hf dir, o3jax dir, the transformers model)."""
  from o3jax.convert.cli import hf_to_o3jax

  tokenizer = build_demo_tokenizer()
  ids = special_token_ids(tokenizer)
  config = config_lib.tiny(**{k: v for k, v in ids.items() if k != "pad_token_id"})
  hf = perturbed_hf_model(config)
  hf_dir, o3_dir = os.path.join(root, "hf"), os.path.join(root, "o3jax")
  hf.save_pretrained(hf_dir)
  tokenizer.save(os.path.join(hf_dir, "tokenizer.json"))
  hf_to_o3jax(hf_dir, o3_dir)
  return hf_dir, o3_dir, hf


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
  return make_tiny_model_dirs(str(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="module")
def loaded(model_dirs):
  return G.load_model(model_dirs[0])


def _run_cli(argv):
  parser = argparse.ArgumentParser(prog="o3jax")
  cli.add_parser(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  return args.func(args)


# ------------------------------------------------------------------ loading, shapes


def test_hf_and_o3jax_directories_load_the_same_model(model_dirs, loaded, synthetic_data, tmp_path):
  from_ckpt = G.load_model(model_dirs[1])
  assert (loaded.kind, from_ckpt.kind) == ("hf", "o3jax")
  a = dict(nnx.to_flat_state(nnx.state(loaded.model, nnx.Param)))
  b = dict(nnx.to_flat_state(nnx.state(from_ckpt.model, nnx.Param)))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k].get_value()), np.asarray(b[k].get_value()))
  assert loaded.eos_ids == from_ckpt.eos_ids and loaded.pad_id == from_ckpt.pad_id

  with pytest.raises(FileNotFoundError, match="not a model directory"):
    G.load_model(str(tmp_path))
  bad = tmp_path / "bad"
  bad.mkdir()
  for name in ("config.json", "model.safetensors"):
    os.symlink(os.path.join(model_dirs[0], name), bad / name)
  with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
    G.load_model(str(bad))
  other = Tokenizer(models.WordLevel({"a": 0}, unk_token="a"))
  other.add_special_tokens(list(reversed(SPECIAL_TOKENS)))  # same tokens, other ids
  other.save(str(bad / "tokenizer.json"))
  with pytest.raises(ValueError, match="not the model's tokenizer"):
    G.load_model(str(bad))


@pytest.mark.parametrize(
  "x,least,expected",
  [
    (1, 64, 64),
    (64, 64, 64),
    (65, 64, 128),
    (1000, 64, 1024),
    (1025, 64, 1152),
    (1500, 64, 1536),
    (3000, 8, 3072),
    (9, 8, 16),
    (17, 8, 24),
    (200, 8, 208),
  ],
)
def test_bucket(x, least, expected):
  assert sample_inputs.bucket(x, least) == expected
  assert expected >= x and (expected - x) < max(least, x / 8)


def test_processing_config(tmp_path):
  assert G.processing_config("tiny").max_frames == 8
  assert G.processing_config("reference", "video").presentation == "video"
  cfg = tmp_path / "c.py"
  cfg.write_text(
    "from o3jax.train.config import TrainConfig\n"
    "def get_config():\n  return TrainConfig(processing={'max_frames': 6})\n"
  )
  assert G.processing_config(str(cfg)).max_frames == 6
  with pytest.raises(ValueError, match="processing must be one of"):
    G.processing_config("huge")


def _video_queries(data_dir):
  """Three queries of different lengths over three videos."""
  records = json.load(open(os.path.join(data_dir, "STGR-RL.json")))
  paths = sorted({r["video_path"] for r in records if "video_path" in r})[:3]
  videos = [G.load_video(os.path.join(data_dir, p), PROCESSING) for p in paths]
  return [
    G.Query("What colour is the square?", videos[0].visual, "You are helpful."),
    G.Query("When does the red circle appear? Answer briefly, in seconds.", videos[1].visual),
    G.Query("How many objects?", videos[2].visual, "Be grounded."),
  ]


def test_batched_greedy_tokens_are_the_transformers_argmax(model_dirs, loaded, synthetic_data):
  """Bucketed left padding, padded vision layouts and a filler row change nothing: each
  generated token is the argmax of transformers' forward pass over the unpadded prompt
  and the tokens before it."""
  hf = model_dirs[2]
  queries = _video_queries(synthetic_data)
  merge = loaded.config.vision.spatial_merge_size
  rows = [G.encode(loaded.tokenizer, q, merge) for q in queries]
  assert len({len(r.ids) for r in rows}) == 3
  inputs = G.batch_inputs(loaded, rows, batch_size=4, prompt_bucket=64)
  assert inputs["input_ids"].shape[1] % 64 == 0
  assert not inputs["attention_mask"][3].any()  # filler row
  new = 6
  out = sample.sample(
    loaded.graphdef,
    loaded.state,
    inputs,
    jax.random.key(0),
    max_new_tokens=new,
    greedy=True,
    eos_id=[10**6],
    pad_id=loaded.pad_id,
  )
  tokens = np.asarray(out.tokens)
  for i, row in enumerate(rows):
    ids = np.concatenate([row.ids, tokens[i, :-1]])[None]
    logits = hf_logits(
      hf,
      loaded.config,
      ids,
      pixel_values=row.visual.pixel_values,
      image_grid_thw=row.visual.image_grid_thw,
    )[0, len(row.ids) - 1 :]
    chosen = np.take_along_axis(logits, tokens[i][:, None], 1)[:, 0]
    np.testing.assert_array_less(logits.max(1) - chosen, 1e-4)
    # and the sampler's log-probabilities are transformers' (fp32 whole model: 1e-4)
    logp = (
      logits
      - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
      - logits.max(1, keepdims=True)
    )
    np.testing.assert_allclose(
      np.asarray(out.logprobs)[i], np.take_along_axis(logp, tokens[i][:, None], 1)[:, 0], atol=1e-4
    )

  # `generate` is the same sampler call (same shapes: no new compilation), texts decoded.
  texts = G.generate(
    loaded, queries, jax.random.key(0), G.Decoding(max_new_tokens=new), batch_size=4
  )
  eos = np.isin(tokens[:3], loaded.eos_ids)
  lengths = np.where(eos.any(1), eos.argmax(1) + 1, new)
  assert [t[0] for t in texts] == loaded.tokenizer.decode_batch(
    [r[:n].tolist() for r, n in zip(tokens[:3], lengths)], skip_special_tokens=True
  )


# ------------------------------------------------------------------ V-STaR


def _vstar_record(width=168, height=112):
  return {
    "vid": "x",
    "domain": "d",
    "fps": 1.0,
    "frame_count": 10,
    "width": width,
    "height": height,
    "question": "q?",
    "answer": "a",
    "timestamps": [2.0, 4.0],
    "temporal_question": "when?",
    "spatial_question": "where?",
    "spatial_question_2": "where 2?",
    "bboxes": [
      {"timestamp": 2, "frame_index": 2, "xmin": 10, "ymin": 20, "xmax": 50, "ymax": 60},
      {"timestamp": 3, "frame_index": 3, "xmin": 20, "ymin": 20, "xmax": 60, "ymax": 60},
    ],
  }


def test_vstar_results_record_moves_boxes_to_the_annotation_size():
  record = _vstar_record()  # frames of 84x56: every coordinate doubles
  texts = [
    "<think>..</think><answer>It is blue.</answer>",
    "<answer>[2.0, 3.0]</answer>",
    '<think>..</think><answer>{"2": [5, 10, 25, 30], "3": [[10, 10, 30, 30], [0, 0, 1, 1]],'
    ' "3.5": [1, 1, 2, 2]}</answer>',
    "no boxes here",
    "From <t>2</t>s to <t>4</t>s",
  ]
  out = vstar_run.results_record(record, texts, (84, 56), rescale_to=(168, 112))
  assert {k: out[k] for k in record} == record
  assert out["answer_vqa"] == "It is blue." and out["answer_vqa_raw_output"] == texts[0]
  assert out["answer_temporal"] == [2.0, 3.0] and out["answer_temporal_2"] == [2.0, 4.0]
  assert out["answer_spatial"] == {
    "2": [10, 20, 50, 60],
    "3": [[20, 20, 60, 60], [0, 0, 2, 2]],
    "3.5": [2, 2, 4, 4],
  }
  assert out["answer_spatial_2"] == {} and out["answer_spatial_pre_2"] == texts[3]
  assert out["input_shape"] == [84, 56]
  m = vstar.score_vstar([out])
  assert m["m_viou_1"] == pytest.approx(1.0) and m["m_viou_2"] == 0.0
  assert m["m_tiou_1"] == pytest.approx(0.5) and m["m_tiou_2"] == pytest.approx(1.0)
  # non-integer scale: 112 / 84 and 84 / 56
  assert vstar_run.rescale_boxes({"1": [42, 28, 84, 56]}, (84, 56), (112, 84)) == {
    "1": [56.0, 42.0, 112.0, 84.0]
  }
  # the reference protocol keeps the boxes as written
  kept = vstar_run.results_record(record, texts, (84, 56))
  assert kept["answer_spatial"]["2"] == [5, 10, 25, 30]


def test_vstar_queries_state_the_frame_size(loaded, synthetic_data):
  record = json.load(open(os.path.join(synthetic_data, "vstar.json")))[0]
  video = G.load_video(G.video_file(record, synthetic_data), PROCESSING)
  queries = vstar_run.sample_queries(record, video, stage="rl")
  assert len(queries) == 5 and all(q.visual is video.visual for q in queries)
  assert record["question"] in queries[0].text and "84x56 pixels" in queries[2].text
  assert "84x56 pixels" in queries[3].text and "84x56 pixels" in queries[4].text
  assert "Assistant determines the precise time period" in queries[1].system


def test_vstar_generation_end_to_end(model_dirs, synthetic_data, tmp_path, capsys):
  records = json.load(open(os.path.join(synthetic_data, "vstar.json")))
  missing = dict(records[0], vid="gone", video_path="videos/gone.mp4")
  broken = {k: v for k, v in records[0].items() if k != "timestamps"}
  annotations = tmp_path / "vstar.json"
  annotations.write_text(json.dumps(records[:1] + [missing, broken]))
  out = tmp_path / "m" / "vstar.json"
  assert (
    _run_cli(
      [
        "eval",
        "vstar",
        "--annotations",
        str(annotations),
        "--videos",
        synthetic_data,
        "--model",
        model_dirs[1],
        "--protocol",
        "o3jax",
        "--processing",
        "tiny",
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  results = json.loads((tmp_path / "m" / "vstar.results.json").read_text())
  assert len(results) == 2  # the malformed annotation is left out
  first, gone = results
  for field, kind, empty in (("answer_vqa", str, ""), ("answer_temporal", list, [])):
    assert isinstance(first[field], kind) and gone[field] == empty
  assert isinstance(first["answer_spatial"], dict) and gone["answer_spatial_2"] == {}
  assert first["input_shape"] == [84, 56]
  assert "does not exist" in gone["o3jax_error"]
  assert {k: first[k] for k in records[0]} == records[0]
  m = json.loads(out.read_text())
  assert m["n"] == 2 and len(m["generation"]["errors"]) == 2
  assert m["generation"]["model_kind"] == "o3jax"
  assert m == {
    **json.loads(
      json.dumps(
        {
          "benchmark": "vstar",
          "results": m["results"],
          **vstar.score_vstar(results),
          "generation": m["generation"],
        }
      )
    )
  }
  assert "V-STaR (N=2)" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="record 1 .*does not exist"):
    _run_cli(
      [
        "eval",
        "vstar",
        "--annotations",
        str(annotations),
        "--videos",
        synthetic_data,
        "--model",
        model_dirs[1],
        "--processing",
        "tiny",
        "--max-new-tokens",
        "8",
        "--results",
        str(tmp_path / "r.json"),
        "--strict",
      ]
    )


def test_vstar_reference_protocol_end_to_end(model_dirs, synthetic_data, tmp_path):
  from o3jax.eval import vstar_reference as R
  from o3jax.processing import chat

  records = (json.load(open(os.path.join(synthetic_data, "vstar.json"))) * 2)[:2]
  video = vstar_run.load_reference_video(G.video_file(records[0], synthetic_data))
  n = len(video.frame_times)
  assert n == min(16, int(records[0]["frame_count"] / records[0]["fps"]) + 1)
  assert video.frame_times[1] == pytest.approx(1.0)  # 1 fps
  assert video.frame_size == (records[0]["width"], records[0]["height"])  # multiples of 28
  query = vstar_run.reference_queries(records[0], video)[1]
  text = R.with_frames(R.query_texts(records[0])["answer_temporal"], video.frame_times)
  tokens = video.visual.image_grid_thw[0].prod() // 4
  expected = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    + text.replace("<|image_pad|>", "<|image_pad|>" * tokens)
    + "<|im_end|>\n<|im_start|>assistant\n"
  )
  assert chat.render(query.messages(), add_generation_prompt=True) == expected
  annotations = tmp_path / "vstar.json"
  annotations.write_text(json.dumps(records))
  out = tmp_path / "vstar_metrics.json"
  argv = ["eval", "vstar", "--annotations", str(annotations), "--videos", synthetic_data]
  argv += ["--model", model_dirs[0], "--max-new-tokens", "8", "--out", str(out)]
  assert _run_cli(argv) == 0
  m = json.loads(out.read_text())
  g = m["generation"]
  assert (g["protocol"], g["repetition_penalty"], g["greedy"]) == ("reference", 1.05, True)
  results = json.loads(out.with_suffix(".results.json").read_text())
  assert len(results) == 2 and m["n"] == 2
  for record, result in zip(records, results):
    assert result["input_shape"] == [record["width"], record["height"]]
    for field, raw in vstar_protocol.RAW_FIELD.items():
      assert isinstance(result[raw], str)
      assert vstar_protocol.answer_fields(field, result[raw])[field] == result[field]
  assert m["m_tiou_1"] == pytest.approx(vstar.score_vstar(results)["m_tiou_1"])


# ------------------------------------------------------------------ MCQ, TVG, test-time scaling


def test_mcq_and_tvg_record_helpers():
  assert (
    mcq_run.question_of({"question": "Q?", "options": ["red", "B. blue"]})
    == "Q?\nOptions:\nA. red\nB. blue"
  )
  assert (
    mcq_run.question_of({"question": "Q?\nA. red\nB. blue", "options": ["A. red", "B. blue"]})
    == "Q?\nA. red\nB. blue"
  )
  assert mcq_run.gold_letter({"answer": "B\n[1.0, 2.0]"}) == "B"
  with pytest.raises(ValueError, match="'answer'"):
    mcq_run.gold_letter({"answer": "none"})
  assert tvg_run.target_of({"answer": "[1.5, 3.0]"}) == [1.5, 3.0]
  assert tvg_run.target_of({"timestamp": [2, 5]}) == [2.0, 5.0]
  with pytest.raises(ValueError, match="start <= end"):
    tvg_run.target_of({"target": [5, 2]})
  assert (
    tvg_run.unwrap_times(
      "<think>at<t>1.5</t>s</think><answer>From <t>2.0</t>s to <t>5</t>s</answer>"
    )
    == "<think>at1.5</think><answer>From 2.0 to 5</answer>"
  )
  records = [{"task": "temporal QA"}, {"task": "General video QA MCQ"}, {"task": "visual QA"}]
  assert G.select_tasks(records, mcq_run.STGR_TASKS) == records[1:2]
  plain = [{"question": "q", "answer": "A"}]
  assert G.select_tasks(plain, mcq_run.STGR_TASKS) == plain


def test_scale_rates_each_response_once_and_votes_by_hand():
  """Four completions for one question; the joint rater says 2 when any crop is bright."""
  frames = np.zeros((2, 20, 30, 3), np.uint8)
  frames[1, 0:10, 0:10] = (220, 40, 40)  # a red square in the second frame (t = 1 s at 1 fps)
  video = G.Video("v.mp4", None, frames, (0.0, 1.0), 2.0, (30, 20), 1.0)
  claim = "<obj>red square</obj><box>[{}]</box>at<t>{}</t>s"
  completions = [
    [
      "<think>The "
      + claim.format("0,0,10,10", "0.9")
      + " and "
      + claim.format("15,10,30,20", "1")
      + "</think><answer>A</answer>",
      "<think>No claim.</think><answer>B</answer>",
      "<think>The " + claim.format("15,10,30,20", "1.0") + "</think><answer>B</answer>",
      "<answer>B</answer>",
    ]
  ]
  calls = []

  def rate_joint(crop_lists, questions):
    calls.append(([len(c) for c in crop_lists], list(questions)))
    return ["2" if max(c.mean() for c in crops) > 20 else "0" for crops in crop_lists]

  read = [lambda t: tts.read_response(t, "AB", True)]
  [out] = mcq_run.scale(
    [video], completions, read, ["AB"], ["Q?"], mcq_run.Scaling("confidence"), rate_joint
  )
  assert calls == [([2, 1], ["Q?", "Q?"])]  # one prompt per response with crops
  assert out["answers"] == ["A", "B", "B", "B"]
  assert out["weights"] == [1.0, 0.2, 0.2, 0.0]  # rated 2; no crop; rated 0; no think
  assert out["crops"] == [2, 0, 1, 0] and out["ratings"] == ["2", None, "0", None]
  # majority: A 1, B 2 (the response without think weighs 0); confidence: A 1.0 > B 0.4
  assert (out["majority"], out["confidence"], out["response"]) == ("B", "A", "A")
  [out] = mcq_run.scale(
    [video], completions, read, ["AB"], ["Q?"], mcq_run.Scaling("majority"), rate_joint
  )
  assert (out["majority"], out["confidence"], out["response"]) == ("B", "A", "B")

  def rate_crop(crops, questions):
    return ["2" if c.mean() > 20 else "0" for c in crops]

  [out] = mcq_run.scale(
    [video],
    completions,
    read,
    ["AB"],
    ["Q?"],
    mcq_run.Scaling("confidence", "per_crop"),
    None,
    rate_crop,
  )
  assert out["weights"] == [0.6, 0.2, 0.2, 0.0] and out["ratings"][0] == ["2", "0"]
  assert out["confidence"] == "A"  # A 0.6 > B 0.4


def test_joint_rating_prompt_and_model_rater(loaded):
  from o3jax.processing import chat

  crops = [np.full((56, 84, 3), v, np.uint8) for v in (10, 200)]
  query = mcq_run.rating_query(crops, "Q?\nA. x", PROCESSING)
  text = chat.render(query.messages(), add_generation_prompt=True)
  system = (
    "<|im_start|>system\nYou are a helpful assistant. Only reply with a single digit: 0, 1, or 2."
  )
  assert text.startswith(
    system + "<|im_end|>\n<|im_start|>user\nYou will be given a video question"
  )
  user = text.split("<|im_start|>user\n")[1]
  assert user.index("Question: Q?\nA. x") < user.index("<|vision_start|>")
  assert (
    user.count("<|vision_start|>") == 2 and query.visual.image_grid_thw.tolist() == [[1, 4, 6]] * 2
  )  # the crops keep the frame size (56 x 84)
  decoding = G.Decoding(max_new_tokens=4, greedy=False, temperature=1.0)
  rate = mcq_run.joint_rater(loaded, PROCESSING, jax.random.key(0), decoding, 2)
  replies = rate([crops, crops[:1], crops], ["Q1", "Q2", "Q3"])
  assert len(replies) == 3 and all(isinstance(r, str) for r in replies)


def test_tts_accuracy_table():
  rows = [
    {"answer": "A", "answers": ["A", "B", "A"], "majority": "A", "confidence": "A"},
    {"answer": "B", "answers": ["C", "B", "C"], "majority": "C", "confidence": "B"},
    {"answer": "C\n[1, 2]", "answers": [None, None, "A"], "majority": "A", "confidence": None},
  ]
  acc = mcq_run.tts_accuracy(rows)
  assert acc == {
    "n_questions": 3,
    "n_samples": 3,
    "first_sample": pytest.approx(1 / 3),
    "mean_single_sample": pytest.approx((2 / 3 + 1 / 3 + 0) / 3),
    "majority": pytest.approx(1 / 3),
    "confidence": pytest.approx(2 / 3),
  }


def test_mcq_test_time_scaling_and_tvg_end_to_end(model_dirs, synthetic_data, tmp_path, capsys):
  stgr = os.path.join(synthetic_data, "STGR-RL.json")
  out = tmp_path / "mcq.json"
  assert (
    _run_cli(
      [
        "eval",
        "mcq",
        "--annotations",
        stgr,
        "--model",
        model_dirs[0],
        "--processing",
        "tiny",
        "--max-new-tokens",
        "8",
        "--limit",
        "2",
        "--n",
        "3",
        "--batch-size",
        "2",
        "--vote",
        "majority",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  results = json.loads((tmp_path / "mcq.results.json").read_text())
  assert [r["task"] for r in results] == [
    r["task"] for r in json.load(open(stgr)) if r["task"] in mcq_run.STGR_TASKS
  ][:2]
  for r in results:
    assert len(r["responses"]) == 3 and len(r["answers"]) == 3 and len(r["weights"]) == 3
    assert all(0.0 <= w <= 1.0 for w in r["weights"])
    letters = mcq.letters_of(r.get("options") or None)
    thinks = ["</think>" in t for t in r["responses"]]
    weights = [float(a is not None and k) for a, k in zip(r["answers"], thinks)]
    assert r["majority"] == tts.vote(r["answers"], weights, letters)
    assert r["response"] == r["majority"]
  m = json.loads(out.read_text())
  gold = [mcq_run.gold_letter(r) for r in results]
  assert m["tts"]["majority"] == pytest.approx(
    np.mean([r["majority"] == g for r, g in zip(results, gold)])
  )
  assert m["acc"] == pytest.approx(m["tts"]["majority"])
  assert m["generation"]["n"] == 3 and m["generation"]["temperature"] == 1.0
  assert "majority@3" in capsys.readouterr().out

  out = tmp_path / "tvg.json"
  assert (
    _run_cli(
      [
        "eval",
        "tvg",
        "--annotations",
        stgr,
        "--model",
        model_dirs[0],
        "--processing",
        "tiny",
        "--max-new-tokens",
        "8",
        "--limit",
        "2",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  results = json.loads((tmp_path / "tvg.results.json").read_text())
  assert [r["task"] for r in results] == ["temporal QA"] * 2
  for r in results:
    assert r["output"] == tvg_run.unwrap_times(r["raw_output"])
    assert r["target"] == list(map(float, json.loads(r["answer"])))
  assert json.loads(out.read_text())["n"] == 2


def test_cli_generation_errors(tmp_path):
  with pytest.raises(SystemExit, match="needs --model DIR and --annotations FILE"):
    _run_cli(["eval", "vstar", "--model", "ckpt", "--videos", "vids/"])
  annotations = tmp_path / "a.json"
  annotations.write_text("[]")
  with pytest.raises(SystemExit, match="not a model directory"):
    _run_cli(["eval", "tvg", "--annotations", str(annotations), "--model", str(tmp_path)])
  with pytest.raises(SystemExit, match="annotation file not found"):
    _run_cli(["eval", "mcq", "--annotations", str(tmp_path / "x.json"), "--model", "m"])
