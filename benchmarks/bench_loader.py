"""Loader throughput against the model's training-step rate (issue 26): which side bounds
training at 224 px?

Generated photo-like JPEGs (smooth colour fields, edges and grain, quality 90): ISIC-like
1024×768 and HAM-like 600×450, read as an ``imagefolder`` through the harness's own datasets
(``Task.datasets``: what ``train`` and ``compare`` use), per training item (decode, resize,
flip, rotation, to float, normalise) on one core (``torch.set_num_threads(1)``):

* ``before``: the harness's per-item path before issue 26 (commit 777b4d4), replayed: full
  decode, the whole transform, ``torch.manual_seed`` per item;
* ``files, full decode``: now, with ``--no-cache --no-reduced-decode``;
* ``files, reduced decode``: JPEG decoded at 1/2–1/8 scale, still ≥ 224 px (``--no-cache``);
* ``first epoch, cache``: building the memory-mapped cache (decode at reduced size, resize)
  plus one read of every item (the default's first run);
* ``cache``: later epochs and runs (the default).

Then a ``DataLoader`` (batch 32) with the default workers on this machine and with one worker
per core, and the model's training steps per second at 224 px (timm ``efficientnet_lite0`` and
``resnet50``, AdamW; on CUDA bf16-mixed and channels-last), so the table says which side bounds
training here. Writes ``benchmarks/results/bench_loader.{md,json}`` (``--out``).

    python benchmarks/bench_loader.py                  # 120 images per size, ~1 min on 2 cores
    bash benchmarks/cuda_session.sh loader             # on a lent GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from torch_imbalance.data import cache as cache_module
from torch_imbalance.engine.config import RunConfig, loader_workers
from torch_imbalance.engine.run import load_run_data
from torch_imbalance.engine.tasks import task_for

SIZES = {"ISIC-like 1024×768": (1024, 768), "HAM-like 600×450": (600, 450)}
IMAGE_SIZE = 224
RESULTS = Path(__file__).parent / "results"


def photo_like(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth colour field with a dark blob, edges and grain (compresses like a photo, not
    like noise, which would make decoding look slower than it is)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    for channel in range(3):
        fx, fy, phase = *rng.uniform(0.5, 3, 2).tolist(), rng.uniform(0, 6.3)
        image[..., channel] = 150 + 60 * np.sin(
            fx * x / width * 6.3 + fy * y / height * 6.3 + phase
        )
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    radius = rng.uniform(0.15, 0.3) * min(width, height)
    blob = np.hypot(y - cy, x - cx) < radius
    image[blob] *= 0.45
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_folder(root: Path, size: tuple[int, int], count: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / ("nevus" if i % 4 else "melanoma")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo_like(*size, rng)).save(folder / f"img{i:04d}.jpg", quality=90)
    return root


class Before(torch.utils.data.Dataset):
    """The per-item path of the harness at commit 777b4d4, replayed as it was
    (``ImageDataset.__getitem__`` and ``build_transform`` then): ``read_image`` at full size,
    the whole transform (rotation with ``fill=0``), seeded by ``torch.manual_seed``."""

    def __init__(self, items, normalization) -> None:
        from torchvision.transforms import v2

        self.items = items
        resize = v2.Resize((IMAGE_SIZE, IMAGE_SIZE), v2.InterpolationMode.BILINEAR, antialias=True)
        self.transform = v2.Compose([
            v2.ToImage(), resize, v2.RandomHorizontalFlip(), v2.RandomRotation(10),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(*normalization),
        ])  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        from torch_imbalance.data.io import read_image

        index, draw = key
        image = read_image(self.items[index], 3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw)
            return self.transform(image), 0


def per_item_ms(dataset, repeats: int) -> float:
    """Median over ``repeats`` passes of the mean time per item (training transform)."""
    passes = []
    for r in range(repeats):
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[(index, r * len(dataset) + index)]
        passes.append((time.perf_counter() - start) / len(dataset) * 1000)
    return statistics.median(passes)


def loader_rate(dataset, workers: int) -> float:
    """Images per second of a DataLoader over ``dataset`` (batch 32), second pass (workers
    started)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=32,
        num_workers=workers,
        persistent_workers=workers > 0,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    rates = []
    for _ in range(2):
        start = time.perf_counter()
        seen = sum(len(images) for images, _ in loader)
        rates.append(seen / (time.perf_counter() - start))
    return rates[-1]


def model_rate(name: str, batch: int, steps: int, device: str) -> float:
    """Training images per second of timm ``name`` at 224 px (AdamW; all cores on the CPU; on
    CUDA bf16-mixed and channels-last, the harness's defaults there)."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=8).to(device)
    cuda = device == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
    if cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 8, (batch,), device=device)
    times = []
    for step in range(steps + 2):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= 2:  # the first steps allocate (and tune)
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def datasets_for(root: Path, cache_dir: Path, *, cache: bool, reduced: bool):
    config = RunConfig(
        dataset="imagefolder",
        root=str(root),
        image_size=IMAGE_SIZE,
        cache=cache,
        reduced_decode=reduced,
        cache_dir=str(cache_dir),
        progress=False,
        val_fraction=0.1,
        test_fraction=0.1,
    ).validate()
    bundle = load_run_data(config)
    start = time.perf_counter()
    sets = task_for("classification").datasets(config, bundle, 3)
    built = time.perf_counter() - start
    return sets["train"], built, len(bundle.train) + len(bundle.val) + len(bundle.test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows, loaders, sizes, builds = [], [], {}, {}
    default_threads = cache_module.build_threads
    with tempfile.TemporaryDirectory() as work:
        for label, size in SIZES.items():
            root = write_folder(Path(work) / label.split()[0], size, args.images)
            cache_dir = Path(work) / f"cache-{size[0]}"
            torch.set_num_threads(1)
            measured = {}
            full_train, _, _ = datasets_for(root, cache_dir, cache=False, reduced=False)
            before = Before(full_train.images.items, ([0.5] * 3, [0.5] * 3))
            measured["before (777b4d4)"] = per_item_ms(before, args.repeats)
            measured["files, full decode"] = per_item_ms(full_train, args.repeats)
            reduced_train, _, _ = datasets_for(root, cache_dir, cache=False, reduced=True)
            measured["files, reduced decode"] = per_item_ms(reduced_train, args.repeats)
            cache_module.build_threads = lambda: 1  # one core
            train, built, total = datasets_for(root, cache_dir, cache=True, reduced=True)
            cache_module.build_threads = default_threads
            measured["cache"] = per_item_ms(train, args.repeats)
            measured["first epoch, cache"] = built / total * 1000 + measured["cache"]
            torch.set_num_threads(cores)
            _, built_all, _ = datasets_for(root, Path(work) / "again", cache=True, reduced=True)
            builds[label] = {"one_core_ms": built / total * 1000, "threads": default_threads(),
                             "all_cores_ms": built_all / total * 1000}  # fmt: skip
            base = measured["before (777b4d4)"]
            for mode, ms in measured.items():
                rows.append({"images": label, "path": mode, "ms_per_image": ms,
                             "images_per_s_per_core": 1000 / ms, "speedup": base / ms})  # fmt: skip
            megabytes = sum(p.stat().st_size for p in root.rglob("*.jpg")) / args.images / 1e6
            sizes[label] = megabytes
            default_workers = loader_workers(RunConfig(accelerator="gpu" if cuda else "cpu"))
            for workers in sorted({default_workers, cores}):
                for mode, dataset in [("files, full decode", full_train), ("cache", train)]:
                    loaders.append({"images": label, "path": mode, "workers": workers,
                                    "images_per_s": loader_rate(dataset, workers)})  # fmt: skip
    torch.set_num_threads(cores)
    batches = (256, 128) if cuda else (16, 8)
    models = {
        name: model_rate(name, batch, args.steps, args.device)
        for name, batch in zip(("efficientnet_lite0", "resnet50"), batches, strict=True)
    }
    machine = (
        f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}"
    )
    if cuda:
        machine += f", {torch.cuda.get_device_name()}"
    report = {"machine": machine, "image_size": IMAGE_SIZE, "images": args.images,
              "mean_jpeg_megabytes": sizes, "cache_build": builds,
              "per_item": rows, "loaders": loaders, "model_images_per_s": models}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_loader.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Loader throughput at {IMAGE_SIZE} px ({machine})",
        "",
        f"`python benchmarks/bench_loader.py` ({args.images} generated JPEGs per size; per "
        "item: decode, resize, flip, rotation, to float, normalise; one core).",
        "",
        "Mean JPEG size: " + ", ".join(f"{k} {v:.2f} MB" for k, v in sizes.items())
        + " (decoding costs more the more detail a file holds; compare with your own data).",
        "",
        "| images | path | ms / image | images / s / core | × before |",
        "|---|---|---:|---:|---:|",
        *[f"| {r['images']} | {r['path']} | {r['ms_per_image']:.2f} | "
          f"{r['images_per_s_per_core']:.0f} | {r['speedup']:.1f} |" for r in rows],
        "",
        "Building the cache (decode at reduced size, resize; once per dataset and recipe), ms "
        "per image: " + "; ".join(
            f"{k} {v['one_core_ms']:.2f} on one core, {v['all_cores_ms']:.2f} with "
            f"{v['threads']} threads" for k, v in builds.items()) + ".",
        "",
        "DataLoader, batch 32 (workers: 0 = the main process, this machine's default on the "
        "CPU; on a GPU machine the default is the cores less one, at most 8):",
        "",
        "| images | path | workers | images / s |",
        "|---|---|---:|---:|",
        *[f"| {r['images']} | {r['path']} | {r['workers']} | {r['images_per_s']:.0f} |"
          for r in loaders],
        "",
        f"Training steps at {IMAGE_SIZE} px on the same machine ("
        + ("CUDA, bf16-mixed, channels-last" if cuda else "all cores")
        + ", AdamW): "
        + ", ".join(f"`{name}` {rate:.1f} images/s" for name, rate in models.items())
        + ".",
    ]  # fmt: skip
    (args.out / "bench_loader.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
