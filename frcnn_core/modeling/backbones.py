"""Feature extractors, built from torchvision's backbones so their weights load unchanged.

Each builder returns a module mapping a (N, 3, H, W) batch to a list of feature maps, finest
first, and its channel count. FPN backbones are torchvision's `BackboneWithFPN` (keys
`body.*`, `fpn.*`, as in torchvision's detection models).

`pretrained` loads the ImageNet weights through torchvision's weights API. `frozen_norm` selects
`FrozenBatchNorm2d` (torchvision's choice whenever weights are pretrained) over `BatchNorm2d`.
"""
from __future__ import annotations

from torch import Tensor, nn
from torchvision import models
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from frcnn_core.modeling.checkpoints import fetch_state_dict

FPN_CHANNELS = 256


class FeatureList(nn.Module):
    """Wraps a single-map backbone so that it returns a list of feature maps, like the FPNs'
    dicts (`body.*` keys, as in torchvision's detection backbones)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, images: Tensor) -> list[Tensor]:
        return [self.body(images)]


def _imagenet(builder, weights, pretrained: bool, **kwargs) -> nn.Module:
    """A torchvision classifier, its ImageNet weights loaded through `fetch_state_dict`
    (weights_only) rather than the builder's own full unpickling."""
    model = builder(weights=None, **kwargs)
    if pretrained:
        model.load_state_dict(fetch_state_dict(weights, f"ImageNet {builder.__name__}"))
    return model


def _norm(frozen_norm: bool) -> type[nn.Module]:
    return FrozenBatchNorm2d if frozen_norm else nn.BatchNorm2d


def _freeze(module: nn.Module, trainable_prefixes: list[str]) -> None:
    for name, parameter in module.named_parameters():
        if not any(name.startswith(prefix) for prefix in trainable_prefixes):
            parameter.requires_grad_(False)


def vgg16_conv5(pretrained: bool) -> tuple[nn.Module, nn.Module | None, int]:
    """VGG16 up to conv5_3 + ReLU (stride 16, 512 channels), the paper's backbone.

    Returns (features, classifier, channels); the classifier's fc6 / fc7 seed the box head when
    pretrained. conv1 and conv2 stay frozen, as in the paper.
    """
    vgg = _imagenet(models.vgg16, models.VGG16_Weights.IMAGENET1K_V1, pretrained)
    features = vgg.features[:30]  # drop the last max-pool: stride 16 instead of 32
    if pretrained:
        _freeze(features, [str(i) for i in range(10, 30)])
    return FeatureList(features), vgg.classifier if pretrained else None, 512


def resnet50_fpn(pretrained: bool, frozen_norm: bool, fpn_norm: bool,
                 trainable_layers: int = 3) -> tuple[nn.Module, int]:
    """ResNet-50 + FPN (strides 4-64), torchvision's `fasterrcnn_resnet50_fpn(_v2)` backbone."""
    resnet = _imagenet(models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1, pretrained,
                       norm_layer=_norm(frozen_norm))
    if pretrained:
        _freeze(resnet, ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers])
    return_layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    fpn = BackboneWithFPN(
        resnet,
        return_layers,
        [256, 512, 1024, 2048],
        FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
        norm_layer=nn.BatchNorm2d if fpn_norm else None,
    )
    return fpn, FPN_CHANNELS


def _stage_starts(features: nn.Sequential) -> list[int]:
    """torchvision's MobileNet stage indices: 0, each down-sampling block, and the last layer."""
    return [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]


def _mobilenet_fpn(features: nn.Sequential, chosen: list[int], pretrained: bool, trainable_layers: int,
                   channels: int = FPN_CHANNELS) -> tuple[nn.Module, int]:
    """FPN over the outputs of `features[i]` for i in `chosen` (torchvision's `_mobilenet_extractor`)."""
    stage_indices = _stage_starts(features)
    if pretrained:
        first_trainable = stage_indices[len(stage_indices) - trainable_layers]
        _freeze(features, [str(i) for i in range(first_trainable, len(features))])
    return_layers = {str(stage): str(k) for k, stage in enumerate(chosen)}
    in_channels = [features[stage].out_channels for stage in chosen]
    fpn = BackboneWithFPN(features, return_layers, in_channels, channels, extra_blocks=LastLevelMaxPool())
    return fpn, channels


def mobilenet_v3_fpn(pretrained: bool, frozen_norm: bool, trainable_layers: int = 3) -> tuple[nn.Module, int]:
    """MobileNetV3-Large + FPN on its last two stage indices (torchvision's choice) + max-pool."""
    mobilenet = _imagenet(models.mobilenet_v3_large, models.MobileNet_V3_Large_Weights.IMAGENET1K_V1, pretrained,
                          norm_layer=_norm(frozen_norm))
    chosen = _stage_starts(mobilenet.features)[-2:]
    return _mobilenet_fpn(mobilenet.features, chosen, pretrained, trainable_layers)


def mobilenet_v2_coarse_fpn(pretrained: bool, frozen_norm: bool, trainable_layers: int = 3) -> tuple[nn.Module, int]:
    """MobileNetV2 in torchvision's MobileNet detection shape (`_mobilenet_extractor`, the shape of
    torchvision's fine-tuning tutorial with a MobileNetV2): a 256-channel FPN on its last two stage
    indices (both stride 32) + max-pool (64)."""
    mobilenet = _imagenet(models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1, pretrained,
                          norm_layer=_norm(frozen_norm))
    chosen = _stage_starts(mobilenet.features)[-2:]
    return _mobilenet_fpn(mobilenet.features, chosen, pretrained, trainable_layers)


def mobilenet_v2_fpn(pretrained: bool, frozen_norm: bool, trainable_layers: int = 6) -> tuple[nn.Module, int]:
    """MobileNetV2 + a 128-channel FPN on the last block of each of its stride-8, 16 and 32 stages,
    + max-pool (64): small enough to fine-tune on a CPU."""
    mobilenet = _imagenet(models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1, pretrained,
                          norm_layer=_norm(frozen_norm))
    starts = _stage_starts(mobilenet.features)
    stage_ends = [start - 1 for start in starts[1:-1]] + [len(mobilenet.features) - 1]
    return _mobilenet_fpn(mobilenet.features, stage_ends[-3:], pretrained, trainable_layers, channels=128)
