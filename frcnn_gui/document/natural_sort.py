"""The natural order of file names, as file managers list them: raccoon-2 before raccoon-10."""
from __future__ import annotations

import re
from pathlib import Path

_DIGIT_RUNS = re.compile(r"(\d+)")


def natural_key(path: Path) -> tuple[tuple[int | str, ...], str]:
    """Sort key of `path`'s file name: runs of digits compare as numbers, the text between them
    without regard to case; the name itself breaks ties ("a-02" and "a-2"), so the order is total.

    re.split with a capturing group alternates text and digits, text first (maybe empty), so
    the parts at one place in two keys are always of the same type.
    """
    parts = _DIGIT_RUNS.split(path.name)
    return tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(parts)), path.name
