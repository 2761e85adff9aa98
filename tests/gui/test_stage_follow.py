"""Following boxes forward in the inspector, as a user does: a click on the anchors stage follows
the cell's best anchors to their proposals; the RoI samples list each sampled RoI with its matched
GT box and regression targets (a click on the table or the canvas selects one); the proposal
stages draw only the best N proposals, N chosen in the panel."""
from __future__ import annotations

import numpy as np
import torch
from PySide6.QtCore import Qt

from frcnn_core.inspect.follow import anchor_fate, roi_sample_rows
from frcnn_gui.inspector.overlays import ANCHORS_DRAWN, cell_anchor_idx, pre_nms_shown_idx

from test_stages import TIMEOUT_MS, at, choose, shown_boxes, window  # noqa: F401 (window: a fixture)


def test_a_click_on_the_anchors_stage_follows_the_cells_anchors_to_their_proposals(qtbot, window):  # noqa: F811
    choose(qtbot, window, "anchors")
    inspector = window.inspector
    trace = inspector.trace
    wbc = (307.0, 282.0)  # the centre of the image's WBC: its anchors score high and make proposals
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        qtbot.mouseClick(window.canvas.viewport(), Qt.LeftButton, Qt.NoModifier, at(window, *wbc))
    cells = cell_anchor_idx(trace.anchors, *inspector.point)
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
    gt_box = inspector.gt_labels()[0][first.gt_index].double().numpy()
    assert np.allclose(shown_boxes(window)[-1], gt_box)
    # the RoI tagged; its GT box (whose corner lies close) tagged under the mouse
    assert inspector.layer._labels[-2:] == ["RoI #0", ""]
    assert inspector.layer._hover_labels[-1] == f"GT {first.gt_index}"
    # a click on a background RoI's centre (away from every other sampled RoI's centre) selects its row
    background = [row.index for row in rows if not row.foreground]
    rois = targets.rois
    centres = (rois[:, :2] + rois[:, 2:]) / 2
    # (roi, point): whether the RoI contains the point
    containing = ((rois[:, None, :2] <= centres[None]) & (centres[None] <= rois[:, None, 2:])).all(dim=2)
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


def test_the_anchor_scope_draws_every_anchor_inside_or_all(qtbot, window):  # noqa: F811
    choose(qtbot, window, "anchors")
    inspector, panel = window.inspector, window.stages_panel
    anchors = inspector.trace.anchors
    level = len(anchors.grid_sizes) - 1  # the coarsest level: few anchors, some reach past the image
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
        panel.anchor_filters["level"].setCurrentIndex(panel.anchor_filters["level"].findData(level))
    for scope, chosen in (("inside", anchors.inside & (anchors.level == level)), ("all", anchors.level == level)):
        with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):
            panel.anchor_scope.setCurrentIndex(panel.anchor_scope.findData(scope))
        assert np.allclose(shown_boxes(window), anchors.boxes[chosen].double().numpy())
        assert f"Drawn: {int(chosen.sum()):,} of the {int(chosen.sum()):,} chosen anchors." in panel.explanation.text()
    assert int((anchors.level == level).sum()) > int((anchors.inside & (anchors.level == level)).sum())
    with qtbot.waitSignal(inspector.shown, timeout=TIMEOUT_MS):  # every level: more than are drawn at once
        panel.anchor_filters["level"].setCurrentIndex(0)
    assert len(shown_boxes(window)) == ANCHORS_DRAWN < len(anchors.boxes)
    assert f"Drawn: {ANCHORS_DRAWN:,} of the {len(anchors.boxes):,} chosen anchors (an even sample" \
        in panel.explanation.text()


def test_class_scores_draw_the_candidates_class_nms_weighed_against_the_detection():
    from frcnn_core.modeling.trace import DetectionsTrace
    from frcnn_gui.inspector.chains import class_neighbours, class_parts, class_text

    # class 1 candidates: 0 (kept, 0.9), 1 (IoU 0.81 with 0, 0.8: removed), 2 (IoU 0.36, 0.7: kept by NMS
    # but not drawn as removed), 3 far away; candidate 4 is class 2 on top of candidate 0
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 9, 9], [0, 0, 6, 6], [50, 50, 60, 60], [0, 0, 10, 10]],
                         dtype=torch.float32)
    detections = DetectionsTrace(
        class_scores=torch.tensor([[0.05, 0.9, 0.05]]), class_boxes=boxes[[0, 0, 4]].reshape(1, 3, 4),
        candidate_roi_idx=torch.zeros(5, dtype=torch.int64), candidate_labels=torch.tensor([1, 1, 1, 1, 2]),
        candidate_scores=torch.tensor([0.9, 0.8, 0.7, 0.6, 0.05]), candidate_boxes=boxes,
        keep_idx=torch.tensor([0, 2, 3, 4]))
    neighbours, iou = class_neighbours(detections, 0)
    assert neighbours.tolist() == [1, 2] and torch.allclose(iou, torch.tensor([0.81, 0.36]))
    text = class_text(detections, 0, ["__background__", "cat", "dog"], 0.5)
    assert "cat had 4 candidate boxes before class NMS; 2 overlap this detection" in text
    assert "1 of them, overlapping by more than 0.5" in text
    parts = class_parts(detections, 0, ["__background__", "cat", "dog"])
    assert torch.equal(parts[0][0], boxes[[1, 2]])
    assert parts[1][4] == ["dog 0.05"] and torch.equal(parts[1][0], boxes[[4]])  # its tag under the mouse
