"""Faults a hostile user meets, each through the real `o3jax` command (issue 22, items 1-7).

One tiny SFT workdir (checkpoints 1 and 2) is trained once and copied by the tests that
need a run to damage, lock or start GSPO from.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from data_fixtures import demo_tokenizer, hf_tiny_model  # noqa: F401 (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = """
from o3jax.train.config import GSPOConfig, OptimConfig, load_config

def get_config():
  cfg = load_config({base!r})
  return cfg.replace(batch_size=2, total_steps=4, checkpoint_every=1, keep_checkpoints=3, {extra})
"""


def write_config(tmp_path, name="cfg.py", base="tiny_synthetic.py", extra=""):
  path = tmp_path / name
  path.write_text(CONFIG.format(base=os.path.join(ROOT, "configs", base), extra=extra))
  return str(path)


def o3jax(*args, timeout=600):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run(
    [sys.executable, "-m", "o3jax.cli", *map(str, args)],
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
    cwd=ROOT,
  )


def sft(config, data, workdir, steps):
  return o3jax("sft", "--config", config, "--data", data, "--workdir", workdir, "--steps", steps)


def metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def data_with(tmp_path, synthetic_data, file, records):
  """A copy of the synthetic data directory whose `file` holds `records`."""
  out = tmp_path / "data"
  shutil.copytree(synthetic_data, out)
  (out / file).write_text(json.dumps(records))
  return str(out)


def synthetic_records(synthetic_data, file):
  with open(os.path.join(synthetic_data, file)) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def trained(synthetic_data, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("trained")
  workdir = str(tmp / "run")
  proc = sft(write_config(tmp), synthetic_data, workdir, 2)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def test_1_a_diverging_run_saves_no_non_finite_state(synthetic_data, tmp_path):
  # Step 1's loss is finite (it is computed before the update) but the update makes the
  # parameters inf: the old code saved checkpoint 1 and called it good.
  config = write_config(
    tmp_path,
    extra="optim=OptimConfig(learning_rate=1e39, decay='constant', max_grad_norm=1.0)",
  )
  workdir = str(tmp_path / "run")
  proc = sft(config, synthetic_data, workdir, 2)
  assert proc.returncode == 3, proc.stderr[-3000:]
  lines = proc.stderr.replace("\r", "\n").splitlines()  # the progress bar redraws with \r
  (last,) = [ln for ln in lines if ln.startswith("o3jax sft:")]
  assert last.startswith("o3jax sft: step 1: the state to save is not finite ("), last
  assert "parameter and" in last and "first: params." in last and "not saved, stopping" in last
  assert "No checkpoint was written" in last and "step None" not in last
  checkpoints = os.path.join(workdir, "checkpoints")
  assert not os.path.isdir(checkpoints) or not os.listdir(checkpoints)


def test_1_the_state_check_names_params_and_optimizer_moments(tmp_path):
  import jax.numpy as jnp

  from o3jax.checkpoint import Checkpointer
  from o3jax.train.run import NonFiniteLoss, check_state_finite

  ckpt = Checkpointer(str(tmp_path), asynchronous=False)
  state = {"params": {"w": jnp.ones(3)}, "opt_state": {"mu": jnp.array([1.0, jnp.nan])}}
  with pytest.raises(NonFiniteLoss, match=r"step 7: .*0 parameter and 1 optimizer .*opt_state.mu"):
    check_state_finite(7, state, ckpt)
  check_state_finite(7, {"params": {"w": jnp.ones(3)}, "step": jnp.int32(1)}, ckpt)
  ckpt.close()


def test_2_and_7_gspo_skips_records_that_would_fail_at_scoring(synthetic_data, trained, tmp_path):
  rl = synthetic_records(synthetic_data, "STGR-RL.json")
  by_task = {r["task"]: r for r in rl}
  good = by_task["temporal QA"]
  no_items = dict(by_task["temporal-spatial free-form QA"], id="no-items")
  no_items["key_items"] = {k: v for k, v in list(no_items["key_items"].items())[1:]}
  sft_form = dict(good, id="sft-form", answer="From <t>2.0</t>s to <t>7.0</t>s")
  blank = dict(by_task["General video QA MCQ"], id="blank-letter", answer=" ")
  data = data_with(tmp_path, synthetic_data, "STGR-RL.json", [no_items, sft_form, good, blank])
  config = write_config(
    tmp_path,
    base="tiny_synthetic_gspo.py",
    extra="gspo=GSPOConfig(group_size=2, max_new_tokens=8, beta=0.0, updates_per_batch=1)",
  )
  workdir = str(tmp_path / "gspo")
  args = ["--config", config, "--data", data, "--workdir", workdir, "--init", trained]
  proc = o3jax("gspo", *args, "--steps", 1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # A batch of 2 takes the one good record twice: every bad one is met once or twice,
  # and counted once.
  assert "skipped 3 bad records" in proc.stderr, proc.stderr[-3000:]
  assert "record 'no-items': field \"key_items['" in proc.stderr
  assert "record 'sft-form': field 'answer'" in proc.stderr
  assert "record 'blank-letter': field 'answer': empty MCQ letter" in proc.stderr
  (row,) = metrics(workdir)
  assert "kl" not in row and "clip_fraction" in row  # item 7: beta 0 computes no KL


def test_3_one_run_per_workdir(synthetic_data, tmp_path):
  workdir = str(tmp_path / "run")
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import sys, time; from o3jax import workdir as w\n"
      "with w.claim(sys.argv[1], 'o3jax sft --holder'):\n  print('held', flush=True); time.sleep(600)",
      workdir,
    ],
    stdout=subprocess.PIPE,
    text=True,
    env={**os.environ, "PYTHONPATH": ROOT},
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    config = write_config(tmp_path)
    proc = sft(config, synthetic_data, workdir, 1)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"pid {holder.pid}" in lines[0] and "o3jax sft --holder" in lines[0]
    assert "in use by another run: host " in lines[0] and "started 20" in lines[0]
    assert sorted(os.listdir(workdir)) == ["run.lock"]  # the refused run wrote nothing
  finally:
    holder.kill()  # SIGKILL: no clean-up runs; the lock file stays behind
    holder.wait()
  assert json.load(open(os.path.join(workdir, "run.lock")))["pid"] == holder.pid
  proc = sft(config, synthetic_data, workdir, 1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"taking over the lock of a run that is gone (host" in proc.stderr
  assert f"pid {holder.pid}" in proc.stderr
  assert [r["step"] for r in metrics(workdir)] == [1]
  assert open(os.path.join(workdir, "run.lock")).read() == ""  # released


@pytest.mark.parametrize("damage", ["state/_METADATA", "data/process_0-of-1.json"])
def test_4_resume_falls_back_past_a_damaged_newest_checkpoint(
  synthetic_data, trained, tmp_path, damage
):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  bad = os.path.join(workdir, "checkpoints", "2", damage)
  with open(bad, "r+b") as f:
    f.truncate(os.path.getsize(bad) // 2)
  proc = sft(write_config(tmp_path), synthetic_data, workdir, 3)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"checkpoint 2 is damaged ({bad})" in proc.stderr
  assert f"resumed from {os.path.join(workdir, 'checkpoints')}/1" in proc.stderr
  assert os.path.exists(os.path.join(workdir, "corrupt_checkpoints", "2", damage))
  assert [r["step"] for r in metrics(workdir)] == [1, 2, 3]


def test_4_model_falls_back_past_a_damaged_newest_checkpoint(synthetic_data, trained, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  bad = os.path.join(workdir, "checkpoints", "2", "state", "_METADATA")
  with open(bad, "r+b") as f:
    f.truncate(10)
  video = os.path.join(synthetic_data, "videos", "v0000.mp4")
  args = ["--model", workdir, "--video", video, "--question", "What moves?"]
  proc = o3jax("infer", *args, "--out", tmp_path / "out", "--max-new-tokens", 4)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"checkpoint 2 is damaged ({bad})" in proc.stderr
  assert os.path.exists(bad)  # reading a model moves nothing


def test_5_times_beyond_the_video_are_refused(synthetic_data, tmp_path):
  sft_records = synthetic_records(synthetic_data, "STGR-SFT.json")
  st = next(r for r in sft_records if r["task"] == "temporal-spatial free-form QA")
  tg = next(r for r in sft_records if r["task"] == "temporal QA")
  late_frame = dict(st, id="late-frame")
  late_frame["key_frames"] = [dict(kf) for kf in st["key_frames"]]
  late_frame["key_frames"][-1]["time"] = 999.0
  late_answer = dict(tg, id="late-answer", answer="From <t>1.0</t>s to <t>999.0</t>s.")
  data = data_with(tmp_path, synthetic_data, "STGR-SFT.json", [late_frame, tg, late_answer])
  proc = sft(write_config(tmp_path), data, str(tmp_path / "run"), 1)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "skipped 2 bad records" in proc.stderr
  assert "record 'late-frame': field 'key_frames[1].time': 999.0 s is beyond the video" in (
    proc.stderr
  )
  assert "record 'late-answer': field 'answer': segment [1.0, 999.0] ends beyond" in proc.stderr


def test_6_expected_errors_are_one_line(synthetic_data, tmp_path):
  config = write_config(tmp_path)
  data = data_with(tmp_path, synthetic_data, "STGR-SFT.json", [])
  workdir = tmp_path / "run"
  proc = sft(config, data, workdir, 1)
  assert proc.returncode == 1
  sft_file = os.path.join(data, "STGR-SFT.json")
  assert proc.stderr.strip().splitlines() == [
    f"o3jax sft: error: {sft_file}: no records to train on (--debug for the traceback)"
  ]
  assert not workdir.exists()  # nothing half-made
  proc = o3jax("--debug", "sft", "--config", config, "--data", data, "--workdir", workdir)
  assert proc.returncode == 1 and "Traceback" in proc.stderr and not workdir.exists()


def test_6_convert_checks_model_type_and_names_a_mismatched_tensor(tmp_path, demo_tokenizer):
  from o3jax.processing.tokenizer import special_token_ids

  bert = tmp_path / "bert"
  bert.mkdir()
  (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
  proc = o3jax("convert", "--to", "o3jax", "--src", bert, "--dst", tmp_path / "out")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
    f"o3jax convert: error: {bert / 'config.json'}: model_type 'bert' is not a Qwen2.5-VL or "
    "Qwen3-VL model ('qwen2_5_vl', 'qwen3_vl') (--debug for the traceback)"
  ]
  hf = tmp_path / "hf"
  hf_tiny_model(special_token_ids(demo_tokenizer)).save_pretrained(hf)
  config = json.loads((hf / "config.json").read_text())
  for d in (config, config.get("text_config", {})):
    if "vocab_size" in d:
      d["vocab_size"] = 2048  # the weights hold 1024 rows
  (hf / "config.json").write_text(json.dumps(config))
  proc = o3jax("convert", "--to", "o3jax", "--src", hf, "--dst", tmp_path / "out2")
  assert proc.returncode == 1
  (line,) = proc.stderr.strip().splitlines()
  # The first tensor of the file that does not fit, named with both shapes.
  assert "/hf/model.safetensors: tensor lm_head.weight has shape (1024, 32); the model " in line
  assert "expects 65536 values for text.lm_head (shape (32, 2048))" in line, line


def test_7_parsing_8000_unclosed_boxes_reads_the_one_closed_box():
  from o3jax.grammar import BOX_RE, VISUAL_GROUNDING_RE
  from o3jax.rewards.parse import parse_completion

  unclosed = "<obj>a</obj><box>[" * 8000  # 144 KB in one line: quadratic in `re`
  text = f"<think>{unclosed}<obj>cat</obj><box>[1,2,3,4]</box></think><answer>A</answer>"
  assert len(unclosed) == 144_000
  parsed = parse_completion(text)
  assert parsed.visual_grounded and parsed.has_think and parsed.choice == "A"
  # Every `<box>[` but the last closes at the one `]</box>`, so the first match spans them.
  assert parsed.think_boxes == () and parsed.claims == ()
  small = text.replace(unclosed, "<obj>a</obj><box>[" * 50)
  assert parse_completion(small).visual_grounded == bool(VISUAL_GROUNDING_RE.search(small))
  assert len(BOX_RE.findall(small)) == 1
