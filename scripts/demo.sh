#!/usr/bin/env bash
# The main job on the bundled reference model (stories260K): set up, convert it to a Hugging Face folder, check it
# decodes, then quantize it to 2 bits with GPTQ and with ApiQ-bw + the saliency regularizer (calibrating on the first
# half of TinyStories) and compare perplexities on the held-out second half. Outputs go to demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
out=demo-out
mkdir -p "$out"
saliq=build/saliq
model=$data/models/stories260K
evalargs=(--dataset tinystories --eval-range 0.5:1 --seqlen 512 -q)

echo "== convert llama2.c checkpoint -> Hugging Face folder"
$saliq convert --from-llama2c "$model/stories260K.bin" --tokenizer "$model/tok512.model" --out "$out/stories260K-hf" --force
echo "== greedy decoding from BOS"
$saliq generate -m "$out/stories260K-hf" -n 60 -q
echo "== FP32 perplexity on the held-out half of TinyStories"
$saliq eval -m "$out/stories260K-hf" "${evalargs[@]}" --json "$out/eval_fp32.json"
echo "== GPTQ W2 g32"
$saliq quantize --config configs/stories260k_w2g32_gptq.toml -m "$out/stories260K-hf" -q
$saliq eval -m "$out/stories260K-w2g32-gptq" "${evalargs[@]}" --json "$out/eval_gptq.json"
echo "== ApiQ-bw + saliency W2 g32 (a few minutes on CPU)"
$saliq quantize --config configs/stories260k_w2g32_apiq-bw_saliency.toml -m "$out/stories260K-hf" -q
$saliq eval -m "$out/stories260K-w2g32-apiq-saliency" "${evalargs[@]}" --json "$out/eval_apiq_saliency.json"
$saliq inspect "$out/stories260K-w2g32-apiq-saliency"
