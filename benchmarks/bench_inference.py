"""resnet50-fpn inference on the CPU, ours against torchvision, same weights, same photo.

Each is called the way its users call it for speed: `model.eval()` then
`with torch.inference_mode(): model([image])` (ours also with `trace=True`, for the trace
overhead). Weights: `common.calibrated_torchvision`
(seeded, BatchNorm statistics from one real photo), saved once and loaded by both. Timings take
turns round by round (see `common.interleaved_timings`); peak memory is the `ru_maxrss` of a fresh
subprocess per variant after one inference.

Run: `.venv/bin/python benchmarks/bench_inference.py [--repeats N] [--profile]`.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from frcnn_core.modeling.transform import prepare

from common import (
    BENCH_PHOTO,
    compare_detections,
    interleaved_timings,
    load_photo,
    make_weights_file,
    ours_from_file,
    summary,
    torchvision_from_file,
)

# Variant name -> (which model, called with trace=True?).
VARIANTS = {
    "torchvision": ("torchvision", False),
    "ours": ("ours", False),
    "ours-trace": ("ours", True),
    "ours-fast": ("ours-fast", False),
}


def load_model(which: str, weights: str):
    if which == "torchvision":
        return torchvision_from_file(weights)
    model = ours_from_file(weights)
    return model.use_channels_last() if which == "ours-fast" else model


def caller(variant: str, model, image: torch.Tensor):
    """A no-argument callable running one inference under inference mode the way `variant` says;
    returns detections."""
    _, trace = VARIANTS[variant]

    def call():
        with torch.inference_mode():
            return model([image], trace=True)[0] if trace else model([image])

    return call


def _peak_rss_mb() -> dict:
    """ru_maxrss (Linux: KiB) and, as a cross-check, /proc's VmHWM (peak of this process image
    only; ru_maxrss would also include a parent's RSS at fork time, were that larger)."""
    peak = {"ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak["vmhwm_mb"] = int(line.split()[1]) / 1024
    return peak


def rss_child(variant: str, weights: str) -> None:
    """Subprocess entry: load, note the peak, run one inference, print both peaks as JSON."""
    model = load_model(VARIANTS[variant][0], weights)
    call = caller(variant, model, load_photo(BENCH_PHOTO))
    after_load = _peak_rss_mb()["ru_maxrss_mb"]
    call()
    print(json.dumps({"after_load_mb": after_load, **_peak_rss_mb()}))


def weights_child(directory: str) -> None:
    """Subprocess entry: calibrate and save the weights (keeps the parent's RSS small)."""
    path, norm_layer = make_weights_file(directory)
    print(json.dumps({"path": path, "norm_layer": norm_layer}))


def _child(*args: str) -> dict:
    """Run this file in a fresh interpreter with `args`; its last stdout line, parsed as JSON."""
    completed = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"subprocess {' '.join(args)} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def profile_top_ops(weights: str, rows: int = 12) -> str:
    """One profiled inference per timed variant; the ops with the most self CPU time, as text."""
    image = load_photo(BENCH_PHOTO)
    report = []
    for variant in VARIANTS:
        call = caller(variant, load_model(VARIANTS[variant][0], weights), image)
        call()
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            call()
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
        report.append(f"== {variant}\n{table}")
    return "\n".join(report)


def run(repeats: int = 5, warmup: int = 1, with_rss: bool = True) -> dict:
    """Time, compare and (optionally) measure peak memory; returns a dict of results.

    Calibration and the memory measurements run in subprocesses before this process loads any
    model, so that no child inherits a larger ru_maxrss from it.
    """
    with tempfile.TemporaryDirectory() as directory:
        made = _child("--make-weights", directory)
        weights = made["path"]
        rss = {}
        if with_rss:
            rss = {variant: _child("--rss-child", variant, "--weights", weights) for variant in VARIANTS}
        image = load_photo(BENCH_PHOTO)
        models = {which: load_model(which, weights) for which in ("torchvision", "ours", "ours-fast")}
        runs = {variant: caller(variant, models[VARIANTS[variant][0]], image) for variant in VARIANTS}
        times, results = interleaved_timings(runs, repeats, warmup)
        input_size = prepare([image], models["ours"].config.transform).input_sizes[0]
    seconds = {variant: summary(values) for variant, values in times.items()}
    return {
        "seconds": seconds,
        "ratio": seconds["ours"]["median"] / seconds["torchvision"]["median"],
        "fast_ratio": seconds["ours-fast"]["median"] / seconds["torchvision"]["median"],
        "fast_outputs": compare_detections(results["ours-fast"], results["torchvision"]),
        "trace_ratio": seconds["ours-trace"]["median"] / seconds["ours"]["median"],
        "outputs": compare_detections(results["ours"], results["torchvision"]),
        "trace_outputs": compare_detections(results["ours-trace"], results["ours"]),
        "rss_mb": rss,
        "norm_layer": made["norm_layer"],
        "photo": BENCH_PHOTO,
        "image_size": tuple(image.shape[1:]),
        "input_size": input_size,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed inferences of each (default 5)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--profile", action="store_true", help="print each variant's top ops instead")
    parser.add_argument("--rss-child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--make-weights", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_weights:
        weights_child(args.make_weights)
        return
    if args.rss_child:
        rss_child(args.rss_child, args.weights)
        return
    if args.profile:
        with tempfile.TemporaryDirectory() as directory:
            print(profile_top_ops(make_weights_file(directory)[0]))
        return
    result = run(args.repeats, args.warmup, not args.no_rss)
    print(f"photo {result['photo']} {result['image_size']} -> input {result['input_size']}; "
          f"norm layer {result['norm_layer']}; {result['threads']} threads")
    for variant, stats in result["seconds"].items():
        print(f"{variant:12s} median {stats['median']:.2f} s  min {stats['min']:.2f} s  (n={stats['n']})")
    print(f"ours / torchvision: {result['ratio']:.2f}; trace overhead: {result['trace_ratio']:.2f}")
    for name in ("outputs", "trace_outputs"):
        print(f"{name} equal: {result[name].summary()}")
    for variant, rss in result["rss_mb"].items():
        print(f"peak RSS {variant}: {rss['ru_maxrss_mb']:.0f} MB (VmHWM {rss['vmhwm_mb']:.0f} MB; "
              f"after load {rss['after_load_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
