#!/usr/bin/env bash
# Speed and memory of quantize and eval at real LLaMA shapes, on random-weight folders made by saliq's own code
# (build/make_random_llama; LLaMA tokenizer, 32k vocabulary, bf16). Prints, per shape and method: wall time, seconds
# per block and peak RSS; eval tokens/s (WikiText-2, 16 x 512 windows) in each of EVAL_DTYPES; and, per width, one
# apiq-bw calibration step's matmul throughput beside this CPU's GEMM ceiling measured in the same run.
#   SHAPES="1024x4 1024x16 2048x22 7b" (1024xN, 2048xN: any depth) METHODS="rtn gptq apiq-bw" EVAL_DTYPES="fp32 bf16" scripts/bench_scale.sh
# Folders are cached in $SALIQ_BENCH_DIR (default ~/.cache/saliq/bench); the 7B shape needs 13.5 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SALIQ_BIN:-build/saliq}
maker=${SALIQ_MAKER:-build/make_random_llama}
block_bench=${SALIQ_BLOCK_BENCH:-build/bench_apiq_block}
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
cache=${SALIQ_BENCH_DIR:-$HOME/.cache/saliq/bench}
threads=${THREADS:-$(nproc)}
shapes=${SHAPES:-"1024x4 1024x16 2048x22 7b"}
methods=${METHODS:-"rtn gptq apiq-bw"}
eval_dtypes=${EVAL_DTYPES:-"fp32 bf16"}
mkdir -p "$cache"
command -v /usr/bin/time >/dev/null || { echo "bench_scale: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

make_shape() {  # name -> folder
  local name=$1 dir="$cache/$1"
  [ -f "$dir/model.safetensors" ] && { echo "$dir"; return; }
  case $name in
    1024x*) args="--hidden 1024 --intermediate 2816 --heads 16 --kv-heads 16 --layers ${name#1024x}" ;;
    2048x*) args="--hidden 2048 --intermediate 5632 --heads 32 --kv-heads 4 --layers ${name#2048x}" ;;
    7b) args="--hidden 4096 --intermediate 11008 --heads 32 --kv-heads 32 --layers 32" ;;
    *) echo "bench_scale: unknown shape $name" >&2; exit 2 ;;
  esac
  "$maker" --out "$dir" $args --dtype bf16 --tokenizer "$data/tokenizers/llama/tokenizer.model" --force >&2
  echo "$dir"
}

# Runs a command under /usr/bin/time; prints "wall_s peak_rss_mib".
measure() {
  local log; log=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$log.time" "$@" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log" "$log.time"; return 1; }
  awk '{printf "%s %.0f\n", $1, $2/1024}' "$log.time"
  rm -f "$log" "$log.time"
}

calibrated_widths=""
printf "%-8s %-8s %10s %10s %12s %12s\n" shape method wall_s s/block peak_MiB ckpt_MiB
for shape in $shapes; do
  dir=$(make_shape "$shape")
  layers=$(python3 -c "import json;print(json.load(open('$dir/config.json'))['num_hidden_layers'])")
  ckpt_mib=$(( $(stat -c %s "$dir/model.safetensors") / 1048576 ))
  for method in $methods; do
    out="$cache/out-$shape-$method"
    rm -rf "$out" "$out.partial"
    case $method in
      rtn) extra="--bits 2 --group-size 64" ;;
      gptq) extra="--bits 2 --group-size 64 --calib wikitext2 --nsamples 16 --seqlen 512" ;;
      apiq-bw) extra="--bits 2 --group-size 64 --lwc-init minmax --calib wikitext2 --nsamples 4 --seqlen 512 --epochs 1" ;;
    esac
    read -r wall rss < <(SALIQ_DATA_DIR=$data measure "$bin" quantize -m "$dir" --method "$method" $extra \
                           --threads "$threads" --out "$out" -q)
    printf "%-8s %-8s %10.1f %10.2f %12s %12s\n" "$shape" "$method" "$wall" \
      "$(python3 -c "print($wall/$layers)")" "$rss" "$ckpt_mib"
    rm -rf "$out"
  done
  if [ "${EVAL:-1}" = 1 ]; then
    for dtype in $eval_dtypes; do
      json=$(mktemp)
      read -r wall rss < <(SALIQ_DATA_DIR=$data measure "$bin" eval -m "$dir" --dataset wikitext2 --seqlen 512 \
                             --max-windows 16 --dtype "$dtype" --threads "$threads" --json "$json" -q)
      printf "%-8s %-8s %10.1f %10s %12s %12s  eval %s %s tokens/s\n" "$shape" eval "$wall" - "$rss" "$ckpt_mib" \
        "$dtype" "$(python3 -c "import json;print(round(json.load(open('$json'))['tokens_per_second']))")"
      rm -f "$json"
    done
  fi
  width=${shape%%x*}
  if [ "${CALIB:-1}" = 1 ] && [[ " $calibrated_widths " != *" $width "* ]]; then
    calibrated_widths="$calibrated_widths $width"
    hidden=$(python3 -c "import json;print(json.load(open('$dir/config.json'))['hidden_size'])")
    inter=$(python3 -c "import json;print(json.load(open('$dir/config.json'))['intermediate_size'])")
    heads=$(python3 -c "import json;print(json.load(open('$dir/config.json'))['num_attention_heads'])")
    "$block_bench" --device cpu --dtype fp32 --hidden "$hidden" --intermediate "$inter" --heads "$heads" \
      --nsamples 4 --seqlen 512 --epochs 1 --threads "$threads" | sed "s/^/$shape  /"
  fi
done
