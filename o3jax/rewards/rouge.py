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
from typing import NamedTuple

from nltk.stem import porter
from rouge_score import scoring, tokenize

_STEMMER = porter.PorterStemmer()


@functools.lru_cache(maxsize=1 << 16)
def _word_tokens(word: str) -> tuple[str, ...]:
    return tuple(tokenize.tokenize(word, _STEMMER))


@functools.lru_cache(maxsize=1 << 12)
def _tokens(text: str) -> tuple[str, ...]:
    """rouge_score.tokenize.tokenize(text, stemmer): lower-cased, split at non [a-z0-9],
    then each word stemmed and checked alone, which here is memoised per word."""
    words = tokenize.SPACES_RE.split(tokenize.NON_ALPHANUM_RE.sub(" ", text.lower()))
    return tuple(itertools.chain.from_iterable(map(_word_tokens, words)))


class _Reference(NamedTuple):
    length: int  # tokens
    unigrams: collections.Counter
    bigrams: collections.Counter
    masks: dict[str, int]  # token -> the bits i where tokens[i] is that token


@functools.lru_cache(maxsize=1 << 12)
def _reference(text: str) -> _Reference:
    tokens = _tokens(text)
    masks: dict[str, int] = {}
    for i, token in enumerate(tokens):
        masks[token] = masks.get(token, 0) | 1 << i
    return _Reference(len(tokens), collections.Counter(tokens),
                      collections.Counter(zip(tokens, tokens[1:])), masks)


def _lcs_length(reference: _Reference, tokens: tuple[str, ...]) -> int:
    """Longest common subsequence length; bit i of `rows` ends clear once reference
    token i is matched (the bit-vector form of the LCS table, one column at a time)."""
    full = (1 << reference.length) - 1
    rows = full
    for token in tokens:
        matched = rows & reference.masks.get(token, 0)
        rows = ((rows + matched) | (rows - matched)) & full
    return reference.length - rows.bit_count()


def _overlap(reference: collections.Counter, prediction: collections.Counter) -> int:
    """rouge_score's n-gram intersection: sum over the reference's n-grams of min counts."""
    return sum(map(min, reference.values(), map(prediction.get, reference,
                                                 itertools.repeat(0))))


def _fmeasure(overlap: int, n_prediction: int, n_reference: int) -> float:
    # rouge_score's precision and recall (the max only matters when overlap is 0).
    return scoring.fmeasure(overlap / max(n_prediction, 1), overlap / max(n_reference, 1))


def rouge_accuracy(reference: str, prediction: str) -> float:
    ref, tokens = _reference(reference), _tokens(prediction)
    rouge1 = _fmeasure(_overlap(ref.unigrams, collections.Counter(tokens)),
                       len(tokens), ref.length)
    rouge2 = _fmeasure(_overlap(ref.bigrams, collections.Counter(zip(tokens, tokens[1:]))),
                       max(len(tokens) - 1, 0), max(ref.length - 1, 0))
    rouge_l = _fmeasure(_lcs_length(ref, tokens), len(tokens), ref.length)
    return max(0.0, min(1.0, (rouge1 + rouge2 + rouge_l) / 3))
