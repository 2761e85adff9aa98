"""Frozen settings per stage, and the presets that fill them.

A stage never reads a mode flag: training and inference use two instances of the same dataclass
(`DetectorConfig.rpn_train` / `rpn_test`, `roi_train` / `roi_test`).

Presets (DESIGN.md):
- `torchvision`: torchvision's defaults for the model (per-model overrides included), so that the
  same weights give the same detections.
- `paper`: Ren et al. 2015 — shorter side 600 (longer at most 1000), cross-boundary anchors ignored
  while training, 12,000 / 2,000 proposals around NMS when training and 6,000 / 300 when testing,
  RoI foreground IoU >= 0.5 and background in [0.1, 0.5).
- `seed`: the walkthrough the project grew from — the input kept at 800x800, anchors centred in
  their 16-px cells with exact (unrounded) sizes, "inside" meaning fully within the image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

IGNORE, NEG, POS = -1, 0, 1
BACKGROUND = 0

PRESETS = ("seed", "paper", "torchvision")


@dataclass(frozen=True)
class TransformConfig:
    """Resize rule: scale so the shorter side is `min_size` unless the longer exceeds `max_size`;
    `fixed_size` (h, w), when set, resizes to exactly that. Batches pad to `size_divisible`."""

    min_size: int = 800
    max_size: int = 1333
    fixed_size: tuple[int, int] | None = None
    size_divisible: int = 32
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AnchorConfig:
    """Anchor shapes per feature level and the grid convention.

    `sizes[level]` and `aspect_ratios[level]` (height / width) give the shapes of each cell;
    `center_offset` is where in its stride-sized cell an anchor is centred (0.0 = the cell's
    top-left corner, torchvision; 0.5 = the cell's middle, the seed); `round_base` rounds the base
    anchors' corners to integers as torchvision does.
    """

    sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 2.0),) * 5
    center_offset: float = 0.0
    round_base: bool = True

    @property
    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios, strict=True)]

    @classmethod
    def from_dict(cls, data: dict) -> AnchorConfig:
        """The inverse of `dataclasses.asdict`, also after a JSON round trip."""
        return cls(**{k: _tuples(v) for k, v in data.items()})


@dataclass(frozen=True)
class RPNConfig:
    """Region proposal settings for one phase (training or inference)."""

    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    allow_low_quality_matches: bool = True
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    ignore_cross_boundary: bool = False
    pre_nms_top_n: int = 1000
    post_nms_top_n: int = 1000
    nms_thresh: float = 0.7
    min_size: float = 1e-3
    score_thresh: float = 0.0
    box_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    smooth_l1_beta: float = 1.0 / 9


@dataclass(frozen=True)
class RoIConfig:
    """Second-stage settings for one phase: RoI sampling (training) and post-processing."""

    fg_iou_thresh: float = 0.5
    bg_iou_thresh_hi: float = 0.5
    bg_iou_thresh_lo: float = 0.0
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    add_gt_as_proposals: bool = True
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    min_size: float = 1e-2
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    smooth_l1_beta: float = 1.0 / 9


@dataclass(frozen=True)
class DetectorConfig:
    """Everything a detector's stages need besides learned weights."""

    preset: str
    transform: TransformConfig = field(default_factory=TransformConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn_train: RPNConfig = field(default_factory=lambda: RPNConfig(pre_nms_top_n=2000, post_nms_top_n=2000))
    rpn_test: RPNConfig = field(default_factory=RPNConfig)
    roi_train: RoIConfig = field(default_factory=RoIConfig)
    roi_test: RoIConfig = field(default_factory=RoIConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        return cls(
            preset=data["preset"],
            transform=TransformConfig(**{k: _tuples(v) for k, v in data["transform"].items()}),
            anchors=AnchorConfig.from_dict(data["anchors"]),
            rpn_train=RPNConfig(**{k: _tuples(v) for k, v in data["rpn_train"].items()}),
            rpn_test=RPNConfig(**{k: _tuples(v) for k, v in data["rpn_test"].items()}),
            roi_train=RoIConfig(**{k: _tuples(v) for k, v in data["roi_train"].items()}),
            roi_test=RoIConfig(**{k: _tuples(v) for k, v in data["roi_test"].items()}),
        )


def _tuples(value):
    """Lists (a JSON round trip's) back to the tuples the configs hold, nested ones too."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _torchvision(anchors: AnchorConfig, model_overrides: dict) -> DetectorConfig:
    """torchvision's FasterRCNN defaults, then the per-model keyword overrides of its builders."""
    transform = TransformConfig(
        min_size=model_overrides.get("min_size", 800), max_size=model_overrides.get("max_size", 1333)
    )
    rpn_test = RPNConfig(
        pre_nms_top_n=model_overrides.get("rpn_pre_nms_top_n_test", 1000),
        post_nms_top_n=model_overrides.get("rpn_post_nms_top_n_test", 1000),
        score_thresh=model_overrides.get("rpn_score_thresh", 0.0),
    )
    rpn_train = replace(rpn_test, pre_nms_top_n=2000, post_nms_top_n=2000)
    return DetectorConfig("torchvision", transform, anchors, rpn_train, rpn_test)


def _paper(anchors: AnchorConfig) -> DetectorConfig:
    rpn_train = RPNConfig(ignore_cross_boundary=True, pre_nms_top_n=12000, post_nms_top_n=2000, min_size=16.0)
    rpn_test = replace(rpn_train, pre_nms_top_n=6000, post_nms_top_n=300)
    roi_train = RoIConfig(batch_size_per_image=128, bg_iou_thresh_lo=0.1)
    return DetectorConfig(
        "paper", TransformConfig(min_size=600, max_size=1000), anchors, rpn_train, rpn_test, roi_train, RoIConfig()
    )


def _seed(anchors: AnchorConfig) -> DetectorConfig:
    seed_anchors = replace(anchors, center_offset=0.5, round_base=False)
    rpn_train = RPNConfig(ignore_cross_boundary=True, pre_nms_top_n=12000, post_nms_top_n=2000, min_size=16.0)
    rpn_test = replace(rpn_train, pre_nms_top_n=6000, post_nms_top_n=300)
    roi_train = RoIConfig(batch_size_per_image=128, positive_fraction=0.5)
    return DetectorConfig(
        "seed", TransformConfig(fixed_size=(800, 800)), seed_anchors, rpn_train, rpn_test, roi_train, RoIConfig()
    )


def make_config(preset: str, anchors: AnchorConfig, model_overrides: dict | None = None) -> DetectorConfig:
    """The settings of `preset` for a model whose anchor shapes are `anchors`.

    `model_overrides` are the torchvision builder's per-model defaults (e.g. the 320-px MobileNet's
    `min_size`), applied by the `torchvision` preset only.
    """
    if preset == "torchvision":
        return _torchvision(anchors, model_overrides or {})
    if preset == "paper":
        return _paper(anchors)
    if preset == "seed":
        return _seed(anchors)
    raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
