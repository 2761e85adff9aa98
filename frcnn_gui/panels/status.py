"""The status bar's permanent part: what the engine is doing (stage and a busy bar), the model,
the device and the last detection time. The message area on the left is left to problems and
notices, so that a progress step never hides a problem the user has not read yet."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar


def model_title(model: str) -> str:
    """A model name as the UI shows it: a zoo model by its name, a checkpoint by its file name, or
    by its run folder and file name for a run's last.pt / final.pt (every run has those)."""
    if "/" not in model and "\\" not in model:
        return model
    path = Path(model)
    return f"{path.parent.name}/{path.name}" if path.name in ("last.pt", "final.pt") else path.name


class StatusPanel:
    """Adds its widgets to `bar`; the window tells it what the engine is doing."""

    def __init__(self, bar: QStatusBar):
        self.stage_label, self.model_label, self.device_label, self.timing_label = (QLabel() for _ in range(4))
        self.progress = QProgressBar(maximumWidth=120, maximumHeight=14, maximum=0, visible=False, textVisible=False)
        for widget in (self.stage_label, self.progress, self.model_label, self.device_label, self.timing_label):
            widget.setContentsMargins(6, 0, 6, 0)
            bar.addPermanentWidget(widget)

    def show_loading(self, model: str) -> None:
        """A model load was asked for: "loading model…" until the engine reports its own stages
        (at start-up the engine may still be importing torch)."""
        self.model_label.setText(f"model: {model_title(model)} (loading…)")
        self.model_label.setToolTip(model)
        self.show_stage("loading model")

    def show_model(self, model: str, loaded) -> None:
        """`loaded`: the engine's ModelLoaded for `model`, or None when no model could be loaded."""
        if loaded is None:
            self.model_label.setText("model: none loaded")
            self.device_label.setText("")
            return
        title = model_title(model)
        architecture = "" if loaded.model_name == title else f" ({loaded.model_name})"
        self.model_label.setText(f"model: {title}{architecture}")
        self.model_label.setToolTip(f"{model}\n{len(loaded.class_names) - 1} classes")
        self.device_label.setText(f"device: {loaded.device}")

    def show_timing(self, seconds: float) -> None:
        self.timing_label.setText(f"last: {seconds * 1000:.0f} ms")

    def show_stage(self, stage: str) -> None:
        self.stage_label.setText(f"{stage}…")

    def set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        if not busy:
            self.stage_label.setText("")
