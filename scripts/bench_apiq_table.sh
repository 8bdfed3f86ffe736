#!/usr/bin/env bash
# The ApiQ / saliency table on the reference model: stories260K at W2 g32 and W3 g32, TinyStories calibration from
# the first half of the text, perplexity (seqlen 512) on the held-out second half. Rows: FP, RTN, GPTQ, OmniQuant
# (LWC only), ApiQ-lw, ApiQ-bw, ApiQ-bw + saliency (Fisher-weighted), ApiQ-bw + plain L2, and a small lambda sweep
# of the mixed stage. Runs JOBS quantizations at a time (default 2, one thread each) and prints a Markdown table.
#   scripts/bench_apiq_table.sh [OUT_DIR]      env: NSAMPLES (32) SEQLEN (512) EPOCHS (20) JOBS (2) DEVICE (cpu)
#   DTYPE (auto: fp32 on CPU, bf16 on CUDA) is the quantization's compute type; perplexity is always taken in fp32.
#   ONLY (a grep -E pattern over run names, e.g. '^w2_') runs a subset, to split the table over time-limited calls.
#   LWC_INIT (minmax: the methods as published; auto for saliq's default, which searches the 2-bit clipping start).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
saliq=${SALIQ_BIN:-$(pwd)/${SALIQ_BUILD_DIR:-build}/saliq}
out=${1:-bench-out/apiq-table}
mkdir -p "$out"
model=$data/models/stories260K
device=${DEVICE:-cpu}
threads=1; [ "$device" != cpu ] && threads=0
src="-m $model/stories260K.bin --tokenizer $model/tok512.model --device $device --threads $threads"
calib="--calib tinystories --calib-range 0:0.5 --nsamples ${NSAMPLES:-32} --seqlen ${SEQLEN:-512} --seed 0"
lwc="--lwc-init ${LWC_INIT:-minmax}"
epochs=${EPOCHS:-20}
fisher=$out/fisher.safetensors
[ -f "$fisher" ] || "$saliq" saliency $src --metric fisher --calib c4 --nsamples 100 --seqlen 512 --out "$fisher" -q >/dev/null

jobs=()
for bits in 2 3; do
  q="--bits $bits --group-size 32"
  jobs+=("w${bits}_rtn|--method rtn $q")
  jobs+=("w${bits}_gptq|--method gptq $q")
  jobs+=("w${bits}_omniquant|--method omniquant $q $lwc --epochs $epochs")
  jobs+=("w${bits}_apiq-lw|--method apiq-lw $q --epochs $epochs")
  jobs+=("w${bits}_apiq-bw|--method apiq-bw $q $lwc --epochs $epochs")
  jobs+=("w${bits}_apiq-bw+fisher|--method apiq-bw $q $lwc --saliency --fisher $fisher")
  jobs+=("w${bits}_apiq-bw+l2|--method apiq-bw $q $lwc --saliency --plain-l2")
done
for lambda in 0.01 0.1 1; do
  jobs+=("w2_apiq-bw+fisher-mixed-l$lambda|--method apiq-bw --bits 2 --group-size 32 $lwc --saliency --fisher $fisher --stages mixed:$epochs --lambda $lambda")
done

if [ -n "${ONLY:-}" ]; then
  kept=()
  for j in "${jobs[@]}"; do grep -qE "$ONLY" <<<"${j%%|*}" && kept+=("$j"); done
  jobs=("${kept[@]}")
fi

run_one() {
  name=${1%%|*}; args=${1#*|}
  dir=$out/$name
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$saliq" quantize $src --dtype "${DTYPE:-auto}" $calib $args --out "$dir" --force -q >"$dir.log" 2>&1 ||
    { echo "$name failed" >&2; return 0; }
  end=$(date +%s.%N)
  "$saliq" eval -m "$dir" --device "$device" --dtype fp32 --threads "$threads" --dataset tinystories --eval-range 0.5:1 --seqlen 512 \
    -q --json "$dir.eval.json" >/dev/null
  python3 - "$name" "$start" "$end" "$dir" <<'PY' > "$dir.row"
import json, os, sys
name, start, end, d = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ppl = json.load(open(d + ".eval.json"))["ppl"]
size = os.path.getsize(d + "/model.safetensors")
print(f"{name}|{ppl:.4f}|{end - start:.1f}|{size}")
PY
}
export -f run_one
export saliq src calib out device threads
printf '%s\n' "${jobs[@]}" | xargs -P "${JOBS:-2}" -I{} bash -c 'run_one "$@"' _ {}

"$saliq" eval $src --dtype fp32 --dataset tinystories --eval-range 0.5:1 --seqlen 512 -q --json "$out/fp.eval.json" >/dev/null
echo "| run | perplexity | quantize wall s | model.safetensors bytes |"
echo "|---|---|---|---|"
python3 -c 'import json,sys; print("| FP32 | %.4f | - | - |" % json.load(open(sys.argv[1]))["ppl"])' "$out/fp.eval.json"
for j in "${jobs[@]}"; do
  name=${j%%|*}
  [ -f "$out/$name.row" ] && IFS='|' read -r n p s b < "$out/$name.row" && echo "| $n | $p | $s | $b |"
done
