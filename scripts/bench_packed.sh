#!/usr/bin/env bash
# Packed vs dense inference of GPTQ-packed folders: random-weight LLaMAs of real shapes (1024 wide x 16 layers,
# 2048 wide x 22 layers: TinyLlama-1.1B's), RTN W2 g64 and W4 g128, perplexity on WikiText-2 windows of 512 and a
# greedy generation, each computed from the packed codes (default) and with --dequantize (dense weights). Prints
# tokens/s, peak RSS (GNU time's maximum resident set) and the two perplexities. Perplexity streams one block at a
# time (block-major), so its RSS is the same either way; generation holds the whole model.
# With DEVICE=cuda both run on the GPU in bf16: packed is --packed-cuda (saliq's CUDA kernels), dense the default
# there (dequantized once on load).
#   scripts/bench_packed.sh [WORK_DIR]   env: WINDOWS (4), GEN_TOKENS (16), SHAPES ("1024x16 2048x22"), DEVICE (cpu),
#                                        SALIQ_BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
build=${SALIQ_BUILD_DIR:-build}
saliq=$build/saliq
work=${1:-$(mktemp -d /tmp/saliq-bench-packed.XXXXXX)}
mkdir -p "$work"
windows=${WINDOWS:-4}
gen=${GEN_TOKENS:-16}
device=${DEVICE:-cpu}
if [ "$device" = cpu ]; then packed_flags=""; dense_flags="--dequantize"; eval_dtype=fp32
else packed_flags="--device $device --packed-cuda"; dense_flags="--device $device"; eval_dtype=bf16; fi
tok=$data/tokenizers/llama/tokenizer.model
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
rss() { awk '/Maximum resident/ {printf "%.0f", $6 / 1024}' "$1"; }  # MiB
printf '%-9s %-8s %-7s %11s %9s %12s %14s %11s\n' shape spec path "tokens/s" "RSS MiB" ppl "gen tokens/s" "gen RSS MiB"
for shape in ${SHAPES:-1024x16 2048x22}; do
  hidden=${shape%x*}; layers=${shape#*x}
  case $hidden in
    1024) inter=2816; heads=16; kv=16 ;;
    2048) inter=5632; heads=32; kv=4 ;;
    *) inter=$((hidden * 11 / 4)); heads=$((hidden / 64)); kv=$heads ;;
  esac
  model=$work/rand-$shape
  [ -f "$model/config.json" ] || "$build/make_random_llama" -o "$model" --hidden "$hidden" --intermediate "$inter" \
    --layers "$layers" --heads "$heads" --kv-heads "$kv" --vocab 32000 --dtype bf16 --tokenizer "$tok" >/dev/null
  for spec in "2 64" "4 128"; do
    set -- $spec
    q=$work/rand-$shape-w$1g$2
    [ -f "$q/config.json" ] || "$saliq" quantize -m "$model" --method rtn --bits "$1" --group-size "$2" --out "$q" \
      --force -q >/dev/null
    for path in packed dense; do
      flag=$packed_flags; [ $path = dense ] && flag=$dense_flags
      /usr/bin/time -v "$saliq" eval -m "$q" $flag --dataset wikitext2 --seqlen 512 --max-windows "$windows" \
        --dtype "$eval_dtype" -q --json "$work/e.json" >/dev/null 2>"$work/e.time"
      # generate's own timing (prompt, then $gen tokens; loading excluded); a random model seldom stops early
      /usr/bin/time -v "$saliq" generate -m "$q" $flag --prompt "Once upon a time" -n "$gen" --log-level info \
        >"$work/g.out" 2>"$work/g.time"
      seconds=$(sed -n 's/.*generated in \([0-9.]*\) s.*/\1/p' "$work/g.time")
      gen_rate=$(python3 -c "print('%.2f' % ($gen / $seconds))")
      printf '%-9s %-8s %-7s %11.0f %9s %12.4f %14s %11s\n' "$shape" "W$1 g$2" $path \
        "$(field "$work/e.json" tokens_per_second)" "$(rss "$work/e.time")" "$(field "$work/e.json" ppl)" \
        "$gen_rate" "$(rss "$work/g.time")"
    done
  done
done
