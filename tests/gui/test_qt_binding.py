"""Guards against a Qt binding that corrupts Python's reference count of None.

PySide6 6.12.0 drops one reference to None on every call of a method that returns nothing; a
long session then aborts with "Fatal Python error: none_dealloc". pyproject.toml excludes it;
this test keeps any future release with the same bug out."""
import sys

from PySide6.QtGui import QColor, QImage, QPainter, QPen


def test_void_qt_calls_keep_the_reference_count_of_none(qapp):
    image = QImage(16, 16, QImage.Format_RGB32)
    painter = QPainter(image)
    pen = QPen(QColor("red"))
    before = sys.getrefcount(None)
    for _ in range(1000):
        painter.setPen(pen)
    after = sys.getrefcount(None)
    painter.end()
    assert abs(after - before) < 100
