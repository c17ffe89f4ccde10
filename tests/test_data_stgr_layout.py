"""The published STGR tree (--data-root): every record's media found by its source or task
in the reference's folders; a missing file is reported with its record, field and path."""

import json
import os
import shutil

import pytest

from o3jax.data import stgr_layout
from o3jax.data.records import RecordError, check_record

# The reference's folders under DATA_ROOT/videos (sft_multi_task.py, grpo_trainer.py),
# written out by hand: (stage, task, source) -> (media folder, key-frame folder).
SFT = {
  ("temporal-spatial free-form QA", "STR_plm_rdcap"): ("stgr/plm/videos", "stgr/plm/kfs"),
  ("temporal-spatial free-form QA", "STR_grounding"): (
    "stgr/temporal_grounding/videos",
    "stgr/temporal_grounding/kfs",
  ),
  ("temporal QA", "TVG_r1"): ("tvg_r1", None),
  ("visual QA", "treevgr"): ("treevgr", None),
  ("General video QA MCQ", "videor1_mcq"): ("videor1", None),
  ("General video QA Free-form", "videor1_free"): ("videor1", None),
}
RL = {
  ("temporal-spatial free-form QA", "STR_plm_rdcap"): ("stgr/plm/videos", "stgr/plm/kfs"),
  ("temporal-spatial free-form QA", "STR_grounding"): (
    "stgr/temporal_grounding/videos",
    "stgr/temporal_grounding/kfs",
  ),
  ("temporal-spatial free-form QA", "videoespresso_train_video"): (
    "videoespresso/videos",
    "videoespresso/kfs",
  ),
  ("temporal QA", "TVG_r1"): ("tvg_r1", None),
  ("temporal QA", "timerft"): ("timerft", None),
  ("temporal QA (MCQ)", "TVG_mcq"): ("tvg_r1", None),
  ("visual QA", "gqa"): ("gqa", None),
  ("General video QA MCQ", "videor1_mcq"): ("videor1", None),
  ("General video QA Free-form", "videor1_free"): ("videor1", None),
}


def reference_tree(synthetic_data, root):
  """DATA_ROOT with json_data/STGR-{SFT,RL}.json: the synthetic records of each task once
  per source of the table, their files copied into the table's folders."""
  files = {}
  for stage, file, table in (("sft", "STGR-SFT.json", SFT), ("rl", "STGR-RL.json", RL)):
    records = json.load(open(os.path.join(synthetic_data, file)))
    out = []
    for (task, source), (media, kfs) in table.items():
      record = next(r for r in records if r.get("task") == task)
      record = {**record, "id": f"{stage}-{source}-{task}", "source": source}
      for field in ("video_path", "image_path"):
        if field in record:
          files[os.path.join(root, "videos", media, record[field])] = record[field]
      for kf in record.get("key_frames", []):
        if kf.get("path"):
          files[os.path.join(root, "videos", kfs, kf["path"])] = kf["path"]
      out.append(record)
    os.makedirs(os.path.join(root, "json_data"), exist_ok=True)
    with open(os.path.join(root, "json_data", file), "w") as f:
      json.dump(out, f)
  for dst, src in files.items():
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy(os.path.join(synthetic_data, src), dst)
  return root


@pytest.fixture(scope="module")
def tree(synthetic_data, tmp_path_factory):
  return reference_tree(synthetic_data, str(tmp_path_factory.mktemp("stgr_root")))


@pytest.mark.parametrize("stage, file", [("sft", "STGR-SFT.json"), ("rl", "STGR-RL.json")])
def test_every_source_loads_with_no_missing_file(tree, stage, file):
  records = json.load(open(stgr_layout.json_path(tree, file)))
  assert len(records) == len(SFT if stage == "sft" else RL)
  for record in records:
    resolved = stgr_layout.resolve(record, stage, tree)
    check_record(resolved, stage=stage, root="/", check_files=True)  # raises on a missing file
    path = resolved.get("video_path") or resolved["image_path"]
    table = SFT if stage == "sft" else RL
    media, kfs = table[(record["task"], record["source"])]
    assert path.startswith(os.path.join(tree, "videos", media) + "/")
    for kf in resolved.get("key_frames", []):
      assert kf["path"].startswith(os.path.join(tree, "videos", kfs) + "/")


def test_a_missing_file_names_record_field_and_path(tree):
  records = json.load(open(stgr_layout.json_path(tree, "STGR-RL.json")))
  record = next(r for r in records if r["source"] == "STR_plm_rdcap")
  resolved = stgr_layout.resolve(record, "rl", tree)
  gone = resolved["key_frames"][0]["path"]
  os.rename(gone, gone + ".moved")
  try:
    with pytest.raises(RecordError, match=f"'{record['id']}'.*key_frames.*{gone}"):
      check_record(resolved, stage="rl", root="/", check_files=True)
  finally:
    os.rename(gone + ".moved", gone)
  with pytest.raises(RecordError, match="source.*no folder"):
    stgr_layout.resolve({**record, "source": "elsewhere"}, "rl", tree)
  with pytest.raises(RecordError, match="task.*no folder"):
    stgr_layout.resolve({**record, "task": "temporal QA (MCQ)"}, "sft", tree)


def test_sft_iterator_reads_the_tree(tree, capsys):
  from o3jax.processing.tokenizer import build_demo_tokenizer
  from o3jax.train.config import load_config
  from o3jax.train.sft import data_iterator

  cfg = load_config("configs/tiny_synthetic.py").replace(batch_size=2, data_workers=0)
  cfg = cfg.replace(strict_data=True)  # any missing file or bad record would raise
  it = data_iterator(
    cfg,
    None,
    build_demo_tokenizer(),
    "sft",
    "STGR-SFT.json",
    shuffle=False,
    num_epochs=1,
    data_root=tree,
  )
  rows = sum(len(batch["input_ids"]) for batch in it)
  assert rows >= len(SFT) - 1  # the last partial batch may be padded or dropped
