"""SmolLM2-135M as transformers reads it, for scripts/interop.sh: the GGUF itself (transformers' own GGUF loader:
its dequantization of Q4_1/Q8_0 and its q/k reordering, independent of saliq's) and the folder saliq's
`convert --from-gguf` wrote (its safetensors, config.json and tokenizer.json). Given the token ids saliq gives a
text (space-separated, no BOS: SmolLM2's tokenizer adds none), prints one JSON line with, for each model, the
perplexity over the first WINDOWS windows of SEQLEN by saliq's protocol and the greedy continuation of PROMPT_IDS,
plus the ids the folder's tokenizer.json gives the text under transformers.
Usage: smollm2_gguf.py GGUF FOLDER TEXT_FILE IDS_FILE PROMPT_IDS_FILE SEQLEN WINDOWS NEW_TOKENS"""
import json, math, os, sys

import torch
import transformers

gguf_path, folder, text_file, ids_file, prompt_file = sys.argv[1:6]
seqlen, windows, new_tokens = map(int, sys.argv[6:9])
ids = [int(x) for x in open(ids_file).read().split()]
prompt = [int(x) for x in open(prompt_file).read().split()]
n = min(len(ids) // seqlen, windows)


def score(model):
    total = 0.0
    with torch.no_grad():
        for w in range(n):
            x = torch.tensor([ids[w * seqlen:(w + 1) * seqlen]])
            logits = model(x).logits.float()
            total += torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:], reduction="sum").item()
    return math.exp(total / (n * (seqlen - 1)))


def greedy(model):
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=new_tokens, do_sample=False, eos_token_id=[1, 2],
                             pad_token_id=2)
    return out[0, len(prompt):].tolist()


result = {"transformers": transformers.__version__, "windows": n}
native = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf_path),
                                                           gguf_file=os.path.basename(gguf_path),
                                                           dtype=torch.float32).eval()
result["gguf_ppl"], result["gguf_greedy"] = score(native), greedy(native)
del native
converted = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
result["folder_ppl"], result["folder_greedy"] = score(converted), greedy(converted)
tok = transformers.AutoTokenizer.from_pretrained(folder)
result["folder_tokenizer_ids_equal"] = tok(open(text_file, encoding="utf-8").read(), add_special_tokens=False)["input_ids"] == ids
result["greedy_text"] = tok.decode(result["gguf_greedy"])
print(json.dumps(result))
