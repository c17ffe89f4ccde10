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
n > 1: n sampled completions; each one's letter (mcq.extract_letter) and weight
(tts.response_weight: 0 without a valid answer or think; else the mean rating weight of
its evidence crops -- each claim box cropped from the shown frame nearest its time,
resized to the frame size, rated 0/1/2 for relevance to the question by the same model,
greedy); the record gets `responses, answers, weights, majority, confidence` and
`response` = the letter of the chosen vote.
"""

from __future__ import annotations

import re
from typing import Sequence

import jax
import numpy as np

from o3jax import grammar
from o3jax.eval import mcq, tts
from o3jax.eval.generate import Decoding, LoadedModel, Query, answer_records, generate, image_query
from o3jax.processing import prompts
from o3jax.processing.config import ProcessingConfig
from o3jax.processing.evidence import evidence_crops

VOTES = ("majority", "confidence")
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


def evidence_boxes(text: str) -> list[tuple[float, tuple]]:
  """(time, box) for each box of each claim of the think block."""
  from o3jax.rewards.parse import parse_completion

  return [(time, box) for _, time, boxes in parse_completion(text).claims for box in boxes]


def has_think(text: str) -> bool:
  from o3jax.grammar import THINK
  from o3jax.rewards.parse import block

  return block(text, THINK) is not None


def response_weights(
  answers: Sequence, thinks: Sequence[bool], crops: Sequence[list], rate_all
) -> tuple[list[float], list[list]]:
  """(tts.response_weight of every response, the ratings each one got), rating all the
  crops that need it in one call: rate_all([(response index, crop), ...]) -> ratings."""
  wanted: list[tuple[int, np.ndarray]] = []
  for i, (answer, think, own) in enumerate(zip(answers, thinks, crops)):
    tts.response_weight(answer, think, own, lambda crop, i=i: wanted.append((i, crop)) or 0)
  ratings = list(rate_all(wanted))
  if len(ratings) != len(wanted):
    raise ValueError(f"rate_all gave {len(ratings)} ratings for {len(wanted)} crops")
  given: list[list] = [[] for _ in answers]
  for (i, _), rating in zip(wanted, ratings):
    given[i].append(rating)
  queue = iter(ratings)
  weights = [
    tts.response_weight(answer, think, own, lambda _: next(queue))
    for answer, think, own in zip(answers, thinks, crops)
  ]
  return weights, given


def model_rater(loaded: LoadedModel, processing: ProcessingConfig, key: jax.Array, batch_size: int):
  """rate(crops, questions) -> the model's rating texts (greedy), batch_size per call."""

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


def scale(
  records: Sequence[dict], videos: Sequence, completions: Sequence[list[str]], rate, vote: str
) -> list[dict]:
  """The test-time-scaling fields of each record from its n completions (module doc);
  rate(crops, questions) rates all the crops of all records in one call."""
  answers, thinks, crops, questions = [], [], [], []
  for record, video, texts in zip(records, videos, completions):
    for text in texts:
      answers.append(mcq.extract_letter(text, record.get("options") or None))
      thinks.append(has_think(text))
      crops.append(evidence_crops(video.frames, video.frame_times, evidence_boxes(text)))
      questions.append(question_of(record))

  def rate_all(wanted):
    return rate([crop for _, crop in wanted], [questions[i] for i, _ in wanted])

  weights, ratings = response_weights(answers, thinks, crops, rate_all)
  out, k = [], 0
  for texts in completions:
    own = slice(k, k + len(texts))
    own_answers, own_weights = answers[own], weights[own]
    k += len(texts)
    majority = tts.majority_vote(own_answers)
    confidence = tts.weighted_vote(own_answers, own_weights)
    out.append(
      {
        "responses": list(texts),
        "answers": own_answers,
        "weights": [round(w, 4) for w in own_weights],
        "crops": [len(c) for c in crops[own]],
        "ratings": ratings[own],
        "majority": majority,
        "confidence": confidence,
        "response": (majority if vote == "majority" else confidence) or "",
        "vote": vote,
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
  stage: str = "rl",
  batch_size: int = 4,
  strict: bool = False,
) -> tuple[list[dict], list[str]]:
  """(results records in annotation order, errors). batch_size questions per sampler call
  (n rows each); the ratings run batch_size * n crops per call."""
  if vote not in VOTES:
    raise ValueError(f"vote must be one of {VOTES}, got {vote!r}")
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  rate = model_rater(loaded, processing, jax.random.fold_in(key, 1 << 20), batch_size * n)

  def make_queries(record, index, video):
    gold_letter(record)  # a record without a gold letter fails here, not when scored
    return [mcq_query(record, video, stage)]

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
        [a.record for a in answered],
        [a.video for a in answered],
        [a.texts[0] for a in answered],
        rate,
        vote,
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
