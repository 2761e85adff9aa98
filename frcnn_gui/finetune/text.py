"""How the fine-tuning widgets write durations, plans, metrics and before/after verdicts, so that
every panel and the log agree."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from frcnn_core.vocabulary import COMPARABLE, NO_DETECTOR, NOT_COMPARABLE

if TYPE_CHECKING:  # the window imports this module before the engine has imported torch
    from frcnn_core.training.finetune import FinetunePlan

NO_VALUE = "—"


def format_duration(seconds: float | None) -> str:
    """'45 s', '3 min 05 s', '2 h 07 min'; NO_VALUE for None, nan or infinity."""
    if seconds is None or not math.isfinite(seconds):
        return NO_VALUE
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 image', '3 images', '2 boxes' (with plural="boxes"): the noun is plural unless count is 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


def plan_summary(plan: FinetunePlan) -> str:
    """'train: 12 images, 30 boxes · validation: 3 images, 8 boxes — per class (train/val): cat 20/5, dog 10/3'."""
    per_class = ", ".join(f"{name} {count}/{plan.val_boxes.get(name, 0)}" for name, count in plan.train_boxes.items())
    train_boxes, val_boxes = (counted(sum(boxes.values()), "box", "boxes")
                              for boxes in (plan.train_boxes, plan.val_boxes))
    return (f"train: {counted(len(plan.settings.images or ()), 'image')}, {train_boxes} · "
            f"validation: {counted(len(plan.val_images), 'image')}, {val_boxes} — per class (train/val): {per_class}")


def format_ap(value: float | None) -> str:
    """An AP in [0, 1] as a percentage with one decimal ('41.2'); NO_VALUE when undefined."""
    if value is None or not math.isfinite(value):
        return NO_VALUE
    return f"{100 * value:.1f}"


def format_change(before: float | None, after: float | None) -> str:
    """The change of an AP in percentage points with its sign ('+3.4'); NO_VALUE when either is undefined."""
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return NO_VALUE
    return f"{100 * (after - before):+.1f}"


def before_after(metrics: dict | None) -> dict:
    """`score_run`'s "before_after" block of a run's metrics; {} without metrics or in a
    metrics.json written before runs compared by class name (its "before" is not shown)."""
    block = (metrics or {}).get("before_after")
    return block if isinstance(block, dict) else {}


def is_compared(metrics: dict | None) -> bool:
    """Whether the metrics hold a before/after comparison (the two models share classes)."""
    block = before_after(metrics)
    return isinstance(block.get("before"), dict) and isinstance(block.get("after"), dict)


def ap50_before_after(metrics: dict | None) -> str:
    """AP50 before → after as the Runs panel writes it: '25.0 → 61.2' on the same classes,
    '25.0 → 61.2 on RBC' on the shared classes only, 'not comparable → 61.2' or
    'no detector yet → 61.2' (the new model's own AP50); '' without metrics."""
    if not metrics:
        return ""
    block = before_after(metrics)
    if is_compared(metrics):
        text = f"{format_ap(block['before'].get('AP50'))} → {format_ap(block['after'].get('AP50'))}"
        return text if block.get("verdict") == COMPARABLE else f"{text} on {', '.join(block.get('classes') or ())}"
    before = block.get("verdict") if block.get("verdict") in (NOT_COMPARABLE, NO_DETECTOR) else NO_VALUE
    return f"{before} → {format_ap(metrics.get('AP50'))}"


def verdict_line(metrics: dict | None) -> str:
    """One line for the log: 'validation AP50 25.0 → 61.2 (compared on every class: cat, dog)', or
    the reason there is no before and the new model's own AP50."""
    block = before_after(metrics)
    if is_compared(metrics):
        return (f"validation AP50 {format_ap(block['before'].get('AP50'))} → "
                f"{format_ap(block['after'].get('AP50'))} ({block.get('note', '')})")
    reason = block.get("note") or "no before/after comparison"
    return f"{reason} — the new model's validation AP50: {format_ap((metrics or {}).get('AP50'))}"
