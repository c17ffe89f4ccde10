"""Multi-process training: two CPU processes over `jax.distributed` train like one.

How the comparison is made a true equality: the pipeline shards records by process
(process i of n takes records i, i+n, ...). With shuffling off, process i's k-th batch of
2 holds records 4k+i and 4k+i+2 of its file; each process places its rows on its device
(`o3jax.distributed.place_rows`), so the global batch, process 0's rows first, is records
4k, 4k+2, 4k+1, 4k+3. The one-process
reference reads a file with the records in that interleaved order, unshuffled, batch 4:
the same global batches, made by the ordinary one-process path, which gathers nothing.

The two-process file holds synthetic records 0 1 2 3 2 3 0 1: its second global batch has
the first one's rows in another order (other rows on each process), so both steps have
the same shapes and the test compiles the train step once.

Run as a script, this file is the worker: `python test_multihost.py DATA FILE WORKDIR STEPS`
(started by launch/local.py, which sets the O3JAX_* variables).
"""

import dataclasses
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIG = os.path.join(ROOT, "configs", "tiny_synthetic.py")
TWO_PROCESS_ORDER = [0, 1, 2, 3, 2, 3, 0, 1]


def interleaved(order):
  """The order one process with batch 4 must read to see what two processes see."""
  return [order[k + j] for k in range(0, len(order), 4) for j in (0, 2, 1, 3)]


def train(data_dir: str, file: str, workdir: str, steps: int) -> dict:
  """SFT on `file` (GSPO from random weights on STGR-RL.json: 2 rollouts a prompt, one
  update a batch), unshuffled, global batch 4, on every device of every process."""
  from o3jax.processing.tokenizer import build_demo_tokenizer
  from o3jax.train.config import MeshConfig, load_config
  from o3jax.train.gspo import train_gspo
  from o3jax.train.sft import data_iterator, train_sft

  cfg = load_config(CONFIG)
  cfg = cfg.replace(
    batch_size=4,
    total_steps=20,
    checkpoint_every=1,
    mesh=MeshConfig(data=jax.device_count()),
    optim=dataclasses.replace(cfg.optim, warmup_steps=0),
    gspo=dataclasses.replace(
      cfg.gspo, group_size=2, max_new_tokens=8, beta=0.04, updates_per_batch=1
    ),
  )
  # The run's tokenizer is the demo tokenizer, saved in the workdir beforehand (below).
  rl = file == "STGR-RL.json"
  batches = data_iterator(
    cfg, data_dir, build_demo_tokenizer(), "rl" if rl else "sft", file, shuffle=False
  )
  run = train_gspo if rl else train_sft
  return run(cfg, data_dir, workdir, steps=steps, batches=batches)


def save_tokenizer(workdir: str) -> None:
  # Written before the processes start, so that none of them reads it while process 0
  # writes it (`workdir.tokenizer_for` has process 0 write it when it is missing).
  from o3jax.processing.tokenizer import build_demo_tokenizer

  os.makedirs(workdir, exist_ok=True)
  build_demo_tokenizer().save(os.path.join(workdir, "tokenizer.json"))


def records_copy(data_dir: str, out: str, order: list[int], file="STGR-SFT.json") -> str:
  """`out` holding `file`'s records `order` and links to the media; returns `out`."""
  os.makedirs(out, exist_ok=True)
  for name in os.listdir(data_dir):
    if not name.endswith(".json"):
      os.symlink(os.path.join(data_dir, name), os.path.join(out, name))
  with open(os.path.join(data_dir, file)) as f:
    records = json.load(f)
  with open(os.path.join(out, file), "w") as f:
    json.dump([records[i] for i in order], f)
  return out


def metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def placed(log: str) -> dict[int, tuple[int, float]]:
  """{process: (records it decoded, its share of the global batches' pixel bytes)} from
  the lines `train_sft` prints at the end."""
  found = re.findall(
    r"process (\d+): decoded (\d+) records, placed (\d+) pixel bytes of the global "
    r"batches' (\d+)",
    log,
  )
  for _, _, mine, total in found:
    print(f"pixel bytes placed by one process: {mine} of {total}")
  return {int(p): (int(n), int(mine) / int(total)) for p, n, mine, total in found}


def start_workers(
  data: str, workdir: str, steps: int, log, file="STGR-SFT.json"
) -> subprocess.Popen:
  cmd = [
    sys.executable,
    os.path.join(ROOT, "launch", "local.py"),
    "-n",
    "2",
    "--",
    sys.executable,
    __file__,
    data,
    file,
    workdir,
    str(steps),
  ]
  with open(log, "w") as f:
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)


def finished(proc: subprocess.Popen, log) -> str:
  try:
    proc.wait(timeout=600)
  finally:
    if proc.poll() is None:
      proc.kill()
  out = log.read_text()
  assert proc.returncode == 0, out[-4000:]
  assert "process 0 of 2" in out and "process 1 of 2" in out, out[-4000:]
  return out


def test_two_processes_equal_one(synthetic_data, tmp_path):
  assert interleaved([0, 1, 2, 3, 4, 5, 6, 7]) == [0, 2, 1, 3, 4, 6, 5, 7]
  multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
  save_tokenizer(multi)
  save_tokenizer(single)
  two = records_copy(synthetic_data, str(tmp_path / "two"), TWO_PROCESS_ORDER)
  one = records_copy(synthetic_data, str(tmp_path / "one"), interleaved(TWO_PROCESS_ORDER))
  # The reference runs here meanwhile: one of the workers mostly waits for the other.
  proc = start_workers(two, multi, 2, tmp_path / "first.log")
  try:
    train(one, "STGR-SFT.json", single, 3)
  finally:
    first = finished(proc, tmp_path / "first.log")

  # Each process decoded only its own records, 2 a step, and handed its device only its
  # rows' pixels: half of every global batch's.
  assert placed(first) == {0: (4, 0.5), 1: (4, 0.5)}, first[-4000:]
  a, b = metrics(single), metrics(multi)
  assert [r["step"] for r in b] == [1, 2]  # written once, by process 0
  assert abs(a[0]["loss"] - a[1]["loss"]) > 1e-3  # step 2 sees the update of step 1
  # One checkpoint per step, written collectively: the state once, the data iterator
  # position once per process.
  data_files = sorted(
    name
    for name in os.listdir(os.path.join(multi, "checkpoints", "2", "data"))
    if name.endswith(".json")
  )
  assert data_files == ["process_0-of-2.json", "process_1-of-2.json"]

  # Both processes resume from it: the state and each one's place in its shard.
  out = finished(start_workers(two, multi, 3, tmp_path / "resumed.log"), tmp_path / "resumed.log")
  # Process 0 says so (once); that both resumed, each at its place in its shard, shows in
  # step 3's global batch and loss equalling the one-process reference's below.
  assert out.count("resumed from") == 1, out[-4000:]
  assert placed(out) == {0: (6, 0.5), 1: (6, 0.5)}, out[-4000:]  # the count resumed too
  b = metrics(multi)
  assert [r["step"] for r in b] == [1, 2, 3]
  for ra, rb in zip(a, b):
    assert ra["tokens"] == rb["tokens"]  # the same global batch
    assert abs(ra["loss"] - rb["loss"]) < 1e-5, (ra["step"], ra["loss"], rb["loss"])

  # The two-process checkpoint is readable by one process, and equals the reference's.
  from o3jax.checkpoint import Checkpointer

  params = {}
  for workdir in (single, multi):
    ckpt = Checkpointer(workdir, asynchronous=False)
    assert ckpt.manager.all_steps() == [2, 3]
    params[workdir] = ckpt.read_params(3)
    ckpt.close()
  pa, pb = params[single], params[multi]
  assert pa.keys() == pb.keys() and len(pa) > 30  # layers stacked: one array per kind
  for k in pa:
    np.testing.assert_allclose(pb[k], pa[k], atol=1e-5, rtol=0, err_msg=k)


def test_two_processes_roll_out_their_own_prompts_like_one(synthetic_data, tmp_path):
  """GSPO: each process rolls out, scores and batches its own 2 prompts on the mesh; the
  metrics (gathered rewards and lengths, and the update's loss, ratio, KL and gradient)
  equal those of one process on the same global batches.

  The random model's rewards are all 0, so step 1's gradient is rounding noise (about
  1e-8, KL 0), which Adam turns into a full-size step in a direction set by the order of
  the sums: after it the two runs' policies differ, and step 2 is compared on what its
  data and rollouts fix (rewards, lengths, ratio, clipping), not on the update."""
  multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
  save_tokenizer(multi)
  save_tokenizer(single)
  file = "STGR-RL.json"
  two = records_copy(synthetic_data, str(tmp_path / "two"), TWO_PROCESS_ORDER, file)
  one = records_copy(synthetic_data, str(tmp_path / "one"), interleaved(TWO_PROCESS_ORDER), file)
  proc = start_workers(two, multi, 2, tmp_path / "rl.log", file)
  try:
    train(one, file, single, 2)
  finally:
    finished(proc, tmp_path / "rl.log")
  a, b = metrics(single), metrics(multi)
  assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2]
  assert abs(a[0]["grad_norm"] - a[1]["grad_norm"]) > 1e-4  # two different steps
  for ra, rb in zip(a, b):
    assert ra.keys() == rb.keys()
    assert ra["completion_length"] > 0 and ra["grad_norm"] > 0
    for k in ra:
      if ra["step"] > 1 and k in ("loss", "grad_norm", "param_norm", "kl"):
        continue
      if isinstance(ra[k], float) and np.isfinite(ra[k]) and not k.endswith("_per_s"):
        # Norms (about 27) sum squares over every parameter in another order: relative.
        scale = max(1.0, abs(ra[k])) if k.endswith("_norm") else 1.0
        assert abs(ra[k] - rb[k]) < 1e-5 * scale, (ra["step"], k, ra[k], rb[k])


LAUNCHED = """
import os, sys, time
out, i = sys.argv[1], os.environ["O3JAX_PROCESS_ID"]
with open(os.path.join(out, i + ".tmp"), "w") as f:
  f.write(" ".join([i, os.environ["O3JAX_NUM_PROCESSES"], os.environ["O3JAX_COORDINATOR"]]))
os.rename(os.path.join(out, i + ".tmp"), os.path.join(out, i))
if i != "1":
  time.sleep(120)  # hangs, as a process left alone in a collective would
while not all(os.path.exists(os.path.join(out, k)) for k in "012"):
  time.sleep(0.05)
sys.exit(3)
"""


def test_local_launcher_sets_the_variables_and_stops_the_rest_on_failure(tmp_path):
  script, out = tmp_path / "launched.py", tmp_path / "out"
  script.write_text(LAUNCHED)
  out.mkdir()
  cmd = [
    sys.executable,
    os.path.join(ROOT, "launch", "local.py"),
    "-n",
    "3",
    "--port",
    "4321",
    "--",
    sys.executable,
    str(script),
    str(out),
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 3, proc.stderr
  written = sorted((out / str(i)).read_text() for i in range(3))
  assert written == [f"{i} 3 127.0.0.1:4321" for i in range(3)]


# ------------------------------------------------- each process's rows of one global batch

SMALL_SFT = (460, 200, 8)  # fits process 1's first batch (records 1, 3), not process 0's
SMALL_RL = (350, 200, 8)


def _stack_rows(parts):
  """The global model batch of the processes' host batches: rows concatenated in process
  order (what `place_rows` lays out over the devices)."""
  out = {}
  for key in parts[0]:
    axis = 2 if key == "position_ids" else 1
    out[key] = jax.tree.map(
      lambda *xs, axis=axis: np.concatenate(xs, axis=axis), *[p[key] for p in parts]
    )
  return out


@pytest.mark.parametrize(
  "stage,presentation,small",
  [
    ("sft", "frames", None),
    ("sft", "frames", SMALL_SFT),
    ("sft", "video", None),
    ("rl", "frames", SMALL_RL),
  ],
)
def test_process_rows_stack_into_the_one_process_batch(synthetic_data, stage, presentation, small):
  """Two "processes" (threads, agreeing through a barrier as `agree_max` does across
  processes) each read only their shard, pad to the agreed bucket and vision needs, and
  build model batches whose rows, stacked, are exactly the one-process model batch."""
  import threading

  from o3jax.data import pipeline
  from o3jax.data.records import load_records
  from o3jax.models import config as config_lib
  from o3jax.processing.config import TINY
  from o3jax.processing.tokenizer import build_demo_tokenizer, special_token_ids
  from o3jax.train.batch import model_batch, vision_needs

  tokenizer = build_demo_tokenizer()
  ids = special_token_ids(tokenizer)
  cfg = config_lib.tiny().replace(
    image_token_id=ids["image_token_id"],
    video_token_id=ids["video_token_id"],
    vision_start_token_id=ids["vision_start_token_id"],
    vision_end_token_id=ids["vision_end_token_id"],
  )
  processing = dataclasses.replace(TINY, presentation=presentation)
  records = load_records(
    os.path.join(synthetic_data, "STGR-SFT.json" if stage == "sft" else "STGR-RL.json")
  )
  big = pipeline.bucket_for_videos(
    processing, 640, (112, 84), max_key_frames=2, image_size=(112, 84)
  )
  buckets = (big,) if small is None else (pipeline.BatchShape(*small), big)
  barrier, posted = threading.Barrier(2), {}

  def agree(index, values):
    """Elementwise max of both threads' `values` (a collective, like `agree_max`)."""
    posted[index] = values
    barrier.wait()
    out = np.max([posted[0], posted[1]], axis=0).tolist()
    barrier.wait()  # both have read before the next round writes
    return out

  def batches(recs, size, index, count, agree_bucket=None):
    config = pipeline.PipelineConfig(
      batch_size=size,
      buckets=buckets,
      stage=stage,
      shuffle=False,
      shard_index=index,
      shard_count=count,
      agree_bucket=agree_bucket,
    )
    return pipeline.make_iterator(
      recs, tokenizer=tokenizer, processing=processing, config=config, root=synthetic_data
    )

  keys = ("input_ids", "attention_mask") if stage == "sft" else ("prompt_ids", "prompt_mask")
  order = [k + j for k in range(0, 8, 4) for j in (0, 2, 1, 3)]
  one = batches([records[i] for i in order], 4, 0, 1)
  got = {0: [], 1: []}

  def process(index):
    data = batches(records, 2, index, 2, lambda i: agree(index, [i])[0])
    for _ in range(2):
      local = next(data)
      needs = agree(index, vision_needs(cfg, local, *keys))
      got[index].append((local, model_batch(cfg, local, 1, *keys, needs=needs)))
    got[index].append(data.records_read)

  threads = [threading.Thread(target=process, args=(i,)) for i in (0, 1)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=300)
  assert got[0][-1] == got[1][-1] == 4  # each decoded its own 2 records per batch
  seen = set()
  for step in range(2):
    want_raw = next(one)
    want = model_batch(cfg, want_raw, 1, *keys)
    parts = [got[i][step][1] for i in (0, 1)]
    # Each process holds half the global batch's pixels.
    pixel_keys = [k for k in ("pixel_values", "pixel_values_videos") if k in want]
    assert pixel_keys
    for k in pixel_keys:
      assert parts[0][k].nbytes == parts[1][k].nbytes == want[k].nbytes // 2
    stacked = _stack_rows(parts)
    assert stacked.keys() == want.keys()
    for key in want:
      for a, b in zip(jax.tree.leaves(stacked[key]), jax.tree.leaves(want[key])):
        assert a.dtype == b.dtype, key
        np.testing.assert_array_equal(a, b, err_msg=key)
    if small is not None and step == 0:
      # Alone, process 1 would have picked the small bucket; it padded to the agreed one.
      assert got[1][0][0][keys[0]].shape == (2, big.seq_len)
    seen.update(
      k
      for k in ("pixel_values_mask", "pixel_values_videos_mask", "second_per_grid_ts")
      if want_raw[k].any()
    )
  assert "pixel_values_mask" in seen
  if presentation == "video":  # videos, and images of the visual QA records
    assert {"pixel_values_videos_mask", "second_per_grid_ts"} <= seen


# ------------------------------------------------------------- initialize from the env


@pytest.fixture
def calls(monkeypatch):
  import jax

  seen = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: seen.append((a, kw)))
  return seen


def test_initialize_from_env(calls):
  from o3jax.distributed import initialize_from_env

  assert initialize_from_env({}) is False
  assert initialize_from_env({"O3JAX_DISTRIBUTED": "0"}) is False
  assert calls == []
  env = {"O3JAX_COORDINATOR": "10.0.0.1:1234", "O3JAX_NUM_PROCESSES": "4", "O3JAX_PROCESS_ID": "3"}
  assert initialize_from_env(env) is True
  assert calls.pop() == (("10.0.0.1:1234", 4, 3), {"cluster_detection_method": "deactivate"})
  assert initialize_from_env({**env, "O3JAX_NUM_PROCESSES": "1", "O3JAX_PROCESS_ID": "0"}) is False
  assert initialize_from_env({"O3JAX_DISTRIBUTED": "1", "SLURM_JOB_ID": "7"}) is True
  assert calls.pop() == ((), {})
  assert calls == []


@pytest.mark.parametrize(
  "env,message",
  [
    ({"O3JAX_COORDINATOR": "h:1", "O3JAX_NUM_PROCESSES": "2"}, "O3JAX_PROCESS_ID not"),
    (
      {"O3JAX_COORDINATOR": "h:1", "O3JAX_NUM_PROCESSES": "2", "O3JAX_PROCESS_ID": "2"},
      r"not in \[0, O3JAX_NUM_PROCESSES=2\)",
    ),
    (
      {"O3JAX_COORDINATOR": "h:1", "O3JAX_NUM_PROCESSES": "two", "O3JAX_PROCESS_ID": "0"},
      "must be integers",
    ),
  ],
)
def test_initialize_from_env_rejects_bad_settings(calls, env, message):
  from o3jax.distributed import initialize_from_env

  with pytest.raises(ValueError, match=message):
    initialize_from_env(env)
  assert calls == []


if __name__ == "__main__":
  from o3jax.distributed import initialize_from_env

  initialize_from_env()
  import jax

  print(f"process {jax.process_index()} of {jax.process_count()}", flush=True)
  data_dir, file, workdir, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
  train(data_dir, file, workdir, steps)
