"""PyTorch's CPU matmul at the products of benches/gemm.rs (same shapes, group names, value
ranges and allocation of the output), the reference line of its summary table.

Run (PyTorch in a virtual environment outside the repository):
    python benches/gemm_torch.py target/gemm_torch.json
    NRPM_TORCH_GEMM=target/gemm_torch.json cargo bench --bench gemm

Timing as benches/common/mod.rs sets criterion: 1 s warm-up, then 20 samples over 4 s; the
median time per product is written (ns), with the version, thread count and CPU.
"""

import json
import platform
import sys
import time

import torch


def products():
    """(label, a, b) with b given as the fused path holds it (W transposed: a view)."""
    out = []
    for batch in (128, 1000):
        for d, o in ((784, 256), (256, 64), (64, 10)):
            x = torch.rand(batch, d) * 2 - 1
            w = (torch.rand(o, d) * 2 - 1) * (1 / d) ** 0.5
            out.append((f"z0_b{batch}_{d}x{o}", x, w.t()))
    b, d, o = 128, 784, 256
    x = torch.rand(b, d) * 2 - 1
    w = (torch.rand(o, d) * 2 - 1) * (1 / d) ** 0.5
    gy = torch.rand(b, o) * 2 - 1
    out.append((f"xbar_b{b}_{d}x{o}", gy, w))
    out.append((f"wbar_b{b}_{d}x{o}", gy.t().contiguous(), x))
    for label, rows, d, o in (("lenet_conv1_b128", 128 * 576, 25, 10),
                              ("lenet_conv2_b128", 128 * 64, 250, 20)):
        x = torch.rand(rows, d) * 2 - 1
        w = (torch.rand(o, d) * 2 - 1) * (1 / d) ** 0.5
        out.append((label, x, w.t()))
    return out


def median_ns(a, b, warm_up=1.0, samples=20, measure=4.0):
    """Median over `samples` samples of the time per `torch.mm(a, b)`, in ns."""
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < warm_up:
        torch.mm(a, b)
        n += 1
    per_sample = max(1, int(n * measure / warm_up / samples))
    times = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        for _ in range(per_sample):
            torch.mm(a, b)
        times.append((time.perf_counter_ns() - t0) / per_sample)
    times.sort()
    return (times[samples // 2 - 1] + times[samples // 2]) / 2


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gemm_torch.py OUT.json")
    torch.manual_seed(42)
    result = {}
    for label, a, b in products():
        for dtype in (torch.float32, torch.float64):
            name = f"gemm_{'f32' if dtype == torch.float32 else 'f64'}_{label}"
            result[name] = median_ns(a.to(dtype), b.to(dtype))
            print(f"{name}: {result[name] / 1e6:.4f} ms", flush=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.processor() or platform.machine(),
    }
    with open(sys.argv[1], "w") as f:
        json.dump({"meta": meta, "median_ns": result}, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
