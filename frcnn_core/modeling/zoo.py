"""Model names -> detectors; weights through torchvision's weights API; safe checkpoints.

Weights: `coco` (torchvision's COCO detector weights), `imagenet` (ImageNet backbone, fresh heads),
`none` (random; seed torch yourself), or a file: one of our checkpoints or a plain torchvision
state_dict. Files are read with `torch.load(weights_only=True)` only — a pickle payload is refused
and never runs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torchvision.models import detection as tv_detection

from frcnn_core.errors import InputError
from frcnn_core.modeling import backbones
from frcnn_core.modeling.checkpoints import fetch_state_dict, load_weights_file
from frcnn_core.modeling.config import AnchorConfig, make_config
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.modeling.roi_heads import ConvFCHead, PaperHead, Predictor, TwoMLPHead
from frcnn_core.modeling.roi_pool import multiscale_roi_align, single_level_roi_pool
from frcnn_core.modeling.rpn import RPNHead
from frcnn_core.names import BUNDLED

WEIGHT_CHOICES = ("coco", "imagenet", "none")
PREDICTOR = "roi_heads.box_predictor."  # the class-specific layers: fresh for another class set
RPN_PREDICTORS = ("rpn.head.cls_logits.", "rpn.head.bbox_pred.")  # one output per anchor shape: fresh for new anchors
FPN_ANCHORS = AnchorConfig()
MOBILENET_ANCHORS = AnchorConfig(sizes=((32, 64, 128, 256, 512),) * 3, aspect_ratios=((0.5, 1.0, 2.0),) * 3)


@dataclass(frozen=True)
class ModelSpec:
    """What a model name means: description, anchors, default preset, weights it can take."""

    description: str
    anchors: AnchorConfig
    default_preset: str = "torchvision"
    coco_weights: object | None = None
    torchvision_overrides: dict = field(default_factory=dict)
    trainable_norm: bool = False


# the same names as frcnn_core.names.MODEL_NAMES (what the window lists before torch is imported)
MODELS: dict[str, ModelSpec] = {
    "paper-vgg16": ModelSpec(
        "the paper: VGG16 conv5_3 (stride 16), 9 anchors, RoIPool 7x7, fc6/fc7 4096",
        AnchorConfig(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)),
        default_preset="paper",
    ),
    "resnet50-fpn": ModelSpec(
        "torchvision fasterrcnn_resnet50_fpn", FPN_ANCHORS,
        coco_weights=tv_detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
    ),
    "resnet50-fpn-v2": ModelSpec(
        "torchvision fasterrcnn_resnet50_fpn_v2 (conv box head, BN everywhere)", FPN_ANCHORS,
        coco_weights=tv_detection.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
    ),
    "mobilenet-v3-fpn": ModelSpec(
        "torchvision fasterrcnn_mobilenet_v3_large_fpn", MOBILENET_ANCHORS,
        coco_weights=tv_detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        torchvision_overrides={"rpn_score_thresh": 0.05},
    ),
    "mobilenet-v3-320-fpn": ModelSpec(
        "torchvision fasterrcnn_mobilenet_v3_large_320_fpn (320-px input)", MOBILENET_ANCHORS,
        coco_weights=tv_detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
        torchvision_overrides={"min_size": 320, "max_size": 640, "rpn_pre_nms_top_n_test": 150,
                               "rpn_post_nms_top_n_test": 150, "rpn_score_thresh": 0.05},
    ),
    "mobilenet-v2": ModelSpec(
        "MobileNetV2 + 128-channel FPN (strides 8-64), trainable batch norm, native-size input "
        "(shorter side 480): small enough to fine-tune on a CPU",
        AnchorConfig(sizes=((16, 32), (48, 72), (104, 150), (210, 300)), aspect_ratios=((0.5, 1.0, 2.0),) * 4),
        torchvision_overrides={"min_size": 480, "max_size": 640, "rpn_post_nms_top_n_test": 300},
        trainable_norm=True,
    ),
    "mobilenet-v2-fpn": ModelSpec(
        "MobileNetV2 in torchvision's MobileNet shape (the fine-tuning tutorial's): 256-channel FPN on "
        "two stride-32 maps + max-pool, frozen batch norm, anchors 32-512 px on every map: for large objects",
        MOBILENET_ANCHORS,
    ),
}

COCO_CLASS_NAMES: list[str] = list(tv_detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def class_names_for(num_classes: int) -> list[str]:
    """COCO's names for a 91-class head, else `class_1`... (0 is always background)."""
    if num_classes == len(COCO_CLASS_NAMES):
        return COCO_CLASS_NAMES
    return ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]


def _architecture(name: str, pretrained_backbone: bool, frozen_norm: bool, num_classes: int,
                  shapes: int) -> dict[str, nn.Module | Callable]:
    """Backbone, RPN head (`shapes` anchor shapes per cell), pooler, box head and predictor of a model name."""
    if name == "paper-vgg16":
        backbone, classifier, channels = backbones.vgg16_conv5(pretrained_backbone)
        box_head = PaperHead(channels * 7 * 7)
        if classifier is not None:
            box_head.fc6.load_state_dict(classifier[0].state_dict())
            box_head.fc7.load_state_dict(classifier[3].state_dict())
        pooler = functools.partial(_paper_pooler, spatial_scale=1 / 16, output_size=7)
        return dict(backbone=backbone, rpn_head=RPNHead(channels, shapes), pooler=pooler,
                    box_head=box_head, box_predictor=Predictor(4096, num_classes))
    if name in ("resnet50-fpn", "resnet50-fpn-v2"):
        v2 = name.endswith("v2")
        backbone, channels = backbones.resnet50_fpn(pretrained_backbone, frozen_norm and not v2, fpn_norm=v2)
        box_head = ConvFCHead(channels, 7) if v2 else TwoMLPHead(channels * 7 * 7)
        rpn_head = RPNHead(channels, shapes, conv_depth=2 if v2 else 1)
    else:
        builder = {"mobilenet-v2": backbones.mobilenet_v2_fpn,
                   "mobilenet-v2-fpn": backbones.mobilenet_v2_coarse_fpn}.get(name, backbones.mobilenet_v3_fpn)
        backbone, channels = builder(pretrained_backbone, frozen_norm)
        box_head = TwoMLPHead(channels * 7 * 7)
        rpn_head = RPNHead(channels, shapes)
    # torchvision pools from FPN outputs '0'-'3' only, never from the extra max-pool level: four
    # levels for ResNet, two for the MobileNet shape; our mobilenet-v2 pools from all four of its levels
    pooled_levels = {"mobilenet-v2": None, "mobilenet-v2-fpn": 2, "mobilenet-v3-fpn": 2,
                     "mobilenet-v3-320-fpn": 2}.get(name, 4)
    pooler = functools.partial(multiscale_roi_align, output_size=7, sampling_ratio=2, num_levels=pooled_levels)
    return dict(backbone=backbone, rpn_head=rpn_head, pooler=pooler, box_head=box_head,
                box_predictor=Predictor(1024, num_classes))


def _paper_pooler(features, rois, input_sizes, spatial_scale: float, output_size: int):
    return single_level_roi_pool(features[0], rois, spatial_scale, output_size)


def _coco_state_dict(name: str) -> dict:
    weights = MODELS[name].coco_weights
    if weights is None:
        raise InputError(None, f"model {name} has no COCO weights; use --weights imagenet, none or a file")
    return fetch_state_dict(weights, f"COCO {name}")


def _uses_running_counts(state_dict: dict) -> bool:
    """True when the backbone's norm layers were trainable BatchNorm (they count batches)."""
    return any(k.startswith("backbone.body.") and k.endswith("num_batches_tracked") for k in state_dict)


def build_model(model: str, weights: str = "none", preset: str | None = None, score_thresh: float | None = None,
                class_names: list[str] | None = None, anchors: AnchorConfig | None = None) -> FasterRCNN:
    """A detector by name (or checkpoint path) and weights, in eval mode.

    `class_names` (background first) asks for a predictor of that many classes: when the weights
    carry other classes, every weight but the predictor's loads and the predictor starts fresh
    (fine-tuning). `anchors` replaces the model's anchors (one per feature level, the same number
    of shapes per cell on each); the RPN head has as many shapes per cell as the anchors in use,
    and when they differ from those the weights were trained with (sizes or ratios), its
    objectness and box layers start fresh. Raises InputError for unknown names, missing weights,
    anchors of another level count, and files that are not a checkpoint of this architecture.
    """
    model, source = _resolve(model, weights)
    spec = MODELS[model]
    state_dict = source.state_dict if source else (_coco_state_dict(model) if weights == "coco" else None)
    trained_anchors = source.config.anchors if source and source.config else spec.anchors
    config = source.config if source and source.config and preset is None else None
    if config is None:  # another preset keeps the anchor shapes the weights were trained with
        shapes = replace(spec.anchors, sizes=trained_anchors.sizes, aspect_ratios=trained_anchors.aspect_ratios)
        config = make_config(preset or spec.default_preset, shapes, spec.torchvision_overrides)
    if score_thresh is not None:
        config = replace(config, roi_test=replace(config.roi_test, score_thresh=score_thresh))
    if anchors is not None:
        _check_levels(anchors, len(spec.anchors.sizes), model)
        config = replace(config, anchors=anchors)
    stored_names = None
    if state_dict is not None:
        stored_names = (source.class_names if source and source.class_names
                        else class_names_for(_num_classes(state_dict, source.path if source else weights)))
    names = list(class_names or stored_names or COCO_CLASS_NAMES)
    from_file = source is not None
    pretrained_backbone = weights == "imagenet" and not from_file
    parts = _architecture(model, pretrained_backbone, _frozen_norm(spec, weights, state_dict, from_file), len(names),
                          config.anchors.num_anchors_per_location[0])
    detector = FasterRCNN(config=config, class_names=names, **parts)
    detector.model_name = model
    if state_dict is not None:
        fresh = (PREDICTOR,) if stored_names != names else ()
        if _shapes(config.anchors) != _shapes(trained_anchors):
            fresh += RPN_PREDICTORS
        _load_strict(detector, state_dict, source.path if source else weights, model, fresh)
    return detector.eval()


def _shapes(anchors: AnchorConfig) -> tuple:
    """What the RPN's outputs are trained for: the anchor sizes and ratios of each level."""
    return anchors.sizes, anchors.aspect_ratios


def _check_levels(anchors: AnchorConfig, levels: int, name: str) -> None:
    """InputError unless `anchors` has `levels` levels with one shape count on all of them."""
    if len(anchors.sizes) != levels:
        raise InputError(None, f"anchors for {len(anchors.sizes)} feature levels; model {name} has {levels}")
    if len(set(anchors.num_anchors_per_location)) != 1:
        raise InputError(None, f"anchors with {anchors.num_anchors_per_location} shapes per level; the RPN head "
                               "is shared by all levels, so each needs the same number")


def _resolve(model: str, weights: str):
    """(model name, weights file or None) for a name, a bundled model or a checkpoint path."""
    if model in BUNDLED:
        if not BUNDLED[model].exists():
            raise InputError(BUNDLED[model], f"the bundled {model} model is missing; `make demo-model` builds it")
        model = str(BUNDLED[model])
    if model not in MODELS:
        if not Path(model).exists():
            raise InputError(None, f"unknown model {model!r}; choose one of {', '.join(MODELS)} or a checkpoint file")
        source = load_weights_file(model)
        if source.model_name is None:
            raise InputError(model, "a plain state_dict names no model; pass --model NAME --weights FILE")
        if source.model_name not in MODELS:
            raise InputError(model, f"checkpoint names an unknown model {source.model_name!r}; "
                                    f"known: {', '.join(MODELS)}")
        return source.model_name, source
    if weights in WEIGHT_CHOICES:
        return model, None
    source = load_weights_file(weights)
    if source.model_name not in (None, model):
        raise InputError(weights, f"checkpoint is for model {source.model_name}, not {model}")
    return model, source


def _frozen_norm(spec: ModelSpec, weights: str, state_dict: dict | None, from_file: bool) -> bool:
    """torchvision's rule: frozen batch norm for trained weights, trainable for random ones; a
    file decides by whether its norm layers counted batches. Some models always train their norms."""
    if spec.trainable_norm:
        return False
    if from_file:
        return not _uses_running_counts(state_dict)
    return weights in ("coco", "imagenet")


def _num_classes(state_dict: dict, path=None) -> int:
    weight = state_dict.get("roi_heads.box_predictor.cls_score.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise InputError(path, "state_dict has no roi_heads.box_predictor.cls_score.weight; not a Faster R-CNN")
    return int(weight.shape[0])


def _load_strict(detector: FasterRCNN, state_dict: dict, path, name: str, fresh: tuple[str, ...] = ()) -> None:
    """Load all weights or none: any missing, unexpected or misshapen key is an InputError.

    Parameters whose names start with one of `fresh` are left as initialised (a new head)."""
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(fresh)}
    for kind in ("weight", "bias"):  # torchvision's pre-0.13 RPN head layout (its COCO v1 file)
        old = f"rpn.head.conv.{kind}"
        if old in state_dict:
            state_dict[f"rpn.head.conv.0.0.{kind}"] = state_dict.pop(old)
    expected = detector.state_dict()
    ignorable = {k for k in state_dict if k.endswith("num_batches_tracked") and k not in expected}
    missing = [k for k in expected if k not in state_dict and not k.startswith(fresh)]
    unexpected = [k for k in state_dict if k not in expected and k not in ignorable]
    misshapen = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or misshapen:
        example = (missing or unexpected or misshapen)[0]
        raise InputError(path, f"weights do not fit model {name}: {len(missing)} missing, {len(unexpected)} "
                               f"unexpected, {len(misshapen)} misshapen keys (first: {example})")
    detector.load_state_dict({k: v for k, v in state_dict.items() if k not in ignorable}, strict=not fresh)
