"""Reference byte-level BPE tokenizers for scripts/check_bpe.sh, built with Hugging Face's `tokenizers` package from a
GGUF's vocabulary (read with the `gguf` package): one per pre-tokenizer family, each saved as the tokenizer.json
tokenizers itself writes, and the ids it gives for each text file.

    python reference.py GGUF WORK_DIR TEXT_FILE...

Writes WORK_DIR/<variant>/tokenizer.json and WORK_DIR/<variant>/<n>.ids (space-separated ids of the n-th file, no
special tokens added). Variants: smollm (what llama.cpp's tokenizer.ggml.pre "smollm" means: each digit alone, then
GPT-2's regex), gpt2 (ByteLevel's regex alone) and llama3 (LLaMA-3's Split regex, ignore_merges), so every rule
saliq's matcher and merger implement is exercised on the same vocabulary.
"""
import os
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")


def field(reader, key):
    f = reader.fields[key]
    return f.contents()


def build(tokens, types, merges, variant):
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    model = models.BPE(vocab=vocab, merges=pairs, ignore_merges=(variant == "llama3"))
    tok = Tokenizer(model)
    if variant == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif variant == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    special = [AddedToken(t, normalized=False, special=True) for t, k in zip(tokens, types) if k == 3]
    user = [AddedToken(t, normalized=True, special=False) for t, k in zip(tokens, types) if k == 4]
    tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)
    return tok


def main():
    path, work, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
    reader = gguf.GGUFReader(path)
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    for variant in ("smollm", "gpt2", "llama3"):
        tok = build(tokens, types, merges, variant)
        out = os.path.join(work, variant)
        os.makedirs(out, exist_ok=True)
        tok.save(os.path.join(out, "tokenizer.json"))
        for n, text_path in enumerate(texts):
            with open(text_path, encoding="utf-8") as f:
                text = f.read()
            ids = tok.encode(text, add_special_tokens=False).ids
            with open(os.path.join(out, "%d.ids" % n), "w") as f:
                f.write(" ".join(map(str, ids)) + "\n")
        print("reference %s: %d files" % (variant, len(texts)), flush=True)


if __name__ == "__main__":
    main()
