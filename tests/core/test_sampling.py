"""Tests for frcnn_core.modeling.sampling: quotas, determinism under a generator, negatives filling up."""
from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st

from frcnn_core.modeling.sampling import sample_balanced


def _masks(categories: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """0 = neither, 1 = positive, 2 = negative -> two disjoint (A,) bool masks."""
    values = torch.tensor(categories, dtype=torch.int64)
    return values == 1, values == 2


@settings(max_examples=50, deadline=None)
@given(
    categories=st.lists(st.integers(0, 2), max_size=300),
    batch_size=st.integers(0, 128),
    positive_fraction=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 0.3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_sample_respects_quota_and_masks(categories, batch_size, positive_fraction, seed):
    positive, negative = _masks(categories)

    pos_idx, neg_idx = sample_balanced(
        positive, negative, batch_size, positive_fraction, torch.Generator().manual_seed(seed)
    )

    quota = int(batch_size * positive_fraction)
    assert len(pos_idx) <= quota
    assert len(pos_idx) + len(neg_idx) <= batch_size
    # as large as the candidates allow
    assert len(pos_idx) == min(int(positive.sum()), quota)
    assert len(neg_idx) == min(int(negative.sum()), batch_size - len(pos_idx))
    assert bool(positive[pos_idx].all()) and bool(negative[neg_idx].all())
    assert not set(pos_idx.tolist()) & set(neg_idx.tolist())
    for drawn in (pos_idx, neg_idx):
        assert drawn.dtype == torch.int64
        assert drawn.tolist() == sorted(set(drawn.tolist()))


def test_same_generator_seed_gives_the_same_sample():
    positive, negative = _masks([1] * 300 + [2] * 700)

    first = sample_balanced(positive, negative, 256, 0.5, torch.Generator().manual_seed(7))
    second = sample_balanced(positive, negative, 256, 0.5, torch.Generator().manual_seed(7))

    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert (len(first[0]), len(first[1])) == (128, 128)


def test_fewer_positives_let_negatives_fill_the_batch():
    # 3 positives (quota 128) -> all 3 taken, 256 - 3 = 253 negatives
    positive, negative = _masks([1] * 3 + [2] * 500)

    pos_idx, neg_idx = sample_balanced(positive, negative, 256, 0.5, torch.Generator().manual_seed(0))

    assert pos_idx.tolist() == [0, 1, 2]
    assert len(neg_idx) == 253


def test_fewer_negatives_than_room_are_all_taken():
    # quota int(10 * 0.25) = 2 of 5 positives; 2 negatives < 8 places
    positive, negative = _masks([1, 1, 1, 1, 1, 2, 0, 2])

    pos_idx, neg_idx = sample_balanced(positive, negative, 10, 0.25, torch.Generator().manual_seed(0))

    assert len(pos_idx) == 2
    assert neg_idx.tolist() == [5, 7]


def test_no_candidates_gives_empty_samples():
    positive, negative = _masks([0, 0, 0])

    pos_idx, neg_idx = sample_balanced(positive, negative, 256, 0.5, None)

    assert pos_idx.tolist() == [] and neg_idx.tolist() == []
