"""The torch-free model names agree with the zoo that builds them."""
from __future__ import annotations

from frcnn_core import names
from frcnn_core.modeling.zoo import MODELS


def test_the_names_are_the_zoos_models_in_its_order():
    assert names.MODEL_NAMES == tuple(MODELS)


def test_coco_trained_names_are_those_with_coco_weights():
    assert names.COCO_TRAINED == {name for name, spec in MODELS.items() if spec.coco_weights is not None}


def test_default_weights_by_kind_of_name():
    assert names.default_weights("resnet50-fpn") == "coco"
    assert names.default_weights("mobilenet-v2") == "imagenet"  # no COCO detector in torchvision
    assert names.default_weights("bccd-demo") == "none"  # the bundled file holds its weights
    assert names.default_weights("/runs/a/final.pt") == "none"  # so does a checkpoint
