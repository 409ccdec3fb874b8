"""The decoded-image cache and reduced-size decoding (issue 26): same tensors as the files,
rebuilt when a file changes, never read half-written, one build for concurrent builders."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from harness_helpers import write_segfolder
from PIL import Image
from torchvision.transforms import v2

from torch_imbalance.data import cache as cache_module
from torch_imbalance.data.cache import cache_splits, open_or_build
from torch_imbalance.data.dataset import ImageDataset, SegmentationDataset
from torch_imbalance.data.errors import DatasetError
from torch_imbalance.data.io import read_image
from torch_imbalance.data.records import ImageSet, SegmentationSet
from torch_imbalance.data.transforms import (
    build_segmentation_transform,
    build_transform_steps,
    image_pixels,
)


def write_jpegs(folder: Path, count: int, size=(300, 200), seed=0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        pixels[: size[1] // 2] //= 3  # some structure for the resize
        path = folder / f"img{i:02d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def classification_datasets(paths, root, at_least, size=32, train=True):
    images = ImageSet(paths, np.arange(len(paths)) % 2, [Path(p).stem for p in paths])
    first, rest = build_transform_steps(size, 3, train, True, ((0.5,) * 3, (0.5,) * 3))
    logs: list[str] = []
    decoded = cache_splits(
        {"train": paths},
        {"size": size, "at_least": at_least},
        lambda item: (first(read_image(item, 3, at_least)).numpy(), None),
        root,
        log=logs.append,
        progress=False,
    )["train"]
    full = v2.Compose([first, rest])
    plain = ImageDataset(images, 3, full, at_least=at_least)
    cached = ImageDataset(images, 3, full, at_least=at_least, decoded=decoded, finish=rest)
    return plain, cached, logs


@pytest.mark.parametrize("at_least", [None, 32])
def test_cached_and_uncached_items_are_identical_for_the_same_draw(tmp_path, at_least):
    paths = write_jpegs(tmp_path / "data", 6)
    plain, cached, logs = classification_datasets(paths, tmp_path / "cache", at_least)
    assert logs[0].startswith("decoded-image cache: built")
    for index in range(len(paths)):
        for draw in (0, 7):  # the augmentation's randomness comes from the draw
            a, label_a = plain[(index, draw)]
            b, label_b = cached[(index, draw)]
            assert torch.equal(a, b) and torch.equal(label_a, label_b)
    # A different draw is a different augmentation: the test above can fail.
    assert not torch.equal(cached[(0, 0)][0], cached[(0, 1)][0])


def test_reduced_decoding_keeps_at_least_the_training_size(tmp_path):
    (path,) = write_jpegs(tmp_path, 1, size=(1024, 768))
    full = read_image(path, 3)
    reduced = read_image(path, 3, at_least=224)
    assert full.size == (1024, 768)
    assert reduced.size == (512, 384)  # 1/2 scale: 1/4 (256×192) would be under 224
    png = tmp_path / "a.png"
    Image.open(path).save(png)
    assert read_image(png, 3, at_least=224).size == (1024, 768)  # only JPEG has a draft


def test_the_cache_is_reused_and_rebuilt_when_a_source_changes(tmp_path):
    paths = write_jpegs(tmp_path / "data", 4)
    root = tmp_path / "cache"
    _, first, logs = classification_datasets(paths, root, None)
    _, again, more = classification_datasets(paths, root, None)
    assert more[0].startswith("decoded-image cache: reusing")
    assert again.decoded.cache.folder == first.decoded.cache.folder
    # Rewrite one file with other pixels (size or modification time changes): a new cache.
    Image.new("RGB", (300, 200), (255, 0, 0)).save(paths[2])
    _, changed, logs = classification_datasets(paths, root, None)
    assert logs[0].startswith("decoded-image cache: built")
    assert changed.decoded.cache.folder != first.decoded.cache.folder
    red = changed.decoded.cache.pixels(2)
    assert red[0].min() > 200 and red[1].max() < 30
    # Another recipe (reduced decoding) is another cache too.
    _, other, logs = classification_datasets(paths, root, 32)
    assert other.decoded.cache.folder not in (
        first.decoded.cache.folder,
        changed.decoded.cache.folder,
    )


def test_a_killed_build_leaves_nothing_half_written_and_is_redone(tmp_path):
    paths = write_jpegs(tmp_path / "data", 5)
    root = tmp_path / "cache"

    def dies_at_item_3(item):
        if item == 3:
            raise KeyboardInterrupt  # as a kill between two items
        return np.zeros((3, 4, 4), np.uint8), None

    with pytest.raises(KeyboardInterrupt):
        open_or_build(paths, {"r": 1}, dies_at_item_3, root, progress=False, log=lambda _: None)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
    # A build whose process was killed outright leaves its temporary folder: the next build
    # removes it and starts over; readers only ever open the renamed, finished folder.
    key = cache_module.cache_key(cache_module.source_signature(paths), {"r": 1})
    (root / f"{key}.building-999999").mkdir()
    (root / f"{key}.building-999999" / "pixels.bin").write_bytes(b"half")
    built = open_or_build(
        paths, {"r": 1}, lambda i: (np.full((3, 4, 4), i, np.uint8), None), root,
        progress=False, log=lambda _: None,
    )  # fmt: skip
    assert sorted(p.name for p in root.iterdir()) == [key, f"{key}.lock"]
    assert [int(built.pixels(i)[0, 0, 0]) for i in range(5)] == [0, 1, 2, 3, 4]


def test_two_builders_at_once_build_it_once(tmp_path):
    paths = write_jpegs(tmp_path / "data", 3)
    calls, logs = [], []
    barrier = threading.Barrier(2)

    def slow(item):
        calls.append(item)
        return np.full((1, 2, 2), item, np.uint8), None

    def build():
        barrier.wait()
        open_or_build(paths, {}, slow, tmp_path / "cache", progress=False, log=logs.append)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(calls) == [0, 1, 2]  # one build
    assert sorted(line.split()[2] for line in logs) == ["built", "reusing"]


def test_a_corrupt_image_fails_with_its_name_while_building(tmp_path):
    paths = write_jpegs(tmp_path / "data", 3)
    Path(paths[1]).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"cannot decode image .*img01\.jpg"):
        classification_datasets(paths, tmp_path / "cache", 32)
    assert not any(p.is_dir() for p in (tmp_path / "cache").iterdir())


def test_the_cache_travels_to_workers_without_its_pixels(tmp_path):
    paths = write_jpegs(tmp_path / "data", 3)
    _, cached, _ = classification_datasets(paths, tmp_path / "cache", None)
    cached.decoded.cache.pixels(0)  # maps the file in this process
    copy = pickle.loads(pickle.dumps(cached))
    assert copy.decoded.cache._maps == {}
    assert len(pickle.dumps(cached.decoded.cache)) < 4096
    assert torch.equal(copy[(1, 3)][0], cached[(1, 3)][0])


def test_segmentation_cache_gives_the_same_items_and_follows_the_masks(tmp_path):
    root = write_segfolder(tmp_path / "seg", count=4, size=24)
    images = sorted(str(p) for p in (root / "images").glob("*.png"))
    masks = sorted(str(p) for p in (root / "masks").glob("*.png"))
    data = SegmentationSet(images, masks, [Path(p).stem for p in images])
    transform = build_segmentation_transform(16, 3, True, 255)

    def decoded(logs):
        by_image = dict(zip(images, masks, strict=True))

        def decode(item):
            image = read_image(item, 3)
            return image_pixels(image).numpy(), np.asarray(Image.open(by_image[item]))

        recipe = {"masks": cache_module.source_signature(masks)}
        return cache_splits(
            {"train": images}, recipe, decode, tmp_path / "cache", log=logs.append, progress=False
        )["train"]

    logs: list[str] = []
    plain = SegmentationDataset(data, 3, transform)
    cached = SegmentationDataset(data, 3, transform, decoded=decoded(logs))
    for index in range(4):
        a_image, a_mask = plain[(index, 5)]
        b_image, b_mask = cached[(index, 5)]
        assert torch.equal(a_image, b_image) and torch.equal(a_mask, b_mask)
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(masks[0])  # a mask edited
    decoded(logs)
    assert [line.split()[2] for line in logs] == ["built", "built"]


def test_rotation_without_a_fill_mask_gives_the_same_pixels():
    """The classification transform rotates with ``fill=None`` (a quarter faster): the same
    pixels as torchvision's default ``fill=0``; fails if torchvision ever differs."""
    from torchvision import tv_tensors

    image = tv_tensors.Image(torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8))
    faster, default = v2.RandomRotation(10, fill=None), v2.RandomRotation(10)
    for seed in range(20):
        torch.manual_seed(seed)
        a = faster(image)
        torch.manual_seed(seed)
        assert torch.equal(a, default(image))
    assert (a == 0).any()  # corners were filled: the comparison covers the fill


def test_a_cache_that_cannot_be_written_falls_back_to_the_files(tmp_path):
    paths = write_jpegs(tmp_path / "data", 2)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    logs: list[str] = []
    decoded = cache_splits(
        {"train": paths},
        {},
        lambda item: (np.zeros((3, 2, 2), np.uint8), None),
        blocker / "cache",
        log=logs.append,
        progress=False,
    )
    assert decoded == {"train": None}
    assert "cannot write to" in logs[0] and "reading the files instead" in logs[0]
