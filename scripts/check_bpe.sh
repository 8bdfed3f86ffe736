#!/usr/bin/env bash
# saliq's byte-level BPE against Hugging Face's `tokenizers` (the reference, installed from PyPI into a virtual
# environment outside the repository): on SmolLM2-135M's vocabulary (scripts/fetch_models.sh), for three
# pre-tokenizer families (smollm, gpt2, llama3; scripts/bpe/reference.py) and every shared text file, saliq's ids
# from the tokenizer.json tokenizers wrote must equal tokenizers' ids, and saliq's ids from the folder
# `saliq convert --from-gguf` wrote (its own tokenizer.json) must equal the smollm reference.
# Exit 0 when all match, 1 on a mismatch (the first differing position is printed), 77 (skip) when the model or
# PyPI is out of reach.
#   scripts/check_bpe.sh [WORK_DIR]   env: SALIQ_BUILD_DIR (build), SALIQ_MODELS_DIR, SALIQ_BPE_VENV
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SALIQ_DATA_DIR:-$(cd .. && pwd)/shared/data}
build=${SALIQ_BUILD_DIR:-build}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
saliq=$build/saliq
models=${SALIQ_MODELS_DIR:-$HOME/.cache/saliq/models}
gguf=$models/SmolLM2-135M-Instruct.Q4_1.gguf
folder=$models/SmolLM2-135M-Instruct
if [ ! -f "$gguf" ] || [ ! -f "$folder/tokenizer.json" ]; then
  echo "SKIP: $gguf or $folder is absent (scripts/fetch_models.sh fetches and converts it)"; exit 77
fi
venv=${SALIQ_BPE_VENV:-$HOME/.cache/saliq/interop-venv}
if ! "$venv/bin/python" -c 'import tokenizers, gguf' 2>/dev/null; then
  venv=$HOME/.cache/saliq/bpe-venv
  if ! "$venv/bin/python" -c 'import tokenizers, gguf' 2>/dev/null; then
    { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q --disable-pip-version-check tokenizers gguf; } ||
      { echo "SKIP: cannot install tokenizers and gguf from PyPI into $venv"; exit 77; }
  fi
fi
if [ -n "${1:-}" ]; then
  work=$1
  mkdir -p "$work"
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/saliq-bpe.XXXXXX")
  trap 'rm -rf "$work"' EXIT
fi
# Every shared text file, plus the documents inside the JSON ones (their raw lines escape non-ASCII text).
texts=()
while IFS= read -r f; do texts+=("$f"); done < <(find "$data/text" "$data/tasks" -type f | sort)
python3 - "$data/text/c4/c4_validation_2k.jsonl" "$work/c4_documents.txt" <<'PY'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w", encoding="utf-8") as out:
    for line in f:
        if line.strip():
            out.write(json.loads(line)["text"] + "\n\n")
PY
texts+=("$work/c4_documents.txt")
"$venv/bin/python" scripts/bpe/reference.py "$gguf" "$work" "${texts[@]}"
fail=0
compare() {  # label saliq.ids reference.ids
  if cmp -s "$2" "$3"; then
    echo "PASS  $1 ($(wc -w < "$3") ids)"
  else
    fail=1
    python3 - "$1" "$2" "$3" <<'PY'
import sys
a, b = open(sys.argv[2]).read().split(), open(sys.argv[3]).read().split()
i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
print("FAIL  %s: saliq %d ids, tokenizers %d; first difference at %d: saliq %s, tokenizers %s"
      % (sys.argv[1], len(a), len(b), i, a[i:i + 8], b[i:i + 8]))
PY
  fi
}
for n in "${!texts[@]}"; do
  name=${texts[$n]#"$data/"}
  for variant in smollm gpt2 llama3; do
    "$saliq" tokenize --tokenizer "$work/$variant/tokenizer.json" --text "${texts[$n]}" -o "$work/$variant/$n.saliq" -q
    compare "$variant $name" "$work/$variant/$n.saliq" "$work/$variant/$n.ids"
  done
  "$saliq" tokenize --tokenizer "$folder" --text "${texts[$n]}" -o "$work/$n.converted" -q
  compare "converted folder $name" "$work/$n.converted" "$work/smollm/$n.ids"
done
[ $fail = 0 ] && echo "all ids equal" || echo "MISMATCH"
exit $fail
