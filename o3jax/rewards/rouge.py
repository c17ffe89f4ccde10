"""Free-form answer accuracy: ROUGE on the rouge-score package's tokens (host side).

clip(mean of ROUGE-1, ROUGE-2, ROUGE-L F-measures, 0, 1), equal to what
rouge_score.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True).score gives:
its tokens (rouge_score.tokenize with nltk's Porter stemmer), the same integer counts
(clipped n-gram overlaps, LCS length) and its float formulas (precision and recall as in
its _score_ngrams and _score_lcs, then scoring.fmeasure). Faster, not different:
rouge_score's tokenizer runs once per distinct word (stemming is most of the scorer's
cost) and tokens are memoised per distinct text; the reference's n-gram counts and LCS
bit masks are made once per reference (a group's rollouts share one); the LCS length is
computed bit-parallel (Crochemore et al. 2001; Hyyro 2004) rather than with the
scorer's python table.
"""

import collections
import functools
import itertools
import re
from typing import NamedTuple

from nltk.stem import porter
from rouge_score import scoring, tokenize

_STEMMER = porter.PorterStemmer()
_WORD = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=1 << 16)
def _word_tokens(word: str) -> tuple[str, ...]:
  return tuple(tokenize.tokenize(word, _STEMMER))


@functools.lru_cache(maxsize=1 << 12)
def _tokens(text: str) -> tuple[str, ...]:
  """rouge_score.tokenize.tokenize(text, stemmer), which lower-cases, turns each run of
  characters other than [a-z0-9] into a space, splits at spaces (the words are the
  runs of [a-z0-9]), then stems and checks each word alone: that part is memoised."""
  words = _WORD.findall(text.lower())
  return tuple(itertools.chain.from_iterable(map(_word_tokens, words)))


class _Reference(NamedTuple):
  length: int  # tokens
  unigrams: dict[str, int]  # counts
  bigrams: dict[tuple[str, str], int]
  masks: dict[str, int]  # token -> the bits i where tokens[i] is that token


@functools.lru_cache(maxsize=1 << 12)
def _reference(text: str) -> _Reference:
  tokens = _tokens(text)
  masks: dict[str, int] = {}
  for i, token in enumerate(tokens):
    masks[token] = masks.get(token, 0) | 1 << i
  return _Reference(
    len(tokens),
    dict(collections.Counter(tokens)),
    dict(collections.Counter(zip(tokens, tokens[1:]))),
    masks,
  )


def _matches(reference: _Reference, tokens: tuple[str, ...]) -> tuple[int, int, int]:
  """Unigram and bigram overlaps (the sum over n-grams of the smaller count, as in
  rouge_score) and LCS length of the prediction's tokens with the reference's.

  The LCS is the bit-vector form of the LCS table, updated one prediction token at a
  time: bit i of `rows` is clear where the table's column (the LCS of the prediction
  so far with the first i + 1 reference tokens) steps up, so the clear bits count the
  LCS length.
  """
  unigrams, bigrams = dict(reference.unigrams), dict(reference.bigrams)  # left to match
  full = (1 << reference.length) - 1
  rows, overlap1, overlap2, previous = full, 0, 0, None
  for token in tokens:
    mask = reference.masks.get(token)
    if mask is not None:  # else nothing changes
      if unigrams[token]:
        unigrams[token] -= 1
        overlap1 += 1
      if bigrams.get((previous, token)):
        bigrams[previous, token] -= 1
        overlap2 += 1
      matched = rows & mask
      rows = ((rows + matched) | (rows - matched)) & full
    previous = token
  return overlap1, overlap2, reference.length - rows.bit_count()


def _fmeasure(overlap: int, n_prediction: int, n_reference: int) -> float:
  # rouge_score's precision and recall (the max only matters when overlap is 0).
  return scoring.fmeasure(overlap / max(n_prediction, 1), overlap / max(n_reference, 1))


def rouge_fmeasures(reference: str, prediction: str) -> tuple[float, float, float]:
  """ROUGE-1, ROUGE-2 and ROUGE-L F-measures, as rouge_score gives them."""
  ref, tokens = _reference(reference), _tokens(prediction)
  overlap1, overlap2, lcs = _matches(ref, tokens)
  return (
    _fmeasure(overlap1, len(tokens), ref.length),
    _fmeasure(overlap2, max(len(tokens) - 1, 0), max(ref.length - 1, 0)),
    _fmeasure(lcs, len(tokens), ref.length),
  )


def rouge_accuracy(reference: str, prediction: str) -> float:
  rouge1, rouge2, rouge_l = rouge_fmeasures(reference, prediction)
  return max(0.0, min(1.0, (rouge1 + rouge2 + rouge_l) / 3))
