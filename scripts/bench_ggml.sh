#!/usr/bin/env bash
# saliq's GGML-grid exports beside llama-quantize's files of the same weights, at LLaMA-2-7B's width: size and
# llama.cpp's decode speed (llama-cpp-python, built from PyPI's source). A random LLaMA of 4096 / 11008, 32 heads,
# LAYERS layers (default 4) and a 32k vocabulary; saliq quantizes it RTN onto each grid (--grid) and exports the
# GGUF bit for bit; llama-quantize quantizes the F16 GGUF of the same weights to its matching file types, with F16
# embeddings and output as saliq's --dtype fp16 export writes them, so only the linears differ. Time on a quiet
# machine. Files are kept in WORK and not made again.
#   scripts/bench_ggml.sh [WORK]    env: SALIQ_BUILD_DIR (build), LAYERS (4), THREADS (2), TOKENS (64), REPEATS (3)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SALIQ_BUILD_DIR:-build}
saliq=$build/saliq
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
work=${1:-$HOME/.cache/saliq/bench-ggml}
layers=${LAYERS:-4}
threads=${THREADS:-2}
lpy=${SALIQ_LLAMA_VENV:-$HOME/.cache/saliq/llama-venv}/bin/python
[ -x "$lpy" ] || { python3 -m venv "${lpy%/bin/python}"; "$lpy" -m pip install -q llama-cpp-python numpy; }
"$lpy" -c 'import gguf' 2>/dev/null || "$lpy" -m pip install -q gguf  # llama_quantize.py --imatrix reads with gguf-py
mkdir -p "$work"
model=$work/rand-4096x$layers
[ -f "$model/config.json" ] || "$build/make_random_llama" -o "$model" --hidden 4096 --intermediate 11008 \
  --layers "$layers" --heads 32 --kv-heads 32 --vocab 32000 --dtype bf16 \
  --tokenizer "$data/tokenizers/llama/tokenizer.model" >/dev/null
[ -f "$work/f16.gguf" ] || "$saliq" export -m "$model" --format gguf --dtype fp16 --out "$work/f16.gguf" -q
files=()
for pair in "q2_k Q2_K" "q3_k Q3_K_S" "q4_k Q4_K_S" "q4_k Q4_K_M" "q4_0 Q4_0"; do
  set -- $pair
  q=$work/saliq-$1
  [ -d "$q" ] || "$saliq" quantize -m "$model" --method rtn --grid "$1" --out "$q" -q >/dev/null
  [ -f "$q.gguf" ] || "$saliq" export -m "$q" --format gguf --dtype fp16 --out "$q.gguf" -q
  [ -f "$work/llama-$2.gguf" ] || "$lpy" scripts/interop/llama_quantize.py "$work/f16.gguf" "$work/llama-$2.gguf" "$2" \
    --threads "$threads" --f16-embeddings >/dev/null
  [[ " ${files[*]} " == *" $q.gguf "* ]] || files+=("$q.gguf")
  files+=("$work/llama-$2.gguf")
done
"$lpy" scripts/interop/llamacpp_decode.py "${files[@]}" --tokens "${TOKENS:-64}" --repeats "${REPEATS:-3}" \
  --threads "$threads" > "$work/decode.jsonl"
python3 - "$work/decode.jsonl" "$model/config.json" <<'PY'
import json, os, sys
c = json.load(open(sys.argv[2]))
h, i, L, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
linear = L * (4 * h * h + 3 * h * i)
print(f"random LLaMA {h} / {i} x {L} layers, vocab {v}: {linear / 1e6:.0f} M linear weights; embeddings and output F16")
print("| file | MiB | bits/weight of the linears | decode tokens/s (median) |")
print("|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    size = os.path.getsize(r["file"])
    rest = 2 * v * h * 2 + (2 * L + 1) * h * 4  # F16 embeddings and output, F32 norms (and the header, ~negligible)
    print(f'| {os.path.basename(r["file"])} | {size / 2**20:.1f} | {(size - rest) * 8 / linear:.3f} | '
          f'{r["tokens_per_s"]:.2f} |')
PY
