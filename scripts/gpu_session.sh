#!/usr/bin/env bash
# Issue 30's checks on a lent GPU machine, in one call of about nine minutes; every log goes under OUT.
#   here first:  scripts/gpu_check.sh prepare          (carry .gpu-deps and .data with the tree)
#   there:       scripts/gpu_session.sh [OUT]          (default $OUT, else ./gpu-session)
# Steps (each under its own time limit; a failing step is logged and the next one runs):
#   1. build into build-cuda (scripts/gpu_check.sh build)
#   2. the CUDA tests (Cuda.*, PackedCuda.*), then the whole suite
#   3. ApiQ-bw on one LLaMA-2-7B-shaped block, bf16, 128 x 2048 windows, 2 epochs (256 steps): ms per step, share of
#      the GPU's bf16 peak (PEAK_TFLOPS, default 989: H100 SXM dense), peak GPU memory
#   4. stories260K W2 g32 (gptq): perplexity and zero-shot on CPU, on CUDA dequantized, on CUDA with --packed-cuda
#   5. packed vs dense decoding at 4096 wide (a 4-layer random LLaMA, RTN W2 g64 / W4 g128) on CUDA
# Env: STEPS ("1 2 3 4 5"), PEAK_TFLOPS.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-$PWD/gpu-session}}
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }
step() {  # name limit_s command...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  note "step $name: rc $rc, $((SECONDS - start)) s (log $name.log)"
  return $rc
}
steps=" ${STEPS:-1 2 3 4 5} "
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
note "device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"

if [[ $steps == *" 1 "* ]]; then
  step build 300 scripts/gpu_check.sh build || { cp build-cuda.*.log "$out/" 2>/dev/null; exit 1; }
  grep -E "saliq CUDA kernels" build-cuda.cmake.log >>"$summary" || true
fi
source scripts/gpu_check.sh env
bin=build-cuda
if [[ $steps == *" 2 "* ]]; then
  (cd "$bin" && step cuda-tests 120 ctest -j4 --output-on-failure -R '^(Cuda|PackedCuda)\.')
  grep -E "tests passed|tests failed" "$out/cuda-tests.log" >>"$summary"
  (cd "$bin" && step suite 240 ctest -j"$(nproc)" --timeout 200 -E '^(Cuda|PackedCuda)\.')
  grep -E "tests passed|tests failed" "$out/suite.log" >>"$summary"
fi
if [[ $steps == *" 3 "* ]]; then
  step block7b 180 env SALIQ_BUILD_DIR=$bin scripts/bench_apiq_block.sh --device cuda --dtype bf16 --hidden 4096 \
    --intermediate 11008 --heads 32 --nsamples 128 --seqlen 2048 --epochs 2
  grep -E "training step|per block|peak GPU|GFLOP" "$out/block7b.log" >>"$summary"
  python3 - "$out/block7b.log" "${PEAK_TFLOPS:-989}" >>"$summary" <<'PY' || true
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"training step: ([0-9.]+) ms", text)
if m:
    ms = float(m.group(1))
    # 6 * params * tokens per step for the 7 linears' forward and backward (one window of 2048 tokens)
    params = 4 * 4096 * 4096 + 3 * 4096 * 11008
    tflops = 6 * params * 2048 / (ms / 1000) / 1e12
    print(f"7B block: {ms:.1f} ms/step, linears {tflops:.0f} TFLOP/s = {100 * tflops / float(sys.argv[2]):.1f}% of peak")
PY
fi
if [[ $steps == *" 4 "* ]]; then
  data=$SALIQ_DATA_DIR/models/stories260K
  q=$out/stories-w2g32
  step stories-quantize 120 "$bin/saliq" quantize -m "$data/stories260K.bin" --tokenizer "$data/tok512.model" \
    --method gptq --bits 2 --group-size 32 --calib tinystories --calib-range 0:0.5 --nsamples 32 --seqlen 256 \
    --out "$q" --force
  for run in "cpu:--device cpu" "cuda:--device cuda --dtype fp32" "cuda-packed:--device cuda --dtype fp32 --packed-cuda"; do
    name=${run%%:*}
    # shellcheck disable=SC2086
    step "stories-eval-$name" 120 "$bin/saliq" eval -m "$q" ${run#*:} --dataset tinystories --eval-range 0.5:1 \
      --seqlen 256 --max-windows 32 --tasks piqa,arc_easy --limit 200 --json "$out/stories-$name.json"
  done
  python3 - "$out" >>"$summary" <<'PY' || true
import json, os, sys
rows = {}
for name in ("cpu", "cuda", "cuda-packed"):
    p = os.path.join(sys.argv[1], f"stories-{name}.json")
    if os.path.exists(p):
        j = json.load(open(p))
        rows[name] = (j.get("ppl"), {t: r.get("acc") for t, r in j.get("zeroshot", {}).get("tasks", {}).items()})
for name, (ppl, acc) in rows.items():
    print(f"stories260K W2 g32 {name}: ppl {ppl}, zero-shot acc {acc}")
PY
fi
if [[ $steps == *" 5 "* ]]; then
  step packed-decode 240 env SALIQ_BUILD_DIR=$bin DEVICE=cuda SHAPES=4096x4 WINDOWS=2 GEN_TOKENS=64 \
    scripts/bench_packed.sh "$out/packed"
  cat "$out/packed-decode.log" >>"$summary"
fi
note "done"
