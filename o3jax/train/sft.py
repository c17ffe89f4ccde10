"""Cold-start SFT: masked next-token cross-entropy on the assistant tokens."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import jax

from o3jax import grammar
from o3jax.data import pipeline, stgr_layout
from o3jax.data.records import RecordError, load_records
from o3jax import sharding
from o3jax.distributed import agree_max, row_shard
from o3jax.train import step as step_lib
from o3jax.train.batch import model_batch, vision_needs
from o3jax.train.config import TrainConfig
from o3jax.train.loss import sft_loss
from o3jax import workdir as workdir_lib
from o3jax.train.run import (
  check_finite,
  check_state_finite,
  record_inference_settings,
  processing_config,
  restore,
  setup_run,
)
from o3jax.workdir import MetricsLog


def select_tasks(records: list, tasks: tuple) -> list:
  """The records of `tasks` (all when empty). A record that is not an object or names no
  known task is kept, so that the pipeline reports and counts it like any bad record."""
  if not tasks:
    return records
  known = grammar.TASKS + grammar.SFT_ONLY_TASKS
  return [
    r
    for r in records
    if not isinstance(r, dict) or r.get("task") not in known or r["task"] in tasks
  ]


def data_iterator(
  cfg: TrainConfig,
  data_dir: str,
  tokenizer,
  stage: str,
  file: str,
  shuffle: bool = True,
  num_epochs: int | None = None,
  data_root: str | None = None,
  model_type: str | None = None,
):
  """This process's rows of the batches of `file` under `data_dir` (paths relative to it),
  or with `data_root` of DATA_ROOT/json_data/`file` in the published STGR layout
  (o3jax.data.stgr_layout): the records of the block of rows its devices hold under
  `cfg.mesh` (`o3jax.distributed.row_shard`), padded to the bucket all processes agree on."""
  index, count = row_shard(sharding.make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor))
  if cfg.batch_size % count:
    raise ValueError(f"batch_size {cfg.batch_size} does not split into {count} row blocks")
  if data_root:
    path = stgr_layout.json_path(data_root, file)
    records = []
    for number, record in enumerate(select_tasks(load_records(path), cfg.tasks)):
      try:
        records.append(stgr_layout.resolve(record, stage, data_root))
      except RecordError as e:
        if cfg.strict_data:
          raise
        print(f"skipping {path} record {number}: {e}", file=sys.stderr)
  else:
    path = os.path.join(data_dir, file)
    records = select_tasks(load_records(path), cfg.tasks)
  if not records:
    tasks = f" of the tasks {list(cfg.tasks)}" if cfg.tasks else ""
    raise ValueError(f"{path}: no records{tasks} to train on")
  pcfg = pipeline.PipelineConfig(
    batch_size=cfg.batch_size // count,
    buckets=tuple(cfg.buckets),
    stage=stage,
    seed=cfg.seed,
    num_workers=cfg.data_workers,
    strict=cfg.strict_data,
    shuffle=shuffle,
    num_epochs=num_epochs,
    drop_remainder=num_epochs is None,
    shard_index=index,
    shard_count=count,
    agree_bucket=(lambda i: agree_max([i])[0]) if jax.process_count() > 1 else None,
  )
  return pipeline.make_iterator(
    records,
    tokenizer=tokenizer,
    processing=processing_config(cfg, model_type),
    config=pcfg,
    root=os.path.dirname(os.path.abspath(path)),
  )


def train_sft(
  cfg: TrainConfig,
  data_dir: str,
  workdir: str,
  steps: int | None = None,
  init: str | None = None,
  batches: Iterator | None = None,
  data_root: str | None = None,
) -> dict:
  """Trains until step `steps` (default cfg.total_steps); returns the last metrics row.

  `batches` replaces the data pipeline (tests); it must have get_state/set_state.
  """
  with workdir_lib.claim(workdir, " ".join(sys.argv)):
    return _train_sft(cfg, data_dir, workdir, steps, init, batches, data_root)


def _train_sft(cfg, data_dir, workdir, steps, init, batches, data_root) -> dict:
  run = setup_run(cfg, workdir, init)
  data = (
    batches
    if batches is not None
    else data_iterator(
      cfg,
      data_dir,
      run.tokenizer,
      "sft",
      "STGR-SFT.json",
      data_root=data_root,
      model_type=run.model_config.model_type,
    )
  )
  restore(run, data)
  record_inference_settings(run, "sft")
  target = cfg.total_steps if steps is None else steps
  train_step = step_lib.make_train_step(run.graphdef, sft_loss, run.tx, run.schedule)
  log = MetricsLog(workdir, target, run.start_step, desc="sft")
  jitted, row, pending = None, {}, None
  state = run.state
  step = run.start_step

  def flush(pending):
    row = log.write(pending[0], jax.device_get(pending[1]))
    check_finite(pending[0], row, run.checkpointer)
    return row

  pixel_bytes = global_pixel_bytes = 0
  while step < target:
    # Each process decodes its own rows and places them on its own devices.
    local = next(data)
    needs = agree_max(vision_needs(run.model_config, local))
    batch = model_batch(run.model_config, local, cfg.micro_batches, needs=needs)
    placed, shardings = step_lib.place_batch(batch, run.mesh)
    pixel_bytes += step_lib.pixel_bytes(batch)
    global_pixel_bytes += step_lib.pixel_bytes(placed)
    if jitted is None:
      jitted = step_lib.jit_train_step(train_step, run.shardings, shardings, run.mesh)
    state, metrics = jitted(state, placed)
    step += 1
    # Metrics are read one step late, so the host never waits on the step it dispatched,
    # except before a checkpoint, which must not hold a non-finite state.
    if pending is not None:
      row = flush(pending)
    pending = (step, metrics)
    if step % cfg.checkpoint_every == 0 or step == target:
      row, pending = flush(pending), None
      check_state_finite(step, state, run.checkpointer)
      run.checkpointer.save(step, state, data)
  log.close()
  run.checkpointer.close()
  skipped = getattr(data, "skipped", 0)
  if skipped:
    print(f"skipped {skipped} bad records", file=sys.stderr)
  print(
    f"process {jax.process_index()}: decoded {getattr(data, 'records_read', '?')} records, "
    f"placed {pixel_bytes} pixel bytes of the global batches' {global_pixel_bytes}",
    file=sys.stderr,
  )
  run.state = state
  return row
