"""IoU matching of candidate boxes (anchors or proposals) to ground-truth boxes.

Shapes: A candidates, G ground-truth boxes; `iou` is (G, A).

Labels (`config.IGNORE, NEG, POS = -1, 0, 1`), for thresholds low=0.3, high=0.7:
    max IoU over GT < 0.3         -> NEG
    0.3 <= max IoU < 0.7          -> IGNORE
    max IoU >= 0.7                -> POS
and, with `allow_low_quality`, every candidate whose IoU with some GT box equals that box's best
IoU (ties included) is POS as well, so that each GT box gets at least one positive — unless the
box overlaps no candidate at all (best IoU 0), where torchvision would make *every* candidate
positive; we leave those candidates as they are.

Example: iou = [[0.9, 0.5, 0.1], [0.2, 0.25, 0.1]] gives labels [POS, IGNORE, NEG] from the
thresholds; GT 1's best IoU is 0.25 at candidate 1, so candidate 1 becomes POS (matched to GT 0,
its highest-IoU box).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from frcnn_core.modeling.config import IGNORE, NEG, POS


@dataclass(frozen=True)
class MatchResult:
    """labels: (A,) int8 in {IGNORE, NEG, POS}; matched_gt_idx: (A,) int64, the GT box with the
    highest IoU (meaningful where labels == POS; 0 when there is no GT); max_iou: (A,) float."""

    labels: Tensor
    matched_gt_idx: Tensor
    max_iou: Tensor


def match(iou: Tensor, high: float, low: float, allow_low_quality: bool) -> MatchResult:
    """Label each candidate by its best IoU with the GT boxes (rule above).

    iou: (G, A) float. With G == 0 every candidate is NEG.
    """
    num_candidates = iou.shape[1]
    if iou.shape[0] == 0:
        zeros = torch.zeros(num_candidates, dtype=torch.int64, device=iou.device)
        return MatchResult(zeros.to(torch.int8), zeros, zeros.to(iou.dtype))
    max_iou, matched_gt_idx = iou.max(dim=0)
    labels = torch.full((num_candidates,), IGNORE, dtype=torch.int8, device=iou.device)
    labels[max_iou < low] = NEG
    labels[max_iou >= high] = POS
    if allow_low_quality:
        labels[best_candidates_per_gt(iou)] = POS
    return MatchResult(labels, matched_gt_idx, max_iou)


def best_candidates_per_gt(iou: Tensor) -> Tensor:
    """Indices of candidates that reach some GT box's highest IoU (ties included, IoU > 0)."""
    best_per_gt = iou.max(dim=1, keepdim=True).values
    is_best = (iou == best_per_gt) & (best_per_gt > 0)
    return torch.unique(torch.nonzero(is_best)[:, 1])
