"""keep_freed_memory: a second large tensor reuses the first one's memory instead of faulting in
fresh pages (measured in a child process, whose malloc is its own)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from frcnn_core.allocator import USER_VARIABLES, keep_freed_memory

CHILD = """
import resource, sys, torch
from frcnn_core.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(5_000_000); del x  # 20 MB, over the default mmap threshold, freed
before = faults(); x = torch.ones(4_000_000); del x  # 16 MB: fits the freed block
print(kept, faults() - before)
"""


def _second_allocation(mode: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if k not in USER_VARIABLES}
    env["PYTHONPATH"] = os.getcwd()
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, check=True)
    kept, faults = out.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_kept_memory_spares_the_page_faults_of_a_second_large_tensor():
    _, default_faults = _second_allocation("default")
    kept, kept_faults = _second_allocation("keep")
    assert kept == "True"
    assert default_faults > 1000  # 16 MB mapped afresh: thousands of 4 kB pages
    assert kept_faults < default_faults / 10


def test_a_users_own_malloc_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert keep_freed_memory() is False
