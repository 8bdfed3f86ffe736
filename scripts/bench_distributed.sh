#!/usr/bin/env bash
# One process against `saliq launch --nproc N` (Gloo over loopback) on a random-weight folder of a LLaMA shape made
# by saliq's own code (build/make_random_llama; LLaMA tokenizer, 32k vocabulary, bf16 on disk, fp32 compute): wall
# time and peak RSS of the largest process for WikiText-2 perplexity, zero-shot (PIQA + ARC-Easy) and GPTQ W2 g128.
#   HIDDEN=1024 INTER=2816 LAYERS=4 NPROC=2 WINDOWS=16 ITEMS=100 NS=16 scripts/bench_distributed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh
hidden=${HIDDEN:-1024}; inter=${INTER:-2816}; layers=${LAYERS:-4}; nproc=${NPROC:-2}
windows=${WINDOWS:-16}; items=${ITEMS:-100}; ns=${NS:-16}
dir=$(random_llama "$hidden" "$inter" "$layers")
measure() {  # label, command... -> "label wall_s peak_MiB" (the launcher's figure is its largest rank's)
  local label=$1; shift
  local log; log=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$log.time" "$@" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  awk -v l="$label" '{printf "%-34s %10.2f %10.0f\n", l, $1, $2/1024}' "$log.time"
  rm -f "$log" "$log.time"
}
printf "%-34s %10s %10s   (%sx%sx%s, fp32 compute)\n" run wall_s peak_MiB "$hidden" "$inter" "$layers"
ppl=(eval -m "$dir" --dataset wikitext2 --seqlen 512 --max-windows "$windows")
tasks=(eval -m "$dir" --tasks piqa,arc_easy --limit "$items")
gptq=(quantize -m "$dir" --method gptq --bits 2 --group-size 128 --calib wikitext2 --nsamples "$ns" --seqlen 512
      --force)
measure "perplexity, 1 process" "$bin" "${ppl[@]}"
measure "perplexity, $nproc ranks" "$bin" launch --nproc "$nproc" -- "${ppl[@]}"
measure "zero-shot, 1 process" "$bin" "${tasks[@]}"
measure "zero-shot, $nproc ranks" "$bin" launch --nproc "$nproc" -- "${tasks[@]}"
measure "gptq, 1 process" "$bin" "${gptq[@]}" --out "$cache/bd-gptq1"
measure "gptq, $nproc ranks" "$bin" launch --nproc "$nproc" -- "${gptq[@]}" --out "$cache/bd-gptq2"
cmp -s "$cache/bd-gptq1/model.safetensors" "$cache/bd-gptq2/model.safetensors" &&
  echo "gptq folders: model.safetensors byte-identical" || echo "gptq folders: model.safetensors DIFFER"
