#!/usr/bin/env python3
"""Prints a step trace (nrpm train --trace, or authors_mlp_train.py) as a table: per step the
loss and, per weight matrix, max|g| and max|theta|. Usage: show_trace.py FILE [FROM [TO]]."""
import json
import sys

path = sys.argv[1]
lo = int(sys.argv[2]) if len(sys.argv) > 2 else 0
hi = int(sys.argv[3]) if len(sys.argv) > 3 else 10**9
for raw in open(path):
    d = json.loads(raw)
    if "step" not in d or not lo <= d["step"] <= hi:
        continue
    if "loss" in d:
        loss = d["loss"]
    elif "loss_clean" in d:
        loss = d["loss_clean"] + d["loss_adv"]
    else:
        loss = None
    layers = sorted(k for k in d["param_max"] if k.endswith("weight"))
    g = " ".join(f"{k.split('.')[0]} g {d.get('grad_max', {}).get(k, float('nan')):9.3g} "
                 f"th {d['param_max'][k]:8.3g}" for k in layers)
    err = f"  ERROR {d['error'][:80]}" if "error" in d else ""
    loss_s = f"{loss:8.4f}" if loss is not None else "     n/a"
    print(f"e{d['epoch']} s{d['step']:4d} loss {loss_s}  {g}{err}")
