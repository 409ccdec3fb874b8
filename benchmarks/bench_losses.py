"""Speed and memory of every loss against F.cross_entropy and the peers, side by side.

Protocol (../shared/spec/benchmarks.md, section 1): forward + backward, fp32, 2 threads on CPU;
median of ``--repeats`` interleaved repetitions after warm-up; peak extra memory per case (CPU:
peak RSS growth in a fresh subprocess; CUDA: max allocated minus what was allocated before, in
process); every number also as a ratio to ``F.cross_entropy`` measured in the same run. Writes a
Markdown table and JSON.

    python benchmarks/bench_losses.py                      # all shapes, CPU (and CUDA if present)
    python benchmarks/bench_losses.py --shapes seg-19 --repeats 15 --no-memory
    python benchmarks/bench_losses.py --device cuda --precisions fp32,bfloat16 --repeats 30
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import torch_imbalance as ti

SHAPES: dict[str, tuple[tuple[int, ...], float]] = {
    # name: (logits shape, fraction of ignore_index targets)
    "cls-10": ((4096, 10), 0.0),
    "cls-1000": ((4096, 1000), 0.0),
    "seg-19": ((8, 19, 256, 256), 0.05),
    "seg-4": ((4, 4, 512, 512), 0.0),
    "vol-4": ((2, 4, 64, 128, 128), 0.0),
}
DENSE = ("seg-19", "seg-4", "vol-4")
IGNORE = -100
#: ``loss(logits, target, multi-label target)``: every call gets fresh targets (a user's batches
#: are new tensors each step; a cache keyed on the target tensor would only help a benchmark).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


EAGER_ROWS = ("ce", "focal", "ldam", "lmf", "balanced_softmax")
#: Losses also timed with label smoothing.
SMOOTHED_ROWS = ("ce", "focal", "lmf")


def eager(loss: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``loss(x, t)`` with the compiled kernels switched off (the chunked eager path)."""
    mode = ti.get_compile_mode()
    ti.set_compile_mode("never")
    try:
        return loss(x, t)
    finally:
        ti.set_compile_mode(mode)


# ------------------------------------------------------------------------- composite peers
# Written the way the papers' reference code is: one-hot targets, separate passes.
def composite_ldam(z, t, margins, s=30.0, weight=None):
    one_hot = torch.zeros_like(z).scatter_(1, t.clamp_min(0).unsqueeze(1), 1.0)
    batch_m = (margins.view(1, -1, *([1] * (z.ndim - 2))) * one_hot).sum(1, keepdim=True)
    output = torch.where(one_hot.bool(), z - batch_m, z)
    return F.cross_entropy(s * output, t, weight=weight, ignore_index=IGNORE)


def composite_focal(z, t, gamma, weight=None):
    ce = F.cross_entropy(z, t, weight=weight, ignore_index=IGNORE, reduction="none")
    p = torch.exp(-ce)
    return ((1 - p) ** gamma * ce).mean()


def composite_lmf(z, t, margins, gamma=1.5):
    return composite_ldam(z, t, margins) + composite_focal(z, t, gamma)


def composite_dual_focal(z, t, alpha=1.0, beta=1.0, gamma=1.0, rho=1.0):
    valid = t != IGNORE
    p = torch.softmax(z, 1)
    y = torch.zeros_like(z).scatter_(1, t.clamp_min(0).unsqueeze(1), 1.0)
    terms = -y * torch.log(p) - beta * (1 - y) * torch.log(rho - p) + alpha * (y - p).abs() ** gamma
    return terms.sum(1)[valid].mean()


# ------------------------------------------------------------------------------- the cases
def build_cases(
    shape_name: str, z: torch.Tensor, t: torch.Tensor, y: torch.Tensor, epochs: int = 10
):
    """name -> (group, callable(logits) -> loss). y: 0/1 multi-label targets."""
    classes = z.shape[1]
    counts = torch.bincount(t[t != IGNORE].flatten(), minlength=classes).clamp_min(1).tolist()
    cases: dict[str, tuple[str, LossFn]] = {
        "F.cross_entropy": (
            "reference",
            lambda x, t, y: F.cross_entropy(x, t, ignore_index=IGNORE),
        ),
    }
    for name in ti.available_losses():
        extra = {"total_epochs": epochs} if name.endswith("_drw") else {}
        loss = ti.build_loss(name, counts, **extra).to(z.device)
        if hasattr(loss, "set_epoch"):
            loss.set_epoch(epochs - 1)
        cases[f"ours: {name}"] = ("ours", lambda x, t, y, loss=loss: loss(x, t))
    # Label smoothing: what ε > 0 costs, beside torch's own.
    cases["F.cross_entropy (ε=0.1)"] = (
        "reference",
        lambda x, t, y: F.cross_entropy(x, t, ignore_index=IGNORE, label_smoothing=0.1),
    )
    for name in SMOOTHED_ROWS:
        loss = ti.build_loss(name, counts, label_smoothing=0.1).to(z.device)
        cases[f"ours: {name} (ε=0.1)"] = ("ours", lambda x, t, y, loss=loss: loss(x, t))
    # The same losses on the chunked eager kernels, to show what compiling buys.
    for name in EAGER_ROWS:
        extra = {"total_epochs": epochs} if name.endswith("_drw") else {}
        loss = ti.build_loss(name, counts, **extra).to(z.device)
        cases[f"ours (eager): {name}"] = ("ours", lambda x, t, y, loss=loss: eager(loss, x, t))
    margins = ti.ldam_margins(counts).to(z.device)
    cases["composite LDAM"] = ("composite", lambda x, t, y: composite_ldam(x, t, margins))
    cases["composite LMF"] = ("composite", lambda x, t, y: composite_lmf(x, t, margins))
    cases["composite Dual Focal"] = ("composite", lambda x, t, y: composite_dual_focal(x, t))
    cases["composite focal (exp(-CE))"] = ("composite", lambda x, t, y: composite_focal(x, t, 2.0))
    add_library_peers(cases, classes)
    # Multi-label rows.
    cases["F.binary_cross_entropy_with_logits (ML)"] = (
        "multilabel",
        lambda x, t, y: F.binary_cross_entropy_with_logits(x, y),
    )
    try:
        from torchvision.ops import sigmoid_focal_loss

        cases["torchvision sigmoid_focal_loss (ML)"] = (
            "multilabel",
            lambda x, t, y: sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0, reduction="mean"),
        )
    except ImportError:
        pass
    ml_counts = y.transpose(0, 1).reshape(classes, -1).sum(1).clamp_min(1).tolist()
    for name, loss in {
        "focal": ti.FocalLoss(alpha=0.25, task="multilabel"),
        "ldam": ti.LDAMLoss(ml_counts, task="multilabel"),
        "lmf": ti.LMFLoss(ml_counts, task="multilabel"),
        "dual_focal": ti.DualFocalLoss(task="multilabel"),
    }.items():
        cases[f"ours: {name} (ML)"] = ("multilabel", lambda x, t, y, loss=loss: loss(x, y))
    return cases


def add_library_peers(cases: dict, classes: int) -> None:
    try:
        import kornia

        cases["kornia focal_loss"] = (
            "peer",
            lambda x, t, y: kornia.losses.focal_loss(
                x, t.clamp_min(0), alpha=None, gamma=2.0, reduction="mean"
            ),
        )
    except ImportError:
        pass
    try:
        from monai.losses import FocalLoss as MonaiFocal

        monai_loss = MonaiFocal(use_softmax=True, to_onehot_y=True, gamma=2.0)
        # MONAI has no ignore_index
        cases["MONAI FocalLoss(use_softmax)"] = (
            "peer",
            lambda x, t, y: monai_loss(x, t.clamp_min(0).unsqueeze(1)),
        )
    except ImportError:
        pass
    try:
        from segmentation_models_pytorch.losses import FocalLoss as SmpFocal

        smp_loss = SmpFocal("multiclass", gamma=2.0, ignore_index=IGNORE)
        cases["smp FocalLoss(multiclass)"] = ("peer", lambda x, t, y: smp_loss(x, t))
    except ImportError:
        pass


def make_inputs(shape_name: str, device: torch.device, dtype: torch.dtype = torch.float32):
    shape, ignore = SHAPES[shape_name]
    g = torch.Generator().manual_seed(0)
    z = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    if ignore:
        t[torch.rand(t.shape, generator=g) < ignore] = IGNORE
    y = (torch.rand(shape, generator=g) < 0.2).to(torch.float32)
    return z, t.to(device), y.to(device)


# ------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_once(
    fn: LossFn,
    z: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    autocast: torch.dtype | None,
) -> float:
    x = z.detach().requires_grad_()
    t, y = t.clone(), y.clone()  # fresh targets, made before the clock starts
    _sync(device)
    start = time.perf_counter()
    if autocast is not None:
        with torch.autocast(device.type, dtype=autocast):
            loss = fn(x, t, y)
    else:
        loss = fn(x, t, y)
    loss.backward()
    _sync(device)
    return time.perf_counter() - start


def time_cases(
    cases: dict,
    z: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    repeats: int,
    warmup: int,
    autocast: torch.dtype | None,
) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(warmup + repeats):
        for name, (_, fn) in cases.items():  # interleaved: drift hits every case alike
            elapsed = run_once(fn, z, t, y, device, autocast)
            if rep >= warmup:
                samples[name].append(elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def _peak_rss_reset() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM (Linux)
        handle.write("5")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cuda_memory(
    fn: LossFn,
    z: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    amp: torch.dtype | None,
) -> int:
    """Peak bytes allocated by one forward + backward beyond what was allocated before (the
    caching allocator counts every tensor, so no fresh process is needed); after a warm-up call,
    so compiling stays out of it."""
    run_once(fn, z, t, y, device, amp)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run_once(fn, z, t, y, device, amp)
    return torch.cuda.max_memory_allocated(device) - before


def measure_memory_child(
    shape_name: str, case: str, device_name: str, autocast: str | None
) -> None:
    """Runs in a fresh process: print the peak extra bytes of one forward + backward."""
    device = torch.device(device_name)
    z, t, y = make_inputs(shape_name, device)
    cases = build_cases(shape_name, z, t, y)
    fn = cases[case][1]
    amp = getattr(torch, autocast) if autocast else None
    x = z.detach().requires_grad_()
    if device.type == "cuda":
        print(cuda_memory(fn, x, t, y, device, amp))
        return
    # One warm-up call first: compiling (ours, in "auto" mode) is a one-off, not the loss's peak.
    run_once(fn, x, t, y, device, amp)
    t, y = t.clone(), y.clone()
    _peak_rss_reset()
    before = _rss_kib("VmRSS:")
    with torch.autocast("cpu", dtype=amp) if amp else torch.autocast("cpu", enabled=False):
        loss = fn(x, t, y)
    loss.backward()
    print((_rss_kib("VmHWM:") - before) * 1024)


def memory_of(
    shape_name: str, case: str, device: str, autocast: str | None, threads: int
) -> int | None:
    command = [
        sys.executable,
        __file__,
        "--child",
        shape_name,
        case,
        device,
        autocast or "",
        "--threads",
        str(threads),
    ]
    # A fixed mmap threshold: every large buffer is mapped on allocation and unmapped on free.
    # glibc otherwise raises the threshold after the first large free and serves later buffers
    # from memory it kept, which the warm-up call freed: a case that allocates only buffers of
    # the warm-up's sizes (F.cross_entropy on seg-4) then shows no growth at all.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        print(f"  memory of {case!r} failed: {result.stderr.strip().splitlines()[-1:]}")
        return None
    return int(result.stdout.strip().splitlines()[-1])


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large device copy (read + write)."""
    source = torch.randn(1 << 25, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    times = []
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        target.copy_(source)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * source.numel() * 4 / min(times)


# -------------------------------------------------------------------------------- reporting
def environment(device: torch.device, threads: int) -> dict:
    info = {
        "machine": platform.processor() or platform.machine(),
        "cpu": _cpu_model(),
        "threads": threads,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for package in (
        "torch-imbalance",
        "kornia",
        "monai",
        "segmentation-models-pytorch",
        "torchvision",
    ):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _ms(value: float) -> str:
    """Milliseconds with three significant digits below 10 (GPU times are fractions of one)."""
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def markdown(results: dict) -> str:
    lines = []
    env = results["environment"]
    lines.append(
        f"Machine: {env['cpu']} — device {env['device']}, {env['threads']} threads; "
        f"Python {env['python']}, torch {env['torch']}, kornia {env['kornia']}, "
        f"MONAI {env['monai']}, smp {env['segmentation-models-pytorch']}, "
        f"torchvision {env['torchvision']}. Median of {results['repeats']} interleaved "
        "repetitions after warm-up, forward + backward."
    )
    for block in results["blocks"]:
        lines.append("")
        lines.append(
            f"### {block['shape']} — logits {tuple(block['logits'])}, {block['precision']}"
        )
        lines.append("")
        lines.append(
            f"Memory-bandwidth floor: {_ms(block['floor_ms'])} ms "
            f"(logits + targets read once, gradient written once, at "
            f"{block['bandwidth_gbs']:.1f} GB/s)."
        )
        lines.append("")
        lines.append("| loss | time (ms) | × CE time | peak extra memory (MiB) | × CE memory |")
        lines.append("|---|---:|---:|---:|---:|")
        ce_time = block["rows"]["F.cross_entropy"]["time_ms"]
        ce_mem = block["rows"]["F.cross_entropy"].get("memory_mib")
        for name, row in block["rows"].items():
            mem = row.get("memory_mib")
            mem_cell = f"{mem:.1f}" if mem is not None else "–"
            ratio_cell = f"{mem / ce_mem:.2f}" if mem is not None and ce_mem else "–"
            lines.append(
                f"| {name} | {_ms(row['time_ms'])} | {row['time_ms'] / ce_time:.2f} | "
                f"{mem_cell} | {ratio_cell} |"
            )
    return "\n".join(lines)


def write_results(results: dict, out: Path) -> str:
    """Write the Markdown table and the JSON of ``results`` to ``out``; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(results)
    (out / "bench_losses.md").write_text(table + "\n")
    (out / "bench_losses.json").write_text(json.dumps(results, indent=1))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated shape names")
    parser.add_argument(
        "--device", default=None, help="cpu or cuda (default: both when CUDA exists)"
    )
    parser.add_argument(
        "--precisions",
        default="fp32,float16,bfloat16",
        help="fp32 and autocast dtypes to time (the autocast ones on CUDA only)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the per-case memory runs")
    parser.add_argument(
        "--only", default="", help="substring filter on case names (comma-separated: any of them)"
    )
    parser.add_argument("--out", default="benchmarks/results", help="folder for the .md and .json")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        shape_name, case, device, autocast = args.child
        measure_memory_child(shape_name, case, device, autocast or None)
        return

    devices = (
        [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    results: dict = {"repeats": args.repeats, "blocks": []}
    out = Path(args.out)
    for device_name in devices:
        device = torch.device(device_name)
        results["environment"] = environment(device, args.threads)
        bandwidth = copy_bandwidth(device)
        precisions: list[str | None] = [
            None if p == "fp32" else p
            for p in args.precisions.split(",")
            if p == "fp32" or device.type == "cuda"
        ]
        for shape_name in args.shapes.split(","):
            for precision in precisions:
                z, t, y = make_inputs(shape_name, device)
                cases = build_cases(shape_name, z, t, y)
                if args.only:
                    wanted = args.only.split(",")
                    cases = {
                        k: v
                        for k, v in cases.items()
                        if k == "F.cross_entropy" or any(part in k for part in wanted)
                    }
                label = precision or "fp32"
                print(
                    f"[{device_name} {shape_name} {label}] timing {len(cases)} cases ...",
                    flush=True,
                )
                amp = getattr(torch, precision) if precision else None
                times = time_cases(cases, z, t, y, device, args.repeats, args.warmup, amp)
                rows = {
                    name: {"group": cases[name][0], "time_ms": times[name] * 1e3} for name in cases
                }
                if not args.no_memory:
                    for name in cases:
                        if device.type == "cuda":
                            mem = cuda_memory(cases[name][1], z, t, y, device, amp)
                        else:
                            mem = memory_of(shape_name, name, device_name, precision, args.threads)
                        if mem is not None:
                            rows[name]["memory_mib"] = mem / 2**20
                io_bytes = z.numel() * z.element_size() * 2 + t.numel() * t.element_size()
                results["blocks"].append(
                    {
                        "device": device_name,
                        "shape": shape_name,
                        "logits": list(z.shape),
                        "precision": f"{label} ({device_name})",
                        "rows": rows,
                        "bandwidth_gbs": bandwidth / 1e9,
                        "floor_ms": io_bytes / bandwidth * 1e3,
                    }
                )
                del z, t, y, cases
                write_results(results, out)  # after every block: a stopped run keeps these
    print(write_results(results, out))
    print(f"\nwritten: {out / 'bench_losses.md'}, {out / 'bench_losses.json'}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
