"""Our detectors against torchvision's on the same weights and the same real photo, through the
Python API and through `frcnn detect --json`: same detections and the same RPN proposals."""
from __future__ import annotations

import json

import pytest
import torch

from frcnn_core.cli.main import main
from frcnn_core.io.images import load_image
from frcnn_core.modeling.transform import to_original
from frcnn_core.modeling.zoo import build_model

from reference import BUILDERS, PHOTO, save_reference

BOX_TOL, SCORE_TOL = 1e-3, 1e-4


def assert_same_detections(ours_boxes, ours_scores, ours_labels, ref: dict) -> None:
    assert len(ours_boxes) == len(ref["boxes"])
    assert torch.equal(torch.as_tensor(ours_labels), ref["labels"])
    assert torch.allclose(torch.as_tensor(ours_boxes), ref["boxes"], atol=BOX_TOL, rtol=0)
    assert torch.allclose(torch.as_tensor(ours_scores), ref["scores"], atol=SCORE_TOL, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUILDERS))
def test_same_detections_and_proposals_as_torchvision(name, tmp_path):
    reference, state_dict_path = save_reference(name, tmp_path)
    image = load_image(PHOTO).tensor
    captured = {}

    def keep_proposals(module, args, output):
        captured["proposals"] = output[0][0]

    reference.rpn.register_forward_hook(keep_proposals)
    with torch.no_grad():
        expected = reference([image])[0]
    assert len(expected["boxes"]) == 100 and expected["scores"].unique().numel() == 100  # a meaningful oracle

    ours = build_model(name, str(state_dict_path), score_thresh=0.0)
    with torch.no_grad():
        stages = ours.run_stages([image], None)
    detections = stages.detections[0]
    boxes = to_original(detections.boxes, stages.backbone.batch, 0)
    assert_same_detections(boxes, detections.scores, detections.labels, expected)
    proposals = stages.proposals[0].boxes
    assert proposals.shape == captured["proposals"].shape
    assert torch.allclose(proposals, captured["proposals"], atol=BOX_TOL, rtol=0)

    out = tmp_path / "detections.json"
    code = main(["detect", str(PHOTO), "--model", name, "--weights", str(state_dict_path),
                 "--score-thresh", "0", "--json", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["model"] == name
    entry = record["images"][0]
    assert (entry["width"], entry["height"]) == (image.shape[2], image.shape[1])
    dets = entry["detections"]
    assert_same_detections([d["box"] for d in dets], [d["score"] for d in dets], [d["label"] for d in dets], expected)
    assert all(d["label"] != 0 for d in dets)
