"""What the stage panel says under the picture: the stage's explanation (`frcnn_core.inspect.describe`)
for the inspector's trace, plus what the user chose on it — the clicked cell's anchors followed
forward, the selected proposal, RoI or detection, the level of the heatmap — and how fast the
latest re-run was; for the saliency stage, its map and deletion test in plain words."""
from __future__ import annotations

from frcnn_core.inspect.describe import explain
from frcnn_core.inspect.follow import fate_text
from frcnn_core.inspect.saliency import DETECTION, HIRES_CAM, METHODS, PREVIEW_MASKS, DeletionTest
from frcnn_gui.inspector.chains import class_text, proposal_chain, provenance_text
from frcnn_gui.inspector.overlays import (
    anchor_shape_mask,
    cell_fates,
    roi_samples_text,
    scoped_anchor_idx,
    suppression_text,
)
from frcnn_gui.inspector.pictures import likely_per_level, liveliest_level, shape_names


def stage_text(inspector, stage: str) -> str:
    """The text of `stage` for a StageInspector that holds an inspection (its trace is set)."""
    trace = inspector.trace
    if stage == "saliency":
        return saliency_text(inspector.saliency)
    if stage == "anchor-labels" and trace.anchor_labels is None:
        return "Draw a GT box (W, then drag) to see which anchors become positive and negative."
    if stage == "roi-samples":
        training = inspector.training()
        if training is None:
            return "Draw a GT box of a class the model knows to see which RoIs training would sample."
        return roi_samples_text(training, inspector.config, inspector.class_names, inspector.selected_sample,
                                len(inspector.gt_labels()[1]))
    gt_count = inspector.gt_count if stage == "anchor-labels" else None
    text = explain(stage, trace, inspector.config, gt_count, inspector.score_thresh)
    if stage == "objectness":
        text += _objectness_text(inspector)
    if stage == "class-scores" and inspector.selected_detection is not None:
        text += _detection_text(inspector)
    if stage == "roi-pool":
        text += (f" Selected RoI {inspector.selected_roi}: its bins (orange) and sample points (white); click a"
                 " proposal to pick another (dimmed: the RoIs of the detections shown). Pictures: its pooled 7 x 7"
                 " features.")
    if stage == "anchors":
        text = _anchors_text(inspector, text)
    if stage.startswith("proposals"):
        text += f" Drawn: the best {inspector.drawn:,}; colour: objectness score, blue 0 → red 1."
    if stage == "proposals-pre-nms":
        text += ("\n" + suppression_text(trace.proposals, inspector.selected_proposal)
                 if inspector.selected_proposal is not None else " Click a proposal to see what NMS did with it.")
    if stage == "proposals":
        text += ("\n" + proposal_chain(trace, inspector.selected_post_proposal, inspector.own_detections())[1]
                 if inspector.selected_post_proposal is not None
                 else " Click a proposal: its anchor and the detections it became.")
    if stage in inspector.reruns.ms:
        text += f"\n(re-run in {inspector.reruns.ms[stage]:.0f} ms in the engine's thread, no backbone pass)"
    return text


def _objectness_text(inspector) -> str:
    """Where the objectness is, level by level, and what the heatmap shows."""
    trace, level = inspector.trace, inspector.level
    which = ("the highest score of its anchor shapes" if inspector.shape is None
             else f"the score of shape {shape_names(inspector.config.anchors, level)[inspector.shape]}")
    per_level = ", ".join(f"level {index}: {count:,}" for index, count in enumerate(likely_per_level(trace)))
    return (f" Above 0.5 per level: {per_level}; it opens on level {liveliest_level(trace)}."
            f" Heatmap: level {level}, per cell {which} (dark 0 → red → yellow/white 1).")


def _detection_text(inspector) -> str:
    """The selected detection's chain and the class NMS around it ("" until its chain arrives)."""
    detection, names = inspector.selected_detection, inspector.class_names
    provenance = inspector.provenance()
    if provenance is None:
        return ""
    return ("\n" + provenance_text(provenance, names[provenance.label]) + " (Anchor cyan, proposal = RoI yellow.)\n"
            + class_text(inspector.inspection.trace.detections, detection, names,
                         inspector.config.roi_test.nms_thresh)
            + " Click another detection (dimmed: those the detections panel shows) to follow it.")


def _anchors_text(inspector, text: str) -> str:
    """The anchors stage's text: how many are drawn, and first what became of the clicked cell's."""
    anchors, scope = inspector.trace.anchors, inspector.anchor_scope
    keep = anchor_shape_mask(anchors, inspector.config.anchors, **inspector.anchor_filter)
    text += " Click the image to see the anchors of the cell there; filter them by level, size, ratio."
    if scope != "cell":
        chosen = int((keep & anchors.inside).sum() if scope == "inside" else keep.sum())
        drawn = len(scoped_anchor_idx(anchors, keep, scope))
        text += (f" Drawn: {drawn:,} of the {chosen:,} chosen anchors"
                 + (" (an even sample: filter to see them all)." if drawn < chosen else "."))
    if inspector.point is not None:  # what became of the clicked cell's anchors comes first
        fates = cell_fates(inspector.trace, *inspector.point, keep)
        text = ("The clicked cell's best-scoring anchor on each level, followed forward (the best one's proposal in"
                " white):\n" + "\n".join(fate_text(fate, inspector.trace.proposals) for fate in fates)
                + "\n\n" + text)
    return text


def saliency_text(view) -> str:
    """The saliency stage's text for a SaliencyView: how to pick a target; then the method, the
    target, the masks so far; then the masks and seconds of the map and its deletion test."""
    noun = "score" if view.kind == DETECTION else "objectness"
    if view.target is None:
        return (f"Click a {view.kind} to see which pixels its {noun} rests on. D-RISE fills random parts of the"
                f" image with its mean colour and weighs each mask by how much of the {view.kind} survives it: the"
                f" first map after {PREVIEW_MASKS} masks, then it refines; no gradients. HiResCAM weighs the feature"
                f" map the {noun} came from by its gradient. Drawn over the photo: the map's positive part, dark red"
                " → yellow at its highest.")
    what = f"{METHODS[view.method]} of {view.target_words()}"
    if view.running is not None:
        update = view.update
        if view.method == HIRES_CAM or update is None:
            return f"{what}: computing…"
        return f"{what}: {update.done:,} / {update.total:,} masks… " + (
            f"The map after {view.drawn_masks:,} masks is shown; it refines as more come."
            if view.drawn_masks is not None else f"The first map comes after {min(PREVIEW_MASKS, update.total)} masks.")
    result = view.result
    if result is None:
        return f"{what}: it failed (the log has why). Click the box to try again."
    masks = f"{result.masks:,} masks" if view.method != HIRES_CAM else "one step"
    if result.cancelled:
        text = (f"{what}: cancelled at {masks}" + (f" of {result.request.masks:,}" if view.method != HIRES_CAM else "")
                + f", after {result.seconds:.1f} s; the map so far is shown, without a deletion test.")
    else:
        text = f"{what}: {masks} in {result.seconds:.1f} s."
    if view.drawn_masks is None:
        text += " The map has no positive value: nothing is drawn."
    if result.deletion is not None:
        text += "\n" + deletion_words(result.deletion, noun)
    return text + " Click another box to explain it."


def deletion_words(test: DeletionTest, noun: str) -> str:
    """The deletion test in plain words: the salient share's drop against a random share's."""
    share = f"{test.share:.0%}"
    text = (f"Deleting the {share} most salient pixels: {noun} {test.score:.2f} → {test.salient:.2f}; a random"
            f" {share}: {test.random:.2f}.")
    if test.salient_drop > test.random_drop:
        return text + f" The map points at pixels the {noun} needs."
    return text + " Its pixels matter no more than random ones: the map is not faithful here."
