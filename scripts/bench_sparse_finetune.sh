#!/usr/bin/env bash
# Speed and memory of ReQuant's sparse parts and of saliq finetune at a LLaMA shape, on a random-weight folder made
# by saliq's own code (build/make_random_llama; LLaMA tokenizer, 32k vocabulary, bf16). Prints wall time and peak RSS
# for: gptq W2 g128; the same with --sparse-outliers 0.45 --sparse-significant 0.05 (plus the estimated memory of the
# detach phase); and saliq finetune of the gptq folder (WikiText-2, NS x 512, one epoch).
#   HIDDEN=1024 INTER=2816 LAYERS=2 NS=8 scripts/bench_sparse_finetune.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh
hidden=${HIDDEN:-1024}; inter=${INTER:-2816}; layers=${LAYERS:-2}; ns=${NS:-8}
dir=$(random_llama "$hidden" "$inter" "$layers")
measure() {  # label, command... -> one line "label wall_s peak_MiB"
  local label=$1; shift
  local log; log=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$log.time" "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  awk -v l="$label" '{printf "%-28s %10.1f %10.0f\n", l, $1, $2/1024}' "$log.time"
  grep -o "the significant-weight detach after the blocks holds [0-9.]* [A-Za-z]*" "$log" | sed 's/^/  estimate: /' || true
  rm -f "$log" "$log.time"
}
q="--bits 2 --group-size 128 --calib wikitext2 --nsamples $ns --seqlen 512 --force"
printf "%-28s %10s %10s   (%sx%sx%s, %s x 512 windows)\n" run wall_s peak_MiB "$hidden" "$inter" "$layers" "$ns"
measure "gptq" "$bin" quantize -m "$dir" --method gptq $q --out "$cache/bsf-gptq"
measure "gptq + requant 0.45/0.05" "$bin" quantize -m "$dir" --method gptq $q --sparse-outliers 0.45 \
  --sparse-significant 0.05 --out "$cache/bsf-gptq-rq"
measure "finetune (1 epoch)" "$bin" finetune -m "$cache/bsf-gptq" --teacher "$dir" --calib wikitext2 \
  --nsamples "$ns" --seqlen 512 --epochs 1 --out "$cache/bsf-ft" --force
