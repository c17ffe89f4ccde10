"""The V-STaR judge in o3jax: a transformers Qwen2ForCausalLM loads with its logits, the
reference judge prompt gets transformers' greedy reply, and the CLI writes vqa_score."""

import argparse
import json
import os

import numpy as np
import pytest
import torch

from o3jax.convert import load_pretrained
from o3jax.eval import cli, vstar_protocol
from o3jax.eval import vstar_reference as R
from o3jax.eval.judge import ModelJudge
from o3jax.models.qwen2 import Qwen2ForCausalLM
from o3jax.processing.tokenizer import DEMO_VOCAB_SIZE, build_demo_tokenizer


def tiny_qwen2_dir(root, tie: bool, seed: int = 0):
  from transformers import Qwen2Config, Qwen2ForCausalLM as HFQwen2

  tokenizer = build_demo_tokenizer()
  torch.manual_seed(seed)
  config = Qwen2Config(
    vocab_size=DEMO_VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=tie,
    initializer_range=0.2,  # a peaked next-token distribution: no near-ties in greedy
    rope_theta=10000.0,
  )
  hf = HFQwen2(config).eval()
  with torch.no_grad():  # non-zero biases and norms so that every parameter matters
    for name, p in hf.named_parameters():
      if "bias" in name or "norm" in name:
        p.add_(0.1 * torch.randn_like(p))
  path = os.path.join(root, "tied" if tie else "untied")
  hf.save_pretrained(path)
  tokenizer.save(os.path.join(path, "tokenizer.json"))
  return path, hf, tokenizer


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def judge_dir(request, tmp_path_factory):
  return tiny_qwen2_dir(str(tmp_path_factory.mktemp("qwen2")), request.param)


def test_qwen2_loads_with_transformers_logits(judge_dir):
  path, hf, _ = judge_dir
  model = load_pretrained(path)
  assert isinstance(model, Qwen2ForCausalLM)
  assert model.config.text.tie_word_embeddings == hf.config.tie_word_embeddings
  rng = np.random.default_rng(0)
  ids = rng.integers(0, DEMO_VOCAB_SIZE, (2, 12))
  mask = np.ones_like(ids)
  mask[1, :4] = 0  # left padding
  with torch.no_grad():
    ref = hf(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).logits.numpy()
  ours = np.asarray(model(input_ids=ids, attention_mask=mask))
  real = mask.astype(bool)
  err = np.abs(ours[real] - ref[real]).max() / np.abs(ref[real]).max()
  assert err < 1e-4, err


TRIPLES = [
  ("What colour is the ball?", "The ball is red.", "red"),
  ("Who enters the room?", "A man in a blue coat.", "a woman"),
  ("What happens?", "x", "y"),
]


def hf_reply(hf, tokenizer, judge, triple):
  ids = judge.prompt_ids(*triple)
  eos = [tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")]
  with torch.no_grad():
    out = hf.generate(
      torch.as_tensor(ids[None].astype(np.int64)),
      max_new_tokens=R.JUDGE_MAX_NEW_TOKENS,
      do_sample=False,
      eos_token_id=eos,
      pad_token_id=eos[1],
    )
  return tokenizer.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True)


@pytest.fixture(scope="module")
def hf_replies(judge_dir):
  path, hf, tokenizer = judge_dir
  judge = ModelJudge(path)
  return [hf_reply(hf, tokenizer, judge, t) for t in TRIPLES]


def test_judge_reply_equals_transformers_greedy(judge_dir, hf_replies):
  path, hf, tokenizer = judge_dir
  judge = ModelJudge(path, batch_size=2)  # a partial second batch, rows of unequal length
  messages_text = tokenizer.decode(
    judge.prompt_ids(*TRIPLES[0]).tolist(), skip_special_tokens=False
  )
  assert messages_text.startswith("<|im_start|>system\n" + R.JUDGE_SYSTEM_PROMPT + "<|im_end|>")
  assert judge.replies(TRIPLES) == hf_replies
  assert len(set(hf_replies)) == len(TRIPLES)  # the prompts matter


def test_judge_cli_writes_vqa_scores(judge_dir, hf_replies, tmp_path):
  path, hf, tokenizer = judge_dir
  base = {"fps": 1.0, "frame_count": 10, "domain": "d", "timestamps": [1, 2], "bboxes": []}
  records = [
    {**base, "vid": str(i), "question": q, "answer": g, "answer_vqa": c}
    for i, (q, g, c) in enumerate(TRIPLES)
  ]
  records.append({**base, "vid": "empty", "question": "q", "answer": "a", "answer_vqa": ""})
  results, out = tmp_path / "results.json", tmp_path / "metrics.json"
  results.write_text(json.dumps(records))
  parser = argparse.ArgumentParser(prog="o3jax")
  cli.add_parser(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(
    ["eval", "vstar", "--results", str(results), "--judge", path, "--out", str(out)]
  )
  assert args.func(args) == 0
  written = json.loads(results.read_text())
  for record, reply in zip(written, hf_replies):
    assert record["vqa_judge_reply"] == reply
    assert record["vqa_score"] == vstar_protocol.parse_judge_reply(reply)
  assert "vqa_score" not in written[3]
  m = json.loads(out.read_text())
  assert path in m["settings"]["judge"] and "reference prompt" in m["settings"]["judge"]
  expected = [max(r["vqa_score"], 0) if r["vqa_score"] != -1 else None for r in written[:3]]
  assert [s["vqa_score"] for s in m["per_sample"][:3]] == expected
