"""Diagnostic: how sensitive a GGUF's model is to the last bits of its arithmetic, float against llama.cpp's 8-bit
activations. Runs one WikiText-2 window through an independent numpy forward of the file (LLaMA architecture, weights
dequantized by gguf-py) twice per mode — as is, and with the embeddings changed by a relative 1e-7 — and prints each
run's mean loss beside llama.cpp's own. With 8-bit activations a 1e-7 change flips roundings and moves the window's
loss by ~1e-3; the float model moves by ~1e-7. That is why llama.cpp and `saliq eval --emulate-llamacpp` must be
compared over many windows (ppl_paired.py), not a few.

usage: emulation_sensitivity.py FILE.gguf [--window 0] [--seqlen 512] [--text wiki.test.raw]
(python with llama-cpp-python, gguf and numpy)
"""
import argparse
import math
import os

import gguf
import numpy as np
from llama_cpp import Llama

from ggml_matmul_check import emulate_input
from wikitext2 import read_text

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--window", type=int, default=0)
p.add_argument("--seqlen", type=int, default=512)
p.add_argument("--text", default=os.path.join(os.environ.get("SALIQ_DATA_DIR", "../shared/data"),
                                              "text/wikitext2/wiki.test.raw"))
a = p.parse_args()

reader = gguf.GGUFReader(a.model)
tensors = {t.name: t for t in reader.tensors}


def meta(key):
    field = reader.fields[key]
    return field.parts[field.data[0]][0]


n_layer = int(meta("llama.block_count"))
n_head, n_kv = int(meta("llama.attention.head_count")), int(meta("llama.attention.head_count_kv"))
eps = float(meta("llama.attention.layer_norm_rms_epsilon"))
theta = float(meta("llama.rope.freq_base"))
T = a.seqlen

llm = Llama(model_path=a.model, n_ctx=T, n_batch=T, n_threads=2, logits_all=True, verbose=False, type_k=0, type_v=0)
tokens = llm.tokenize(read_text(a.text, True).encode(), add_bos=False, special=False)
window = tokens[a.window * T:(a.window + 1) * T]
llm.eval(window)


def mean_loss(logits):
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -np.mean([logp[i, window[i + 1]] for i in range(T - 1)])


def matrix(name):
    t = tensors[name]
    return gguf.dequantize(t.data, t.tensor_type).reshape(int(t.shape[1]), -1).astype(np.float32), t.tensor_type.name


weights = {n: matrix(n) for n, t in tensors.items() if len(t.shape) > 1}
vectors = {n: np.asarray(gguf.dequantize(t.data, t.tensor_type), np.float32).reshape(-1)
           for n, t in tensors.items() if len(t.shape) == 1}


def product(x, name, emulated):
    w, kind = weights[name]
    if emulated:  # the input as ggml-cpu rounds it to the weight's vec_dot_type
        x = emulate_input(x, kind)
    return (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)


def rms_norm(x, g):
    return (x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + eps)).astype(np.float32) * g


def rope(x, heads):  # llama.cpp's normal mode on the GGUF's permuted q/k rows: pairs (2i, 2i+1)
    d = x.shape[1] // heads
    x = x.reshape(T, heads, d // 2, 2)
    angle = np.arange(T)[:, None] * theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)[None]
    c, s = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    return np.stack([x[..., 0] * c - x[..., 1] * s, x[..., 0] * s + x[..., 1] * c], -1).reshape(T, -1)


def forward(emulated, perturbation):
    h = weights["token_embd.weight"][0][window]
    h = (h * (1 + perturbation * np.random.default_rng(1).standard_normal(h.shape))).astype(np.float32)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for layer in range(n_layer):
        blk = "blk.%d." % layer
        y = rms_norm(h, vectors[blk + "attn_norm.weight"])
        q = rope(product(y, blk + "attn_q.weight", emulated), n_head).reshape(T, n_head, -1)
        k = rope(product(y, blk + "attn_k.weight", emulated), n_kv).reshape(T, n_kv, -1)
        v = product(y, blk + "attn_v.weight", emulated).reshape(T, n_kv, -1)
        d = q.shape[2]
        out = np.empty_like(q)
        for head in range(n_head):
            kv = head // (n_head // n_kv)
            score = q[:, head].astype(np.float64) @ k[:, kv].T / math.sqrt(d) + mask
            score = np.exp(score - score.max(1, keepdims=True))
            out[:, head] = (score / score.sum(1, keepdims=True)) @ v[:, kv]
        h = h + product(out.reshape(T, -1), blk + "attn_output.weight", emulated)
        y = rms_norm(h, vectors[blk + "ffn_norm.weight"])
        gate, up = product(y, blk + "ffn_gate.weight", emulated), product(y, blk + "ffn_up.weight", emulated)
        h = h + product((gate / (1 + np.exp(-gate)) * up).astype(np.float32), blk + "ffn_down.weight", emulated)
    head_name = "output.weight" if "output.weight" in weights else "token_embd.weight"
    return mean_loss(product(rms_norm(h, vectors["output_norm.weight"]), head_name, emulated))


print("window %d, %d tokens: llama.cpp %.6f nats/token" % (a.window, T, mean_loss(np.asarray(llm.scores[:T]))))
for emulated in (False, True):
    base, moved = forward(emulated, 0.0), forward(emulated, 1e-7)
    print("numpy %-8s %.6f; embeddings x (1 + 1e-7 N(0,1)): %.6f (moved %.1e)"
          % ("emulated" if emulated else "float", base, moved, abs(moved - base)))
