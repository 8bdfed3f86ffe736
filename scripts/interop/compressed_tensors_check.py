"""compressed-tensors' own decompressor on `saliq export --format compressed-tensors` output against saliq's dense
export of the same packed folder. The library dequantizes (q - zp) * s in the scale's dtype (fp16), so saliq's fp32
weights, which are exact s (c - z), must equal its values once rounded to fp16, everywhere.
usage: compressed_tensors_check.py CT_FOLDER DENSE_HF_FOLDER -> prints the comparison; exit 1 on a mismatch"""
import glob
import sys

import torch
from safetensors.torch import load_file
from compressed_tensors.entrypoints.convert.converters.ct_dequantizer import CompressedTensorsDequantizer


def main():
    ct_dir, dense_dir = sys.argv[1], sys.argv[2]
    packed = {}
    for f in sorted(glob.glob(f"{ct_dir}/*.safetensors")):
        packed.update(load_file(f))
    ours = CompressedTensorsDequantizer(ct_dir, dtype=torch.float16).validate(packed)
    dense = {}
    for f in sorted(glob.glob(f"{dense_dir}/*.safetensors")):
        dense.update(load_file(f))
    linears = [k for k in dense if k.endswith("_proj.weight")]
    bad = 0
    for name in linears:
        got, want = ours[name], dense[name].to(torch.float16)
        if got.shape != want.shape or not torch.equal(got, want):
            bad += 1
            diff = (got.float() - want.float()).abs().max().item() if got.shape == want.shape else float("nan")
            print(f"MISMATCH {name}: max |diff| {diff}")
    print(f"compressed-tensors decompressed {len(linears)} linears; {len(linears) - bad} equal saliq's weights "
          f"(fp16) exactly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
