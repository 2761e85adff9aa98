"""The Errors view's work in the engine thread: the folder's ground truth as saved, the error
analysis (`frcnn_core.analysis.errors`) of the loaded model at the view's score threshold, and
one image's row made again after its ground truth changed. Imported with torch, in the worker.

An image without an annotation file is left out of the analysis and listed (never counted as all
false positives), and so is an image or annotation file that cannot be read, with its one line.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from frcnn_core.analysis.errors import ErrorReport, error_analysis, summarize_errors
from frcnn_core.data.samples import Sample, check_objects, make_sample
from frcnn_core.data.voc import parse_voc_xml
from frcnn_core.errors import InputError
from frcnn_core.io.images import image_size
from frcnn_gui.engine.messages import ErrorsRequest, FolderImage

BATCH_SIZE = 1  # images per forward pass: progress and Cancel after each image


def ground_truth(image: FolderImage, class_names: list[str]) -> Sample | str:
    """The image's boxes of the listed classes (background first) as its annotation file holds
    them, checked as every reader checks them (boxes past the border clipped, broken ones
    skipped); a Sample with annotated=False when there is no file; the one line of the problem
    when the image or the file cannot be read."""
    annotation = Path(image.annotation_path)
    try:
        image_size(image.image_path)  # its header: an unreadable image is left out, the pass goes on
        if not annotation.is_file():
            return make_sample(image.image_path, [], class_names, None, None, annotated=False)
        parsed = parse_voc_xml(annotation)
    except InputError as error:
        return str(error)
    kept, _ = check_objects(parsed.path, parsed.objects, parsed.width, parsed.height, class_names[1:])
    return make_sample(image.image_path, kept, class_names, parsed.width, parsed.height, with_difficult=True)


@contextmanager
def scoring_from(model, score_thresh: float) -> Iterator[None]:
    """Inside the block the model reports the detections scoring >= score_thresh (the engine
    loads it reporting every score: the detections panel filters them)."""
    config = model.config
    model.config = replace(config, roi_test=replace(config.roi_test, score_thresh=score_thresh))
    try:
        yield
    finally:
        model.config = config


def analyse(model, request: ErrorsRequest, device, progress: Callable[[int, int], None] | None = None,
            cancelled: Callable[[], bool] = lambda: False) -> ErrorReport | None:
    """The report over request.images, None when `cancelled()` said so between two images;
    progress(done, total) after each analysed image."""
    class_names = list(request.class_names)
    read = [ground_truth(image, class_names) for image in request.images]
    with scoring_from(model, request.score_thresh):
        return error_analysis(model, [sample for sample in read if isinstance(sample, Sample)], class_names, device,
                              BATCH_SIZE, progress=progress, cancel=cancelled, model_name=request.model_name,
                              left_out=[line for line in read if isinstance(line, str)])


def updated(model, report: ErrorReport, request: ErrorsRequest, device) -> ErrorReport:
    """`report` with the rows of request.images made again from their files as saved now: a row
    replaced in place, the row of an image that was left out added last, an image that lost its
    annotation file (or became unreadable) left out; the summary made again."""
    fresh = analyse(model, request, device)
    new_rows = {row.image_path: row for row in fresh.images}
    redone = {image.image_path for image in request.images}
    rows = [new_rows.pop(row.image_path, row) for row in report.images
            if row.image_path not in redone or row.image_path in new_rows]
    prefixes = tuple(f"{path}: " for image in request.images for path in (image.image_path, image.annotation_path))
    left_out = [line for line in report.left_out if not line.startswith(prefixes)] + fresh.left_out
    return summarize_errors([*rows, *new_rows.values()], report.class_names, report.model, report.score_thresh,
                            left_out)
