#!/usr/bin/env bash
# Fuzzes every reader saliq has (tests/fuzz/fuzz_targets.cpp) with libFuzzer and AddressSanitizer.
#
#   scripts/fuzz.sh build                      build build-fuzz/fuzz_readers (clang)
#   scripts/fuzz.sh run SECONDS [READER...]    each reader (default: all) for SECONDS, two at a time (SALIQ_FUZZ_JOBS),
#                                              inputs up to SALIQ_FUZZ_MAX_LEN bytes (8192; split_regex's step budget
#                                              grows with the text, so its long inputs cost ~100x a short one)
#   scripts/fuzz.sh totals                     executions per reader over every run so far (tests/fuzz/totals.tsv)
#   scripts/fuzz.sh seed                       rewrite tests/fuzz/corpus's text seeds (the rest is generated)
#
# Runs grow a working corpus under $SALIQ_FUZZ_DIR (default ~/.cache/saliq/fuzz), seeded from the small corpus kept
# in tests/fuzz/corpus; the repository's corpus changes only by `seed` and by findings added by hand (each finding,
# once fixed, goes into tests/fuzz/corpus/<reader>/finding-<what> where the test suite replays it). Findings (crashes, leaks,
# untyped exceptions, allocations over 1 GiB, inputs slower than 10 s) land in $SALIQ_FUZZ_DIR/findings/<reader>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${SALIQ_FUZZ_DIR:-$HOME/.cache/saliq/fuzz}
corpus=$root/tests/fuzz/corpus
bin=$root/build-fuzz/fuzz_readers
totals=$root/tests/fuzz/totals.tsv  # kept in the repository: the round's totals add up across machines
data=${SALIQ_DATA_DIR:-$root/../shared/data}

readers() {  # the target names, from the binary itself
  SALIQ_FUZZ_READER= "$bin" 2>&1 | awk '/^  [a-z]/ {print $1}'
}

case "${1:-}" in
build)
  cmake -S . -B build-fuzz -G Ninja -DSALIQ_FUZZ=ON -DSALIQ_SANITIZE=ON -DSALIQ_BUILD_TESTS=OFF -DSALIQ_PCH=OFF -DCMAKE_CXX_COMPILER=clang++ \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
  cmake --build build-fuzz --target fuzz_readers
  ;;
run)
  seconds=${2:?"usage: scripts/fuzz.sh run SECONDS [READER...]"}
  shift 2
  [ -x "$bin" ] || { echo "fuzz: $bin is missing; run scripts/fuzz.sh build" >&2; exit 2; }
  list=("$@")
  [ ${#list[@]} -gt 0 ] || mapfile -t list < <(readers)
  mkdir -p "$work"
  [ -f "$totals" ] || printf 'date\treader\truns\tseconds\tfindings\tcommit\n' > "$totals"
  one() {
    local r=$1 dir=$work/corpus/$1 found=$work/findings/$1 log=$work/logs/$1.log
    mkdir -p "$dir" "$found" "$work/logs"
    [ -d "$corpus/$r" ] || [ -d "$work/seeds/$r" ] || { echo "fuzz: no seeds for '$r'" >&2; return 2; }
    cp -n "$corpus/$r"/* "$dir"/ 2>/dev/null || true
    cp -n "$work/seeds/$r"/* "$dir"/ 2>/dev/null || true
    local before; before=$(ls "$found" | wc -l)
    # -fork keeps going after a finding; ASan's leak check is off (LibTorch keeps caches alive on purpose).
    SALIQ_FUZZ_READER=$r SALIQ_THREADS=1 ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "$bin" -max_total_time="$seconds" -max_len="${SALIQ_FUZZ_MAX_LEN:-8192}" -timeout=10 -rss_limit_mb=3072 -malloc_limit_mb=1024 \
             -artifact_prefix="$found/" -print_final_stats=1 "$dir" > "$log" 2>&1 || true
    local runs; runs=$(awk '/stat::number_of_executed_units/ {print $NF}' "$log" | tail -1)
    local after; after=$(ls "$found" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$r" "${runs:-0}" "$seconds" "$((after - before))" \
      "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo -)" >> "$totals"
    printf 'fuzz: %-16s %10s runs in %ss, %d new findings\n' "$r" "${runs:-0}" "$seconds" "$((after - before))"
  }
  # The seeds saliq's writers make and those read from the shared data: generated, never tracked in git.
  if [ -x build/fuzz_replay ]; then rm -rf "$work/seeds"; SALIQ_DATA_DIR=$data build/fuzz_replay --write-seeds "$work/seeds"; fi
  jobs=${SALIQ_FUZZ_JOBS:-2}
  for r in "${list[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    one "$r" &
  done
  wait
  "$0" totals
  ;;
totals)
  [ -f "$totals" ] || { echo "fuzz: no runs yet ($totals)"; exit 0; }
  printf "%-16s %14s %10s %9s\n" reader executions seconds findings
  awk -F'\t' 'NR > 1 {runs[$2] += $3; secs[$2] += $4; found[$2] += $5; all += $3}
              END {for (r in runs) printf "%-16s %14d %10d %9d\n", r, runs[r], secs[r], found[r];
                   printf "~total           %14d\n", all}' "$totals" | sort
  ;;
seed)
  [ -x build/fuzz_replay ] || { echo "fuzz: build/fuzz_replay is missing; run scripts/setup.sh" >&2; exit 2; }
  rm -rf "$corpus.new" && mkdir -p "$corpus.new"
  put() { mkdir -p "$corpus.new/$1" && cat > "$corpus.new/$1/$2"; }
  mkdir -p "$corpus.new/toml"
  for f in configs/*.toml configs/tables/*.toml; do cp "$f" "$corpus.new/toml/$(basename "$(dirname "$f")")_$(basename "$f")"; done
  # Pre-tokenizer patterns of GPT-2 and LLaMA-3 over a line of text.
  printf "%s\n%s" "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" \
    "Once upon a time, 12 cats ran  away." | put split_regex gpt2
  printf "%s\n%s" "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" \
    "Hello World! 12345 \xe2\x82\xac" | put split_regex llama3
  # Past findings (named finding-*) stay.
  if [ -d "$corpus" ]; then
    for f in "$corpus"/*/finding-*; do
      [ -e "$f" ] || continue
      r=$(basename "$(dirname "$f")")
      mkdir -p "$corpus.new/$r" && cp "$f" "$corpus.new/$r/"
    done
  fi
  rm -rf "$corpus" && mv "$corpus.new" "$corpus"
  du -sh "$corpus"
  ;;
*)
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
