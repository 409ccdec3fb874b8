"""Per-call cost of every loss on tiny inputs: the host's work (Python, dispatch, guards,
checks), which is what a loss call costs on a GPU, where the arithmetic takes microseconds.

Protocol: every loss as ``build_loss(name, counts)`` builds it (default settings,
``validate=True``), forward + backward on fresh logits and targets per call, interleaved with
``F.cross_entropy`` on the same inputs; median over ``--repeats`` of the mean of ``--calls``
calls, after a warm-up (compiling is a one-off). On CPU two times per call: the default
(``"auto"``: tiny inputs run the eager driver) and the compiled kernel (``"always"``: what
``"auto"`` runs on CUDA, where every input is compiled). On CUDA two times per call: ``synced``
(a sync after each call) and ``host`` (CPU time per call with ``--calls`` calls queued and one
sync). Writes ``bench_overhead.md`` and ``.json`` beside the other results.

    python benchmarks/bench_overhead.py                         # CPU, (32, 10) and (4, 4, 16, 16)
    python benchmarks/bench_overhead.py --device cuda --shapes 32x10,4x4x512x512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import torch_imbalance as ti

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def build(classes: int, device: torch.device) -> dict[str, Loss]:
    counts = [max(1, 1000 // (c + 1) ** 2) for c in range(classes)]
    cases: dict[str, Loss] = {"F.cross_entropy": lambda z, t: F.cross_entropy(z, t)}
    for name in ti.available_losses():
        extra = {"total_epochs": 10} if name.endswith("_drw") else {}
        loss = ti.build_loss(name, counts, **extra).to(device)
        cases[name] = loss
    return cases


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def call_times(
    fn: Loss, shape: tuple[int, ...], device: torch.device, calls: int
) -> tuple[float, float]:
    """Seconds per call. CUDA: wall time with a sync after each call, and the host's CPU time
    with the calls queued. CPU: wall time on the default compile mode and on "always"."""
    if device.type == "cpu":
        times = []
        for mode in ("auto", "always"):
            ti.set_compile_mode(mode)
            try:
                times.append(_wall_time(fn, shape, device, calls))
            finally:
                ti.set_compile_mode("auto")
        return times[0], times[1]
    return _wall_time(fn, shape, device, calls), _host_time(fn, shape, device, calls)


def _inputs(
    shape: tuple[int, ...], device: torch.device, calls: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [
        (
            torch.randn(shape, device=device).requires_grad_(),
            torch.randint(0, shape[1], (shape[0], *shape[2:]), device=device),
        )
        for _ in range(calls)
    ]


def _wall_time(fn: Loss, shape: tuple[int, ...], device: torch.device, calls: int) -> float:
    inputs = _inputs(shape, device, calls)
    _sync(device)
    start = time.perf_counter()
    for z, t in inputs:
        fn(z, t).backward()
        _sync(device)
    return (time.perf_counter() - start) / calls


def _host_time(fn: Loss, shape: tuple[int, ...], device: torch.device, calls: int) -> float:
    inputs = _inputs(shape, device, calls)
    _sync(device)
    cpu_start = time.process_time()
    for z, t in inputs:
        fn(z, t).backward()
    host = (time.process_time() - cpu_start) / calls
    _sync(device)
    return host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", default="32x10,4x4x16x16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results: dict = {
        "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": args.threads,
        "calls": args.calls,
        "repeats": args.repeats,
        "blocks": [],
    }
    for spec in args.shapes.split(","):
        shape = tuple(int(part) for part in spec.split("x"))
        cases = build(shape[1], device)
        for fn in cases.values():  # warm-up: compiling and first-call caches are one-offs
            call_times(fn, shape, device, 2)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, fn in cases.items():  # interleaved: drift hits every case alike
                samples[name].append(call_times(fn, shape, device, args.calls))
        rows = {
            name: {
                "first_us": 1e6 * statistics.median(s for s, _ in values),
                "second_us": 1e6 * statistics.median(h for _, h in values),
            }
            for name, values in samples.items()
        }
        results["blocks"].append({"shape": list(shape), "rows": rows})
        print(f"{shape}: done", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_overhead.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (out / "bench_overhead.md").write_text(table + "\n")
    print(table)


def markdown(results: dict) -> str:
    cpu = results["device"] == "cpu"
    first, second = ("default", "compiled") if cpu else ("synced", "host")
    lines = [
        f"Per call, forward + backward, fresh inputs each call, default settings (validate=True); "
        f"{results['device']}, {results['threads']} threads, torch {results['torch']}; median of "
        f"{results['repeats']} interleaved repeats of {results['calls']} calls. "
        + (
            "default: compile mode 'auto' (eager on tiny CPU inputs); compiled: 'always' (what "
            "'auto' runs on CUDA)."
            if cpu
            else "synced: a sync after each call; host: CPU time per call, calls queued."
        )
    ]
    for block in results["blocks"]:
        rows = block["rows"]
        ce = rows["F.cross_entropy"]
        lines += [
            "",
            f"### logits {tuple(block['shape'])}",
            "",
            f"| loss | {first} µs per call | × CE | {second} µs per call | × CE |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in rows.items():
            lines.append(
                f"| {name} | {row['first_us']:.0f} | {row['first_us'] / ce['first_us']:.2f} "
                f"| {row['second_us']:.0f} | {row['second_us'] / ce['second_us']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
