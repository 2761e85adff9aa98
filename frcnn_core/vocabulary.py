"""The words every view uses for the stages and for where a GT box was lost; no torch, so that the
window can name the stages before the engine has imported.

`STAGES` are the inspector's stages in the paper's order and `STAGE_TITLES` their names as the
Stages dock lists them ("saliency", after the class scores, explains one detection's or proposal's
score on demand: it has no picture in `frcnn trace --out`); `FUNNEL_STAGES` are the points where the
recall funnel can lose a GT box.
`outcome_words(lost_at)` names where the recall funnel (`frcnn_core.inspect.funnel`) lost a GT box,
in the funnel panel, the stage texts, `frcnn trace --gt` and `frcnn diagnose` alike.
"""
from __future__ import annotations

STAGE_TITLES = {"anchors": "anchors", "anchor-labels": "anchor labels", "objectness": "objectness",
                "proposals-pre-nms": "proposals before NMS", "proposals": "proposals", "roi-samples": "RoI samples",
                "roi-pool": "RoI pooling", "class-scores": "class scores", "saliency": "saliency",
                "detections": "detections"}
STAGES = tuple(STAGE_TITLES)
FUNNEL = "funnel"  # the recall funnel: a view of its own beside the stages (`frcnn trace --stage funnel`)
DEFAULT_SCORE_THRESH = 0.5  # the detections panel's starting threshold
FOUND = "found"
# "before NMS": the stage's top-N, regression and filters
# together (the funnel cannot tell them apart), as the dock's "proposals before NMS" shows them
LOST_AT_WORDS = {"anchors": "lost at anchors", "proposals-pre-nms": "lost before NMS", "nms": "lost at NMS",
                 "post-nms-top-n": "lost at post-NMS top-N", "detection": "lost at detection"}
FUNNEL_STAGES = tuple(LOST_AT_WORDS)


def outcome_words(lost_at: str | None) -> str:
    """A funnel row's outcome in the words every view uses: None -> "found", "nms" -> "lost at
    NMS" (keys of LOST_AT_WORDS). Raises KeyError for an unknown stage."""
    return FOUND if lost_at is None else LOST_AT_WORDS[lost_at]


# one colour per TIDE verdict (analysis.tide's TP and error types), for the error plots and the Errors view
ERROR_COLOURS = {"TP": "#2ca02c", "Cls": "#9467bd", "Loc": "#ff7f0e", "Both": "#8c564b", "Dupe": "#e377c2",
                 "Bkg": "#d62728", "Miss": "#1f77b4"}

# the verdict of metrics.json's before_after block (analysis.compare_models.ClassOverlap): what a comparison can say
COMPARABLE = "comparable"  # both models detect exactly the run's classes
SHARED_CLASSES = "shared classes"  # some classes in common: compared on those only
NOT_COMPARABLE = "not comparable"  # no class in common
NO_DETECTOR = "no detector yet"  # the base model's detection head is untrained
