"""Perplexity of a Hugging Face folder with transformers, by saliq's protocol (GPTQ's): [BOS] + encode(text), cut
into non-overlapping windows of SEQLEN, mean next-token NLL over every position but each window's first.
Optionally with PEFT adapters (AutoPeftModelForCausalLM / PeftModel). Prints one JSON line."""
import argparse, json, math, sys

import sentencepiece as spm
import torch
import transformers

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--tokenizer", required=True)
p.add_argument("--text", required=True)
p.add_argument("--seqlen", type=int, default=128)
p.add_argument("--max-windows", type=int, default=8)
p.add_argument("--adapter", help="a PEFT adapter folder to load onto --model with PeftModel")
a = p.parse_args()

sp = spm.SentencePieceProcessor(model_file=a.tokenizer)
ids = [sp.bos_id()] + sp.encode(open(a.text, encoding="utf-8").read())
n = min(len(ids) // a.seqlen, a.max_windows)
model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
if a.adapter:
    import peft
    model = peft.PeftModel.from_pretrained(model, a.adapter)
model.eval()
total = 0.0
with torch.no_grad():
    for w in range(n):
        x = torch.tensor([ids[w * a.seqlen:(w + 1) * a.seqlen]])
        logits = model(x).logits.float()
        total += torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item()
print(json.dumps({"ppl": math.exp(total / (n * (a.seqlen - 1))), "windows": n, "transformers": transformers.__version__}))
