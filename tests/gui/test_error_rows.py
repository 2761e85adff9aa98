"""frcnn_gui/errors/rows.py, Qt-free: the Errors view's counts per image, its class and type
filters and its sort (worst first, ties in folder order), on hand-made rows."""
from __future__ import annotations

from types import SimpleNamespace

from frcnn_core.analysis.tide import BKG, CLS, LOC, MISS
from frcnn_gui.errors.rows import ERRORS, FN, FP, IMAGE, counts, errors_of, table_lines


def fp(kind: str, label: str, counted: bool = True):
    return SimpleNamespace(detection=0, type=kind, label=label, counted=counted)


def fn(kind: str, label: str):
    return SimpleNamespace(gt_index=0, type=kind, label=label)


def row(path: str, false_positives=(), false_negatives=()):
    return SimpleNamespace(image_path=path, false_positives=list(false_positives),
                           false_negatives=list(false_negatives))


# a: 2 counted FPs (Bkg cat, Loc dog), one FP inside a difficult box, a Miss (dog) and an FN a Loc error targets
A = row("/f/a.jpg", [fp(BKG, "cat"), fp(LOC, "dog"), fp(BKG, "dog", counted=False)], [fn(MISS, "dog"), fn(LOC, "cat")])
B = row("/f/b.jpg", [fp(CLS, "cat")], [fn(MISS, "cat"), fn(MISS, "cat")])
C = row("/f/c.jpg")  # no error
D = row("/f/d.jpg", [fp(BKG, "dog")], [fn(MISS, "dog"), fn(MISS, "dog"), fn(MISS, "dog")])
PLACES = {"/f/a.jpg": 0, "/f/b.jpg": 1, "/f/c.jpg": 2, "/f/d.jpg": 3}


def names(lines) -> list[str]:
    return [line.name for line in lines]


def test_counts_follow_the_report_s_rules():
    assert counts(A) == {ERRORS: 4, FP: 2, FN: 2, CLS: 0, LOC: 1, "Both": 0, "Dupe": 0, BKG: 1, MISS: 1}
    assert counts(A, "dog") == {ERRORS: 2, FP: 1, FN: 1, CLS: 0, LOC: 1, "Both": 0, "Dupe": 0, BKG: 0, MISS: 1}
    assert counts(C)[ERRORS] == 0


def test_worst_first_with_ties_in_folder_order():
    assert names(table_lines([D, C, B, A], PLACES)) == ["a.jpg", "d.jpg", "b.jpg", "c.jpg"]  # 4, 4, 3, 0
    assert names(table_lines([D, C, B, A], PLACES, descending=False)) == ["c.jpg", "b.jpg", "a.jpg", "d.jpg"]
    assert names(table_lines([D, C, B, A], PLACES, column=FP)) == ["a.jpg", "b.jpg", "d.jpg", "c.jpg"]
    assert names(table_lines([D, C, B, A], PLACES, column=IMAGE, descending=False)) == ["a.jpg", "b.jpg", "c.jpg",
                                                                                          "d.jpg"]


def test_filters_keep_the_images_with_such_errors_and_count_only_those():
    dog = table_lines([A, B, C, D], PLACES, class_name="dog")
    assert names(dog) == ["d.jpg", "a.jpg"] and [line.counts[ERRORS] for line in dog] == [4, 2]
    assert names(table_lines([A, B, C, D], PLACES, error_type=MISS)) == ["a.jpg", "d.jpg", "b.jpg"]
    assert names(table_lines([A, B, C, D], PLACES, class_name="cat", error_type=MISS, column=MISS)) == ["b.jpg"]
    assert table_lines([A, B, C, D], PLACES, error_type="Dupe") == []


def test_an_image_the_folder_no_longer_lists_comes_last():
    assert names(table_lines([row("/f/gone.jpg", [fp(BKG, "cat")] * 9), C], PLACES, column=IMAGE,
                             descending=False)) == ["c.jpg", "gone.jpg"]


def test_an_image_s_errors_false_positives_first_filtered_by_class_and_type():
    assert errors_of(A) == [*A.false_positives, *A.false_negatives]
    assert errors_of(A, class_name="cat") == [A.false_positives[0], A.false_negatives[1]]
    assert errors_of(A, error_type=LOC) == [A.false_positives[1], A.false_negatives[1]]  # the FN a Loc error targets
