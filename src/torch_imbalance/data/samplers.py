"""Epoch-seeded samplers: plain shuffling, class-balanced over-sampling and under-sampling.

Every sampler draws epoch ``e`` from a generator seeded with ``(seed, e)``, never from global
state, and yields ``(index, draw)`` keys: ``draw`` seeds that example's augmentation (see
``ImageDataset``). So a run resumed from a checkpoint sees exactly the batches, augmentations
included, that an uninterrupted run would, whatever the number of loader workers. Lightning
calls ``set_epoch`` before each epoch; under distributed training it wraps these samplers in a
``DistributedSamplerWrapper`` so every rank takes a disjoint share of the draw.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

SAMPLERS = ("none", "oversample", "undersample")


Key = tuple[int, int]


class _EpochSeeded(Sampler[Key]):
    def __init__(self, labels: np.ndarray, seed: int) -> None:
        self.labels = np.asarray(labels)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch))

    def _keys(self, indices: np.ndarray, rng: np.random.Generator) -> Iterator[Key]:
        draws = rng.integers(0, 2**62, len(indices))
        return iter(zip(indices.tolist(), draws.tolist(), strict=True))

    def __len__(self) -> int:
        return len(self.labels)


class ShuffleSampler(_EpochSeeded):
    """A permutation of all examples per epoch."""

    def __iter__(self) -> Iterator[Key]:
        rng = self._rng()
        return self._keys(rng.permutation(len(self.labels)), rng)


class OverSampler(_EpochSeeded):
    """Class-balanced over-sampling: each draw picks a class uniformly, then one of its examples
    (with replacement); an epoch has as many draws as the training set has examples."""

    def __iter__(self) -> Iterator[Key]:
        counts = np.bincount(self.labels)
        weights = 1.0 / counts[self.labels]
        rng = self._rng()
        chosen = rng.choice(len(self.labels), len(self.labels), p=weights / weights.sum())
        return self._keys(chosen, rng)


class UnderSampler(_EpochSeeded):
    """Under-sampling: every epoch draws, without replacement, as many examples of each class as
    the rarest class has."""

    def __init__(self, labels: np.ndarray, seed: int) -> None:
        super().__init__(labels, seed)
        self.classes = np.unique(self.labels)
        self.per_class = int(np.bincount(self.labels)[self.classes].min())

    def __len__(self) -> int:
        return self.per_class * len(self.classes)

    def __iter__(self) -> Iterator[Key]:
        rng = self._rng()
        chosen = [
            rng.choice(np.flatnonzero(self.labels == c), self.per_class, replace=False)
            for c in self.classes
        ]
        return self._keys(rng.permutation(np.concatenate(chosen)), rng)


def build_sampler(name: str, labels: np.ndarray, seed: int) -> Sampler[Key]:
    """``"none"`` (shuffle), ``"oversample"`` or ``"undersample"`` (single-label data only for
    the last two).

    Examples:
        >>> import numpy as np
        >>> sampler = build_sampler("undersample", np.array([0, 0, 0, 1]), seed=0)
        >>> indices = [index for index, _ in sampler]
        >>> len(sampler), sorted(np.array([0, 0, 0, 1])[indices].tolist())
        (2, [0, 1])
    """
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {name!r}")
    if name == "none":
        return ShuffleSampler(labels, seed)
    if np.ndim(labels) != 1:
        raise ValueError(f"sampler {name!r} needs single-label data (got multi-label rows)")
    return OverSampler(labels, seed) if name == "oversample" else UnderSampler(labels, seed)
