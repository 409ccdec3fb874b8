"""How much subnormal floats cost each loss: the same cases with and without flush-to-zero.

A float32 result below ``1.2e-38`` (subnormal) takes a microcode path on x86 that is about 100×
slower than a normal one. With flush-to-zero (``torch.set_flush_denormal(True)``: FTZ and DAZ)
they become 0 at full speed, so the ratio "default / flush-to-zero" of a loss's time says how
much of it is spent on subnormals (1.0: none). Flush-to-zero is set per thread and inherited by
threads made afterwards, so each mode runs in a fresh process that sets it before any parallel
work. The logits are the benchmark's (``bench_losses.make_inputs``) times ``--spread`` (10: a
confident model, most probabilities far below 1).

    python benchmarks/bench_subnormals.py --shape seg-4 --spread 1,10 --repeats 7
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_losses  # the benchmark's shapes, cases and timing

#: The cases compared (bench_losses' names): CE, the target-gap losses, Dual Focal, multi-label.
CASES = (
    "F.cross_entropy",
    "ours: ce",
    "ours: focal",
    "ours: ldam",
    "ours: lmf",
    "ours: lmf_official",
    "ours: poly1",
    "ours: dual_focal",
    "composite LDAM",
    "F.binary_cross_entropy_with_logits (ML)",
    "ours: focal (ML)",
    "ours: ldam (ML)",
    "ours: lmf (ML)",
)


def child(shape: str, spread: float, repeats: int, flush: bool, threads: int) -> dict:
    """Times of every case in this process, flush-to-zero set first when asked."""
    if flush and not torch.set_flush_denormal(True):
        raise SystemExit("this CPU cannot flush subnormals to zero")
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    z, t, y = bench_losses.make_inputs(shape, device)
    z = z * spread
    cases = {
        name: case
        for name, case in bench_losses.build_cases(shape, z, t, y).items()
        if name in CASES
    }
    return bench_losses.time_cases(cases, z, device, repeats, warmup=2, autocast=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="seg-4", choices=sorted(bench_losses.SHAPES))
    parser.add_argument("--spread", default="1,10", help="comma-separated logit scales")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="folder for the .md and .json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        spread, flush = args.child.split(":")
        times = child(args.shape, float(spread), args.repeats, flush == "1", args.threads)
        print("RESULT " + json.dumps(times))
        return
    results: dict[str, dict[str, dict[str, float]]] = {}
    for spread in args.spread.split(","):
        results[spread] = {}
        for flush in ("0", "1"):
            mode = "flush-to-zero" if flush == "1" else "default"
            print(f"[{args.shape}, spread {spread}, {mode}] timing ...", file=sys.stderr)
            command = [sys.executable, __file__, "--shape", args.shape]
            command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
            output = subprocess.run(
                [*command, "--child", f"{spread}:{flush}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            line = next(x for x in output.splitlines() if x.startswith("RESULT "))
            results[spread][mode] = json.loads(line[len("RESULT ") :])
    lines = [
        f"### {args.shape}: default vs flush-to-zero (median of {args.repeats}, "
        f"{args.threads} threads, ms)",
        "",
        "| case | " + " | ".join(f"spread {s}: default | FTZ | ×" for s in results) + " |",
        "|---|" + "---:|---:|---:|" * len(results),
    ]
    for name in CASES:
        cells = []
        for spread in results:
            default = results[spread]["default"].get(name)
            flushed = results[spread]["flush-to-zero"].get(name)
            if default is None or flushed is None:
                cells.append("– | – | –")
                continue
            cells.append(f"{default * 1e3:.1f} | {flushed * 1e3:.1f} | {default / flushed:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_subnormals.md").write_text(table + "\n")
        (args.out / "bench_subnormals.json").write_text(json.dumps(results, indent=2))
        print(f"written: {args.out}/bench_subnormals.md, .json")


if __name__ == "__main__":
    main()
