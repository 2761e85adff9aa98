"""What the Fine-tune dialog offers: the base models, and the splits of a VOC folder."""
from __future__ import annotations

import re
from pathlib import Path

from frcnn_core.modeling.zoo import MODELS

# VOC's per-class lists (cat_train.txt ...) are not splits
_CLASS_LIST = re.compile(r".+_(train|val|trainval|test)$")


def base_model_choices(current: tuple[str, str, str] | None = None) -> list[tuple[str, str, str]]:
    """(label, model, weights) for the base-model combo: the current model first when given as
    (label, model, weights), then the bundled demo, MobileNetV2 on ImageNet, and every other zoo
    model with its COCO weights when it has them, else ImageNet's."""
    choices = [(f"the current model: {current[0]}", current[1], current[2])] if current else []
    choices += [("bccd-demo (bundled, blood cells)", "bccd-demo", "none"),
                ("mobilenet-v2, ImageNet backbone", "mobilenet-v2", "imagenet")]
    for name, spec in MODELS.items():
        if name != "mobilenet-v2":
            weights = "coco" if spec.coco_weights is not None else "imagenet"
            choices.append((f"{name}, {'COCO' if weights == 'coco' else 'ImageNet backbone'}", name, weights))
    return choices


def voc_splits(data: str | Path) -> list[str]:
    """The split names of a VOC folder (ImageSets/Main/<split>.txt), sorted; [] for other data."""
    folder = Path(data) / "ImageSets" / "Main"
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.txt") if not _CLASS_LIST.fullmatch(path.stem))
