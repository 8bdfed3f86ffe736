"""Diagnostic: llama.cpp's own intermediate tensors of one prompt (its eval callback), for finding where llama.cpp's
run of a quantized GGUF parts from saliq's. Prints, for the first block's q projection — with --products, for every
product of every block (q, k, v, o, gate, up, down) and the head — how far llama.cpp's output is from the product of
its own input with the file's dequantized weight, float and with the 8-bit activations saliq emulates
(`eval --emulate-llamacpp`). With --dump DIR, writes every tensor named in --names as .npy.

usage: llamacpp_tensors.py FILE.gguf [--prompt TEXT | --text wiki.test.raw --tokens 512] [--products] [--check REL]
                           [--names attn_norm-0,Qcur-0,...] [--dump DIR]
(python with llama-cpp-python, gguf and numpy; tensor names as llama.cpp's graph calls them: l_out-N, ffn_out-N, ...)
"""
import argparse
import ctypes
import glob
import os

import gguf
import numpy as np

import llama_cpp
import llama_cpp.llama_cpp as C
from llamacpp_defaults import override_defaults

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--prompt", default="Once upon a time there was a little girl who liked to play in the park")
p.add_argument("--text", help="instead of --prompt: the first --tokens tokens of this WikiText-2 file, joined as saliq")
p.add_argument("--tokens", type=int, default=512)
p.add_argument("--products", action="store_true", help="check every product of every block and the head")
p.add_argument("--names", default="attn_norm-0,Qcur-0")
p.add_argument("--dump")
p.add_argument("--check", type=float, metavar="REL", help="exit 1 if a product is further than REL from the emulation")
a = p.parse_args()

base = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))[0])
base.ggml_get_name.restype, base.ggml_get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
base.ggml_get_data.restype, base.ggml_get_data.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
base.ggml_nelements.restype, base.ggml_nelements.argtypes = ctypes.c_int64, [ctypes.c_void_p]
reader = gguf.GGUFReader(a.model)
tensors = {t.name: t for t in reader.tensors}
n_layer = int(next(f.parts[f.data[0]][0] for k, f in reader.fields.items() if k.endswith(".block_count")))
# (input, output, weight) of each product as llama.cpp's LLaMA graph names them
products = [(x, y % l, w % l) for l in range(n_layer) for x, y, w in (
    ("attn_norm-%d" % l, "Qcur-%d", "blk.%d.attn_q.weight"), ("attn_norm-%d" % l, "Kcur-%d", "blk.%d.attn_k.weight"),
    ("attn_norm-%d" % l, "Vcur-%d", "blk.%d.attn_v.weight"), ("kqv_out-%d" % l, "attn_out-%d", "blk.%d.attn_output.weight"),
    ("ffn_norm-%d" % l, "ffn_gate-%d", "blk.%d.ffn_gate.weight"), ("ffn_norm-%d" % l, "ffn_up-%d", "blk.%d.ffn_up.weight"),
    ("ffn_swiglu-%d" % l, "ffn_out-%d", "blk.%d.ffn_down.weight"))] if a.products else \
    [("attn_norm-0", "Qcur-0", "blk.0.attn_q.weight")]
if a.products:  # the head: the final norm's output against the logits (a tied head reads token_embd)
    products.append(("result_norm", "result_output", "output.weight" if "output.weight" in tensors else "token_embd.weight"))
want, got = set(a.names.split(",")) | {n for x, y, _ in products for n in (x, y)}, {}


@C.ggml_backend_sched_eval_callback
def observe(t, ask, _):
    name = base.ggml_get_name(t).decode()
    if ask:
        return name in want
    if name in want and name not in got:  # the first pass (llama.cpp may evaluate again); F32 tensors only
        # ne[0..3] follow the type and the buffer pointer in struct ggml_tensor
        ne = list((ctypes.c_int64 * 4).from_address(t + 16))
        n = base.ggml_nelements(t)
        flat = np.ctypeslib.as_array((ctypes.c_float * n).from_address(base.ggml_get_data(t))).copy()
        got[name] = flat.reshape(-1, ne[0])
    return True


override_defaults(context={"cb_eval": observe})
n_ctx = max(256, a.tokens) if a.text else 256
llm = llama_cpp.Llama(model_path=a.model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=2, logits_all=True,
                      verbose=False, type_k=0, type_v=0)
if a.text:
    from wikitext2 import read_text  # noqa: E402
    prompt = llm.tokenize(read_text(a.text, True).encode(), add_bos=False, special=False)[:a.tokens]
else:
    prompt = llm.tokenize(a.prompt.encode(), add_bos=True)
llm.eval(prompt)
if a.dump:
    os.makedirs(a.dump, exist_ok=True)
    for name, x in got.items():
        if name in a.names.split(","):
            np.save(os.path.join(a.dump, name + ".npy"), x)
from ggml_matmul_check import emulate_input  # noqa: E402 (runs its module-level setup: libggml loaded once more)
worst = {}
for xin, yout, wname in products:
    if xin not in got or yout not in got:
        print("not in llama.cpp's graph: %s / %s" % (xin, yout))
        continue
    t = tensors[wname]
    rows, kind = int(t.shape[1]), t.tensor_type.name
    W = gguf.dequantize(t.data, t.tensor_type).reshape(rows, -1).astype(np.float64)
    x = got[xin].reshape(-1, W.shape[1])
    y = got[yout].reshape(x.shape[0], -1)[:, :rows]
    f = x.astype(np.float64) @ W.T
    e = emulate_input(x, kind).astype(np.float64) @ W.T
    s = np.abs(f).max()
    de, df = np.abs(y - e).max() / s, np.abs(y - f).max() / s
    if not a.products:
        print("%s (%s), %d tokens: |llama.cpp - emulated| %.2g, |llama.cpp - float| %.2g of the scale"
              % (wname, kind, x.shape[0], de, df))
    key = "blocks" if wname.startswith("blk.") else "head"
    e_worst, f_range, count = worst.get(key, ((0.0, ""), (1.0, 0.0), 0))
    worst[key] = (max(e_worst, (de, wname)), (min(f_range[0], df), max(f_range[1], df)), count + 1)
for key, ((de, wname), (f_lo, f_hi), count) in sorted(worst.items()):
    print("%s: %d products of %d tokens, largest |llama.cpp - emulated| %.2g of the output's scale (%s); "
          "|llama.cpp - float| %.2g to %.2g" % (key, count, len(prompt), de, wname, f_lo, f_hi))
if a.check is not None and not (worst and all(de <= a.check for (de, _), _, _ in worst.values())):
    raise SystemExit(1)
