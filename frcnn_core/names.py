"""Model names, the bundled model's file and the weights a name gets by default, without torch:
the window lists them in its model picker before the engine has imported.

`frcnn_core.modeling.zoo` says what each name builds; tests/core/test_names.py checks that its `MODELS`
lists exactly `MODEL_NAMES`, and that those with COCO weights are exactly `COCO_TRAINED`.
"""
from __future__ import annotations

from frcnn_core.resources import MODELS

MODEL_NAMES = ("paper-vgg16", "resnet50-fpn", "resnet50-fpn-v2", "mobilenet-v3-fpn", "mobilenet-v3-320-fpn",
               "mobilenet-v2", "mobilenet-v2-fpn")
COCO_TRAINED = frozenset({"resnet50-fpn", "resnet50-fpn-v2", "mobilenet-v3-fpn", "mobilenet-v3-320-fpn"})
BUNDLED = {"bccd-demo": MODELS / "bccd-demo.pt"}
FALLBACK_MODEL = "mobilenet-v2"  # the default when the bundled model was not built


def model_choices() -> list[str]:
    """The bundled models, then the architectures: the model picker's list."""
    return list(BUNDLED) + list(MODEL_NAMES)


def default_model() -> str:
    """The bundled bccd-demo model when its file is there, else FALLBACK_MODEL."""
    return "bccd-demo" if BUNDLED["bccd-demo"].exists() else FALLBACK_MODEL


def default_weights(name: str) -> str:
    """The weights a model name gets unless told otherwise: its file for a bundled model or a
    checkpoint ("none": nothing more to load), COCO when torchvision has them, else the ImageNet
    backbone."""
    if name in BUNDLED or name not in MODEL_NAMES:
        return "none"
    return "coco" if name in COCO_TRAINED else "imagenet"
