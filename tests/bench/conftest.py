"""The benchmark scripts import each other by bare name, as they do when run from benchmarks/."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
