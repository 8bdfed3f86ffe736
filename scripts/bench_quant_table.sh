#!/usr/bin/env bash
# Reproduces the quantization-core table on the reference model: FP, RTN W8/W4/W3/W2, GPTQ W4/W3/W2 on stories260K,
# TinyStories at seqlen 512, group size 32, calibration drawn from the first half of the text and perplexity measured
# on the second half (held out). Prints a Markdown table: perplexity, quantize wall time, model.safetensors size.
#   scripts/bench_quant_table.sh [OUT_DIR]      (assumes a built tree: scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
saliq=${SALIQ_BIN:-${SALIQ_BUILD_DIR:-build}/saliq}
out=${1:-bench-out/quant-table}
mkdir -p "$out"
model=$data/models/stories260K
src=(-m "$model/stories260K.bin" --tokenizer "$model/tok512.model")
calib=(--calib tinystories --calib-range 0:0.5 --nsamples ${NSAMPLES:-128} --seqlen 512 --seed 0)
evalargs=(--dataset tinystories --eval-range 0.5:1 --seqlen 512 -q)
ppl() { python3 -c 'import json,sys;print("%.4f" % json.load(open(sys.argv[1]))["ppl"])' "$1"; }

echo "| model | perplexity | quantize s | model.safetensors |"
echo "|---|---|---|---|"
"$saliq" eval "${src[@]}" "${evalargs[@]}" --json "$out/fp.json" >/dev/null
echo "| FP32 | $(ppl "$out/fp.json") | - | $(stat -c %s "$model/stories260K.bin") B (.bin) |"
for spec in rtn:8 rtn:4 rtn:3 rtn:2 gptq:4 gptq:3 gptq:2; do
  method=${spec%%:*}; bits=${spec##*:}
  dir=$out/${method}-w${bits}g32
  start=$(date +%s.%N)
  "$saliq" quantize "${src[@]}" --method "$method" --bits "$bits" --group-size 32 "${calib[@]}" --out "$dir" --force -q >/dev/null
  secs=$(python3 -c "import sys;print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" "$(date +%s.%N)")
  "$saliq" eval -m "$dir" "${evalargs[@]}" --json "$dir.json" >/dev/null
  echo "| ${method^^} W${bits} g32 | $(ppl "$dir.json") | $secs | $(stat -c %s "$dir/model.safetensors") B |"
done
