"""The layers hold at run time: importing the whole engine, or the annotation document with
everything it imports, loads no Qt binding (STYLE.md: the core never imports Qt; the document is
Qt-free). Each check runs in a fresh interpreter, so that nothing this test process imported counts."""
from __future__ import annotations

import json
import subprocess
import sys

QT_BINDINGS = ("PySide6", "PyQt5", "PyQt6", "qtpy", "shiboken6", "pyqtgraph", "qtawesome")

WALK = """
import importlib, json, pkgutil, sys
import frcnn_core
roots = sys.argv[1:]
walked = []
for root in roots:
    module = importlib.import_module(root)
    walked.append(root)
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, root + "."):
            if info.name.endswith("__main__"):
                continue
            importlib.import_module(info.name)
            walked.append(info.name)
print(json.dumps({"walked": walked, "loaded": sorted(sys.modules)}))
"""


def imported_by(*roots: str) -> tuple[list[str], list[str]]:
    """(modules walked, every module then loaded) for importing `roots` and their submodules."""
    result = subprocess.run([sys.executable, "-c", WALK, *roots], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.splitlines()[-1])
    return found["walked"], found["loaded"]


def qt_modules(loaded: list[str]) -> list[str]:
    return [name for name in loaded if name.split(".")[0] in QT_BINDINGS]


def test_the_whole_engine_imports_no_qt():
    walked, loaded = imported_by("frcnn_core")
    assert len(walked) > 30 and "frcnn_core.data.voc" in walked  # the walk reached every subpackage
    assert not qt_modules(loaded)


def test_the_annotation_document_and_what_it_imports_load_no_qt():
    walked, loaded = imported_by("frcnn_gui.document")
    assert {"frcnn_gui.document.document", "frcnn_gui.document.annotation_file"} <= set(walked)
    assert not qt_modules(loaded), qt_modules(loaded)[:5]
