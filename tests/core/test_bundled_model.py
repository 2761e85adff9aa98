"""The bundled bccd-demo model: it loads offline, it is small, and it finds the cells of a held-out
BCCD sample (a regression test on real data, not a seeded number)."""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

from frcnn_core.data.voc import read_voc_xml
from frcnn_core.io.images import load_image
from frcnn_core.modeling.zoo import BUNDLED, build_model
from frcnn_core.resources import SAMPLES


def test_bccd_demo_is_small_and_finds_most_cells_of_a_val_image():
    assert BUNDLED["bccd-demo"].stat().st_size <= 25 * 2**20
    model = build_model("bccd-demo")
    assert model.class_names[0] == "__background__" and set(model.class_names[1:]) == {"RBC", "WBC", "Platelets"}
    image = load_image(SAMPLES / "BloodImage_00014.jpg")
    truth = read_voc_xml(SAMPLES / "BloodImage_00014.xml")
    found = model([image.tensor])[0]
    keep = found["scores"] >= 0.5
    boxes, labels = found["boxes"][keep], [model.class_names[int(i)] for i in found["labels"][keep]]
    iou = box_iou(truth.boxes, boxes)
    same_class = torch.tensor([[t == p for p in labels] for t in truth.names], dtype=torch.bool).reshape(iou.shape)
    recalled = ((iou >= 0.5) & same_class).any(dim=1)
    assert float(recalled.float().mean()) >= 0.8, f"recall {float(recalled.float().mean()):.2f}"
    for cls in ("WBC", "Platelets"):
        rows = torch.tensor([name == cls for name in truth.names])
        assert bool(recalled[rows].all()), f"missed a {cls}"
