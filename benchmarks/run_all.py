"""Run every CPU benchmark, print one Markdown table and write it to benchmarks/results.md.

Run: `.venv/bin/python benchmarks/run_all.py [--repeats N]` (what `make bench` runs).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision

import bench_errors
import bench_inference
import bench_saliency
import bench_seed_stages
import bench_startup
from common import atomic_write_text, cpu_model

RESULTS_PATH = Path(__file__).resolve().parent / "results.md"


def gui_benchmark() -> dict:
    """bench_gui.py's result, from a fresh process: there the UI thread meets torch only after the
    engine has set torch's thread count, as in the application (here torch has run already)."""
    script = Path(__file__).resolve().with_name("bench_gui.py")
    done = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def _seconds(stats: dict) -> str:
    return f"{stats['median']:.2f} s (min {stats['min']:.2f}, n={stats['n']})"


def _milliseconds(stats: dict) -> str:
    return f"{stats['median']:.2f} ms (min {stats['min']:.2f}, n={stats['n']})"


def _times(factor: float) -> str:
    return f"{factor:.0f}x" if factor >= 10 else f"{factor:.1f}x"


def _rss(rss: dict, variant: str) -> str:
    if variant not in rss:
        return "not measured"
    peak = rss[variant]
    return f"{peak['ru_maxrss_mb']:.0f} MB (after loading the model: {peak['after_load_mb']:.0f} MB)"


def _vmhwm_note(rss: dict) -> str:
    if not rss:
        return ""
    gap = max(abs(peak["ru_maxrss_mb"] - peak["vmhwm_mb"]) for peak in rss.values())
    return f" (/proc VmHWM agrees within {gap:.0f} MB)"


def table(inference: dict, seed: dict, startup: dict, errors: dict, saliency: dict,
          gui_rows: list[tuple[str, str]]) -> str:
    """The Markdown table of the benchmarks' results."""
    seconds, rss, ms = inference["seconds"], inference["rss_mb"], seed["ms"]
    rows = [
        ("resnet50-fpn inference, torchvision (`inference_mode`)", _seconds(seconds["torchvision"])),
        ("resnet50-fpn inference, ours (`inference_mode`)", _seconds(seconds["ours"])),
        ("ratio ours / torchvision (medians)", f"{inference['ratio']:.2f}"),
        ("outputs equal (count, labels, boxes ≤ 1e-3 px, scores ≤ 1e-4)", inference["outputs"].summary()),
        ("resnet50-fpn inference, ours `--fast` (channels-last)", _seconds(seconds["ours-fast"])),
        ("ratio ours `--fast` / torchvision (medians)", f"{inference['fast_ratio']:.2f}"),
        ("`--fast` outputs equal to torchvision's (same tolerances)", inference["fast_outputs"].summary()),
        ("ours with `trace=True`", _seconds(seconds["ours-trace"])),
        ("trace overhead (trace=True / plain, medians)",
         f"{inference['trace_ratio']:.2f}; detections equal to the plain call: {inference['trace_outputs'].summary()}"),
        ("peak RSS, torchvision (`inference_mode`)", _rss(rss, "torchvision")),
        ("peak RSS, ours (`inference_mode`)", _rss(rss, "ours")),
        ("peak RSS, ours with `trace=True`", _rss(rss, "ours-trace")),
        ("peak RSS, ours `--fast`", _rss(rss, "ours-fast")),
        ("seed anchors + labels + sampling, ours (vectorised)", _milliseconds(ms["ours"])),
        ("same, ours with torch limited to 1 thread (diagnostic)", _milliseconds(ms["ours_1_thread"])),
        ("seed anchors + labels + sampling, naive loops",
         f"{_milliseconds(ms['naive'])}; anchor loops {ms['naive_anchors']['median']:.1f} ms, "
         f"labelling {ms['naive_labels']['median']:.1f} ms"),
        ("seed speed-up naive / ours (medians)",
         f"{_times(seed['speedup'])} with default threads; {_times(seed['speedup_1_thread'])} with ours on 1 thread"),
        ("start-up: `import torch, torchvision` (process start → imported)", _seconds(startup["s"]["torch"])),
        ("start-up: the window shown (process start → exposed, offscreen)", _seconds(startup["s"]["window"])),
        ("start-up: window / torch import (medians; at most 0.5)",
         f"{startup['ratio']:.2f}; torch imported when the window was shown: "
         f"{'yes' if startup['torch_when_shown'] else 'no'}"),
        ("start-up: the first detections drawn (process start → drawn)", _seconds(startup["s"]["detections"])),
        (f"`frcnn detect`, BCCD val ({errors['images']} images, bccd-demo)", _seconds(errors["seconds"]["detect"])),
        ("`frcnn errors`, the same images", _seconds(errors["seconds"]["errors"])),
        (f"errors / detect (medians; at most {errors['target']})", f"{errors['ratio']:.2f}"),
        *bench_saliency.lines(saliency),
        *gui_rows,
    ]
    lines = ["| measure | result |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def report(inference: dict, seed: dict, startup: dict, errors: dict, saliency: dict, gui: dict,
           gui_rows: list[tuple[str, str]], started: datetime.datetime, runtime_s: float, load: tuple) -> str:
    """results.md: the context, then the table, then what the seed run labelled."""
    counts = seed["counts"]
    context = [
        f"# Benchmarks ({started:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {inference['threads']} (default)",
        f"- load average (1 min) at start {load[0]:.1f}, at end {load[1]:.1f}; total runtime {runtime_s:.0f} s",
        f"- inference: {inference['photo']} {inference['image_size'][1]}x{inference['image_size'][0]} resized to "
        f"{inference['input_size'][1]}x{inference['input_size'][0]}; seeded random weights with BatchNorm statistics "
        f"from one photo (norm layer that ran: {inference['norm_layer']}); medians after 1 warm-up, "
        "variants taking turns; peak RSS = ru_maxrss of a fresh subprocess after one inference"
        f"{_vmhwm_note(inference['rss_mb'])}",
        f"- seed: {counts['anchors']:,} anchors, {counts['inside']:,} inside, {counts['positive']} positive, "
        f"{counts['negative']:,} negative, {counts['ignored']:,} ignored; sampled {counts['sampled_positive']} + "
        f"{counts['sampled_negative']} — identical labels anchor by anchor in both implementations",
        f"- GUI (`bench_gui.py`, offscreen): the window's engine on {gui['threads']} torch thread(s) (half the cores); "
        "each latency from the event to the repaint that shows its result, median and p95 after 2 untimed",
        "",
        "",
    ]
    return "\n".join(context) + table(inference, seed, startup, errors, saliency, gui_rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed inferences per variant (default 5)")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    inference = bench_inference.run(args.repeats)  # first: its subprocesses fork from a small process
    seed = bench_seed_stages.run()
    startup = bench_startup.run()
    errors = bench_errors.run()
    saliency = bench_saliency.run()
    gui = gui_benchmark()
    import bench_gui  # only now: Qt and the window's code stay out of the processes the others fork

    text = report(inference, seed, startup, errors, saliency, gui, bench_gui.lines(gui), started,
                  time.perf_counter() - start, (load_start, os.getloadavg()[0]))
    print(text)
    atomic_write_text(RESULTS_PATH, text)
    print(f"written to {RESULTS_PATH}")


if __name__ == "__main__":
    main()
