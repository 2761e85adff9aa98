"""`frcnn explain IMAGE`: which pixels one detection's score (or a proposal's objectness, or a box
of the user's) rests on, as a picture, with the deletion test that says how faithful the map is.

    frcnn explain IMAGE --detection K | --proposal K | --box X1,Y1,X2,Y2 [--label NAME]
                  [--method drise|hirescam] [--masks N] [--seed S] --out HEAT.png [--json OUT]
"""
from __future__ import annotations

import argparse
import time

import torch
from tqdm import tqdm

from frcnn_core.errors import InputError
from frcnn_core.inspect.saliency import (
    DRISE,
    METHODS,
    PROPOSAL,
    RANDOM_DRAWS,
    REFINED_MASKS,
    DeletionTest,
    SaliencyTarget,
    box_target,
    deletion_test,
    detection_target,
    drise,
    hires_cam,
    proposal_target,
)
from frcnn_core.io.atomic import write_atomic
from frcnn_core.io.images import load_image
from frcnn_core.modeling.model import FasterRCNN
from frcnn_core.render.saliency_picture import render_saliency


def box_argument(text: str) -> tuple[float, float, float, float]:
    """An argparse type: "X1,Y1,X2,Y2" as four numbers."""
    parts = text.split(",")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not X1,Y1,X2,Y2 (four numbers, commas between)")
    return values


def add_arguments(explain: argparse.ArgumentParser, counts) -> None:
    """The command's own arguments; `counts` is the CLI's argparse type for a whole number >= 0."""
    explain.add_argument("image", metavar="IMAGE")
    what = explain.add_mutually_exclusive_group(required=True)
    what.add_argument("--detection", type=counts, metavar="K",
                      help="the K-th detection, best first from 0 (as `frcnn detect --json` lists them)")
    what.add_argument("--proposal", type=counts, metavar="K", help="the K-th proposal after NMS: its objectness")
    what.add_argument("--box", type=box_argument, metavar="X1,Y1,X2,Y2",
                      help="a box of yours in image pixels, scored by the box head as a RoI "
                           "(--box=-5,... when it starts with a minus)")
    explain.add_argument("--label", help="with --box: the class to explain (default: the box head's likeliest)")
    explain.add_argument("--method", choices=list(METHODS), default=DRISE,
                         help="drise: random masks, no gradients (default); "
                              "hirescam: HiResCAM (gradient x activation) at the feature level")
    explain.add_argument("--masks", type=counts, default=REFINED_MASKS,
                         help=f"D-RISE's mask count (default {REFINED_MASKS})")
    explain.add_argument("--seed", type=counts, default=0, help="seed of D-RISE's masks and the random deletions")
    explain.add_argument("--out", required=True, metavar="HEAT.png", help="the map over the image")
    explain.add_argument("--json", metavar="OUT", help="write the target and the deletion test as JSON")


def choose_target(model: FasterRCNN, image: torch.Tensor, args) -> SaliencyTarget:
    """The target the arguments name; InputError for one that is not there."""
    if args.box is not None:
        label = None if args.label is None else _label(model, args.label)
        return box_target(model, image, torch.tensor(args.box), label)
    if args.label is not None:
        raise InputError(None, "--label goes with --box (a detection or proposal has its own class)")
    with torch.inference_mode():
        _, traces = model([image.to(next(model.parameters()).device)], trace=True)
    if args.proposal is not None:
        return proposal_target(traces[0].proposals, args.proposal)
    return detection_target(traces[0], args.detection)


def _label(model: FasterRCNN, name: str) -> int:
    names = model.class_names
    if name in names[1:]:
        return names.index(name)
    if name.isdigit() and 1 <= int(name) < len(names):
        return int(name)
    raise InputError(None, f"--label {name!r} is not one of the model's classes ({', '.join(names[1:])})")


def compute_map(model: FasterRCNN, image: torch.Tensor, target: SaliencyTarget, method: str, masks: int,
                seed: int) -> torch.Tensor:
    """The map (H, W), D-RISE's masks counted on a progress bar."""
    if method != DRISE:
        return hires_cam(model, image, target)
    steps = drise(model, image, target, masks, generator=torch.Generator().manual_seed(seed))
    with tqdm(total=masks, unit="mask", desc="D-RISE", leave=False) as bar:
        for step in steps:
            bar.n = step.done
            bar.refresh()
    return step.heatmap


def describe_target(target: SaliencyTarget, class_names: list[str]) -> str:
    """"WBC 0.998" or "objectness 0.93"."""
    if target.kind == PROPOSAL:
        return f"objectness {target.score:.3f}"
    return f"{class_names[target.label]} {target.score:.3f}"


def deletion_words(test: DeletionTest) -> str:
    """The deletion test in one sentence."""
    share = f"{test.share:.0%}"
    ratio = (f"{test.salient_drop / test.random_drop:.1f}x the random drop" if test.random_drop > 0
             else "the random deletion does not lower it")
    return (f"deleting the {share} most salient pixels (filled with the image mean): score {test.score:.3f} -> "
            f"{test.salient:.3f}; a random {share} (mean of {RANDOM_DRAWS}): -> {test.random:.3f}; "
            f"drop {test.salient_drop:.3f} against {test.random_drop:.3f}: {ratio}")


def explain(model: FasterRCNN, args) -> dict:
    """Run the command on a loaded model: write the picture, print the lines, return the JSON record."""
    image = load_image(args.image).tensor
    try:
        target = choose_target(model, image, args)
    except InputError as error:
        raise InputError(args.image, error.problem) from None
    start = time.perf_counter()
    heatmap = compute_map(model, image, target, args.method, args.masks, args.seed)
    seconds = time.perf_counter() - start
    test = deletion_test(model, image, target, heatmap, generator=torch.Generator().manual_seed(args.seed))
    what = describe_target(target, model.class_names)
    counted = f", {args.masks} masks" if args.method == DRISE else ""
    headline = f"{args.image}: {target.kind} ({what}), {METHODS[args.method]}{counted} in {seconds:.1f} s"
    picture = render_saliency(image, heatmap, target.box, what, f"{METHODS[args.method]}{counted}: "
                              f"{deletion_words(test)}")
    write_atomic(args.out, lambda path: picture.save(path, format="PNG"))
    print(headline)
    print(deletion_words(test))
    return {"image": str(args.image), "kind": target.kind, "label": target.label,
            "label_name": model.class_names[target.label] if target.label else None,
            "box": [float(v) for v in target.box], "score": target.score, "method": args.method,
            "masks": args.masks if args.method == DRISE else None, "seconds": seconds,
            "deletion": {"share": test.share, "score": test.score, "salient": test.salient, "random": test.random,
                         "salient_drop": test.salient_drop, "random_drop": test.random_drop}}
