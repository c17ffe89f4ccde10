"""Multiple-choice accuracy (VideoMME style) with per-category breakdowns.

A results file is a list (JSON or JSONL) of records:
  answer     the gold option letter ("C", or "C. text")
  response   the model's text (aliases: output, output_text, prediction, pred)
  options    optional list of option texts ("A. ...", or bare texts in letter order)
  plus any category fields; each of GROUP_FIELDS present gets a breakdown
  (VideoMME: duration, domain, sub_category, task_type).

Letter extraction (`extract_letter`), first rule that fires wins:
  0. the text is the first <answer> block if there is one; after a `Correct Option:`
     only the text after its last occurrence is read; then it is stripped.
  1. the whole text is a letter, optionally bracketed and/or followed by . or :
     ("B", "(B)", "[B].", "B:").
  2. the text starts with a letter followed by ) or ] or by . or : and a space
     ("B. a red car", "(B) a red car", "B: ...").
  3. a letter right after "answer", "option" or "choice", optionally with "is" and/or
     ":" and a bracket ("The correct answer is (B).", "Best option: C").
  4. options given: the text equals one option's text (case, punctuation and the
     "A." prefix ignored).
  5. exactly one distinct standalone capital valid letter occurs in the text; a
     capital "A" followed by a lowercase word is read as the article and skipped.
  Otherwise there is no answer (counted wrong). Letters are uppercase only; valid
  letters are the first len(options) of A..Z, or A-H when options are not given
  ("I" is left out as it is usually the pronoun).
"""

from __future__ import annotations

import re
import string

from o3jax.grammar import CORRECT_OPTION, answer_block

GROUP_FIELDS = ("duration", "domain", "sub_category", "task_type", "category")
TEXT_FIELDS = ("response", "output", "output_text", "prediction", "pred")
DEFAULT_LETTERS = "ABCDEFGH"

_WHOLE = re.compile(r"[\(\[]?([A-Z])[\)\]]?[.:]?")
_LEADING = re.compile(r"[\(\[]?([A-Z])(?:[\)\]]|[.:](?:\s|$))")
_PHRASE = re.compile(r"(?i:answer|option|choice)\s*(?:is\s*)?:?\s*[\(\[]?([A-Z])(?![A-Za-z])")
_LONE = re.compile(r"(?<![A-Za-z])[A-Z](?![A-Za-z])")
_ARTICLE = re.compile(r"\s+[a-z]")
_OPTION_PREFIX = re.compile(r"^\s*[\(\[]?[A-Z][\)\]]?[.:]\s*|^\s*[\(\[][A-Z][\)\]]\s*")


def _normalize(text: str) -> str:
  text = text.lower().translate(str.maketrans("", "", string.punctuation))
  return " ".join(text.split())


def letters_of(options=None) -> str:
  """The valid letters: the first len(options) of A..Z, or DEFAULT_LETTERS."""
  return string.ascii_uppercase[: len(options)] if options else DEFAULT_LETTERS


def extract_letter(text, options=None) -> str | None:
  """The option letter a response picks (rules in the module docstring), or None."""
  if not isinstance(text, str):
    return None
  letters = letters_of(options)
  text = answer_block(text)
  if CORRECT_OPTION in text:
    text = text.rsplit(CORRECT_OPTION, 1)[1]
  text = text.strip()

  for pattern, match in ((_WHOLE, re.fullmatch), (_LEADING, re.match), (_PHRASE, re.search)):
    hit = match(pattern, text)
    if hit and hit.group(1) in letters:
      return hit.group(1)
  if options:
    wanted = _normalize(text)
    for letter, option in zip(letters, options):
      if wanted and _normalize(_OPTION_PREFIX.sub("", str(option))) == wanted:
        return letter
  lone = {
    m.group()
    for m in _LONE.finditer(text)
    if m.group() in letters and not (m.group() == "A" and _ARTICLE.match(text, m.end()))
  }
  return lone.pop() if len(lone) == 1 else None


def _text_field(record: dict, index: int):
  for field in TEXT_FIELDS:
    if field in record:
      return record[field]
  raise ValueError(f"MCQ record {index}: none of the fields {', '.join(TEXT_FIELDS)} is present")


def score_item(record: dict, index: int) -> dict:
  if not isinstance(record, dict):
    raise ValueError(f"MCQ record {index}: not a JSON object")
  options = record.get("options") or None
  if "answer" not in record:
    raise ValueError(f"MCQ record {index}: field 'answer' is missing")
  gold = extract_letter(str(record["answer"]), options)
  if gold is None:
    raise ValueError(
      f"MCQ record {index}: field 'answer' holds no option letter: {record['answer']!r}"
    )
  pred = extract_letter(_text_field(record, index), options)
  return {
    "id": record.get("question_id", record.get("id", index)),
    "pred": pred,
    "gold": gold,
    "correct": pred == gold,
  }


def _accuracy(items: list[dict]) -> dict:
  return {"n": len(items), "acc": sum(i["correct"] for i in items) / len(items)}


def score_mcq(records: list[dict], group_fields=GROUP_FIELDS) -> dict:
  """Accuracy (fraction) overall and per value of each category field present."""
  if not records:
    raise ValueError("MCQ results: no records")
  items = [score_item(record, i) for i, record in enumerate(records)]
  metrics = {**_accuracy(items), "n_unparsed": sum(i["pred"] is None for i in items)}
  for field in group_fields:
    if not any(isinstance(r, dict) and field in r for r in records):
      continue
    groups: dict[str, list] = {}
    for record, item in zip(records, items):
      groups.setdefault(str(record.get(field, "unknown")), []).append(item)
    metrics[f"by_{field}"] = {name: _accuracy(g) for name, g in sorted(groups.items())}
  metrics["per_item"] = items
  return metrics
