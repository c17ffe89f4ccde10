"""`o3jax infer` and the evidence drawings (o3jax/viz.py)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from o3jax import infer, viz
from o3jax.eval import generate as G
from data_fixtures import SHOWN_FRAME_CLAIM_TASKS, tiny_processing
from test_eval_generate import make_tiny_model_dirs

RED = viz.PALETTE[0]


def _frames(n=3, h=20, w=30):
  return np.zeros((n, h, w, 3), np.uint8)


@pytest.mark.parametrize(
  "box,scale,expected",
  [
    ((2, 3, 12, 9), 1, (2, 3, 11, 8)),
    ((2, 3, 12, 9), 2, (4, 6, 23, 17)),
    ((12, 9, 2, 3), 1, (2, 3, 11, 8)),  # corners in the other order
    ((-5, -5, 40, 40), 1, (0, 0, 29, 19)),  # clipped to the 30x20 frame
    (
      (2.4, 3.6, 11.5, 8.2),
      2,
      (5, 7, 22, 15),
    ),  # round(4.8)=5, round(7.2)=7, round(23)-1, round(16.4)-1
    ((31, 0, 40, 5), 1, None),
    ((5, 5, 5, 9), 1, None),
  ],
)
def test_box_on_panel(box, scale, expected):
  assert viz.box_on_panel(box, scale, (30 * scale, 20 * scale)) == expected


def test_draw_evidence_outlines_the_box_pixels():
  frame = _frames(1)[0]
  e = viz.Evidence("red square", (2, 3, 12, 9), 1.0)
  image = np.asarray(viz.draw_evidence(frame, [e], 2, {"red square": RED}, line_width=1))
  assert image.shape == (40, 60, 3)
  # outline of (4, 6)-(23, 17) on the 2x frame; the label sits below the box (no room above)
  for x, y in ((4, 6), (4, 12), (23, 10), (10, 6), (23, 6)):
    assert tuple(image[y, x]) == RED, (x, y)
  for x, y in ((5, 7), (12, 12), (22, 16), (3, 6), (24, 10), (10, 5)):
    assert tuple(image[y, x]) == (0, 0, 0), (x, y)
  assert (image[18:, 4:] == RED).all(-1).any()  # the label background, under the box


def test_assign_frames_and_sheet_layout(tmp_path):
  times = (0.0, 1.0, 2.0)
  evidence = [
    viz.Evidence("a", (0, 0, 5, 5), 1.9),
    viz.Evidence("b", (1, 1, 4, 4), 0.4),
    viz.Evidence("a", (2, 2, 6, 6), 2.2),
    viz.Evidence("c", (0, 0, 3, 3), 0.5),
  ]
  on = viz.assign_frames(times, evidence)
  assert list(on) == [0, 2] and on[0] == [evidence[1], evidence[3]]  # 0.5: the earlier on a tie
  assert viz.colours(evidence) == {"a": viz.PALETTE[0], "b": viz.PALETTE[1], "c": viz.PALETTE[2]}
  sheet = viz.evidence_sheet(_frames(), times, evidence, title="Q", min_width=60)
  pw, ph = 60, 40 + viz.CAPTION_HEIGHT  # scale 2, one caption line under each panel
  assert sheet.size == (2 * pw + 3 * 4, viz.CAPTION_HEIGHT + 4 + ph + 2 * 4)
  empty = viz.evidence_sheet(_frames(), times, [], min_width=60)
  assert empty.size == (pw + 8, ph + 8)
  viz.evidence_gif(_frames(), times, evidence, str(tmp_path / "e.gif"), min_width=60)
  with Image.open(tmp_path / "e.gif") as gif:
    assert gif.n_frames == 3 and gif.size == (pw, ph)


GROUNDED = (
  "<think>The <obj>red square</obj><box>[0,0,10,10]</box><box>[5,5,20,15]</box>at"
  "<t>0.9</t>s moves; the <obj>blue circle</obj><box>[bad]</box>at<t>1</t>s is "
  "dropped; the <obj>cyan triangle</obj><box>[1,2,3]</box>at<t>2.0</t>s has no box."
  "</think>\n<answer>The square is red.</answer>"
)


def test_evidence_of_an_unclosed_think_block():
  # The demo's tiny model can write claims and then "</answer>" without closing <think>:
  # the claims are still its evidence (the rewards, which need a closed block, give 0).
  text = (
    "<think>The <obj>white triangle</obj><box>[26,23,41,41]</box>at<t>3.0</t>s is here. "
    "Later <obj>it</obj><box>[40,20,52,43]</box>at<t>4.5</t>s.</answer>"
  )
  assert infer.read_evidence(text) == [
    viz.Evidence("white triangle", (26.0, 23.0, 41.0, 41.0), 3.0),
    viz.Evidence("it", (40.0, 20.0, 52.0, 43.0), 4.5),
  ]
  assert infer.read_evidence(GROUNDED + " <obj>x</obj><box>[1,1,2,2]</box>at<t>9</t>s") == (
    infer.read_evidence(GROUNDED)
  )  # past a closed think block nothing counts


def test_read_evidence_table_and_outputs(tmp_path):
  result = infer.read_inference("Which colour?", GROUNDED)
  assert result.answer == "The square is red."
  assert result.evidence == [
    viz.Evidence("red square", (0.0, 0.0, 10.0, 10.0), 0.9),
    viz.Evidence("red square", (5.0, 5.0, 20.0, 15.0), 0.9),
  ]
  frames = _frames()
  frames[1, 0:10, 0:10] = (220, 40, 40)
  video = G.Video("v.mp4", None, frames, (0.0, 1.0, 2.0), 3.0, (30, 20))
  table = infer.evidence_table(result, video).splitlines()
  assert table[0].split() == [
    "object",
    "box",
    "(px",
    "of",
    "the",
    "30x20",
    "frame)",
    "time",
    "drawn",
    "on",
  ]
  assert table[2].split() == ["red", "square", "[0,0,10,10]", "0.9s", "frame", "2", "(1s)"]
  assert table[3].split() == ["red", "square", "[5,5,20,15]", "0.9s", "frame", "2", "(1s)"]
  paths = infer.write_outputs(result, video, str(tmp_path / "out"), gif=True)
  report = json.loads(open(paths["json"]).read())
  assert report["evidence"][1] == {
    "object": "red square",
    "box": [5.0, 5.0, 20.0, 15.0],
    "time": 0.9,
    "frame": 2,
  }
  sheet = np.asarray(Image.open(paths["png"]).convert("RGB"))
  scale = viz.scale_for(30, 320)  # 11: one panel of 330 x 220 under the title line
  top, left = viz.CAPTION_HEIGHT + 4 + 4, 4
  # box 2 is outlined from x = 55 (5 px wide) on the frame's square, left alone inside box 1
  assert tuple(sheet[top + 100, left + 57]) == RED
  assert tuple(sheet[top + 30, left + 30]) == (220, 40, 40)
  assert os.path.exists(paths["gif"])
  none = infer.read_inference("q", "<answer>A</answer>")
  assert "no grounded evidence" in infer.evidence_table(none, video)


def test_a_model_that_writes_its_training_targets_draws_boxes_on_the_shapes(synthetic_data):
  """The coordinate chain of the evidence picture: the SFT targets of synthetic video
  questions (boxes on shown frames), read back as completions, put the boxes on the
  frames they are drawn on around the named shapes (`scenes.box_on_shape`, the check of
  research/eval_grounding.py), unless another shape is drawn over the named one."""
  from o3jax.data.records import load_records, sft_target
  from o3jax.data.scenes import box_on_shape, make_scene
  from o3jax.processing.frames import shown_frames

  processing = tiny_processing()
  checked = 0
  for record in load_records(os.path.join(synthetic_data, "STGR-SFT.json")):
    if record["task"] not in SHOWN_FRAME_CLAIM_TASKS:
      continue
    # The scene of the video (seed 0, the fixture's), to know which shapes overlap.
    index = int(record["video_path"][len("videos/v") : -len(".mp4")])
    scene = make_scene(f"v{index:04d}", np.random.default_rng([0, 0, index]), 112, 84, 8)
    shown = shown_frames(scene.num_frames, scene.fps, processing)
    video = G.load_video(os.path.join(synthetic_data, record["video_path"]), processing)
    result = infer.read_inference(record["question"], sft_target(record, video.frame_size))
    assert result.evidence or record["task"] != "General video QA Free-form"
    for i, items in viz.assign_frames(video.frame_times, result.evidence).items():
      for e in items:
        frame = shown[i][0]
        [track] = [t for t in scene.tracks if t.name == e.name]
        later = scene.tracks[scene.tracks.index(track) + 1 :]
        mask = track.mask(frame, scene.height, scene.width)
        if any(
          (mask & t.mask(frame, scene.height, scene.width)).any() for t in later if t.visible(frame)
        ):
          continue  # partly hidden behind a shape drawn over it
        assert box_on_shape(video.frames[i], e.name, e.box), (record["id"], e)
        checked += 1
  assert checked >= 20


def test_infer_cli_end_to_end(tmp_path, synthetic_data, capsys):
  hf_dir, o3_dir, _ = make_tiny_model_dirs(str(tmp_path))
  from o3jax.cli import main

  video = os.path.join(synthetic_data, "videos", "v0000.mp4")
  out = tmp_path / "infer"
  assert (
    main(
      [
        "infer",
        "--model",
        o3_dir,
        "--video",
        video,
        "--question",
        "What moves?",
        "--processing",
        "tiny",
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  report = json.loads((out / "answer.json").read_text())
  assert report["frame_size"] == [84, 56] and report["video"] == video
  assert report["evidence"] == [
    {"object": e.name, "box": list(e.box), "time": e.time, "frame": report["evidence"][i]["frame"]}
    for i, e in enumerate(infer.read_evidence(report["completion"]))
  ]
  assert Image.open(out / "evidence.png").size[0] > 0
  printed = capsys.readouterr().out
  assert "completion:" in printed and "written:" in printed
  with pytest.raises(SystemExit, match="missing video"):
    main(["infer", "--model", o3_dir, "--video", str(tmp_path / "none.mp4"), "--question", "q"])
  with pytest.raises(SystemExit, match="not a model directory"):
    main(
      [
        "infer",
        "--model",
        str(tmp_path),
        "--video",
        video,
        "--question",
        "q",
        "--processing",
        "tiny",
      ]
    )


def test_a_workdir_is_asked_as_it_was_trained(tmp_path, synthetic_data, capsys):
  """inference.json gives processing, prompt stage and answer length; flags override it;
  convert carries it; `infer` with no other flag shows the recorded (tiny) frames."""
  from o3jax import workdir
  from o3jax.cli import main
  from o3jax.convert import safetensors_io
  from o3jax.processing.config import TINY, ProcessingConfig

  hf_dir, o3_dir, hf = make_tiny_model_dirs(str(tmp_path))
  assert G.ask_settings(hf_dir) == G.AskSettings(ProcessingConfig(), "rl", 512, "default")
  workdir.write_inference_settings(o3_dir, workdir.InferenceSettings(TINY, "sft", 8))
  asked = G.ask_settings(o3_dir)
  assert (asked.processing, asked.prompt_stage, asked.max_new_tokens) == (TINY, "sft", 8)
  flags = G.ask_settings(o3_dir, "reference", "video", "rl", 16)
  assert flags.processing == ProcessingConfig(presentation="video")
  assert (flags.prompt_stage, flags.max_new_tokens) == ("rl", 16)

  back = str(tmp_path / "back")
  assert main(["convert", "--to", "hf", "--src", o3_dir, "--dst", back]) == 0
  assert G.ask_settings(back).processing == TINY
  tensors = dict(safetensors_io.iter_tensors(os.path.join(back, "model.safetensors")))
  n_params = sum(p.numel() for p in hf.parameters())  # transformers' own count
  printed = capsys.readouterr().out.strip()
  assert printed.startswith(f"o3jax convert: wrote a Hugging Face model to {back} (")
  assert f"({len(tensors)} tensors, {n_params:,} parameters, " in printed

  out = tmp_path / "infer"
  video = os.path.join(synthetic_data, "videos", "v0000.mp4")
  argv = ["infer", "--model", o3_dir, "--video", video, "--question", "q", "--out", str(out)]
  assert main(argv) == 0
  report = json.loads((out / "answer.json").read_text())
  assert report["frame_size"] == [84, 56]  # tiny frames; the reference would show 392x280
