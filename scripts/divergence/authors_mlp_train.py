#!/usr/bin/python3
"""The authors' MLP fine-tuning (mnist_mlp.py at 2f247bf, --train_mode 1 --adv_train True),
run on the CPU with PyTorch, with every step's numbers written as JSON lines.

What is theirs, copied without change of maths: RobustSum (L21: K IRLS steps with
w = 1/(|x_d a_d - z/D| + e), F.normalize(p=1), the sigmoid-lambda mix of their
--paradigm 2 = our Paradigm 3 "tuning all", the plain lambda of their --paradigm 1 = our
Paradigm 2), RobustLinear, Net, fgsm_attack and the loop of adv_train: SGD(lr, momentum 0.9),
batch 64, shuffled DataLoader, loss.backward() on the clean NLL and again on the FGSM-0.3
NLL, then one optimizer.step(). The seeds are theirs (random, torch, numpy: 1).

What differs: the device (CPU, no .cuda()); MNIST is read from the IDX .gz files (the same
bytes torchvision decodes, scaled by 1/255 as ToTensor does); the starting weights are the
converted checkpoint ../shared/models/mlp3_mnist.safetensors (their mlp3_mnist_model.pth,
PyTorch key names kept); the per-epoch test on 1000 images is a batched clean accuracy; and
each step's numbers are logged.

Each line of --out: {"epoch", "step", "loss_clean", "loss_adv", "grad_norm": {param: L2},
"grad_max": {param: max|g|}, "param_max": {param: max|theta| after the step}, "lambda":
[sigmoid(lmbd) per layer], "finite"}. The run stops at the first step whose loss, gradient
or parameters are not finite, and its last line says so ("finite": false).

Needs python3-torch and python3-numpy (Debian: apt-get install python3-torch python3-numpy).
Example (the divergence measurement of docs/RESULTS.md):
    python3 scripts/divergence/authors_mlp_train.py --e 5e-5 --paradigm 2 --epochs 4 \
        --out target/divergence/authors-p3-e5e-5.jsonl
"""
import argparse
import gzip
import json
import math
import random
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parameter import Parameter

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--norm", type=str, default="L21")
parser.add_argument("--K", type=int, default=1)
parser.add_argument("--e", type=float, default=5e-5)
parser.add_argument("--lmbd", type=float, default=0.6)
parser.add_argument("--keep-lambda", action="store_true",
                    help="keep the lmbd tensors of --weights instead of filling them with --lmbd")
parser.add_argument("--lr", type=float, default=0.001)
parser.add_argument("--epsilon", type=float, default=0.3)
parser.add_argument("--paradigm", type=int, default=2, help="theirs: 1 learns lambda, 2 all")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--data", type=str, default="../shared/data/mnist")
parser.add_argument("--weights", type=str, default="../shared/models/mlp3_mnist.safetensors")
parser.add_argument("--momentum", type=str, default=None,
                    help="SGD momentum buffers to start from (an nrpm checkpoint's optimizer.safetensors)")
parser.add_argument("--replay", type=str, default=None,
                    help="an nrpm train --trace file: take its steps' batches, in its order, "
                         "instead of the shuffled DataLoader, and log nrpm's numbers beside ours")
parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="the precision of the parameters and images (the authors': float32)")
parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
parser.add_argument("--follow", action="store_true",
                    help="with --replay: wait for new lines while nrpm is still writing the trace "
                         "(stops after a line with an error, or 300 s without a new line)")
parser.add_argument("--out", type=str, required=True)
args = parser.parse_args()

torch.set_num_threads(args.threads)
random.seed(args.seed)
torch.manual_seed(args.seed)
np.random.seed(args.seed)


class RobustLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(torch.empty((out_features, in_features)))
        self.robust_sum = RobustSum(K=3, norm="L2", gamma=4.0, delta=3.0)
        if bias:
            self.bias = Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        y = self.robust_sum(input, self.weight.T)
        return y + self.bias


class RobustSum(nn.Module):
    def __init__(self, K=3, norm="L2", gamma=4.0, delta=3.0, epsilon=1e-3, lmbd=1.0):
        super().__init__()
        self.K = K
        self.norm = norm
        self.gamma = gamma
        self.delta = delta
        self.epsilon = epsilon
        self.lmbd = torch.nn.Parameter(torch.tensor([lmbd]), requires_grad=True)

    def forward(self, x, weight):
        D1 = weight.shape[0]
        z = torch.matmul(x, weight)
        z0 = z
        if self.norm == "L2":
            return z
        xw = x.unsqueeze(1) * weight.T.unsqueeze(0)
        for _ in range(self.K):
            dist = torch.abs(xw - z.unsqueeze(-1) / D1)
            if self.norm in ["L1", "L21"]:
                w = 1 / (dist + self.epsilon)
            w_norm = torch.nn.functional.normalize(w, p=1, dim=-1)
            z = D1 * (w_norm * xw).sum(dim=-1)
        if self.norm == "L21":
            if args.paradigm == 1:
                return self.lmbd * z0 + (1 - self.lmbd) * z
            elif args.paradigm == 2:
                return torch.sigmoid(self.lmbd) * z0 + (1 - torch.sigmoid(self.lmbd)) * z
        else:
            return z


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = RobustLinear(28 * 28, 256)
        self.fc2 = RobustLinear(256, 64)
        self.fc3 = RobustLinear(64, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = self.fc1(x)
        x = self.fc2(x)
        x = self.fc3(x)
        return F.log_softmax(x, dim=1), None


def fgsm_attack(image, epsilon, data_grad):
    sign_data_grad = data_grad.sign()
    perturbed_image = image + epsilon * sign_data_grad
    return torch.clamp(perturbed_image, 0, 1)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_safetensors(path):
    with open(path, "rb") as f:
        n, = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        assert info["dtype"] == "F32", (key, info["dtype"])
        a, b = info["data_offsets"]
        out[key] = torch.from_numpy(np.frombuffer(body[a:b], dtype="<f4").reshape(info["shape"]).copy())
    return out


def stats(model):
    named = list(model.named_parameters())
    grad_norm = {k: float(p.grad.norm()) for k, p in named if p.grad is not None}
    grad_max = {k: float(p.grad.abs().max()) for k, p in named if p.grad is not None}
    return grad_norm, grad_max


def main():
    model = Net()  # consumes the torch generator as theirs does before load_state_dict
    model.load_state_dict(read_safetensors(args.weights))
    dtype = getattr(torch, args.dtype)
    model.to(dtype)
    for module in model.modules():
        if isinstance(module, RobustLinear):
            module.robust_sum.K = args.K
            module.robust_sum.norm = args.norm
            module.robust_sum.epsilon = args.e
            if not args.keep_lambda:
                module.robust_sum.lmbd.data.fill_(args.lmbd)
    images = torch.from_numpy(read_idx(f"{args.data}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    labels = torch.from_numpy(read_idx(f"{args.data}/train-labels-idx1-ubyte.gz").astype(np.int64))
    train_set = torch.utils.data.TensorDataset(images.unsqueeze(1), labels)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
    test_x = torch.from_numpy(read_idx(f"{args.data}/t10k-images-idx3-ubyte.gz")[:1000].astype(np.float32) / 255.0)
    test_y = torch.from_numpy(read_idx(f"{args.data}/t10k-labels-idx1-ubyte.gz")[:1000].astype(np.int64))
    if args.paradigm == 1:
        for param in model.parameters():
            param.requires_grad = False
        for module in model.modules():
            if isinstance(module, RobustLinear):
                module.robust_sum.lmbd.requires_grad = True
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    if args.momentum:
        buffers = read_safetensors(args.momentum)
        for key, p in model.named_parameters():
            if p.requires_grad:
                optimizer.state[p]["momentum_buffer"] = buffers["momentum." + key].to(dtype)
    lam = (lambda t: torch.sigmoid(t)) if args.paradigm == 2 else (lambda t: t)
    out = open(args.out, "w", buffering=1)
    started = time.time()
    for n, (epoch, batch_idx, data, target, theirs) in enumerate(batches(train_loader, images, labels)):
        if args.max_steps is not None and n >= args.max_steps:
            break
        data = data.to(dtype)
        if batch_idx == 0 and epoch > 0 and not args.replay:
            test_accuracy(model, test_x, test_y, epoch, out)
        model.train()
        data.requires_grad = True
        optimizer.zero_grad()
        output, _ = model(data)
        loss_clean = F.nll_loss(output, target)
        loss_clean.backward()
        data_grad = data.grad.data
        perturbed_data = fgsm_attack(data, args.epsilon, data_grad)
        output, _ = model(perturbed_data)
        loss_adv = F.nll_loss(output, target)
        loss_adv.backward()
        grad_norm, grad_max = stats(model)
        before = {k: float(p.detach().abs().max()) for k, p in model.named_parameters()}
        optimizer.step()
        param_max = {k: float(p.detach().abs().max()) for k, p in model.named_parameters()}
        finite = all(math.isfinite(v) for v in [float(loss_clean), float(loss_adv)]
                     + list(grad_norm.values()) + list(param_max.values()))
        line = {"epoch": epoch + 1, "step": batch_idx + 1, "loss_clean": float(loss_clean),
                "param_max_before": before, "nrpm": theirs,
                "loss_adv": float(loss_adv), "grad_norm": grad_norm, "grad_max": grad_max,
                "param_max": param_max, "finite": finite, "seconds": time.time() - started,
                "lambda": [float(lam(m.robust_sum.lmbd.detach())) for m in model.modules()
                           if isinstance(m, RobustLinear)]}
        out.write(json.dumps(line) + "\n")
        if not finite:
            print(f"not finite at epoch {epoch + 1} step {batch_idx + 1}", file=sys.stderr)
            return 1
        if batch_idx % 100 == 0:
            print(f"epoch {epoch + 1} step {batch_idx + 1} loss {float(loss_adv):.4f} "
                  f"{time.time() - started:.0f} s", file=sys.stderr, flush=True)
    if not args.replay:
        test_accuracy(model, test_x, test_y, args.epochs, out)
    return 0


def batches(train_loader, images, labels):
    """(epoch, step, images, labels, nrpm's line or None) of every step, 0-based: the shuffled
    DataLoader's epochs, or the steps of the --replay trace."""
    if not args.replay:
        for epoch in range(args.epochs):
            for batch_idx, (data, target) in enumerate(train_loader):
                yield epoch, batch_idx, data, target, None
        return
    for raw in replay_lines(args.replay):
        line = json.loads(raw)
        if "images" not in line:
            continue
        idx = torch.tensor(line["images"], dtype=torch.int64)
        theirs = {k: line.get(k) for k in ("loss", "grad_max", "grad_norm", "param_max", "error")}
        yield line["epoch"] - 1, line["step"] - 1, images[idx].unsqueeze(1).clone(), labels[idx], theirs


def replay_lines(path):
    """The lines of the trace; with --follow, also those written later."""
    with open(path) as f:
        idle = 0.0
        while True:
            pos = f.tell()
            raw = f.readline()
            if raw.endswith("\n"):
                idle = 0.0
                yield raw
                if '"error"' in raw:
                    return
                continue
            if not args.follow or idle > 300:
                return
            f.seek(pos)
            time.sleep(1.0)
            idle += 1.0


def test_accuracy(model, test_x, test_y, epochs_done, out):
    with torch.no_grad():
        acc = float((model(test_x.unsqueeze(1))[0].argmax(1) == test_y).float().mean())
    out.write(json.dumps({"epoch": epochs_done, "test_clean_acc_1000": 100 * acc}) + "\n")
    print(f"epoch {epochs_done} done: clean accuracy {100 * acc:.1f} %", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
