# Sourced by the bench scripts: where things are, and a random-weight folder of a LLaMA shape made by saliq's own
# code (build/make_random_llama; LLaMA tokenizer, 32k vocabulary, bf16 on disk), cached between runs.
bin=${SALIQ_BIN:-build/saliq}
maker=${SALIQ_MAKER:-build/make_random_llama}
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
cache=${SALIQ_BENCH_DIR:-$HOME/.cache/saliq/bench}
export SALIQ_DATA_DIR=$data
command -v /usr/bin/time >/dev/null || { echo "$(basename "$0"): needs /usr/bin/time" >&2; exit 2; }

# random_llama HIDDEN INTERMEDIATE LAYERS -> prints the folder (made on first use, heads of 64)
random_llama() {
  local dir="$cache/random-$1x$2x$3"
  [ -f "$dir/model.safetensors" ] || "$maker" --out "$dir" --hidden "$1" --intermediate "$2" --layers "$3" \
    --heads $(($1 / 64)) --kv-heads $(($1 / 64)) --dtype bf16 \
    --tokenizer "$data/tokenizers/llama/tokenizer.model" --force >&2
  echo "$dir"
}
