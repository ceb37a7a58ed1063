"""Length-grouped batches in random order (retrain/sampling.py)."""

from __future__ import annotations

import numpy as np

from retrain.sampling import ShuffledLengthBatches


def test_batches_group_similar_lengths_but_come_in_random_order_and_cover_every_row_once():
    lengths = list(np.random.default_rng(0).integers(3, 64, 2001))
    sampler = ShuffledLengthBatches(lengths, batch_size=16, seed=13)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(2001))
    assert all(len(b) == 16 for b in batches[:-1]) and len(batches[-1]) == 1  # the short one last
    spread = np.median([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread <= 2  # grouped: a batch's texts are about as long as each other
    longest = [max(lengths[i] for i in b) for b in batches[:-1]]
    # Not walked from long to short: transformers' group_by_length would make this correlation about -0.7.
    assert abs(np.corrcoef(range(len(longest)), longest)[0, 1]) < 0.2


def test_the_draw_is_fixed_by_seed_and_epoch_and_changes_every_epoch():
    lengths = list(range(100))
    first, again = ShuffledLengthBatches(lengths, 8, seed=1), ShuffledLengthBatches(lengths, 8, seed=1)
    assert list(first) == list(again)  # two ranks of one DDP run draw the same
    assert list(first) != list(ShuffledLengthBatches(lengths, 8, seed=1))  # epoch 1 now: another order
    again.set_epoch(0)
    assert list(again) == list(ShuffledLengthBatches(lengths, 8, seed=1))
    assert list(ShuffledLengthBatches(lengths, 8, seed=2)) != list(ShuffledLengthBatches(lengths, 8, seed=1))
