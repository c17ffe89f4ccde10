"""Multiple-choice answers from a model, with confidence-aware test-time scaling (docs/reference.md section 7).

Annotation records (JSON list or JSONL): `question` (the options may be in it), optional
`options` (a list, appended to the question when it does not already hold them),
`answer` (the gold letter; STGR temporal-MCQ answers "B\\n[s, e]" work too), the video
(`video_path`/`video` relative to --videos, or `vid`/`video_id` -> <id>.mp4) and any
category fields. `task` picks the system prompt when it is one of the STGR tasks
(default: General video QA MCQ). From an STGR file (STGR-RL.json) the records of tasks
"General video QA MCQ" and "temporal QA (MCQ)" are taken (STGR_TASKS).

n = 1: one completion per question (greedy unless a temperature is given); the results
record gets `response` (the completion).
n > 1: n sampled completions; each one's letter (mcq.extract_letter) and think block, its
weight and the votes as tts.py says (the reference's joint rating of all of a response's
evidence crops by the same model, or rating="per_crop"); the record gets `responses,
answers, weights, crops, ratings, majority, confidence` and `response` = the letter of the
chosen vote. `scale` is shared with the general benchmarks (bench_run.py).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import jax
import numpy as np

from o3jax import grammar
from o3jax.eval import bench_prompts, mcq, tts
from o3jax.eval.generate import (
  Decoding,
  LoadedModel,
  Query,
  answer_records,
  generate,
  image_query,
)
from o3jax.processing import prompts
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.presentation import joined, present_image

STGR_TASKS = ("General video QA MCQ", "temporal QA (MCQ)")  # the MCQ records of STGR files
DEFAULT_TASK = "General video QA MCQ"
RATING_TOKENS = 8
_LABELLED = re.compile(r"^[A-Z][.:)]\s")


def task_of(record: dict) -> str:
  task = record.get("task")
  return task if task in grammar.TASKS else DEFAULT_TASK


def question_of(record: dict) -> str:
  """The question with its options (when given apart and not already in it)."""
  question = record.get("question")
  if not isinstance(question, str) or not question.strip():
    raise ValueError("field 'question' is missing or empty")
  options = record.get("options") or []
  if not isinstance(options, list):
    raise ValueError(f"field 'options' is not a list: {options!r}")
  texts = [str(o) for o in options]
  if texts and not all(t in question for t in texts):
    lines = [t if _LABELLED.match(t) else f"{chr(ord('A') + i)}. {t}" for i, t in enumerate(texts)]
    question = question + "\nOptions:\n" + "\n".join(lines)
  return question


def gold_letter(record: dict) -> str:
  if "answer" not in record:
    raise ValueError("field 'answer' is missing")
  letter = mcq.extract_letter(str(record["answer"]), record.get("options") or None)
  if letter is None:
    raise ValueError(f"field 'answer' holds no option letter: {record['answer']!r}")
  return letter


def mcq_query(record: dict, video, stage: str) -> Query:
  task = task_of(record)
  return Query(
    prompts.question_text(task, question_of(record), stage),
    video.visual,
    prompts.system_prompt(task, stage),
  )


def crop_rater(loaded: LoadedModel, processing: ProcessingConfig, key: jax.Array, batch_size: int):
  """rate(crops, questions) -> the model's replies (greedy) to the synthetic SFT's one-crop
  rating prompt (prompts.RATING_PROMPT), batch_size crops per call."""

  def rate(crops: Sequence[np.ndarray], questions: Sequence[str]) -> list[str]:
    if not crops:
      return []
    queries = [
      image_query(crop, prompts.question_text(grammar.RELEVANCE_RATING, q, "sft"), processing)
      for crop, q in zip(crops, questions)
    ]
    texts = generate(
      loaded, queries, key, Decoding(max_new_tokens=RATING_TOKENS), batch_size=batch_size
    )
    return [t[0] for t in texts]

  return rate


def rating_query(crops: Sequence[np.ndarray], question: str, processing: ProcessingConfig) -> Query:
  """The reference's rating prompt: its system turn, then the text, then every crop."""
  height, width = crops[0].shape[:2]
  sized = dataclasses.replace(
    processing, image_max_pixels=max(processing.image_max_pixels, height * width)
  )
  return Query(
    bench_prompts.RATING_USER.format(question=question),
    joined([present_image(crop, sized) for crop in crops]),
    bench_prompts.RATING_SYSTEM,
    text_first=True,
  )


def joint_rater(
  loaded: LoadedModel,
  processing: ProcessingConfig,
  key: jax.Array,
  decoding: Decoding,
  batch_size: int,
):
  """rate(crop lists, questions) -> the model's reply to the reference's rating prompt for
  each list, all its crops in one user turn after the text (bench_prompts.RATING_*), decoded
  as the answers were. The crops keep their size (the frame size). At most RATING_TOKENS
  tokens: a reply is read only when it is exactly one digit, so a longer one is unreadable
  either way."""
  decoding = dataclasses.replace(decoding, max_new_tokens=RATING_TOKENS)

  def rate(crop_lists: Sequence[list], questions: Sequence[str]) -> list[str]:
    queries = [rating_query(c, q, processing) for c, q in zip(crop_lists, questions)]
    if not queries:
      return []
    return [t[0] for t in generate(loaded, queries, key, decoding, batch_size=batch_size)]

  return rate


@dataclasses.dataclass(frozen=True)
class Scaling:
  """How N responses become one answer (tts module doc)."""

  vote: str = "confidence"
  rating: str = "joint"
  think_mode: bool = True

  def __post_init__(self):
    if self.vote not in tts.VOTES:
      raise ValueError(f"vote must be one of {tts.VOTES}, got {self.vote!r}")
    if self.rating not in tts.RATINGS:
      raise ValueError(f"rating must be one of {tts.RATINGS}, got {self.rating!r}")


def scale(
  videos: Sequence,
  completions: Sequence[list[str]],
  read: Sequence,
  choices: Sequence[Sequence[str]],
  rating_questions: Sequence[str],
  scaling: Scaling,
  rate_joint,
  rate_crop=None,
) -> list[dict]:
  """The test-time-scaling fields of each question from its N completions (tts module doc):
  both votes when the responses are rated (vote "confidence", or N > 1), `response` the
  chosen one. read[q](text) -> (letter or None, think text or None); rate_joint(crop lists,
  questions) rates every response that needs it in one call; rate_crop(crops, questions)
  every crop when rating="per_crop"."""
  rated = scaling.vote == "confidence" or any(len(texts) > 1 for texts in completions)
  rows = []  # (question, letter, think, crops)
  for q, (video, texts) in enumerate(zip(videos, completions)):
    for text in texts:
      letter, think = read[q](text)
      crops = []
      if rated and scaling.think_mode and letter is not None and think is not None:
        crops = tts.response_crops(video.frames, video.sample_fps, think)
      rows.append((q, letter, think, crops))
  wanted = [i for i, row in enumerate(rows) if row[3]]
  replies: dict[int, object] = {}
  if scaling.rating == "joint":
    got = rate_joint([rows[i][3] for i in wanted], [rating_questions[rows[i][0]] for i in wanted])
    replies = dict(zip(wanted, got))
  else:
    flat = [(i, crop) for i in wanted for crop in rows[i][3]]
    got = rate_crop([c for _, c in flat], [rating_questions[rows[i][0]] for i, _ in flat])
    for (i, _), reply in zip(flat, got):
      replies.setdefault(i, []).append(reply)

  def weights(own, vote):
    return [
      tts.response_weight(*rows[i][1:], scaling.think_mode, vote, replies.get(i)) for i in own
    ]

  out, k = [], 0
  for q, texts in enumerate(completions):
    own = range(k, k + len(texts))
    k += len(texts)
    letters = [rows[i][1] for i in own]
    votes = {"majority": weights(own, "majority")}
    if rated:
      votes["confidence"] = weights(own, "confidence")
    chosen = {name: tts.vote(letters, w, choices[q]) for name, w in votes.items()}
    out.append(
      {
        "responses": list(texts),
        "answers": letters,
        "weights": [round(w, 4) for w in votes.get(scaling.vote, votes["majority"])],
        "crops": [len(rows[i][3]) for i in own],
        "ratings": [replies.get(i) for i in own],
        "majority": chosen["majority"],
        "confidence": chosen.get("confidence"),
        "response": chosen[scaling.vote],
        "vote": scaling.vote,
        "rating": scaling.rating,
      }
    )
  return out


def mcq_results(
  loaded: LoadedModel,
  records: list[dict],
  videos_dir: str,
  processing: ProcessingConfig,
  *,
  key: jax.Array,
  decoding: Decoding,
  n: int = 1,
  vote: str = "confidence",
  rating: str = "joint",
  stage: str = "rl",
  batch_size: int = 4,
  strict: bool = False,
) -> tuple[list[dict], list[str]]:
  """(results records in annotation order, errors). batch_size questions per sampler call
  (n rows each); the ratings run batch_size * n prompts per call."""
  scaling = Scaling(vote, rating)
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  rating_key = jax.random.fold_in(key, 1 << 20)
  rate_joint = joint_rater(loaded, processing, rating_key, decoding, batch_size * n)
  rate_crop = crop_rater(loaded, processing, rating_key, batch_size * n)

  def make_queries(record, index, video):
    gold_letter(record)  # a record without a gold letter fails here, not when scored
    return [mcq_query(record, video, stage)]

  def reader(record):
    options = record.get("options") or None

    def read(text):
      return mcq.extract_letter(text, options), tts.think_text(text)

    return read

  results, errors = [], []
  for chunk in answer_records(
    loaded,
    records,
    videos_dir,
    processing,
    make_queries,
    key=key,
    decoding=decoding,
    num_samples=n,
    batch_size=batch_size,
    strict=strict,
    name="MCQ",
  ):
    answered = [item for item in chunk if item.error is None]
    scaled = iter(
      scale(
        [a.video for a in answered],
        [a.texts[0] for a in answered],
        [reader(a.record) for a in answered],
        [mcq.letters_of(a.record.get("options") or None) for a in answered],
        [question_of(a.record) for a in answered],
        scaling,
        rate_joint,
        rate_crop,
      )
      if n > 1
      else []
    )
    for item in chunk:
      if item.error is not None:
        errors.append(f"record {item.index}: {item.error}")
        try:  # an unanswered question scores 0; one without a gold letter cannot be scored
          gold_letter(item.record)
          results.append({**item.record, "response": "", "o3jax": {"error": item.error}})
        except ValueError:
          pass
      elif n > 1:
        results.append({**item.record, **next(scaled)})
      else:
        results.append({**item.record, "response": item.texts[0][0]})
  return results, errors


def tts_accuracy(results: list[dict]) -> dict:
  """Accuracy (fractions) of the first sample, of one sample on average, of the majority
  and of the confidence vote, over the records that hold n sampled answers."""
  rows = [r for r in results if isinstance(r.get("answers"), list)]
  if not rows:
    raise ValueError("no record holds sampled answers (run with --n > 1)")
  gold = [gold_letter(r) for r in rows]
  mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
  return {
    "n_questions": len(rows),
    "n_samples": len(rows[0]["answers"]),
    "first_sample": mean([r["answers"][0] == g for r, g in zip(rows, gold)]),
    "mean_single_sample": mean([mean([a == g for a in r["answers"]]) for r, g in zip(rows, gold)]),
    "majority": mean([r["majority"] == g for r, g in zip(rows, gold)]),
    "confidence": mean([r["confidence"] == g for r, g in zip(rows, gold)]),
  }


def print_tts(acc: dict, file=None) -> None:
  n = acc["n_samples"]
  print(
    f"test-time scaling over {acc['n_questions']} questions, N={n}:\n"
    f"  N=1 (first sample)     {100 * acc['first_sample']:.1f}\n"
    f"  N=1 (mean of {n:>2})       {100 * acc['mean_single_sample']:.1f}\n"
    f"  majority@{n:<2}            {100 * acc['majority']:.1f}\n"
    f"  confidence@{n:<2}          {100 * acc['confidence']:.1f}",
    file=file,
  )
