"""ggml's own matrix product of a GGUF tensor (through llama-cpp-python's libggml: ggml_mul_mat on the CPU backend)
against saliq's emulation of llama.cpp's 8-bit activations (src/ops/ggml_activations.cpp, transcribed here): the
input rounded to the type's vec_dot_type, Q8_0 (32, fp16 scale) or Q8_K (256, fp32 scale), times the dequantized
weight. Inputs: Gaussian with three outlier channels, or with --embeddings the file's normed token embeddings (for
tensors whose input width is the hidden size). Prints the largest differences over the output's scale; exits 1
when the emulation is off by more than 1e-5 of it.

usage: ggml_matmul_check.py FILE.gguf TENSOR [TOKENS] [--embeddings]   (python with gguf and numpy)
"""
import ctypes
import glob
import os
import sys

import gguf
import numpy as np

import llama_cpp

libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
base = ctypes.CDLL(glob.glob(os.path.join(libdir, "libggml-base.so"))[0], mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(glob.glob(os.path.join(libdir, "libggml-cpu.so"))[0], mode=ctypes.RTLD_GLOBAL)


class InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


P = ctypes.c_void_p
base.ggml_init.restype, base.ggml_init.argtypes = P, [InitParams]
base.ggml_new_tensor_2d.restype = P
base.ggml_new_tensor_2d.argtypes = [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
base.ggml_mul_mat.restype, base.ggml_mul_mat.argtypes = P, [P, P, P]
base.ggml_new_graph.restype, base.ggml_new_graph.argtypes = P, [P]
base.ggml_build_forward_expand.argtypes = [P, P]
base.ggml_get_data.restype, base.ggml_get_data.argtypes = P, [P]
base.ggml_free.argtypes = [P]
cpu.ggml_graph_compute_with_ctx.argtypes = [P, P, ctypes.c_int]
cpu.ggml_cpu_init()


def emulate(x, k_quant):
    """Rows of x rounded as ggml-cpu's quantize_row_q8_0 / quantize_row_q8_K round them."""
    block = 256 if k_quant else 32
    xb = x.astype(np.float32).reshape(-1, block)
    amax = np.abs(xb).max(1, keepdims=True)
    safe = np.where(amax > 0, amax, np.float32(1))
    iscale = np.where(amax > 0, np.float32(127) / safe, np.float32(0)).astype(np.float32)
    q = np.round(xb * iscale)  # half to even, as _mm256_round_ps
    if k_quant:
        d = np.where(amax > 0, np.float32(1) / np.where(iscale > 0, iscale, np.float32(1)), np.float32(0))
    else:
        d = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
    return (q * d.astype(np.float32)).reshape(x.shape)


def emulate_input(x, type_name):
    """x as llama.cpp's CPU kernels hand it to a product with a weight of GGUF type `type_name` (its vec_dot_type):
    fp16 for F16, unchanged for F32/BF16, else the 8-bit rounding above (Q8_K for the k-quants)."""
    if type_name == "F16":
        return x.astype(np.float16).astype(np.float32)
    if type_name in ("F32", "BF16"):
        return x
    return emulate(x, type_name.endswith("_K"))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    reader = gguf.GGUFReader(args[0])
    tensors = {t.name: t for t in reader.tensors}
    t = tensors[args[1]]
    T = int(args[2]) if len(args) > 2 else 512
    n, rows = int(t.shape[0]), int(t.shape[1])
    W = gguf.dequantize(t.data, t.tensor_type).reshape(rows, n).astype(np.float64)
    rng = np.random.default_rng(0)
    if "--embeddings" in sys.argv:
        emb = gguf.dequantize(tensors["token_embd.weight"].data, tensors["token_embd.weight"].tensor_type)
        emb = emb.astype(np.float32).reshape(-1, n)
        g = np.asarray(tensors["blk.0.attn_norm.weight"].data, dtype=np.float32)
        e = emb[rng.integers(0, emb.shape[0], T)]
        x = (e / np.sqrt((e * e).mean(1, keepdims=True) + 1e-5) * g).astype(np.float32)
    else:
        x = rng.standard_normal((T, n)).astype(np.float32)
        x[:, rng.integers(0, n, 3)] *= 50
    ctx = base.ggml_init(InitParams(2 * (W.size * 4 + x.nbytes + T * rows * 4) + (64 << 20), None, False))
    a = base.ggml_new_tensor_2d(ctx, int(t.tensor_type), n, rows)
    raw = np.ascontiguousarray(t.data)
    ctypes.memmove(base.ggml_get_data(a), raw.ctypes.data, raw.nbytes)
    b = base.ggml_new_tensor_2d(ctx, 0, n, T)  # GGML_TYPE_F32
    ctypes.memmove(base.ggml_get_data(b), x.ctypes.data, x.nbytes)
    c = base.ggml_mul_mat(ctx, a, b)
    graph = base.ggml_new_graph(ctx)
    base.ggml_build_forward_expand(graph, c)
    cpu.ggml_graph_compute_with_ctx(ctx, graph, 2)
    out = np.ctypeslib.as_array((ctypes.c_float * (T * rows)).from_address(base.ggml_get_data(c))).reshape(T, rows)
    out = out.astype(np.float64).copy()
    base.ggml_free(ctx)
    k_quant = t.tensor_type.name.endswith("_K")
    scale = np.abs(x.astype(np.float64) @ W.T).max()
    emulated = np.abs(out - emulate(x, k_quant).astype(np.float64) @ W.T).max() / scale
    plain = np.abs(out - x.astype(np.float64) @ W.T).max() / scale
    print("%s %s, %d tokens: |ggml - emulated| %.2g, |ggml - float| %.2g of the output's scale"
          % (t.name, t.tensor_type.name, T, emulated, plain))
    sys.exit(0 if emulated <= 1e-5 else 1)


if __name__ == "__main__":
    main()
