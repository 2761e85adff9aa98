"""resnet50-fpn images/s on a CUDA GPU, ours against torchvision on the same card, fp32 and AMP
(float16 autocast), batch 1 and 8; and a check that ours == torchvision in fp32 on the GPU.

Weights: `common.calibrated_torchvision` (seeded, BatchNorm statistics from one photo), saved
once, loaded by both. Photos are resized by each model to a shorter side of 800 px; a batch of 8
is a list of 8 sample photos. Variants take turns (`common.interleaved_timings`, with
`torch.cuda.synchronize` around each call) after warm-up. Peak GPU memory is one extra call per
variant. About 30 s on an H100.

Run on a GPU machine: `python benchmarks/gpu_check.py [--iters 20] [--samples DIR]`; writes
`$OUT/gpu_results.md` when OUT is set. Smoke test without a GPU:
`python benchmarks/gpu_check.py --device cpu --iters 1 --warmup 0 --batch-sizes 1,2`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import traceback
from pathlib import Path

import torch
import torchvision

from common import (
    SAMPLES_DIR,
    Comparison,
    atomic_write_text,
    calibrated_torchvision,
    compare_detections,
    interleaved_timings,
    load_photo,
    norm_layer_name,
    ours_from_file,
    summary,
    torchvision_from_file,
    write_weights_file,
)

PHOTOS = ("astronaut.png", "rocket.jpg", "china.jpg", "coffee.png", "chelsea.png", "flower.jpg")
# Variant -> (which model, wrapped in torch.inference_mode by the caller?): each as its users call it.
VARIANTS = {"torchvision": ("torchvision", True), "ours": ("ours", True), "ours-fast": ("ours-fast", True)}


def require_device(device: str) -> None:
    """Exit with one clear line when `device` is CUDA and CUDA is unusable."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"gpu_check: CUDA is not available (torch {torch.__version__}, built for CUDA "
                 f"{torch.version.cuda or 'none'}); run it on a GPU machine, or smoke-test with "
                 "--device cpu --iters 1 --warmup 0 --batch-sizes 1,2")


def precision_context(precision: str, device: str):
    """fp32: nothing; amp: float16 autocast on CUDA (bfloat16 on the CPU, which has no fp16 autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.float16 if device_type == "cuda" else torch.bfloat16)


def caller(model, images: list[torch.Tensor], precision: str, device: str, inference_mode: bool):
    """A no-argument callable: one batched inference, in the given precision and grad mode."""
    def call():
        grad_mode = torch.inference_mode() if inference_mode else contextlib.nullcontext()
        with grad_mode, precision_context(precision, device):
            return model(images)
    return call


def synchronizer(device: str):
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def peak_memory_mb(call, device: str) -> float | None:
    """Peak GPU memory (MB) allocated during one `call()`; None off CUDA."""
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def measure_cell(models: dict, images: list[torch.Tensor], precision: str, device: str,
                 iters: int, warmup: int) -> dict:
    """Images/s, output equality (against torchvision) and peak memory of every variant."""
    runs = {name: caller(models[which], images, precision, device, inference_mode)
            for name, (which, inference_mode) in VARIANTS.items()}
    times, results = interleaved_timings(runs, iters, warmup, synchronizer(device))
    cell = {"batch": len(images), "precision": precision, "variants": {}}
    for name, values in times.items():
        seconds = summary(values)
        cell["variants"][name] = {
            "images_per_s": len(images) / seconds["median"],
            "seconds": seconds,
            "equal": compare_detections(results[name], results["torchvision"]),
            "peak_mb": peak_memory_mb(runs[name], device),
        }
    return cell


def failed_cell(batch: int, precision: str, error: BaseException) -> dict:
    traceback.print_exception(error)
    first_line = (str(error).splitlines() or [""])[0][:200]
    return {"batch": batch, "precision": precision, "error": f"{type(error).__name__}: {first_line}"}


def run(device: str, iters: int, warmup: int, batch_sizes: list[int], samples_dir: Path) -> dict:
    """Calibrate weights on `device`, load both models from the saved file, measure every cell."""
    require_device(device)
    photos = [load_photo(PHOTOS[index % len(PHOTOS)], samples_dir).to(device) for index in range(max(batch_sizes))]
    with tempfile.TemporaryDirectory() as directory:
        calibrated = calibrated_torchvision(device, samples_dir)
        norm_layer = norm_layer_name(calibrated)
        weights = write_weights_file(calibrated, directory)
        del calibrated
        models = {"torchvision": torchvision_from_file(weights, device), "ours": ours_from_file(weights, device),
                  "ours-fast": ours_from_file(weights, device).use_channels_last()}
    cells = []
    for precision in ("fp32", "amp"):
        for batch in batch_sizes:
            try:
                cells.append(measure_cell(models, photos[:batch], precision, device, iters, warmup))
            except Exception as error:  # one failing cell (say, a dtype clash under autocast) must not hide the others
                cells.append(failed_cell(batch, precision, error))
    amp_dtype = "float16" if torch.device(device).type == "cuda" else "bfloat16"
    return {"device": device_name(device), "norm_layer": norm_layer, "amp_dtype": amp_dtype,
            "iters": iters, "warmup": warmup, "cells": cells}


def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def fp32_equal(result: dict) -> bool:
    """True when every fp32 cell ran and ours equals torchvision in each."""
    fp32 = [cell for cell in result["cells"] if cell["precision"] == "fp32"]
    return bool(fp32) and all("error" not in cell and cell["variants"]["ours"]["equal"].equal for cell in fp32)


def _equal_text(comparison: Comparison) -> str:
    return comparison.summary().replace("largest ", "")


def markdown(result: dict) -> str:
    """Header lines and one table row per (precision, batch)."""
    lines = [
        f"# GPU check: resnet50-fpn on {result['device']}",
        "",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}), "
        f"torchvision {torchvision.__version__}; cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"matmul precision {torch.get_float32_matmul_precision()}",
        f"- norm layer that ran: {result['norm_layer']}; {result['warmup']} warm-up + {result['iters']} timed "
        f"calls per variant, variants taking turns; images/s from the median call; "
        f"amp = {result['amp_dtype']} autocast",
        "- both run under `torch.inference_mode()`, as their users call them for speed",
        f"- **fp32 outputs ours == torchvision: {'yes' if fp32_equal(result) else 'NO'}**",
        "",
        "| precision | batch | torchvision img/s | ours img/s | ours / torchvision time "
        "| peak GPU MB torchvision / ours / fast | ours == torchvision | ours `--fast` (channels-last) img/s "
        "| fast == torchvision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in result["cells"]:
        if "error" in cell:
            lines.append(f"| {cell['precision']} | {cell['batch']} | error: {cell['error']} |||||||")
            continue
        variants = cell["variants"]
        ratio = variants["ours"]["seconds"]["median"] / variants["torchvision"]["seconds"]["median"]
        peaks = " / ".join("n/a" if v["peak_mb"] is None else f"{v['peak_mb']:.0f}" for v in variants.values())
        lines.append(
            f"| {cell['precision']} | {cell['batch']} | {variants['torchvision']['images_per_s']:.1f} "
            f"| {variants['ours']['images_per_s']:.1f} "
            f"| {ratio:.2f} | {peaks} | {_equal_text(variants['ours']['equal'])} "
            f"| {variants['ours-fast']['images_per_s']:.1f} | {_equal_text(variants['ours-fast']['equal'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a smoke test")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per variant and cell (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated (default 1,8)")
    parser.add_argument("--samples", type=Path, default=SAMPLES_DIR, help=f"folder of {', '.join(PHOTOS)}")
    args = parser.parse_args()
    require_device(args.device)
    result = run(args.device, args.iters, args.warmup, [int(b) for b in args.batch_sizes.split(",")], args.samples)
    text = markdown(result)
    print(text)
    if os.environ.get("OUT"):
        target = Path(os.environ["OUT"]) / "gpu_results.md"
        atomic_write_text(target, text)
        print(f"written to {target}")
    if not fp32_equal(result):
        sys.exit("gpu_check: fp32 outputs of ours and torchvision differ (see the table)")


if __name__ == "__main__":
    main()
