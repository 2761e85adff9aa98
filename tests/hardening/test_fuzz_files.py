"""Fuzzing the checkpoint files (load_weights_file, and build_model for tensor shapes), image files
(load_image and the header-only image_size) and the `frcnn` command line. The property and the
shared pieces are in fuzzing.py; the annotation parsers in test_fuzz_annotations.py."""
from __future__ import annotations

import copy
import io
import tempfile
import warnings
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import pytest
import torch
from hypothesis import example, given, strategies as st
from PIL import Image

from frcnn_core.cli import main as cli
from frcnn_core.data.samples import BACKGROUND, image_size
from frcnn_core.io.images import load_image
from frcnn_core.modeling.checkpoints import FORMAT, WeightsFile, load_weights_file, save_checkpoint
from frcnn_core.modeling.config import AnchorConfig, DetectorConfig, make_config
from frcnn_core.modeling.zoo import MODELS, build_model

from fuzzing import (
    JSON_VALUES,
    NAMES,
    ODD_NUMBER_TEXTS,
    SAMPLES,
    TEXT,
    entries,
    fuzz,
    mostly,
    mutated,
    now_and_then,
    outcome,
    png,
    rarely,
    voc,
    within,
)

# --- checkpoints -------------------------------------------------------------------------------

CONFIG = make_config("torchvision", AnchorConfig())
TENSORS = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype), st.lists(st.integers(0, 3), max_size=3),
                    st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.complex64]))
ODD_VALUES = st.one_of(JSON_VALUES, TENSORS, st.sampled_from([(1, 2), [1.0, 2.0, 3.0], ((32,),), "800", True, None,
                                                              float("nan"), 2**70, CONFIG]))
STATE_DICTS = st.dictionaries(now_and_then(st.one_of(st.sampled_from(["rpn.head.conv.0.0.weight", "backbone.0.weight"]),
                                                     TEXT), st.integers(), one_in=8),
                              mostly(TENSORS), min_size=1, max_size=4)


@st.composite
def config_dicts(draw) -> dict:
    """CONFIG.to_dict() with 0-3 edits: a key dropped, a value replaced by an odd one, a key added."""
    config = copy.deepcopy(CONFIG.to_dict())
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        section = draw(st.sampled_from(sorted(config, key=str)))
        holder = config[section] if isinstance(config[section], dict) and draw(st.booleans()) else config
        if not holder:
            continue
        key = draw(st.sampled_from(sorted(holder, key=str)))
        edit = draw(st.sampled_from(("drop", "replace", "add")))
        if edit == "drop":
            del holder[key]
        elif edit == "replace":
            holder[key] = draw(ODD_VALUES)
        else:
            holder[draw(st.one_of(st.text(max_size=5), st.integers()))] = draw(ODD_VALUES)
    return config


CHECKPOINT_CONTENTS = now_and_then(
    entries(format=mostly(st.just(FORMAT)), model=mostly(st.sampled_from([*MODELS, "", "nope"])),
            config=mostly(config_dicts()), class_names=mostly(st.lists(NAMES, max_size=4)),
            state_dict=mostly(STATE_DICTS)),
    st.one_of(STATE_DICTS, ODD_VALUES), one_in=4)


def same_kind(value, reference) -> bool:
    """Whether a config value has the kind of the reference value that to_dict wrote."""
    if isinstance(reference, dict):
        return isinstance(value, dict) and value.keys() == reference.keys() and all(
            same_kind(value[key], reference[key]) for key in reference)
    if isinstance(reference, (tuple, list)):
        return isinstance(value, (tuple, list)) and all(same_kind(item, reference[0]) for item in value)
    if isinstance(reference, bool):
        return isinstance(value, bool)
    if isinstance(reference, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return reference is None or isinstance(value, type(reference))


def check_weights(weights: WeightsFile) -> None:
    assert weights.state_dict and all(isinstance(key, str) and isinstance(value, torch.Tensor)
                                      for key, value in weights.state_dict.items())
    if weights.model_name is None:
        assert weights.config is None and weights.class_names is None
        return
    assert isinstance(weights.model_name, str) and weights.model_name
    assert isinstance(weights.config, DetectorConfig) and same_kind(weights.config.to_dict(), CONFIG.to_dict())
    assert isinstance(weights.class_names, list) and all(isinstance(name, str) for name in weights.class_names)


def checkpoint_bytes(content) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


CHECKPOINT_SEED = checkpoint_bytes({"format": FORMAT, "model": "mobilenet-v2", "config": CONFIG.to_dict(),
                                    "class_names": [BACKGROUND, "cat"],
                                    "state_dict": {"a.weight": torch.arange(6.0).reshape(2, 3)}})
PICKLE_TOKENS = [b"PK\x03\x04", b"\x80\x02", b"\x80\x05", b"\xff\xff\xff\x7f", b"\x00" * 8, b"c__builtin__\neval\n",
                 b"data.pkl", b"R", b"."]


@fuzz(examples=1200)
@given(content=st.one_of(CHECKPOINT_CONTENTS.map(checkpoint_bytes), mutated([CHECKPOINT_SEED], PICKLE_TOKENS),
                         st.binary(max_size=200)))
@example(content=checkpoint_bytes({"format": FORMAT, "model": "mobilenet-v2", "config": {**CONFIG.to_dict(),
                                   "transform": []}, "class_names": [],
                                   "state_dict": {"a": torch.ones(1)}}))  # was AttributeError
@example(content=checkpoint_bytes({"format": FORMAT, "model": 5, "config": CONFIG.to_dict(), "class_names": "ab",
                                   "state_dict": {"a": 1}}))  # was accepted: crashed later in build_model
@example(content=checkpoint_bytes({"format": FORMAT, "model": "mobilenet-v2", "config": {**CONFIG.to_dict(),
                                   "transform": {"min_size": "800"}}, "class_names": [],
                                   "state_dict": {"a": torch.ones(1)}}))  # was accepted: a str where an int goes
def test_checkpoint_file(content, scratch, fuzzed_inputs):
    fuzzed_inputs["load_weights_file"] += 1
    path = scratch / "model.pt"
    path.write_bytes(content)
    weights = outcome(lambda: load_weights_file(path), path)
    if weights is not None:
        check_weights(weights)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model("mobilenet-v2", "none")


@st.composite
def damaged_state_dicts(draw, state_dict: dict) -> dict:
    """The state_dict with 0-3 edits: a key dropped or added, a tensor reshaped, cut or retyped."""
    damaged = dict(state_dict)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(damaged)))
        tensor = damaged[key]
        edit = draw(st.sampled_from(("drop", "add", "unsqueeze", "cut", "flatten", "dtype", "old-rpn-name")))
        if edit == "drop":
            del damaged[key]
        elif edit == "add":
            damaged[key + draw(st.sampled_from([".extra", "_", "x"]))] = tensor
        elif edit == "unsqueeze":
            damaged[key] = tensor.unsqueeze(0)
        elif edit == "cut" and tensor.dim():
            damaged[key] = tensor[: max(tensor.shape[0] - 1, 0)]
        elif edit == "flatten":
            damaged[key] = tensor.flatten()
        elif edit == "dtype":
            damaged[key] = tensor.to(draw(st.sampled_from([torch.float16, torch.int64, torch.bool])))
        elif edit == "old-rpn-name":
            damaged["rpn.head.conv.weight"] = tensor
    return damaged


@fuzz(examples=20)
@given(data=st.data(), as_checkpoint=st.booleans())
def test_checkpoint_tensor_shapes(data, as_checkpoint, small_model, scratch, fuzzed_inputs):
    """Shapes are only known to the model: build_model loads all of a file's weights or refuses it."""
    fuzzed_inputs["build_model"] += 1
    state_dict = data.draw(damaged_state_dicts(small_model.state_dict()))
    path = scratch / "weights.pt"
    if as_checkpoint:
        save_checkpoint(path, "mobilenet-v2", small_model.config, small_model.class_names, state_dict)
        model = outcome(lambda: build_model(str(path)), path)
    else:
        torch.save(state_dict, path)
        model = outcome(lambda: build_model("mobilenet-v2", str(path)), path)
    assert model is None or not model.training

# --- images --------------------------------------------------------------------------------------

def encoded(image: Image.Image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def image_seeds() -> list[bytes]:
    photo = Image.open(SAMPLES / "chelsea.png").convert("RGB").crop((100, 40, 164, 88))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: displayed after a quarter turn
    return [encoded(photo, "PNG"), encoded(photo, "JPEG", exif=exif), encoded(photo.convert("P"), "GIF"),
            encoded(photo, "BMP"), encoded(photo.convert("L"), "TIFF"), encoded(photo, "WEBP"),
            encoded(photo.convert("I;16"), "PNG"), encoded(photo.convert("RGBA"), "PNG"), encoded(photo, "PPM"),
            (SAMPLES / "BloodImage_00002.jpg").read_bytes()]


IMAGE_SEEDS = image_seeds()
IMAGE_TOKENS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff",
                b"IHDR", b"IEND", b"Exif\x00\x00", b"\x01\x12\x00\x03", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]
IMAGE_BYTES = st.one_of(
    mutated(IMAGE_SEEDS, IMAGE_TOKENS),
    st.tuples(st.sampled_from(IMAGE_SEEDS), st.floats(0, 1)).map(lambda cut: cut[0][:int(len(cut[0]) * cut[1])]),
    st.tuples(st.sampled_from(IMAGE_TOKENS), st.binary(max_size=200)).map(b"".join),
)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # "Corrupt EXIF data", "Tag data larger than file"
@fuzz(examples=1200)
@given(data=IMAGE_BYTES, suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif", ".webp", ".ppm"]))
def test_image_file(data, suffix, scratch, fuzzed_inputs):
    """load_image decodes or refuses; image_size (the header alone) agrees with what it decodes."""
    fuzzed_inputs["load_image"] += 1
    fuzzed_inputs["image_size"] += 1
    path = scratch / f"image{suffix}"
    path.write_bytes(data)
    loaded = outcome(lambda: load_image(path), path)
    size = outcome(lambda: image_size(path), path)
    if size is not None:
        assert all(isinstance(side, int) and side > 0 for side in size)
    if loaded is not None:
        tensor = loaded.tensor
        assert tensor.dtype == torch.float32 and tensor.dim() == 3 and tensor.shape[0] == 3
        assert tensor.shape[1] > 0 and tensor.shape[2] > 0
        assert torch.isfinite(tensor).all() and tensor.min() >= 0 and tensor.max() <= 1
        assert size == (loaded.width, loaded.height)

# --- the command line ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_inputs(scratch) -> dict[str, str]:
    """Input files for the command line by name: good and bad images, annotations, datasets, weights."""
    folder = scratch / "cli"
    dataset = folder / "dataset"
    dataset.mkdir(parents=True)
    (dataset / "a.png").write_bytes(png(64, 48))
    (dataset / "a.xml").write_bytes(voc("<size><width>64</width><height>48</height></size>", ("RBC", 5, 6, 40, 30)))
    (folder / "bad-dataset").mkdir()
    (folder / "bad-dataset" / "a.xml").write_bytes(b"<annotation><object>")
    files = {"image.png": png(64, 48), "bad.png": b"\x89PNG\r\n\x1a\n garbage", "bad.xml": b"<annotation",
             "gt.xml": (dataset / "a.xml").read_bytes(), "bad.json": b'{"images": 5}', "noise.pt": bytes(range(256)),
             "list.pt": checkpoint_bytes([1, 2]), "protocol.pt": b"\x80\x14 damaged", "file": b"a file, not a folder"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    inputs = {name: str(folder / name) for name in files}
    return inputs | {"dataset": str(dataset), "bad-dataset": str(folder / "bad-dataset"), "folder": str(folder),
                     "missing": str(folder / "missing.png"), "under-a-file": str(folder / "file" / "out")}


# "@name" stands for an input file of cli_inputs, or for "fresh.json" / "fresh-dir": a new path per run.
# Model names are those that build offline (no download): bccd-demo, mobilenet-v2 (ImageNet weights
# are in $TORCH_HOME), and mobilenet-v3-320-fpn always with --weights none or a file.
ODD_NUMBERS = ["0", "1", "2", "0.5", "-1", "99999999999999999999", *ODD_NUMBER_TEXTS]
FAST_MODEL = ["--model", "mobilenet-v3-320-fpn", "--weights", "none"]
MODEL_CHOICES = [FAST_MODEL, [], FAST_MODEL, ["--model", "mobilenet-v2", "--weights", "none"],
                 ["--model", "no-such-model"], ["--model", "@noise.pt"], ["--model", "@list.pt"],
                 ["--model", "@folder"],
                 ["--model", "mobilenet-v3-320-fpn", "--weights", "@noise.pt"],
                 ["--model", "mobilenet-v3-320-fpn", "--weights", "@missing"], ["--model", "@protocol.pt"],
                 ["--model", "mobilenet-v2", "--weights", "coco"]]
OUTPUT_FILES = ["@fresh.json", "@fresh.json", "-", "@folder", "@under-a-file", "@file"]
OUTPUT_FOLDERS = ["@fresh-dir", "@fresh-dir", "@file", "@under-a-file"]
OPTION_VALUES = {
    "--json": OUTPUT_FILES, "--vis": OUTPUT_FOLDERS, "--out": OUTPUT_FOLDERS, "--plots": OUTPUT_FOLDERS,
    "--score-thresh": ODD_NUMBERS, "--seed": ODD_NUMBERS, "--gt": ["@gt.xml", "@bad.xml", "@image.png", "@missing"],
    "--preset": ["seed", "paper", "torchvision", "fast"], "--device": ["cpu", "cuda", "auto", "tpu"],
    "--split": ["val", "train", "trainval", "../x", ""], "--iters": ODD_NUMBERS, "--epochs": ODD_NUMBERS,
    "--batch-size": ODD_NUMBERS, "--lr": ODD_NUMBERS, "--warmup": ODD_NUMBERS, "--frozen-stages": ODD_NUMBERS,
    "--checkpoint-every": ODD_NUMBERS, "--hflip": ODD_NUMBERS, "--vflip": ODD_NUMBERS, "--schedule": ["cosine", "x"],
    "--data": ["@dataset", "@bad-dataset", "@bad.json", "@missing", "@image.png"],
}
FLAGS = {"--fast": [], "--no-losses": [], "--photometric": [], "--no-amp": [], "--resume": [], "--help": []}
MODEL_OPTIONS = ["--preset", "--device", "--fast"]
COMMAND_OPTIONS = {
    "models": ["--help"],
    "detect": ["--json", "--vis", "--score-thresh", *MODEL_OPTIONS],
    "trace": ["--gt", "--seed", "--json", "--out", *MODEL_OPTIONS],
    "eval": ["--split", "--json", "--plots", "--no-losses", *MODEL_OPTIONS],
    "diagnose": ["--split", "--score-thresh", "--json", "--out", *MODEL_OPTIONS],
    "train": ["--split", "--iters", "--epochs", "--batch-size", "--lr", "--warmup", "--schedule", "--frozen-stages",
              "--checkpoint-every", "--seed", "--hflip", "--vflip", "--photometric", "--no-amp", "--resume",
              *MODEL_OPTIONS],
}
POSITIONALS = {"detect": ["@image.png", "@image.png", "@bad.png", "@missing", "@folder"],
               "trace": ["@image.png", "@image.png", "@bad.png", "@missing"]}
SOUP = [*OPTION_VALUES, *FLAGS, *ODD_NUMBERS, "bccd-demo", "mobilenet-v2", "none", "coco", "-", "--", "help",
        "@image.png", "@bad.xml", "@noise.pt", "@dataset"]


@st.composite
def argument_lists(draw) -> list[str]:
    """A command with its needed arguments and 0-3 of its options with fuzzed values; one time in
    five a soup of tokens. Training gets bad data only: a good dataset would train for real."""
    command = draw(st.sampled_from(sorted(COMMAND_OPTIONS)))
    if draw(rarely(5)):  # a soup of tokens
        return [command, *draw(st.lists(st.one_of(st.sampled_from(SOUP), st.text(max_size=6)), max_size=8))]
    arguments = [command]
    if command in POSITIONALS:
        arguments += draw(st.lists(st.sampled_from(POSITIONALS[command]), min_size=1, max_size=2))
    if command in ("detect", "trace", "eval", "diagnose"):
        arguments += draw(st.sampled_from(MODEL_CHOICES))
    if command in ("eval", "diagnose"):
        arguments += ["--data", draw(st.sampled_from(["@dataset", "@dataset", "@bad-dataset", "@bad.json"]))]
    if command == "train":
        arguments += ["--data", draw(st.sampled_from(["@missing", "@bad-dataset", "@bad.json"])), "--out", "@fresh-dir"]
        if draw(st.booleans()):
            arguments += ["--scale-jitter", draw(st.sampled_from(ODD_NUMBERS)), draw(st.sampled_from(ODD_NUMBERS))]
    for option in draw(st.lists(st.sampled_from(COMMAND_OPTIONS[command]), max_size=3)):
        arguments += [option, draw(st.sampled_from(OPTION_VALUES[option]))] if option in OPTION_VALUES else [option]
    return ["--verbose", *arguments] if draw(rarely(6)) else arguments


def cached_builder():
    """build_model, built once per (name, weights, preset, score threshold) for the names that need
    no file: the arguments are under test, not the model, and a build costs ~0.3 s."""
    built = {}

    def build(model, weights="none", preset=None, score_thresh=None, class_names=None):
        if class_names is not None or model not in (*MODELS, "bccd-demo") or weights not in ("none", "imagenet"):
            return build_model(model, weights, preset, score_thresh, class_names)
        key = (model, weights, preset, score_thresh)
        if key not in built:
            built[key] = build_model(*key)
        return built[key]

    return build


@pytest.fixture(scope="module")
def quick_models():
    with mock.patch.object(cli, "build_model", cached_builder()):
        yield


def run_main(argv: list[str]) -> tuple[int, str, list[str]]:
    """(exit status, stderr, UserWarnings) of `frcnn ARGV`, argparse's exits included. Outside a
    test a UserWarning prints two lines to stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr), within(seconds=60), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = cli.main(argv)
        except SystemExit as exit:
            status = exit.code
    return status, stderr.getvalue(), [str(warning.message) for warning in caught
                                       if issubclass(warning.category, UserWarning)]


@fuzz(examples=300)
@given(argv=argument_lists())
@example(argv=["detect", "@image.png", *FAST_MODEL, "--json", "@folder"])  # was IsADirectoryError
@example(argv=["trace", "@image.png", *FAST_MODEL, "--out", "@file"])  # was FileExistsError
@example(argv=["trace", "@image.png", "--seed", "99999999999999999999", "--gt", "@gt.xml"])  # was ValueError
@example(argv=["detect", "@image.png", "--model", "@protocol.pt"])  # torch's two-line warning came first
def test_command_line(argv, cli_inputs, quick_models, scratch, fuzzed_inputs):
    """Status 0 or 2; a failure is told in one "error:" line (argparse's "frcnn ...: error:" line for
    bad arguments), with no warning before it and no traceback unless --verbose asks for one."""
    fuzzed_inputs["frcnn main(argv)"] += 1
    with tempfile.TemporaryDirectory(dir=scratch) as fresh:
        paths = cli_inputs | {"fresh.json": f"{fresh}/out.json", "fresh-dir": f"{fresh}/out"}
        named = [paths.get(token[1:], token) if token.startswith("@") else token for token in argv]
        status, stderr, user_warnings = run_main(named)
    assert status in (0, 2), (status, stderr)
    assert "Traceback" not in stderr or "--verbose" in argv, stderr
    if status == 2:
        assert any(line.startswith("error: ") or ": error: " in line for line in stderr.splitlines()), stderr
        assert not user_warnings, user_warnings
