#!/usr/bin/env bash
# The saliency harness (issue: does --saliency help?): apiq-bw and saliency variants on stories260K, calibrated on
# NSAMPLES (128) x 512 windows from the first half of TinyStories and scored on the held-out second half, over SEEDS
# (0 1 2; --seed draws the windows and initialises LoRA). Prints per variant: perplexity mean +- std over seeds, the
# share of ApiQ-bw's degradation it closes, (apiq - x) / (apiq - fp) of the means (the paper's measure), and on how
# many seeds it beats apiq-bw of the same seed.
#   scripts/bench_saliency.sh [OUT_DIR]   env: BITS (2; "2 3" for both), SEEDS, NSAMPLES, EPOCHS (20), JOBS (2),
#   ONLY (grep -E over variant names), VARIANTS_FILE (lines "name|quantize args" replacing the built-in grid),
#   LWC_INIT (minmax, the start the README's tables used; auto for saliq's default; a variant's own --lwc-init wins)
# Fisher files: C4 100 x 512 (the paper's) and in-domain (TinyStories 0:0.5, 100 x 512), computed once into OUT_DIR.
# Runs that finished are kept (OUT_DIR/<variant>/s<seed>.ppl) and not redone: delete them to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
saliq=${SALIQ_BIN:-$(pwd)/${SALIQ_BUILD_DIR:-build}/saliq}
out=${1:-bench-out/saliency}
mkdir -p "$out"
model=$data/models/stories260K
src="-m $model/stories260K.bin --tokenizer $model/tok512.model --threads 1"
start="--lwc-init ${LWC_INIT:-minmax}"
epochs=${EPOCHS:-20}
calib="--calib tinystories --calib-range 0:0.5 --nsamples ${NSAMPLES:-128} --seqlen 512"
seeds=${SEEDS:-"0 1 2"}
c4=$out/fisher-c4.safetensors
ts=$out/fisher-tinystories.safetensors
[ -f "$c4" ] || "$saliq" saliency $src --metric fisher --calib c4 --nsamples 100 --seqlen 512 --out "$c4" -q >/dev/null
[ -f "$ts" ] || "$saliq" saliency $src --metric fisher --calib tinystories --calib-range 0:0.5 --nsamples 100 --seqlen 512 \
  --out "$ts" -q >/dev/null

# Other saliency metrics (C4 100 x 512 too): SliM-LLM's Hessian salience, and ReQuant's |PQI| towards RTN at each
# bit width (8 trapezoid intervals). Computed when a variant asks for them.
hessian=$out/hessian-c4.safetensors
metric_file() {  # metric bits -> file
  local f=$out/$1-c4-w$2.safetensors
  [ "$1" = hessian ] && f=$hessian
  [ -f "$f" ] || "$saliq" saliency $src --metric "$1" --bits "$2" --group-size 32 --calib c4 --nsamples 100 \
    --seqlen 512 --out "$f" -q >/dev/null
  echo "$f"
}

variants=()
for bits in ${BITS:-2}; do
  p="w${bits}_"
  q="--method apiq-bw --bits $bits --group-size 32"
  s="$q --saliency --fisher $c4 --fisher-norm none"  # the paper's raw Fisher (lambda 0.1 unless a row says)
  variants+=("${p}apiq-bw|$q --epochs $epochs")
  variants+=("${p}default|$q --saliency --fisher-calib c4 --fisher-nsamples 100 --fisher-seqlen 512")  # saliq's defaults
  variants+=("${p}paper:wpt15-opt5|$s --stages wpt:15 opt:5")
  variants+=("${p}wpt15-opt5,lambda0|$s --stages wpt:15 opt:5 --lambda 0")  # the hypothesis: wpt moves by decay only
  variants+=("${p}mixed15-opt5|$s --stages mixed:15 opt:5")
  variants+=("${p}mixed20|$s --stages mixed:$epochs")
  variants+=("${p}mixed20,lambda0.01|$s --stages mixed:$epochs --lambda 0.01")
  variants+=("${p}mixed20,lambda1|$s --stages mixed:$epochs --lambda 1")
  variants+=("${p}mixed20,after_lora|$s --stages mixed:$epochs --reg-method after_lora")
  variants+=("${p}mixed20,in-domain|$q --saliency --fisher $ts --fisher-norm none --stages mixed:$epochs")
  variants+=("${p}mixed20,plain-l2|$q --saliency --plain-l2 --fisher-norm none --stages mixed:$epochs")
  for lambda in 1 10 20 100 1000; do
    variants+=("${p}mixed20,norm-mean,lambda$lambda|$s --fisher-norm mean --stages mixed:$epochs --lambda $lambda")
  done
  for metric in hessian pqi; do
    # (their files are computed only for a run of the built-in grid that keeps these rows)
    [ -n "${VARIANTS_FILE:-}" ] && continue
    if [ -z "${ONLY:-}" ] || grep -qE "$ONLY" <<<"${p}mixed20,$metric,norm-mean,lambda20"; then
      variants+=("${p}mixed20,$metric,norm-mean,lambda20|$q --saliency --fisher $(metric_file $metric $bits) --fisher-norm mean --stages mixed:$epochs --lambda 20")
    fi
  done
done
if [ -n "${VARIANTS_FILE:-}" ]; then mapfile -t variants < "$VARIANTS_FILE"; fi
if [ -n "${ONLY:-}" ]; then
  kept=()
  for v in "${variants[@]}"; do grep -qE "$ONLY" <<<"${v%%|*}" && kept+=("$v"); done
  variants=("${kept[@]}")
fi

run_one() {  # "name|args" seed
  local name=${1%%|*} args=${1#*|} seed=$2
  local dir=$out/${name//[^A-Za-z0-9_.,:-]/_}
  mkdir -p "$dir"
  [ -f "$dir/s$seed.ppl" ] && return 0
  # shellcheck disable=SC2086
  if ! "$saliq" quantize $src $calib $start --seed "$seed" $args --out "$dir/q$seed" --force -q >"$dir/s$seed.log" 2>&1; then
    echo "$name seed $seed failed (see $dir/s$seed.log)" >&2; return 0
  fi
  "$saliq" eval -m "$dir/q$seed" --threads 1 --dtype fp32 --dataset tinystories --eval-range 0.5:1 --seqlen 512 -q \
    --json "$dir/s$seed.json" >/dev/null
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$dir/s$seed.json" > "$dir/s$seed.ppl.tmp"
  mv "$dir/s$seed.ppl.tmp" "$dir/s$seed.ppl"
  rm -rf "$dir/q$seed"
}
export -f run_one
export saliq src calib out start
# One job per variant and seed, "name|args#seed" (no argument holds a '#'), seed by seed: a run cut short still has
# whole seeds to compare.
for seed in $seeds; do for v in "${variants[@]}"; do printf '%s#%s\n' "$v" "$seed"; done; done |
  xargs -P "${JOBS:-2}" -d '\n' -I{} bash -c 'run_one "${1%#*}" "${1##*#}"' _ {}

[ -f "$out/fp.ppl" ] || { "$saliq" eval $src --dtype fp32 --dataset tinystories --eval-range 0.5:1 --seqlen 512 -q \
  --json "$out/fp.json" >/dev/null && python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' \
  "$out/fp.json" > "$out/fp.ppl"; }
names=()
for v in "${variants[@]}"; do names+=("${v%%|*}"); done
python3 - "$out" "$seeds" "${names[@]}" <<'PY'
import os, re, statistics, sys
out, seeds = sys.argv[1], sys.argv[2].split()
fp = float(open(os.path.join(out, "fp.ppl")).read())
rows = sys.argv[3:]
def ppls(name):
    d = os.path.join(out, re.sub(r"[^A-Za-z0-9_.,:-]", "_", name))
    got = {}
    for s in seeds:
        f = os.path.join(d, f"s{s}.ppl")
        if os.path.exists(f): got[s] = float(open(f).read())
    return got
print(f"FP32 perplexity (held-out TinyStories 0.5:1, seqlen 512): {fp:.4f}; seeds {' '.join(seeds)}")
print("| variant | ppl mean ± std | per seed | closes of ApiQ-bw's degradation | beats apiq-bw |")
print("|---|---|---|---|---|")
for name in rows:
    got = ppls(name)
    if not got:
        print(f"| {name} | (no finished run) | | | |"); continue
    vals = [got[s] for s in seeds if s in got]
    mean = statistics.mean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    base_name = name.split("_", 1)[0] + "_apiq-bw"
    base = ppls(base_name)
    closed, beats = "-", "-"
    if base and name != base_name:
        bmean = statistics.mean(base[s] for s in seeds if s in base)
        closed = f"{100 * (bmean - mean) / (bmean - fp):+.1f}%" if bmean != fp else "-"
        common = [s for s in seeds if s in got and s in base]
        beats = f"{sum(got[s] < base[s] for s in common)}/{len(common)}"
    per = " ".join(f"{got[s]:.3f}" if s in got else "-" for s in seeds)
    print(f"| {name} | {mean:.4f} ± {std:.4f} | {per} | {closed} | {beats} |")
PY
