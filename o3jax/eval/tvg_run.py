"""TVGBench-style temporal grounding answers from a model.

Annotation records (JSON list or JSONL): the query in `question` (or `query`,
`sentence`), the gold span in one of tvg.GOLD_FIELDS or, for STGR records of task
"temporal QA", in `answer` ("[s, e]"), and the video (`video_path`/`video` relative to
--videos, or `vid`/`video_id` -> <id>.mp4). The system prompt is the temporal-QA one.
From an STGR file (STGR-RL.json) the records of task "temporal QA" are taken.

The results record gets `target` [s, e], `raw_output` (the completion) and `output`:
the completion with each grounded time `<t>S</t>s` written as the bare number S, so
that TVGBench's answer pattern (the last `S to E` in the text, tvg.py) reads the
grounded answer `From <t>S</t>s to <t>E</t>s`.
"""

from __future__ import annotations

import jax

from o3jax.data.records import parse_segment
from o3jax.eval import tvg
from o3jax.eval.generate import Decoding, LoadedModel, Query, answer_records
from o3jax.grammar import SECONDS_RE
from o3jax.processing import prompts
from o3jax.processing.config import ProcessingConfig

TASK = "temporal QA"
STGR_TASKS = (TASK,)  # the temporal-grounding records of STGR files
QUESTION_FIELDS = ("question", "query", "sentence")


def query_text(record: dict) -> str:
  for field in QUESTION_FIELDS:
    if isinstance(record.get(field), str) and record[field].strip():
      return record[field]
  raise ValueError(f"none of the fields {', '.join(QUESTION_FIELDS)} holds the query")


def target_of(record: dict) -> list[float]:
  for field in tvg.GOLD_FIELDS:
    if field in record:
      span = record[field]
      break
  else:
    if not isinstance(record.get("answer"), str):
      raise ValueError(
        f"none of the fields {', '.join(tvg.GOLD_FIELDS + ('answer',))} holds the gold span"
      )
    try:
      span = parse_segment(record["answer"])
    except (ValueError, SyntaxError) as e:
      raise ValueError(f"field 'answer' holds no [start, end]: {e}") from None
  if not (
    isinstance(span, (list, tuple))
    and len(span) == 2
    and all(isinstance(v, (int, float)) for v in span)
    and span[0] <= span[1]
  ):
    raise ValueError(f"the gold span is not [start, end] with start <= end: {span!r}")
  return [float(span[0]), float(span[1])]


def unwrap_times(text: str) -> str:
  """`<t>S</t>s` -> `S` everywhere (TVGBench reads plain numbers)."""
  return SECONDS_RE.sub(r"\1", text)


def tvg_results(
  loaded: LoadedModel,
  records: list[dict],
  videos_dir: str,
  processing: ProcessingConfig,
  *,
  key: jax.Array,
  decoding: Decoding,
  stage: str = "rl",
  batch_size: int = 4,
  strict: bool = False,
) -> tuple[list[dict], list[str]]:
  """(results records in annotation order, errors)."""

  def make_queries(record, index, video):
    target_of(record)
    return [
      Query(
        prompts.question_text(TASK, query_text(record), stage),
        video.visual,
        prompts.system_prompt(TASK, stage),
      )
    ]

  results, errors = [], []
  for chunk in answer_records(
    loaded,
    records,
    videos_dir,
    processing,
    make_queries,
    key=key,
    decoding=decoding,
    batch_size=batch_size,
    strict=strict,
    name="TVG",
  ):
    for item in chunk:
      if item.error is not None:
        errors.append(f"record {item.index}: {item.error}")
        try:  # an unanswered question scores 0; one without a gold span cannot be scored
          results.append(
            {
              **item.record,
              "target": target_of(item.record),
              "output": "",
              "o3jax": {"error": item.error},
            }
          )
        except ValueError:
          pass
        continue
      text = item.texts[0][0]
      results.append(
        {
          **item.record,
          "target": target_of(item.record),
          "output": unwrap_times(text),
          "raw_output": text,
        }
      )
  return results, errors
