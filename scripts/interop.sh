#!/usr/bin/env bash
# Interop with the real clients (issue: outputs every tool reads as saliq means them). Installs transformers, peft,
# gguf and lm-eval from PyPI into a virtual environment outside the repository (SALIQ_INTEROP_VENV, default
# ~/.cache/saliq/interop-venv; torch comes from scripts/setup.sh --pip-torch's venv when that exists), then on
# stories260K checks:
#   1. transformers loads `saliq export --format hf` of a packed apiq-bw folder and scores saliq's perplexity;
#   2. PEFT loads the folder's adapters (lora_alpha = r, B pre-scaled) onto its adapter-free export and scores the
#      packed folder's perplexity; AutoPeftModelForCausalLM resolves base_model_name_or_path to the folder itself;
#   3. the gguf package (llama.cpp's reader) reads `saliq export --format gguf` of the converted stories260K tensor
#      for tensor equal to llama.cpp's own stories260K.gguf;
#   4. lm-evaluation-harness on the hf export (CPU, offline over our local copies) gives saliq eval --tasks' acc.
#   5. with GPTQMODEL=1: transformers' GPTQ path (optimum + GPTQModel built with BUILD_CUDA_EXT=0, its CPU kernels)
#      loads saliq's packed folders (W4 g32 symmetric v1, W2 g32 asymmetric gptq_v2) of a random LLaMA with widths
#      GPTQ loaders accept and scores saliq's perplexity. Opt-in: GPTQModel pulls its own torch (several GB).
#   6. with SmolLM2-135M fetched (scripts/fetch_models.sh): transformers loading the GGUF itself (its own dequantization)
#      and saliq's converted folder give saliq's perplexity and greedy continuation; transformers reads the folder's
#      tokenizer.json to saliq's ids; `export --format gguf` of the folder writes the tokenizer and llama keys the shipped
#      GGUF has.
#   7. compressed-tensors' own decompressor reads `saliq export --format compressed-tensors` (W2/W3/W4, and W4
#      symmetric without zero points) to saliq's weights exactly (at fp16, the dtype the library dequantizes in).
#   8. gguf-py's dequantizers read `export --format gguf` of `quantize --grid` folders (every GGML type saliq writes)
#      to saliq's own dequantized weights exactly.
#   9. with LLAMA=1: llama.cpp (llama-cpp-python, compiled from PyPI's source into SALIQ_LLAMA_VENV) scores those
#      exports within 1e-3 of saliq's perplexity (`eval --emulate-llamacpp`: ggml's 8-bit activations), and, with
#      SmolLM2-135M fetched, on its rtn --grid q4_k export: ggml's own mul_mat (ggml_matmul_check.py) and every
#      product inside llama.cpp's run of a window (llamacpp_tensors.py --products) equal saliq's emulation, and over 40
#      WikiText-2 windows llama.cpp's perplexity is the emulated one up to noise (ppl_paired.py: mean per-window
#      difference within 3 standard errors; the float figure beside).
# Prints each client's figures; exits 1 when a check fails. Not part of scripts/test.sh (downloads, minutes).
#   scripts/interop.sh [WORK_DIR]   env: LIMIT (items per task, 200), GPTQMODEL (0), SALIQ_BUILD_DIR (build)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
export SALIQ_DATA_DIR=$data
saliq=$(pwd)/${SALIQ_BUILD_DIR:-build}/saliq
work=${1:-$(mktemp -d /tmp/saliq-interop.XXXXXX)}
mkdir -p "$work"
venv=${SALIQ_INTEROP_VENV:-$HOME/.cache/saliq/interop-venv}
limit=${LIMIT:-200}
py=$venv/bin/python
if [ ! -x "$py" ]; then
  python3 -m venv "$venv"
  torch_venv=$HOME/.cache/saliq/torch-venv
  if [ -x "$torch_venv/bin/python" ]; then  # reuse the pip LibTorch's wheel instead of a second 4 GB download
    "$torch_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
      > "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/saliq-torch.pth"
  fi
fi
"$py" -c 'import transformers, peft, gguf, lm_eval, sentencepiece, google.protobuf' 2>/dev/null ||
  "$py" -m pip install -q torch transformers peft gguf lm-eval sentencepiece protobuf safetensors accelerate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
here=scripts/interop
model=$data/models/stories260K
tok=$model/tok512.model
fail=0
check() {  # name ok(0/1) detail
  if [ "$2" = 0 ]; then echo "PASS  $1: $3"; else echo "FAIL  $1: $3"; fail=1; fi
}
close() {  # a b rel -> 0 when |a-b| <= rel*|b|
  python3 -c 'import sys; a,b,r=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b) <= r*abs(b) else 1)' "$1" "$2" "$3"
}
ppl_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$1"; }

echo "== building the models (stories260K: converted, apiq-bw W2 g32 packed with adapters, exports)"
"$saliq" convert --from-llama2c "$model/stories260K.bin" --tokenizer "$tok" --out "$work/hf" --force -q >/dev/null
"$saliq" quantize -m "$work/hf" --method apiq-bw --bits 2 --group-size 32 --calib tinystories --calib-range 0:0.5 \
  --nsamples 16 --seqlen 256 --epochs 4 --lora-rank 8 --out "$work/q" --force -q >/dev/null 2>&1
"$saliq" export -m "$work/q" --format hf --out "$work/q-hf" --force -q >/dev/null
"$saliq" export -m "$work/q" --format hf --no-adapter --out "$work/q-hf-bare" --force -q >/dev/null
"$saliq" export -m "$work/hf" --format gguf --out "$work/stories260K.gguf" --force -q >/dev/null
head -c 200000 "$data/text/tinystories/tinystories_validation_head.txt" > "$work/text.txt"
ev="--text $work/text.txt --seqlen 128 --max-windows 8 --dtype fp32 -q"
"$saliq" eval -m "$work/q" $ev --json "$work/ppl-q.json" >/dev/null
"$saliq" eval -m "$work/q-hf" $ev --json "$work/ppl-q-hf.json" >/dev/null
saliq_q=$(ppl_of "$work/ppl-q.json"); saliq_hf=$(ppl_of "$work/ppl-q-hf.json")

echo "== 1. transformers on the merged hf export"
"$py" $here/ppl_transformers.py --model "$work/q-hf" --tokenizer "$tok" --text "$work/text.txt" --seqlen 128 \
  --max-windows 8 | tail -1 > "$work/tf.json"  # the last line: clients may print banners first
tf=$(ppl_of "$work/tf.json")
close "$tf" "$saliq_q" 1e-5 && ok=0 || ok=1
check "transformers $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["transformers"])' "$work/tf.json")" \
  $ok "ppl $tf vs saliq on the packed folder $saliq_q (its hf export $saliq_hf)"

echo "== 2. PEFT adapters"
"$py" $here/ppl_transformers.py --model "$work/q-hf-bare" --adapter "$work/q" --tokenizer "$tok" --text "$work/text.txt" \
  --seqlen 128 --max-windows 8 | tail -1 > "$work/peft.json"
pf=$(ppl_of "$work/peft.json")
close "$pf" "$saliq_q" 1e-5 && ok=0 || ok=1
check "peft PeftModel" $ok "adapters of the packed folder on its adapter-free export: ppl $pf vs saliq $saliq_q"
base=$("$py" -c 'import peft,sys; print(peft.PeftConfig.from_pretrained(sys.argv[1]).base_model_name_or_path)' "$work/q")
[ "$base" = "$(cd "$work/q" && pwd -P)" ] && ok=0 || ok=1
check "peft AutoPeftModelForCausalLM base" $ok "base_model_name_or_path = $base"
if "$py" -c 'import sys, peft, torch; peft.AutoPeftModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)' \
     "$work/q" > "$work/autopeft.log" 2>&1; then
  echo "INFO  AutoPeftModelForCausalLM loaded the packed folder with its adapters"
else
  echo "INFO  AutoPeftModelForCausalLM could not load the GPTQ base here: $(tail -1 "$work/autopeft.log" | cut -c1-160)"
fi

echo "== 3. gguf (llama.cpp's reader) on the GGUF export"
if "$py" $here/gguf_compare.py "$work/stories260K.gguf" "$model/stories260K.gguf" > "$work/gguf.json"; then ok=0; else ok=1; fi
check "gguf reader" $ok "$(cat "$work/gguf.json")"

echo "== 4. lm-evaluation-harness on the hf export (first $limit items per task)"
tasks=$("$py" $here/lm_eval_tasks.py "$data" "$work/lm-tasks")
"$py" -m lm_eval --model hf --model_args "pretrained=$work/q-hf,dtype=float32,tokenizer=$work/q-hf" \
  --include_path "$work/lm-tasks" --tasks "${tasks// /,}" --limit "$limit" --device cpu --batch_size 16 \
  --output_path "$work/lm-eval" > "$work/lm-eval.log" 2>&1 || { echo "FAIL  lm-eval did not run (see $work/lm-eval.log)"; fail=1; }
"$saliq" eval -m "$work/q-hf" --tasks piqa,arc_easy,arc_challenge,boolq --limit "$limit" --dtype fp32 -q \
  --json "$work/saliq-tasks.json" --json-format lm-eval >/dev/null
python3 - "$work" <<'PY' || fail=1
import glob, json, sys
work = sys.argv[1]
files = sorted(glob.glob(work + "/lm-eval/**/results_*.json", recursive=True))
if not files:
    print("FAIL  lm-eval wrote no results"); sys.exit(1)
theirs = json.load(open(files[-1]))["results"]
ours = json.load(open(work + "/saliq-tasks.json"))["results"]
bad = 0
for task in ["piqa", "arc_easy", "arc_challenge", "boolq"]:
    t, o = theirs[task + "_local"], ours[task]
    for m in ["acc", "acc_norm"]:
        if m + ",none" not in o:
            continue
        a, b, se = t[m + ",none"], o[m + ",none"], t[m + "_stderr,none"]
        ok = abs(a - b) <= max(se, 1e-12)
        bad += not ok
        print(("PASS" if ok else "FAIL") + f"  lm-eval {task} {m}: {a:.4f} (stderr {se:.4f}) vs saliq {b:.4f}" +
              (" (equal)" if a == b else ""))
sys.exit(1 if bad else 0)
PY
if [ "${GPTQMODEL:-0}" = 1 ]; then
  echo "== 5. transformers' GPTQ path (optimum + GPTQModel, CPU kernels) on packed folders"
  "$py" -c 'import gptqmodel, optimum' 2>/dev/null || BUILD_CUDA_EXT=0 "$py" -m pip install -q optimum gptqmodel
  "$(dirname "$saliq")/make_random_llama" -o "$work/rand" --hidden 128 --intermediate 384 --layers 2 --heads 4 \
    --kv-heads 4 --vocab 512 --context 512 --dtype f32 --tokenizer "$tok" >/dev/null
  for spec in "4 --sym" "2"; do
    set -- $spec
    "$saliq" quantize -m "$work/rand" --method gptq --bits "$1" --group-size 32 ${2:-} --calib tinystories \
      --nsamples 8 --seqlen 128 --out "$work/rand-w$1" --force -q >/dev/null 2>&1
    "$saliq" eval -m "$work/rand-w$1" $ev --json "$work/rand-w$1.json" >/dev/null
    "$py" $here/ppl_transformers.py --model "$work/rand-w$1" --tokenizer "$tok" --text "$work/text.txt" --seqlen 128 \
      --max-windows 8 2>"$work/rand-w$1-tf.log" | tail -1 > "$work/rand-w$1-tf.json" || true
    a=$(ppl_of "$work/rand-w$1-tf.json" 2>/dev/null || echo nan); b=$(ppl_of "$work/rand-w$1.json")
    close "$a" "$b" 1e-5 && ok=0 || ok=1
    check "transformers+GPTQModel W$1 ${2:-asym}" $ok "ppl $a vs saliq $b"
  done
fi
models=${SALIQ_MODELS_DIR:-$HOME/.cache/saliq/models}
smol=$models/SmolLM2-135M-Instruct
if [ -f "$smol/tokenizer.json" ] && [ -f "$models/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  echo "== 6. SmolLM2-135M: transformers' own GGUF loader and saliq's converted folder (scripts/fetch_models.sh)"
  head -c 60000 "$data/text/wikitext2/wiki.test.raw" > "$work/smol.txt"
  printf 'Once upon a time, in a small village by the sea, there lived' > "$work/smol-prompt.txt"
  "$saliq" tokenize --tokenizer "$smol" --text "$work/smol.txt" -o "$work/smol.ids" -q
  "$saliq" tokenize --tokenizer "$smol" --text "$work/smol-prompt.txt" -o "$work/smol-prompt.ids" -q
  "$saliq" eval -m "$smol" --text "$work/smol.txt" --seqlen 512 --max-windows 4 --dtype fp32 -q \
    --json "$work/smol-ppl.json" >/dev/null
  "$saliq" generate -m "$smol" --prompt "$(cat "$work/smol-prompt.txt")" --max-tokens 32 -q > "$work/smol-gen.txt"
  "$py" $here/smollm2_gguf.py "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$smol" "$work/smol.txt" "$work/smol.ids" \
    "$work/smol-prompt.ids" 512 4 32 2>"$work/smol-tf.log" | tail -1 > "$work/smol-tf.json" || true
  python3 - "$work/smol-tf.json" "$work/smol-ppl.json" "$work/smol-gen.txt" "$work/smol-prompt.txt" <<'PY' || fail=1
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except ValueError:
    print("FAIL  SmolLM2: transformers did not run (see smol-tf.log)"); sys.exit(1)
ours = json.load(open(sys.argv[2]))["ppl"]
gen = open(sys.argv[3]).read().rstrip("\n")
prompt = open(sys.argv[4]).read()
bad = 0
for key in ("gguf_ppl", "folder_ppl"):
    ok = abs(r[key] - ours) <= 1e-4 * ours
    bad |= not ok
    print("%s  SmolLM2 %s: transformers %.6f vs saliq %.6f" % ("PASS" if ok else "FAIL", key, r[key], ours))
ok = r["gguf_greedy"] == r["folder_greedy"] and gen == (prompt + r["greedy_text"]).rstrip("\n")
bad |= not ok
print("%s  SmolLM2 greedy 32 tokens: transformers(GGUF) %r, saliq %r" % ("PASS" if ok else "FAIL", r["greedy_text"],
                                                                          gen[len(prompt):]))
ok = r["folder_tokenizer_ids_equal"]
bad |= not ok
print("%s  SmolLM2 transformers reads saliq's tokenizer.json to the same ids" % ("PASS" if ok else "FAIL"))
sys.exit(1 if bad else 0)
PY
  "$saliq" export -m "$smol" --format gguf --dtype fp16 --out "$work/smol.gguf" --force -q >/dev/null
  "$py" - "$work/smol.gguf" "$models/SmolLM2-135M-Instruct.Q4_1.gguf" <<'PY' || fail=1
import sys
import gguf
ours, ref = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
# Every key that decides tokens or the forward; saliq keeps no unknown/padding ids (they change neither).
skip = {"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"}
keys = [k for k in ref.fields if (k.startswith("tokenizer.ggml.") or k.startswith("llama.")) and k not in skip]
differing = [k for k in keys if k not in ours.fields or ours.fields[k].contents() != ref.fields[k].contents()]
print("%s  SmolLM2 export --format gguf: %d tokenizer/llama keys as the shipped GGUF has them%s"
      % ("PASS" if not differing else "FAIL", len(keys) - len(differing), ", differing: %s" % differing if differing else ""))
sys.exit(1 if differing else 0)
PY
fi
echo "== 7. compressed-tensors' own decompressor on export --format compressed-tensors (W2/W3/W4 g4 and symmetric W4, stories260K)"
"$py" -c 'import compressed_tensors' 2>/dev/null || "$py" -m pip install -q compressed-tensors
for b in 2 3 4 4s; do  # 4s: symmetric, stored without zero points
  sym=(); [ "$b" = 4s ] && sym=(--sym)
  "$saliq" quantize -m "$model/stories260K.bin" --tokenizer "$tok" --method rtn --bits ${b%s} --group-size 4 \
    "${sym[@]}" --out "$work/ct-q$b" --force -q >/dev/null 2>&1
  "$saliq" export -m "$work/ct-q$b" --format compressed-tensors --out "$work/ct$b" --force -q >/dev/null
  "$saliq" export -m "$work/ct-q$b" --format hf --no-adapter --out "$work/ct-d$b" --force -q >/dev/null
  out=$("$py" $here/compressed_tensors_check.py "$work/ct$b" "$work/ct-d$b" 2>&1) && ok=0 || ok=1
  check "compressed-tensors W$b" $ok "$(tail -1 <<<"$out")"
done

echo "== 8. GGML grids: gguf-py's dequantizers on export --format gguf of --grid folders (random 256/512-wide LLaMA)"
"$(dirname "$saliq")/make_random_llama" -o "$work/grid" --hidden 256 --intermediate 512 --layers 2 --heads 4 \
  --kv-heads 2 --vocab 512 --context 512 --dtype f32 --tokenizer "$tok" >/dev/null
for grid in q2_k q3_k q4_k q4_0 q4_1 q5_0 q8_0 iq4_nl; do
  method=rtn; [ $grid = q2_k ] || [ $grid = q4_0 ] && method=gptq
  "$saliq" quantize -m "$work/grid" --method $method --grid $grid --calib tinystories --nsamples 8 --seqlen 128 \
    --out "$work/grid-$grid" --force -q >/dev/null 2>&1
  "$saliq" export -m "$work/grid-$grid" --format gguf --out "$work/grid-$grid.gguf" --force -q >/dev/null
  "$saliq" export -m "$work/grid-$grid" --format gguf --merge --no-adapter --out "$work/grid-$grid-dense.gguf" \
    --force -q >/dev/null
  out=$("$py" $here/gguf_blocks_check.py "$work/grid-$grid.gguf" "$work/grid-$grid-dense.gguf" 2>&1) && ok=0 || ok=1
  check "gguf-py $grid ($method)" $ok "$(tail -1 <<<"$out")"
done
if [ "${LLAMA:-0}" = 1 ]; then
  echo "== 9. llama.cpp (llama-cpp-python, built from PyPI's source) runs the grid exports at saliq's perplexity"
  lpy=${SALIQ_LLAMA_VENV:-$HOME/.cache/saliq/llama-venv}/bin/python
  [ -x "$lpy" ] || { python3 -m venv "${lpy%/bin/python}"; "$lpy" -m pip install -q llama-cpp-python numpy; }
  "$lpy" -c 'import gguf' 2>/dev/null || "$lpy" -m pip install -q gguf
  for grid in q2_k q3_k q4_k q4_0; do
    "$saliq" eval -m "$work/grid-$grid" $ev --emulate-llamacpp fp32 --json "$work/grid-$grid.json" >/dev/null
    "$lpy" $here/llamacpp_ppl.py --model "$work/grid-$grid.gguf" --text "$work/text.txt" --seqlen 128 --max-windows 8 \
      2>"$work/grid-$grid-llama.log" | tail -1 > "$work/grid-$grid-llama.json" || true
    a=$(ppl_of "$work/grid-$grid-llama.json" 2>/dev/null || echo nan); b=$(ppl_of "$work/grid-$grid.json")
    close "$a" "$b" 1e-3 && ok=0 || ok=1
    check "llama.cpp $grid" $ok "ppl $a vs saliq $b"
  done
  # The GGUF LoRA adapter: a random r 4 PEFT adapter on the q4_k folder, exported beside its blocks.
  "$py" $here/make_peft_adapter.py "$work/grid-q4_k" --std 0.05 >/dev/null
  "$saliq" export -m "$work/grid-q4_k" --format gguf --out "$work/grid-q4_k-lora.gguf" --force -q >/dev/null
  "$saliq" eval -m "$work/grid-q4_k" $ev --emulate-llamacpp fp32 --json "$work/grid-q4_k-lora.json" >/dev/null
  "$lpy" $here/llamacpp_ppl.py --model "$work/grid-q4_k-lora.gguf" --lora "$work/grid-q4_k-lora.lora.gguf" \
    --text "$work/text.txt" --seqlen 128 --max-windows 8 2>"$work/grid-lora-llama.log" | tail -1 \
    > "$work/grid-lora-llama.json" || true
  a=$(ppl_of "$work/grid-lora-llama.json" 2>/dev/null || echo nan); b=$(ppl_of "$work/grid-q4_k-lora.json")
  close "$a" "$b" 1e-3 && ok=0 || ok=1
  check "llama.cpp q4_k + GGUF LoRA adapter" $ok "ppl $a vs saliq $b (the folder with its PEFT adapter)"
  if [ -f "$smol/tokenizer.json" ]; then
    # A real model, where llama.cpp's 8-bit activations move perplexity by tenths of a percent and make the model a
    # discontinuous function of its inputs: llama.cpp and the emulation agree op by op (checked below with ggml's own
    # mul_mat), but flipped roundings part single tokens, so a few windows differ by ~1e-3 at random (README,
    # "llama.cpp's 8-bit activations"; the whole test set agrees to 1.5e-4). Checked here: over 40 windows the mean
    # per-window difference to the emulation is within 3 standard errors of zero; the float figure is shown beside.
    prompt="Once upon a time, in a small village by the sea, there lived"
    for grid in q4_k; do
      "$saliq" quantize -m "$smol" --method rtn --grid $grid --calib c4 --nsamples 8 --seqlen 256 \
        --out "$work/smol-$grid" --force -q >/dev/null 2>&1
      "$saliq" export -m "$work/smol-$grid" --format gguf --dtype fp16 --out "$work/smol-$grid.gguf" --force -q >/dev/null
      "$saliq" eval -m "$work/smol-$grid" --dataset wikitext2 --seqlen 512 --max-windows 40 \
        --emulate-llamacpp fp16 -q --json "$work/smol-$grid.json" >/dev/null
      "$saliq" eval -m "$work/smol-$grid" --dataset wikitext2 --seqlen 512 --max-windows 40 -q \
        --json "$work/smol-$grid-float.json" >/dev/null
      "$saliq" generate -m "$work/smol-$grid" --emulate-llamacpp fp16 --prompt "$prompt" --max-tokens 24 -q \
        > "$work/smol-$grid-gen.txt"
      "$lpy" $here/llamacpp_ppl.py --model "$work/smol-$grid.gguf" --text "$data/text/wikitext2/wiki.test.raw" \
        --wikitext2 --seqlen 512 --max-windows 40 --prompt "$prompt" --gen 24 2>"$work/smol-$grid-llama.log" | tail -1 \
        > "$work/smol-$grid-llama.json" || true
      out=$("$py" $here/ppl_paired.py "$work/smol-$grid-llama.json" "$work/smol-$grid.json" --label-a llama.cpp \
        --label-b emulated --max-t 3 2>&1) && ok=0 || ok=1
      check "SmolLM2 $grid: llama.cpp = saliq --emulate-llamacpp up to noise" $ok "$(tail -1 <<<"$out")"
      out=$("$py" $here/ppl_paired.py "$work/smol-$grid-llama.json" "$work/smol-$grid-float.json" --label-a llama.cpp \
        --label-b float 2>&1) || true
      echo "INFO  $(tail -1 <<<"$out")"
      for spec in "blk.0.attn_q.weight 512 --embeddings" "blk.0.ffn_down.weight 512" "blk.0.ffn_down.weight 3"; do
        out=$("$lpy" $here/ggml_matmul_check.py "$work/smol-$grid.gguf" $spec 2>&1) && ok=0 || ok=1
        check "ggml_mul_mat vs the emulation" $ok "$(tail -1 <<<"$out")"
      done
      # Inside llama.cpp's own run of a window: every product of its own inputs is the emulated product.
      out=$(cd $here && "$lpy" llamacpp_tensors.py "$work/smol-$grid.gguf" --text "$data/text/wikitext2/wiki.test.raw" \
        --tokens 512 --products --check 1e-6 2>&1) && ok=0 || ok=1
      check "llama.cpp's run, product by product, vs the emulation" $ok "$(tail -2 <<<"$out" | tr '\n' ' ')"
      python3 - "$work/smol-$grid-llama.json" "$work/smol-$grid-gen.txt" "$prompt" <<'PY'
import json, sys
theirs = json.load(open(sys.argv[1]))["greedy"]
ours = open(sys.argv[2]).read().rstrip("\n")[len(sys.argv[3]):]
print("INFO  greedy 24 tokens: llama.cpp %r\n                       saliq     %r" % (theirs, ours))
PY
    done
  fi
fi

[ $fail = 0 ] && echo "interop: all checks passed ($work)" || echo "interop: some checks failed ($work)"
exit $fail
