"""llama.cpp's decode speed on GGUF files (llama-cpp-python): for each file, REPEATS greedy generations of TOKENS
tokens after a short prompt; prints the median tokens/s of each file, one JSON line per file. Time on a quiet machine.

usage: llamacpp_decode.py FILE.gguf [FILE.gguf ...] [--lora A.gguf] [--tokens 128] [--repeats 3] [--threads 2]
"""
import argparse
import json
import statistics
import time

from llama_cpp import Llama

p = argparse.ArgumentParser()
p.add_argument("files", nargs="+")
p.add_argument("--lora")
p.add_argument("--tokens", type=int, default=128)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
for f in a.files:
    kw = dict(model_path=f, n_ctx=512, n_threads=a.threads, verbose=False)
    if a.lora and f.endswith(".gguf") and "lora" not in f:
        kw["lora_path"] = a.lora
    llm = Llama(**kw)
    rates = []
    for _ in range(a.repeats + 1):  # the first run warms the caches and is not counted
        llm.reset()
        prompt = llm.tokenize(b"Once upon a time", add_bos=False)
        llm.eval(prompt)
        t0 = time.time()
        for _ in range(a.tokens):
            tok = llm.sample(top_k=1, temp=0.0)
            llm.eval([tok])
        rates.append(a.tokens / (time.time() - t0))
    print(json.dumps({"file": f, "tokens_per_s": statistics.median(rates[1:]), "runs": rates[1:]}))
