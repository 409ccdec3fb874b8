"""Eager chunks against the compiled kernels across input sizes (forward + backward, median of 15
after a warm-up that compiles): the measurement behind ``_compiled.MIN_COMPILED_ELEMENTS``.

    python benchmarks/compile_threshold.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

import torch_imbalance as ti

SHAPES = [(32, 10), (256, 100), (8, 3, 64, 64), (8, 4, 128, 128), (2, 4, 256, 256)]


def main() -> None:
    torch.set_num_threads(2)
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(shape, generator=g)
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        counts = torch.bincount(t.flatten(), minlength=shape[1]).clamp_min(1).tolist()
        res = {}
        for mode in ("never", "always"):
            ti.set_compile_mode(mode)
            for name in ("focal", "lmf", "dual_focal"):
                loss = ti.build_loss(name, counts)
                x = z.clone().requires_grad_()
                loss(x, t).backward()  # warm-up / compile
                times = []
                for _ in range(15):
                    x = z.clone().requires_grad_()
                    s = time.perf_counter()
                    loss(x, t).backward()
                    times.append(time.perf_counter() - s)
                res[(mode, name)] = statistics.median(times) * 1e3
        times = []
        for _ in range(15):
            x = z.clone().requires_grad_()
            s = time.perf_counter()
            F.cross_entropy(x, t).backward()
            times.append(time.perf_counter() - s)
        ce = statistics.median(times) * 1e3
        print(
            shape,
            f"numel={z.numel()} CE={ce:.2f}ms",
            " ".join(
                f"{n}:{res[('never', n)]:.2f}->{res[('always', n)]:.2f}"
                for n in ("focal", "lmf", "dual_focal")
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
