"""Two perplexity runs of the same windows compared window by window: each JSON (saliq eval --json, or
llamacpp_ppl.py's line) carries `window_nll`, the summed cross-entropy of every window. Prints both perplexities, their
relative difference, and the mean per-window difference with its standard error — so a gap can be told apart from
the noise of a model whose arithmetic is discontinuous (llama.cpp's 8-bit activations: a 1e-7 change of an input
flips a rounding and moves single tokens by up to a nat, yet not the mean).

usage: ppl_paired.py A.json B.json [--label-a NAME] [--label-b NAME] [--within REL] [--max-t T]
With --within REL, exits 1 unless |ppl_a / ppl_b - 1| <= REL; with --max-t T, unless the mean difference is within T
standard errors of zero (the two runs compute the same model up to noise).
"""
import argparse
import json
import math


def load(path):
    text = open(path).read().strip()
    try:
        r = json.loads(text)
    except json.JSONDecodeError:  # a log whose last line is the JSON
        r = json.loads(text.splitlines()[-1])
    if "window_nll" not in r:
        raise SystemExit("%s has no window_nll (rerun with today's saliq eval / llamacpp_ppl.py)" % path)
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--label-a", default="a")
    p.add_argument("--label-b", default="b")
    p.add_argument("--within", type=float)
    p.add_argument("--max-t", type=float)
    args = p.parse_args()
    a, b = load(args.a), load(args.b)
    wa, wb = a["window_nll"], b["window_nll"]
    if len(wa) != len(wb):
        raise SystemExit("the runs scored %d and %d windows" % (len(wa), len(wb)))
    n = len(wa)
    tokens = (a.get("tokens_scored") or a.get("tokens")) // n  # scored positions per window
    d = [(x - y) / tokens for x, y in zip(wa, wb)]  # per-token mean difference in each window, nats
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else float("nan")
    se = sd / math.sqrt(n)
    ppl_a, ppl_b = math.exp(sum(wa) / (n * tokens)), math.exp(sum(wb) / (n * tokens))
    rel = ppl_a / ppl_b - 1
    print("%s %.5f, %s %.5f over %d windows: %s/%s - 1 = %+.2e; mean nats/token difference %+.2e +- %.1e "
          "(standard error; per-window sd %.1e, t = %.1f)"
          % (args.label_a, ppl_a, args.label_b, ppl_b, n, args.label_a, args.label_b, rel, mean, se, sd,
             mean / se if se > 0 else float("nan")))
    if args.within is not None and abs(rel) > args.within:
        raise SystemExit(1)
    if args.max_t is not None and not abs(mean) <= args.max_t * se:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
