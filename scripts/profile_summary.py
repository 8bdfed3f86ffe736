#!/usr/bin/env python3
"""Sums a LibTorch chrome trace (bench_apiq_block --profile FILE) per op: self time (an op's time minus the ops it
called), its share of the traced time, and calls. Usage: scripts/profile_summary.py TRACE.json [--top N] [--steps S]
(--steps: divide times by S to print per-step figures)."""
import argparse
import collections
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--steps", type=int, default=1)
    a = ap.parse_args()
    with open(a.trace) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # LibTorch 1.13 leaves a trailing comma before the closing bracket
        data = json.loads(text.rstrip().rstrip("]").rstrip().rstrip(",") + "]")
    events = data["traceEvents"] if isinstance(data, dict) else data
    events = [e for e in events if e.get("ph") == "X" and "dur" in e]
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[e.get("tid")].append(e)
    # Self time: an op's duration less that of the ops it called (events nest within a thread).
    self_time = collections.Counter()
    calls = collections.Counter()
    for evs in by_thread.values():
        evs.sort(key=lambda e: (float(e["ts"]), -float(e["dur"])))
        stack = []  # (end, name) of the ops open at this point
        for e in evs:
            ts, dur = float(e["ts"]), float(e["dur"])
            while stack and stack[-1][0] <= ts:
                stack.pop()
            if stack:
                self_time[stack[-1][1]] -= dur
            self_time[e["name"]] += dur
            calls[e["name"]] += 1
            stack.append((ts + dur, e["name"]))
    total = sum(self_time.values())
    print(f"{'op':48s} {'ms/step':>9s} {'share':>6s} {'calls/step':>10s}")
    for name, t in self_time.most_common(a.top):
        print(f"{name[:48]:48s} {t / 1000.0 / a.steps:9.2f} {100.0 * t / total:5.1f}% {calls[name] / a.steps:10.1f}")
    print(f"{'all ops':48s} {total / 1000.0 / a.steps:9.2f}")


if __name__ == "__main__":
    sys.exit(main())
