"""llama.cpp's own quantizer (llama-quantize's API, through llama-cpp-python) on a GGUF: the peer files saliq's
--grid exports are compared with.

usage: llama_quantize.py IN.gguf OUT.gguf TYPE [--threads N] [--f16-embeddings] [--imatrix M.gguf]
       TYPE: Q2_K, Q3_K_S, Q4_K_S, Q4_K_M, Q4_0, Q4_1, Q8_0
--imatrix: an importance matrix in llama-imatrix's GGUF layout (saliq saliency --metric imatrix writes one), read
with gguf-py and handed to llama_model_quantize as llama-quantize --imatrix would: each matrix's in_sum2 / counts.
"""
import argparse
import ctypes
import json
import os
import time

import llama_cpp

p = argparse.ArgumentParser()
p.add_argument("inp")
p.add_argument("out")
p.add_argument("type")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--f16-embeddings", action="store_true",
               help="token embeddings and output in F16 (as saliq's export with --dtype fp16), so only linears differ")
p.add_argument("--imatrix", help="llama-imatrix GGUF (in_sum2 / counts per weight)")
a = p.parse_args()
ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + a.type)
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = ftype
params.nthread = a.threads
if a.f16_embeddings:
    params.output_tensor_type = 1  # GGML_TYPE_F16
    params.token_embedding_type = 1
keep = []  # the arrays must outlive the call
if a.imatrix:
    import numpy as np
    from gguf import GGUFReader

    r = GGUFReader(a.imatrix)
    t = {x.name: np.asarray(x.data, dtype=np.float32).reshape(-1) for x in r.tensors}
    bases = sorted(n[: -len(".in_sum2")] for n in t if n.endswith(".in_sum2"))
    entries = (llama_cpp.llama_model_imatrix_data * (len(bases) + 1))()  # a null name ends the array
    for i, b in enumerate(bases):
        values = np.ascontiguousarray(t[b + ".in_sum2"] / max(float(t[b + ".counts"][0]), 1.0), dtype=np.float32)
        name = b.encode()
        keep += [values, name]
        entries[i].name = name
        entries[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entries[i].size = values.size
    keep.append(entries)
    params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
t0 = time.time()
rc = llama_cpp.llama_model_quantize(a.inp.encode(), a.out.encode(), ctypes.byref(params))
print(json.dumps({"rc": rc, "type": a.type, "imatrix": a.imatrix, "seconds": time.time() - t0, "bytes": os.path.getsize(a.out) if rc == 0 else 0}))
raise SystemExit(rc)
