"""The V-STaR what-judge run in o3jax: a text-only Qwen2 / Qwen2.5 instruct checkpoint
(`Qwen2ForCausalLM`; the reference's is Qwen2.5-72B-Instruct) loaded by
`o3jax.convert.load_pretrained` through o3jax's text decoder, sharded over the mesh.

Each record with a non-empty `answer_vqa` is asked the reference's question
(vstar_reference.JUDGE_SYSTEM_PROMPT, judge_user_prompt(question, answer, answer_vqa))
in the Qwen chat template, greedy, 512 new tokens at most; the reply is read as the
reference reads it (vstar_protocol.parse_judge_reply: 0..3, -1 when not an integer) and
written into the record as `vqa_score`, with the reply in `vqa_judge_reply`.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tokenizers import Tokenizer

from o3jax import sample, sample_inputs
from o3jax.eval import vstar_protocol
from o3jax.eval import vstar_reference as R
from o3jax.processing import chat
from o3jax.processing.tokenizer import token_id


class ModelJudge:
  def __init__(
    self, path: str, *, dtype: str = "float32", mesh=None, batch_size: int = 8, bucket: int = 64
  ):
    from o3jax.convert.hf import load_pretrained, model_type

    tokenizer_path = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(tokenizer_path):
      raise FileNotFoundError(f"{path}: no tokenizer.json next to the judge model")
    if model_type(path) != "qwen2":
      raise ValueError(f"{path}: the judge must be a qwen2 (Qwen2ForCausalLM) checkpoint")
    self.path = path
    self.tokenizer = Tokenizer.from_file(tokenizer_path)
    model = load_pretrained(path, dtype=jnp.dtype(dtype), mesh=mesh)
    self.config = model.config
    self.graphdef, self.state = nnx.split(model)
    self.eos_ids = [
      token_id(self.tokenizer, "<|im_end|>"),
      token_id(self.tokenizer, "<|endoftext|>"),
    ]
    self.pad_id = self.eos_ids[1]
    self.batch_size, self.bucket = batch_size, bucket

  @property
  def name(self) -> str:
    return f"model judge {self.path} (reference prompt, greedy)"

  def prompt_ids(self, question: str, gold: str, candidate: str) -> np.ndarray:
    messages = [
      chat.Message("system", [R.JUDGE_SYSTEM_PROMPT]),
      chat.Message("user", [R.judge_user_prompt(question, gold, candidate)]),
    ]
    return chat.tokenize(self.tokenizer, messages, add_generation_prompt=True).input_ids

  def replies(self, triples: list[tuple[str, str, str]]) -> list[str]:
    """The judge's reply to each (question, gold, candidate), in order."""
    out = []
    for start in range(0, len(triples), self.batch_size):
      rows = [self.prompt_ids(*t) for t in triples[start : start + self.batch_size]]
      longest = max(map(len, rows))
      ids = np.full((self.batch_size, longest), self.pad_id, np.int32)
      mask = np.zeros((self.batch_size, longest), np.int32)  # missing rows: empty filler
      for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
      inputs = sample_inputs.prompt_batch(
        self.config, ids, mask, prompt_bucket=self.bucket, pad_id=self.pad_id
      )
      result = sample.sample(
        self.graphdef,
        self.state,
        inputs,
        jax.random.key(0),
        max_new_tokens=R.JUDGE_MAX_NEW_TOKENS,
        greedy=True,
        eos_id=self.eos_ids,
        pad_id=self.pad_id,
      )
      tokens, lengths = np.asarray(result.tokens), np.asarray(result.lengths)
      out += self.tokenizer.decode_batch(
        [tokens[i, : lengths[i]].tolist() for i in range(len(rows))], skip_special_tokens=True
      )
    return out

  def score_records(self, records: list) -> int:
    """Writes vqa_score (and vqa_judge_reply) into every record with a non-empty
    answer_vqa and no vqa_score yet; returns how many were judged."""
    todo = [
      r
      for r in records
      if isinstance(r, dict) and r.get("answer_vqa") and r.get("vqa_score") is None
    ]
    triples = [(str(r.get("question")), str(r.get("answer")), str(r["answer_vqa"])) for r in todo]
    for record, reply in zip(todo, self.replies(triples)):
      record["vqa_judge_reply"] = reply
      record["vqa_score"] = vstar_protocol.parse_judge_reply(reply)
    print(f"judge: {len(todo)} answers scored by {self.path}", file=sys.stderr)
    return len(todo)


def judge_results_file(judge_dir: str, records: list, path, dtype: str, mesh: str) -> str:
  """`o3jax eval vstar --judge DIR`: scores the records' answers with the model, rewrites
  the results file at `path` with vqa_score; returns the judge's name for the metrics."""
  from o3jax.eval.generate import inference_mesh

  try:
    judge = ModelJudge(judge_dir, dtype=dtype, mesh=inference_mesh(mesh))
  except (FileNotFoundError, ValueError, KeyError) as e:
    raise SystemExit(f"o3jax eval vstar: --judge {judge_dir}: {e}")
  judge.score_records(records)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(records, f, indent=1)
  return judge.name
