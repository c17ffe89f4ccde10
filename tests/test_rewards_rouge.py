"""ROUGE on rouge_score's tokens (rouge.py) equals rouge_score's scorer exactly."""

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from o3jax.rewards.rouge import rouge_accuracy, rouge_fmeasures

SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
# Few distinct stems, so n-grams repeat and the LCS is long and ambiguous.
WORDS = ["a", "b", "dog", "dogs", "Dog's", "running", "runs", "ran", "the", "x1", "é", ",", "-"]
few_words = st.lists(st.sampled_from(WORDS), max_size=90).map(" ".join)
texts = few_words | st.text(max_size=60)


@settings(max_examples=600, deadline=None)
@given(texts, texts)
@example("", "")
@example("the dog", "")
@example("a a a b", "a b a a a")
@example(" ".join(["a", "b"] * 70), " ".join(["b", "a", "a"] * 50))  # LCS beyond 64 tokens
def test_fmeasures_equal_rouge_score(reference, prediction):
  scores = SCORER.score(reference, prediction)
  want = tuple(scores[k].fmeasure for k in ("rouge1", "rouge2", "rougeL"))
  assert rouge_fmeasures(reference, prediction) == want
  mean = sum(want) / 3
  assert rouge_accuracy(reference, prediction) == min(1.0, max(0.0, mean))
