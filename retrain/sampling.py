"""Length-grouped batches in random order: the padding saving of grouping without its ordering.

transformers' `group_by_length` sorts each mega-batch of 50 batches longest first, so a training set of
a few thousand tweets is walked from its longest texts to its shortest every epoch, and the last steps,
at the smallest learning rate, always see the shortest texts. Here rows are grouped the same way
(shuffled, cut into mega-batches, sorted by length, cut into batches), then the batches themselves are
shuffled; a short last batch goes last, so every other batch stays whole. Deterministic for
(seed, epoch), so every rank of a DDP run draws the same batches (the Trainer calls `set_epoch`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

MEGABATCH = 50  # batches sorted together: as transformers' LengthGroupedSampler does


class ShuffledLengthBatches(Sampler[int]):
    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in the order they are drawn."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size, step = MEGABATCH * self.batch_size, self.batch_size
        batches = []
        for start in range(0, len(order), size):
            mega = sorted(order[start:start + size], key=lambda i: self.lengths[i], reverse=True)
            batches += [mega[j:j + step] for j in range(0, len(mega), step)]
        whole = [b for b in batches if len(b) == step]
        short = [b for b in batches if len(b) < step]  # at most one: the end of the last mega-batch
        return [whole[k] for k in torch.randperm(len(whole), generator=generator).tolist()] + short

    def __iter__(self) -> Iterator[int]:
        drawn = [i for batch in self.batches() for i in batch]
        self.epoch += 1  # the next epoch differs even when nobody calls set_epoch
        return iter(drawn)
