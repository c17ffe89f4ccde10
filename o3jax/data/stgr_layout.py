"""The published STGR data tree: where each record's video, image and key frames live.

Layout (marinero4972/Open-o3-Video `src/r1-v/src/open_r1/sft_multi_task.py` and
`trainer/grpo_trainer.py`): JSON files under DATA_ROOT/json_data, media under
DATA_ROOT/videos/<folder>, the folder chosen as the reference chooses it:
- SFT, by task: visual QA -> treevgr; temporal-spatial free-form QA ->
  stgr/plm/videos when source == "STR_plm_rdcap", else stgr/temporal_grounding/videos
  (key frames: the matching .../kfs); temporal QA -> tvg_r1; General video QA MCQ and
  Free-form -> videor1. (The reference SFT has no other task.)
- RL, by source: "videoespresso_train_video" -> videoespresso/videos (key frames
  videoespresso/kfs); "timerft" -> timerft; "gqa" -> gqa (images); a source holding
  "STR" -> stgr/plm/videos if it holds "STR_plm", else stgr/temporal_grounding/videos
  (key frames likewise .../kfs); holding "TVG" -> tvg_r1; holding "videor1" -> videor1.
`resolve` returns the record with those paths made absolute; the data pipeline then
reports a missing file with its record, field and path as for any other record.
"""

from __future__ import annotations

import os

from o3jax.data.records import RecordError, record_id
from o3jax.grammar import GENERAL_FREE_FORM, GENERAL_MCQ, SPATIO_TEMPORAL, TEMPORAL, VISUAL

JSON_DIR = "json_data"
MEDIA_DIR = "videos"
STR_VIDEOS, STR_KFS = "stgr/temporal_grounding/videos", "stgr/temporal_grounding/kfs"
PLM_VIDEOS, PLM_KFS = "stgr/plm/videos", "stgr/plm/kfs"
SFT_TASK_FOLDERS = {
  VISUAL: "treevgr",
  TEMPORAL: "tvg_r1",
  GENERAL_MCQ: "videor1",
  GENERAL_FREE_FORM: "videor1",
}


def _sft_folders(record: dict) -> tuple[str, str | None]:
  task = record.get("task")
  if task == SPATIO_TEMPORAL:
    plm = record.get("source") == "STR_plm_rdcap"
    return (PLM_VIDEOS, PLM_KFS) if plm else (STR_VIDEOS, STR_KFS)
  if task in SFT_TASK_FOLDERS:
    return SFT_TASK_FOLDERS[task], None
  raise RecordError(record_id(record), "task", f"{task!r} has no folder in the SFT layout")


def _rl_folders(record: dict) -> tuple[str, str | None]:
  source = record.get("source")
  if not isinstance(source, str):
    raise RecordError(record_id(record), "source", f"is not a string: {source!r}")
  if source == "videoespresso_train_video":
    return "videoespresso/videos", "videoespresso/kfs"
  if source in ("timerft", "gqa"):
    return source, None
  if "STR" in source:
    return (PLM_VIDEOS, PLM_KFS) if "STR_plm" in source else (STR_VIDEOS, STR_KFS)
  if "TVG" in source:
    return "tvg_r1", None
  if "videor1" in source:
    return "videor1", None
  raise RecordError(record_id(record), "source", f"{source!r} has no folder in the RL layout")


def folders(record: dict, stage: str) -> tuple[str, str | None]:
  """(media folder, key-frame folder or None) under DATA_ROOT/videos."""
  if not isinstance(record, dict):
    raise RecordError(record_id(record), "record", "is not a JSON object")
  return _sft_folders(record) if stage == "sft" else _rl_folders(record)


def resolve(record: dict, stage: str, data_root: str) -> dict:
  """The record with video_path / image_path and key_frames[].path absolute under
  DATA_ROOT/videos; RecordError (naming record and field) for an unknown task or source."""
  media, key_frames = folders(record, stage)
  base = os.path.join(os.path.abspath(data_root), MEDIA_DIR)
  out = dict(record)
  for field in ("video_path", "image_path"):
    if isinstance(record.get(field), str):
      out[field] = os.path.join(base, media, record[field])
  if isinstance(record.get("key_frames"), list):
    kf_base = os.path.join(base, key_frames or STR_KFS)  # the RL trainer's default kf root
    out["key_frames"] = [
      {**kf, "path": os.path.join(kf_base, kf["path"])}
      if isinstance(kf, dict) and isinstance(kf.get("path"), str)
      else kf
      for kf in record["key_frames"]
    ]
  return out


def json_path(data_root: str, file: str) -> str:
  return os.path.join(data_root, JSON_DIR, file)
