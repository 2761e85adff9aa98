"""Balanced sampling of positives and negatives for a loss mini-batch.

At most `round_down(batch_size * positive_fraction)` positives are drawn; negatives fill the rest
of the batch (as many as there are). Randomness comes only from the `torch.Generator` passed in.
"""
from __future__ import annotations

import torch
from torch import Tensor


def sample_balanced(
    positive: Tensor, negative: Tensor, batch_size: int, positive_fraction: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Draw positive and negative indices without replacement.

    positive, negative: (A,) bool masks (disjoint). Returns (sampled_pos_idx, sampled_neg_idx),
    int64, each sorted ascending. Invariants: len(pos) <= int(batch_size * positive_fraction),
    len(pos) + len(neg) <= batch_size, and both are as large as the candidates allow.
    """
    pos_idx = torch.nonzero(positive).flatten()
    neg_idx = torch.nonzero(negative).flatten()
    num_pos = min(pos_idx.numel(), int(batch_size * positive_fraction))
    num_neg = min(neg_idx.numel(), batch_size - num_pos)
    return _choose(pos_idx, num_pos, generator), _choose(neg_idx, num_neg, generator)


def _choose(indices: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    if count >= indices.numel():
        return indices
    order = torch.randperm(indices.numel(), generator=generator, device="cpu")[:count].to(indices.device)
    return indices[order].sort().values
