"""Checkpoint files: read safely (`weights_only=True`, never full unpickling), write atomically.

Our format is a dict {"format": FORMAT, "model": name, "config": DetectorConfig dict,
"class_names": [...], "state_dict": {...}}; a plain torchvision state_dict (a dict of tensors)
is accepted too, for the torchvision-compatible model names.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from frcnn_core.config import DetectorConfig
from frcnn_core.errors import InputError
from frcnn_core.fileio import write_atomic

FORMAT = "frcnn-studio/1"


@dataclass(frozen=True)
class WeightsFile:
    """A loaded weights file. model_name, config and class_names are None for a plain state_dict."""

    path: str
    state_dict: dict
    model_name: str | None
    config: DetectorConfig | None
    class_names: list[str] | None


def load_weights_file(path: str | os.PathLike) -> WeightsFile:
    """Read a checkpoint or state_dict with `weights_only=True`; InputError for anything else."""
    path = str(path)
    if not Path(path).is_file():
        raise InputError(path, "no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if wanted:
            raise InputError(path, f"refused: the file asks to run {wanted.group(1)} while loading, "
                                   "and checkpoints may hold only tensors and plain data") from error
        raise InputError(path, "not a PyTorch checkpoint (damaged data)") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise InputError(path, f"not a PyTorch checkpoint ({first[:160]})") from error
    if isinstance(data, dict) and data.get("format") == FORMAT:
        try:
            return WeightsFile(path, data["state_dict"], data["model"], DetectorConfig.from_dict(data["config"]),
                               list(data["class_names"]))
        except (KeyError, TypeError) as error:
            raise InputError(path, f"damaged checkpoint: {error.__class__.__name__} {error}") from error
    if isinstance(data, dict) and data and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        return WeightsFile(path, data, None, None, None)
    raise InputError(path, "not a checkpoint: expected a frcnn-studio checkpoint or a state_dict of tensors")


def fetch_state_dict(weights, what: str) -> dict:
    """A torchvision weights enum's state_dict through its own API (the $TORCH_HOME hub cache, or a
    download with a progress bar), always read with `weights_only=True`.

    Offline with no cached file: InputError naming where the file goes.
    """
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except OSError as error:  # URLError is an OSError: offline, or the host refused
        file_name = Path(weights.url).name
        target = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        raise InputError(target, f"{what} weights are not downloaded and cannot be fetched "
                                 f"({error.__class__.__name__}); put {file_name} there") from error
    except pickle.UnpicklingError as error:
        raise InputError(weights.url, f"refused: the cached {what} weights need code to load") from error


def save_checkpoint(path: str | os.PathLike, model_name: str, config: DetectorConfig, class_names: list[str],
                    state_dict: dict, extra: dict | None = None) -> None:
    """Write a checkpoint atomically: a temp file in the same folder, fsync, then rename."""
    target = Path(path)
    payload = {"format": FORMAT, "model": model_name, "config": config.to_dict(), "class_names": list(class_names),
               "state_dict": state_dict, **(extra or {})}
    write_atomic(target, lambda stream: torch.save(payload, stream))
