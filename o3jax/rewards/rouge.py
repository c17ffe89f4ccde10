"""Free-form answer accuracy: ROUGE with the rouge-score package (host side).

clip(mean of ROUGE-1, ROUGE-2, ROUGE-L F-measures, 0, 1), tokenized and Porter-stemmed
exactly as rouge_score.RougeScorer(use_stemmer=True) does. Stemming is most of that
scorer's cost (about 0.4 ms a pair); the stemmer is a pure function of the word, so here
it is memoised, and so is tokenization (a group's rollouts share one reference).
"""

import functools

from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize, tokenizers


class _MemoStemmer:
    stem = staticmethod(functools.lru_cache(maxsize=1 << 16)(porter.PorterStemmer().stem))


@functools.lru_cache(maxsize=1 << 12)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(tokenize.tokenize(text, _MemoStemmer))


class _MemoTokenizer(tokenizers.Tokenizer):
    def tokenize(self, text: str) -> tuple[str, ...]:
        return _tokens(text)


_SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_MemoTokenizer())


def rouge_accuracy(reference: str, prediction: str) -> float:
    scores = _SCORER.score(reference, prediction)
    mean = (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure
            + scores["rougeL"].fmeasure) / 3
    return max(0.0, min(1.0, mean))
