"""Where the model runs: the one place a device name becomes a torch.device.

"auto" is CUDA when a CUDA device is usable, else the CPU. The CLI, training and the
application's engine thread all resolve through `resolve_device`; `DEVICES` is what the pickers
offer (importing this module imports no torch). Asking for CUDA on a machine without it is the
user's error (one line, `InputError`), never a traceback from deep inside `.to()`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from frcnn_core.errors import InputError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str) -> torch.device:
    """The torch.device for "auto", "cpu", "cuda" or "cuda:N"; InputError for an unknown name or
    a CUDA device this machine does not have."""
    import torch  # here: the window lists DEVICES before the engine has imported torch

    name = str(choice)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(None, f"device {name}: CUDA is not available on this machine; use cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(None, f"device {name}: this machine has {torch.cuda.device_count()} CUDA devices")
        return device
    raise InputError(None, f"device {name}: unknown device; choose one of {', '.join(DEVICES)}")
