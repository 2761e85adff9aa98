"""What the two worker threads (the engine's, `worker.py`, and the fine-tuning run's,
`frcnn_gui.finetune.training_thread`) share: detections detached before they cross to the UI,
an error's one line for the user, and the threads that outlived their shutdown. No torch import."""
from __future__ import annotations

from PySide6.QtCore import QThread

LINGERING: set[QThread] = set()  # threads that outlived shutdown's wait, kept until they end


def detached_cpu(detections: dict) -> dict:
    """Detections as CPU tensors without grad; float16 (AMP) floats become float32."""
    return {
        key: value.detach().cpu().float() if value.is_floating_point() else value.detach().cpu()
        for key, value in detections.items()
    }


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""
