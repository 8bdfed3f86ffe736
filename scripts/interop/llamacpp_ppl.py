"""llama.cpp's perplexity of a GGUF (optionally with a GGUF LoRA adapter) under saliq's protocol: the text
tokenized by the file's own vocabulary (BOS only where the vocabulary adds one), non-overlapping windows of SEQLEN,
mean next-token cross-entropy over every predicted position, the first MAX_WINDOWS windows. Also a greedy
continuation of a prompt. Prints one JSON line. Uses llama-cpp-python (llama.cpp built from PyPI's source).

usage: llamacpp_ppl.py --model M.gguf [--lora A.gguf] --text FILE [--wikitext2] --seqlen 512 --max-windows 40
"""
import argparse
import json
import math
import time

import numpy as np
from llama_cpp import Llama

from llamacpp_defaults import override_defaults
from wikitext2 import read_text

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--lora")
p.add_argument("--text", required=True)
p.add_argument("--wikitext2", action="store_true", help="the file is wiki.test.raw: rows joined as saliq joins them")
p.add_argument("--seqlen", type=int, default=512)
p.add_argument("--max-windows", type=int, default=40)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--prompt", default="Once upon a time")
p.add_argument("--gen", type=int, default=24)
p.add_argument("--no-repack", action="store_true",
               help="llama.cpp's plain kernels instead of its repacked (interleaved) weights")
p.add_argument("--f16-kv", action="store_true", help="llama.cpp's default fp16 KV cache and flash attention")
a = p.parse_args()

if a.no_repack:
    override_defaults(model={"use_extra_bufts": False})

text = read_text(a.text, a.wikitext2)
# F32 KV cache and no flash attention: llama.cpp's defaults keep K and V in fp16, which is not the model saliq runs.
kw = dict(model_path=a.model, n_ctx=a.seqlen, n_batch=a.seqlen, n_threads=a.threads, logits_all=True, verbose=False,
          flash_attn=a.f16_kv, type_k=1 if a.f16_kv else 0, type_v=1 if a.f16_kv else 0)
if a.lora:
    kw["lora_path"] = a.lora
llm = Llama(**kw)
add_bos = llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else False
tokens = llm.tokenize(text.encode("utf-8"), add_bos=bool(add_bos), special=False)
n = min(a.max_windows, len(tokens) // a.seqlen)
nll, count, window_nll = 0.0, 0, []
t0 = time.time()
for w in range(n):
    window = tokens[w * a.seqlen:(w + 1) * a.seqlen]
    llm.reset()
    llm.eval(window)
    logits = np.asarray(llm.scores[:a.seqlen], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    window_nll.append(-float(sum(logp[i, window[i + 1]] for i in range(a.seqlen - 1))))
    nll += window_nll[-1]
    count += a.seqlen - 1
seconds = time.time() - t0
llm.reset()
out = llm.create_completion(a.prompt, max_tokens=a.gen, temperature=0.0, top_k=1)
print(json.dumps({"ppl": math.exp(nll / count), "windows": n, "tokens": count, "seconds": seconds,
                  "greedy": out["choices"][0]["text"], "first_tokens": tokens[:8], "window_nll": window_nll}))
