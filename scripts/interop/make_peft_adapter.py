"""A random PEFT LoRA adapter (r, lora_alpha) on every linear of a LLaMA folder, written into the folder: what the
GGUF LoRA adapter export is checked with when no trained one is at hand.

usage: make_peft_adapter.py FOLDER [--rank 4] [--alpha 8] [--std 0.02] [--seed 0]
"""
import argparse
import json

import numpy as np
from safetensors.numpy import save_file

p = argparse.ArgumentParser()
p.add_argument("folder")
p.add_argument("--rank", type=int, default=4)
p.add_argument("--alpha", type=float, default=8.0)
p.add_argument("--std", type=float, default=0.02)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
c = json.load(open(a.folder + "/config.json"))
H, I, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
heads, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
hd = c.get("head_dim") or H // heads
shapes = {"self_attn.q_proj": (heads * hd, H), "self_attn.k_proj": (kv * hd, H), "self_attn.v_proj": (kv * hd, H),
          "self_attn.o_proj": (H, heads * hd), "mlp.gate_proj": (I, H), "mlp.up_proj": (I, H), "mlp.down_proj": (H, I)}
rng = np.random.default_rng(a.seed)
t = {}
for layer in range(L):
    for name, (out, inp) in shapes.items():
        key = "base_model.model.model.layers.%d.%s" % (layer, name)
        t[key + ".lora_A.weight"] = (rng.standard_normal((a.rank, inp)) * a.std).astype(np.float32)
        t[key + ".lora_B.weight"] = (rng.standard_normal((out, a.rank)) * a.std).astype(np.float32)
save_file(t, a.folder + "/adapter_model.safetensors", metadata={"format": "pt"})
json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": a.rank, "lora_alpha": a.alpha, "lora_dropout": 0.0,
           "target_modules": [n.split(".")[-1] for n in shapes], "bias": "none", "use_rslora": False},
          open(a.folder + "/adapter_config.json", "w"), indent=2)
print(json.dumps({"linears": len(t) // 2, "rank": a.rank, "alpha": a.alpha}))
