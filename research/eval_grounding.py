"""Does a trained model look at its frames? Three held-out measurements of an o3jax workdir.

1. Greedy reward terms (docs/reference.md section 4) on the held-out STGR-RL prompts: all tasks,
   and the spatial ones alone (spatio-temporal QA, visual QA) where thk_spatial and
   ans_viou say whether the boxes sit on the objects.
2. Teacher-forced loss of held-out SFT targets with the real images (and videos), with
   every pixel zeroed, and with the patches shuffled across the batch. A model whose loss does not
   move when its images are gone answers from the text alone, whatever its format.
3. Relevance ratings of held-out evidence crops (the `relevance rating` SFT records),
   asked exactly as test-time scaling asks them: accuracy against the synthetic labels
   and how many ratings were unreadable.
4. Evidence on the shapes: greedy answers to the held-out general video questions (how
   many objects; which way does X move), as `o3jax infer` gives them; each evidence box
   is checked on the frame it is drawn on (the shown frame nearest its time): it sits on
   the shape when it holds at least half of the pixels of the named colour and those
   fill at least a quarter of the box (synthetic objects are one flat colour each); a box
   off its shape may sit on another object instead (the wrong object looked up). Where
   the frame shows the object: the distance from the box's centre to the object's, across
   and up-down, beside that of the object's mean place over the shown frames (a box read
   off the frames pooled); for an object that moves across, a box x nearer than the mean
   place's was read off the named frame.
5. Where the boxes come from: teacher-forced loss of the box-coordinate tokens alone, on
   held-out stills with the text after the image moved K positions later (a model that
   reads positions off a fixed rotary distance between the image and its answer loses
   them), and on held-out videos with the frames in reverse order (a model that binds a
   box to the frame at its time loses it; one that pools all frames does not), each
   beside the same tokens with another record's pixels.
6. Where the box digits look: on the held-out general video questions, teacher forced, the
   attention of each box digit's query (the token before it) on the vision tokens, on the
   claimed frame's, on the tokens that hold the named object (any frame) and on those that
   hold it on the claimed frame; per decoder layer, for the head that looks most at the
   last; beside what an even spread over the vision tokens would give.
7. Whether the place is there to be read: ridge fits (70% of the videos) from the hidden
   state of the token that holds an object's centre to that centre (R^2 of x and y on the
   other 30%) and to which of the frame's tokens it is (accuracy), at the vision tower's
   output and after each decoder layer.
8. Frame binding, with --listings DIR (`python -m research.listings` over held-out videos):
   teacher forced on the "halves" listings, how often the model's choice is right (of
   left / right for a visible object, of "not" / left / right for a hidden one, of
   up / down) with the video's own frames, with them in reverse order (a model that reads
   each line off the named frame follows the reversed frame) and with another video's;
   and greedy answers to the "named" listings (Where is the X in frames a, b, c?), their
   boxes checked as in 4, with how many of the named frames that show the object got a
   box and how many claims repeat a time already claimed.

  python -m research.eval_grounding --workdir runs/long --config research/configs/tiny_synthetic_long.py \
      --heldout runs/heldout [--batches 10] [--crops 120] [--questions 40] [--readout 30] [--probe 30]
      [--listings runs/heldout-listings --listed 40]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from o3jax import grammar
from o3jax.data import scenes
from o3jax.data.encode import Example, encode_record
from o3jax.data.records import load_records
from o3jax.eval.generate import Decoding, Video, load_video, loaded_model
from o3jax.eval.mcq_run import crop_rater
from o3jax.eval.tts import parse_rating
from o3jax.grammar import is_number
from o3jax.infer import answer_video
from o3jax.models.attention import Mask
from o3jax.models.layers import apply_rotary, layer_at
from o3jax.models.qwen2_5_vl import prepare_inputs
from o3jax.models.text import mrope_cos_sin
from o3jax.processing.evidence import nearest_frame
from o3jax.rewards.claims import find_claims
from o3jax.train.batch import model_batch
from o3jax.train.config import load_config
from o3jax.train.evaluate import evaluate_rewards
from o3jax.train.loss import sft_loss
from o3jax.train.run import processing_config, restore, setup_run
from o3jax.train.sft import data_iterator
from research import listings

SPATIAL = (grammar.SPATIO_TEMPORAL, "visual QA")
GENERAL = ("General video QA MCQ", "General video QA Free-form")


def reward_terms(cfg, run, heldout: str, batches: int, max_new_tokens: int) -> dict:
  out = {
    "all tasks": evaluate_rewards(
      cfg.replace(tasks=()),
      run.graphdef,
      run.state.params,
      run.model_config,
      run.tokenizer,
      heldout,
      batches,
      max_new_tokens,
    )
  }
  spatial = cfg.replace(tasks=SPATIAL)
  out["spatial tasks"] = evaluate_rewards(
    spatial,
    run.graphdef,
    run.state.params,
    run.model_config,
    run.tokenizer,
    heldout,
    batches,
    max_new_tokens,
  )
  return {
    k: {t: round(float(v), 3) for t, v in terms.items() if np.isfinite(v)}
    for k, terms in out.items()
  }


def image_sensitivity(cfg, loaded, heldout: str, batches: int) -> dict:
  """Mean teacher-forced loss over `batches` held-out SFT batches, three ways."""
  model = loaded.model
  data = data_iterator(
    cfg.replace(seed=0, tasks=()),
    heldout,
    loaded.tokenizer,
    "sft",
    "STGR-SFT.json",
    shuffle=False,
    num_epochs=1,
  )
  rng = np.random.default_rng(0)
  sums = collections.defaultdict(float)
  count = 0.0

  @jax.jit
  def loss(mb):
    return sft_loss(model, mb)[0]

  for _, batch in zip(range(batches), data):
    mb = {
      k: jax.tree.map(lambda x: x[0], v) for k, v in model_batch(loaded.config, batch, 1).items()
    }
    pixels = [k for k in ("pixel_values", "pixel_values_videos") if k in mb]
    variants = {
      "images": mb,
      "images zeroed": dict(mb, **{k: np.zeros_like(mb[k]) for k in pixels}),
      "patches shuffled": dict(mb, **{k: rng.permutation(mb[k]) for k in pixels}),
    }
    for name, inputs in variants.items():
      total, n = loss(inputs)
      sums[name] += float(total)
    count += float(n)
  return {name: round(total / count, 4) for name, total in sums.items()}


def rating_accuracy(loaded, cfg, heldout: str, limit: int) -> dict:
  records = [
    r
    for r in load_records(os.path.join(heldout, "STGR-SFT.json"))
    if r.get("task") == grammar.RELEVANCE_RATING
  ][:limit]
  if not records:
    return {"crops": 0}
  crops = [
    np.asarray(Image.open(os.path.join(heldout, r["image_path"])).convert("RGB")) for r in records
  ]
  rate = crop_rater(loaded, processing_config(cfg), jax.random.key(0), 16)
  got = [parse_rating(t) for t in rate(crops, [r["question"] for r in records])]
  gold = [int(r["answer"]) for r in records]
  confusion = collections.Counter(f"gold {g} -> {p}" for g, p in zip(gold, got))
  return {
    "crops": len(records),
    "accuracy": round(float(np.mean([g == p for g, p in zip(gold, got)])), 3),
    "unreadable": sum(p == -1 for p in got),
    "confusion": dict(sorted(confusion.items())),
  }


def colour_centre(frame: np.ndarray, name: str) -> np.ndarray | None:
  """(x, y) in px: the centre of the extent of the named colour's pixels; None where absent."""
  mask = scenes.colour_mask(frame, name)
  if mask is None or not mask.any():
    return None
  ys, xs = np.nonzero(mask)
  return np.array([(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2])


def object_centres(frames: np.ndarray, name: str) -> list[np.ndarray | None]:
  """The named object's `colour_centre` on each frame: its path, found once per object."""
  return [colour_centre(frame, name) for frame in frames]


def centre_error(centres: list[np.ndarray | None], i: int, box) -> dict | None:
  """How far (|dx|, |dy| px) a box's centre lies from the object's on frame i (centres: its
  `object_centres`); the same for the object's mean centre over the frames that show it
  (what a box read off all frames pooled would give); and whether the object travels
  further across than up and down. None where frame i does not show the object or the box
  is not four numbers."""
  here = centres[i]
  if here is None or len(box) != 4 or not all(map(is_number, box)):
    return None
  seen = np.array([c for c in centres if c is not None])
  centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
  return {
    "box": np.abs(centre - here),
    "pooled": np.abs(seen.mean(0) - here),
    "across": bool(np.ptp(seen[:, 0]) >= np.ptp(seen[:, 1])),
  }


def key_frames_boxed(record: dict, times: list) -> tuple[int, int, int]:
  """(key frames of the record, those with a claim at their time (within 0.05 s), claims
  at a time claimed before). A named listing's key frames are the named frames that show
  the object, at their labels: an answer can put every box on a shape by leaving out the
  hard frames or repeating an easy one, which these counts show."""
  times = [round(float(t), 2) for t in times if is_number(t)]
  keys = [float(kf["time"]) for kf in record.get("key_frames") or []]
  return (
    len(keys),
    sum(any(abs(t - k) < 0.05 for t in times) for k in keys),
    len(times) - len(set(times)),
  )


def on_another_object(frame: np.ndarray, name: str, box) -> bool:
  """Whether a box sits (as in `scenes.box_on_shape`) on an object of another colour than the
  named one's: the model looked at the right place for the wrong object."""
  named = name.split()[0] if name.split() else None
  return any(
    scenes.box_on_shape(frame, colour, box) for colour in scenes.COLOURS if colour != named
  )


def centre_error_summary(errors: list[dict]) -> dict:
  """Median |dx| and |dy| of the boxes against the pooled guess, by the way the object moves."""
  out = {}
  for way, across in (("moves across", True), ("moves up or down", False)):
    group = [e for e in errors if e["across"] == across]
    if group:
      box, pooled = (np.median([e[k] for e in group], axis=0) for k in ("box", "pooled"))
      out[f"{way} ({len(group)} boxes)"] = (
        f"x {box[0]:.1f} / {pooled[0]:.1f}, y {box[1]:.1f} / {pooled[1]:.1f}"
      )
  return out


def evidence_on_shapes(
  loaded,
  cfg,
  heldout: str,
  limit: int,
  max_new_tokens: int,
  select=lambda record: record.get("task") in GENERAL,
) -> dict:
  processing = processing_config(cfg)
  stage = processing.prompt_stage("rl")
  records = [r for r in load_records(os.path.join(heldout, "STGR-RL.json")) if select(r)][:limit]
  hits_by_question = collections.defaultdict(list)  # first words of the question -> box verdicts
  errors = []
  all_on = elsewhere = 0
  coverage = np.zeros(3, int)  # named listings: key frames, of them boxed, repeated claims
  for record in records:
    video = load_video(os.path.join(heldout, record["video_path"]), processing)
    result = answer_video(
      loaded,
      video,
      record["question"],
      task=record["task"],
      stage=stage,
      decoding=Decoding(max_new_tokens=max_new_tokens, greedy=True),
    )
    hits, paths = [], {}  # paths: name -> object_centres, shared by the object's boxes
    for e in result.evidence:
      if is_number(e.time):
        i = nearest_frame(video.frame_times, e.time)
        hits.append(scenes.box_on_shape(video.frames[i], e.name, e.box))
        elsewhere += not hits[-1] and on_another_object(video.frames[i], e.name, e.box)
        if e.name not in paths:
          paths[e.name] = object_centres(video.frames, e.name)
        errors.append(centre_error(paths[e.name], i, e.box))
    all_on += bool(hits) and all(hits)
    if listings.kind_of(record) == "named":
      coverage += key_frames_boxed(record, [e.time for e in result.evidence])
    hits_by_question[" ".join(record["question"].split()[:3])] += hits
  every = [h for hits in hits_by_question.values() for h in hits]
  return {
    "questions": len(records),
    "evidence boxes": len(every),
    "boxes on the named shape": round(sum(every) / max(len(every), 1), 3),
    "answers with every box on its shape": round(all_on / max(len(records), 1), 3),
    "boxes on another object instead": elsewhere,
    **(
      {"named frames that show the object, boxed, repeated claims": coverage.tolist()}
      if coverage[0]
      else {}
    ),
    "on the shape, by question": {
      k: f"{sum(h)} of {len(h)}" for k, h in sorted(hits_by_question.items())
    },
    "centre error (median px), box / the object's mean place": centre_error_summary(
      [e for e in errors if e is not None]
    ),
  }


def box_token_groups(tokenizer, input_ids: np.ndarray, start: int) -> tuple[str, list[np.ndarray]]:
  """The text of the tokens from `start` on, and for each `<box>[...]</box>` in it, in order,
  the indices of its tokens that hold digits."""
  pieces = [tokenizer.decode([int(i)]) for i in input_ids[start:]]
  ends = np.cumsum([len(p) for p in pieces])
  text = "".join(pieces)
  spans = [m.span(1) for m in grammar.BOX_PATTERN.finditer(text)]
  return text, [
    np.array(
      [
        start + k
        for k, (piece, end) in enumerate(zip(pieces, ends))
        if any(c.isdigit() for c in piece) and a < end and end - len(piece) < b
      ],
      np.int64,
    )
    for a, b in spans
  ]


def box_token_positions(tokenizer, input_ids: np.ndarray, start: int) -> np.ndarray:
  """Indices (from `start`) of the tokens inside `<box>[...]</box>` that hold digits."""
  _, groups = box_token_groups(tokenizer, input_ids, start)
  return np.concatenate(groups) if groups else np.zeros(0, np.int64)


def teacher_forced_logits(model, example, prepared, pixel_values, position_ids=None) -> jax.Array:
  """[T, V] logits of an encoded example under other pixels (and positions) than its own."""
  return model(
    example.input_ids[None],
    pixel_values=jnp.asarray(pixel_values),
    image_grid_thw=example.image_grid_thw,
    image_layout=prepared["image_layout"],
    position_ids=prepared["position_ids"] if position_ids is None else position_ids,
  )[0]


def frames_reversed(example) -> np.ndarray:
  """The pixels of an example whose images are frames of one size, in reverse order."""
  frames = example.pixel_values.reshape(
    len(example.image_grid_thw), -1, example.pixel_values.shape[-1]
  )
  return frames[::-1].reshape(example.pixel_values.shape)


def another_example(examples: list, j: int, allowed=lambda k: True):
  """The next example after j (wrapping round) with the same image grids, whose index passes
  `allowed`: its pixels fit j's positions and vision layout. None if there is none."""
  order = list(range(j + 1, len(examples))) + list(range(j))
  return next(
    (
      examples[k]
      for k in order
      if np.array_equal(examples[k].image_grid_thw, examples[j].image_grid_thw) and allowed(k)
    ),
    None,
  )


def box_readout(loaded, cfg, heldout: str, limit: int, shifts=(5, 20)) -> dict:
  """Mean teacher-forced loss of the box tokens of `limit` held-out stills and videos."""
  model, tokenizer = loaded.model, loaded.tokenizer
  processing = processing_config(cfg)
  records = load_records(os.path.join(heldout, "STGR-SFT.json"))

  def box_loss(example, positions, pixel_values, prepared, position_ids=None):
    logits = teacher_forced_logits(model, example, prepared, pixel_values, position_ids)
    logp = jax.nn.log_softmax(logits[positions - 1].astype(jnp.float32))
    return float(
      -jnp.take_along_axis(logp, jnp.asarray(example.input_ids[positions, None]), 1).mean()
    )

  out = {}
  for kind, tasks in (
    ("stills", ("visual QA",)),
    ("videos", GENERAL + (grammar.SPATIO_TEMPORAL, "temporal QA")),
  ):
    examples = [
      encode_record(r, tokenizer=tokenizer, config=processing, stage="sft", root=heldout)
      for r in records
      if r.get("task") in tasks
    ][:limit]
    # Pixels as images of one size: a still, or frames in the frames presentation (reversing
    # the frames of the video presentation would also reorder its temporal patches).
    examples = [
      e
      for e in examples
      if len(e.image_grid_thw) and len({tuple(g) for g in e.image_grid_thw}) == 1
    ]
    losses = collections.defaultdict(list)
    for j, example in enumerate(examples):
      positions = box_token_positions(tokenizer, example.input_ids, example.prompt_length)
      other = another_example(examples, j)
      if not len(positions) or other is None:
        continue
      # Positions and the vision layout depend on the tokens and grids only: once per record.
      prepared = prepare_inputs(
        model.config,
        example.input_ids[None],
        pixel_values=example.pixel_values,
        image_grid_thw=example.image_grid_thw,
      )
      losses["real pixels"].append(box_loss(example, positions, example.pixel_values, prepared))
      losses["another record's pixels"].append(
        box_loss(example, positions, other.pixel_values, prepared)
      )
      if kind == "videos":
        losses["frames reversed"].append(
          box_loss(example, positions, frames_reversed(example), prepared)
        )
      else:
        after = list(example.input_ids).index(model.config.vision_end_token_id) + 1
        for k in shifts:
          moved = np.array(prepared["position_ids"])
          moved[:, :, after:] += k
          losses[f"answer {k} positions later"].append(
            box_loss(example, positions, example.pixel_values, prepared, moved)
          )
    out[kind] = {
      "records": len(losses["real pixels"]),
      **{k: round(float(np.mean(v)), 3) for k, v in losses.items()},
    }
  return out


def decoder_states(
  model, example, prepared
) -> tuple[list[jax.Array], jax.Array, jax.Array, jax.Array]:
  """The input of every decoder layer and the last layer's output ([1, T, D] each, before
  the final norm), with the rotary cos / sin and the causal mask they were computed with."""
  x = model.embed(
    jnp.asarray(example.input_ids[None]),
    jnp.asarray(example.pixel_values),
    prepared["image_layout"],
  )
  cos, sin = mrope_cos_sin(jnp.asarray(prepared["position_ids"]), model.config.text, x.dtype)
  mask = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))[None]
  states = [x]
  for i in range(model.config.text.num_hidden_layers):
    x, _ = layer_at(model.text.layers, i)(x, cos, sin, Mask(causal=True))
    states.append(x)
  return states, cos, sin, mask


def attention_probs(layer, x, cos, sin, mask) -> np.ndarray:
  """[heads, T, S] attention weights of one decoder layer, recomputed from its input x [1, T, D]."""
  attn, h = layer.attn, layer.input_norm(x)

  def project(kernel, bias):
    return apply_rotary(jnp.einsum("BTD,DnH->BTnH", h, kernel[...]) + bias[...], cos, sin)[0]

  q = project(attn.q_kernel, attn.q_bias)
  k = jnp.repeat(
    project(attn.k_kernel, attn.k_bias), attn.groups, axis=1
  )  # query head n reads kv head n // groups
  scores = jnp.einsum("TnH,SnH->nTS", q, k) * q.shape[-1] ** -0.5
  return np.asarray(jax.nn.softmax(jnp.where(mask[0][None], scores, -jnp.inf), axis=-1))


def cells_holding(
  frame: np.ndarray, name: str, grid: tuple[int, int], least: int = 6
) -> np.ndarray:
  """[rows * cols] bool, raster order: the merged-token cells of a frame with at least
  `least` pixels of the named object's colour."""
  mask = scenes.colour_mask(frame, name)
  rows, cols = grid
  if mask is None:
    return np.zeros(rows * cols, bool)
  h, w = mask.shape
  return np.array(
    [
      mask[r * h // rows : (r + 1) * h // rows, c * w // cols : (c + 1) * w // cols].sum() >= least
      for r in range(rows)
      for c in range(cols)
    ]
  )


@dataclasses.dataclass(frozen=True)
class VideoProbe:
  """A held-out general video question, teacher forced, as measurements 6 and 7 read it."""

  example: Example
  video: Video
  image_tokens: np.ndarray  # [frames, tokens per frame]: where each shown frame's tokens sit
  grid: tuple[int, int]  # merged-token rows and columns of a frame
  states: list  # decoder_states: the input of every layer, then the last one's output
  cos: jax.Array
  sin: jax.Array
  mask: jax.Array


def video_probes(
  loaded, cfg, heldout: str, limit: int, one_per_video: bool = False, cache: dict | None = None
):
  """VideoProbes of the first `limit` held-out general video questions (one per video if
  asked) whose images are exactly the shown frames. `cache` (index among those questions ->
  VideoProbe or None) lets measurements over the same records decode, encode and run each once."""
  processing = processing_config(cfg)
  merge = processing.merge_size
  cache = {} if cache is None else cache
  records = [
    r for r in load_records(os.path.join(heldout, "STGR-SFT.json")) if r.get("task") in GENERAL
  ]
  count, videos = 0, set()
  for index, record in enumerate(records):
    if count == limit:
      return
    if one_per_video and record["video_path"] in videos:
      continue
    videos.add(record["video_path"])
    if index not in cache:
      cache[index] = _video_probe(loaded, processing, heldout, record, merge)
    if cache[index] is not None:
      count += 1
      yield cache[index]


def _video_probe(loaded, processing, heldout: str, record: dict, merge: int) -> VideoProbe | None:
  example = encode_record(
    record, tokenizer=loaded.tokenizer, config=processing, stage="sft", root=heldout
  )
  video = load_video(os.path.join(heldout, record["video_path"]), processing)
  if len(example.image_grid_thw) != len(video.frames):
    return None
  image_tokens = np.nonzero(example.input_ids == loaded.config.image_token_id)[0].reshape(
    len(video.frames), -1
  )
  prepared = prepare_inputs(
    loaded.config,
    example.input_ids[None],
    pixel_values=example.pixel_values,
    image_grid_thw=example.image_grid_thw,
  )
  _, h, w = example.image_grid_thw[0]  # frames of one video share their size
  return VideoProbe(
    example,
    video,
    image_tokens,
    (int(h) // merge, int(w) // merge),
    *decoder_states(loaded.model, example, prepared),
  )


def evidence_attention(loaded, probes) -> dict:
  """Where the box digits of held-out video claims look (teacher forced): per decoder layer,
  the attention of the head that looks most at the named object on the claimed frame."""
  model, tokenizer = loaded.model, loaded.tokenizer
  mass = collections.defaultdict(list)  # (layer, token set) -> [heads] per claim
  even = collections.defaultdict(list)  # token set -> its share of the vision tokens
  claims_seen = 0
  for probe in probes:
    example, video = probe.example, probe.video
    target, groups = box_token_groups(tokenizer, example.input_ids, example.prompt_length)
    claims = find_claims(target)
    if len(claims) != len(groups):  # a claim with several boxes: skip the record
      continue
    probs = [
      attention_probs(layer_at(model.text.layers, i), x, probe.cos, probe.sin, probe.mask)
      for i, x in enumerate(probe.states[:-1])
    ]
    vision = example.input_ids == loaded.config.image_token_id
    holds_any = {}  # name -> its token cells over all frames
    for (name, _, time), digits in zip(
      claims, groups
    ):  # the generator's targets: times are numbers
      claimed = np.zeros_like(vision)
      claimed[probe.image_tokens[nearest_frame(video.frame_times, float(time))]] = True
      if name not in holds_any:
        holds_any[name] = np.zeros_like(vision)
        for frame, tokens in zip(video.frames, probe.image_tokens):
          holds_any[name][tokens] = cells_holding(frame, name, probe.grid)
      holds = holds_any[name]
      sets = {
        "vision tokens": vision,
        "the claimed frame": claimed,
        "the object, any frame": holds,
        "the object on the claimed frame": holds & claimed,
      }
      for label, tokens in sets.items():
        even[label].append(tokens.sum() / vision.sum())
        for layer, p in enumerate(probs):
          mass[layer, label].append(
            p[:, digits - 1][:, :, tokens].sum(-1).mean(-1)
          )  # query: the token before a digit
      claims_seen += 1
  out = {
    "claims": claims_seen,
    "spread evenly over the vision tokens": {
      k: round(float(np.mean(v)), 3) for k, v in even.items()
    },
  }
  for layer in range(model.config.text.num_hidden_layers):
    per_head = {label: np.mean(mass[layer, label], axis=0) for label in even}
    head = int(np.argmax(per_head["the object on the claimed frame"]))
    out[f"layer {layer}, head {head}"] = {
      label: round(float(v[head]), 3) for label, v in per_head.items()
    }
  return out


def ridge_predict(train_x, train_y, test_x, lam: float = 1.0) -> np.ndarray:
  """Ridge regression with an intercept, fit on (train_x, train_y), applied to test_x."""
  design = lambda x: np.c_[x, np.ones(len(x))]  # noqa: E731
  a = design(train_x)
  return design(test_x) @ np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ train_y)


def r_squared(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
  """R^2 of each column."""
  return 1 - ((predicted - target) ** 2).sum(0) / ((target - target.mean(0)) ** 2).sum(0)


def place_in_vision_tokens(probes) -> dict:
  """Is an object's place in the frame in the hidden state of the token that holds its centre?
  Ridge fits on 70% of the videos (one probe per video), scored on the rest: R^2 of the
  centre (x, y) and accuracy of the token cell, for the vision tower's output and after each
  decoder layer."""
  features, centres, cells, videos = collections.defaultdict(list), [], [], []
  for v, probe in enumerate(probes):
    states = [np.asarray(x[0]) for x in probe.states]
    rows, cols = probe.grid
    for frame, tokens in zip(probe.video.frames, probe.image_tokens):
      h, w = frame.shape[:2]
      for name in scenes.COLOURS:
        ys, xs = np.nonzero(scenes.colour_mask(frame, name))
        if len(xs) < 12:
          continue
        cell = int(ys.mean() * rows // h) * cols + int(xs.mean() * cols // w)
        for layer, state in enumerate(states):
          features[layer].append(state[tokens[cell]])
        centres.append((xs.mean() / w, ys.mean() / h))
        cells.append(cell)
        videos.append(v)
  if not cells:
    return {"objects": 0}
  centres, cells, videos = np.array(centres), np.array(cells), np.array(videos)
  train, test = videos < np.quantile(videos, 0.7), videos >= np.quantile(videos, 0.7)
  # One fit per layer for both targets: the centre and the one-hot cell.
  targets = np.c_[centres, np.eye(cells.max() + 1)[cells]]
  out = {
    "objects": len(cells),
    "most common cell's share": round(float(np.bincount(cells[test]).max() / test.sum()), 3),
  }
  for layer, f in features.items():
    f = np.array(f)
    f = (f - f[train].mean(0)) / (f[train].std(0) + 1e-6)
    predicted = ridge_predict(f[train], targets[train], f[test])
    r2 = r_squared(predicted[:, :2], centres[test])
    accuracy = float(np.mean(predicted[:, 2:].argmax(1) == cells[test]))
    label = "vision tower output" if layer == 0 else f"after decoder layer {layer - 1}"
    out[label] = {
      "R2 x": round(float(r2[0]), 3),
      "R2 y": round(float(r2[1]), 3),
      "cell accuracy": round(accuracy, 3),
    }
  return out


LISTING_CHOICES = {" is": (" left", " right", " not"), " and": (" up", " down")}


def listing_choices(
  tokenizer, input_ids: np.ndarray, start: int
) -> list[tuple[int, list[int], str]]:
  """The choices of a halves listing from `start` on: (index of the chosen token, the
  candidates' token ids, "left / right" | "not visible" | "up / down"). A word after " is"
  or " and" counts when it is one of the candidates (by their first tokens); a side is
  scored against the other side only, "not" against both sides."""
  first = {
    word: tokenizer.encode(word, add_special_tokens=False).ids[0]
    for words in LISTING_CHOICES.values()
    for word in words
  }
  out = []
  for k in range(max(start, 1), len(input_ids)):
    words = LISTING_CHOICES.get(tokenizer.decode([int(input_ids[k - 1])]))
    candidates = [first[w] for w in words] if words else []
    if len(set(candidates)) == len(candidates) and int(input_ids[k]) in candidates:
      chosen = words[candidates.index(int(input_ids[k]))]
      if words == LISTING_CHOICES[" and"]:
        out.append((k, candidates, "up / down"))
      elif chosen == " not":  # visible or not: "not" against either side
        out.append((k, candidates, "not visible"))
      else:  # which side, of a visible object: the two sides alone
        out.append((k, candidates[:2], "left / right"))
  return out


def frame_binding(loaded, cfg, listings_dir: str, limit: int, max_new_tokens: int) -> dict:
  """Measurement 8: the halves listings teacher forced (own / reversed / another video's
  frames), and the boxes of greedy answers to the named listings."""
  model, tokenizer = loaded.model, loaded.tokenizer
  processing = processing_config(cfg)
  records = [
    r
    for r in load_records(os.path.join(listings_dir, "STGR-SFT.json"))
    if listings.kind_of(r) == "halves"
  ][:limit]
  examples = [
    encode_record(r, tokenizer=tokenizer, config=processing, stage="sft", root=listings_dir)
    for r in records
  ]
  right = collections.defaultdict(list)  # (pixels, category) -> verdicts
  for j, example in enumerate(examples):
    choices = listing_choices(tokenizer, example.input_ids, example.prompt_length)
    prepared = prepare_inputs(
      model.config,
      example.input_ids[None],
      pixel_values=example.pixel_values,
      image_grid_thw=example.image_grid_thw,
    )
    other = another_example(
      examples, j, lambda k: records[k]["video_path"] != records[j]["video_path"]
    )
    pixels = {"own frames": example.pixel_values, "frames reversed": frames_reversed(example)}
    if other is not None:
      pixels["another video's"] = other.pixel_values
    for name, pixel_values in pixels.items():
      logits = np.asarray(teacher_forced_logits(model, example, prepared, pixel_values))
      for k, candidates, category in choices:
        right[(name, category)].append(
          candidates[int(np.argmax(logits[k - 1, candidates]))] == example.input_ids[k]
        )
  teacher_forced = collections.defaultdict(dict)
  for (name, category), verdicts in sorted(right.items()):
    teacher_forced[category][name] = f"{np.mean(verdicts):.3f} of {len(verdicts)}"
  named = evidence_on_shapes(
    loaded,
    cfg,
    listings_dir,
    limit,
    max_new_tokens,
    select=lambda r: listings.kind_of(r) == "named",
  )
  return {
    "halves listings": len(examples),
    "choices right": dict(teacher_forced),
    "named listings": named,
  }


def main() -> None:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--workdir", required=True)
  p.add_argument("--config", required=True, help="the config the workdir was trained with")
  p.add_argument("--heldout", required=True, help="a synthetic set the model was not trained on")
  p.add_argument("--batches", type=int, default=10)
  p.add_argument("--crops", type=int, default=120)
  p.add_argument(
    "--questions", type=int, default=40, help="general video questions for the evidence check"
  )
  p.add_argument(
    "--readout", type=int, default=30, help="stills and videos for the box-token losses"
  )
  p.add_argument(
    "--probe", type=int, default=30, help="videos for the attention and place measurements"
  )
  p.add_argument(
    "--listings", default=None, help="frame listings over held-out videos (measurement 8)"
  )
  p.add_argument(
    "--listed", type=int, default=40, help="halves and named listings for measurement 8"
  )
  p.add_argument("--max-new-tokens", type=int, default=192)
  args = p.parse_args()
  cfg = load_config(args.config)
  run = setup_run(cfg, args.workdir)
  restore(run)
  loaded = loaded_model(nnx.merge(run.graphdef, run.state.params), run.tokenizer)
  probes = {}  # VideoProbes shared by measurements 6 and 7
  report = {
    "reward terms (greedy)": reward_terms(
      cfg, run, args.heldout, args.batches, args.max_new_tokens
    ),
    "teacher-forced loss": image_sensitivity(cfg, loaded, args.heldout, args.batches),
    "relevance ratings": rating_accuracy(loaded, cfg, args.heldout, args.crops),
    "evidence on the shapes": evidence_on_shapes(
      loaded, cfg, args.heldout, args.questions, args.max_new_tokens
    ),
    "box-token loss": box_readout(loaded, cfg, args.heldout, args.readout),
    "where box digits look": evidence_attention(
      loaded, video_probes(loaded, cfg, args.heldout, args.probe, cache=probes)
    ),
    "place in the vision tokens": place_in_vision_tokens(
      video_probes(loaded, cfg, args.heldout, args.probe, one_per_video=True, cache=probes)
    ),
  }
  if args.listings:
    report["frame binding"] = frame_binding(
      loaded, cfg, args.listings, args.listed, args.max_new_tokens
    )
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  main()
