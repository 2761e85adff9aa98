"""A read-only folder (or one whose writes fail): a clear one-line message, the edit stays in
memory, closing asks before losing it, nothing in the folder is half-written or changed."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from frcnn_core.data.voc import write_voc_xml
from frcnn_core.io.atomic import temp_files
from frcnn_gui.document.document import Box, Document
from frcnn_gui.main_window import AUTOSAVE_DELAY_MS

from test_absurd_inputs import TIMEOUT_MS, open_and_detect, status, window  # noqa: F401 (window: a fixture)


@pytest.fixture
def make_read_only(monkeypatch):
    """Make a folder refuse new files and renames into it: chmod 0o555, or for root, whom modes
    do not stop, the kernel's answer (EACCES) from os.open(O_CREAT) and os.replace, the calls
    an atomic write makes. Returns a function that makes it writable again."""
    def refuse(path) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def make(folder: Path):
        if os.geteuid() != 0:
            folder.chmod(0o555)
            return lambda: folder.chmod(0o755)
        real_open, real_replace = os.open, os.replace

        def guarded_open(path, flags, *args, **kwargs):
            if flags & os.O_CREAT and Path(path).parent == folder:
                refuse(path)
            return real_open(path, flags, *args, **kwargs)

        def guarded_replace(source, target, **kwargs):
            if Path(target).parent == folder:
                refuse(source)
            return real_replace(source, target, **kwargs)

        monkeypatch.setattr(os, "open", guarded_open)
        monkeypatch.setattr(os, "replace", guarded_replace)
        return monkeypatch.undo

    return make


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_read_only_folder_keeps_the_edit_in_memory_and_writes_nothing(qtbot, window, tmp_path, make_read_only):  # noqa: F811
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    write_voc_xml(folder / "a.xml", folder / "a.png", 64, 48, [[1, 1, 20, 20]], ["cell"])
    open_and_detect(qtbot, window, folder)
    before = snapshot(folder)
    make_writable = make_read_only(folder)
    try:
        window.canvas.set_selection(list(window.document.boxes))
        qtbot.keyClick(window.canvas, Qt.Key_Right)  # an edit; its autosave will fail
        qtbot.waitUntil(lambda: status(window).startswith("not saved"), timeout=AUTOSAVE_DELAY_MS * 10)
        assert status(window) == f"not saved: {folder / 'a.xml'}: permission denied; the edits are kept in memory"
        assert [box.coords for box in window.document.boxes.values()] == [(2, 1, 21, 20)]
        assert window.document.dirty and window.isWindowModified()

        qtbot.keyClick(window, Qt.Key_D)  # leaving would lose the edit: stay
        assert window.document.current_index == 0
        assert status(window) == "stayed on this image: undo its edits to leave it without saving them"
        assert snapshot(folder) == before and temp_files(folder / "a.xml") == []

        qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # back to what the file holds
        assert not window.document.dirty
        with qtbot.waitSignal(window.detections_shown, timeout=TIMEOUT_MS):
            qtbot.keyClick(window, Qt.Key_D)
        assert window.document.current_index == 1
    finally:
        make_writable()
    assert snapshot(folder) == before


@pytest.mark.parametrize("answer", [QMessageBox.No, QMessageBox.Yes])
def test_closing_with_edits_a_read_only_folder_refuses_asks_first(qtbot, window, tmp_path, make_read_only,  # noqa: F811
                                                                   monkeypatch, answer):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    write_voc_xml(folder / "a.xml", folder / "a.png", 64, 48, [[1, 1, 20, 20]], ["cell"])
    open_and_detect(qtbot, window, folder)
    before = snapshot(folder)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: asked.append(args[1]) or answer)
    make_writable = make_read_only(folder)
    try:
        window.canvas.set_selection(list(window.document.boxes))
        qtbot.keyClick(window.canvas, Qt.Key_Right)
        window.close()
        assert asked == ["Edits not saved"]
        assert window.isVisible() == (answer == QMessageBox.No)
        assert [box.coords for box in window.document.boxes.values()] == [(2, 1, 21, 20)]  # still in memory
    finally:
        make_writable()
    assert snapshot(folder) == before


def test_read_only_folder_fails_a_document_save_cleanly(tmp_path, make_read_only):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    document = Document()
    document.open_folder(tmp_path)
    document.open_image(0)
    document.add_class("cell")
    document.add_box(Box(1, 1, 9, 9, "cell"))
    make_writable = make_read_only(tmp_path)
    try:
        with pytest.raises(PermissionError) as caught:
            document.save()
    finally:
        make_writable()
    assert caught.value.filename in (str(tmp_path / "a.xml"), str(tmp_path / "classes.txt"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png"]
    assert document.dirty and len(document.boxes) == 1
    assert document.save() == tmp_path / "a.xml"  # writable again: the edit is saved



def test_annotation_folder_under_a_file_is_named_in_the_error(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    (tmp_path / "labels").write_text("a file where the annotation folder should be")
    document = Document(annotation_dir=tmp_path / "labels" / "voc")
    document.open_folder(tmp_path)
    document.open_image(0)
    document.add_class("cell")
    document.add_box(Box(1, 1, 9, 9, "cell"))
    with pytest.raises(OSError) as caught:
        document.save()
    assert (caught.value.errno, caught.value.filename) == (errno.ENOTDIR, str(tmp_path / "labels" / "voc"))
    assert document.dirty and (tmp_path / "labels").read_text().startswith("a file")
