"""frcnn_core.render.stage_pictures: every stage picture from real traces, and hand-placed boxes and logits."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_core.io.images import load_image
from frcnn_core.modeling.zoo import build_model
from frcnn_core.render.stage_pictures import (
    GT_COLOUR,
    STAGE_PICTURES,
    WITHOUT_PICTURE,
    class_colour,
    render_stage,
    save_stage_pictures,
)
from frcnn_core.vocabulary import STAGES

from reference import PHOTO

SAMPLE = str(PHOTO)
HEIGHT, WIDTH = 160, 240
CAT_BOX = torch.tensor([[10.0, 0.0, 212.0, 159.0]])  # the cat's head in the 240x160 resize
CAT_LABEL = 17
TRAINING_STAGES = tuple(stage for stage in STAGE_PICTURES if stage != "detections")
INFERENCE_STAGES = tuple(stage for stage in STAGE_PICTURES if stage not in ("anchor-labels", "roi-samples"))


@dataclasses.dataclass(frozen=True)
class Pass:
    image: torch.Tensor
    training: object
    inference: object
    class_names: list[str]


@pytest.fixture(scope="module")
def forward_pass() -> Pass:
    """One training and one inference trace of the small model (random weights) on a real photo."""
    torch.manual_seed(0)
    # score_thresh 0 keeps detections from an untrained head, whose scores sit near 1/91.
    model = build_model("mobilenet-v3-320-fpn", "none", score_thresh=0.0)
    photo = load_image(SAMPLE).tensor
    image = torch.nn.functional.interpolate(photo[None], size=(HEIGHT, WIDTH), mode="bilinear")[0].clamp(0, 1)
    gt = {"boxes": CAT_BOX, "labels": torch.tensor([CAT_LABEL])}
    with torch.no_grad():
        _, training = model([image], [gt], trace=True)
        _, inference = model([image], trace=True)
    return Pass(image, training[0], inference[0], model.class_names)


def _pixels(picture: Image.Image) -> np.ndarray:
    """The image part of a picture (below the caption band) as (H, W, 3) uint8."""
    return np.asarray(picture)[picture.height - HEIGHT:]


def _plain(image: torch.Tensor) -> np.ndarray:
    return (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _trace_for(forward_pass: Pass, stage: str):
    return forward_pass.training if stage in TRAINING_STAGES else forward_pass.inference


@pytest.mark.parametrize("stage", STAGE_PICTURES)
def test_each_stage_is_the_image_under_a_caption_band_with_something_drawn(forward_pass, stage):
    picture = render_stage(forward_pass.image, _trace_for(forward_pass, stage), stage, forward_pass.class_names)
    band = picture.height - HEIGHT
    assert picture.mode == "RGB" and picture.width == WIDTH and band > 0
    caption = np.asarray(picture)[:band]
    assert (caption == 255).all(axis=2).any(), "the caption band holds white text"
    assert (_pixels(picture) != _plain(forward_pass.image)).any(), "the stage drew something"


def test_gt_boxes_are_drawn_green(forward_pass):
    picture = render_stage(forward_pass.image, forward_pass.training, "anchors", forward_pass.class_names, CAT_BOX)
    x1, _, _, y2 = CAT_BOX[0].int().tolist()
    assert tuple(_pixels(picture)[y2 // 2, x1]) == GT_COLOUR


def _one_box_detections(trace, boxes: list[list[float]], labels: list[int], scores: list[float]):
    """`trace` with its detections replaced by hand-placed ones, all kept."""
    count = len(boxes)
    detections = dataclasses.replace(
        trace.detections,
        candidate_roi_idx=torch.zeros(count, dtype=torch.int64),
        candidate_labels=torch.tensor(labels),
        candidate_scores=torch.tensor(scores),
        candidate_boxes=torch.tensor(boxes),
        keep_idx=torch.arange(count),
    )
    return dataclasses.replace(trace, detections=detections)


def test_detection_outline_has_the_class_colour_and_its_inside_is_untouched(forward_pass):
    trace = _one_box_detections(forward_pass.inference, [[40.0, 60.0, 200.0, 150.0]], [CAT_LABEL], [0.9])
    pixels = _pixels(render_stage(forward_pass.image, trace, "detections", forward_pass.class_names))
    plain = _plain(forward_pass.image)
    assert tuple(pixels[100, 40]) == class_colour(CAT_LABEL)  # left edge
    assert tuple(pixels[150, 120]) == class_colour(CAT_LABEL)  # bottom edge
    assert (pixels[80:140, 60:180] == plain[80:140, 60:180]).all()


def test_detections_below_the_score_threshold_are_not_drawn(forward_pass):
    trace = _one_box_detections(forward_pass.inference, [[40.0, 60.0, 200.0, 150.0]], [CAT_LABEL], [0.3])
    picture = render_stage(forward_pass.image, trace, "detections", forward_pass.class_names, score_thresh=0.5)
    assert (_pixels(picture) == _plain(forward_pass.image)).all()


def test_class_colours_are_distinct_for_neighbouring_labels_and_never_gt_green():
    assert len({class_colour(label) for label in range(1, 11)}) == 10
    assert GT_COLOUR not in {class_colour(label) for label in range(91)}


def test_objectness_heatmap_is_hot_where_the_finest_level_logits_are_high(forward_pass):
    trace = forward_pass.inference
    (rows, cols), shapes = trace.anchors.grid_sizes[0], trace.anchors.shapes_per_cell[0]
    logits = torch.full_like(trace.objectness.logits, -10.0)
    top_right_cell = cols - 1  # (row 0, col cols-1): a transposed or flipped grid would miss it
    logits[top_right_cell * shapes:(top_right_cell + 1) * shapes] = 10.0
    hot = dataclasses.replace(trace, objectness=dataclasses.replace(trace.objectness, logits=logits))
    black = torch.zeros_like(forward_pass.image)  # so the picture is the colour map alone, dimmed
    heat = _pixels(render_stage(black, hot, "objectness", forward_pass.class_names)).astype(int)
    red, blue = heat[..., 0], heat[..., 2]
    assert rows > 1 and cols > 1
    assert (red[:5, -5:] > blue[:5, -5:]).all(), "the top-right cell is hot"
    for corner in (np.s_[:5, :5], np.s_[-5:, -5:], np.s_[-5:, :5]):
        assert (blue[corner] > red[corner]).all(), "the other corners are cold"


@pytest.mark.parametrize("stage", ["anchor-labels", "roi-samples"])
def test_stages_that_need_gt_raise_on_an_inference_trace(forward_pass, stage):
    with pytest.raises(ValueError, match=stage):
        render_stage(forward_pass.image, forward_pass.inference, stage, forward_pass.class_names)


def test_detections_raise_on_a_training_trace(forward_pass):
    with pytest.raises(ValueError, match="detections"):
        render_stage(forward_pass.image, forward_pass.training, "detections", forward_pass.class_names)


def test_unknown_stage_and_wrong_image_size_raise(forward_pass):
    with pytest.raises(ValueError, match="roi-pooling"):
        render_stage(forward_pass.image, forward_pass.inference, "roi-pooling", forward_pass.class_names)
    with pytest.raises(ValueError, match="anchors"):
        render_stage(forward_pass.image[:, :100], forward_pass.inference, "anchors", forward_pass.class_names)


def test_every_inspector_stage_has_a_picture_or_says_why_not(forward_pass):
    assert sorted(STAGE_PICTURES + tuple(WITHOUT_PICTURE)) == sorted(STAGES)
    for stage in WITHOUT_PICTURE:
        with pytest.raises(ValueError, match=f"stage '{stage}' has no picture: "):
            render_stage(forward_pass.image, forward_pass.inference, stage, forward_pass.class_names)


@pytest.mark.parametrize("which, expected", [("training", TRAINING_STAGES), ("inference", INFERENCE_STAGES)])
def test_save_stage_pictures_writes_the_supported_stages(forward_pass, tmp_path, which, expected):
    trace = getattr(forward_pass, which)
    paths = save_stage_pictures(forward_pass.image, trace, tmp_path / "out", forward_pass.class_names, CAT_BOX)
    assert paths == [tmp_path / "out" / f"{stage}.png" for stage in expected]
    for path in paths:
        with Image.open(path) as picture:
            picture.load()
            assert picture.size[0] == WIDTH and picture.size[1] > HEIGHT
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)


def test_save_stage_pictures_rejects_an_unknown_stage_before_writing(forward_pass, tmp_path):
    with pytest.raises(ValueError, match="funnel"):
        save_stage_pictures(forward_pass.image, forward_pass.inference, tmp_path, forward_pass.class_names,
                            stages=("anchors", "funnel"))
    assert list(tmp_path.iterdir()) == []
