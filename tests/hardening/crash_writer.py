"""The writer that test_crash_safety kills: a zygote that forks children which save one file, two
versions in turn, until they are killed.

`python crash_writer.py KIND FOLDER`, KIND "annotation" (the document's autosave of a VOC XML
with 1,000 boxes, FOLDER/image.png + image.xml) or "checkpoint" (save_checkpoint of a real
mobilenet-v2 detector, FOLDER/model.pt). The zygote saves version B, then A, completely, and
prints "ready SECONDS" (how long one save took); then it reads one command per line:

  fork      fork a child that saves B, A, B, A ... until it is killed; prints the child's pid
  reap PID  wait until that child has ended (the parent killed it); prints "reaped"

Forking a prepared process keeps each start to milliseconds (a fresh interpreter needs ~2 s to
import torch), so that hundreds of kills fit in a minute. torch runs single-threaded here: no
OpenMP pool exists that a forked child could inherit half-locked.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import torch

BOX_COUNT = 1_000
IMAGE_SIZE = (640, 480)
CLASSES = ("cell", "platelet")
CHECKPOINT_CLASSES = ["__background__", *CLASSES]


def annotation_versions() -> tuple[list[tuple], list[tuple]]:
    """Versions A and B of the annotation: BOX_COUNT (x1, y1, x2, y2, label) each; B is A moved
    by 3 px, so that any mix of the two is neither."""
    version_a = [((i % 40) * 15.0, (i // 40 % 30) * 15.0, (i % 40) * 15.0 + 12.5, (i // 40 % 30) * 15.0 + 10.0,
                  CLASSES[i % 2]) for i in range(BOX_COUNT)]
    version_b = [(x1 + 3, y1 + 3, x2 + 3, y2 + 3, label) for x1, y1, x2, y2, label in version_a]
    return version_a, version_b


def checkpoint_version_b(state_dict: dict) -> dict:
    """Version B of a checkpoint's weights: every floating tensor of A plus one."""
    return {name: tensor + 1 if tensor.is_floating_point() else tensor.clone() for name, tensor in state_dict.items()}


def _annotation_saver(folder: Path):
    from PIL import Image

    from frcnn_gui.document.document import Box, Document

    Image.new("RGB", IMAGE_SIZE).save(folder / "image.png")
    version_a, version_b = annotation_versions()
    document = Document()
    document.open_folder(folder)
    document.open_image(0)
    for name in CLASSES:
        document.add_class(name)
    box_ids = [document.add_box(Box(*coords)) for coords in version_a]
    document.save()

    def save(version: list[tuple]) -> None:
        with document.batch():
            for box_id, coords in zip(box_ids, version, strict=True):
                document.replace_box(box_id, Box(*coords))
        document.save()

    return save, (version_b, version_a)


def _checkpoint_saver(folder: Path):
    from frcnn_core.modeling.checkpoints import save_checkpoint
    from frcnn_core.modeling.zoo import build_model

    torch.manual_seed(0)
    model = build_model("mobilenet-v2", "none", class_names=CHECKPOINT_CLASSES)
    version_a = model.state_dict()
    version_b = checkpoint_version_b(version_a)

    def save(state_dict: dict) -> None:
        save_checkpoint(folder / "model.pt", model.model_name, model.config, model.class_names, state_dict)

    return save, (version_b, version_a)


def _serve(save, versions) -> None:
    start = time.perf_counter()
    for version in versions:  # B, then A: two saves that write, the file ends as A
        save(version)
    print(f"ready {(time.perf_counter() - start) / len(versions):.4f}", flush=True)
    for line in sys.stdin:
        command, *argument = line.split()
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                try:
                    for version in itertools.cycle(versions):
                        save(version)
                finally:  # a failed save must not fall through into the zygote's loop
                    os._exit(1)
            print(pid, flush=True)
        elif command == "reap":
            os.waitpid(int(argument[0]), 0)
            print("reaped", flush=True)


def main(kind: str, folder: str) -> None:
    torch.set_num_threads(1)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    make_saver = {"annotation": _annotation_saver, "checkpoint": _checkpoint_saver}[kind]
    _serve(*make_saver(folder))


if __name__ == "__main__":
    main(*sys.argv[1:])
