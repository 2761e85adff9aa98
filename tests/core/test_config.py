"""Tests for frcnn_core.modeling.config: presets, the dict round trip, unknown names."""
from __future__ import annotations

import json

import pytest

from frcnn_core.modeling.config import PRESETS, AnchorConfig, DetectorConfig, make_config

PAPER_ANCHORS = AnchorConfig(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("anchors", [AnchorConfig(), PAPER_ANCHORS])
def test_every_preset_builds(preset, anchors):
    config = make_config(preset, anchors)

    assert config.preset == preset
    assert config.anchors.sizes == anchors.sizes
    assert config.anchors.num_anchors_per_location == anchors.num_anchors_per_location


@pytest.mark.parametrize("preset", PRESETS)
def test_to_dict_from_dict_round_trip(preset):
    config = make_config(preset, PAPER_ANCHORS)

    assert DetectorConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("preset", PRESETS)
def test_round_trip_through_json(preset):
    # JSON turns tuples into lists; from_dict must turn them back for the frozen dataclasses to compare equal
    config = make_config(preset, AnchorConfig())

    assert DetectorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unknown_preset_raises_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="unknown preset 'detectron'.*seed, paper, torchvision"):
        make_config("detectron", AnchorConfig())


def test_seed_preset_follows_the_walkthrough():
    config = make_config("seed", PAPER_ANCHORS)

    assert config.transform.fixed_size == (800, 800)
    assert config.anchors.center_offset == 0.5 and config.anchors.round_base is False
    assert config.rpn_train.ignore_cross_boundary
    assert (config.rpn_train.batch_size_per_image, config.rpn_train.positive_fraction) == (256, 0.5)
    assert config.rpn_train.post_nms_top_n == 2000
    assert config.roi_train.batch_size_per_image == 128


def test_paper_preset_follows_the_paper():
    config = make_config("paper", PAPER_ANCHORS)

    assert (config.transform.min_size, config.transform.max_size) == (600, 1000)
    assert (config.rpn_train.pre_nms_top_n, config.rpn_train.post_nms_top_n) == (12000, 2000)
    assert (config.rpn_test.pre_nms_top_n, config.rpn_test.post_nms_top_n) == (6000, 300)
    assert config.rpn_train.ignore_cross_boundary
    assert (config.roi_train.fg_iou_thresh, config.roi_train.bg_iou_thresh_lo, config.roi_train.bg_iou_thresh_hi) == (
        0.5, 0.1, 0.5,
    )


def test_torchvision_preset_takes_the_model_overrides():
    # torchvision's fasterrcnn_mobilenet_v3_large_320_fpn builder defaults
    overrides = {"min_size": 320, "max_size": 640, "rpn_pre_nms_top_n_test": 150, "rpn_post_nms_top_n_test": 150,
                 "rpn_score_thresh": 0.05}

    config = make_config("torchvision", AnchorConfig(), overrides)

    assert (config.transform.min_size, config.transform.max_size) == (320, 640)
    assert (config.rpn_test.pre_nms_top_n, config.rpn_test.post_nms_top_n) == (150, 150)
    assert config.rpn_test.score_thresh == 0.05
    assert (config.rpn_train.pre_nms_top_n, config.rpn_train.post_nms_top_n) == (2000, 2000)
    assert make_config("paper", AnchorConfig(), overrides).transform.min_size == 600
