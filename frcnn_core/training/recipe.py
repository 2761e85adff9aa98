"""The pieces of a training run that are not the loop: batch order, optimizer, schedule, freezing.

Batch order is a pure function of (seed, epoch, rank, world size): each epoch is a permutation of
the dataset drawn from a generator seeded with (seed, epoch); rank r takes positions r, r + W, ...
So a resumed run, or a run under torchrun, sees exactly the batches it would have seen.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from frcnn_core.data.samples import DetectionDataset


class Batches:
    """Iteration i -> (images, targets) of batch i, deterministically."""

    def __init__(self, dataset: DetectionDataset, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world = rank, world
        self.per_epoch = max(1, math.ceil(len(dataset) / (batch_size * world)))
        self._order_epoch, self._order = -1, None

    def epoch_of(self, iteration: int) -> int:
        return iteration // self.per_epoch

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's image indices for `epoch` (the permutation padded by wrapping around)."""
        if epoch != self._order_epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            permutation = torch.randperm(len(self.dataset), generator=generator)
            needed = self.per_epoch * self.batch_size * self.world
            padded = permutation.repeat(math.ceil(needed / len(permutation)))[:needed]
            self._order_epoch, self._order = epoch, padded[self.rank :: self.world]
        return self._order

    def get(self, iteration: int) -> tuple[list[torch.Tensor], list[dict]]:
        epoch = self.epoch_of(iteration)
        position = (iteration % self.per_epoch) * self.batch_size
        indices = self.order(epoch)[position : position + self.batch_size].tolist()
        if self.dataset.transform is not None:
            self.dataset.transform.epoch = epoch  # augmentation depends on (seed, epoch, image)
        samples = [self.dataset[i] for i in indices]
        return [image for image, _ in samples], [target for _, target in samples]


def make_optimizer(model: nn.Module, settings) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay over the trainable parameters."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)


def lr_factor(iteration: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up from 0.001 over `warmup` iterations, then cosine to 0 or steps of x0.1 at
    2/3 and 8/9 of the run."""
    warm = 1.0 if iteration >= warmup else 0.001 + (1 - 0.001) * iteration / max(warmup, 1)
    if schedule == "cosine":
        return warm * 0.5 * (1 + math.cos(math.pi * min(iteration, total) / max(total, 1)))
    if schedule == "step":
        return warm * 0.1 ** sum(iteration >= total * f for f in (2 / 3, 8 / 9))
    raise ValueError(f"unknown schedule {schedule!r}; choose cosine or step")


def make_scheduler(optimizer: torch.optim.Optimizer, settings, total: int,
                   factor: Callable[[int], float] | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """`lr_factor` over `total` iterations, or `factor` (a budgeted run's clock, whose plan moves)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, factor or (lambda i: lr_factor(i, total, settings.warmup_iters, settings.schedule))
    )


def backbone_stages(body: nn.Module) -> list[list[nn.Module]]:
    """The backbone body's children grouped into stages: a stage starts at a ResNet `layerN`, at a
    MobileNet down-sampling block, and after a VGG max-pool."""
    stages: list[list[nn.Module]] = [[]]
    for name, child in body.named_children():
        starts = name.startswith("layer") or getattr(child, "_is_cn", False)
        if starts and stages[-1]:
            stages.append([])
        stages[-1].append(child)
        if isinstance(child, nn.MaxPool2d) and not name.startswith("maxpool"):
            stages.append([])
    return [stage for stage in stages if stage]


def freeze_stages(model: nn.Module, count: int | None) -> None:
    """Freeze the first `count` backbone stages (None: leave the model's own choice)."""
    if count is None:
        return
    for stage in backbone_stages(model.backbone.body)[:count]:
        for parameter in (p for module in stage for p in module.parameters()):
            parameter.requires_grad_(False)
