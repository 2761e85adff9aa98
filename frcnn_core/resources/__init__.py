"""The files the package carries, found through `importlib.resources` wherever it is installed (a
checkout, `pip install .`, a wheel, pipx): the bundled model (`models/`, with its model card) and
the sample images the application opens by default (`samples/`, with their licences).

pip installs a package as plain files, so `files()` is a directory here and these are real paths
that torch and Pillow open directly. Torch-free: the window lists the bundled model before the
engine has imported.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

RESOURCES = Path(files(__name__))  # TypeError at import if a zipimport ever hands back a non-path
MODELS = RESOURCES / "models"
SAMPLES = RESOURCES / "samples"
