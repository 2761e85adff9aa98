"""How the fine-tuning widgets write durations and metrics, so that every panel agrees."""
from __future__ import annotations

import math

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
