"""The fault corpus of issue 22: hostile inputs through the real `o3jax` commands.

    PYTHONPATH=. python scripts/fault_corpus.py [--only SUBSTRING]

Builds synthetic data, a tiny SFT run (checkpoints 1, 2) and a tiny Hugging Face model in a
temp dir, then tries each fault and prints one line per fault and the totals: tried,
handled well. A fault is handled well when the command ends as expected (exit status),
with at most one line of error and no python traceback, and the check of its outcome
passes (e.g. the bad records are skipped and counted, the resumed run logs its steps).
Classes: bad data (JSON, records, media, times, RL gold), damaged checkpoints, diverging
runs, concurrent runs, kill -9 during a save, bad conversions, adversarial completions.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

CONFIG = """
from o3jax.train.config import GSPOConfig, OptimConfig, load_config
def get_config():
  cfg = load_config({base!r})
  return cfg.replace(batch_size=2, total_steps=4, checkpoint_every=1, keep_checkpoints=3, {extra})
"""


LAST = {}  # the last command's stderr, shown for a fault not handled well


def o3jax(*args, timeout=900):
  env = {**os.environ, "PYTHONPATH": ROOT}
  cmd = [sys.executable, "-m", "o3jax.cli", *map(str, args)]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
  LAST["stderr"] = proc.stderr
  return proc


class Corpus:
  def __init__(self, tmp: str):
    from o3jax.data.synth import synthesize

    self.tmp = tmp
    self.data = os.path.join(tmp, "data")
    synthesize(self.data, videos=4, seed=0, progress=False)
    self.sft_records = self._records("STGR-SFT.json")
    self.rl_records = self._records("STGR-RL.json")
    self.n = 0

  def _records(self, file):
    with open(os.path.join(self.data, file)) as f:
      return json.load(f)

  def path(self, name: str) -> str:
    self.n += 1
    return os.path.join(self.tmp, f"{self.n:03d}-{name}")

  def config(self, base="tiny_synthetic.py", extra="") -> str:
    path = self.path("cfg.py")
    with open(path, "w") as f:
      f.write(CONFIG.format(base=os.path.join(ROOT, "configs", base), extra=extra))
    return path

  def data_with(self, file: str, content) -> str:
    out = self.path("data")
    shutil.copytree(self.data, out)
    with open(os.path.join(out, file), "w") as f:
      f.write(content if isinstance(content, str) else json.dumps(content))
    return out

  def sft(self, data, workdir, steps=1, config=None):
    config = config or self.config()
    return o3jax("sft", "--config", config, "--data", data, "--workdir", workdir, "--steps", steps)


def clean(proc, status) -> bool:
  """Ended with `status` (or any non-zero for None), no traceback, at most one error line."""
  ok = proc.returncode != 0 if status is None else proc.returncode == status
  errors = [ln for ln in proc.stderr.splitlines() if ": error: " in ln or "Error" in ln[:40]]
  return ok and "Traceback" not in proc.stderr and len(errors) <= 1


def steps_logged(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(ln)["step"] for ln in f]


def bad_sft_record(c: Corpus, name: str, change) -> tuple:
  """An SFT run on one good record and one bad: the bad one is skipped and counted."""
  good = next(r for r in c.sft_records if r["task"] == "temporal QA")
  bad = change(json.loads(json.dumps(next(r for r in c.sft_records if r["task"] == name[0]))))
  bad["id"] = "bad"

  def run():
    proc = c.sft(c.data_with("STGR-SFT.json", [bad, good]), c.path("run"))
    return clean(proc, 0) and "skipped 1 bad records" in proc.stderr and "'bad'" in proc.stderr

  return f"sft record: {name[1]}", run


def faults(c: Corpus):
  st, tg, mcq = "temporal-spatial free-form QA", "temporal QA", "General video QA MCQ"
  vqa = "visual QA"

  def truncate_video(r):
    src = os.path.join(c.data, r["video_path"])
    dst = os.path.join(c.tmp, f"cut{c.n}.mp4")
    with open(src, "rb") as f:
      data = f.read()
    with open(dst, "wb") as f:
      f.write(data[: len(data) // 3])
    return dict(r, video_path=os.path.relpath(dst, c.data))

  def late_key_frame(r):
    r["key_frames"][-1]["time"] = 999.0
    return r

  def garbage_video(r):
    dst = os.path.join(c.tmp, f"garbage{c.n}.mp4")
    with open(dst, "wb") as f:
      f.write(os.urandom(4096))
    return dict(r, video_path=os.path.relpath(dst, c.data))

  record_faults = [
    ((tg, "missing video"), lambda r: dict(r, video_path="videos/none.mp4")),
    ((tg, "truncated video"), truncate_video),
    ((tg, "random bytes as video"), garbage_video),
    ((tg, "answer not a segment"), lambda r: dict(r, answer="soon")),
    (
      (tg, "segment ends before it starts"),
      lambda r: dict(r, answer="From <t>5</t>s to <t>1</t>s"),
    ),
    ((tg, "segment beyond the video"), lambda r: dict(r, answer="From <t>1</t>s to <t>999</t>s")),
    ((st, "key frame beyond the video"), late_key_frame),
    ((st, "box outside [0,1]"), lambda r: dict(r, key_items={"0": {"x": [[0, 0, 2, 2]]}})),
    ((vqa, "missing image"), lambda r: dict(r, image_path="images/none.png")),
    ((vqa, "image_size not two numbers"), lambda r: dict(r, image_size="big")),
    ((mcq, "question not a string"), lambda r: dict(r, question=None)),
    ((mcq, "unknown task"), lambda r: dict(r, task="dance")),
  ]
  for name, change in record_faults:
    yield bad_sft_record(c, name, change)

  def data_file(name, content, message):
    def run():
      proc = c.sft(c.data_with("STGR-SFT.json", content), c.path("run"))
      return clean(proc, 1) and message in proc.stderr and "STGR-SFT.json" in proc.stderr

    return f"sft data file: {name}", run

  yield data_file("malformed JSON", "[{", "malformed JSON")
  yield data_file("not a list", "{}", "expected a JSON list")
  yield data_file("empty list", "[]", "no records")

  # RL gold that passes the record checks but not the rewards' reading (GSPO).
  sft_run = c.path("sft-run")
  trained = c.sft(c.data, sft_run, steps=2)
  assert trained.returncode == 0, trained.stderr[-2000:]
  by_task = {r["task"]: r for r in c.rl_records}

  def gspo_bad(name, bad):
    def run():
      data = c.data_with("STGR-RL.json", [dict(bad, id="bad"), by_task[tg]])
      config = c.config(
        "tiny_synthetic_gspo.py",
        "gspo=GSPOConfig(group_size=2, max_new_tokens=8, beta=0.0, updates_per_batch=1)",
      )
      workdir = c.path("gspo")
      proc = o3jax(
        "gspo", "--config", config, "--data", data, "--workdir", workdir, "--init", sft_run,
        "--steps", 1,
      )  # fmt: skip
      return clean(proc, 0) and "skipped 1 bad records" in proc.stderr

    return f"gspo record: {name}", run

  no_items = dict(by_task[st], key_items={})
  yield gspo_bad("key frame without key_items", no_items)
  yield gspo_bad(
    "temporal answer in the SFT form", dict(by_task[tg], answer="From <t>1</t>s to <t>2</t>s")
  )
  yield gspo_bad("blank MCQ letter", dict(by_task[mcq], answer=" "))

  # Damaged checkpoints: resume and --model fall back to checkpoint 1.
  def damaged(what, relative, infer=False):
    def run():
      workdir = c.path("damaged")
      shutil.copytree(sft_run, workdir)
      path = os.path.join(workdir, "checkpoints", "2", relative)
      if os.path.isdir(path):
        path = os.path.join(path, sorted(os.listdir(path))[0])
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
      if infer:
        video = os.path.join(c.data, "videos", "v0000.mp4")
        proc = o3jax(
          "infer", "--model", workdir, "--video", video, "--question", "What?",
          "--out", c.path("out"), "--max-new-tokens", 4,
        )  # fmt: skip
        return clean(proc, 0) and path in proc.stderr
      proc = c.sft(c.data, workdir, steps=3)
      return clean(proc, 0) and path in proc.stderr and steps_logged(workdir) == [1, 2, 3]

    return f"damaged checkpoint ({'infer --model' if infer else 'resume'}): {what}", run

  yield damaged("truncated _METADATA", "state/_METADATA")
  yield damaged("truncated iterator JSON", "data/process_0-of-1.json")
  yield damaged("truncated array_metadatas", "state/array_metadatas")
  yield damaged("truncated _METADATA", "state/_METADATA", infer=True)

  def diverging():
    workdir = c.path("diverge")
    config = c.config(extra="optim=OptimConfig(learning_rate=1e39, decay='constant')")
    proc = c.sft(c.data, workdir, steps=2, config=config)
    ckpts = os.path.join(workdir, "checkpoints")
    nothing_saved = not os.path.isdir(ckpts) or not os.listdir(ckpts)
    return clean(proc, 3) and "step 1" in proc.stderr and nothing_saved

  yield "diverging run (lr 1e39)", diverging

  def two_runs():
    workdir = c.path("two")
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "o3jax.cli", "sft", "--config", c.config(), "--data", c.data]
    first = subprocess.Popen(cmd + ["--workdir", workdir, "--steps", "2"], env=env, text=True,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)  # fmt: skip
    while not os.path.exists(os.path.join(workdir, "model_config.json")):
      time.sleep(0.2)
    second = c.sft(c.data, workdir, steps=2)
    _, err = first.communicate()
    return first.returncode == 0 and clean(second, 1) and "in use by another run" in second.stderr

  yield "two runs on one workdir", two_runs

  def kill_during_save():
    workdir = c.path("killed")
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "o3jax.cli", "sft", "--config", c.config(), "--data", c.data]
    proc = subprocess.Popen(cmd + ["--workdir", workdir, "--steps", "4"], env=env,
                            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip
    ckpts = os.path.join(workdir, "checkpoints")
    while proc.poll() is None:
      if os.path.isdir(ckpts) and any(n.startswith("2") for n in os.listdir(ckpts)):
        proc.send_signal(signal.SIGKILL)  # while checkpoint 2 is being written
        break
      time.sleep(0.01)
    proc.wait()
    again = c.sft(c.data, workdir, steps=4)
    return clean(again, 0) and steps_logged(workdir) == [1, 2, 3, 4]

  yield "kill -9 during a save, then resume", kill_during_save

  # Conversion.
  def convert_config(name, config):
    def run():
      src = c.path("hf")
      os.makedirs(src)
      with open(os.path.join(src, "config.json"), "w") as f:
        json.dump(config, f)
      proc = o3jax("convert", "--to", "o3jax", "--src", src, "--dst", c.path("dst"))
      return clean(proc, 1) and "model_type" in proc.stderr

    return f"convert: {name}", run

  yield convert_config("BERT config.json", {"model_type": "bert", "hidden_size": 8})
  yield convert_config("Llama config.json", {"model_type": "llama", "hidden_size": 8})

  def hf_model(change):
    from data_fixtures import hf_tiny_model

    from o3jax.processing.tokenizer import build_demo_tokenizer, special_token_ids

    src = c.path("hf")
    hf_tiny_model(special_token_ids(build_demo_tokenizer())).save_pretrained(src)
    change(src)
    return o3jax("convert", "--to", "o3jax", "--src", src, "--dst", c.path("dst"))

  def wider_config(src):
    path = os.path.join(src, "config.json")
    with open(path) as f:
      config = json.load(f)
    for d in (config, config.get("text_config", {})):
      if "vocab_size" in d:
        d["vocab_size"] = 2048
    with open(path, "w") as f:
      json.dump(config, f)

  def truncated_weights(src):
    path = os.path.join(src, "model.safetensors")
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)

  yield (
    "convert: config.json wider than the weights",
    lambda: (lambda p: clean(p, 1) and "tensor lm_head.weight has shape (1024, 32)" in p.stderr)(
      hf_model(wider_config)
    ),
  )
  yield "convert: truncated safetensors", lambda: clean(hf_model(truncated_weights), 1)

  # Adversarial completions: parsed in linear time, never raising.
  def adversarial(name, text):
    def run():
      from o3jax.rewards.parse import parse_completion

      start = time.perf_counter()
      parse_completion(text)
      return time.perf_counter() - start < 1.0

    return f"completion: {name}", run

  yield adversarial("8,000 unclosed boxes", "<think>" + "<obj>a</obj><box>[" * 8000)
  yield adversarial("8,000 unclosed answer boxes", "<answer>" + "<box>[1, 2" * 8000 + "</answer>")
  yield adversarial("nested brackets", "<think><box>" + "[" * 100000 + "</think>")
  yield adversarial("30 boxes with no time", "<think><obj>a</obj>" + "<box>[1,2,3,4]</box>" * 30)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default="", help="run the faults whose name holds this")
  args = parser.parse_args()
  tried = handled = 0
  with tempfile.TemporaryDirectory(prefix="o3jax_faults_") as tmp:
    for name, run in faults(Corpus(tmp)):
      if args.only not in name:
        continue
      LAST.clear()
      start = time.perf_counter()
      try:
        ok = bool(run())
      except Exception as e:  # noqa: BLE001 (a fault the corpus itself did not survive)
        ok = False
        name += f" [{type(e).__name__}: {e}]"
      tried, handled = tried + 1, handled + ok
      print(f"{'ok  ' if ok else 'BAD '} {time.perf_counter() - start:6.1f}s  {name}", flush=True)
      if not ok:
        lines = LAST.get("stderr", "").replace("\r", "\n").splitlines()
        shown = [ln for ln in lines if "it/s" not in ln and "s/step" not in ln][-4:]
        print("      " + "\n      ".join(shown))
  print(f"faults tried {tried}, handled well {handled}")


if __name__ == "__main__":
  main()
