"""Shared test data: a one-image dataset of 200 random float boxes, for exact round trips; a tiny
labelImg folder (128x96 crops of a real photo, VOC XML beside them) for fine-tuning runs; a few
raccoon photos with their labelImg XML (the shared raccoon data set) for runs on classes the
bundled blood-cell model does not know; `photo_folder`: crops with boxes of a chosen size, flat or
as a VOC folder with a val split, for the time-budget planner."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from PIL import Image

from frcnn_core.data.samples import DetectionDataset, Sample
from frcnn_core.data.voc import write_voc_xml

from reference import PHOTO

RACCOON = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raccoon"


def random_boxes_dataset(folder) -> DetectionDataset:
    """A 640x480 black image in `folder` with 200 seeded random boxes of 3 classes (not sorted)."""
    Image.new("RGB", (640, 480)).save(folder / "a.png")
    corners = torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) * 400
    sizes = torch.rand(200, 2, generator=torch.Generator().manual_seed(2)) * 70 + 0.01
    boxes = torch.cat([corners, corners + sizes], dim=1)
    labels = torch.randint(1, 4, (200,), generator=torch.Generator().manual_seed(3))
    return DetectionDataset([Sample(str(folder / "a.png"), boxes, labels, 640, 480)], ["__background__", "c", "b", "a"])


# image boxes, two classes alternating: every class keeps train boxes whichever image validates
TINY_BOXES = [[(10, 12, 60, 70), (70, 20, 120, 90)], [(30, 30, 90, 80)], [(5, 40, 50, 90), (60, 10, 110, 60)],
              [(20, 10, 80, 60), (90, 30, 120, 80)]]


def write_tiny_dataset(folder: Path, boxes_per_image=TINY_BOXES) -> Path:
    """128x96 crops of a real photo with VOC XML beside each (labelImg's layout); classes cat, dog."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(PHOTO).convert("RGB")
    for index, boxes in enumerate(boxes_per_image):
        path = folder / f"img{index}.png"
        photo.crop((index * 40, 0, index * 40 + 256, 192)).resize((128, 96)).save(path)
        names = ["cat" if i % 2 == 0 else "dog" for i in range(len(boxes))]
        boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        write_voc_xml(folder / f"img{index}.xml", path, 128, 96, boxes, names)
    return folder


def copy_raccoons(folder: Path, annotated: tuple[int, ...] = (2, 3, 4, 5), unannotated: tuple[int, ...] = ()) -> Path:
    """raccoon-<n>.jpg with raccoon-<n>.xml for each n in `annotated`, and the photo alone for each
    n in `unannotated` (an image nobody annotated yet): a labelImg folder of one class, raccoon."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in annotated + unannotated:
        shutil.copyfile(RACCOON / f"raccoon-{number}.jpg", folder / f"raccoon-{number}.jpg")
    for number in annotated:
        shutil.copyfile(RACCOON / f"raccoon-{number}.xml", folder / f"raccoon-{number}.xml")
    return folder


def photo_folder(folder, count: int, box_side: int, size=(160, 120), voc_val: int = 0):
    """`count` crops of a real photo with two boxes of about `box_side` px each (labelImg layout);
    with voc_val > 0 a VOC folder whose last voc_val images are the "val" split."""
    photo = Image.open(PHOTO).convert("RGB")
    voc = voc_val > 0
    images = folder / "JPEGImages" if voc else folder
    notes = folder / "Annotations" if voc else folder
    images.mkdir(parents=True, exist_ok=True)
    notes.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        name = f"img{index:02d}"
        photo.crop((index * 7, index * 3, index * 7 + 320, index * 3 + 240)).resize(size).save(images / f"{name}.jpg")
        x, y = 5 + index % 5, 4 + index % 3
        boxes = torch.tensor([[x, y, x + box_side, y + box_side],
                              [x + box_side + 2, y + 2, x + 2 * box_side, y + box_side]], dtype=torch.float32)
        write_voc_xml(notes / f"{name}.xml", images / f"{name}.jpg", *size, boxes, ["cat", "dog"])
        names.append(name)
    if voc:
        split = folder / "ImageSets" / "Main"
        split.mkdir(parents=True)
        (split / "train.txt").write_text("\n".join(names[:-voc_val]) + "\n")
        (split / "val.txt").write_text("\n".join(names[-voc_val:]) + "\n")
    return folder
