"""bench_saliency.py end to end on two detections: both methods measured, the rows say the verdict."""
from __future__ import annotations

from frcnn_core.inspect.saliency import DRISE, HIRES_CAM

import bench_saliency


def test_two_detections_give_both_methods_and_the_preview():
    result = bench_saliency.run(detections=2, masks=8)
    assert result["detections"] == 2 and set(result["methods"]) == {DRISE, HIRES_CAM}
    for numbers in result["methods"].values():
        assert -1 <= numbers["random_drop"] <= 1 and -1 <= numbers["salient_drop"] <= 1
        assert numbers["seconds_median"] > 0
    assert 0 < result["preview_s_median"] <= result["preview_s_max"]
    rows = dict(bench_saliency.lines(result))
    assert len(rows) == 3 and any(name.startswith("D-RISE preview (8 masks") for name in rows)
    assert all(("faithful" in value) for name, value in rows.items() if "deletion test" in name)


def test_a_gpu_run_is_held_to_one_second():
    result = {"detections": 1, "masks": 8, "threads": 16, "device": "cuda", "methods": {}, "preview_masks": 8,
              "preview_s_median": 0.4, "preview_s_max": 0.5, "target_ratio": 2.0}
    rows = dict(bench_saliency.lines(result))
    assert rows == {"D-RISE preview (8 masks, one detection, cuda)": "0.4 s median, 0.5 s max (under 1)"}
