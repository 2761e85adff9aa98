"""Model-level behaviour: weights through torchvision's API, checkpoints, losses, trace links."""
from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import detection
from torchvision.ops import FrozenBatchNorm2d

from frcnn_core.errors import InputError
from frcnn_core.io.images import load_image
from frcnn_core.modeling.checkpoints import save_checkpoint
from frcnn_core.modeling.zoo import COCO_CLASS_NAMES, build_model

from reference import PHOTO, reference_model

SMALL = "mobilenet-v3-320-fpn"


@pytest.fixture(scope="module")
def photo():
    return load_image(PHOTO).tensor


def test_coco_weights_load_through_torchvisions_weights_api(tmp_path, monkeypatch, photo):
    """COCO files cannot be downloaded here: a seeded random torchvision model's state_dict, put
    where the weights API caches the COCO file, stands in for it."""
    weights = detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference_model(SMALL).state_dict(), tmp_path / "checkpoints" / Path(weights.url).name)

    ours = build_model(SMALL, "coco", score_thresh=0.0)
    expected_model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=weights, box_score_thresh=0.0).eval()
    assert ours.class_names == COCO_CLASS_NAMES and ours.class_names[1] == "person"
    assert any(isinstance(m, FrozenBatchNorm2d) for m in ours.modules())  # torchvision's choice for trained weights
    with torch.no_grad():
        expected = expected_model([photo])[0]
    got = ours([photo])[0]
    assert len(got["boxes"]) == len(expected["boxes"]) > 0
    assert torch.equal(got["labels"], expected["labels"])
    assert torch.allclose(got["boxes"], expected["boxes"], atol=1e-3, rtol=0)


def test_offline_coco_weights_say_where_the_file_goes(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(InputError) as error:
        build_model(SMALL, "coco")
    message = str(error.value)
    assert str(tmp_path / "checkpoints") in message and "fasterrcnn_mobilenet_v3_large_320_fpn" in message
    assert "\n" not in message


def test_our_checkpoint_round_trip_keeps_classes_config_and_outputs(tmp_path, photo):
    torch.manual_seed(0)
    model = build_model(SMALL, "none", score_thresh=0.0)
    names = ["__background__", "cell", "platelet"] + [f"c{i}" for i in range(3, 91)]
    path = tmp_path / "model.pt"
    save_checkpoint(path, SMALL, model.config, names, model.state_dict())
    loaded = build_model(str(path))
    assert loaded.class_names == names and loaded.config == model.config
    first, second = model([photo])[0], loaded([photo])[0]
    assert torch.equal(first["boxes"], second["boxes"]) and torch.equal(first["scores"], second["scores"])


def test_training_pass_returns_four_finite_losses_that_backpropagate(photo):
    torch.manual_seed(0)
    model = build_model(SMALL, "none").train()
    small = torch.nn.functional.interpolate(photo[None], size=(120, 160))[0]
    targets = [
        {"boxes": torch.tensor([[20.0, 10.0, 90.0, 100.0]]), "labels": torch.tensor([17])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},  # an image with no GT
    ]
    losses, traces = model([small, small], targets, trace=True, generator=torch.Generator().manual_seed(1))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.rpn["head"].cls_logits.weight.grad is not None
    assert model.roi_heads["box_predictor"].cls_score.weight.grad is not None
    first, empty = traces
    assert first.detections is None and first.anchor_labels is not None
    assert int((first.anchor_labels.labels == 1).sum()) >= 1  # the best anchor of the GT box at least
    assert int((empty.anchor_labels.labels == 1).sum()) == 0
    assert len(first.anchor_labels.sampled_pos_idx) + len(first.anchor_labels.sampled_neg_idx) <= 256


def test_inference_trace_links_and_original_pixels(photo):
    torch.manual_seed(0)
    model = build_model(SMALL, "none", score_thresh=0.0)
    detections, (trace,) = model([photo], trace=True)
    height, width = photo.shape[1:]
    assert trace.image_size == (height, width) and trace.input_size != trace.image_size
    proposals, found = trace.proposals, trace.detections
    assert torch.equal(found.boxes, detections[0]["boxes"]) and torch.equal(found.scores, detections[0]["scores"])
    assert int(found.roi_idx.max()) < len(proposals.post_nms_idx) == len(trace.roi_pool.boxes)
    assert torch.allclose(trace.roi_pool.boxes, proposals.boxes)
    assert int(proposals.pre_nms_anchor_idx.max()) < len(trace.anchors.boxes)
    assert float(proposals.boxes[:, 2].max()) <= width + 1e-3 and float(proposals.boxes[:, 3].max()) <= height + 1e-3
    suppressed = proposals.suppressed_by >= 0
    kept = torch.zeros(len(proposals.pre_nms_boxes), dtype=torch.bool)
    kept[proposals.nms_keep_idx] = True
    assert kept[proposals.suppressed_by[suppressed]].all() and not (suppressed & kept).any()


def test_plain_call_returns_detections_only(photo):
    torch.manual_seed(0)
    detections = build_model(SMALL, "none")([photo])
    assert isinstance(detections, list) and set(detections[0]) == {"boxes", "scores", "labels"}


def test_a_checkpoint_path_never_fetches_backbone_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model("mobilenet-v2", "none", class_names=["__background__", "cell"])
    path = tmp_path / "run.pt"
    save_checkpoint(path, "mobilenet-v2", model.config, model.class_names, model.state_dict())

    def no_download(*args, **kwargs):
        raise AssertionError("a checkpoint must not trigger a weights download")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", no_download)
    loaded = build_model(str(path), "imagenet")  # the CLI's default weights for a non-COCO name
    assert loaded.class_names == ["__background__", "cell"]


def test_a_checkpoint_naming_an_unknown_model_is_one_line_naming_the_file(tmp_path):
    model = build_model("mobilenet-v3-320-fpn", "none")
    path = tmp_path / "odd.pt"
    save_checkpoint(path, "nope", model.config, model.class_names, model.state_dict())
    with pytest.raises(InputError, match="unknown model 'nope'") as raised:
        build_model(str(path))
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_state_dict_without_a_predictor_names_the_file(tmp_path):
    model = build_model("mobilenet-v3-320-fpn", "none")
    path = tmp_path / "headless.pth"
    torch.save({k: v for k, v in model.state_dict().items() if not k.startswith("roi_heads.box_predictor")}, path)
    with pytest.raises(InputError, match="cls_score") as raised:
        build_model("mobilenet-v3-320-fpn", str(path))
    assert str(path) in str(raised.value)


def test_mobilenet_v2_fpn_has_torchvisions_mobilenet_shape_on_imagenet_mobilenet_v2():
    """The tutorial's shape: two stride-32 maps + a stride-64 pool, 256 channels, 15 anchors a
    cell, frozen batch norm and the first stages frozen with the ImageNet backbone."""
    model = build_model("mobilenet-v2-fpn", "imagenet", class_names=["__background__", "raccoon"])
    features = model.backbone(torch.zeros(1, 3, 256, 320))
    maps = list(features.values()) if isinstance(features, dict) else features
    assert [tuple(m.shape[-2:]) for m in maps] == [(8, 10), (8, 10), (4, 5)]
    assert all(m.shape[1] == 256 for m in maps)
    assert model.config.anchors.num_anchors_per_location == [15, 15, 15]
    assert any(isinstance(module, FrozenBatchNorm2d) for module in model.backbone.modules())
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.backbone.body.modules())
    assert not model.backbone.body["0"][0].weight.requires_grad
