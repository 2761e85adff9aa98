"""Second stage: box heads (learned), the class-specific predictor, its loss, post-processing.

Shapes: R RoIs, C classes including background 0, F head features. Parameter names match
torchvision's `TwoMLPHead`, `FastRCNNConvFCHead` and `FastRCNNPredictor`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from frcnn_core.modeling import boxes as box_ops
from frcnn_core.modeling.config import RoIConfig
from frcnn_core.modeling.trace import DetectionsTrace


class PaperHead(nn.Module):
    """The paper's VGG16 fc6 / fc7: flatten, Linear 25088->4096, ReLU, dropout, Linear, ReLU, dropout."""

    def __init__(self, in_features: int, hidden: int = 4096, dropout: float = 0.5):
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, pooled: Tensor) -> Tensor:
        hidden = self.dropout(F.relu(self.fc6(pooled.flatten(start_dim=1))))
        return self.dropout(F.relu(self.fc7(hidden)))


class TwoMLPHead(nn.Module):
    """torchvision's FPN box head: flatten, fc6, ReLU, fc7, ReLU (no dropout)."""

    def __init__(self, in_features: int, hidden: int = 1024):
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden)
        self.fc7 = nn.Linear(hidden, hidden)

    def forward(self, pooled: Tensor) -> Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(pooled.flatten(start_dim=1)))))


class ConvFCHead(nn.Sequential):
    """The v2 head: four 3x3 conv + BatchNorm + ReLU, flatten, Linear 12544->1024, ReLU."""

    def __init__(self, channels: int, pooled_size: int, conv_channels: int = 256, num_convs: int = 4,
                 hidden: int = 1024):
        blocks: list[nn.Module] = []
        previous = channels
        for _ in range(num_convs):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(previous, conv_channels, 3, padding=1, bias=False),
                    nn.BatchNorm2d(conv_channels),
                    nn.ReLU(inplace=True),
                )
            )
            previous = conv_channels
        blocks += [nn.Flatten(), nn.Linear(previous * pooled_size * pooled_size, hidden), nn.ReLU(inplace=True)]
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")


class Predictor(nn.Module):
    """Class scores (F -> C) and class-specific box deltas (F -> 4C)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Returns class_logits (R, C) and box_deltas (R, 4C)."""
        return self.cls_score(features), self.bbox_pred(features)


def fast_rcnn_loss(
    class_logits: Tensor, box_deltas: Tensor, labels: Tensor, regression_targets: Tensor, beta: float
) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all sampled RoIs; smooth-L1 on the deltas of each foreground RoI's own
    class, normalised by the number of RoIs (torchvision's convention).

    class_logits (R, C); box_deltas (R, 4C); labels (R,) int64; regression_targets (R, 4).
    Returns (loss_classifier, loss_box_reg).
    """
    if labels.numel() == 0:  # no RoI sampled (e.g. no GT and a background floor above 0)
        return class_logits.sum() * 0, box_deltas.sum() * 0
    classification = F.cross_entropy(class_logits, labels)
    fg = torch.nonzero(labels > 0).flatten()
    # (R, 4C) -> (R, C, 4), then each foreground RoI's row for its own class
    per_class = box_deltas.reshape(len(box_deltas), class_logits.shape[1], 4)
    box_loss = F.smooth_l1_loss(per_class[fg, labels[fg]], regression_targets[fg], beta=beta, reduction="sum")
    return classification, box_loss / labels.numel()


def postprocess(
    class_logits: Tensor, box_deltas: Tensor, rois: list[Tensor], image_sizes: list[tuple[int, int]], config: RoIConfig
) -> list[DetectionsTrace]:
    """Softmax, class-specific decode, clip, score threshold, min size, per-class NMS, top-K.

    class_logits (R, C) and box_deltas (R, 4C) for the RoIs of all images; rois: per image (Ri, 4);
    image_sizes: (h, w) per image. Decoding and the softmax run once for the batch, the rest per
    image. Candidates are the (RoI, class >= 1) pairs with score > `score_thresh` and both sides >=
    `min_size`; keep_idx indexes them, best first, at most `detections_per_img`. Returns one
    record per image, its boxes in the RoIs' pixels; boxes and scores are float32 whatever the
    head's dtype (AMP).
    """
    all_boxes = box_ops.decode(box_deltas, torch.cat(rois), config.box_weights)
    all_scores = F.softmax(class_logits.float(), -1)
    counts = [len(r) for r in rois]
    return [
        _detections_of_image(scores, box_ops.clip(boxes, size), config)
        for scores, boxes, size in zip(all_scores.split(counts), all_boxes.split(counts), image_sizes, strict=True)
    ]


def _detections_of_image(class_scores: Tensor, class_boxes: Tensor, config: RoIConfig) -> DetectionsTrace:
    num_rois, num_classes = class_scores.shape
    device = class_scores.device
    # drop the background column, then (R, C-1) -> (R*(C-1),) in RoI-major order
    roi_idx = torch.arange(num_rois, device=device)[:, None].expand(num_rois, num_classes - 1).reshape(-1)
    labels = torch.arange(1, num_classes, device=device)[None, :].expand(num_rois, num_classes - 1).reshape(-1)
    scores = class_scores[:, 1:].reshape(-1)
    flat_boxes = class_boxes[:, 1:].reshape(-1, 4)
    above = torch.nonzero(scores > config.score_thresh).flatten()
    above = above[box_ops.small_box_mask(flat_boxes[above], config.min_size)]
    keep = batched_nms(flat_boxes[above], scores[above], labels[above], config.nms_thresh)[: config.detections_per_img]
    return DetectionsTrace(
        class_scores=class_scores, class_boxes=class_boxes, candidate_roi_idx=roi_idx[above],
        candidate_labels=labels[above], candidate_scores=scores[above], candidate_boxes=flat_boxes[above],
        keep_idx=keep,
    )
