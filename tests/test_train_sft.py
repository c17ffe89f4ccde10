"""SFT trainer: exact resume across processes, sharding, gradient accumulation, errors."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from o3jax.train import step as step_lib
from o3jax.train.batch import model_batch
from o3jax.checkpoint import Checkpointer
from o3jax.train.run import NonFiniteLoss
from o3jax.train.loss import sft_loss
from o3jax.train.config import load_config
from o3jax.train.sft import data_iterator, select_tasks, train_sft

HERE = os.path.dirname(__file__)
SMALL = ["batch_size=4", "checkpoint_every=3", "total_steps=20"]


def run_main(data, workdir, steps, *extra):
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(HERE, "train_main.py"),
      data,
      workdir,
      str(steps),
      *SMALL,
      *extra,
    ],
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {row["step"]: row["loss"] for row in map(json.loads, f)}


def final_params(workdir):
  ckpt = Checkpointer(workdir, asynchronous=False)
  step = ckpt.latest_step()
  params = ckpt.read_params(step)
  ckpt.close()
  return step, params


def test_exact_resume_in_a_new_process(synthetic_data, tmp_path):
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  run_main(synthetic_data, straight, 6)
  run_main(synthetic_data, resumed, 3)
  proc = run_main(synthetic_data, resumed, 6)
  assert "resumed from" in proc.stderr
  a, b = losses(straight), losses(resumed)
  assert sorted(b) == [1, 2, 3, 4, 5, 6]
  for step in (4, 5, 6):
    assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])
  sa, pa = final_params(straight)
  sb, pb = final_params(resumed)
  assert sa == sb == 6
  assert pa.keys() == pb.keys() and len(pa) > 30  # layers stacked: one array per kind
  for k in pa:
    np.testing.assert_array_equal(np.asarray(pa[k]), np.asarray(pb[k]))


def test_sharded_steps_match_single_device(synthetic_data, tmp_path):
  single, sharded = str(tmp_path / "single"), str(tmp_path / "sharded")
  run_main(synthetic_data, single, 3)
  proc = run_main(synthetic_data, sharded, 3, "mesh=2,2,2")
  a, b = losses(single), losses(sharded)
  for step in (1, 2, 3):
    assert abs(a[step] - b[step]) < 1e-5, (step, a[step], b[step])
  assert "resumed" not in proc.stderr


def test_params_are_really_sharded():
  script = (
    "import os; os.environ['XLA_FLAGS']='--xla_force_host_platform_device_count=8'\n"
    "import jax, optax\n"
    "from o3jax import sharding\n"
    "from o3jax.models import config\n"
    "from o3jax.train import state as S\n"
    "mesh = sharding.make_mesh(2, 2, 2)\n"
    "g, st, sh = S.init_random(config.tiny(), optax.adamw(1e-3), mesh, 0)\n"
    "q = st.params['text']['layers']['attn']['q_kernel'].get_value()\n"
    "mu = st.opt_state[0].mu['text']['layers']['attn']['q_kernel'].get_value()\n"
    "print(q.sharding.spec, mu.sharding.spec, q.addressable_shards[0].data.shape)\n"
  )
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  # Layers stacked: the leading layers axis is not sharded.
  want = "P(None, 'fsdp', 'tensor', None) P(None, 'fsdp', 'tensor', None) (2, 32, 2, 16)"
  assert proc.stdout.strip() == want, proc.stdout


def test_gradient_accumulation_equals_one_big_batch(synthetic_data, tmp_path):
  from train_main import config

  cfg = config(["batch_size=8"])
  cfg = cfg.replace(optim=dataclasses.replace(cfg.optim, warmup_steps=0))
  from o3jax.train.run import setup_run

  run = setup_run(cfg, str(tmp_path / "acc"))
  batch = next(data_iterator(cfg, synthetic_data, run.tokenizer, "sft", "STGR-SFT.json"))
  # Plain SGD (lr 1): the update is the accumulated gradient itself. Adam's first step,
  # g / (|g| + eps), would move a parameter whose gradient is at the fp32 noise floor of
  # its tensor (|g| < eps) by up to lr whatever the summation order.
  sgd = optax.sgd(1.0)
  state = run.state.replace(opt_state=sgd.init(run.state.params))
  step_fn = step_lib.make_train_step(run.graphdef, sft_loss, sgd, run.schedule)
  results = []
  for m in (1, 4):
    mb = model_batch(run.model_config, batch, micro_batches=m)
    assert mb["input_ids"].shape[:2] == (m, 8 // m)
    new_state, metrics = jax.jit(step_fn)(state, mb)
    results.append((jax.tree.leaves(new_state.params), float(metrics["loss"])))
  (p1, l1), (p4, l4) = results
  assert abs(l1 - l4) < 1e-5
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(p1, jax.tree.leaves(run.state.params)))
  assert moved > 1e-4  # the update is not trivially zero
  for a, b in zip(p1, p4):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)


def test_a_run_keeps_its_architecture_and_init_must_match_its_checkpoint(synthetic_data, tmp_path):
  from train_main import config
  from o3jax.train.run import restore, setup_run

  cfg = config(["batch_size=4", "checkpoint_every=1"])
  trained = str(tmp_path / "trained")
  train_sft(cfg, synthetic_data, trained, steps=1)
  with open(os.path.join(trained, "model_config.json")) as f:
    saved = f.read()
  # Evaluating (or resuming) it under a config naming another preset: same model, same file.
  run = setup_run(cfg.replace(model="small"), trained)
  restore(run)
  assert run.model_config.text.num_hidden_layers == 2 and run.model_config.text.hidden_size == 64
  with open(os.path.join(trained, "model_config.json")) as f:
    assert f.read() == saved
  # An init whose model_config.json is shallower than its checkpoint: refused, rather
  # than a model built from the first layer alone (layers stacked: the layers axis of the
  # checkpoint's arrays is longer than the model's).
  shallow = json.loads(saved)
  shallow["num_hidden_layers"] = 1
  with open(os.path.join(trained, "model_config.json"), "w") as f:
    json.dump(shallow, f)
  with pytest.raises(ValueError, match=r"text\.layers\..* has shape \(2, .*expects \(1, .*"):
    setup_run(cfg, str(tmp_path / "next"), init=trained)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(synthetic_data, tmp_path):
  from train_main import config

  cfg = config(["batch_size=4", "checkpoint_every=1"])
  cfg = cfg.replace(
    optim=dataclasses.replace(cfg.optim, learning_rate=1e30, warmup_steps=0, max_grad_norm=1e30)
  )
  workdir = str(tmp_path / "nan")
  with pytest.raises(NonFiniteLoss, match="last good checkpoint"):
    train_sft(cfg, synthetic_data, workdir, steps=20)
  ckpt = Checkpointer(workdir, asynchronous=False)
  params = ckpt.read_params(ckpt.latest_step())
  ckpt.close()
  assert all(np.isfinite(np.asarray(x)).all() for x in params.values())


def test_half_written_checkpoint_is_never_loaded(tmp_path):
  """Orbax finalises a step by renaming its temporary directory; a run killed before that
  leaves only the temporary one, which latest_step() does not list."""
  import jax.numpy as jnp

  ckpt = Checkpointer(str(tmp_path), asynchronous=False)
  ckpt.save(1, {"params": {"w": jnp.ones(3)}})
  ckpt.close()
  partial = tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-1234567"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "junk").write_text("half written")
  ckpt = Checkpointer(str(tmp_path), asynchronous=False)
  assert ckpt.latest_step() == 1
  np.testing.assert_array_equal(ckpt.read_params(1)["w"], np.ones(3))
  ckpt.close()


def test_task_selection_keeps_bad_records_for_the_pipeline_to_count(tmp_path):
  records = [
    {"id": "a", "task": "visual QA"},
    {"id": "b", "task": "temporal QA"},
    ["not", "an", "object"],
    {"id": "c", "task": "video captioning"},
    {"id": "d"},
    {"id": "e", "task": "relevance rating"},
  ]
  kept = select_tasks(records, ("visual QA", "relevance rating"))
  assert [r["id"] if isinstance(r, dict) else r for r in kept] == [
    "a",
    ["not", "an", "object"],
    "c",
    "d",
    "e",
  ]
  assert select_tasks(records, ()) == records
  config = tmp_path / "bad_tasks.py"
  config.write_text(
    "from o3jax.train.config import TrainConfig\n"
    "def get_config():\n  return TrainConfig(tasks=('visual QA', 'captions'))\n"
  )
  with pytest.raises(ValueError, match=r"tasks \['captions'\] are unknown"):
    load_config(str(config))
