"""Issue 3's key check: our COCO numbers equal pycocotools run directly on `frcnn detect --json`.

The ground truth here is built from the VOC XML files by this test alone (with xml.etree), not by
evaluate.py or the dataset readers; only the convention is shared: difficult objects are crowd
regions (iscrowd 1), which is how pycocotools ignores a box.
"""
from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from frcnn_core.analysis import evaluate
from frcnn_core.cli import main as cli
from frcnn_core.data.formats import open_dataset
from frcnn_core.modeling.zoo import COCO_CLASS_NAMES, build_model

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
MODEL = "mobilenet-v3-320-fpn"
# hand boxes on the 160-px photos: (name, x1, y1, x2, y2, difficult)
HAND_BOXES = {
    "astronaut.png": [("person", 20, 5, 140, 160, False), ("flag", 0, 0, 30, 40, False)],
    "chelsea.png": [("cat", 10, 10, 150, 105, False)],
    "coffee.png": [("cup", 20, 10, 140, 100, False), ("spoon", 5, 60, 40, 100, True)],
    "rocket.jpg": [("airplane", 60, 10, 100, 100, False)],
}


def resized_photos(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for name in HAND_BOXES:
        with Image.open(SAMPLES / name) as photo:
            photo = photo.convert("RGB")
            photo.thumbnail((160, 160))
            path = folder / (Path(name).stem + ".png")
            photo.save(path)
        paths.append(path)
    return paths


def write_xml(path: Path, image: Path, objects: list[tuple]) -> None:
    width, height = Image.open(image).size
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "filename").text = image.name
    size = ElementTree.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, tag).text = str(value)
    for name, x1, y1, x2, y2, difficult in objects:
        obj = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(obj, "name").text = name
        ElementTree.SubElement(obj, "difficult").text = "1" if difficult else "0"
        bndbox = ElementTree.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), (x1, y1, x2, y2), strict=True):
            ElementTree.SubElement(bndbox, tag).text = str(value)
    ElementTree.ElementTree(root).write(path)


def objects_near_detections(entry: dict, count: int) -> list[tuple]:
    """GT that some random detections will hit (integer corners, so float32 and float64 agree):
    without it a random model scores 0 everywhere and the comparison would prove little."""
    chosen = [d for d in entry["detections"] if d["label_name"] != "N/A"][:count]
    objects = []
    for detection in chosen:
        x1, y1, x2, y2 = (round(v) for v in detection["box"])
        if x1 < x2 and y1 < y2:
            objects.append((detection["label_name"], x1, y1, x2, y2, False))
    return objects


@pytest.fixture(scope="module")
def voc_and_detections(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cli")
    images = resized_photos(root / "voc" / "JPEGImages")
    detect_json = root / "detect.json"
    argv = ["detect", *map(str, images), "--model", MODEL, "--weights", "none", "--score-thresh", "0",
            "--json", str(detect_json)]
    assert cli.main(argv) == 0
    detected = json.loads(detect_json.read_text())
    (root / "voc" / "Annotations").mkdir()
    for image, entry, hand in zip(images, detected["images"], HAND_BOXES.values(), strict=True):
        write_xml(root / "voc" / "Annotations" / f"{image.stem}.xml", image, hand + objects_near_detections(entry, 6))
    (root / "voc" / "ImageSets" / "Main").mkdir(parents=True)
    (root / "voc" / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{p.stem}\n" for p in images))
    return root / "voc", detected


def independent_ground_truth(voc: Path, detected: dict) -> tuple[dict, dict[str, int]]:
    """COCO GT from the XML files; image id = position in the detect JSON; category ids by name."""
    images, annotations, category_ids = [], [], {}
    for image_id, entry in enumerate(detected["images"]):
        root = ElementTree.parse(voc / "Annotations" / f"{Path(entry['path']).stem}.xml").getroot()
        images.append({"id": image_id, "width": int(root.findtext("size/width")),
                       "height": int(root.findtext("size/height"))})
        for obj in root.iter("object"):
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{tag}")) for tag in ("xmin", "ymin", "xmax", "ymax"))
            category = category_ids.setdefault(obj.findtext("name"), len(category_ids) + 1)
            crowd = int(obj.findtext("difficult") == "1")
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd})
    categories = [{"id": i, "name": name} for name, i in category_ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}, category_ids


def pycocotools_on_detect_json(voc: Path, detected: dict) -> dict:
    gt, category_ids = independent_ground_truth(voc, detected)
    results = [
        {"image_id": image_id, "category_id": category_ids[d["label_name"]], "score": d["score"],
         "bbox": [d["box"][0], d["box"][1], d["box"][2] - d["box"][0], d["box"][3] - d["box"][1]]}
        for image_id, entry in enumerate(detected["images"]) for d in entry["detections"]
        if d["label_name"] in category_ids
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    names = {i: name for name, i in category_ids.items()}
    per_class = {}
    for position, category in enumerate(coco_eval.params.catIds):
        curve = coco_eval.eval["precision"][0, :, position, 0, -1]
        if (curve > -1).any():
            per_class[names[category]] = float(curve[curve > -1].mean())
    ap, ap50, ap75 = coco_eval.stats[:3]
    return {"AP": ap, "AP50": ap50, "AP75": ap75, "per_class_AP50": per_class}


def assert_same_metrics(ours: dict, reference: dict) -> None:
    for key in ("AP", "AP50", "AP75"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12, rel=0), key
    assert ours["per_class_AP50"].keys() == reference["per_class_AP50"].keys()
    for name, value in reference["per_class_AP50"].items():
        assert ours["per_class_AP50"][name] == pytest.approx(value, abs=1e-12, rel=0), name


def test_the_case_is_not_trivial(voc_and_detections):
    reference = pycocotools_on_detect_json(*voc_and_detections)
    assert 0 < reference["AP50"] < 1 and len(reference["per_class_AP50"]) >= 5
    assert 0 in reference["per_class_AP50"].values()  # hand boxes the random model never finds


def test_coco_metrics_on_detect_json_equal_pycocotools(voc_and_detections):
    voc, detected = voc_and_detections
    dataset = open_dataset(voc)
    image_ids = {Path(s.image_path).resolve(): i for i, s in enumerate(dataset.samples)}
    records = [
        {"image_id": image_ids[Path(entry["path"]).resolve()],
         "boxes": torch.tensor([d["box"] for d in entry["detections"]], dtype=torch.float32).reshape(-1, 4),
         "scores": torch.tensor([d["score"] for d in entry["detections"]], dtype=torch.float32),
         "labels": torch.tensor([d["label"] for d in entry["detections"]], dtype=torch.int64)}
        for entry in detected["images"]
    ]
    records = evaluate.relabel(records, COCO_CLASS_NAMES, dataset.class_names)
    ours = evaluate.coco_metrics(evaluate.coco_ground_truth(dataset), evaluate.coco_detections(records),
                                 dataset.class_names)
    assert_same_metrics(ours, pycocotools_on_detect_json(voc, detected))


def test_evaluate_json_equals_pycocotools_on_detect_json(voc_and_detections):
    voc, detected = voc_and_detections
    torch.manual_seed(0)  # as `frcnn detect --weights none` does: the same random model
    model = build_model(MODEL, "none", score_thresh=0.0)
    payload = evaluate.evaluate(model, open_dataset(voc), with_losses=False).to_json()
    assert_same_metrics(payload, pycocotools_on_detect_json(voc, detected))
    assert payload["images"] == len(detected["images"]) and np.isfinite(payload["voc07_mAP"])


def test_frcnn_eval_json_equals_pycocotools_on_detect_json(voc_and_detections, tmp_path, capsys):
    voc, detected = voc_and_detections
    out, plots = tmp_path / "eval.json", tmp_path / "plots"
    code = cli.main(["eval", "--model", MODEL, "--weights", "none", "--data", str(voc), "--split", "trainval",
                 "--json", str(out), "--plots", str(plots)])
    assert code == 0
    payload = json.loads(out.read_text())
    assert_same_metrics(payload, pycocotools_on_detect_json(voc, detected))
    assert set(payload) >= {"AP", "AP50", "AP75", "per_class_AP50", "voc07_mAP", "images"}
    assert "mean_losses" in payload  # per-image validation losses, averaged
    assert (plots / "confusion_matrix.png").is_file() and list(plots.glob("pr_*.png"))
    assert "VOC07 mAP" in capsys.readouterr().out
