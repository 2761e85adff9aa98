"""`frcnn train --data D --minutes N --out R`: the plan printed with its reasons, flags that win, bad
budgets as one line. The training itself is tested in tests/core/test_budget.py; here `train` is
replaced by a recorder, so that these tests see what the command hands it."""
from __future__ import annotations

import json

import pytest

from frcnn_core.cli import main as cli
from frcnn_core.training.train import TrainSettings

from datasets import photo_folder


@pytest.fixture
def handed(monkeypatch):
    """The TrainSettings (and resume flag) the command gives `train`."""
    calls = []

    def recorder(settings, resume=False, **_):
        calls.append((settings, resume))
        return iter(())

    monkeypatch.setattr(cli, "train", recorder)
    return calls


def test_minutes_alone_plan_the_run_and_say_why(tmp_path, capsys, handed):
    data = photo_folder(tmp_path / "data", 10, 50)
    assert cli.main(["train", "--data", str(data), "--minutes", "8", "--out", str(tmp_path / "run")]) == 0
    (settings, resume), = handed
    assert settings.minutes == 8 and settings.model == "mobilenet-v2-fpn" and settings.weights == "imagenet"
    assert settings.val_images and settings.input_size == (320, 416) and not resume
    err = capsys.readouterr().err
    assert err.startswith("plan for 8 minutes:") and err.count("  why: ") >= 6 and "  why: anchors: " in err
    report = json.loads((tmp_path / "run" / "anchors.json").read_text())
    assert set(report) >= {"fitted", "before", "after", "anchors", "model_anchors", "why"}
    assert (report["anchors"] == report["model_anchors"]) != report["fitted"]
    assert (settings.anchors is not None) == report["fitted"]
    assert (tmp_path / "run" / "anchors.png").read_bytes().startswith(b"\x89PNG")


def test_the_flags_given_win_and_the_others_are_planned(tmp_path, handed):
    data = photo_folder(tmp_path / "data", 10, 50)
    cli.main(["train", "--data", str(data), "--minutes", "5", "--out", str(tmp_path / "run"), "--lr", "0.03",
              "--batch-size", "4", "--vflip", "0.5"])
    (settings, _), = handed
    assert settings.lr == 0.03 and settings.batch_size == 4
    assert settings.augment.vflip == 0.5 and settings.augment.hflip == 0.5
    assert settings.model == "mobilenet-v2-fpn" and settings.minutes == 5


def test_an_input_size_given_wins_over_the_planned_one(tmp_path, handed, capsys):
    data = photo_folder(tmp_path / "data", 10, 50)
    cli.main(["train", "--data", str(data), "--minutes", "5", "--out", str(tmp_path / "run"), "--input-size", "480",
              "800"])
    (settings, _), = handed
    assert settings.input_size == (480, 800) and "yours: input_size = (480, 800)" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(data), "--minutes", "5", "--out", str(tmp_path / "r2"), "--input-size",
                     "800", "480"]) == 2
    assert capsys.readouterr().err.strip().endswith("the longer side's limit is under the shorter side")


def test_without_minutes_the_old_defaults_hold(tmp_path, handed):
    data = photo_folder(tmp_path / "data", 4, 50)
    cli.main(["train", "--data", str(data), "--split", "all", "--iters", "3", "--out", str(tmp_path / "run")])
    (settings, _), = handed
    assert settings.minutes is None and settings.iters == 3
    assert (settings.batch_size, settings.lr, settings.warmup_iters, settings.checkpoint_every) == (2, 0.01, 100, 200)


def test_resume_goes_on_with_the_planned_settings(tmp_path, handed):
    run = tmp_path / "run"
    run.mkdir()
    planned = TrainSettings(data=str(tmp_path), out="elsewhere", minutes=7.0, input_size=(352, 576), lr=0.02)
    (run / "settings.json").write_text(json.dumps(planned.to_dict()))
    cli.main(["train", "--data", str(tmp_path), "--out", str(run), "--resume"])
    (settings, resume), = handed
    assert resume and settings.minutes == 7.0 and settings.input_size == (352, 576) and settings.out == str(run)


@pytest.mark.parametrize("extra, problem", [
    (["--minutes", "0.5"], "minute"),
    (["--minutes", "1e9"], "minute"),
    (["--minutes", "5", "--iters", "10"], "not both"),
])
def test_a_bad_budget_is_one_line(tmp_path, capsys, handed, extra, problem):
    data = photo_folder(tmp_path / "data", 10, 50)
    assert cli.main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *extra]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and problem in lines[0] and not handed
