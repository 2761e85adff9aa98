"""Bad input gives exit status 2 and one clear line naming the file; nothing runs that should not."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from frcnn_core.cli.main import main
from frcnn_core.modeling.zoo import build_model

from reference import PHOTO

FAST = ["--model", "mobilenet-v3-320-fpn", "--weights", "none"]


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def png_bytes(size=(8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims width x height (CRC fixed), as decompression bombs do."""
    data = bytearray(png_bytes())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "empty", "bomb"])
def test_bad_image_exits_2_with_one_line(kind, tmp_path, capsys):
    path = tmp_path / f"{kind}.png"
    content = {
        "corrupt": b"this is not an image at all",
        "truncated": (PHOTO.read_bytes())[: len(PHOTO.read_bytes()) // 2],
        "empty": b"",
        "bomb": bomb_png(60_000, 60_000),
    }[kind]
    path.write_bytes(content)
    assert main(["detect", str(path), *FAST]) == 2
    line = error_line(capsys)
    assert str(path) in line and "Traceback" not in line


def test_checkpoint_of_another_architecture_exits_2(tmp_path, capsys):
    torch.manual_seed(0)
    other = build_model("mobilenet-v3-320-fpn", "none")
    path = tmp_path / "mobilenet.pt"
    torch.save(other.state_dict(), path)
    assert main(["detect", str(PHOTO), "--model", "resnet50-fpn", "--weights", str(path)]) == 2
    line = error_line(capsys)
    assert str(path) in line and "do not fit model resnet50-fpn" in line


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    marker = ""

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    Payload.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload()}, path)
    assert main(["detect", str(PHOTO), "--model", "resnet50-fpn", "--weights", str(path)]) == 2
    line = error_line(capsys)
    assert str(path) in line and "refused" in line
    assert not marker.exists()


def test_unknown_model_exits_2(capsys):
    assert main(["detect", str(PHOTO), "--model", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in error_line(capsys)


def test_console_script_reports_one_line_and_status_2(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    frcnn = Path(sys.executable).with_name("frcnn")
    result = subprocess.run([str(frcnn), "detect", str(bad), *FAST], capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["detect", "trace", "train", "eval", "diagnose", "errors"])
@pytest.mark.parametrize("device", ["cuda", "cuda:7"])
def test_a_cuda_device_this_machine_lacks_is_one_line_in_every_command(command, device, tmp_path, capsys,
                                                                        monkeypatch):
    from datasets import write_tiny_dataset

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = write_tiny_dataset(tmp_path / "data")
    argv = {
        "detect": ["detect", str(PHOTO), *FAST],
        "trace": ["trace", str(PHOTO), *FAST],
        "train": ["train", "--data", str(data), *FAST, "--iters", "1", "--out", str(tmp_path / "run")],
        "eval": ["eval", "--data", str(data), *FAST],
        "diagnose": ["diagnose", "--data", str(data), *FAST],
        "errors": ["errors", "--data", str(data), *FAST],
    }[command]
    assert main([*argv, "--device", device]) == 2
    assert error_line(capsys) == f"error: device {device}: CUDA is not available on this machine; use cpu or auto"
    assert not (tmp_path / "run").exists()


def test_an_unknown_device_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["detect", str(PHOTO), *FAST, "--device", "tpu"])
    assert stop.value.code == 2 and "invalid choice: 'tpu'" in capsys.readouterr().err
