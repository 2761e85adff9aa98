"""`frcnn` command line: models, detect, trace, train, eval, diagnose, errors, explain (DESIGN.md, "CLI contract").

A user's mistake (bad image, annotation, checkpoint, model name) is one line on stderr and exit
status 2; `--verbose` adds the traceback.
"""
from __future__ import annotations

import argparse
import math
import sys
import traceback
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from frcnn_core.allocator import keep_freed_memory
from frcnn_core.analysis.errors import error_analysis
from frcnn_core.analysis.evaluate import evaluate
from frcnn_core.cli import errors_report, explain, reports
from frcnn_core.data.augment import AugmentConfig
from frcnn_core.data.formats import open_dataset
from frcnn_core.data.samples import SKIPPED_NO_ANNOTATION
from frcnn_core.devices import DEVICES, resolve_device
from frcnn_core.distributed import process_device, process_group
from frcnn_core.errors import InputError
from frcnn_core.inspect.funnel import diagnose_dataset, recall_funnel
from frcnn_core.io.images import load_image
from frcnn_core.modeling.config import PRESETS
from frcnn_core.modeling.zoo import MODELS, WEIGHT_CHOICES, build_model
from frcnn_core.names import BUNDLED, default_model
from frcnn_core.training.budget import ANCHOR_CHOICES, plan_budget
from frcnn_core.training.runs import SETTINGS_FILE, read_json
from frcnn_core.training.train import TrainSettings, train


def _in_range(kind: type, low: float, high: float, what: str):
    """An argparse type: `kind(text)` (argparse reports a ValueError), then a finite value in [low, high]."""
    def parse(text: str):
        value = kind(text)
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = kind.__name__  # argparse's "invalid int value" names the kind
    return parse


COUNT = _in_range(int, 1, math.inf, "a whole number >= 1")
NATURAL = _in_range(int, 0, math.inf, "a whole number >= 0")
SEED = _in_range(int, 0, 2**63 - 1, "a seed from 0 to 2**63 - 1")
FRACTION = _in_range(float, 0.0, 1.0, "a number from 0 to 1")
GPU_BATCH = 8  # `frcnn errors`' images per forward pass on a GPU (on a CPU one at a time is fastest)
NON_NEGATIVE = _in_range(float, 0.0, math.inf, "a number >= 0")


def _model_arguments(parser: argparse.ArgumentParser, model: str | None = "default") -> None:
    """--model (default: `model`; "default": the default model), --weights, --preset, --device, --fast."""
    parser.add_argument("--model", default=default_model() if model == "default" else model,
                        help=f"model name ({', '.join(MODELS)}) or checkpoint file")
    parser.add_argument("--weights", default=None,
                        help=f"{' | '.join(WEIGHT_CHOICES)} | PATH "
                             "(default: coco where the model has it, else imagenet)")
    parser.add_argument("--preset", choices=PRESETS, default=None, help="stage settings (default: the model's own)")
    parser.add_argument("--device", type=_device_name, default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--fast", action="store_true",
                        help="channels-last convolutions: ~20%% faster on a CPU, "
                             "floats no longer bit-equal to torchvision's")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frcnn",
                                     description="Faster R-CNN Studio: detect and look inside the detector")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the model names")

    detect = commands.add_parser("detect", help="detect objects in images")
    detect.add_argument("images", nargs="+", metavar="IMAGE")
    _model_arguments(detect)
    detect.add_argument("--score-thresh", type=FRACTION, default=None, help="keep detections scoring above this")
    detect.add_argument("--json", metavar="OUT", help="write detections as JSON ('-' for stdout)")
    detect.add_argument("--vis", metavar="DIR", help="write a picture of the detections per image")

    trace = commands.add_parser("trace", help="run one image through every stage and report each")
    trace.add_argument("image", metavar="IMAGE")
    _model_arguments(trace)
    trace.add_argument("--gt", metavar="ANNOTATION", help="VOC XML ground truth: adds anchor labels and RoI samples")
    trace.add_argument("--seed", type=SEED, default=0, help="seed of the sampling generator")
    trace.add_argument("--json", metavar="OUT", help="write the stage summary as JSON ('-' for stdout)")
    trace.add_argument("--out", metavar="DIR", help="write a picture of each stage")
    _train_arguments(commands.add_parser("train", help="fine-tune a detector on a dataset"))

    evaluation = commands.add_parser("eval", help="COCO AP, VOC07 mAP, losses and plots on a dataset")
    _model_arguments(evaluation)
    evaluation.add_argument("--data", required=True, metavar="DATASET")
    evaluation.add_argument("--split", default="val", help="ImageSets/Main/<split>.txt of a VOC folder (default val)")
    evaluation.add_argument("--json", metavar="OUT", help="write the metrics as JSON ('-' for stdout)")
    evaluation.add_argument("--plots", metavar="DIR", help="write PR curves and the confusion matrix as PNGs")
    evaluation.add_argument("--no-losses", action="store_true", help="skip the per-image validation losses")

    diagnose = commands.add_parser("diagnose", help="where GT boxes are lost (recall funnel), anchor coverage")
    _model_arguments(diagnose)
    diagnose.add_argument("--data", required=True, metavar="DATASET")
    diagnose.add_argument("--split", default="val", help="ImageSets/Main/<split>.txt of a VOC folder (default val)")
    diagnose.add_argument("--score-thresh", type=FRACTION, default=None,
                          help="a detection counts from this score (default: the model's own threshold)")
    diagnose.add_argument("--json", metavar="OUT", help="write the diagnosis as JSON ('-' for stdout)")
    diagnose.add_argument("--out", metavar="DIR", help="write diagnose.json and a best-anchor-IoU histogram there")
    _errors_arguments(commands.add_parser(
        "errors", help="TIDE's error types and the stage that lost each missed box, over a dataset (torchrun-ready)"))
    explaining = commands.add_parser("explain", help="which pixels a detection's score rests on (saliency), "
                                                     "with the deletion test of the map")
    explain.add_arguments(explaining, NATURAL)
    _model_arguments(explaining)
    return parser


def _errors_arguments(errors: argparse.ArgumentParser) -> None:
    _model_arguments(errors)
    errors.add_argument("--data", required=True, metavar="DATASET")
    errors.add_argument("--split", default="val", help="ImageSets/Main/<split>.txt of a VOC folder (default val)")
    errors.add_argument("--score-thresh", type=FRACTION, default=None,
                        help="the lowest detection score analysed (default: the model's own)")
    errors.add_argument("--batch-size", type=COUNT, default=None,
                        help=f"images per forward pass (default {GPU_BATCH} on a GPU, 1 on the CPU)")
    errors.add_argument("--json", metavar="OUT", help="write the analysis as JSON ('-' for stdout)")
    errors.add_argument("--plots", metavar="DIR", help="write the TIDE summary and the errors by class as PNGs")


def _train_arguments(train: argparse.ArgumentParser) -> None:
    """`frcnn train`. The settings default to None so that `--minutes` can tell the ones you gave
    (they win over its plan) from the ones it chooses; TRAIN_DEFAULTS fill them in otherwise."""
    train.add_argument("--data", required=True, metavar="DATASET", help="VOC folder, folder of images + XML, COCO JSON")
    train.add_argument("--split", default="train", help="ImageSets/Main/<split>.txt of a VOC folder (default train)")
    _model_arguments(train, model=None)
    train.add_argument("--minutes", type=_in_range(float, 0.0, math.inf, "a number of minutes"),
                       help="a time budget: the run picks the model, input size, schedule and hold-out from the "
                            "data, validates as it goes and keeps the best checkpoint (flags you give win)")
    train.add_argument("--anchors", choices=ANCHOR_CHOICES, default="auto",
                       help="with --minutes: fit the anchors to the training boxes when the detection heads start "
                            "new (auto), whenever it covers more boxes (fit), or keep the model's (model)")
    train.add_argument("--iters", type=COUNT, help="iterations (default: --epochs 1)")
    train.add_argument("--epochs", type=COUNT)
    train.add_argument("--batch-size", type=COUNT, help=f"default {TRAIN_DEFAULTS['batch_size']}")
    train.add_argument("--lr", type=NON_NEGATIVE, help=f"default {TRAIN_DEFAULTS['lr']}")
    train.add_argument("--warmup", type=NATURAL, help=f"warm-up iterations (default {TRAIN_DEFAULTS['warmup_iters']})")
    train.add_argument("--schedule", choices=("cosine", "step"), help="default cosine")
    train.add_argument("--frozen-stages", type=NATURAL, default=None, help="freeze the first N backbone stages")
    train.add_argument("--checkpoint-every", type=COUNT, help=f"default {TRAIN_DEFAULTS['checkpoint_every']}")
    train.add_argument("--seed", type=SEED, default=0)
    train.add_argument("--hflip", type=FRACTION, help="probability of a horizontal flip (default 0.5)")
    train.add_argument("--vflip", type=FRACTION, help="probability of a vertical flip (default 0)")
    train.add_argument("--scale-jitter", type=_in_range(float, 1e-3, 1e3, "a scale from 0.001 to 1000"), nargs=2,
                       metavar=("LO", "HI"))
    train.add_argument("--photometric", action="store_true", help="brightness / contrast / saturation jitter")
    train.add_argument("--input-size", type=_in_range(int, 32, 4096, "a size in pixels from 32 to 4096"), nargs=2,
                       metavar=("SHORT", "LONG"), help="shorter side SHORT px, longer ≤ LONG (default: model's; "
                                                         "with --minutes, planned from the images)")
    train.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    train.add_argument("--out", required=True, metavar="RUN_DIR")
    train.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR exactly")


TRAIN_DEFAULTS = {"batch_size": 2, "lr": 0.01, "warmup_iters": 100, "schedule": "cosine", "checkpoint_every": 200}


def _device_name(text: str) -> str:
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(DEVICES)} or cuda:N)")


def _load_model(args, score_thresh: float | None = None):
    weights = args.weights
    if weights is None:
        weights = "coco" if args.model in MODELS and MODELS[args.model].coco_weights is not None else "imagenet"
    if weights == "none":
        torch.manual_seed(0)  # a random model, but the same one every run
    model = build_model(args.model, weights, preset=args.preset, score_thresh=score_thresh)
    return model.use_channels_last(args.fast).to(process_device(resolve_device(args.device)))


def command_models(args) -> int:
    for name, spec in MODELS.items():
        weights = ", ".join(w for w in WEIGHT_CHOICES if w != "coco" or spec.coco_weights is not None)
        print(f"{name:22s} {spec.description}  [weights: {weights}; preset: {spec.default_preset}]")
    for name, path in BUNDLED.items():
        state = "bundled" if path.exists() else "missing: make demo-model"
        print(f"{name:22s} checkpoint {path.relative_to(path.parents[2])} ({state})")
    return 0


def command_detect(args) -> int:
    model = _load_model(args, args.score_thresh)
    device = next(model.parameters()).device
    results, failed = [], 0
    for path in args.images:
        try:
            image = load_image(path)
        except InputError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        with torch.inference_mode():
            if args.vis:
                detections, traces = model([image.tensor.to(device)], trace=True)
                reports.save_detections_picture(image, traces[0], model.class_names, args.vis)
            else:
                detections = model([image.tensor.to(device)])
        detections = {k: v.cpu() for k, v in detections[0].items()}
        results.append(reports.detections_record(path, image, detections, model.class_names))
        print(f"{path}: {len(detections['boxes'])} detections", file=sys.stderr)
    if args.json:
        reports.write_json(args.json, {"model": model.model_name, "images": results})
    return 2 if failed else 0


def command_trace(args) -> int:
    model = _load_model(args)
    device = next(model.parameters()).device
    image = load_image(args.image)
    gt = reports.read_gt(args.gt, model.class_names) if args.gt else None
    tensor = image.tensor.to(device)
    with torch.inference_mode():
        detections, traces = model([tensor], trace=True)
        inference_trace = traces[0]
        training_trace = None
        if gt is not None:
            generator = torch.Generator().manual_seed(args.seed)
            target = {"boxes": gt["boxes"].to(device), "labels": gt["labels"].to(device)}
            _, traces = model([tensor], [target], trace=True, generator=generator)
            training_trace = traces[0]
    summary = reports.trace_summary(inference_trace, training_trace)
    print(reports.trace_text(summary))
    if gt is not None:
        funnel = recall_funnel(inference_trace, gt["boxes"], gt["labels"], model.class_names,
                               training_trace.anchor_labels, score_thresh=model.config.roi_test.score_thresh,
                               rpn_config=model.config.rpn_train)
        summary["funnel"] = [row.to_json() for row in funnel]
        print(reports.funnel_text(funnel))
    if args.json:
        reports.write_json(args.json, summary)
    if args.out:
        reports.save_trace_pictures(image, inference_trace, training_trace, model.class_names,
                                    gt["boxes"] if gt else None, args.out)
    return 0


def command_train(args) -> int:
    given = _given_train_settings(args)
    if args.resume and (Path(args.out) / SETTINGS_FILE).is_file():  # the run goes on as it was planned
        settings = replace(TrainSettings.from_dict(read_json(Path(args.out) / SETTINGS_FILE)), out=args.out)
    elif args.minutes is not None:
        if args.iters or args.epochs:
            raise InputError(None, "give a time budget (--minutes) or a length (--iters, --epochs), not both")
        plan = plan_budget(args.data, args.minutes, args.out, given, split=args.split, seed=args.seed,
                           device=args.device, anchors=args.anchors)
        print("plan for " + f"{args.minutes:g} minutes:\n" + "\n".join(f"  why: {line}" for line in plan.why),
              file=sys.stderr)
        settings = plan.settings
        plan.save_anchor_report(args.out)
    else:
        defaults = {**TRAIN_DEFAULTS, "model": default_model(), "weights": "imagenet"}
        settings = TrainSettings(data=args.data, out=args.out, split=args.split, iters=args.iters, epochs=args.epochs,
                                 seed=args.seed, **{**defaults, **given})
    runs = train(settings, resume=args.resume)
    for progress in runs:
        if progress.event == "started":
            print(progress.message, file=sys.stderr)
            bar = tqdm(total=progress.total or None, initial=progress.iteration, unit="it", file=sys.stderr)
        elif progress.event == "iteration":
            bar.total = progress.total or None
            bar.update(1)
            bar.set_postfix(loss=f"{sum(progress.losses.values()):.3f}", lr=f"{progress.lr:.2g}")
        elif progress.event == "validated":
            bar.write(progress.message, file=sys.stderr)
        elif progress.event in ("stopped", "cancelled", "done"):
            bar.close()
            print(progress.message, file=sys.stderr)
            if progress.event == "stopped":
                return 2
    return 0


def _given_train_settings(args) -> dict:
    """The TrainSettings fields set by flags the user gave (argparse's None: not given)."""
    given = {"model": args.model, "weights": args.weights, "preset": args.preset, "batch_size": args.batch_size,
             "lr": args.lr, "warmup_iters": args.warmup, "schedule": args.schedule,
             "frozen_stages": args.frozen_stages, "checkpoint_every": args.checkpoint_every, "device": args.device}
    given = {key: value for key, value in given.items() if value is not None}
    if given.get("device") == "auto":
        del given["device"]
    flips = {"hflip": args.hflip, "vflip": args.vflip}
    if any(value is not None for value in flips.values()) or args.scale_jitter or args.photometric:
        base = AugmentConfig()
        given["augment"] = AugmentConfig(hflip=base.hflip if args.hflip is None else args.hflip,
                                         vflip=base.vflip if args.vflip is None else args.vflip,
                                         scale=tuple(args.scale_jitter or base.scale), photometric=args.photometric)
    if args.no_amp:
        given["amp"] = False
    if args.input_size:
        short, long = args.input_size
        if long < short:
            raise InputError(None, f"--input-size {short} {long}: the longer side's limit is under the shorter side")
        given["input_size"] = (short, long)
    return given


def command_eval(args) -> int:
    model = _load_model(args, score_thresh=0.0)
    dataset = open_dataset(args.data, args.split)
    print(dataset.problem_summary(), file=sys.stderr)
    result = evaluate(model, dataset, device=next(model.parameters()).device, with_losses=not args.no_losses,
                      plots_dir=args.plots)
    print(reports.eval_text(result))
    if args.json:
        reports.write_json(args.json, result.to_json())
    return 0


def command_diagnose(args) -> int:
    model = _load_model(args)
    dataset = open_dataset(args.data, args.split)
    print(dataset.problem_summary(), file=sys.stderr)
    diagnosis = diagnose_dataset(model, dataset, device=next(model.parameters()).device,
                                 score_thresh=args.score_thresh)
    print(reports.diagnose_text(diagnosis))
    if args.json:
        reports.write_json(args.json, diagnosis.to_json())
    if args.out:
        reports.save_diagnosis(diagnosis, args.out)
    return 0


def command_errors(args) -> int:
    rank, world = process_group()
    model = _load_model(args, args.score_thresh)
    device = next(model.parameters()).device
    dataset = open_dataset(args.data, args.split)
    if rank == 0:
        print(dataset.problem_summary(), file=sys.stderr)
    unannotated = [line for line in dataset.problems if line.endswith(SKIPPED_NO_ANNOTATION)]
    if not any(sample.annotated for sample in dataset.samples):
        raise InputError(args.data, "no annotated image to analyse")
    with tqdm(desc="errors", unit="image", file=sys.stderr, disable=rank != 0) as bar:
        def progress(done: int, total: int) -> None:  # this process's share of the images
            bar.total = total
            bar.update(done - bar.n)

        report = error_analysis(model, dataset.samples, dataset.class_names, device,
                                args.batch_size or (GPU_BATCH if device.type == "cuda" else 1), progress=progress,
                                rank=rank, world=world, model_name=args.model, left_out=unannotated)
    if report is None:  # another process's share, gathered by rank 0
        return 0
    print(errors_report.errors_text(report))
    if args.json:
        reports.write_json(args.json, report.to_json())
    if args.plots:
        errors_report.save_error_plots(report, args.plots)
    return 0


def command_explain(args) -> int:
    record = explain.explain(_load_model(args), args)
    if args.json:
        reports.write_json(args.json, record)
    return 0


COMMANDS = {"models": command_models, "detect": command_detect, "trace": command_trace, "train": command_train,
            "eval": command_eval, "diagnose": command_diagnose, "errors": command_errors, "explain": command_explain}


def _problem(error: InputError | OSError) -> str:
    """The one line after "error: ". An OSError that gets here is an output the user named and we
    cannot write (a folder, a file where a folder should be, no permission, a full disk)."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    if args.command == "train" and args.scale_jitter and args.scale_jitter[0] > args.scale_jitter[1]:
        parser.error(f"argument --scale-jitter: LO {args.scale_jitter[0]} is above HI {args.scale_jitter[1]}")
    try:
        return COMMANDS[args.command](args)
    except (InputError, OSError) as error:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {_problem(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
