"""render/error_plots.py: the TIDE summary and the errors by class are complete PNGs, also when
nothing went wrong; one colour per TIDE verdict."""
from __future__ import annotations

from frcnn_core.analysis.tide import MAIN_ERRORS, SPECIAL_ERRORS, TP
from frcnn_core.render import error_plots
from frcnn_core.vocabulary import ERROR_COLOURS, FUNNEL_STAGES

from test_plots import assert_png


def test_every_verdict_has_its_own_colour():
    assert list(ERROR_COLOURS) == [TP, *MAIN_ERRORS]
    assert len(set(ERROR_COLOURS.values())) == len(ERROR_COLOURS)
    assert len(error_plots.STAGE_COLOURS) == len(FUNNEL_STAGES)


def test_tide_summary(tmp_path):
    main = dict(zip(MAIN_ERRORS, [0.0, 1.2, 0.02, 0.0, 5.6, 0.6], strict=True))
    special = dict(zip(SPECIAL_ERRORS, [6.3, 1.7], strict=True))
    assert_png(error_plots.save_tide_summary(91.7, main, special, tmp_path / "tide.png"))


def test_tide_summary_of_a_perfect_detector(tmp_path):
    zero = dict.fromkeys(MAIN_ERRORS, 0.0)
    assert_png(error_plots.save_tide_summary(100.0, zero, dict.fromkeys(SPECIAL_ERRORS, 0.0), tmp_path / "tide.png"))


def test_errors_by_class(tmp_path):
    errors = {"RBC": dict.fromkeys(MAIN_ERRORS, 0) | {"Loc": 271, "Bkg": 600}, "WBC": dict.fromkeys(MAIN_ERRORS, 0)}
    missed = {"RBC": dict.fromkeys(FUNNEL_STAGES, 0) | {"detection": 21}, "WBC": dict.fromkeys(FUNNEL_STAGES, 0)}
    assert_png(error_plots.save_errors_by_class(errors, missed, tmp_path / "sub" / "by_class.png"))
    assert_png(error_plots.save_errors_by_class({}, {}, tmp_path / "empty.png"))  # a dataset without GT boxes
