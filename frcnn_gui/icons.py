"""Icons by name: Material Design Icons (the `mdi6` set) drawn by qtawesome from its font."""
from __future__ import annotations

import os

os.environ["QT_API"] = "pyside6"  # qtawesome reaches Qt through qtpy: make it use this program's binding
import qtawesome  # noqa: E402
from PySide6.QtGui import QIcon  # noqa: E402


def icon(name: str) -> QIcon:
    """The icon `name` (e.g. "undo", "folder-open-outline"); needs a QApplication."""
    return qtawesome.icon(f"mdi6.{name}")
