#!/usr/bin/env bash
# Perplexity throughput of the reference model on CPU: prints tokens/s for fp32 and bf16 at seqlen 512 and 256
# (median of 3 runs each). Assumes a built tree (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
saliq=${SALIQ_BUILD_DIR:-build}/saliq
model=$data/models/stories260K
threads=${THREADS:-$(nproc)}
windows=${WINDOWS:-200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "stories260K perplexity throughput, TinyStories head, $windows windows, $threads threads ($(nproc) cores)"
printf '%-6s %-7s %12s %10s\n' dtype seqlen tokens/s ppl
for dtype in fp32 bf16; do
  for seqlen in 512 256; do
    w=$windows; [ "$seqlen" = 256 ] && w=$((windows * 2))
    rates=()
    for run in 1 2 3; do
      "$saliq" eval -m "$model/stories260K.bin" --tokenizer "$model/tok512.model" --dataset tinystories \
        --seqlen "$seqlen" --max-windows "$w" --dtype "$dtype" --threads "$threads" -q --json "$tmp/r.json" >/dev/null
      rates+=("$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["tokens_per_second"])' "$tmp/r.json")")
    done
    median=$(printf '%s\n' "${rates[@]}" | sort -g | sed -n 2p)
    ppl=$(python3 -c 'import json,sys;print("%.4f" % json.load(open(sys.argv[1]))["ppl"])' "$tmp/r.json")
    printf '%-6s %-7s %12.0f %10s\n' "$dtype" "$seqlen" "$median" "$ppl"
  done
done
