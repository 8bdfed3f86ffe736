"""gguf-py (llama.cpp's Python package) dequantizes saliq's bit-exact GGUF export to saliq's own values.

usage: gguf_blocks_check.py QUANT.gguf DENSE.gguf [ADAPTER.lora.gguf]
QUANT.gguf is `saliq export --format gguf` of a --grid folder (GGML blocks), DENSE.gguf the same folder exported
with --merge --no-adapter --dtype fp32 (saliq's dequantization). Every tensor of GGML blocks must match exactly; prints one JSON line.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def tensors(path):
    return {t.name: t for t in GGUFReader(path).tensors}


def values(t):
    shape = tuple(int(d) for d in reversed(list(t.shape)))
    return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)


quant, dense = tensors(sys.argv[1]), tensors(sys.argv[2])
types, worst, mismatched = {}, 0.0, []
for name, t in quant.items():
    types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    if t.tensor_type.name in ("F32", "F16", "BF16"):
        continue  # embeddings, norms, head: in the export's --dtype, not blocks
    a, b = values(t), values(dense[name])
    if a.shape != b.shape or not np.array_equal(a, b):
        mismatched.append(name)
        if a.shape == b.shape:
            worst = max(worst, float(np.abs(a - b).max()))
out = {"tensors": len(quant), "types": types, "mismatched": mismatched[:5], "n_mismatched": len(mismatched),
       "max_abs_diff": worst}
if len(sys.argv) > 3:
    r = GGUFReader(sys.argv[3])
    fields = {k: f.contents() for k, f in r.fields.items() if k.startswith(("general.", "adapter."))}
    out["adapter"] = {"fields": fields, "tensors": len(r.tensors),
                      "first": [(t.name, [int(d) for d in t.shape]) for t in r.tensors[:2]]}
print(json.dumps(out))
sys.exit(1 if mismatched else 0)
