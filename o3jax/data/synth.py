"""Synthetic grounded videos with exact answers: coloured shapes on known trajectories.

`synthesize(out_dir, videos=N, seed=S)` writes, with every path relative to out_dir:
  videos/vNNNN.mp4        training videos (MPEG-4, PyAV), videos/hNNNN.mp4 held-out ones
  keyframes/*.png         the exact rendered frames of the annotated key frames
  images/*.png            still frames for visual QA
  crops/*.png             evidence crops with relevance ratings (SFT only, for test-time scaling)
  STGR-SFT.json           records of all six tasks, with grounded reasoning (normalised boxes;
                          visual QA: pixels of the image) and SFT answers
  STGR-RL.json            the same questions in RL form (temporal answers "[s, e]", "B\\n[s, e]")
  vstar.json              a V-STaR-format benchmark over the held-out videos

The videos are `o3jax.data.scenes`. Everything is determined by (seed, video index): the
same seed gives the same files.

Evidence in the reasoning is claimed on frames the model will be shown (the tiny
configs' frame sampling, `frames.shown_frames`), at their label times: a box at a moment
the model never sees could only be guessed.
"""

import json
import math
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from o3jax import grammar
from o3jax.processing import evidence, frames
from o3jax.processing.config import TINY, ProcessingConfig
from o3jax.data.scenes import (
  COLOURS,
  Scene,
  Track,
  make_scene,
  scene_rng,
  write_video,
)

LETTERS = "ABCD"


def _save_png(image: np.ndarray, out_dir: str, rel: str) -> str:
  os.makedirs(os.path.join(out_dir, os.path.dirname(rel)), exist_ok=True)
  Image.fromarray(image).save(os.path.join(out_dir, rel))
  return rel


def _t(seconds: float) -> str:
  return f"{seconds:.1f}"


def _span(track: Track, scene: Scene) -> tuple[float, float]:
  return scene.seconds(track.first), scene.seconds(track.last)


def _middle(scene: Scene, track: Track) -> int:
  """A half-second frame in the middle of the track's span."""
  half = scene.fps // 2
  return (track.first + track.last) // 2 // half * half


def _claim(scene: Scene, track: Track, frame: int, seconds: float | None = None) -> str:
  seconds = scene.seconds(frame) if seconds is None else seconds
  return grammar.format_claim(track.name, [scene.normalized_box(track, frame)], seconds)


def _seen(
  scene: Scene, track: Track, shown: list[tuple[int, float]], within_span: bool = False
) -> list[tuple[int, float]]:
  """The shown frames (index, label time) on which the track is visible; within_span keeps
  those whose label also falls inside its visible span (labels lag the frames' own times)."""
  s, e = _span(track, scene)
  return [(f, t) for f, t in shown if track.visible(f) and (not within_span or s <= t <= e)]


def _seen_claims(scene: Scene, track: Track, seen: list[tuple[int, float]]) -> list[str]:
  """Claims the model can check: the box on a frame it is shown, at that frame's label."""
  return [_claim(scene, track, f, t) for f, t in seen]


def _key_frames(scene: Scene, track: Track, count: int = 2) -> list[int]:
  """Evenly spread half-second frames inside the track's span."""
  half = scene.fps // 2
  steps = np.linspace(track.first // half, track.last // half, count + 2)[1:-1]
  return sorted({int(round(s)) * half for s in steps})


def _options(rng: np.random.Generator, correct: str, wrong: list[str]) -> tuple[str, str]:
  """Four lettered options with the correct one at a random place; returns (text, letter)."""
  choices = list(rng.choice(wrong, size=3, replace=False)) + [correct]
  order = rng.permutation(4)
  choices = [choices[i] for i in order]
  text = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
  return text, LETTERS[choices.index(correct)]


def _wrong_segments(rng: np.random.Generator, scene: Scene, s: float, e: float) -> list[str]:
  duration = scene.seconds(scene.num_frames - 1)
  out = set()
  while len(out) < 3:
    a = float(rng.integers(0, int(2 * duration))) / 2
    b = min(duration, a + float(rng.integers(2, 7)) / 2)
    if (a, b) != (s, e) and b > a:
      out.add((a, b))
  return [f"[{_t(a)}, {_t(b)}]" for a, b in sorted(out)]


def scene_records(
  scene: Scene, rng: np.random.Generator, out_dir: str, sampling: ProcessingConfig = TINY
) -> tuple[list[dict], list[dict]]:
  """SFT and RL records of all six tasks for one training video.

  Evidence in the reasoning is claimed on frames the model is shown (`sampling` picks
  them as the pipeline will), with the box of that frame and its label time: a box at a
  moment the model never saw could only be guessed. Spatio-temporal records claim on
  their key frames, which the pipeline inserts into the shown frames."""
  video = f"videos/{scene.vid}.mp4"
  shown = frames.shown_frames(scene.num_frames, scene.fps, sampling)
  sft, rl = [], []

  def add(
    task: str, code: str, question: str, reasoning: str, sft_answer: str, rl_answer: str, **fields
  ):
    common = dict(task=task, source="synthetic", question=question, **fields)
    sft.append(
      dict(id=f"{scene.vid}-{code}-sft", **common, answer=sft_answer, reasoning_process=reasoning)
    )
    rl.append(dict(id=f"{scene.vid}-{code}-rl", **common, answer=rl_answer))

  tracks = list(scene.tracks)
  pick = lambda: tracks[int(rng.integers(len(tracks)))]  # noqa: E731

  # temporal-spatial free-form QA: key frames, key items, grounded reasoning.
  track = pick()
  keys = _key_frames(scene, track)
  key_frames = [
    dict(
      idx=f,
      time=scene.seconds(f),
      path=_save_png(scene.render(f)[0], out_dir, f"keyframes/{scene.vid}_{f:04d}.png"),
    )
    for f in keys
  ]
  key_items = {str(f): {track.name: [scene.normalized_box(track, f)]} for f in keys}
  claims = [_claim(scene, track, f) for f in keys]
  kind = int(rng.integers(3))
  if kind == 0:
    question, answer = f"What colour is the {track.shape}?", f"The {track.shape} is {track.colour}."
  elif kind == 1:
    question, answer = (
      f"Which shape is {track.colour}?",
      f"The {track.colour} object is a {track.shape}.",
    )
  else:
    question, answer = f"How does the {track.name} move?", f"It moves {track.direction()}."
  reasoning = (
    f"The {claims[0]} is visible here. Later the {claims[-1]} has moved on. "
    f"It is a {track.colour} {track.shape} moving {track.direction()}."
  )
  add(
    "temporal-spatial free-form QA",
    "st",
    question,
    reasoning,
    answer,
    answer,
    video_path=video,
    key_frames=key_frames,
    key_items=key_items,
  )

  # temporal QA: when is an object visible.
  track = pick()
  s, e = _span(track, scene)
  opening = (
    f"The {track.name} is there from the start, at <t>{_t(s)}</t>s."
    if s == 0
    else f"The {track.name} is not there at first. It appears at <t>{_t(s)}</t>s."
  )
  reasoning = f"{opening}{_first_last(scene, track, shown)} It is visible until <t>{_t(e)}</t>s."
  add(
    "temporal QA",
    "tg",
    f"When does the {track.name} appear in the video?",
    reasoning,
    f"From <t>{_t(s)}</t>s to <t>{_t(e)}</t>s",
    f"[{_t(s)}, {_t(e)}]",
    video_path=video,
  )

  # temporal QA (MCQ).
  track = pick()
  s, e = _span(track, scene)
  options, letter = _options(rng, f"[{_t(s)}, {_t(e)}]", _wrong_segments(rng, scene, s, e))
  rated = [(f"When is the {track.name} visible?\nOptions:\n{options}", [track])]
  reasoning = (
    f"The {track.name} enters the view at <t>{_t(s)}</t>s.{_first_last(scene, track, shown)} "
    f"Its last appearance is at <t>{_t(e)}</t>s. So it is [{_t(s)}, {_t(e)}], which is option {letter}."
  )
  add(
    "temporal QA (MCQ)",
    "tgmcq",
    f"When is the {track.name} visible?\nOptions:\n{options}",
    reasoning,
    f"From <t>{_t(s)}</t>s to <t>{_t(e)}</t>s\nCorrect Option: {letter}",
    f"{letter}\n[{_t(s)}, {_t(e)}]",
    video_path=video,
  )

  # visual QA: a still frame, boxes in pixels of the image.
  track = pick()
  frame = _middle(scene, track)
  image, boxes = scene.render(frame)
  path = _save_png(image, out_dir, f"images/{scene.vid}_{frame:04d}.png")
  box = boxes[track.name]
  others = [t.shape for t in tracks if t.name in boxes and t is not track]
  context = f" The other objects are: {', '.join(others)}." if others else ""
  reasoning = f"The <obj>{track.shape}</obj>{grammar.format_box(box)} is {track.colour}.{context}"
  answer = f"<obj>{track.shape}</obj>{grammar.format_box(box)}"
  add(
    "visual QA",
    "vqa",
    f"Where is the {track.name} in the image?",
    reasoning,
    answer,
    answer,
    image_path=path,
    image_size=[scene.width, scene.height],
  )

  # General video QA MCQ: count the objects, or name a colour.
  if rng.random() < 0.5:
    correct, wrong = str(len(tracks)), [str(n) for n in range(1, 6) if n != len(tracks)]
    question = "How many objects appear in the video?"
    subjects = tracks
  else:
    track = pick()
    correct = track.colour
    wrong = [c for c in COLOURS if c != track.colour]
    question = f"Which colour is the {track.shape}?"
    subjects = [track]
  options, letter = _options(rng, correct, wrong)
  seen = " ".join(f"I see the {_middle_claim(scene, t, shown)}." for t in tracks)
  add(
    "General video QA MCQ",
    "mcq",
    f"{question}\nOptions:\n{options}",
    f"{seen} So the answer is {correct}, which is option {letter}.",
    letter,
    letter,
    video_path=video,
  )
  rated.append((f"{question}\nOptions:\n{options}", subjects))

  # General video QA Free-form: direction of motion.
  track = pick()
  answer = f"The {track.name} moves {track.direction()}."
  seen = _seen(scene, track, shown)
  # First, middle and last: the path, in a completion that fits the tiny configs' 192 tokens.
  seen = [seen[i] for i in sorted({0, len(seen) // 2, len(seen) - 1})] if seen else []
  claims = _seen_claims(scene, track, seen) or [_claim(scene, track, _middle(scene, track))]
  reasoning = f"I see the {', then the '.join(claims)}. So it moves {track.direction()}."
  add(
    "General video QA Free-form",
    "free",
    f"In which direction does the {track.name} move?",
    reasoning,
    answer,
    answer,
    video_path=video,
  )

  # Relevance ratings of evidence crops for one of the MCQ questions (SFT only), one crop
  # per prompt as the per-crop rating of test-time scaling asks them (`rating="per_crop"`;
  # the reference rates all of a response's crops in one prompt): the crop of a box,
  # resized to the frame size.
  question, subjects = rated[int(rng.integers(len(rated)))]
  for k, (crop, rating) in enumerate(rating_crops(scene, subjects, rng)):
    path = _save_png(crop, out_dir, f"crops/{scene.vid}_{k}.png")
    sft.append(
      dict(
        id=f"{scene.vid}-rate{k}-sft",
        task=grammar.RELEVANCE_RATING,
        source="synthetic",
        question=question,
        answer=str(rating),
        image_path=path,
        image_size=[scene.width, scene.height],
      )
    )
  return sft, rl


def _first_last(scene: Scene, track: Track, shown: list[tuple[int, float]]) -> str:
  """A sentence claiming the track on the first and last shown frames inside its span
  (empty when no label falls inside it)."""
  seen = _seen(scene, track, shown, within_span=True)
  if not seen:
    return ""
  claims = _seen_claims(scene, track, [seen[0]] if len(seen) == 1 else [seen[0], seen[-1]])
  return " It is seen as the " + " and then as the ".join(claims) + "."


def _middle_claim(scene: Scene, track: Track, shown: list[tuple[int, float]]) -> str:
  """The track claimed on the shown frame nearest the middle of its span."""
  seen = _seen(scene, track, shown)
  if not seen:  # sampled too sparsely to catch it: its own middle frame
    return _claim(scene, track, _middle(scene, track))
  middle = (track.first + track.last) / 2
  return _seen_claims(scene, track, [min(seen, key=lambda ft: abs(ft[0] - middle))])[0]


def _overlap(a: list[float], b: list[float]) -> tuple[float, float, float]:
  """IoU of boxes a and b, and the fractions of a's and of b's area that they share."""
  w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter, area = w * h, lambda x: (x[2] - x[0]) * (x[3] - x[1])
  return inter / (area(a) + area(b) - inter), inter / area(a), inter / area(b)


def relevance(crop_box: list[float], subject_boxes: list[list[int]]) -> int:
  """2 if the crop frames a subject of the question (IoU >= 0.5); 1 if it holds a fifth
  or more of one, or is half filled by one; else 0."""
  best = 0
  for box in subject_boxes:
    iou, of_crop, of_subject = _overlap(crop_box, box)
    best = max(best, 2 if iou >= 0.5 else 1 if of_subject >= 0.2 or of_crop >= 0.5 else 0)
  return best


def rating_crops(
  scene: Scene, subjects: list[Track], rng: np.random.Generator
) -> list[tuple[np.ndarray, int]]:
  """Three rated crops from a frame where a subject is visible: its box (jittered), the
  box moved by about half its size along x or y, and another object's box or a patch of
  background. Each crop is rated by `relevance`, not by how it was made."""
  track = subjects[int(rng.integers(len(subjects)))]
  frame = _middle(scene, track)
  image, boxes = scene.render(frame)
  subject_boxes = [boxes[t.name] for t in subjects if t.name in boxes]
  box = boxes[track.name]
  size = np.array([box[2] - box[0], box[3] - box[1]] * 2, float)
  jitter = lambda b, f: list(np.asarray(b, float) + rng.uniform(-f, f, 4) * size)  # noqa: E731
  shift = np.zeros(2)
  shift[int(rng.integers(2))] = rng.choice([-1.0, 1.0]) * rng.uniform(0.35, 0.6)  # along x or y
  candidates = [jitter(box, 0.1), list(np.asarray(box, float) + np.tile(shift, 2) * size)]
  others = [b for name, b in boxes.items() if b not in subject_boxes]
  if others and rng.random() < 0.5:
    candidates.append(jitter(others[int(rng.integers(len(others)))], 0.1))
  else:
    side = rng.uniform(0.15, 0.35, 2) * (scene.width, scene.height)
    x, y = rng.uniform(0, scene.width - side[0]), rng.uniform(0, scene.height - side[1])
    candidates.append([x, y, x + side[0], y + side[1]])
  out = []
  for cand in candidates:
    clamped = [min(max(v, 0.0), lim) for v, lim in zip(cand, (scene.width, scene.height) * 2)]
    crop = evidence.crop_box(image, clamped)
    if crop is not None:
      out.append((crop, relevance(clamped, subject_boxes)))
  return out


def vstar_item(scene: Scene, rng: np.random.Generator) -> dict:
  """One V-STaR sample: what / when / where about one object of a held-out video."""
  track = scene.tracks[int(rng.integers(len(scene.tracks)))]
  s, e = _span(track, scene)
  bboxes = []
  for second in range(math.ceil(s), math.floor(e) + 1):
    frame = second * scene.fps
    x1, y1, x2, y2 = scene.box(track, frame)
    bboxes.append(dict(timestamp=second, frame_index=frame, xmin=x1, ymin=y1, xmax=x2, ymax=y2))
  return dict(
    vid=scene.vid,
    domain="synthetic",
    video_path=f"videos/{scene.vid}.mp4",
    fps=float(scene.fps),
    width=scene.width,
    height=scene.height,
    frame_count=scene.num_frames,
    question=f"What colour is the {track.shape}?",
    answer=f"The {track.shape} is {track.colour}.",
    timestamps=[s, e],
    bboxes=bboxes,
    temporal_question=f"When does the {track.name} appear in the video?",
    spatial_question=f"Where is the {track.name}?",
    spatial_question_2=f"Where is the {track.name} while it moves {track.direction()}?",
  )


def synthesize(
  out_dir: str,
  videos: int,
  seed: int,
  vstar_videos: int | None = None,
  width: int = 112,
  height: int = 84,
  fps: int = 8,
  progress: bool = True,
  sampling: ProcessingConfig = TINY,
) -> dict[str, int]:
  """Writes the dataset; returns the number of videos and records written."""
  if width % 2 or height % 2 or min(width, height) < 32:
    raise ValueError(f"video size must be even and at least 32 pixels, got {width}x{height}")
  if fps < 2 or fps % 2:
    raise ValueError(f"fps must be an even number >= 2, got {fps}")
  vstar_videos = max(1, videos // 4) if vstar_videos is None else vstar_videos
  os.makedirs(out_dir, exist_ok=True)
  sft, rl, vstar = [], [], []
  jobs = [("v", i) for i in range(videos)] + [("h", i) for i in range(vstar_videos)]
  for prefix, i in tqdm(jobs, desc="synthetic videos", disable=not progress):
    rng = scene_rng(seed, prefix, i)
    scene = make_scene(f"{prefix}{i:04d}", rng, width, height, fps)
    write_video(scene, os.path.join(out_dir, "videos", f"{scene.vid}.mp4"))
    if prefix == "v":
      s, r = scene_records(scene, rng, out_dir, sampling)
      sft += s
      rl += r
    else:
      vstar.append(vstar_item(scene, rng))
  for name, data in (("STGR-SFT.json", sft), ("STGR-RL.json", rl), ("vstar.json", vstar)):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
      json.dump(data, f, indent=1)
  return {
    "videos": videos + vstar_videos,
    "sft_records": len(sft),
    "rl_records": len(rl),
    "vstar_items": len(vstar),
  }
