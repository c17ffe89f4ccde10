"""Frame listings: records that teach a model which image a frame label names.

A grounded claim `<obj>X</obj><box>..</box>at<t>T</t>s` is only right if the box is read
off the frame shown at T. The tiny model does not learn that from the six synthetic tasks:
their claims sit on a few frames each, and a box pooled over all frames costs little.
A listing asks about several frames at once, in a random order, so that every line of the
answer depends on one named frame and on no other:

  halves   "Where are the objects in frames 4, 1, 7, ...?" -- every shown frame; for each
           object "the red circle is left and up" or "the red circle is not visible".
  objects  "Where are the objects in frames 4, 1, 7?" -- three frames; each object's claim.
  named    "Where is the red circle in frames 4, 1, 7?" -- three frames, at least two with it.
           A spatio-temporal record whose key frames (without images: not shown) are the
           named frames that show the object, so GSPO's thk_spatial scores its boxes.

`write_listings(synth_dir, out, seed, videos, counts)` rebuilds the scenes of an
`o3jax data synth` directory from its seed (the generator is deterministic), writes the
listing records to out/STGR-SFT.json (and as RL prompts, without the reasoning, to
STGR-RL.json), optionally after the directory's own records, and links its media
directories into out.

  python -m research.listings --synth DIR --seed S --videos N --out DIR2 \
      [--halves 4 --objects 2 --named 4] [--with-records]
"""

import argparse
import json
import os

import numpy as np

from o3jax import grammar
from o3jax.data import scenes, synth
from o3jax.data.records import load_records
from o3jax.processing import frames
from o3jax.processing.config import TINY, ProcessingConfig

KINDS = ("halves", "objects", "named")
TASK = "General video QA Free-form"
MEDIA = ("videos", "images", "keyframes", "crops")


def kind_of(record: dict) -> str | None:
  """The listing kind of a record written here (from its id), None for any other record."""
  parts = record.get("id", "").split("-")
  kind = parts[1].rstrip("0123456789") if len(parts) == 3 else None
  return kind if kind in KINDS else None


def halves_item(scene: scenes.Scene, track: scenes.Track, frame: int) -> str:
  """'the red circle is left and up' (by its box centre) or 'the red circle is not visible'."""
  if not track.visible(frame):
    return f"the {track.name} is not visible"
  x1, y1, x2, y2 = scene.box(track, frame)
  across = "left" if (x1 + x2) / 2 < scene.width / 2 else "right"
  down = "up" if (y1 + y2) / 2 < scene.height / 2 else "down"
  return f"the {track.name} is {across} and {down}"


def claim_item(scene: scenes.Scene, track: scenes.Track, frame: int, label: float) -> str:
  """The track's claim on a shown frame at its label time, or 'the X is not visible'."""
  if not track.visible(frame):
    return f"the {track.name} is not visible"
  return "the " + synth._claim(scene, track, frame, label)


def listing_record(
  scene: scenes.Scene,
  rng: np.random.Generator,
  kind: str,
  index: int,
  sampling: ProcessingConfig = TINY,
) -> dict | None:
  """One SFT record of the kind (None: a named listing of a video whose object is never shown)."""
  if kind not in KINDS:
    raise ValueError(f"listing kind must be one of {KINDS}, got {kind!r}")
  shown = frames.shown_frames(scene.num_frames, scene.fps, sampling)
  common = dict(
    id=f"{scene.vid}-{kind}{index}-sft", source="synthetic", video_path=f"videos/{scene.vid}.mp4"
  )
  if kind == "named":
    track = scene.tracks[int(rng.integers(len(scene.tracks)))]
    on = [k for k, (f, _) in enumerate(shown) if track.visible(f)]
    if not on:
      return None
    # Two frames with the object (one if it is shown once), then any other.
    order = list(
      dict.fromkeys(int(k) for k in [*rng.permutation(on)[:2], *rng.permutation(len(shown))])
    )[:3]
    order = [order[i] for i in rng.permutation(len(order))]
    lines = [f"Frame {k + 1}: {claim_item(scene, track, *shown[k])}." for k in order]
    # The object's boxes on the named frames that show it, at their labels: gold for the RL
    # rewards (thk_spatial), not shown to the model (no key-frame images).
    seen = [shown[k] for k in order if track.visible(shown[k][0])]
    return dict(
      **common,
      task=grammar.SPATIO_TEMPORAL,
      question=f"Where is the {track.name} in frames {', '.join(str(k + 1) for k in order)}?",
      answer=f"The {track.name} is seen in {len(seen)} of the {len(order)} frames.",
      reasoning_process=" ".join(lines),
      key_frames=[{"idx": f, "time": label} for f, label in seen],
      key_items={str(f): {track.name: [scene.normalized_box(track, f)]} for f, _ in seen},
    )
  order = [int(k) for k in rng.permutation(len(shown))]
  if kind == "objects":
    order = order[:3]
  tracks = [scene.tracks[i] for i in rng.permutation(len(scene.tracks))]
  item = (
    (lambda t, f, label: halves_item(scene, t, f))
    if kind == "halves"
    else (lambda t, f, label: claim_item(scene, t, f, label))
  )
  lines = [f"Frame {k + 1}: " + "; ".join(item(t, *shown[k]) for t in tracks) + "." for k in order]
  return dict(
    **common,
    task=TASK,
    question=f"Where are the objects in frames {', '.join(str(k + 1) for k in order)}?",
    answer="Listed above.",
    reasoning_process=" ".join(lines),
  )


def write_listings(
  synth_dir: str,
  out_dir: str,
  seed: int,
  videos: int,
  counts: dict[str, int],
  with_records: bool = False,
  width: int = 112,
  height: int = 84,
  fps: int = 8,
  sampling: ProcessingConfig = TINY,
) -> dict[str, int]:
  """Listing records for training videos v0000.. of a synth directory made with `seed` (and
  the same size and fps); counts: kind -> records per video. Returns counts written."""
  for kind in counts:
    if kind not in KINDS:
      raise ValueError(f"listing kind must be one of {KINDS}, got {kind!r}")
  os.makedirs(out_dir, exist_ok=True)
  records, written = [], dict.fromkeys(counts, 0)
  for i in range(videos):
    vid = f"v{i:04d}"
    if not os.path.exists(os.path.join(synth_dir, "videos", f"{vid}.mp4")):
      raise FileNotFoundError(
        f"{synth_dir}: videos/{vid}.mp4 does not exist (fewer than {videos} videos?)"
      )
    scene = scenes.make_scene(vid, scenes.scene_rng(seed, "v", i), width, height, fps)
    for j, kind in enumerate(KINDS):
      rng = np.random.default_rng(
        [seed, 20 + j, i]
      )  # a stream per kind: counts do not shift each other
      for index in range(counts.get(kind, 0)):
        record = listing_record(scene, rng, kind, index, sampling)
        if record is not None:
          records.append(record)
          written[kind] += 1
  rl = [
    dict(
      {k: v for k, v in r.items() if k not in ("id", "reasoning_process")}, id=r["id"][:-4] + "-rl"
    )
    for r in records
  ]
  if with_records:
    records = load_records(os.path.join(synth_dir, "STGR-SFT.json")) + records
    rl = load_records(os.path.join(synth_dir, "STGR-RL.json")) + rl
  for name, data in (("STGR-SFT.json", records), ("STGR-RL.json", rl)):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
      json.dump(data, f, indent=1)
  for sub in MEDIA:
    source, link = os.path.abspath(os.path.join(synth_dir, sub)), os.path.join(out_dir, sub)
    if os.path.isdir(source) and not os.path.lexists(link):
      os.symlink(source, link)
  return {"records": len(records), **written}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description="frame-listing records for the videos of a synth directory"
  )
  p.add_argument("--synth", required=True, help="directory written by `o3jax data synth`")
  p.add_argument("--seed", type=int, required=True, help="the seed that directory was written with")
  p.add_argument("--videos", type=int, required=True, help="training videos to list (v0000 on)")
  p.add_argument("--out", required=True, help="output directory")
  for kind, default in (("halves", 4), ("objects", 2), ("named", 4)):
    p.add_argument(
      f"--{kind}", type=int, default=default, help=f"{kind} listings per video (default {default})"
    )
  p.add_argument(
    "--with-records", action="store_true", help="put the synth directory's own records first"
  )
  p.add_argument("--width", type=int, default=112)
  p.add_argument("--height", type=int, default=84)
  p.add_argument("--fps", type=int, default=8)
  args = p.parse_args(argv)
  if args.videos < 1:
    raise SystemExit("research.listings: --videos must be at least 1")
  written = write_listings(
    args.synth,
    args.out,
    args.seed,
    args.videos,
    {kind: getattr(args, kind) for kind in KINDS},
    with_records=args.with_records,
    width=args.width,
    height=args.height,
    fps=args.fps,
  )
  print(json.dumps({"out": args.out, **written}))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
