"""Test-wide setup: Qt offscreen, and torchvision's weights cache seeded from ../shared/weights."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("TORCH_HOME", str(ROOT / ".torch"))


def _seed_torch_home() -> None:
    checkpoints = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    for weights in sorted((SHARED / "weights").glob("*.pth")) if (SHARED / "weights").is_dir() else []:
        if not (checkpoints / weights.name).exists():
            shutil.copyfile(weights, checkpoints / weights.name)


_seed_torch_home()

import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # shared test helpers (reference.py)
