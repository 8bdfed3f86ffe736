"""llama.cpp's own quantizer (llama-quantize's API, through llama-cpp-python) on a GGUF: the peer files saliq's
--grid exports are compared with.

usage: llama_quantize.py IN.gguf OUT.gguf TYPE [--threads N] [--f16-embeddings]     TYPE: Q2_K, Q3_K_S, Q4_K_S, Q4_K_M, Q4_0, Q4_1, Q8_0
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
a = p.parse_args()
ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + a.type)
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = ftype
params.nthread = a.threads
if a.f16_embeddings:
    params.output_tensor_type = 1  # GGML_TYPE_F16
    params.token_embedding_type = 1
t0 = time.time()
rc = llama_cpp.llama_model_quantize(a.inp.encode(), a.out.encode(), ctypes.byref(params))
print(json.dumps({"rc": rc, "type": a.type, "seconds": time.time() - t0, "bytes": os.path.getsize(a.out) if rc == 0 else 0}))
raise SystemExit(rc)
