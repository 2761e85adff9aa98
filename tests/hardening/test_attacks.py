"""Hostile files: XML that expands, reads local files or fetches DTDs, and checkpoints that run code.

tests/data/test_voc.py already refuses a small billion-laughs file and a file:///etc/passwd entity
through read_voc_xml, and tests/core/test_checkpoints.py and tests/cli/test_cli_errors.py refuse
an `open` payload through load_weights_file and `detect --weights`. Here: the full-size attacks,
external DTDs, parameter entities and XInclude, a secret file of our own that must never appear
in any output, every reader and command that takes such a file, and payloads that call
os.system or exec, in every place a checkpoint can hide them.
"""
from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch
from PIL import Image

from frcnn_core.cli.main import main
from frcnn_core.data.voc import read_labelimg_folder, read_voc_folder, read_voc_xml
from frcnn_core.errors import InputError
from frcnn_core.modeling.checkpoints import FORMAT, load_weights_file
from frcnn_core.modeling.config import AnchorConfig, make_config
from frcnn_core.modeling.zoo import build_model

from datasets import write_tiny_dataset

SECRET = "s3cret-4e1f-never-shown"
FAST = ["--model", "mobilenet-v3-320-fpn", "--weights", "none"]


def billion_laughs(levels: int = 10) -> str:
    """10 levels of ten references each: 10**9 "lol"s, 3 GB, once expanded."""
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">'
                                          for level in range(1, levels)]
    return (f'<?xml version="1.0"?><!DOCTYPE annotation [{"".join(entities)}]>'
            f"<annotation><filename>&lol{levels - 1};</filename></annotation>")


def quadratic_blowup() -> str:
    """One 100 kB entity referenced 100,000 times: 10 GB from a 500 kB file, no nesting needed."""
    return (f'<!DOCTYPE annotation [<!ENTITY a "{"a" * 100_000}">]>'
            f"<annotation><filename>{'&a;' * 100_000}</filename></annotation>")


def with_object(name: str) -> str:
    return (f"<object><name>{name}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
            "</bndbox></object>")


@pytest.fixture
def secret_files(tmp_path) -> dict[str, Path]:
    """A file holding SECRET, and a DTD that declares an entity reading it."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(f'<!ENTITY secret SYSTEM "file://{secret}">')
    return {"secret": secret, "dtd": dtd}


OBJECT_NAMED_SECRET = with_object("&secret;")
ATTACKS = {  # name -> (document, where {secret} and {dtd} stand for secret_files; the refusal it gets)
    "billion-laughs": (billion_laughs(), "EntitiesForbidden"),
    "quadratic-blowup": (quadratic_blowup(), "EntitiesForbidden"),
    "external-entity-etc-passwd": ('<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
                                   f"<annotation>{OBJECT_NAMED_SECRET}</annotation>", "EntitiesForbidden"),
    "external-entity-our-file": ('<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file://{secret}">]>'
                                 f"<annotation><filename>&secret;</filename>{OBJECT_NAMED_SECRET}</annotation>",
                                 "EntitiesForbidden"),
    "parameter-entity": ('<!DOCTYPE annotation [<!ENTITY % evil SYSTEM "file://{dtd}"> %evil;]>'
                         f"<annotation>{OBJECT_NAMED_SECRET}</annotation>", "EntitiesForbidden"),
    "external-dtd": ('<!DOCTYPE annotation SYSTEM "file://{dtd}">'
                     f"<annotation>{OBJECT_NAMED_SECRET}</annotation>", "DTDForbidden"),
    "external-dtd-public": ('<!DOCTYPE annotation PUBLIC "-//evil//DTD//EN" "http://127.0.0.1:9/evil.dtd">'
                            f"<annotation>{with_object('cat')}</annotation>", "DTDForbidden"),
}


def assert_secret_kept(*outputs: str) -> None:
    for output in outputs:
        assert SECRET not in output and "root:x:0:0" not in output


def assert_refused(error: InputError, path: Path, refusal: str) -> None:
    message = str(error)
    assert message.splitlines() == [message]
    assert message.startswith(f"{path}: refused XML: {refusal} ")
    assert_secret_kept(message, repr(error.__cause__), repr(error.__context__))


@pytest.mark.parametrize("attack", ATTACKS)
def test_read_voc_xml_refuses(attack, secret_files, tmp_path, capfd):
    document, refusal = ATTACKS[attack]
    path = tmp_path / "attack.xml"
    path.write_text(document.format(**secret_files))
    with pytest.raises(InputError) as raised:
        read_voc_xml(path)
    assert_refused(raised.value, path, refusal)
    assert_secret_kept(*capfd.readouterr())


@pytest.mark.parametrize("attack", ["billion-laughs", "external-entity-our-file", "external-dtd"])
@pytest.mark.parametrize("layout", ["labelImg", "VOC"])
def test_dataset_readers_refuse(attack, layout, secret_files, tmp_path):
    document, refusal = ATTACKS[attack]
    folder = tmp_path / "data"
    annotation = folder / ("a.xml" if layout == "labelImg" else "Annotations/a.xml")
    image = folder / ("a.png" if layout == "labelImg" else "JPEGImages/a.png")
    annotation.parent.mkdir(parents=True)
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(image)
    annotation.write_text(document.format(**secret_files))
    with pytest.raises(InputError) as raised:
        (read_labelimg_folder if layout == "labelImg" else read_voc_folder)(folder)
    assert_refused(raised.value, annotation, refusal)


@pytest.mark.parametrize("attack", ["billion-laughs", "external-entity-our-file", "parameter-entity", "external-dtd"])
def test_commands_refuse(attack, secret_files, tmp_path, capsys):
    """`trace --gt` and `eval --data`: status 2, one error line naming the file, the secret nowhere."""
    document, refusal = ATTACKS[attack]
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (32, 24)).save(folder / "a.png")
    (folder / "a.xml").write_text(document.format(**secret_files))
    for argv in (["trace", str(folder / "a.png"), *FAST, "--gt", str(folder / "a.xml")],
                 ["eval", "--data", str(folder), *FAST]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert errors == [f"error: {folder / 'a.xml'}: refused XML: {refusal} (entity declarations, DTDs and "
                          "external references are not allowed in annotations)"]
        assert "Traceback" not in err
        assert_secret_kept(out, err)


def test_xinclude_is_not_followed(secret_files, tmp_path):
    """ElementTree never processes XInclude: the include is an empty element, not the secret."""
    path = tmp_path / "a.xml"
    path.write_text('<annotation xmlns:xi="http://www.w3.org/2001/XInclude">'
                    f'<filename><xi:include href="file://{secret_files["secret"]}" parse="text"/></filename>'
                    f"{with_object('cat')}</annotation>")
    annotation = read_voc_xml(path)
    assert annotation.names == ["cat"]
    assert_secret_kept(repr(annotation))

# --- checkpoints that run code ------------------------------------------------------------------


class RunsShell:
    """Unpickling this runs `touch MARKER` through os.system."""

    def __init__(self, marker: Path):
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self):
        return (os.system, (self.command,))


class Execs:
    """Unpickling this exec()s Python that creates MARKER."""

    def __init__(self, marker: Path):
        self.source = f"open({str(marker)!r}, 'w').close()"

    def __reduce__(self):
        return (exec, (self.source,))


class WritesFile:
    """Unpickling this calls Path(MARKER).write_text (a bound method)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pwned",))


PAYLOADS = {"os.system": RunsShell, "exec": Execs, "write_text": WritesFile}
CONFIG = make_config("torchvision", AnchorConfig())


def hide(payload, where: str, path: Path) -> None:
    """Save `payload` somewhere in a checkpoint-looking file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if where == "top-level":
        torch.save(payload, path)
    elif where == "state_dict-value":
        torch.save({"backbone.weight": torch.zeros(2), "rpn.head.bias": payload}, path)
    elif where == "checkpoint-config":
        torch.save({"format": FORMAT, "model": "mobilenet-v2", "config": {**CONFIG.to_dict(), "preset": payload},
                    "class_names": ["__background__", "cat"], "state_dict": {"w": torch.zeros(1)}}, path)
    elif where == "legacy-format":
        torch.save({"state_dict": payload}, path, _use_new_zipfile_serialization=False)
    elif where == "plain-pickle":
        path.write_bytes(pickle.dumps({"state_dict": payload}, protocol=2))


@pytest.mark.parametrize("where", ["top-level", "state_dict-value", "checkpoint-config", "legacy-format",
                                   "plain-pickle"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_load_weights_file_refuses_code(payload, where, tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    hide(PAYLOADS[payload](marker), where, path)
    with pytest.raises(InputError) as raised:
        load_weights_file(path)
    message = str(raised.value)
    assert message.splitlines() == [message]
    assert message.startswith(f"{path}: refused: the file asks to run ")
    assert not marker.exists()


def test_the_shell_payload_is_real(tmp_path):
    # control for the tests here: unpickled without weights_only, the payload does run
    marker = tmp_path / "payload-ran"
    hide(RunsShell(marker), "state_dict-value", tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("as_model", [True, False], ids=["model=FILE", "weights=FILE"])
def test_build_model_refuses_code(as_model, tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    hide(RunsShell(marker), "checkpoint-config", path)
    with pytest.raises(InputError, match="refused") as raised:
        build_model(str(path)) if as_model else build_model("mobilenet-v2", str(path))
    assert str(raised.value).startswith(f"{path}: ")
    assert not marker.exists()


def test_detect_refuses_a_model_file_that_runs_code(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "PAYLOAD.pt"
    hide(RunsShell(marker), "top-level", path)
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 24)).save(image)
    assert main(["detect", str(image), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {path}: refused: the file asks to run posix.system while loading, and checkpoints may hold only "
        "tensors and plain data"]
    assert "Traceback" not in err
    assert not marker.exists()


def test_train_resume_refuses_a_last_checkpoint_that_runs_code(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    write_tiny_dataset(tmp_path / "data")
    hide(RunsShell(marker), "top-level", tmp_path / "run" / "last.pt")
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--resume",
                 "--model", "mobilenet-v2", "--weights", "none", "--device", "cpu"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / 'run' / 'last.pt'}: refused")
    assert not marker.exists()
