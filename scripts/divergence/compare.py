#!/usr/bin/env python3
"""Summarises a replay (authors_mlp_train.py --replay NRPM_TRACE --out REPLAY): per side, the
step at which the numbers stopped being finite and the first step whose loss passed 10 and
100; the agreement of the first step; and a table of every `--every`-th step.

Usage: compare.py NRPM_TRACE REPLAY [--every N]"""
import argparse
import json
import math

parser = argparse.ArgumentParser()
parser.add_argument("trace", help="the nrpm train --trace file the replay followed")
parser.add_argument("replay")
parser.add_argument("--every", type=int, default=50)
parser.add_argument("--f64", default=None,
                    help="a float64 replay of the same first step (--dtype float64 --max-steps 1): "
                         "prints how far PyTorch's float32 and nrpm's float32 gradients are from it")
args = parser.parse_args()

rows = [json.loads(l) for l in open(args.replay)]
rows = [r for r in rows if "step" in r]
nrpm_rows = [json.loads(l) for l in open(args.trace)]


def torch_loss(r):
    return r["loss_clean"] + r["loss_adv"]


def nrpm_loss(r):
    v = r["nrpm"].get("loss")
    return float("nan") if v is None else v


def first(rows, pred):
    for r in rows:
        if pred(r):
            return f"epoch {r['epoch']} step {r['step']}"
    return "never"


print(f"PyTorch (authors' code): loss > 10 first at {first(rows, lambda r: torch_loss(r) > 10)}; "
      f"> 100 at {first(rows, lambda r: torch_loss(r) > 100)}; "
      f"not finite at {first(rows, lambda r: not r['finite'])} (of {len(rows)} steps replayed)")
nloss = lambda r: r.get("loss", float("nan"))
print(f"nrpm: loss > 10 first at {first(nrpm_rows, lambda r: nloss(r) > 10)}; "
      f"> 100 at {first(nrpm_rows, lambda r: nloss(r) > 100)}; "
      f"diverged at {first(nrpm_rows, lambda r: 'error' in r)} (of {len(nrpm_rows)} steps traced)")

r = rows[0]
print(f"first step: loss PyTorch {torch_loss(r):.6g}, nrpm {nrpm_loss(r):.6g}; "
      "relative difference of max|g| per weight: "
      + ", ".join(f"{k} {abs(r['grad_max'][k] - r['nrpm']['grad_max'][k]) / r['grad_max'][k]:.1e}"
                  for k in sorted(r["grad_max"]) if k.endswith("weight")))
if args.f64:
    ref = json.loads(open(args.f64).readline())
    print(f"first step against PyTorch float64: loss f64 {torch_loss(ref):.6g}, "
          f"PyTorch f32 {torch_loss(r):.6g}, nrpm f32 {nrpm_loss(r):.6g}")
    print("parameter | ||g||2 (f64) | rel. error PyTorch f32 | rel. error nrpm f32 | max|g| (f64) | PyTorch f32 | nrpm f32")
    for k in sorted(ref["grad_norm"]):
        n64, m64 = ref["grad_norm"][k], ref["grad_max"][k]
        e = lambda a, b: abs(a - b) / abs(b)
        print(f"{k} | {n64:.6g} | {e(r['grad_norm'][k], n64):.1e} | {e(r['nrpm']['grad_norm'][k], n64):.1e} | "
              f"{m64:.6g} | {e(r['grad_max'][k], m64):.1e} | {e(r['nrpm']['grad_max'][k], m64):.1e}")
print("step | loss PyTorch | loss nrpm | max|fc1.weight| PyTorch | nrpm")
for r in rows:
    if r["step"] % args.every == 0 or r is rows[-1]:
        print(f"{r['epoch']}.{r['step']} | {torch_loss(r):.4g} | {nrpm_loss(r):.4g} | "
              f"{r['param_max_before']['fc1.weight']:.4g} | {r['nrpm']['param_max']['fc1.weight']:.4g}")
