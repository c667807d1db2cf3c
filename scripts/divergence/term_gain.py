#!/usr/bin/python3
"""How much one term can move an NRPM output (K = 1, L1): the per-term Jacobian
dz1/dt_e of the authors' RobustSum on real MNIST images, for several IRLS eps.

For one output with terms t_d = a_d x_d (d = 1..D), z0 = sum_d t_d, r_d = t_d - z0/D,
w_d = 1/(|r_d| + eps), W = sum_d w_d and z1 = D sum_d w_d t_d / W (the authors' K = 1 step):

    dz1/dt_e = (D/W) [ w_e - s_e w_e^2 (t_e - z1/D) + (1/D) sum_d s_d w_d^2 (t_d - z1/D) ]

with s_d = sign(r_d). For LPM (z0) every term has dz0/dt_e = 1. The middle part is the one that
grows as eps shrinks: for a term within eps of z0/D, w_e ~ 1/eps, so it is about
D (t_e - z1/D) w_e^2 / W <= D |t_e - z1/D| / eps.

The script takes the first layer (fc1, D = 784) of the authors' MLP (or --weights), the
images of one step of an nrpm trace (--trace, --step) or the first 64 test images, checks
the closed form against torch.autograd on the largest entry, and prints, per eps, the
quantiles of |dz1/dt_e| over every (image, output, term) with x_d != 0, the largest, and that
term's |r| / eps. Needs python3-torch (Debian).

    python3 scripts/divergence/term_gain.py --eps 5e-5 1e-3 1e-2
"""
import argparse
import gzip
import json
import struct

import numpy as np
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--weights", default="../shared/models/mlp3_mnist.safetensors")
parser.add_argument("--data", default="../shared/data/mnist")
parser.add_argument("--trace", default=None, help="an nrpm train --trace file")
parser.add_argument("--step", type=int, default=1, help="its step (1-based) whose images to use")
parser.add_argument("--layer", default="fc1")
parser.add_argument("--eps", type=float, nargs="+", default=[5e-5, 1e-3])
args = parser.parse_args()
torch.set_num_threads(2)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = struct.unpack(">I", raw[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_tensor(path, key):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    a, b = header[key]["data_offsets"]
    return torch.from_numpy(np.frombuffer(body[a:b], dtype="<f4").reshape(header[key]["shape"]).copy())


def images():
    if args.trace:
        line = next(json.loads(l) for l in open(args.trace) if json.loads(l).get("step") == args.step)
        x = read_idx(f"{args.data}/train-images-idx3-ubyte.gz")[line["images"]]
    else:
        x = read_idx(f"{args.data}/t10k-images-idx3-ubyte.gz")[:64]
    return torch.from_numpy(x.reshape(len(x), -1).astype(np.float64) / 255.0)


def gain(x, weight, eps):
    """dz1/dt [B, out, D] by the closed form, and r [B, out, D]."""
    t = x.unsqueeze(1) * weight.unsqueeze(0)  # [B, out, D]
    D = t.shape[-1]
    z0 = t.sum(-1, keepdim=True)
    r = t - z0 / D
    w = 1.0 / (r.abs() + eps)
    W = w.sum(-1, keepdim=True)
    z1 = D * (w * t).sum(-1, keepdim=True) / W
    s = torch.sign(r)
    common = (s * w * w * (t - z1 / D)).sum(-1, keepdim=True) / D
    return (D / W) * (w - s * w * w * (t - z1 / D) + common), r


def autograd_entry(x_b, weight_j, eps, e):
    """dz1/dt_e of one output by torch.autograd on the authors' K = 1 step."""
    t = (x_b * weight_j).detach().requires_grad_(True)
    D = t.shape[0]
    z = t.sum()
    w = 1 / (torch.abs(t - z / D) + eps)
    z1 = D * (torch.nn.functional.normalize(w, p=1, dim=-1) * t).sum()
    (g,) = torch.autograd.grad(z1, t)
    return float(g[e])


x = images()
weight = read_tensor(args.weights, f"{args.layer}.weight").double()
mask = (x != 0).unsqueeze(1).expand(-1, weight.shape[0], -1)  # terms with x_d = 0 move no weight
print(f"{args.layer}: D = {weight.shape[1]}, {x.shape[0]} images, {int(mask.sum())} terms with x_d != 0")
print("eps | median | 99th pct | 99.99th pct | max | |r|/eps at the max | autograd at the max")
for eps in args.eps:
    g, r = gain(x, weight, eps)
    vals = g.abs()[mask]
    q = torch.quantile(vals[torch.randperm(len(vals), generator=torch.Generator().manual_seed(0))[:1_000_000]],
                       torch.tensor([0.5, 0.99, 0.9999], dtype=vals.dtype))
    flat = torch.where(mask, g.abs(), torch.zeros_like(g)).argmax()
    b, j, e = np.unravel_index(int(flat), g.shape)
    check = autograd_entry(x[b], weight[j], eps, e)
    print(f"{eps:g} | {q[0]:.3g} | {q[1]:.3g} | {q[2]:.3g} | {g[b, j, e]:.4g} | "
          f"{abs(float(r[b, j, e])) / eps:.3g} | {check:.4g}")
print("LPM: dz0/dt_e = 1 for every term")
