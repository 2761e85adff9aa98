"""`frcnn errors`'s one screen and its files: the TIDE table, the stage funnel of the missed boxes
by class, the worst images; the JSON (ErrorReport.to_json) and, on request, the plots."""
from __future__ import annotations

from pathlib import Path

from frcnn_core.analysis.errors import ErrorReport, ImageErrors
from frcnn_core.analysis.tide import BG_IOU, MAIN_ERRORS, POS_IOU, SPECIAL_ERRORS
from frcnn_core.vocabulary import FUNNEL_STAGES, LOST_AT_WORDS


def tide_table(report: ErrorReport) -> list[str]:
    """AP50, then dAP and count per main error type, then the special errors."""
    tide = report.tide
    kinds = [*MAIN_ERRORS, *SPECIAL_ERRORS]
    header = f"{'':7s}" + "".join(f"{kind:>9s}" for kind in kinds)
    delta = f"{'dAP':7s}" + "".join(f"{tide.main.get(kind, tide.special.get(kind)):9.2f}" for kind in kinds)
    count = f"{'count':7s}" + "".join(f"{tide.counts[kind]:9d}" for kind in MAIN_ERRORS)
    return [f"TIDE: AP50 {tide.ap50:.2f} over {len(report.images)} images (detections scoring >= "
            f"{report.score_thresh:g}; found at IoU >= {POS_IOU:g}, background at IoU <= {BG_IOU:g})",
            "AP points gained by fixing one error type (main), or every false positive / negative (special):",
            header, delta, count]


def funnel_table(report: ErrorReport) -> list[str]:
    """Missed GT boxes per class: how many, and where the recall funnel lost them."""
    words = [LOST_AT_WORDS[stage] for stage in FUNNEL_STAGES]
    widths = [max(len(word), 7) for word in words]
    gt_counts, by_class = report.gt_by_class(), report.missed_by_class()
    rows = {"all": (sum(gt_counts.values()), report.missed_by_stage())}
    rows |= {name: (gt_counts[name], by_class[name]) for name in by_class}
    lines = ["missed GT boxes by the stage that lost them:",
             f"{'class':12s} {'GT':>6s} {'missed':>6s} " + " ".join(f"{w:>{n}s}" for w, n in zip(words, widths,
                                                                                                  strict=True))]
    for name, (total, counts) in rows.items():
        missed = sum(counts.values())
        lines.append(f"{name[:12]:12s} {total:6d} {missed:6d} "
                     + " ".join(f"{counts[stage]:>{n}d}" for stage, n in zip(FUNNEL_STAGES, widths, strict=True)))
    return lines


def _image_line(row: ImageErrors) -> str:
    fp_types = [fp.type for fp in row.false_positives if fp.counted]
    fn_types = [fn.type for fn in row.false_negatives]

    def listed(types: list[str]) -> str:
        counts = [f"{kind} {types.count(kind)}" for kind in MAIN_ERRORS if kind in types]
        return f" ({', '.join(counts)})" if counts else ""

    return (f"{Path(row.image_path).name}: {row.error_count} errors — FP {len(fp_types)}{listed(fp_types)}, "
            f"FN {len(fn_types)}{listed(fn_types)}; TP {len(row.hits)}")


def errors_text(report: ErrorReport, worst: int = 5) -> str:
    """The one-screen summary."""
    lines = tide_table(report) + [""] + funnel_table(report) + ["", f"worst {worst} images (FP + FN):"]
    lines += [f"  {_image_line(row)}" for row in report.worst(worst)] or ["  none: no errors"]
    if report.left_out:
        lines.append(f"left out: {len(report.left_out)} images without annotation, e.g. {report.left_out[0]}")
    return "\n".join(lines)


def save_error_plots(report: ErrorReport, out_dir: str) -> list[Path]:
    """<out_dir>/tide_summary.png and <out_dir>/errors_by_class.png."""
    from frcnn_core.render import error_plots  # matplotlib only when pictures are asked for

    target = Path(out_dir)
    tide = report.tide
    return [error_plots.save_tide_summary(tide.ap50, tide.main, tide.special, target / "tide_summary.png"),
            error_plots.save_errors_by_class(report.errors_by_class(), report.missed_by_class(),
                                             target / "errors_by_class.png")]
