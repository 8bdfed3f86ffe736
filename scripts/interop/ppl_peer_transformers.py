"""Perplexity of a quantized Hugging Face folder as transformers loads it (the folder's own quantization_config picks
the peer's kernels: AutoRound, GPTQModel, compressed-tensors), under saliq's protocol: the text tokenized by the
folder's tokenizer (BOS only where the tokenizer adds one), non-overlapping windows of SEQLEN, mean next-token NLL
over every position but each window's first, the first MAX_WINDOWS windows. The cross-check of saliq's reading of a
peer's folder: saliq's `eval` on the same folder must agree. Prints one JSON line.

usage: ppl_peer_transformers.py --model FOLDER --text wiki.test.raw [--wikitext2] --seqlen 512 --max-windows 40
"""
import argparse
import json
import math
import sys
import time

import torch
import transformers

from wikitext2 import read_text

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--text", required=True)
p.add_argument("--wikitext2", action="store_true", help="the file is wiki.test.raw: rows joined as saliq joins them")
p.add_argument("--seqlen", type=int, default=512)
p.add_argument("--max-windows", type=int, default=40)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--autoround-torch", action="store_true",
               help="dequantize a GPTQ-packed (auto_round:auto_gptq) folder with AutoRound's own pure-PyTorch "
                    "QuantLinear (auto_round_extension.torch.qlinear_torch_zp: zero points stored minus one) into a "
                    "dense transformers model; AutoRound 0.16's CPU backends serve that packing only for symmetric "
                    "codes, and its fallback fails on folders without activation settings")
p.add_argument("--decompress", action="store_true",
               help="a compressed-tensors folder (llm-compressor's): decompressed to dense weights by the library as "
                    "transformers loads it (CompressedTensorsConfig(run_compressed=False)); transformers cannot run "
                    "its packed asymmetric group-wise layout compressed")
a = p.parse_args()
torch.set_num_threads(a.threads)

text = read_text(a.text, a.wikitext2)
tok = transformers.AutoTokenizer.from_pretrained(a.model)
ids = tok(text, add_special_tokens=True)["input_ids"]


def dense_from_autoround(folder):
    """A dense LlamaForCausalLM whose quantized linears are what AutoRound's torch QuantLinear computes."""
    import glob
    import safetensors.torch
    from auto_round_extension.torch.qlinear_torch_zp import QuantLinear

    config = transformers.AutoConfig.from_pretrained(folder)
    q = config.quantization_config
    q = q if isinstance(q, dict) else q.to_dict()
    bits, group = int(q["bits"]), int(q["group_size"])
    del config.quantization_config
    state = {}
    for f in sorted(glob.glob(folder + "/*.safetensors")):
        state.update(safetensors.torch.load_file(f))
    dense = {}
    for name in list(state):
        if not name.endswith(".qweight"):
            continue
        prefix = name[:-len(".qweight")]
        qweight = state.pop(prefix + ".qweight")
        outf, inf = qweight.shape[1], qweight.shape[0] * 32 // bits
        lin = QuantLinear(bits, group, inf, outf, bias=False, g_idx=(prefix + ".g_idx") in state)
        lin.qweight = qweight
        lin.qzeros = state.pop(prefix + ".qzeros")
        lin.scales = state.pop(prefix + ".scales")
        if (prefix + ".g_idx") in state:
            lin.g_idx = state.pop(prefix + ".g_idx")
        with torch.no_grad():  # y = x W^T: the identity's rows give W^T
            dense[prefix + ".weight"] = lin(torch.eye(inf, dtype=torch.float32)).t().contiguous()
    dense.update({k: v.float() for k, v in state.items()})
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if config.tie_word_embeddings and "lm_head.weight" not in dense:
        dense["lm_head.weight"] = dense["model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(dense, strict=False)
    missing = [m for m in missing if "rotary_emb" not in m]
    if missing or unexpected:
        sys.exit("ppl_peer_transformers: missing %s, unexpected %s" % (missing[:4], unexpected[:4]))
    return model


if a.autoround_torch:
    model = dense_from_autoround(a.model)
    linear = "auto_round_extension.torch.qlinear_torch_zp.QuantLinear, dequantized"
elif a.decompress:
    from transformers import CompressedTensorsConfig

    model = transformers.AutoModelForCausalLM.from_pretrained(
        a.model, dtype=torch.float32, device_map="cpu", quantization_config=CompressedTensorsConfig(run_compressed=False))
    linear = "compressed-tensors, decompressed on load"
else:
    model = transformers.AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, device_map="cpu")
    q_proj = next(m for name, m in model.named_modules() if name.endswith("layers.0.self_attn.q_proj"))
    linear = type(q_proj).__module__ + "." + type(q_proj).__name__
model.eval()
n = min(a.max_windows, len(ids) // a.seqlen)
nll, count = 0.0, 0
t0 = time.time()
with torch.no_grad():
    for w in range(n):
        x = torch.tensor([ids[w * a.seqlen:(w + 1) * a.seqlen]])
        logits = model(x).logits[0, :-1].double()
        nll += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
        count += a.seqlen - 1
print(json.dumps({"ppl": math.exp(nll / count), "nll_sum": nll, "windows": n, "tokens_scored": count,
                  "seconds": time.time() - t0, "linear": linear,
                  "transformers": transformers.__version__, "first_tokens": ids[:8]}))
