#!/usr/bin/env bash
# Peers on saliq's model, data and windows: AutoRound, GPTQModel's and llm-compressor's GPTQ quantize SmolLM2-135M
# on the very C4 windows `saliq quantize` draws (`saliq windows`), and saliq's evaluator scores every folder on the
# same WikiText-2 windows; saliq's own rows run beside them. Prints one table: what each tool was given, its wall
# time, bits and perplexity. Peers live in virtual environments outside the repo (torch reused from setup.sh
# --pip-torch's venv, or GPTQModel's).
#   scripts/bench_peers.sh [WORK]
#   env: SALIQ_BUILD_DIR (build), SALIQ_PEERS_VENV (~/.cache/saliq/peers-venv: AutoRound, on the pip LibTorch's
#        torch), SALIQ_GPTQMODEL_VENV (~/.cache/saliq/gptqmodel-venv: GPTQModel 7.7 pins torch >= 2.14.1, newer than
#        that wheel, so it gets a venv and a torch of its own), SALIQ_LLMC_VENV (~/.cache/saliq/llmcompressor-venv:
#        llm-compressor 0.14 on GPTQModel's torch and transformers, installed without its pins, which would pull
#        another torch), PEERS (autoround gptqmodel llmcompressor),
#        SALIQ_ROWS (gptq apiq-bw: saliq's rows), SPECS ("3:64 2:64": bits:group), NSAMPLES (128), SEQLEN (512),
#        ITERS (200, AutoRound's default), EPOCHS (20, apiq-bw), THREADS (2), MAX_WINDOWS (40; 0 = the whole set)
# The peers are pinned to the versions the README's figures were made with (auto-round 0.16.1, gptqmodel 7.7.0,
# llm-compressor 0.14.0.1); an existing venv is kept as it is.
# AutoRound folders are also scored by transformers with AutoRound's own dequantizer
# (scripts/interop/ppl_peer_transformers.py): the cross-check of saliq's reading of a peer's folder.
# A folder that exists is not made again: delete it to rerun a row.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
build=${SALIQ_BUILD_DIR:-build}
saliq=$(pwd)/$build/saliq
export SALIQ_DATA_DIR=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
model=${SALIQ_MODELS_DIR:-$HOME/.cache/saliq/models}/SmolLM2-135M-Instruct
[ -f "$model/config.json" ] || { echo "bench_peers: $model missing (scripts/fetch_models.sh)" >&2; exit 1; }
work=${1:-$HOME/.cache/saliq/peers}
mkdir -p "$work"
work=$(cd "$work" && pwd)
peers=${PEERS-autoround gptqmodel llmcompressor}
rows=${SALIQ_ROWS-gptq apiq-bw}
specs=${SPECS:-3:64 2:64}
nsamples=${NSAMPLES:-128}
seqlen=${SEQLEN:-512}
iters=${ITERS:-200}
epochs=${EPOCHS:-20}
threads=${THREADS:-2}
max_windows=${MAX_WINDOWS:-40}

venv=${SALIQ_PEERS_VENV:-$HOME/.cache/saliq/peers-venv}
gptqmodel_venv=${SALIQ_GPTQMODEL_VENV:-$HOME/.cache/saliq/gptqmodel-venv}
llmc_venv=${SALIQ_LLMC_VENV:-$HOME/.cache/saliq/llmcompressor-venv}
peer_python() {  # peer -> the python of its venv
  case $1 in
    gptqmodel) echo "$gptqmodel_venv/bin/python" ;;
    llmcompressor) echo "$llmc_venv/bin/python" ;;
    *) echo "$venv/bin/python" ;;
  esac
}
for peer in $peers; do
  py=$(peer_python "$peer")
  if [ ! -x "$py" ]; then
    python3 -m venv "${py%/bin/python}"
    torch_venv=${SALIQ_TORCH_VENV:-$HOME/.cache/saliq/torch-venv}
    # the shared venv takes the pip LibTorch's wheel, not a second multi-GB download (GPTQModel's has its own torch)
    if [ "${py%/bin/python}" = "$venv" ] && [ -x "$torch_venv/bin/python" ]; then
      "$torch_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
        > "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/saliq-torch.pth"
    fi
  fi
  case $peer in
    autoround) "$py" -c 'import auto_round' 2>/dev/null || "$py" -m pip install -q auto-round==0.16.1 ;;
    gptqmodel) "$py" -c 'import gptqmodel' 2>/dev/null || BUILD_CUDA_EXT=0 "$py" -m pip install -q gptqmodel==7.7.0 ;;
    llmcompressor)
      if ! "$py" -c 'import llmcompressor' 2>/dev/null; then
        # GPTQModel's venv lends torch, transformers and datasets (its pins would pull torch 2.14 with CUDA wheels)
        gpy=$(peer_python gptqmodel)
        if [ ! -x "$gpy" ]; then
          echo "bench_peers: llmcompressor runs on GPTQModel's venv: run PEERS=gptqmodel first" >&2
          exit 2
        fi
        "$gpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
          > "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/saliq-gptqmodel.pth"
        "$py" -m pip install -q --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 auto-round==0.15.1 \
          loguru nvidia-ml-py py-cpuinfo
      fi ;;
    *) echo "bench_peers: unknown peer $peer (autoround, gptqmodel, llmcompressor)" >&2; exit 2 ;;
  esac
done
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=$threads

windows=$work/windows-c4-$nsamples-$seqlen.json
[ -f "$windows" ] || "$saliq" windows --tokenizer "$model" --calib c4 --calib-range 0:0.5 --nsamples "$nsamples" \
  --seqlen "$seqlen" --seed 0 -o "$windows" -q
score() {  # folder -> its eval JSON (made once)
  [ -f "$1.eval.json" ] || "$saliq" eval -m "$1" --dataset wikitext2 --seqlen 512 --max-windows "$max_windows" \
    --dtype fp32 --threads "$threads" --json "$1.eval.json" -q >/dev/null
}
results=$work/results.jsonl
score_fp() { [ -f "$work/fp.eval.json" ] || "$saliq" eval -m "$model" --dataset wikitext2 --seqlen 512 \
  --max-windows "$max_windows" --dtype fp32 --threads "$threads" --json "$work/fp.eval.json" -q >/dev/null; }
score_fp
for spec in $specs; do
  bits=${spec%%:*}; group=${spec##*:}
  for peer in $peers; do
    out=$work/$peer-w$bits-g$group
    if [ ! -d "$out" ]; then
      # run in the work folder: GPTQModel writes a logs/ folder into the current one
      (cd "$work" && "$(peer_python "$peer")" "$repo/scripts/peers/run_peer.py" --peer "$peer" --model "$model" \
        --windows "$windows" --bits "$bits" --group "$group" --iters "$iters" --threads "$threads" \
        --out "$out.tmp" > "$out.log")
      tail -1 "$out.log" > "$out.given.json"  # what it was given: the last line (GPTQModel logs to stdout too)
      mv "$out.tmp" "$out"
    fi
    score "$out"
    # The cross-check of saliq's reading: the peer's own dequantizer (AutoRound's QuantLinear, compressed-tensors'
    # decompressor) and transformers' forward score the folder too.
    cross=()
    case $peer in autoround) cross=(--autoround-torch) ;; llmcompressor) cross=(--decompress) ;; esac
    if [ ${#cross[@]} -gt 0 ] && [ ! -f "$out.transformers.json" ]; then
      "$(peer_python "$peer")" scripts/interop/ppl_peer_transformers.py --model "$out" "${cross[@]}" --wikitext2 \
        --text "$SALIQ_DATA_DIR/text/wikitext2/wiki.test.raw" --seqlen 512 --max-windows "$max_windows" \
        --threads "$threads" 2>/dev/null | tail -1 > "$out.transformers.json.tmp"
      mv "$out.transformers.json.tmp" "$out.transformers.json"
    fi
    python3 - "$out" "$peer" >> "$results" <<'PY'
import json, os, sys
out, name = sys.argv[1:]
given = json.load(open(out + ".given.json"))
ev = json.load(open(out + ".eval.json"))
row = {"row": name, "given": given, "wall_s": given["wall_s"], "ppl": ev["ppl"], "folder": out}
if os.path.exists(out + ".transformers.json"):
    row["ppl_transformers"] = json.load(open(out + ".transformers.json"))["ppl"]
print(json.dumps(row))
PY
  done
  for row in $rows; do
    out=$work/saliq-$row-w$bits-g$group
    if [ ! -d "$out" ]; then
      extra=()
      [ "$row" = apiq-bw ] && extra=(--epochs "$epochs")
      [ -d "$out.partial" ] && extra+=(--resume)  # an interrupted row goes on from its finished blocks
      start=$(date +%s.%N)
      "$saliq" quantize -m "$model" --method "$row" --bits "$bits" --group-size "$group" --calib c4 \
        --calib-range 0:0.5 --nsamples "$nsamples" --seqlen "$seqlen" --seed 0 --threads "$threads" "${extra[@]}" \
        --out "$out" -q
      python3 -c 'import sys,time; print(round(time.time()-float(sys.argv[1]),1))' "$start" > "$out.wall"
    fi
    score "$out"
    python3 - "$out" "$row" "$bits" "$group" "$nsamples" "$seqlen" "$epochs" >> "$results" <<'PY'
import json, sys
out, row, bits, group, n, L, epochs = sys.argv[1:]
given = {"peer": "saliq " + row, "bits": int(bits), "group_size": int(group), "sym": False, "windows": int(n),
         "seqlen": int(L)}
if row == "apiq-bw":
    given["epochs"] = int(epochs)
wall = float(open(out + ".wall").read())
ev = json.load(open(out + ".eval.json"))
print(json.dumps({"row": "saliq " + row, "given": given, "wall_s": wall, "ppl": ev["ppl"], "folder": out}))
PY
  done
done
python3 - "$results" "$work/fp.eval.json" <<'PY'
import json, sys
fp = json.load(open(sys.argv[2]))["ppl"]
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["folder"]] = r  # the latest line of a folder
print(f"WikiText-2 perplexity (saliq's evaluator), FP {fp:.3f}")
print("| tool | W | g | given | wall s | ppl | x FP | ppl, transformers + the peer's dequantizer |")
print("|---|---|---|---|---|---|---|---|")
for r in rows.values():
    g = r["given"]
    keys = ("iters", "batch_size", "epochs", "damp_percent", "dampening_frac", "actorder", "version")
    extra = ", ".join(f"{k} {g[k]}" for k in keys if k in g)
    cross = f'{r["ppl_transformers"]:.2f}' if "ppl_transformers" in r else ""
    print(f'| {r["row"]} | {g["bits"]} | {g["group_size"]} | {g["windows"]} x {g["seqlen"]}'
          f'{", " + extra if extra else ""} | {r["wall_s"]:.0f} | {r["ppl"]:.2f} | {r["ppl"] / fp:.2f} | {cross} |')
PY
