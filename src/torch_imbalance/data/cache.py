"""Decode once: a memory-mapped cache of decoded (and, for classification, resized) images.

Training reads every image once per epoch, and a ``compare`` of 10 losses × 5 seeds reads it
hundreds of times; decoding a 1024×768 JPEG costs several milliseconds, copying its resized
pixels out of a memory map a few microseconds. The cache holds, per item, the output of the
deterministic first steps of the item's transform (decode, then resize to the training size for
classification; the decoded image and mask at their own size for segmentation), so that a run
on the cache computes exactly what it computes without it; the random augmentation still runs
every epoch.

Why a numpy memory map and not litdata or LMDB: items are read by index from many DataLoader
workers and many runs on one machine, and the operating system's page cache shares one copy
between all of them with no server, no serialisation and no dependency; litdata's optimised
format streams from object storage to many nodes (each node then keeps its own copy, which is
what this cache is, built where the data is read).

Layout: ``<root>/<key>/`` with ``pixels.bin`` (all images, uint8, one after the other),
``masks.bin`` (segmentation) and ``index.json`` (offsets, shapes, what was cached). ``key`` is
a hash of the source files (path, size, modification time) and of the recipe (size, channels,
interpolation, reduced decoding), so a changed file or setting builds a new cache. A build
writes into a temporary folder renamed into place when complete (a reader never sees half a
cache; a killed build is redone), under a file lock (two processes building the same cache: the
second waits and opens the first's).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from torch_imbalance.data.errors import DatasetError

#: Bumped when the layout or the meaning of a recipe changes (old caches are then not reused).
CACHE_VERSION = 1
INDEX = "index.json"
#: How each field is stored: pixels as uint8, masks as int32 (any class index or ignore value).
STORED_DTYPES = {"pixels": np.uint8, "masks": np.int32}


def default_cache_root() -> Path:
    """``$TORCH_IMBALANCE_CACHE``, else ``$XDG_CACHE_HOME/torch-imbalance`` (``~/.cache``)."""
    explicit = os.environ.get("TORCH_IMBALANCE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "torch-imbalance"


def source_signature(paths: Sequence[str | Path]) -> list[tuple[str, int, int]]:
    """``(absolute path, size, modification time in ns)`` of each file (a missing file is a
    :class:`DatasetError` naming it)."""
    signature = []
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError as error:
            raise DatasetError(f"image file not found: {path}") from error
        signature.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    return signature


def cache_key(signature: list[tuple[str, int, int]], recipe: dict[str, Any]) -> str:
    """A short hash of the sources and the recipe."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, recipe, signature]).encode())
    return digest.hexdigest()[:24]


class Decoded(NamedTuple):
    """A split's items in a decoded-image cache: the cache and each item's position in it."""

    cache: DecodedCache
    positions: list[int]


class DecodedCache:
    """A finished cache, read by item index; safe to pass to DataLoader workers (each process
    maps the files itself; nothing is copied when the dataset is pickled)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.index = json.loads((self.folder / INDEX).read_text())
        self._maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.index["pixels"]["offsets"])

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "index": self.index, "_maps": {}}

    def _array(self, field: str, item: int) -> np.ndarray:
        if field not in self._maps:
            dtype = np.dtype(self.index[field]["dtype"])
            self._maps[field] = np.memmap(self.folder / f"{field}.bin", dtype=dtype, mode="r")
        entry = self.index[field]
        start, shape = entry["offsets"][item], entry["shapes"][item]
        flat = self._maps[field][start : start + int(np.prod(shape))]
        return np.array(flat).reshape(shape)  # a copy: torch wants writable memory

    def pixels(self, item: int) -> np.ndarray:
        """Item ``item``'s cached image, ``uint8`` ``(C, H, W)``."""
        return self._array("pixels", item)

    def mask(self, item: int) -> np.ndarray:
        """Item ``item``'s cached mask ``(H, W)`` (segmentation caches)."""
        return self._array("masks", item)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (``fcntl``; where there is none, no lock: a concurrent
    build then only costs time, as the rename into place is atomic)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows)
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_or_build(
    paths: Sequence[str | Path],
    recipe: dict[str, Any],
    decode: Callable[[int], tuple[np.ndarray, np.ndarray | None]],
    root: str | Path | None = None,
    *,
    describe: str = "images",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> DecodedCache:
    """The cache of ``paths`` under ``recipe``: opened if built before, else built once.

    Args:
        paths: the source files (their size and modification time key the cache).
        recipe: everything else the cached pixels depend on (JSON-serialisable).
        decode: ``decode(i) -> (pixels (C, H, W) uint8, mask (H, W) or None)`` for item ``i``.
        root: the cache folder (default :func:`default_cache_root`).
        describe: what the items are, for the log.
        log: where the one line about building or reusing the cache goes.
        progress: show a progress bar while building.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> folder = Path(tempfile.mkdtemp())
        >>> paths = [folder / "a.jpg", folder / "b.jpg"]
        >>> for i, path in enumerate(paths):
        ...     _ = path.write_bytes(bytes([i]))  # any files: ``decode`` reads them
        >>> def decode(i):
        ...     return np.full((3, 2, 2), i, np.uint8), None
        >>> cache = open_or_build(paths, {"size": 2}, decode, folder / "cache", progress=False,
        ...                       log=lambda line: print(line.split()[2]))
        built
        >>> cache.pixels(1)[:, 0, 0]
        array([1, 1, 1], dtype=uint8)
        >>> _ = open_or_build(paths, {"size": 2}, decode, folder / "cache", progress=False,
        ...                   log=lambda line: print(line.split()[2]))
        reusing
    """
    root = Path(root) if root is not None else default_cache_root()
    key = cache_key(source_signature(paths), recipe)
    folder = root / key
    if not (folder / INDEX).is_file():
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root / f"{key}.lock"):
            # Checked again under the lock: another process may have built it meanwhile.
            if not (folder / INDEX).is_file():
                start = time.perf_counter()
                _build(folder, paths, recipe, decode, progress, describe)
                seconds = time.perf_counter() - start
                megabytes = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
                log(
                    f"decoded-image cache: built {folder} ({len(paths)} {describe}, "
                    f"{megabytes:.0f} MB, {seconds:.1f} s)"
                )
                return DecodedCache(folder)
    log(f"decoded-image cache: reusing {folder} ({len(paths)} {describe})")
    return DecodedCache(folder)


def cache_splits(
    splits: dict[str, Sequence[Any]],
    recipe: dict[str, Any],
    decode: Callable[[Any], tuple[np.ndarray, np.ndarray | None]],
    root: str | Path | None = None,
    *,
    describe: str = "images",
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, Decoded | None]:
    """One cache over the files of all ``splits`` (so every seed's split of a dataset, and
    every run of a ``compare``, shares it), and each split's positions in it.

    ``decode(item)`` gives an item's cached arrays (see :func:`open_or_build`). Splits whose
    items are not all files (in-memory arrays need no cache) get None, as do all when the cache
    cannot be written (a read-only or full disk: said in the log, the files are read instead).
    """
    if not all(isinstance(item, (str, Path)) for items in splits.values() for item in items):
        return dict.fromkeys(splits)
    files = sorted({str(item) for items in splits.values() for item in items})
    if not files:
        return dict.fromkeys(splits)
    try:
        cache = open_or_build(
            files,
            recipe,
            lambda i: decode(files[i]),
            root,
            describe=describe,
            log=log,
            progress=progress,
        )
    except OSError as error:  # a read-only or full disk: slower, not broken
        if isinstance(error, FileNotFoundError):
            raise
        folder = root if root is not None else default_cache_root()
        log(f"decoded-image cache: cannot write to {folder} ({error}); reading the files instead")
        return dict.fromkeys(splits)
    position = {path: i for i, path in enumerate(files)}
    return {
        name: Decoded(cache, [position[str(item)] for item in items])
        for name, items in splits.items()
    }


def _build(
    folder: Path,
    paths: Sequence[str | Path],
    recipe: dict[str, Any],
    decode: Callable[[int], tuple[np.ndarray, np.ndarray | None]],
    progress: bool,
    describe: str,
) -> None:
    """Write the cache into a fresh temporary folder, then rename it to ``folder``."""
    for stale in folder.parent.glob(f"{folder.name}.building-*"):  # a killed build: redo it
        shutil.rmtree(stale, ignore_errors=True)
    building = folder.parent / f"{folder.name}.building-{os.getpid()}"
    building.mkdir()
    fields: dict[str, dict[str, Any]] = {}
    files: dict[str, Any] = {}
    try:
        with (
            _progress(len(paths), f"decoding {len(paths)} {describe} once", progress) as step,
            ThreadPoolExecutor(build_threads()) as pool,
        ):
            # In order, several at a time: decoding and resizing release the GIL.
            for pixels, mask in pool.map(decode, range(len(paths))):
                for field, array in (("pixels", pixels), ("masks", mask)):
                    if array is None:
                        continue
                    array = np.ascontiguousarray(array, dtype=STORED_DTYPES[field])
                    entry = fields.setdefault(
                        field, {"dtype": array.dtype.str, "offsets": [], "shapes": [], "end": 0}
                    )
                    if field not in files:
                        files[field] = open(building / f"{field}.bin", "wb")
                    files[field].write(array.tobytes())
                    entry["offsets"].append(entry["end"])
                    entry["shapes"].append(list(array.shape))
                    entry["end"] += array.size
                step()
        for handle in files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        index = {"version": CACHE_VERSION, "recipe": recipe, "sources": len(paths), **fields}
        (building / INDEX).write_text(json.dumps(index))
        os.replace(building, folder)
    except BaseException:
        for handle in files.values():
            handle.close()
        shutil.rmtree(building, ignore_errors=True)
        raise


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def build_threads() -> int:
    """Threads that decode while a cache is built: the usable cores, at most 8 (Pillow's
    decoder and torch's resize release the GIL)."""
    return min(8, usable_cores())


@contextlib.contextmanager
def _progress(total: int, title: str, show: bool) -> Iterator[Callable[[], None]]:
    """A rich progress bar (when shown), yielding the function that advances it."""
    if not show:
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(title, total=total)
        yield lambda: bar.advance(task)
