# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Reproducible randomness of the data, shared by every task: per-sample augmentation seeds and an epoch-seeded
sampler. Sample `i` of epoch `e` is augmented under RNGs seeded with `(seed, e, i)`, and the data order depends only on
`(seed, e)`, so resumed runs see the same data as uninterrupted ones."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for the augmentation of sample `index` in `epoch` (independent streams per triple)."""
    return int(np.random.SeedSequence([seed % 2**32, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_random_state(seed: int):
    """Seed Python's, NumPy's and torch's (CPU) global RNGs for the body, then restore their previous states.

    timm's transforms draw from all three (RandAugment uses `random` and `numpy`, random erasing uses torch)."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.random.set_rng_state(torch_state)


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """Shuffles `range(num_samples)` with a permutation that depends only on `(seed, epoch)`.

    Every process draws the same permutation (Accelerate then shards the batches), and a resumed run sees the same
    order as the original one, whatever happened to the global RNGs in between."""

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True):
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_samples))
        # The last 32-bit index is reserved for the order, so it never collides with a sample's augmentation seed.
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 2**32 - 1))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


__all__ = ["EpochShuffleSampler", "sample_seed", "seeded_random_state"]
