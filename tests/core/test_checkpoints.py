"""Tests for frcnn_core.modeling.checkpoints: safe loading (never unpickling code) and atomic saving."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from frcnn_core.errors import InputError
from frcnn_core.modeling import checkpoints
from frcnn_core.modeling.checkpoints import load_weights_file, save_checkpoint
from frcnn_core.modeling.config import AnchorConfig, make_config

CONFIG = make_config("seed", AnchorConfig(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)))


def _state_dict() -> dict[str, torch.Tensor]:
    return {"rpn.head.conv.0.0.weight": torch.arange(6.0).reshape(2, 3), "roi_heads.bias": torch.tensor([1, 2])}


class _CreatesFile:
    """Unpickling this object calls open(marker, "w"), i.e. creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _assert_one_line_naming(error: InputError, path: Path) -> None:
    assert "\n" not in str(error)
    assert str(error).startswith(f"{path}: ")
    assert error.path == str(path)


def test_save_then_load_round_trip(tmp_path):
    path = tmp_path / "runs" / "model.pt"

    save_checkpoint(path, "paper-vgg16", CONFIG, ["cell", "platelet"], _state_dict())
    loaded = load_weights_file(path)

    assert loaded.path == str(path)
    assert loaded.model_name == "paper-vgg16"
    assert loaded.config == CONFIG
    assert loaded.class_names == ["cell", "platelet"]
    assert loaded.state_dict.keys() == _state_dict().keys()
    for name, tensor in _state_dict().items():
        assert torch.equal(loaded.state_dict[name], tensor)


def test_plain_torchvision_state_dict_loads(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(_state_dict(), path)

    loaded = load_weights_file(path)

    assert loaded.model_name is None and loaded.config is None and loaded.class_names is None
    assert torch.equal(loaded.state_dict["roi_heads.bias"], torch.tensor([1, 2]))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": _CreatesFile(marker)}, path)

    with pytest.raises(InputError, match="refused") as raised:
        load_weights_file(path)

    assert not marker.exists()
    _assert_one_line_naming(raised.value, path)


def test_refusal_names_what_the_file_asked_to_run(tmp_path):
    # torch's error ends with a generic documentation line; the user needs the offending global
    path = tmp_path / "evil.pt"
    torch.save({"payload": _CreatesFile(tmp_path / "marker")}, path)

    with pytest.raises(InputError) as raised:
        load_weights_file(path)

    assert "open" in raised.value.problem
    assert not (tmp_path / "marker").exists()


def test_the_payload_is_real_when_unpickled_unsafely(tmp_path):
    # control for the tests above: full unpickling does run the payload
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"payload": _CreatesFile(marker)}, path)

    torch.load(path, weights_only=False)

    assert marker.exists()


def _noise_file(tmp_path: Path) -> Path:
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(256)))
    return path


def test_random_bytes_raise_a_one_line_input_error(tmp_path):
    path = _noise_file(tmp_path)

    with pytest.raises(InputError) as raised:
        load_weights_file(path)

    _assert_one_line_naming(raised.value, path)


def test_random_bytes_are_not_reported_as_code_to_run(tmp_path):
    # noise is damaged input, not a file that asked to run code
    path = _noise_file(tmp_path)

    with pytest.raises(InputError) as raised:
        load_weights_file(path)

    assert "refused" not in raised.value.problem
    assert "run code" not in raised.value.problem


def test_empty_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")

    with pytest.raises(InputError, match="not a PyTorch checkpoint") as raised:
        load_weights_file(path)

    _assert_one_line_naming(raised.value, path)


def test_missing_file_and_wrong_content(tmp_path):
    with pytest.raises(InputError, match="no such checkpoint file"):
        load_weights_file(tmp_path / "absent.pt")
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(InputError, match="not a checkpoint") as raised:
        load_weights_file(path)
    _assert_one_line_naming(raised.value, path)


def test_damaged_checkpoint_dict(tmp_path):
    path = tmp_path / "damaged.pt"
    torch.save({"format": checkpoints.FORMAT, "model": "paper-vgg16"}, path)

    with pytest.raises(InputError, match="damaged checkpoint") as raised:
        load_weights_file(path)

    _assert_one_line_naming(raised.value, path)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(path, "paper-vgg16", CONFIG, ["cell"], _state_dict())
    before = path.read_bytes()

    def failing_save(obj, stream, *args, **kwargs):
        stream.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, "paper-vgg16", CONFIG, ["other"], {"x": torch.ones(3)})

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    monkeypatch.undo()
    assert load_weights_file(path).class_names == ["cell"]
