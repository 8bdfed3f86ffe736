#!/usr/bin/env python3
"""Quantize a model with a peer tool on saliq's own calibration windows (`saliq windows`), for scripts/bench_peers.sh.

  run_peer.py --peer autoround|gptqmodel|llmcompressor --model DIR --windows W.json --bits B --group G --out DIR
              [--iters N] [--batch 8] [--threads T] [--sym]

Writes a folder that saliq reads (AutoRound: its own format in GPTQ's bit layout, auto_round:auto_gptq; GPTQModel: GPTQ
v1/v2 as it saves; llm-compressor: compressed-tensors pack-quantized) and prints one JSON line: what the peer was given and its wall time (quantization alone, loading excluded).
"""
import argparse
import json
import os
import sys
import time


def windows_of(path):
    with open(path) as f:
        w = json.load(f)
    return w, w["windows"]


def run_autoround(a, model, tokenizer, windows):
    import torch
    from auto_round import AutoRound

    # Batches of one window each, taken as they are: no resampling, no truncation (every window is --seqlen long).
    data = [{"input_ids": torch.tensor([ids], dtype=torch.long),
             "attention_mask": torch.ones(1, len(ids), dtype=torch.long)} for ids in windows]
    kwargs = dict(bits=a.bits, group_size=a.group, sym=a.sym, iters=a.iters, nsamples=len(windows),
                  seqlen=len(windows[0]), batch_size=min(a.batch, len(windows)), dataset=data, seed=0)
    try:
        ar = AutoRound(model, tokenizer, device_map="cpu", enable_torch_compile=False, **kwargs)
    except TypeError:  # releases before device_map / enable_torch_compile
        ar = AutoRound(model, tokenizer, device="cpu", **kwargs)
    t0, c0 = time.time(), time.process_time()
    ar.quantize_and_save(a.out, format="auto_round:auto_gptq")  # AutoRound's format in GPTQ's bit layout
    seconds = time.time() - t0
    cpu_s = round(time.process_time() - c0, 1)  # every thread's: how many cores the wall time used
    flatten(a.out)
    return seconds, {"iters": a.iters, "batch_size": kwargs["batch_size"], "cpu_s": cpu_s}


def flatten(out):
    """AutoRound saves into OUT/<model>-w<b>g<g>/: the folder's files moved up to OUT."""
    if os.path.exists(os.path.join(out, "config.json")):
        return
    subs = [d for d in os.listdir(out) if os.path.exists(os.path.join(out, d, "config.json"))]
    if len(subs) != 1:
        raise SystemExit(f"run_peer: no quantized folder under {out}")
    inner = os.path.join(out, subs[0])
    for name in os.listdir(inner):
        os.replace(os.path.join(inner, name), os.path.join(out, name))
    os.rmdir(inner)


def run_gptqmodel(a, model_dir, windows):
    # GPTQModel sizes its CPU worker pool from os.cpu_count() ((n + 1) // 2: one on a 2-core machine), then asks for
    # two model-loader workers and refuses to start; two workers lets it run there.
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    from gptqmodel import GPTQModel, QuantizeConfig

    # Saved as GPTQ v2 (raw zero points): v1's zero - 1 wraps a zero point of 0 at 3 and 2 bits, asymmetric.
    cfg = QuantizeConfig(bits=a.bits, group_size=a.group, sym=a.sym, desc_act=False, format="gptq_v2")
    model = GPTQModel.load(model_dir, cfg, device="cpu")
    data = [{"input_ids": ids, "attention_mask": [1] * len(ids)} for ids in windows]
    t0, c0 = time.time(), time.process_time()
    model.quantize(data, batch_size=1)
    seconds = time.time() - t0
    cpu_s = round(time.process_time() - c0, 1)  # every thread's: how many cores the wall time used
    model.save(a.out)
    extra = {k: getattr(cfg, k) for k in ("damp_percent", "act_group_aware", "v2") if hasattr(cfg, k)}
    extra["cpu_s"] = cpu_s
    return seconds, extra


def run_llmcompressor(a, model, tokenizer, windows):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier

    # The windows as they are (no tokenization, no truncation, no shuffling); its GPTQ at its defaults otherwise.
    data = Dataset.from_dict({"input_ids": windows, "attention_mask": [[1] * len(w) for w in windows]})
    scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(
        num_bits=a.bits, type="int", symmetric=a.sym, strategy="group", group_size=a.group))
    recipe = GPTQModifier(config_groups={"group_0": scheme}, ignore=["lm_head"])
    t0, c0 = time.time(), time.process_time()
    model = oneshot(model=model, tokenizer=tokenizer, dataset=data, recipe=recipe, max_seq_length=len(windows[0]),
                    num_calibration_samples=len(windows), shuffle_calibration_samples=False)
    seconds = time.time() - t0
    cpu_s = round(time.process_time() - c0, 1)
    model.save_pretrained(a.out, save_compressed=True)  # pack-quantized
    tokenizer.save_pretrained(a.out)
    extra = {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
             for k, v in ((k, getattr(recipe, k, None)) for k in ("dampening_frac", "actorder", "block_size"))}
    extra["cpu_s"] = cpu_s
    return seconds, extra


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer", choices=["autoround", "gptqmodel", "llmcompressor"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--windows", required=True)
    p.add_argument("--bits", type=int, required=True)
    p.add_argument("--group", type=int, required=True)
    p.add_argument("--sym", action="store_true")
    p.add_argument("--iters", type=int, default=200, help="AutoRound's iterations per block (its default: 200)")
    p.add_argument("--batch", type=int, default=8, help="AutoRound's batch (its default: 8)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    import torch

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    info, windows = windows_of(a.windows)
    if a.peer in ("autoround", "llmcompressor"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(a.model)
        run = run_autoround if a.peer == "autoround" else run_llmcompressor
        seconds, extra = run(a, model, tokenizer, windows)
    else:
        seconds, extra = run_gptqmodel(a, a.model, windows)
    given = {"peer": a.peer, "bits": a.bits, "group_size": a.group, "sym": a.sym, "windows": len(windows),
             "seqlen": len(windows[0]), "calib": f'{info["source"]} {info["range"]} seed {info["seed"]}',
             "threads": torch.get_num_threads(), "wall_s": round(seconds, 1)}
    given.update(extra)
    try:
        import importlib.metadata as md
        given["version"] = md.version({"autoround": "auto-round", "gptqmodel": "gptqmodel",
                                       "llmcompressor": "llmcompressor"}[a.peer])
    except Exception:  # noqa: BLE001 - the version is a label only
        pass
    print(json.dumps(given))


if __name__ == "__main__":
    sys.exit(main())
