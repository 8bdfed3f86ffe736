"""Diagnostic: llama.cpp's own intermediate tensors of one prompt (its eval callback), for finding where llama.cpp's
run of a quantized GGUF parts from saliq's. Prints, for the first block's q projection, how far llama.cpp's output is
from the product of its own input (`attn_norm-0`) with the file's dequantized weight, float and with the 8-bit
activations saliq emulates (`eval --emulate-llamacpp`). With --dump DIR, writes every tensor named in --names as .npy.

usage: llamacpp_tensors.py FILE.gguf [--prompt TEXT] [--names attn_norm-0,Qcur-0,...] [--dump DIR]
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
p.add_argument("--names", default="attn_norm-0,Qcur-0")
p.add_argument("--dump")
a = p.parse_args()

base = ctypes.CDLL(glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))[0])
base.ggml_get_name.restype, base.ggml_get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
base.ggml_get_data.restype, base.ggml_get_data.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
base.ggml_nelements.restype, base.ggml_nelements.argtypes = ctypes.c_int64, [ctypes.c_void_p]
want, got = set(a.names.split(",")), {}


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
llm = llama_cpp.Llama(model_path=a.model, n_ctx=256, n_batch=256, n_threads=2, logits_all=True, verbose=False,
                      type_k=0, type_v=0)
llm.eval(llm.tokenize(a.prompt.encode(), add_bos=True))
if a.dump:
    os.makedirs(a.dump, exist_ok=True)
    for name, x in got.items():
        np.save(os.path.join(a.dump, name + ".npy"), x)
if "attn_norm-0" in got and "Qcur-0" in got:
    from ggml_matmul_check import emulate  # noqa: E402 (runs its module-level setup: libggml loaded once more)
    t = {t.name: t for t in gguf.GGUFReader(a.model).tensors}["blk.0.attn_q.weight"]
    x = got["attn_norm-0"]
    rows = int(t.shape[1])
    W = gguf.dequantize(t.data, t.tensor_type).reshape(rows, -1).astype(np.float64)
    y = got["Qcur-0"].reshape(x.shape[0], -1)[:, :rows]
    f = x.astype(np.float64) @ W.T
    e = emulate(x, t.tensor_type.name.endswith("_K")).astype(np.float64) @ W.T
    s = np.abs(f).max()
    print("blk.0.attn_q (%s), %d tokens: |llama.cpp - emulated| %.2g, |llama.cpp - float| %.2g of the scale"
          % (t.tensor_type.name, x.shape[0], np.abs(y - e).max() / s, np.abs(y - f).max() / s))
