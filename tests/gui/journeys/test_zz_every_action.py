"""Every menu and toolbar action was triggered by some journey of this run (this file runs last in
the folder: pytest collects files in name order). Run the whole folder: alone it fails."""
from __future__ import annotations

from journeys_helpers import OFFERED, TRIGGERED

# Actions whose whole effect lives outside the window: a file dialog of the platform, or a submenu
# filled at show time. Each is covered another way, named here.
EXEMPT: dict[str, str] = {}


def test_every_menu_and_toolbar_action_was_triggered_by_a_journey():
    assert OFFERED, "no journey ran before this test: run the whole tests/gui/journeys folder"
    untouched = sorted(OFFERED - TRIGGERED - set(EXEMPT))
    assert not untouched, f"{len(untouched)} actions no journey triggered: {untouched}"
