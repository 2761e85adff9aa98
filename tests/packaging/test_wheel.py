"""The project installs like a real package: a wheel built from the checkout holds every module and
the bundled model and samples, and installed into a fresh environment, away from the checkout,
its `frcnn` and `frcnn-gui` commands work with the bundled model and samples.

The fresh environment has no pip and no third-party packages of its own: the wheel goes in with
this venv's pip (`pip --python`), then a .pth line adds this venv's site-packages *after* it, for
torch, Qt and the rest. A .pth line only appends a directory, so this venv's own .pth files (the
editable install's finder) never run there: the checkout cannot be imported, and each test
checks that the modules came from the installed copy.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("frcnn_core", "frcnn_gui")
BUNDLED_DIRS = ("frcnn_core/resources/models", "frcnn_core/resources/samples")
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", ".torch",
                                    "runs", "out", ".pytest_cache", ".hypothesis")
WINDOW_SIZE = (1400, 900)  # frcnn_gui.app.SCREENSHOT_SIZE
TIMEOUT_S = 300


def expected_files() -> set[str]:
    """What the wheel must hold: every module of both packages and every bundled file."""
    modules = {path for package in PACKAGES for path in _relative(ROOT / package, "*.py")}
    bundled = {path for folder in BUNDLED_DIRS for path in _relative(ROOT / folder, "*")}
    return modules | bundled


def _relative(folder: Path, pattern: str) -> set[str]:
    return {path.relative_to(ROOT).as_posix() for path in folder.rglob(pattern)
            if path.is_file() and "__pycache__" not in path.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built, offline, from a copy of the checkout's sources (no stale build/ folder)."""
    scratch = tmp_path_factory.mktemp("wheel")
    source = scratch / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "-w", str(scratch / "dist"), str(source)], cwd=scratch)
    [built] = (scratch / "dist").glob("frcnn_studio-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed and this venv's third-party packages after it; its bin/."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    # away from the checkout: with PYTHONPATH on it, pip would find the project "already installed"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
         str(wheel)], env=away_from_the_checkout())
    site_packages = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "project-venv.pth").write_text("".join(f"{path}\n" for path in ours))
    return venv / "bin"


def run(command: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    """Run `command`; its stdout, or a failure showing its stderr."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{command[0]} {command[1:3]} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


def away_from_the_checkout() -> dict:
    """An environment in which nothing points at the checkout."""
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "QT_QPA_PLATFORM": "offscreen"}


def test_the_wheel_holds_every_module_and_the_bundled_model_and_samples(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()

    expected = expected_files()
    assert {"frcnn_core/data/voc.py", "frcnn_gui/canvas/__init__.py", "frcnn_gui/finetune/__init__.py",
            "frcnn_core/resources/models/bccd-demo.pt", "frcnn_core/resources/samples/BloodImage_00002.jpg"} <= expected
    assert sorted(expected - names) == []
    assert not any(name.startswith("tests/") for name in names)
    assert "frcnn = frcnn_core.cli.main:main" in scripts and "frcnn-gui = frcnn_gui.app:main" in scripts


@pytest.mark.slow
def test_the_installed_commands_work_away_from_the_checkout(installed, tmp_path):
    env = away_from_the_checkout()
    venv = installed.parent
    where = run([str(installed / "python"), "-c", "import frcnn_core, frcnn_gui, frcnn_core.resources as r; "
                 "print(frcnn_core.__file__, frcnn_gui.__file__, r.SAMPLES)"], cwd=tmp_path, env=env).split()
    assert all(Path(path).is_relative_to(venv) for path in where), where
    image = tmp_path / "cells.jpg"
    shutil.copyfile(Path(where[2]) / "BloodImage_00002.jpg", image)

    run([str(installed / "frcnn"), "detect", str(image), "--device", "cpu", "--json", "out.json"],
        cwd=tmp_path, env=env)
    found = json.loads((tmp_path / "out.json").read_text())
    names = [detection["label_name"] for detection in found["images"][0]["detections"]]
    assert names.count("RBC") >= 5 and set(names) <= {"RBC", "WBC", "Platelets"}, names  # the bundled bccd-demo

    run([str(installed / "frcnn-gui"), "--device", "cpu", "--screenshot", "window.png"], cwd=tmp_path, env=env)
    with Image.open(tmp_path / "window.png") as picture:  # the bundled samples, opened by default
        assert picture.size == WINDOW_SIZE
        assert len(picture.convert("RGB").getcolors(maxcolors=1 << 20)) > 1000  # a photo, not a blank window
