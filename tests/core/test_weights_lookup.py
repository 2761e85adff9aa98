"""torchvision's weights are found however the program starts: its own cache ($TORCH_HOME) first,
then the checkout's seeded folder (`make weights`); a file found nowhere, with no network, is one
line naming the file and the folder to put it in."""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest
import torch
from torchvision.models import MobileNet_V2_Weights

from frcnn_core.errors import InputError
from frcnn_core.modeling import checkpoints
from frcnn_core.modeling.zoo import build_model

WEIGHTS = MobileNet_V2_Weights.IMAGENET1K_V1  # the ImageNet base of the mobilenet-v2 model
FILE_NAME = Path(WEIGHTS.url).name
SEEDED_FILE = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / FILE_NAME  # tests/conftest.py seeds it


@pytest.fixture
def offline(monkeypatch):
    """No download can happen: one would fail the way an offline machine fails."""
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    """$TORCH_HOME pointing to an empty folder, as for a user who never ran `make run`."""
    home = tmp_path / "torch-home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.mark.skipif(not SEEDED_FILE.is_file(), reason=f"needs {FILE_NAME} (../shared/weights, `make weights`)")
def test_the_seeded_folder_is_used_when_torchvisions_cache_is_empty(tmp_path, monkeypatch, offline, empty_torch_home):
    seeded = tmp_path / "checkout" / ".torch" / "hub" / "checkpoints"
    seeded.mkdir(parents=True)
    (seeded / FILE_NAME).symlink_to(SEEDED_FILE)
    monkeypatch.setattr(checkpoints, "SEEDED_CHECKPOINTS", seeded)

    assert checkpoints.cached_weights(WEIGHTS.url) == seeded / FILE_NAME
    model = build_model("mobilenet-v2", "imagenet")

    expected = torch.load(SEEDED_FILE, map_location="cpu", weights_only=True)["features.0.0.weight"]
    assert torch.equal(model.backbone.body["0"][0].weight, expected)
    assert not any(empty_torch_home.rglob("*.pth"))  # nothing was copied or downloaded


def test_torchvisions_cache_comes_before_the_seeded_folder(tmp_path, monkeypatch, empty_torch_home):
    seeded = tmp_path / "seeded"
    for folder in (seeded, empty_torch_home / "hub" / "checkpoints"):
        folder.mkdir(parents=True)
        (folder / FILE_NAME).write_bytes(b"stand-in")
    monkeypatch.setattr(checkpoints, "SEEDED_CHECKPOINTS", seeded)
    assert checkpoints.cached_weights(WEIGHTS.url) == empty_torch_home / "hub" / "checkpoints" / FILE_NAME


def test_weights_found_nowhere_are_one_line_naming_the_file_and_the_folder(tmp_path, monkeypatch, offline,
                                                                            empty_torch_home):
    monkeypatch.setattr(checkpoints, "SEEDED_CHECKPOINTS", tmp_path / "no-checkout" / "checkpoints")
    with pytest.raises(InputError) as error:
        build_model("mobilenet-v2", "imagenet")
    message = str(error.value)
    folder = empty_torch_home / "hub" / "checkpoints"
    assert message.endswith(f"put {FILE_NAME} in {folder}") and "\n" not in message
    assert message.startswith("ImageNet mobilenet_v2 weights mobilenet_v2-b0353104.pth are not downloaded")
