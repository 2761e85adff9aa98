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

from frcnn_core.checkpoints import fetch_state_dict

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


def resnet50_fpn(pretrained: bool, frozen_norm: bool, fpn_norm: bool, trainable_layers: int = 3) -> tuple[nn.Module, int]:
    """ResNet-50 + FPN (strides 4-64), torchvision's `fasterrcnn_resnet50_fpn(_v2)` backbone."""
    resnet = _imagenet(models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1, pretrained, norm_layer=_norm(frozen_norm))
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


def _mobilenet_fpn(features: nn.Sequential, returned_stages: int, pretrained: bool, trainable_layers: int) -> tuple[nn.Module, int]:
    """FPN over the last `returned_stages` stages of a MobileNet (torchvision's `_mobilenet_extractor`)."""
    stage_indices = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
    if pretrained:
        first_trainable = stage_indices[len(stage_indices) - trainable_layers]
        _freeze(features, [str(i) for i in range(first_trainable, len(features))])
    chosen = stage_indices[-returned_stages:]
    return_layers = {str(stage): str(k) for k, stage in enumerate(chosen)}
    in_channels = [features[stage].out_channels for stage in chosen]
    fpn = BackboneWithFPN(features, return_layers, in_channels, FPN_CHANNELS, extra_blocks=LastLevelMaxPool())
    return fpn, FPN_CHANNELS


def mobilenet_v3_fpn(pretrained: bool, frozen_norm: bool, trainable_layers: int = 3) -> tuple[nn.Module, int]:
    """MobileNetV3-Large + FPN on its last two stages (strides 16, 32) + max-pool (64)."""
    mobilenet = _imagenet(models.mobilenet_v3_large, models.MobileNet_V3_Large_Weights.IMAGENET1K_V1, pretrained,
                          norm_layer=_norm(frozen_norm))
    return _mobilenet_fpn(mobilenet.features, 2, pretrained, trainable_layers)


def mobilenet_v2_fpn(pretrained: bool, frozen_norm: bool, trainable_layers: int = 6) -> tuple[nn.Module, int]:
    """MobileNetV2 + FPN on its last three stages (strides 8, 16, 32) + max-pool (64), small
    enough to fine-tune on a CPU."""
    mobilenet = _imagenet(models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1, pretrained,
                          norm_layer=_norm(frozen_norm))
    return _mobilenet_fpn(mobilenet.features, 3, pretrained, trainable_layers)
