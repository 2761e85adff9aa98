"""Checkpoint files: read safely (`weights_only=True`, never full unpickling), write atomically.

Our format is a dict {"format": FORMAT, "model": name, "config": DetectorConfig dict,
"class_names": [...], "state_dict": {...}}; a plain torchvision state_dict (a dict of tensors)
is accepted too, for the torchvision-compatible model names.

torchvision's pretrained weights (COCO detectors, ImageNet backbones) are looked up in torchvision's
own cache, then in the checkout's seeded folder, so that `frcnn-gui`, `frcnn`, `make run` and an
installed wheel all find them; only a file found nowhere is downloaded.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from frcnn_core.errors import InputError
from frcnn_core.io.atomic import write_atomic
from frcnn_core.modeling.config import DetectorConfig

FORMAT = "frcnn-studio/1"
# the checkout's copy of the weights that `make weights` fills (its $TORCH_HOME): found however the program starts
SEEDED_CHECKPOINTS = Path(__file__).resolve().parents[1] / ".torch" / "hub" / "checkpoints"


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
        with warnings.catch_warnings():
            # damaged data makes torch warn of an odd pickle protocol: two lines of noise before ours
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch words it "Unsupported global: GLOBAL builtins.open ..." or "... unsupported GLOBAL
        # posix.system whose module posix is blocked", depending on the global
        wanted = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(error), re.IGNORECASE)
        if wanted:
            raise InputError(path, f"refused: the file asks to run {wanted.group(1)} while loading, "
                                   "and checkpoints may hold only tensors and plain data") from error
        raise InputError(path, "not a PyTorch checkpoint (damaged data)") from error
    except Exception as error:  # damaged data: torch's zip reader and pure-Python unpickler fail with
        # RuntimeError, EOFError, IndexError, KeyError, struct.error, ... depending on the damage
        first = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise InputError(path, f"not a PyTorch checkpoint ({first[:160]})") from error
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return _checkpoint(path, data)
    if _is_state_dict(data):
        return WeightsFile(path, data, None, None, None)
    raise InputError(path, "not a checkpoint: expected a frcnn-studio checkpoint or a state_dict of tensors")


def _is_state_dict(data) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in data.items())


def _checkpoint(path: str, data: dict) -> WeightsFile:
    """Our format, every field checked, so that a damaged file fails here and not inside the model."""
    model_name, class_names, state_dict = data.get("model"), data.get("class_names"), data.get("state_dict")
    if not isinstance(model_name, str) or not model_name:
        raise InputError(path, "damaged checkpoint: 'model' is not a model name")
    if not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names):
        raise InputError(path, "damaged checkpoint: 'class_names' is not a list of names")
    if not _is_state_dict(state_dict):
        raise InputError(path, "damaged checkpoint: 'state_dict' is not a dict of named tensors")
    misfit = _misfit(data.get("config"), DetectorConfig, "config")
    if misfit is not None:
        raise InputError(path, f"damaged checkpoint: {misfit} is not what DetectorConfig.to_dict writes")
    try:
        config = DetectorConfig.from_dict(data["config"])
    except KeyError as error:
        raise InputError(path, f"damaged checkpoint: config lacks {error}") from error
    return WeightsFile(path, state_dict, model_name, config, class_names)


def _misfit(value, hint, where: str) -> str | None:
    """The dotted name of the first part of a config dict that is not of its field's declared type,
    or None. An absent field is no misfit: DetectorConfig.from_dict gives it its default."""
    if not dataclasses.is_dataclass(hint):
        return None if _fits(value, hint) else where
    hints = typing.get_type_hints(hint)
    if not isinstance(value, dict) or not set(value) <= set(hints):
        return where
    for key, item in value.items():
        found = _misfit(item, hints[key], f"{where}.{key}")
        if found is not None:
            return found
    return None


def _fits(value, hint) -> bool:
    """Whether a plain value (as torch.load gives it back) has the type `hint`: int, float, bool,
    str, None, a union of them, or a tuple (stored as a tuple or a list)."""
    if typing.get_origin(hint) is types.UnionType:
        return any(_fits(value, option) for option in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if items[-1] is Ellipsis:
            return all(_fits(item, items[0]) for item in value)
        return len(value) == len(items) and all(map(_fits, value, items))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))


def hub_checkpoints() -> Path:
    """torchvision's own weights cache: $TORCH_HOME/hub/checkpoints, by default
    ~/.cache/torch/hub/checkpoints. Downloads go there."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights(url: str) -> Path | None:
    """The weights file for a torchvision weights URL, looked up in torchvision's cache first,
    then in the checkout's SEEDED_CHECKPOINTS; None when neither holds it."""
    file_name = Path(urlparse(url).path).name
    found = [folder / file_name for folder in (hub_checkpoints(), SEEDED_CHECKPOINTS) if (folder / file_name).is_file()]
    return found[0] if found else None


def fetch_state_dict(weights, what: str) -> dict:
    """A torchvision weights enum's state_dict through its own API, from the file `cached_weights`
    finds, else downloaded (with a progress bar) into `hub_checkpoints()`; always read with
    `weights_only=True`.

    A file that is nowhere and cannot be downloaded: InputError, one line naming the file and the
    folder to put it in.
    """
    found = cached_weights(weights.url)
    try:
        return weights.get_state_dict(model_dir=None if found is None else str(found.parent), progress=True,
                                      check_hash=True, weights_only=True)
    except OSError as error:  # URLError is an OSError: offline, or the host refused; or an unwritable cache
        file_name = Path(urlparse(weights.url).path).name
        raise InputError(None, f"{what} weights {file_name} are not downloaded and cannot be fetched "
                               f"({error.__class__.__name__}): put {file_name} in {hub_checkpoints()}") from error
    except pickle.UnpicklingError as error:
        raise InputError(weights.url, f"refused: the cached {what} weights need code to load") from error


def save_checkpoint(path: str | os.PathLike, model_name: str, config: DetectorConfig, class_names: list[str],
                    state_dict: dict, extra: dict | None = None) -> None:
    """Write a checkpoint atomically: a temp file in the same folder, fsync, then rename."""
    target = Path(path)
    payload = {"format": FORMAT, "model": model_name, "config": config.to_dict(), "class_names": list(class_names),
               "state_dict": state_dict, **(extra or {})}
    write_atomic(target, lambda stream: torch.save(payload, stream))
