"""`frcnn errors` against `frcnn detect` on the same images: the BCCD val split, the bundled model
(issue 13, point 3: the errors pass costs at most 1.3x detect).

Both are called the way a user calls them, as the `frcnn` command's `main(argv)` in this process
(so interpreter and torch start-up count in neither), each building its model, reading the images
and writing its JSON: `detect` with the split's image paths, `errors` with the VOC folder and the
split. The commands take turns round by round (`common.interleaved_timings`); their screen output
goes to /dev/null.

Run: `.venv/bin/python benchmarks/bench_errors.py [--repeats N] [--device auto|cpu|cuda]`
(run_all.py runs it too).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from pathlib import Path

from frcnn_core.cli.main import main as frcnn
from frcnn_core.data.formats import open_dataset

from common import interleaved_timings, summary

BCCD = Path(os.environ.get("FRCNN_BCCD", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bccd"))
SPLIT = "val"
TARGET_RATIO = 1.3


def _quietly(argv: list[str]):
    """A no-argument callable running `frcnn argv` with stdout and stderr to /dev/null."""
    def run() -> int:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = frcnn(argv)
        if code != 0:
            raise RuntimeError(f"frcnn {' '.join(argv[:3])} ... exited with {code}")
        return code

    return run


def run(repeats: int = 2, device: str = "auto") -> dict:
    """{"seconds": {"detect", "errors"} summaries, "ratio" (medians), "images", "target"}."""
    images = [sample.image_path for sample in open_dataset(BCCD, SPLIT).samples]
    model = ["--model", "bccd-demo", "--device", device]
    with tempfile.TemporaryDirectory() as scratch:
        runs = {
            "detect": _quietly(["detect", *images, *model, "--json", str(Path(scratch) / "detect.json")]),
            "errors": _quietly(["errors", "--data", str(BCCD), "--split", SPLIT, *model,
                                "--json", str(Path(scratch) / "errors.json")]),
        }
        times, _ = interleaved_timings(runs, repeats, warmup=0)
    seconds = {name: summary(values) for name, values in times.items()}
    return {"seconds": seconds, "ratio": seconds["errors"]["median"] / seconds["detect"]["median"],
            "images": len(images), "target": TARGET_RATIO}


def report(result: dict) -> str:
    """The comparison in a few lines, with the ratio against its target."""
    seconds = result["seconds"]
    verdict = "within" if result["ratio"] <= result["target"] else "ABOVE"
    return "\n".join([
        f"BCCD {SPLIT}, {result['images']} images, bccd-demo:",
        *(f"  frcnn {name:6s} {stats['median']:.1f} s (min {stats['min']:.1f}, n={stats['n']})"
          for name, stats in seconds.items()),
        f"  errors / detect (medians): {result['ratio']:.2f} — {verdict} the {result['target']}x target",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each command (default 2)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    args = parser.parse_args()
    print(report(run(args.repeats, args.device)))


if __name__ == "__main__":
    main()
