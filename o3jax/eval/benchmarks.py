"""VideoMME, WorldSense and VideoMMMU read from their published files, as the reference reads
them (eval/dataloader/{videomme,worldsense}.py, eval/test/test_*.py of Open-o3 Video).

  videomme    DIR/videomme/test-00000-of-00001.parquet (lmms-lab/Video-MME): video_id,
              duration, domain, sub_category, url, videoID, question_id, task_type,
              question, options (list of "A. ..." strings), answer (letter); videos
              DIR/data/<videoID>.mp4 (or .MP4, .mkv).
  worldsense  DIR/WorldSense.tsv: index, video (id without extension), question,
              candidates (a python list literal as a string, "['A. ...', ...]"), answer,
              duration, domain, sub_category, task_domain, task_type, audio_class (a list
              literal); videos DIR/<video>.mp4.
  videommmu   DIR/{Perception,Comprehension,Adaptation}/test-00000-of-00001.parquet
              (lmms-lab/VideoMMMU): id ("<split>_<Subject>_<n>"), question, options (up to
              10, A..J), answer, question_type ("multiple-choice" or "open"), image (an
              image struct {bytes, path}, or null: the Adaptation question's image, shown
              after the video), link_selected; videos DIR/<id>.mp4, else the lmms-eval layout
              DIR/<discipline>/<id>.mp4.

An `Item` is one question: its prompt text (bench_prompts), letters, gold answer, video
path, optional image, categories and the published row (JSON-ready) for the results file.
A bad row raises ValueError naming the file, the row and the field.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import os
import string
from typing import Any

import numpy as np

from o3jax.eval import bench_prompts as P

BENCHMARKS = ("videomme", "worldsense", "videommmu")
VIDEOMME_FILE = os.path.join("videomme", "test-00000-of-00001.parquet")
WORLDSENSE_FILE = "WorldSense.tsv"
VIDEOMMMU_SPLITS = ("Perception", "Comprehension", "Adaptation")
VIDEOMMMU_FILE = "test-00000-of-00001.parquet"
# eval/test/test_*.py: the letters an answer block may hold
LETTERS = {"videomme": "ABCD", "worldsense": "ABCD", "videommmu": "ABCDEFGHIJ"}
# lmms-eval's VideoMMMU discipline folders (and the MMMU domain of each subject)
DISCIPLINES = {
  "Art": ["Art", "Art_Theory", "Design", "Music"],
  "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
  "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
  "Medicine": [
    "Basic_Medical_Science",
    "Clinical_Medicine",
    "Diagnostics_and_Laboratory_Medicine",
    "Pharmacy",
    "Public_Health",
  ],
  "Humanities": ["History", "Literature", "Sociology", "Psychology"],
  "Engineering": [
    "Agriculture",
    "Architecture_and_Engineering",
    "Computer_Science",
    "Electronics",
    "Energy_and_Power",
    "Materials",
    "Mechanical_Engineering",
  ],
}


@dataclasses.dataclass
class Item:
  id: str
  prompt: str  # the user text after the video (and image)
  rating_question: str  # the question as the relevance-rating prompt quotes it
  letters: str  # the letters an answer may take
  answer: str
  question_type: str  # "multiple-choice" or "open"
  video: str  # path
  categories: dict[str, Any]
  row: dict  # the published row, JSON-ready (image bytes left out)
  image: np.ndarray | None = None  # uint8 [H, W, 3]
  options: list[str] = dataclasses.field(default_factory=list)


def read_parquet(path: str) -> list[dict]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"benchmark file not found: {path}")
  import pyarrow.parquet as pq

  return pq.read_table(path).to_pylist()


def _field(row: dict, name: str, where: str, kind=str):
  value = row.get(name)
  if value is None or (kind is str and not isinstance(value, str)):
    raise ValueError(f"{where}: field {name!r} is missing or not a {kind.__name__}: {value!r}")
  return value


def _options(value, where: str, field: str) -> list[str]:
  if isinstance(value, np.ndarray):
    value = value.tolist()
  if isinstance(value, str):  # WorldSense: a python list literal
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      raise ValueError(f"{where}: field {field!r} is not a list literal: {value!r}") from None
  if (
    not isinstance(value, (list, tuple)) or not value or not all(isinstance(o, str) for o in value)
  ):
    raise ValueError(f"{where}: field {field!r} is not a list of option texts: {value!r}")
  return list(value)


def _video(candidates: list[str], where: str) -> str:
  for path in candidates:
    if os.path.exists(path):
      return path
  return candidates[0]  # missing: the video reader names it


def json_row(row: dict) -> dict:
  """The row without image bytes (a results file stays JSON)."""
  out = {}
  for key, value in row.items():
    if isinstance(value, dict) and "bytes" in value:
      value = {"path": value.get("path"), "bytes": None if value["bytes"] is None else "..."}
    elif isinstance(value, np.ndarray):
      value = value.tolist()
    out[key] = value
  return out


def load_videomme(data_dir: str, think: bool = True) -> list[Item]:
  path = os.path.join(data_dir, VIDEOMME_FILE)
  items = []
  for i, row in enumerate(read_parquet(path)):
    where = f"{path} row {i}"
    options = _options(row.get("options"), where, "options")
    question = _field(row, "question", where) + "\n" + "\n".join(options)
    if think:
      prompt = "Question:" + question + "\n" + P.VIDEOMME_THINK
    else:
      prompt = P.VIDEOMME_PLAIN + "\n" + question + "\n"
    base = os.path.join(data_dir, "data", _field(row, "videoID", where) + ".mp4")
    items.append(
      Item(
        id=str(_field(row, "question_id", where)),
        prompt=prompt,
        rating_question=question,
        letters=LETTERS["videomme"],
        answer=_field(row, "answer", where).strip(),
        question_type="multiple-choice",
        video=_video([base, base[:-4] + ".MP4", base[:-4] + ".mkv"], where),
        categories={k: _field(row, k, where) for k in ("duration", "domain", "sub_category")}
        | {"task_type": _field(row, "task_type", where)},
        row=json_row(row),
        options=options,
      )
    )
  return items


def load_worldsense(data_dir: str, think: bool = True) -> list[Item]:
  path = os.path.join(data_dir, WORLDSENSE_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"benchmark file not found: {path}")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  items = []
  for i, row in enumerate(rows):
    where = f"{path} row {i}"
    candidates = _options(row.get("candidates"), where, "candidates")
    question = _field(row, "question", where) + "\n" + "\n".join(candidates)
    rating_question = "Question: {}\n".format(question)
    prompt = (
      P.WORLDSENSE_SYS
      + P.WORLDSENSE_NO_SUBTITLES
      + rating_question
      + (P.WORLDSENSE_THINK if think else P.WORLDSENSE_PLAIN)
    )
    audio = _options(row.get("audio_class"), where, "audio_class")
    fields = ("duration", "domain", "sub_category", "task_domain", "task_type")
    items.append(
      Item(
        id=str(row.get("index", i)),
        prompt=prompt,
        rating_question=rating_question,
        letters=LETTERS["worldsense"],
        answer=_field(row, "answer", where).strip(),
        question_type="multiple-choice",
        video=os.path.join(data_dir, _field(row, "video", where) + ".mp4"),
        categories={k: _field(row, k, where) for k in fields} | {"audio_class": audio},
        row=dict(row),
        options=candidates,
      )
    )
  return items


def parse_options(options: list[str]) -> str:
  """lmms-eval's VideoMMMU option lines: the options as they are when already lettered
  ("A. ..."), else lettered here."""
  letters = string.ascii_uppercase[: len(options)]
  if all(o.startswith(f"{letter}.") for o, letter in zip(options, letters)):
    return "\n".join(options)
  return "\n".join(f"{letter}. {o}" for letter, o in zip(letters, options))


def subject_of(item_id: str) -> str:
  """ "<split>_<Subject>_<n>" -> Subject (lmms-eval's extract_subset_name)."""
  parts = item_id.split("_")
  if len(parts) < 3 or not parts[-1].isdigit():
    raise ValueError(f"VideoMMMU id {item_id!r} is not <split>_<Subject>_<n>")
  return "_".join(parts[1:-1])


def _decode_image(value, where: str) -> np.ndarray | None:
  if value is None:
    return None
  data = value.get("bytes") if isinstance(value, dict) else None
  if not data:
    raise ValueError(f"{where}: field 'image' holds no image bytes")
  from PIL import Image

  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert("RGB"))
  except OSError as e:
    raise ValueError(f"{where}: field 'image' is not a readable image ({e})") from None


def load_videommmu(data_dir: str, think: bool = True) -> list[Item]:
  items = []
  for split in VIDEOMMMU_SPLITS:
    path = os.path.join(data_dir, split, VIDEOMMMU_FILE)
    for i, row in enumerate(read_parquet(path)):
      where = f"{path} row {i}"
      item_id = _field(row, "id", where)
      subject = subject_of(item_id)
      discipline = next((d for d, subs in DISCIPLINES.items() if subject in subs), None)
      if discipline is None:
        raise ValueError(f"{where}: field 'id' names an unknown subject {subject!r}")
      kind = row.get("question_type") or "multiple-choice"
      options = _options(row.get("options"), where, "options") if kind != "open" else []
      question = _field(row, "question", where)
      if options:
        question += "\n" + parse_options(options)
      prompt = "Question:" + question + "\n" + (P.VIDEOMMMU_THINK if think else P.VIDEOMMMU_PLAIN)
      if kind != "multiple-choice":
        prompt = prompt.replace(P.VIDEOMMMU_MCQ_SENTENCE, P.VIDEOMMMU_OPEN_SENTENCE)
      items.append(
        Item(
          id=item_id,
          prompt=prompt,
          rating_question=question,
          letters=LETTERS["videommmu"] if options else "",
          answer=str(_field(row, "answer", where, object)).strip(),
          question_type=kind,
          video=_video(
            [
              os.path.join(data_dir, item_id + ".mp4"),
              os.path.join(data_dir, discipline, item_id + ".mp4"),
            ],
            where,
          ),
          categories={"track": split, "discipline": discipline, "subject": subject},
          row=json_row(row) | {"track": split},
          image=_decode_image(row.get("image"), where),
          options=options,
        )
      )
  return items


LOADERS = {"videomme": load_videomme, "worldsense": load_worldsense, "videommmu": load_videommmu}


def load(benchmark: str, data_dir: str, think: bool = True) -> list[Item]:
  if benchmark not in LOADERS:
    raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
  return LOADERS[benchmark](data_dir, think)
