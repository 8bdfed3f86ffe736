#!/usr/bin/env bash
# ApiQ-bw on one LLaMA-2-7B-shaped block (random weights, 128 x 2048 tokens): seconds per block and peak GPU memory
# (nvidia-smi polled every 100 ms). Extra arguments go to bench_apiq_block (e.g. --epochs 2, --dtype fp16).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SALIQ_BUILD_DIR:-build}/bench_apiq_block
log=$(mktemp)
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$log" 2>/dev/null &
poll=$!
base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
"$bin" "$@"
kill $poll
peak=$(sort -n "$log" | tail -1)
echo "peak GPU memory: $((peak - base)) MiB above the idle $base MiB (nvidia-smi, includes the CUDA context)"
rm -f "$log"
