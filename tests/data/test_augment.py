"""Augmentations: boxes follow the image, hand-computed flips, determinism in (seed, epoch, image)."""
from __future__ import annotations

import pickle

import pytest
import torch

from frcnn_core.data.augment import Augment, AugmentConfig, hflip, photometric, scale_jitter, vflip


def image_and_boxes():
    image = torch.rand(3, 40, 100, generator=torch.Generator().manual_seed(0))
    return image, torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 100.0, 40.0]])


def test_hflip_moves_a_left_box_to_the_right_by_hand():
    image, boxes = image_and_boxes()
    flipped, flipped_boxes = hflip(image, boxes)
    assert flipped_boxes.tolist() == [[70, 5, 90, 25], [0, 0, 100, 40]]  # x1 = 100 - 30, x2 = 100 - 10
    assert torch.equal(flipped[:, :, 0], image[:, :, 99])


def test_vflip_by_hand():
    image, boxes = image_and_boxes()
    flipped, flipped_boxes = vflip(image, boxes)
    assert flipped_boxes.tolist() == [[10, 15, 30, 35], [0, 0, 100, 40]]  # y1 = 40 - 25, y2 = 40 - 5
    assert torch.equal(flipped[:, 0], image[:, 39])


@pytest.mark.parametrize("flip", [hflip, vflip])
def test_flip_twice_is_identity(flip):
    image, boxes = image_and_boxes()
    twice_image, twice_boxes = flip(*flip(image, boxes))
    assert torch.equal(twice_image, image) and torch.equal(twice_boxes, boxes)


def test_a_marked_pixel_stays_inside_its_box_after_a_flip():
    image = torch.zeros(3, 40, 100)
    image[:, 10, 20] = 1.0
    flipped, boxes = hflip(image, torch.tensor([[19.0, 9.0, 21.0, 11.0]]))
    rows, cols = torch.nonzero(flipped[0], as_tuple=True)
    x1, y1, x2, y2 = boxes[0].tolist()
    assert x1 <= int(cols[0]) < x2 and y1 <= int(rows[0]) < y2


def test_scale_jitter_scales_boxes_like_the_image():
    image, boxes = image_and_boxes()
    resized, resized_boxes = scale_jitter(image, boxes, (0.5, 0.5), torch.Generator().manual_seed(0))
    assert resized.shape == (3, 20, 50)
    assert torch.equal(resized_boxes, boxes * 0.5)
    resized, resized_boxes = scale_jitter(image, boxes, (0.6, 1.7), torch.Generator().manual_seed(0))
    height, width = resized.shape[-2:]
    expected = boxes * torch.tensor([width / 100, height / 40, width / 100, height / 40])
    assert torch.allclose(resized_boxes, expected)
    assert 0 <= float(resized.min()) and float(resized.max()) <= 1


def test_photometric_keeps_range_and_shape_and_is_seeded():
    image, _ = image_and_boxes()
    first = photometric(image, torch.Generator().manual_seed(4), hue=0.05)
    second = photometric(image, torch.Generator().manual_seed(4), hue=0.05)
    assert first.shape == image.shape and torch.equal(first, second)
    assert 0 <= float(first.min()) and float(first.max()) <= 1 and not torch.equal(first, image)


CONFIG = AugmentConfig(hflip=0.5, vflip=0.5, scale=(0.8, 1.2), photometric=True)


def run(augment: Augment, image_id: int):
    image, boxes = image_and_boxes()
    return augment(image, {"boxes": boxes, "labels": torch.tensor([1, 2]), "image_id": image_id})


def test_boxes_stay_inside_the_image_and_labels_follow():
    augment = Augment(CONFIG, seed=3)
    for image_id in range(20):
        image, target = run(augment, image_id)
        height, width = image.shape[-2:]
        boxes = target["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width + 1e-4).all() and (boxes[:, 3] <= height + 1e-4).all()
        assert target["labels"].tolist() == [1, 2] and target["image_id"] == image_id


def test_deterministic_in_seed_epoch_and_image_and_picklable():
    augment = Augment(CONFIG, seed=3)
    copy = pickle.loads(pickle.dumps(augment))
    for image_id in range(5):
        first, second = run(augment, image_id), run(copy, image_id)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1]["boxes"], second[1]["boxes"])
    outputs = {(seed, epoch): run(_with_epoch(Augment(CONFIG, seed), epoch), 0)[0]
               for seed in (0, 1) for epoch in (0, 1)}
    assert not torch.equal(outputs[0, 0], outputs[1, 0]) and not torch.equal(outputs[0, 0], outputs[0, 1])


def _with_epoch(augment: Augment, epoch: int) -> Augment:
    augment.epoch = epoch
    return augment


def test_flip_probability_is_respected():
    always, never = Augment(AugmentConfig(hflip=1.0)), Augment(AugmentConfig(hflip=0.0))
    assert run(always, 0)[1]["boxes"].tolist()[0] == [70, 5, 90, 25]
    assert run(never, 0)[1]["boxes"].tolist()[0] == [10, 5, 30, 25]
    flipped = sum(run(Augment(AugmentConfig(hflip=0.5)), i)[1]["boxes"][0, 0].item() == 70 for i in range(200))
    assert 60 < flipped < 140


def test_an_image_without_boxes_passes_every_augmentation():
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": torch.tensor(3)}
    image, out = Augment(AugmentConfig(hflip=1.0, vflip=1.0, scale=(0.5, 0.5), photometric=True))(
        torch.rand(3, 20, 30), target)
    assert image.shape == (3, 10, 15) and out["boxes"].shape == (0, 4)
