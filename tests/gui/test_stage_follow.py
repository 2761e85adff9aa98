"""Following boxes forward in the inspector, as a user does: a click on the anchors stage follows
the cell's best anchors to their proposals; the RoI samples list each sampled RoI with its matched
GT box and regression targets (a click on the table or the canvas selects one); the proposal
stages draw only the best N proposals, N chosen in the panel."""
from __future__ import annotations

import numpy as np
import torch
from PySide6.QtCore import Qt

from frcnn_core.follow import anchor_fate, roi_sample_rows
from frcnn_gui.stage_overlays import cell_anchor_idx, pre_nms_shown_idx
from test_stages import TIMEOUT_MS, at, choose, shown_boxes, window  # noqa: F401 (window: a fixture)


def test_a_click_on_the_anchors_stage_follows_the_cells_anchors_to_their_proposals(qtbot, window):  # noqa: F811
    choose(qtbot, window, "anchors")
    inspector = window.inspector
    trace = inspector.trace
    wbc = (307.0, 282.0)  # the centre of the image's WBC: its anchors score high and make proposals
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseClick(window.canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at(window, *wbc))
    cells = cell_anchor_idx(trace.anchors, *inspector._point)
    best = [int(cell[trace.objectness.logits[cell].argmax()]) for cell in cells]
    fates = [anchor_fate(trace, anchor) for anchor in best]
    text = window.stages_panel.explanation.text()
    for fate in fates:
        assert f"Anchor #{fate.anchor} (level {fate.level}" in text
    top = max(fates, key=lambda fate: fate.score)
    assert top.pre_index is not None  # the best anchor on a WBC makes a proposal
    layer = inspector.layer
    index = next(i for i, tag in enumerate(layer._labels) if tag.startswith("→"))
    assert np.allclose(shown_boxes(window)[index], trace.proposals.pre_nms_boxes[top.pre_index].double().numpy())


def test_roi_samples_are_listed_with_their_gt_box_and_targets(qtbot, window):  # noqa: F811
    choose(qtbot, window, "roi-samples")
    inspector, panel = window.inspector, window.stages_panel
    targets = inspector.training_trace.roi_targets
    rows = roi_sample_rows(targets)
    table = panel.sample_table
    assert table.isVisible() and table.rowCount() == len(targets.labels)
    first = rows[0]  # foreground first
    assert first.foreground
    assert [table.item(0, column).text() for column in range(5)] == [
        "0", inspector.class_names[first.label], f"{first.iou:.2f}", str(first.gt_index), first.source]
    assert table.item(0, 5).text() == f"{first.targets[0]:+.2f}"
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        table.setCurrentCell(0, 0)
    assert inspector.selected_sample == 0
    text = panel.explanation.text()
    assert f"RoI #0 ({first.source}) is foreground" in text and "Regression targets" in text
    gt_box = inspector._gt_labels()[0][first.gt_index].double().numpy()
    assert np.allclose(shown_boxes(window)[-1], gt_box) and inspector.layer._labels[-1] == f"GT {first.gt_index}"
    # a click on a background RoI's centre (away from every other sampled RoI's centre) selects its row
    background = [row.index for row in rows if not row.foreground]
    rois = targets.rois
    centres = (rois[:, :2] + rois[:, 2:]) / 2
    containing = ((rois[:, None, :2] <= centres[None]) & (centres[None] <= rois[:, None, 2:])).all(dim=2)  # (roi, point)
    distance = ((centres[:, None] - centres[None]) ** 2).sum(dim=2)
    picked = torch.where(containing, distance, torch.inf).argmin(dim=0)  # what a click at each centre picks
    chosen = next(i for i in background if int(picked[i]) == i)
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseClick(window.canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at(window, *centres[chosen].tolist()))
    assert inspector.selected_sample == chosen
    assert int(table.item(table.currentRow(), 0).text()) == chosen
    assert f"RoI #{chosen}" in panel.explanation.text() and "is background" in panel.explanation.text()


def test_the_proposal_stages_draw_the_best_n(qtbot, window):  # noqa: F811
    choose(qtbot, window, "proposals")
    inspector, panel = window.inspector, window.stages_panel
    proposals = inspector.trace.proposals
    assert panel.shown_controls.isVisible() and panel.shown.value() == 100
    assert len(proposals.post_nms_idx) > 100 and len(shown_boxes(window)) == 100
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        panel.shown.setValue(10)
    drawn = shown_boxes(window)
    assert len(drawn) == 10
    assert np.allclose(np.sort(drawn, axis=0), np.sort(proposals.boxes[:10].double().numpy(), axis=0))
    choose(qtbot, window, "proposals-pre-nms")
    assert len(shown_boxes(window)) == 10 == len(pre_nms_shown_idx(proposals, 10))
    choose(qtbot, window, "roi-samples")
    assert not panel.shown_controls.isVisible()
