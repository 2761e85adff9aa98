"""torchvision's object-detection fine-tuning tutorial with a MobileNetV2 FPN, trained for a wall-clock budget.

Written with torchvision only (never frcnn_core's detector), as the tutorial
(pytorch.org/tutorials/intermediate/torchvision_tutorial.html) shapes it: ImageNet MobileNetV2 with
frozen batch norm, turned into a 3-map FPN the way torchvision builds its MobileNet detectors
(`_mobilenet_extractor(fpn=True, trainable_layers=3)`: the last two stages + a max-pooled map,
256 channels), anchors 32-512 px on every map, torchvision's `FasterRCNN` with its default sizes
(min 800, max 1333); SGD lr 0.005, momentum 0.9, weight decay 0.0005, batch 2, horizontal flips
0.5; the tutorial's `train_one_epoch` warm-up in the first epoch (LinearLR from 0.001 over
min(1000, batches - 1) iterations) and its StepLR(step_size=3 epochs, gamma=0.1). Images are read
as the tutorial reads them: `read_image` (here as RGB, for the few grey photos), then float [0, 1]
through the v2 transforms. Instead of a number of epochs, training stops when the budget is spent
(checked after every iteration); the model as it then is gets evaluated.

Labels are the dataset's: 0 is the background, a `num_classes` model predicts 1 .. num_classes - 1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, read_image
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _mobilenet_extractor
from torchvision.transforms import v2

BATCH_SIZE = 2
LR, MOMENTUM, WEIGHT_DECAY = 0.005, 0.9, 0.0005
STEP_EPOCHS, STEP_GAMMA = 3, 0.1
WARMUP_FACTOR, WARMUP_MAX_ITERS = 1.0 / 1000, 1000
HFLIP = 0.5


def tutorial_model(num_classes: int) -> FasterRCNN:
    """The tutorial's detector on an ImageNet MobileNetV2 FPN; num_classes counts the background."""
    mobilenet = torchvision.models.mobilenet_v2(weights=torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
                                                norm_layer=torchvision.ops.FrozenBatchNorm2d)
    backbone = _mobilenet_extractor(mobilenet, True, trainable_layers=3)
    anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
    return FasterRCNN(backbone, num_classes=num_classes, rpn_anchor_generator=anchors)


class TutorialImages(torch.utils.data.Dataset):
    """The tutorial's dataset over frcnn_core `Sample`s: (image (3, H, W) float [0, 1], target
    {"boxes": (G, 4) float32 x1 y1 x2 y2, "labels": (G,) int64}); flipped with p=0.5 when `train`."""

    def __init__(self, samples: list, train: bool):
        self.samples = samples
        steps = [v2.RandomHorizontalFlip(HFLIP)] if train else []
        self.transforms = v2.Compose([*steps, v2.ToDtype(torch.float, scale=True), v2.ToPureTensor()])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        sample = self.samples[index]
        image = tv_tensors.Image(read_image(sample.image_path, ImageReadMode.RGB))
        boxes = tv_tensors.BoundingBoxes(sample.boxes, format="XYXY", canvas_size=image.shape[-2:])
        return self.transforms(image, {"boxes": boxes, "labels": sample.labels})


@dataclass(frozen=True)
class TutorialRun:
    """A trained model (eval mode), the iterations and epochs begun, and the seconds from the call
    (model building included) to the end of the last iteration."""

    model: FasterRCNN
    iterations: int
    epochs: int
    seconds: float


def train_for(samples: list, num_classes: int, minutes: float, seed: int, device: torch.device) -> TutorialRun:
    """Train the tutorial's model on `samples` until `minutes` of wall time have passed since the call."""
    started = time.perf_counter()
    deadline = started + minutes * 60
    torch.manual_seed(seed)  # the new heads' initial weights and every flip
    model = tutorial_model(num_classes).to(device).train()
    loader = torch.utils.data.DataLoader(TutorialImages(samples, train=True), batch_size=BATCH_SIZE, shuffle=True,
                                         collate_fn=lambda batch: tuple(zip(*batch, strict=True)),
                                         generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR, momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY)
    step_lr = torch.optim.lr_scheduler.StepLR(optimizer, step_size=STEP_EPOCHS, gamma=STEP_GAMMA)
    iterations = epochs = 0
    while time.perf_counter() < deadline:
        warmup = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=WARMUP_FACTOR, total_iters=min(WARMUP_MAX_ITERS, len(loader) - 1),
        ) if epochs == 0 else None
        epochs += 1
        for images, targets in loader:
            losses = model([image.to(device) for image in images],
                           [{key: value.to(device) for key, value in target.items()} for target in targets])
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            if warmup is not None:
                warmup.step()
            iterations += 1
            if time.perf_counter() >= deadline:
                break
        step_lr.step()
    return TutorialRun(model.eval(), iterations, epochs, time.perf_counter() - started)


def detect(model: nn.Module, samples: list, score_thresh: float, device: torch.device) -> list[dict]:
    """frcnn_core.analysis.evaluate records of `model` on `samples` (image_id = index), on the CPU,
    keeping detections scoring at least `score_thresh` (torchvision's default is 0.05)."""
    model.roi_heads.score_thresh = score_thresh
    images = TutorialImages(samples, train=False)
    records = []
    with torch.inference_mode():
        for index in range(len(images)):
            output = model([images[index][0].to(device)])[0]
            records.append({"image_id": index, **{key: output[key].cpu() for key in ("boxes", "scores", "labels")}})
    return records
