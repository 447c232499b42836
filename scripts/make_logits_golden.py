#!/usr/bin/env python3
"""Make the golden next-token log-probabilities that tests/test_logits.c checks.

Reference: Hugging Face transformers loading the same GGUF file (gguf_file=...),
which dequantizes every weight to float32 and runs its own Llama/Qwen2 code.
For each prompt we store the token ids (tokenized by transformers' tokenizer
built from the GGUF vocabulary), the top-10 log-probabilities at several
positions, and 64 greedy tokens from model.generate(do_sample=False).

usage: scripts/make_logits_golden.py MODEL.gguf OUT.txt
Needs: pip install torch transformers accelerate gguf
Output format (text, one record per line):
  prompt NAME N_IDS
  ids ID...
  check POS TOP1 ID:LOGPROB x10      (POS = index of the token whose next-token
                                      distribution is checked)
  greedy N ID...
"""
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def war_and_peace(start_chars, n_chars):
    path = os.path.join(ROOT, "..", "shared", "data", "war_and_peace.txt")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text[start_chars:start_chars + n_chars]


def main():
    model_path, out_path = sys.argv[1], sys.argv[2]
    d, name = os.path.split(os.path.abspath(model_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "What is the longest non-stop flight of any bird?"}],
        tokenize=False, add_generation_prompt=True)
    prompts = [
        ("short", "The capital of France is", 64),
        ("chat", chat, 64),
        ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", 64),
        ("long", war_and_peace(200000, 11000), 64),
    ]
    with open(out_path, "w") as out:
        for pname, text, n_greedy in prompts:
            ids = tok(text, add_special_tokens=False).input_ids
            if pname == "long":
                ids = ids[:2100]
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = model(x).logits[0].double()
            logprobs = torch.log_softmax(logits, dim=-1)
            n = len(ids)
            positions = sorted(set([n - 1] + ([0, 1, 7, 100, 511, 1024, 1500, 2000] if n > 1000 else [0, n // 2])))
            positions = [p for p in positions if p < n]
            out.write(f"prompt {pname} {n}\n")
            out.write("ids " + " ".join(map(str, ids)) + "\n")
            for p in positions:
                top = torch.topk(logprobs[p], 10)
                pairs = " ".join(f"{i}:{v:.6f}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
                out.write(f"check {p} {top.indices[0].item()} {pairs}\n")
            with torch.no_grad():
                gen = model.generate(x, max_new_tokens=n_greedy, do_sample=False,
                                     attention_mask=torch.ones_like(x), pad_token_id=0)
            new = gen[0, n:].tolist()
            out.write(f"greedy {len(new)} " + " ".join(map(str, new)) + "\n")
            print(pname, n, "tokens; greedy:", repr(tok.decode(new)), file=sys.stderr)


if __name__ == "__main__":
    main()
