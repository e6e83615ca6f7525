"""Reproducible sampling: the same (seed, epoch, index) always yields the same sample.

Training shuffles with a generator seeded from ``(seed, epoch)`` and runs each sample's random
augmentations under a generator seeded from ``(seed, epoch, index)``. So the data a run sees
depends on neither the number of loader workers nor where a run was interrupted: a resumed run
skips the batches it already did and sees the very same ones after them.

>>> sampler = EpochSampler(5, seed=0)
>>> sampler.set_epoch(3)
>>> sorted(index for _, index in sampler)
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def mix_seed(*values: int) -> int:
    """A 63-bit seed from several integers (splitmix-style), so nearby inputs decorrelate."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (int(value) + 0x9E3779B97F4A7C15 + (state << 6) + (state >> 2))) & (2**64 - 1)
        state = (state * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        state ^= state >> 31
    return state & (2**63 - 1)


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs: shuffled per epoch, sharded across ranks, resumable.

    ``start`` skips the first ``start`` samples of this rank's share of the current epoch (used
    when resuming in the middle of an epoch). With ``drop_last`` every rank gets the same count.
    """

    def __init__(self, size: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last:
            order = order[: self.size - self.size % self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._indices()[self.start :]:
            yield self.epoch, index

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.start)


class SeededDataset(Dataset):
    """Wraps a dataset so ``wrapped[(epoch, index)]`` runs its transforms under a fixed seed.

    ``on_bad_sample`` says what a sample whose files cannot be read or do not fit (any
    :class:`~pixelwise.data.datasets.DatasetError`) becomes: ``"raise"`` stops; ``"replace"`` (for
    training: batches keep their size) gives the next readable sample, ``"drop"`` (for evaluation:
    no sample counts twice) gives nothing. Either way the sample carries ``"skipped"``, the
    messages of the samples left out, which :func:`collate_skipping` gathers per batch.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, on_bad_sample: str = "raise") -> None:
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"on_bad_sample must be one of {BAD_SAMPLE_POLICIES}, got {on_bad_sample!r}")
        self.dataset, self.seed, self.on_bad_sample = dataset, seed, on_bad_sample

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        from pixelwise.data.datasets.base import DatasetError

        epoch, index = key if isinstance(key, tuple) else (0, key)
        skipped: list[str] = []
        for attempt in range(min(MAX_REPLACEMENTS, len(self))):
            candidate = (index + attempt) % len(self)
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(mix_seed(self.seed, epoch, candidate))
                    sample = self.dataset[candidate]
            except DatasetError as error:
                if self.on_bad_sample == "raise":
                    raise
                skipped.append(str(error).splitlines()[0])
                if self.on_bad_sample == "drop":
                    return {"skipped": skipped}
                continue
            return {**sample, "skipped": skipped} if self.on_bad_sample != "raise" else sample
        raise DatasetError(f"{len(skipped)} samples in a row from index {index} could not be read: "
                           + "; ".join(skipped[:3]))


BAD_SAMPLE_POLICIES = ("raise", "replace", "drop")
MAX_REPLACEMENTS = 16  # readable samples looked for in a row before giving up


def collate_skipping(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`pixelwise.data.targets.collate` of the samples that were read, with ``"skipped"``: the
    messages of those that were left out (:class:`SeededDataset` with ``on_bad_sample``). A batch of
    dropped samples only is ``{"skipped": [...]}``, without images.

    >>> batch = collate_skipping([{"x": torch.ones(2), "skipped": []}, {"skipped": ["cannot read image a.png"]}])
    >>> batch["x"].shape, batch["skipped"]
    (torch.Size([1, 2]), ['cannot read image a.png'])
    """
    from pixelwise.data.targets import collate

    skipped = [message for sample in samples for message in sample["skipped"]]
    good = [{k: v for k, v in sample.items() if k != "skipped"} for sample in samples if len(sample) > 1]
    return {**(collate(good) if good else {}), "skipped": skipped}
