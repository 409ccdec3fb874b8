"""Where a loss call's time goes on a GPU when the work itself takes microseconds.

On an H100 a segmentation batch's loss is a few µs of memory traffic; what a call costs is the
host's work (Python, guards, kernel launches) and any device sync. This prints, per loss, three
times for forward + backward: ``synced`` (a sync after every call, as bench_losses.py times),
``pipelined`` (``--calls`` calls queued, one sync at the end: a training loop that never reads
a value back) and ``host`` (the CPU time per call in the pipelined loop), with the value checks
on and off (``validate=False``: no device sync).

    python benchmarks/bench_cuda_overhead.py --shape 4,4,512,512
    python benchmarks/bench_cuda_overhead.py --device cpu --shape 2,4,8,8   # host cost alone
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import torch_imbalance as ti
from torch_imbalance import functional as TF


def cases(counts: list[int]) -> dict:
    return {
        "F.cross_entropy": lambda z, t, v: F.cross_entropy(z, t),
        "ce (focal γ=0)": lambda z, t, v: TF.focal_loss(z, t, gamma=0.0, validate=v),
        "focal": lambda z, t, v: TF.focal_loss(z, t, gamma=2.0, validate=v),
        "ldam": lambda z, t, v: TF.ldam_loss(z, t, class_counts=counts, validate=v),
        "lmf": lambda z, t, v: TF.lmf_loss(z, t, class_counts=counts, validate=v),
        "dual_focal": lambda z, t, v: TF.dual_focal_loss(z, t, validate=v),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, z, t, validate, calls, repeats):
    synced, pipelined, host = [], [], []
    for _ in range(repeats):
        _sync(z.device)
        start = time.perf_counter()
        for _ in range(calls):
            x = z.detach().requires_grad_()
            fn(x, t, validate).backward()
            _sync(z.device)
        synced.append((time.perf_counter() - start) / calls)
        _sync(z.device)
        start = time.perf_counter()
        cpu_start = time.process_time()
        for _ in range(calls):
            x = z.detach().requires_grad_()
            fn(x, t, validate).backward()
        host.append((time.process_time() - cpu_start) / calls)
        _sync(z.device)
        pipelined.append((time.perf_counter() - start) / calls)
    return [statistics.median(v) * 1e3 for v in (synced, pipelined, host)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="4,4,512,512")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    device = torch.device(args.device)
    torch.set_num_threads(1)
    z = torch.randn(shape, generator=g).to(device)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g).to(device)
    counts = [10 ** (shape[1] - k) for k in range(shape[1])]
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU, 1 thread"
    print(f"{name}, torch {torch.__version__}, logits {shape}")
    ti.set_compile_mode("always")  # the compiled path, as on a segmentation batch
    print("| loss | validate | synced ms | pipelined ms | host CPU ms |")
    print("|---|---|---:|---:|---:|")
    for name, fn in cases(counts).items():
        for validate in (True, False):
            if name == "F.cross_entropy" and not validate:
                continue
            measure(fn, z, t, validate, 3, 1)  # warm-up, compile
            synced, pipelined, host = measure(fn, z, t, validate, args.calls, args.repeats)
            print(f"| {name} | {validate} | {synced:.3f} | {pipelined:.3f} | {host:.3f} |")
    ti.set_compile_mode("auto")


if __name__ == "__main__":
    main()
