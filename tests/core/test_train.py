"""Training: progress records, checkpoints, exact resume, cancellation, the finite-loss guard, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from frcnn_core.data.augment import AugmentConfig
from frcnn_core.data.voc import write_voc_xml
from frcnn_core.errors import InputError
from frcnn_core.modeling.checkpoints import save_checkpoint
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.modeling.zoo import build_model
from frcnn_core.training.recipe import lr_factor
from frcnn_core.training.train import TrainSettings, train

from reference import PHOTO

BOXES = [[(10, 12, 60, 70), (70, 20, 120, 90)], [(30, 30, 90, 80)], [(5, 40, 50, 90), (60, 10, 110, 60)]]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Three 128x96 crops of a real photo, VOC XML beside each image (labelImg's layout)."""
    folder = tmp_path_factory.mktemp("tiny")
    photo = Image.open(PHOTO).convert("RGB")
    for index, boxes in enumerate(BOXES):
        image = photo.crop((index * 40, 0, index * 40 + 256, 192)).resize((128, 96))
        path = folder / f"img{index}.png"
        image.save(path)
        names = ["cat" if i % 2 == 0 else "dog" for i in range(len(boxes))]
        write_voc_xml(folder / f"img{index}.xml", path, 128, 96, torch.tensor(boxes, dtype=torch.float32), names)
    return folder


def settings(data, out, **changes) -> TrainSettings:
    base = TrainSettings(data=str(data), out=str(out), split=None, model="mobilenet-v2", weights="none", iters=6,
                         batch_size=2, lr=0.005, warmup_iters=2, checkpoint_every=3,
                         augment=AugmentConfig(hflip=0.5))
    return TrainSettings(**{**base.__dict__, **changes})


def test_records_checkpoints_and_final_model(tiny_dataset, tmp_path):
    records = list(train(settings(tiny_dataset, tmp_path / "run")))
    events = [r.event for r in records]
    assert events[0] == "started" and events[-1] == "done"
    iterations = [r for r in records if r.event == "iteration"]
    assert [r.iteration for r in iterations] == [1, 2, 3, 4, 5, 6]
    assert set(iterations[0].losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert iterations[0].lr < iterations[1].lr  # warm-up
    assert events.count("checkpoint") == 2  # iterations 3 and 6
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["event"] for entry in log] == events
    model = build_model(str(tmp_path / "run" / "final.pt"))
    assert model.class_names == ["__background__", "cat", "dog"]


def test_resume_continues_exactly(tiny_dataset, tmp_path):
    torch.set_num_threads(1)  # bitwise comparisons need one summation order
    try:
        list(train(settings(tiny_dataset, tmp_path / "straight")))
        stopped = iter(range(100))
        cancelled = list(train(settings(tiny_dataset, tmp_path / "resumed"), cancel=lambda: next(stopped) >= 4))
        assert cancelled[-1].event == "cancelled" and cancelled[-1].iteration == 4
        resumed = list(train(settings(tiny_dataset, tmp_path / "resumed"), resume=True))
        assert [r.iteration for r in resumed if r.event == "iteration"] == [5, 6]
    finally:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    straight = build_model(str(tmp_path / "straight" / "final.pt")).state_dict()
    again = build_model(str(tmp_path / "resumed" / "final.pt")).state_dict()
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tiny_dataset, tmp_path,
                                                                                 monkeypatch):
    forward, calls = FasterRCNN.forward, []

    def poisoned_from_the_fifth_pass(self, *args, **kwargs):  # passes 1-4 train; the 5th loss is NaN
        out = forward(self, *args, **kwargs)
        if self.training and isinstance(out, dict):
            calls.append(1)
            if len(calls) >= 5:
                out = {name: value * float("nan") for name, value in out.items()}
        return out

    monkeypatch.setattr(FasterRCNN, "forward", poisoned_from_the_fifth_pass)
    run = tmp_path / "run"
    records = list(train(settings(tiny_dataset, run, iters=10, warmup_iters=0, checkpoint_every=2)))
    last = records[-1]
    assert last.event == "stopped" and "non-finite loss at iteration 5" in last.message
    assert [r.iteration for r in records if r.event == "checkpoint"] == [2, 4]
    assert not (run / "final.pt").exists()
    monkeypatch.setattr(FasterRCNN, "forward", forward)
    kept = build_model(str(run / "last.pt"))  # the iteration-4 checkpoint, whole and loadable
    assert all(torch.isfinite(p).all() for p in kept.parameters())


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.001)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(0.1 * torch.pi)).item()))
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(70, 100, 0, "step") == pytest.approx(0.1) and lr_factor(90, 100, 0, "step") == pytest.approx(0.01)


@pytest.mark.slow
def test_two_gloo_processes_train_with_ddp(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "frcnn_core.cli.main", "train", "--data", str(tiny_dataset), "--split", "all", "--model",
               "mobilenet-v2", "--weights", "none", "--iters", "3", "--batch-size", "1", "--lr", "0.005",
               "--warmup", "1", "--out", str(out), "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log if e["event"] == "iteration"] == [1, 2, 3]
    build_model(str(out / "final.pt"))


def test_frozen_stages_freeze_the_first_backbone_stages_only():
    from frcnn_core.training.recipe import backbone_stages, freeze_stages

    torch.manual_seed(0)
    model = build_model("mobilenet-v2", "none")
    stages = backbone_stages(model.backbone.body)
    assert len(stages) == 5  # stem + the stages that start at each down-sampling block (strides 4, 8, 16, 32)
    freeze_stages(model, 2)
    frozen = [not p.requires_grad for stage in stages for module in stage for p in module.parameters()]
    first_two = sum(1 for stage in stages[:2] for module in stage for p in module.parameters())
    assert all(frozen[:first_two]) and not any(frozen[first_two:])
    assert all(p.requires_grad for p in model.rpn.parameters())


def test_resuming_from_a_model_checkpoint_without_training_state_is_one_line(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = build_model("mobilenet-v2", "none", class_names=["__background__", "cat", "dog"])
    save_checkpoint(run / "last.pt", "mobilenet-v2", model.config, model.class_names, model.state_dict())
    with pytest.raises(InputError, match="cannot resume: no usable training state") as raised:
        list(train(settings(tiny_dataset, run), resume=True))
    assert str(run / "last.pt") in str(raised.value) and "\n" not in str(raised.value)


def test_grad_clip_holds_an_exploding_step_to_the_norm_asked(tiny_dataset, tmp_path, monkeypatch):
    """Losses scaled a millionfold (an exploding step): with grad_clip the gradients the optimizer
    steps with have a total norm of at most grad_clip; without it, they are far above."""
    forward, real_clip, norms = FasterRCNN.forward, torch.nn.utils.clip_grad_norm_, []

    def exploding(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        return {name: value * 1e6 for name, value in out.items()} if self.training and isinstance(out, dict) else out

    def step_norm(optimizer):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    monkeypatch.setattr(FasterRCNN, "forward", exploding)
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: step_norm(self))  # the norm, no step
    clipped = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: clipped.append(1) or real_clip(*a, **k))
    list(train(settings(tiny_dataset, tmp_path / "clipped", iters=2, warmup_iters=0, grad_clip=35.0)))
    assert len(clipped) == 2 and len(norms) == 2 and all(norm <= 35.0 * 1.0001 for norm in norms)
    norms.clear()
    list(train(settings(tiny_dataset, tmp_path / "free", iters=2, warmup_iters=0)))
    assert len(clipped) == 2 and len(norms) == 2 and all(norm > 1e3 for norm in norms)
