#!/usr/bin/env bash
# The main job on the bundled reference model (stories260K): set up, convert it to a Hugging Face folder,
# check it decodes, and measure its perplexity on TinyStories. Outputs go to $SALIQ_DEMO_DIR (default: demo-out).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
out=${SALIQ_DEMO_DIR:-demo-out}
mkdir -p "$out"
saliq=build/saliq
model=$data/models/stories260K

echo "== convert llama2.c checkpoint -> Hugging Face folder"
$saliq convert --from-llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.model" --out "$out/stories260K-hf" --force
echo "== greedy decoding from BOS"
$saliq generate -m "$out/stories260K-hf" -n 60 -q
echo "== FP32 perplexity, TinyStories head, seqlen 512"
$saliq eval -m "$out/stories260K-hf" --dataset tinystories --seqlen 512 --json "$out/eval_fp32.json"
