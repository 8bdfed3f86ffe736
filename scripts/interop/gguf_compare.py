"""Reads a GGUF file with llama.cpp's own Python reader (the `gguf` package) and compares it with another GGUF
(the reference) tensor for tensor and key for key. Prints one JSON line; exits 1 on a difference in any tensor."""
import json, sys

import gguf
import numpy as np

ours, ref = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
to = {t.name: t for t in ours.tensors}
tr = {t.name: t for t in ref.tensors}
worst, mismatched = 0.0, []
for name, t in tr.items():
    if name not in to or list(to[name].shape) != list(t.shape):
        mismatched.append(name)
        continue
    d = float(np.abs(np.asarray(to[name].data, dtype=np.float64) - np.asarray(t.data, dtype=np.float64)).max())
    worst = max(worst, d)


def value(reader, key):
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i].tolist() for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    return f.parts[f.data[0]].tolist()


keys = [k for k in ref.fields if not k.startswith("GGUF.")]
differing = [k for k in keys if k in ours.fields and value(ours, k) != value(ref, k)]
missing = [k for k in keys if k not in ours.fields]
print(json.dumps({"tensors": len(to), "reference_tensors": len(tr), "missing_or_reshaped": mismatched,
                  "max_abs_diff": worst, "keys_differing": differing, "keys_missing": missing,
                  "gguf": getattr(gguf, "__version__", "?")}))
sys.exit(1 if mismatched or worst > 0 else 0)
