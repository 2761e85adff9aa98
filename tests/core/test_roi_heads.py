"""Tests for frcnn_core.modeling.roi_heads: heads vs torchvision, the Fast R-CNN loss, post-processing."""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import faster_rcnn as tv_faster_rcnn
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss

from frcnn_core.modeling.config import RoIConfig
from frcnn_core.modeling.roi_heads import ConvFCHead, PaperHead, Predictor, TwoMLPHead, fast_rcnn_loss, postprocess

NUM_ROIS, NUM_CLASSES = 50, 4
IMAGE_SIZE = (90, 120)



def postprocess_one(class_logits, box_deltas, rois, image_size, config):
    """Post-processing of one image (the batch API with one image)."""
    return postprocess(class_logits, box_deltas, [rois], [image_size], config)[0]

def _random_second_stage(seed: int):
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(NUM_ROIS, 2, generator=generator) * 80
    rois = torch.cat([corner, corner + 5 + torch.rand(NUM_ROIS, 2, generator=generator) * 40], dim=1)
    class_logits = torch.randn(NUM_ROIS, NUM_CLASSES, generator=generator) * 2
    box_deltas = torch.randn(NUM_ROIS, 4 * NUM_CLASSES, generator=generator)
    return class_logits, box_deltas, rois


def _torchvision_roi_heads(config: RoIConfig) -> RoIHeads:
    return RoIHeads(
        None, None, None, 0.5, 0.5, 512, 0.25, config.box_weights,
        config.score_thresh, config.nms_thresh, config.detections_per_img,
    )


def test_postprocess_equals_torchvision():
    config = RoIConfig(score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)
    for seed in range(3):
        class_logits, box_deltas, rois = _random_second_stage(seed)

        detections = postprocess_one(class_logits, box_deltas, rois, IMAGE_SIZE, config)
        (boxes,), (scores,), (labels,) = _torchvision_roi_heads(config).postprocess_detections(
            class_logits, box_deltas, [rois], [IMAGE_SIZE]
        )

        assert len(detections.keep_idx) > 10
        assert torch.equal(detections.boxes, boxes)
        assert torch.equal(detections.scores, scores)
        assert torch.equal(detections.labels, labels)


def test_postprocess_caps_the_detection_count_like_torchvision():
    config = RoIConfig(score_thresh=0.0, nms_thresh=0.9, detections_per_img=7)
    class_logits, box_deltas, rois = _random_second_stage(4)

    detections = postprocess_one(class_logits, box_deltas, rois, IMAGE_SIZE, config)
    (boxes,), (scores,), _ = _torchvision_roi_heads(config).postprocess_detections(
        class_logits, box_deltas, [rois], [IMAGE_SIZE]
    )

    assert len(detections.keep_idx) == 7
    assert torch.equal(detections.boxes, boxes) and torch.equal(detections.scores, scores)


def test_postprocess_indices_lead_back_to_the_rois():
    class_logits, box_deltas, rois = _random_second_stage(5)

    detections = postprocess_one(class_logits, box_deltas, rois, IMAGE_SIZE, RoIConfig())

    assert detections.class_scores.shape == (NUM_ROIS, NUM_CLASSES)
    assert detections.class_boxes.shape == (NUM_ROIS, NUM_CLASSES, 4)
    # every candidate is one (RoI, class) pair and carries that pair's score and box
    candidates = detections.candidate_roi_idx, detections.candidate_labels
    assert torch.equal(detections.candidate_scores, detections.class_scores[candidates])
    assert torch.equal(detections.candidate_boxes, detections.class_boxes[candidates])
    assert bool((detections.candidate_labels >= 1).all())
    assert bool((detections.candidate_scores > RoIConfig().score_thresh).all())
    # and so does every kept detection, best first
    assert torch.equal(detections.scores, detections.class_scores[detections.roi_idx, detections.labels])
    assert torch.equal(detections.boxes, detections.class_boxes[detections.roi_idx, detections.labels])
    assert bool((detections.scores.diff() <= 0).all())


def test_postprocess_with_no_rois_gives_no_detections():
    detections = postprocess_one(
        torch.zeros(0, NUM_CLASSES), torch.zeros(0, 4 * NUM_CLASSES), torch.zeros(0, 4), IMAGE_SIZE, RoIConfig()
    )

    assert len(detections.keep_idx) == 0 and detections.boxes.shape == (0, 4)


def test_fast_rcnn_loss_equals_torchvision():
    generator = torch.Generator().manual_seed(6)
    class_logits = torch.randn(12, NUM_CLASSES, generator=generator)
    box_deltas = torch.randn(12, 4 * NUM_CLASSES, generator=generator)
    labels = torch.tensor([1, 3, 2, 0, 0, 1, 0, 0, 0, 2, 0, 0])
    regression_targets = torch.randn(12, 4, generator=generator)

    loss_classifier, loss_box = fast_rcnn_loss(class_logits, box_deltas, labels, regression_targets, 1 / 9)
    expected_classifier, expected_box = fastrcnn_loss(class_logits, box_deltas, [labels[:5], labels[5:]],
                                                      [regression_targets[:5], regression_targets[5:]])

    torch.testing.assert_close(loss_classifier, expected_classifier)
    torch.testing.assert_close(loss_box, expected_box)


def test_fast_rcnn_loss_uses_only_the_deltas_of_the_own_class():
    # one foreground RoI of class 2 whose class-2 deltas equal its target: no box loss,
    # whatever the other classes' deltas say; the background RoI adds none either
    box_deltas = torch.full((2, 4 * NUM_CLASSES), 9.0)
    box_deltas[0, 8:12] = torch.tensor([0.1, 0.2, 0.3, 0.4])
    regression_targets = torch.tensor([[0.1, 0.2, 0.3, 0.4], [5.0, 5.0, 5.0, 5.0]])
    labels = torch.tensor([2, 0])

    _, loss_box = fast_rcnn_loss(torch.zeros(2, NUM_CLASSES), box_deltas, labels, regression_targets, 1 / 9)

    assert float(loss_box) == 0.0


def test_fast_rcnn_loss_is_finite_with_no_rois():
    # roi_targets samples nothing for an image without GT when bg_iou_thresh_lo > 0 (the paper's
    # 0.1), like rpn_loss with nothing sampled, the loss must stay finite rather than turn NaN
    class_logits = torch.zeros(0, NUM_CLASSES, requires_grad=True)
    box_deltas = torch.zeros(0, 4 * NUM_CLASSES, requires_grad=True)

    loss_classifier, loss_box = fast_rcnn_loss(
        class_logits, box_deltas, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), 1 / 9
    )

    assert torch.isfinite(loss_classifier.detach()) and torch.isfinite(loss_box.detach())


def test_paper_head_has_a_relu_between_fc6_and_fc7():
    head = PaperHead(2, hidden=2).eval()
    with torch.no_grad():
        head.fc6.weight.copy_(torch.eye(2))
        head.fc6.bias.zero_()
        head.fc7.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
        head.fc7.bias.zero_()
    pooled = torch.tensor([[-1.0, 2.0]])

    # fc6 -> [-1, 2] -> ReLU -> [0, 2] -> fc7 -> [2, -2] -> ReLU -> [2, 0]
    # without the middle ReLU (the walkthrough's bug 6): fc7([-1, 2]) = [1, -3] -> ReLU -> [1, 0]
    assert head(pooled).tolist() == [[2.0, 0.0]]


def test_paper_head_flattens_pooled_features():
    head = PaperHead(3 * 7 * 7, hidden=16).eval()

    assert head(torch.randn(5, 3, 7, 7)).shape == (5, 16)


def test_two_mlp_head_and_predictor_load_torchvision_state_dicts():
    reference_head = tv_faster_rcnn.TwoMLPHead(3 * 7 * 7, 16)
    reference_predictor = tv_faster_rcnn.FastRCNNPredictor(16, NUM_CLASSES)
    head, predictor = TwoMLPHead(3 * 7 * 7, 16), Predictor(16, NUM_CLASSES)
    head.load_state_dict(reference_head.state_dict())
    predictor.load_state_dict(reference_predictor.state_dict())
    pooled = torch.randn(5, 3, 7, 7)

    features = head(pooled)
    assert torch.equal(features, reference_head(pooled))
    for ours, theirs in zip(predictor(features), reference_predictor(features), strict=True):
        assert torch.equal(ours, theirs)


def test_conv_fc_head_matches_torchvision_keys_and_outputs():
    reference = tv_faster_rcnn.FastRCNNConvFCHead((8, 7, 7), [6] * 4, [16], norm_layer=nn.BatchNorm2d).eval()
    head = ConvFCHead(8, 7, conv_channels=6, hidden=16).eval()

    assert list(head.state_dict().keys()) == list(reference.state_dict().keys())
    head.load_state_dict(reference.state_dict())
    pooled = torch.randn(3, 8, 7, 7)
    assert torch.equal(head(pooled), reference(pooled))


def test_batched_postprocess_equals_per_image_postprocess():
    generator = torch.Generator().manual_seed(11)
    rois = [torch.tensor([[10.0, 10.0, 40.0, 50.0], [5.0, 8.0, 30.0, 20.0]]), torch.tensor([[0.0, 0.0, 60.0, 60.0]])]
    class_logits = torch.randn(3, 4, generator=generator)
    box_deltas = torch.randn(3, 16, generator=generator) * 0.2
    sizes = [(64, 64), (70, 50)]
    config = RoIConfig(score_thresh=0.0)
    batched = postprocess(class_logits, box_deltas, rois, sizes, config)
    offsets = [0, 2, 3]
    for i in range(2):
        start, stop = offsets[i], offsets[i + 1]
        single = postprocess_one(class_logits[start:stop], box_deltas[start:stop], rois[i], sizes[i], config)
        assert torch.equal(batched[i].boxes, single.boxes) and torch.equal(batched[i].labels, single.labels)


def test_postprocess_under_bfloat16_autocast_decodes_and_scores_in_float32():
    class_logits, box_deltas, rois = _random_second_stage(12)
    low_logits, low_deltas = class_logits.to(torch.bfloat16), box_deltas.to(torch.bfloat16)
    config = RoIConfig(score_thresh=0.0)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = postprocess_one(low_logits, low_deltas, rois, IMAGE_SIZE, config)
    expected = postprocess_one(low_logits.float(), low_deltas.float(), rois, IMAGE_SIZE, config)

    assert amp.class_boxes.dtype == torch.float32 and amp.class_scores.dtype == torch.float32
    assert torch.equal(amp.class_boxes, expected.class_boxes)
    assert torch.equal(amp.class_scores, expected.class_scores)
