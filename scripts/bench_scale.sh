#!/usr/bin/env bash
# Speed and memory of quantize and eval at real LLaMA shapes, on random-weight folders made by saliq's own code
# (build/make_random_llama; LLaMA tokenizer, 32k vocabulary, bf16). Prints, per shape and method: wall time, seconds
# per block and peak RSS; and eval tokens/s (WikiText-2, 16 x 512 windows).
#   SHAPES="1024x4 1024x16 2048x22 7b" METHODS="rtn gptq apiq-bw" scripts/bench_scale.sh
# Folders are cached in $SALIQ_BENCH_DIR (default ~/.cache/saliq/bench); the 7B shape needs 13.5 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SALIQ_BIN:-build/saliq}
maker=${SALIQ_MAKER:-build/make_random_llama}
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
cache=${SALIQ_BENCH_DIR:-$HOME/.cache/saliq/bench}
threads=${THREADS:-$(nproc)}
shapes=${SHAPES:-"1024x4 1024x16 2048x22 7b"}
methods=${METHODS:-"rtn gptq apiq-bw"}
mkdir -p "$cache"
command -v /usr/bin/time >/dev/null || { echo "bench_scale: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

make_shape() {  # name -> folder
  local name=$1 dir="$cache/$1"
  [ -f "$dir/model.safetensors" ] && { echo "$dir"; return; }
  case $name in
    1024x*) args="--hidden 1024 --intermediate 2816 --heads 16 --kv-heads 16 --layers ${name#1024x}" ;;
    2048x22) args="--hidden 2048 --intermediate 5632 --heads 32 --kv-heads 4 --layers 22" ;;
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
      apiq-bw) extra="--bits 2 --group-size 64 --calib wikitext2 --nsamples 4 --seqlen 512 --epochs 1" ;;
    esac
    read -r wall rss < <(SALIQ_DATA_DIR=$data measure "$bin" quantize -m "$dir" --method "$method" $extra \
                           --threads "$threads" --out "$out" -q)
    printf "%-8s %-8s %10.1f %10.2f %12s %12s\n" "$shape" "$method" "$wall" \
      "$(python3 -c "print($wall/$layers)")" "$rss" "$ckpt_mib"
    rm -rf "$out"
  done
  if [ "${EVAL:-1}" = 1 ]; then
    json=$(mktemp)
    read -r wall rss < <(SALIQ_DATA_DIR=$data measure "$bin" eval -m "$dir" --dataset wikitext2 --seqlen 512 \
                           --max-windows 16 --threads "$threads" --json "$json" -q)
    printf "%-8s %-8s %10.1f %10s %12s %12s  eval %s tokens/s\n" "$shape" eval "$wall" - "$rss" "$ckpt_mib" \
      "$(python3 -c "import json;print(round(json.load(open('$json'))['tokens_per_second']))")"
    rm -f "$json"
  fi
done
