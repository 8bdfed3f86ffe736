#!/usr/bin/env bash
# Calibration speed on this CPU (issue: calibration at the speed of the matrix units). Prints, for SmolLM2-135M's
# block (576 / 1536, 9 heads) and a 2048 / 5632 block (32 heads), in fp32 and bf16 training: ms per ApiQ-bw step
# (8 windows x 512 tokens, 2 epochs, random weights), the matmul GFLOP/s of the run and its share of the GEMM ceiling
# bench_apiq_block measures in the same process; then the slowdown of `saliq eval` (stories260K) and of a
# calibration step beside one busy process pinned to one core, which this script starts and stops itself.
# With FULL=1 it also times a whole SmolLM2-135M `quantize --method apiq-bw` at 128 x 512 windows x 20 epochs
# (about an hour; scripts/fetch_models.sh provides the model).
#   scripts/bench_calib.sh        env: SALIQ_BUILD_DIR (build), FULL (0), THREADS (2), EPOCHS (2)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SALIQ_BUILD_DIR:-build}
source scripts/bench_lib.sh
threads=${THREADS:-2}
epochs=${EPOCHS:-2}
block() {  # hidden intermediate heads train-dtype [threads]
  "$build/bench_apiq_block" --device cpu --dtype fp32 --train-dtype "$4" --hidden "$1" --intermediate "$2" \
    --heads "$3" --nsamples 8 --seqlen 512 --epochs "$epochs" --threads "${5:-$threads}"
}
echo "== ApiQ-bw step, $threads threads"
for shape in "576 1536 9" "2048 5632 32"; do
  for dtype in fp32 bf16; do
    # shellcheck disable=SC2086
    block $shape $dtype
  done
done

busy_pid=
start_busy() { taskset -c 0 python3 -c 'while True: pass' & busy_pid=$!; sleep 1; }
stop_busy() { kill "$busy_pid" 2>/dev/null; wait "$busy_pid" 2>/dev/null || true; busy_pid=; }
trap 'stop_busy' EXIT
ms_of() { sed -n 's/.*training step: \([0-9.]*\) ms.*/\1/p'; }
tps_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens_per_second"])' "$1"; }
eval_tps() {  # extra args -> tokens/s of stories260K eval
  local out
  out=$(mktemp)
  "$bin" eval -m "$data/models/stories260K/stories260K.bin" --tokenizer "$data/models/stories260K/tok512.model" \
    --dataset tinystories --seqlen 512 --max-windows 64 --json "$out" -q "$@" >/dev/null
  tps_of "$out"
  rm -f "$out"
}
echo
echo "== beside one busy process pinned to core 0 (auto threads: saliq sizes its pool to the free cores)"
alone_eval=$(eval_tps)
alone_step=$(block 576 1536 9 bf16 0 | ms_of)
start_busy
busy_eval=$(eval_tps)
busy_step=$(block 576 1536 9 bf16 0 | ms_of)
fixed_eval=$(eval_tps --threads 2)
stop_busy
python3 - "$alone_eval" "$busy_eval" "$fixed_eval" "$alone_step" "$busy_step" <<'PY'
import sys
ae, be, fe, a_s, b_s = map(float, sys.argv[1:])
print(f"eval stories260K: alone {ae:.0f} tokens/s, beside it {be:.0f} ({ae / be:.2f}x slower); "
      f"forced to 2 threads beside it {fe:.0f} ({ae / fe:.2f}x slower)")
print(f"calibration step 576/1536 bf16: alone {a_s:.1f} ms, beside it {b_s:.1f} ms ({b_s / a_s:.2f}x slower)")
PY

if [ "${FULL:-0}" = 1 ]; then
  echo
  echo "== SmolLM2-135M apiq-bw W2 g64, 128 x 512 C4 windows, 20 epochs"
  model=${SALIQ_MODELS_DIR:-$HOME/.cache/saliq/models}/SmolLM2-135M-Instruct
  out=$(mktemp -d)
  /usr/bin/time -f "wall %e s, peak RSS %M KiB" "$bin" quantize -m "$model" --method apiq-bw --bits 2 \
    --group-size 64 --lwc-init minmax --calib c4 --calib-range 0:0.5 --nsamples 128 --seqlen 512 --epochs 20 \
    --out "$out/q" --force -q
  rm -rf "$out"
fi
