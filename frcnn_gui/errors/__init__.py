"""The Errors view: where the current model fails across the open folder (TIDE's error types and
the stage that lost each box, `frcnn_core.analysis.errors`): the table of images (`rows.py`,
Qt-free), the dock (`panel.py`), what the canvas draws and the texts (`drawing.py`), and the
controller that keeps them in step with the engine and the document (`controller.py`)."""
