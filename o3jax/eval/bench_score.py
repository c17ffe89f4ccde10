"""Scoring VideoMME, WorldSense and VideoMMMU results as the reference scores them.

A results record (bench_run.py writes them; any file of such records can be rescored):
  id, benchmark, question_type ("multiple-choice" or "open"), answer, options (texts),
  categories {field: value}, response (the final answer text: the voted letter, or the
  completion of an open-ended question).
Multiple choice: the letter read from `response` by the reference's
`parse_multi_choice_response` (eval/dataloader/videomme.py; WorldSense's copy has no
content match and falls back to random.seed(42); random.choice, i.e. "A") must equal
`answer`. Open-ended (VideoMMMU): MMMU's parse_open_response / eval_open (lmms-eval's
VideoMMMU utils), read from the <answer> block when there is one, else the whole text.
Breakdowns, as the reference reports them: VideoMME by duration, domain, sub_category,
task_type; WorldSense by duration, domain, sub_category, task_domain, task_type and
audio_class (a question counts once for each of its audio classes); VideoMMMU by track
(Perception, Comprehension, Adaptation), discipline and subject, without the records
whose response is empty (lmms-eval drops "API Error" answers from its means).
"""

from __future__ import annotations

import random
import re

from o3jax import grammar
from o3jax.rewards.parse import block

GROUPS = {
  "videomme": ("duration", "domain", "sub_category", "task_type"),
  "worldsense": ("duration", "domain", "sub_category", "task_domain", "task_type", "audio_class"),
  "videommmu": ("track", "discipline", "subject"),
}
_MARKERS = (
  "{c}.",
  "{c}:",
  "({c})",
  "{c} ",
  "\n{c}\n",
  " {c}\n",
  "\n{c} ",
  ": {c}",
  ":{c}",
  ":\n{c}",
  "\n\n{c}",
  "**{c}**",
  "{{{c}}}",
)


def parse_multi_choice(response: str, options: list[str], content: bool = True) -> str:
  """The reference's parse_multi_choice_response: the letter whose marker ("B.", "(B)",
  "B ", "**B**", ...) occurs last; failing that (content=True, more than 5 words) the
  option whose text occurs last; else "No Answer Found" ("API Error" for an empty text)."""
  if response == "API Error" or response == "":
    return "API Error"
  choices = [chr(ord("A") + i) for i in range(len(options))]
  for char in [",", ".", "!", "?", ";", ":", "'"]:
    response = response.strip(char)
  response = " " + response + " "
  candidates = [m.format(c=c) for m in _MARKERS for c in choices if m.format(c=c) in response]
  by_content = False
  if content and not candidates and len(response.split()) > 5:
    candidates = [c for c, o in zip(choices, options) if o.lower() in response.lower()]
    by_content = True
  if not candidates:
    return "No Answer Found"
  if by_content:
    found = [response.lower().rfind(options[choices.index(c)].lower()) for c in candidates]
  else:
    found = [response.rfind(c) for c in candidates]
  pred = candidates[found.index(max(found))]
  return next((c for c in choices if c in pred), pred)


def worldsense_letter(response: str, letters: str = "ABCD") -> str:
  pred = parse_multi_choice(response, list(letters), content=False)
  if pred not in letters:
    rng = random.Random(42)  # the reference seeds before every draw
    pred = rng.choice(list(letters))
  return pred


# ---------------------------------------------------------------- MMMU open-ended answers


def extract_numbers(text: str) -> list[str]:
  commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
  scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
  simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
  return commas + scientific + simple


def _is_number(text: str) -> bool:
  try:
    float(text.replace(",", ""))
    return True
  except ValueError:
    return False


def normalize(text: str) -> list:
  text = text.strip()
  if _is_number(text):
    return [round(float(text.replace(",", "")), 2)]
  text = text.lower()
  return [" " + text, text + " "] if len(text) == 1 else [text]


def parse_open_response(response: str) -> list:
  """MMMU's parse_open_response: the key sub-responses' tails and their numbers, normalized."""
  indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
  subs = re.split(r"\.\s(?=[A-Z])|\n", response.strip().strip(".").lower())
  keys = []
  for index, sub in enumerate(subs):
    marks = indicators + (["are", "="] if index == len(subs) - 1 else ["are"])
    shortest = None
    for mark in marks:
      if mark in sub:
        tail = sub.split(mark)[-1].strip()
        if shortest is None or len(tail) < len(shortest):
          shortest = tail
    if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", "'"]:
      keys.append(shortest)
  keys = keys or [response.strip().strip(".").lower()]
  preds = keys + [n for k in keys for n in extract_numbers(k)]
  out = []
  for p in preds:
    out.extend(normalize(p))
  return list(dict.fromkeys(out))


def open_correct(gold: str, preds: list) -> bool:
  answers = normalize(gold)
  for pred in preds:
    if isinstance(pred, str):
      if any(isinstance(a, str) and a in pred for a in answers):
        return True
    elif pred in answers:
      return True
  return False


# ---------------------------------------------------------------- scores


def score_record(benchmark: str, record: dict, index: int) -> dict:
  for field in ("answer", "response"):
    if not isinstance(record.get(field), str):
      raise ValueError(f"{benchmark} record {index}: field {field!r} is missing or not text")
  response, gold = record["response"], record["answer"]
  if record.get("question_type", "multiple-choice") == "open":
    found = block(response, grammar.ANSWER)  # a closed block, as tts reads answers
    preds = parse_open_response(response if found is None else found) if response else []
    return {"pred": preds, "correct": bool(response) and open_correct(gold, preds)}
  options = record.get("options")
  if not isinstance(options, list) or not options:
    raise ValueError(f"{benchmark} record {index}: field 'options' is missing or empty")
  if benchmark == "worldsense":
    pred = worldsense_letter(response, "".join(chr(65 + i) for i in range(len(options))))
  else:
    pred = parse_multi_choice(response, options)
  return {"pred": pred, "correct": pred == gold}


def _acc(items: list[dict]) -> dict:
  return {"n": len(items), "acc": sum(i["correct"] for i in items) / len(items)}


def score(benchmark: str, records: list[dict]) -> dict:
  """Accuracy (fraction) overall and per category (module doc)."""
  if benchmark not in GROUPS:
    raise ValueError(f"benchmark must be one of {tuple(GROUPS)}, got {benchmark!r}")
  if not records:
    raise ValueError(f"{benchmark} results: no records")
  items = []
  for index, record in enumerate(records):
    if not isinstance(record, dict):
      raise ValueError(f"{benchmark} record {index}: not a JSON object")
    item = {"id": record.get("id", index), **score_record(benchmark, record, index)}
    item["categories"] = record.get("categories") or {}
    items.append(item)
  excluded = 0
  if benchmark == "videommmu":
    kept = [i for i, r in zip(items, records) if r["response"] != ""]
    excluded, items = len(items) - len(kept), kept
    if not items:
      raise ValueError("videommmu results: every response is empty")
  metrics = {**_acc(items), "n_excluded": excluded}
  for field in GROUPS[benchmark]:
    groups: dict[str, list] = {}
    for item in items:
      values = item["categories"].get(field, "unknown")
      for value in values if isinstance(values, list) else [values]:
        groups.setdefault(str(value), []).append(item)
    metrics[f"by_{field}"] = {name: _acc(g) for name, g in sorted(groups.items())}
  metrics["per_item"] = [{k: v for k, v in i.items() if k != "categories"} for i in items]
  return metrics
