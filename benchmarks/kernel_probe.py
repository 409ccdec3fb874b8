"""One loss's compiled kernel on one shape: its build time, its steady time against
``F.cross_entropy`` and what inductor generated (loops, per-element buffers, transcendentals).

    python benchmarks/kernel_probe.py lmf seg-19 --fresh       # build from scratch (no caches)
    python benchmarks/kernel_probe.py dual_focal_adaptive seg-4 --repeats 15
    python benchmarks/kernel_probe.py focal cls-1000 --multilabel

``--fresh`` turns inductor's caches off, so the first call's time is the whole build; the code
counts need it too (a cached kernel is not regenerated). Times: the minimum of ``--repeats``
interleaved forward + backward runs of the loss and of ``F.cross_entropy`` (2 threads), the
ratio of the two minima. Counts, from the generated C++ of the loss's graphs: ``#pragma omp for``
loops, buffers of one value per element (``(N, 1, S)`` for the multi-class kernels) and the
vectorised ``exp``/``log`` calls. Used for the issue 10 notes in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

SHAPES = {
    "seg-19": (8, 19, 256, 256),
    "seg-4": (4, 4, 512, 512),
    "seg-4-small": (8, 4, 256, 256),
    "vol-4": (2, 4, 64, 128, 128),
    "cls-1000": (4096, 1000),
    "seg-32": (8, 32, 128, 128),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "loss",
        help="a name of ti.available_losses() (with --multilabel: focal, ldam, lmf, dual_focal)",
    )
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fresh", action="store_true", help="no inductor caches; count the code")
    parser.add_argument("--multilabel", action="store_true")
    args = parser.parse_args()
    if args.fresh:  # read when torch is imported
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    import torch
    import torch.nn.functional as F

    import torch_imbalance as ti

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch, classes, *spatial = SHAPES[args.shape]
    logits = torch.randn(batch, classes, *spatial)
    target = torch.randint(0, classes, (batch, *spatial))
    target[torch.rand(target.shape) < 0.05] = -100
    if args.multilabel:
        labels = (torch.rand(logits.shape) < 0.1).to(torch.int64)
        counts = labels.transpose(0, 1).reshape(classes, -1).sum(1).clamp_min(1).tolist()
        loss = {
            "focal": lambda: ti.FocalLoss(alpha=0.25, task="multilabel"),
            "ldam": lambda: ti.LDAMLoss(counts, task="multilabel"),
            "lmf": lambda: ti.LMFLoss(counts, task="multilabel"),
            "dual_focal": lambda: ti.DualFocalLoss(task="multilabel"),
        }[args.loss]()
        loss_target = labels
    else:
        kept = target[target != -100]
        counts = torch.bincount(kept.flatten(), minlength=classes).clamp_min(1).tolist()
        extra = {"total_epochs": 10} if args.loss.endswith("_drw") else {}
        loss = ti.build_loss(args.loss, counts, **extra)
        if hasattr(loss, "set_epoch"):
            loss.set_epoch(9)
        loss_target = target
    x = logits.clone().requires_grad_()

    def ours() -> None:
        loss(x, loss_target).backward()
        x.grad = None

    def reference() -> None:
        F.cross_entropy(x, target, ignore_index=-100).backward()
        x.grad = None

    sources: list[str] = []
    start = time.perf_counter()
    if args.fresh:
        from torch._inductor.utils import run_and_get_code

        _, sources = run_and_get_code(ours)
    else:
        ours()
    build = time.perf_counter() - start
    mine, theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours()
        mine.append(time.perf_counter() - start)
        start = time.perf_counter()
        reference()
        theirs.append(time.perf_counter() - start)
    name = f"{args.loss}{' (ML)' if args.multilabel else ''} on {args.shape} {tuple(logits.shape)}"
    print(
        f"{name}: first call {build:.1f} s; {min(mine) * 1e3:.2f} ms against F.cross_entropy "
        f"{min(theirs) * 1e3:.2f} ms ({min(mine) / min(theirs):.2f}x)"
    )
    if sources:
        code = "\n".join(sources)
        # The kernels see (N, C, S) views; one value per element is (N, 1, S) (multi-label:
        # one per logit, (N, C, S), an intermediate as large as the input).
        size = 1
        for extent in spatial:
            size *= extent
        shape = (batch, classes if args.multilabel else 1, size)
        buffers = code.count(f"empty_strided_cpu({shape}")
        print(
            f"  generated: {code.count('#pragma omp for')} loops, {buffers} buffers of shape "
            f"{shape}, {code.count('.exp()')} exp and {code.count('.log()')} log (vectorised "
            "calls in the source)"
        )


if __name__ == "__main__":
    sys.exit(main())
