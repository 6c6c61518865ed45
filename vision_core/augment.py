"""The augmentation lab's core: a catalogue of typed, validated transforms and one pipeline spec, realised twice.

A ``PipelineSpec`` (a frozen, JSON-able list of ``Step``s) is the one preset. It becomes

- ``build_pipeline(spec)``: a torchvision ``v2.Compose`` for single images: the lab's previews, photos,
  and the code that ``pipeline_to_code`` exports (the same objects, so exported code reproduces a preview;
  it needs torchvision alone, carrying ``standalone_transforms`` along for the two digit transforms);
- ``batch_augment(spec)``: a callable over whole (B, C, H, W) batches on any device, each sample with
  its own random parameters: what training uses (tens of thousands of digits per second on a CPU).

Both read the same parameters with the same meaning, and the tests hold each batched kernel to the
torchvision kernel at fixed parameters. ``SHIPPED_DIGIT_PRESET`` is ``DigitAugment`` (what trained the
shipped models) in spec form; its batched version reproduces ``DigitAugment`` bit for bit.

Previews (``preview``, ``intermediates``, ``preview_batch``) serve a shared class server, so each is bounded:
``check_preview`` estimates the sizes and the time from the image's size and the parameters and refuses,
saying what to lower, a request over ``PREVIEW_LIMITS``; what passes runs in a ``vision_core.sandbox`` worker
process under a time and a memory limit. A worker has its own global random generator, which torchvision's
random transforms draw from, so no lock is held across a preview; each sample is seeded on its own
(``sample_seed``), so step by step redoes one sample without replaying the ones before it.

The robustness probe sweeps one transform over a range and records each digit model's confidence.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from vision_core import augment_kernels as kernels
from vision_core import sandbox
from vision_core import standalone_transforms as standalone
from vision_core.augment_kernels import Kernel
from vision_core.data import DATA_DIR
from vision_core.standalone_transforms import DigitWarp, StrokeThickness
from vision_core.transforms import MNIST_SIZE, DigitAugment

SAMPLES_DIR = DATA_DIR / "samples"
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_STEPS = 32
MAX_SAMPLES = 64
MAX_JSON_CHARS = 100_000
PREVIEW_MAX_SIDE = 1024  # photos in the lab: load_image(..., max_side=PREVIEW_MAX_SIDE) keeps previews interactive
JSON_FORMAT = "vision-explorer/augmentation-pipeline"

Tensor = torch.Tensor
T = TypeVar("T")


class AugmentError(ValueError):
    """A step, parameter, pipeline or probe that cannot work; the message says which and why, in plain words."""


# --- The catalogue ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One typed parameter of a catalogue transform, with the range it must lie in."""

    name: str
    kind: Literal["float", "int", "span", "choice", "bool"]  # span: a (low, high) pair
    default: Any
    low: float = -math.inf
    high: float = math.inf
    help: str = ""
    choices: tuple[str, ...] = ()
    open_low: bool = False  # the low bound itself is not allowed (a blur sigma must be > 0)
    odd: bool = False
    digit_default: Any = None  # a better start for 28 x 28 digits, where it differs


@dataclass(frozen=True)
class TransformInfo:
    """A catalogue entry: how a step is described, validated, built, exported and batched."""

    name: str  # the key in specs and JSON
    title: str
    summary: str
    params: tuple[Param, ...]
    target: str  # the class the exported code calls: "v2.RandomRotation" or one defined in this module
    kwargs: Callable[[dict[str, Any], float], dict[str, Any]]  # constructor arguments from (params, p)
    batched: Kernel
    native_p: bool = False  # the class takes ``p`` itself; other steps with p < 1 are wrapped in v2.RandomApply
    default_p: float = 1.0
    needs_tensor: bool = False  # no PIL kernel: a float-tensor conversion goes in front of the first such step
    check: Callable[[dict[str, Any]], str | None] | None = None  # rules across parameters
    digits_only: bool = False  # meant for 28 x 28 digits (still runs on photos)


_MODES = {"bilinear": v2.InterpolationMode.BILINEAR, "nearest": v2.InterpolationMode.NEAREST}


def _interpolation() -> Param:
    return Param(
        "interpolation", "choice", "bilinear", choices=tuple(_MODES), help="how pixels between grid points are read"
    )


def _p_only(values: dict[str, Any], p: float) -> dict[str, Any]:
    return {"p": p}


# --- Catalogue entries ------------------------------------------------------------------------------------------

_DIGIT = DigitAugment()  # the shipped training augmentation: its defaults are the digit-warp and stroke defaults


def _check_stroke(v: dict[str, Any]) -> str | None:
    if v["thicker"] + v["thinner"] > 1:
        return f"thicker + thinner are probabilities of two exclusive outcomes and must add up to at most 1 (got {v['thicker'] + v['thinner']:g})"
    return None


# fmt: off
CATALOGUE: dict[str, TransformInfo] = {
    info.name: info
    for info in (
        TransformInfo(
            "Resize", "Resize", "Scale the image so that its shorter side has `size` pixels.",
            (Param("size", "int", 224, 1, 4096, "the shorter side, in pixels", digit_default=14),),
            "v2.Resize", lambda v, p: {"size": v["size"], "antialias": True}, kernels.resize,
        ),
        TransformInfo(
            "RandomRotation", "Random rotation", "Rotate by an angle drawn from a range (degrees, counter-clockwise).",
            (Param("degrees", "span", (-15.0, 15.0), -180, 180, "the range of angles"), _interpolation()),
            "v2.RandomRotation", lambda v, p: {"degrees": v["degrees"], "interpolation": _MODES[v["interpolation"]]}, kernels.rotation,
        ),
        TransformInfo(
            "RandomHorizontalFlip", "Horizontal flip", "Mirror left-right (a flipped digit is no longer that digit).",
            (), "v2.RandomHorizontalFlip", _p_only, kernels.hflip, native_p=True, default_p=0.5,
        ),
        TransformInfo(
            "RandomVerticalFlip", "Vertical flip", "Mirror top-bottom.",
            (), "v2.RandomVerticalFlip", _p_only, kernels.vflip, native_p=True, default_p=0.5,
        ),
        TransformInfo(
            "RandomCrop", "Random crop (with padding)", "Pad the borders, then cut a `size` square at a random place.",
            (
                Param("size", "int", 224, 1, 4096, "the side of the square crop, in pixels", digit_default=28),
                Param("padding", "int", 16, 0, 1024, "pixels added on every side first", digit_default=4),
                Param("padding_mode", "choice", "constant", choices=("constant", "edge", "reflect", "symmetric"), help="what the added border shows"),
            ),
            "v2.RandomCrop",
            lambda v, p: {"size": v["size"], "padding": v["padding"], "pad_if_needed": True, "padding_mode": v["padding_mode"]},
            kernels.crop,
        ),
        TransformInfo(
            "RandomResizedCrop", "Random resized crop", "Cut a random part (area and aspect ratio in ranges) and resize it.",
            (
                Param("size", "int", 224, 1, 4096, "the side of the output square, in pixels", digit_default=28),
                Param("scale", "span", (0.08, 1.0), 0.001, 1, "the crop's area as a fraction of the image", digit_default=(0.6, 1.0)),
                Param("ratio", "span", (0.75, 4 / 3), 0.05, 20, "the crop's width / height"),
            ),
            "v2.RandomResizedCrop",
            lambda v, p: {"size": v["size"], "scale": v["scale"], "ratio": v["ratio"], "antialias": True},
            kernels.resized_crop,
        ),
        TransformInfo(
            "RandomAffine", "Random affine", "Rotate, shift, scale and shear in one warp.",
            (
                Param("degrees", "span", (-10.0, 10.0), -180, 180, "rotation range, degrees"),
                Param("translate_x", "float", 0.1, 0, 1, "largest horizontal shift, as a fraction of the width"),
                Param("translate_y", "float", 0.1, 0, 1, "largest vertical shift, as a fraction of the height"),
                Param("scale", "span", (0.9, 1.1), 0.01, 10, "zoom range (1 = unchanged)", open_low=True),
                Param("shear", "span", (-10.0, 10.0), -80, 80, "horizontal shear range, degrees"),
                _interpolation(),
            ),
            "v2.RandomAffine",
            lambda v, p: {
                "degrees": v["degrees"], "translate": (v["translate_x"], v["translate_y"]), "scale": v["scale"],
                "shear": v["shear"], "interpolation": _MODES[v["interpolation"]],
            },
            kernels.affine,
        ),
        TransformInfo(
            "RandomPerspective", "Random perspective", "Move the four corners inwards at random, as if seen at an angle.",
            (Param("distortion_scale", "float", 0.5, 0, 1, "how far corners may move (0 = none, 1 = to the centre)", digit_default=0.3), _interpolation()),
            "v2.RandomPerspective",
            lambda v, p: {"distortion_scale": v["distortion_scale"], "p": p, "interpolation": _MODES[v["interpolation"]]},
            kernels.perspective, native_p=True, default_p=0.5,
        ),
        TransformInfo(
            "ElasticTransform", "Elastic distortion", "Bend the image with a smooth random displacement field (Simard et al. 2003).",
            (
                Param("alpha", "float", 50.0, 0, 1000, "strength of the displacement"),
                Param("sigma", "float", 5.0, 0, 50, "smoothness of the field, in pixels (needs an image wider than 8 x sigma)", open_low=True, digit_default=4.0),
                _interpolation(),
            ),
            "v2.ElasticTransform",
            lambda v, p: {"alpha": v["alpha"], "sigma": v["sigma"], "interpolation": _MODES[v["interpolation"]]},
            kernels.elastic,
        ),
        TransformInfo(
            "ColorJitter", "Colour jitter", "Random brightness, contrast, saturation and hue, applied in a random order.",
            (
                Param("brightness", "float", 0.4, 0, 5, "factor drawn from [1 - b, 1 + b]", digit_default=0.5),
                Param("contrast", "float", 0.4, 0, 5, "factor drawn from [1 - c, 1 + c]", digit_default=0.5),
                Param("saturation", "float", 0.4, 0, 5, "factor drawn from [1 - s, 1 + s] (no effect on grey images)", digit_default=0.0),
                Param("hue", "float", 0.1, 0, 0.5, "shift drawn from [-h, h] turns of the colour wheel (no effect on grey images)", digit_default=0.0),
            ),
            "v2.ColorJitter",
            lambda v, p: {name: v[name] for name in ("brightness", "contrast", "saturation", "hue")},
            kernels.color_jitter,
        ),
        TransformInfo(
            "GaussianBlur", "Gaussian blur", "Blur with a Gaussian whose sigma is drawn from a range.",
            (
                Param("kernel_size", "int", 5, 1, 101, "odd width of the kernel, in pixels", odd=True, digit_default=3),
                Param("sigma", "span", (0.1, 2.0), 0, 50, "range of the blur's standard deviation, pixels", open_low=True, digit_default=(0.1, 1.0)),
            ),
            "v2.GaussianBlur", lambda v, p: {"kernel_size": v["kernel_size"], "sigma": v["sigma"]}, kernels.blur,
        ),
        TransformInfo(
            "GaussianNoise", "Gaussian noise", "Add independent noise to every pixel (values in [0, 1]).",
            (
                Param("mean", "float", 0.0, -1, 1, "the noise's mean"),
                Param("sigma", "float", 0.1, 0, 1, "the noise's standard deviation"),
                Param("clip", "bool", True, help="keep pixel values in [0, 1]"),
            ),
            "v2.GaussianNoise", lambda v, p: {"mean": v["mean"], "sigma": v["sigma"], "clip": v["clip"]}, kernels.noise,
            needs_tensor=True,
        ),
        TransformInfo(
            "RandomErasing", "Random erasing", "Blank out a random rectangle (area and aspect ratio in ranges).",
            (
                Param("scale", "span", (0.02, 0.33), 0, 1, "the rectangle's area as a fraction of the image", open_low=True),
                Param("ratio", "span", (0.3, 3.3), 0.05, 20, "the rectangle's height / width"),
                Param("value", "float", 0.0, 0, 1, "the grey level it is filled with (0 = black)"),
            ),
            "v2.RandomErasing",
            lambda v, p: {"p": p, "scale": v["scale"], "ratio": v["ratio"], "value": v["value"]},
            kernels.erasing, native_p=True, default_p=0.5,
        ),
        TransformInfo(
            "RandomInvert", "Invert", "Swap light and dark (a digit becomes black on white).",
            (), "v2.RandomInvert", _p_only, kernels.invert, native_p=True, default_p=0.5,
        ),
        TransformInfo(
            "RandomGrayscale", "Grayscale", "Drop the colour (keeps the number of channels).",
            (), "v2.RandomGrayscale", _p_only, kernels.grayscale, native_p=True, default_p=1.0,
        ),
        TransformInfo(
            "StrokeThickness", "Stroke thickness", "Thicker or thinner strokes: blend towards a 3 x 3 dilation or erosion.",
            (
                Param("thicker", "float", _DIGIT.thicker, 0, 1, "probability of thicker strokes"),
                Param("thinner", "float", _DIGIT.thinner, 0, 1, "probability of thinner strokes"),
                Param("max_thicker", "float", 1.0, 0, 3, "largest thickening, in 3 x 3 dilations"),
                Param("max_thinner", "float", 0.6, 0, 2, "largest thinning, in 3 x 3 erosions"),
            ),
            "StrokeThickness", lambda v, p: dict(v), kernels.stroke_thickness, needs_tensor=True, check=_check_stroke, digits_only=True,
        ),
        TransformInfo(
            "DigitWarp", "Digit warp", "The shipped models' training geometry: rotation, shear, uneven scale, shift in pixels.",
            (
                Param("degrees", "float", _DIGIT.degrees, 0, 180, "rotation drawn from [-degrees, degrees]"),
                Param("translate", "float", _DIGIT.translate, 0, 100, "shift drawn from [-t, t] pixels, each axis"),
                Param("scale", "span", _DIGIT.scale, 0.05, 10, "zoom range, drawn separately for width and height"),
                Param("shear", "float", _DIGIT.shear, 0, 80, "shear drawn from [-shear, shear] degrees"),
            ),
            "DigitWarp", lambda v, p: dict(v), kernels.digit_warp, needs_tensor=True, digits_only=True,
        ),
    )
}
# fmt: on


def get_transform(name: str) -> TransformInfo:
    """The catalogue entry called ``name``; an ``AugmentError`` lists the valid names otherwise."""
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):
        raise AugmentError(f"unknown transform {_short(name)}; the catalogue has: {', '.join(CATALOGUE)}") from None


def default_params(name: str, digit: bool = False) -> dict[str, Any]:
    """A transform's starting parameters; ``digit=True`` picks values that suit a 28 x 28 digit."""
    info = get_transform(name)
    return {q.name: q.digit_default if digit and q.digit_default is not None else q.default for q in info.params}


# --- Validation and the spec ------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters: error messages quote untrusted input without echoing megabytes of it."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, clipped."""
    try:
        return _clip(repr(value), limit)
    except ValueError:  # an int too long for repr (over 4300 digits)
        return f"a {type(value).__name__} too long to show"


def _number(where: str, value: Any, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AugmentError(f"{where} must be a number (got {_short(value)})")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer beyond float range, e.g. 400 digits in pasted JSON
        finite = False
    if not finite:
        raise AugmentError(f"{where} must be a finite number (got {_short(value)})")
    if integer:
        if float(value) != int(value):
            raise AugmentError(f"{where} must be a whole number (got {_short(value)})")
        return int(value)
    return float(value)


def _in_bounds(where: str, param: Param, value: float) -> None:
    above = value > param.low if param.open_low else value >= param.low
    if not above or value > param.high:
        low = f"above {param.low:g}" if param.open_low else f"at least {param.low:g}"
        raise AugmentError(f"{where} must be {low} and at most {param.high:g} (got {value:g})")


def _coerce(title: str, param: Param, value: Any) -> Any:
    """``value`` checked against ``param`` and normalised (ints, floats, tuples); an ``AugmentError`` says why not."""
    where = f"{title}: {param.name}"
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise AugmentError(f"{where} must be true or false (got {_short(value)})")
        return value
    if param.kind == "choice":
        if value not in param.choices:
            raise AugmentError(f"{where} must be one of {', '.join(param.choices)} (got {_short(value)})")
        return value
    if param.kind == "span":
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise AugmentError(f"{where} must be a pair [low, high] (got {_short(value)})")
        low, high = (_number(where, item) for item in value)
        if low > high:
            raise AugmentError(f"{where}: the low end {low:g} is above the high end {high:g}")
        _in_bounds(where, param, low)
        _in_bounds(where, param, high)
        return (low, high)
    number = _number(where, value, integer=param.kind == "int")
    _in_bounds(where, param, number)
    if param.odd and number % 2 == 0:
        raise AugmentError(f"{where} must be odd (got {number})")
    return number


@dataclass(frozen=True)
class Step:
    """One step of a pipeline: a catalogue transform, its parameters and the probability that it applies.

    Parameters left out take their defaults; every value is checked, so a ``Step`` that exists is valid.

    >>> Step("GaussianBlur", {"sigma": (-1.0, 1.0)})
    Traceback (most recent call last):
    vision_core.augment.AugmentError: Gaussian blur: sigma must be above 0 and at most 50 (got -1)
    """

    name: str
    params: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()  # stored as (name, value) pairs in catalogue order
    p: float | None = None  # None: the catalogue's default

    def __post_init__(self) -> None:
        info = get_transform(self.name)
        try:
            given = dict(self.params)
        except (TypeError, ValueError):
            raise AugmentError(
                f"{info.title}: parameters must be a mapping of names to values (got {_short(self.params)})"
            ) from None
        known = [q.name for q in info.params]
        unknown = sorted(set(given) - set(known), key=str)
        if unknown:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise AugmentError(f"{info.title}: unknown parameter(s) {_clip(', '.join(map(str, unknown)))}; {takes}")
        values = {q.name: _coerce(info.title, q, given.get(q.name, q.default)) for q in info.params}
        problem = info.check(values) if info.check else None
        if problem:
            raise AugmentError(f"{info.title}: {problem}")
        p = info.default_p if self.p is None else _number(f"{info.title}: probability", self.p)
        if not 0 <= p <= 1:
            raise AugmentError(f"{info.title}: the probability must be between 0 and 1 (got {p:g})")
        object.__setattr__(self, "params", tuple(values.items()))
        object.__setattr__(self, "p", p)

    @property
    def info(self) -> TransformInfo:
        return CATALOGUE[self.name]

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class PipelineSpec:
    """An augmentation pipeline: the steps in order. Frozen and hashable; ``spec_to_json`` / ``spec_from_json``."""

    steps: tuple[Step, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        steps = tuple(self.steps)
        if len(steps) > MAX_STEPS:
            raise AugmentError(f"a pipeline has at most {MAX_STEPS} steps (got {len(steps)})")
        if not all(isinstance(step, Step) for step in steps):
            raise AugmentError("a pipeline's steps must be Step objects")
        object.__setattr__(self, "steps", steps)


# What trained the shipped checkpoints (DigitAugment's defaults), as a spec: batch_augment(it) == DigitAugment().
SHIPPED_DIGIT_PRESET = PipelineSpec((Step("DigitWarp"), Step("StrokeThickness")))
# The course's CIFAR-10 training augmentation (its Normalize(0.5, 0.5) is inside the models).
CIFAR10_COURSE_PRESET = PipelineSpec((Step("RandomHorizontalFlip"), Step("RandomCrop", {"size": 32, "padding": 4})))
PRESETS: dict[str, PipelineSpec] = {
    "Shipped digit training (what the digit models were trained with)": SHIPPED_DIGIT_PRESET,
    "Stronger digit training": PipelineSpec(
        (
            Step("DigitWarp", {"degrees": 20.0, "translate": 3.0, "scale": (0.75, 1.2), "shear": 15.0}),
            Step("ElasticTransform", {"alpha": 34.0, "sigma": 4.0}, p=0.5),
            Step("StrokeThickness", {"thicker": 0.35, "thinner": 0.25, "max_thicker": 1.5}),
            Step("GaussianBlur", {"kernel_size": 3, "sigma": (0.1, 0.8)}, p=0.3),
            Step("RandomErasing", {"scale": (0.02, 0.12), "ratio": (0.3, 3.3)}, p=0.25),
        )
    ),
    "ImageNet-style photo training": PipelineSpec(
        (
            Step("RandomResizedCrop"),
            Step("RandomHorizontalFlip"),
            Step("ColorJitter"),
            Step("RandomRotation", {"degrees": (-10.0, 10.0)}),
            Step("GaussianBlur", p=0.3),
            Step("RandomErasing", p=0.25),
        )
    ),
    "CIFAR-10 training (the course's: horizontal flip, random crop with 4 px padding)": CIFAR10_COURSE_PRESET,
    "Empty": PipelineSpec(),
}


def spec_to_dict(spec: PipelineSpec) -> dict[str, Any]:
    """The JSON-able form: ``{"format", "version", "steps": [{"name", "p", "params"}]}``."""
    steps = [
        {"name": s.name, "p": s.p, "params": {k: list(v) if isinstance(v, tuple) else v for k, v in s.params}}
        for s in spec.steps
    ]
    return {"format": JSON_FORMAT, "version": 1, "steps": steps}


def spec_to_json(spec: PipelineSpec) -> str:
    return json.dumps(spec_to_dict(spec), indent=2)


def spec_from_dict(data: Any) -> PipelineSpec:
    """Check and build a spec from its JSON-able form (untrusted input: every field is validated)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("steps"), list):
        raise AugmentError('a pipeline must be a JSON object with a "steps" list')
    if data.get("format", JSON_FORMAT) != JSON_FORMAT or data.get("version", 1) != 1:
        raise AugmentError(
            f"unsupported pipeline format {_short(data.get('format'))} version {_short(data.get('version'))}"
        )
    if len(data["steps"]) > MAX_STEPS:
        raise AugmentError(f"a pipeline has at most {MAX_STEPS} steps (got {len(data['steps'])})")
    steps = []
    for number, item in enumerate(data["steps"], 1):
        if not isinstance(item, Mapping) or "name" not in item:
            raise AugmentError(f'step {number} must be an object with a "name"')
        extra = set(item) - {"name", "params", "p"}
        if extra:
            raise AugmentError(f"step {number}: unknown field(s) {_clip(', '.join(sorted(map(str, extra))))}")
        params = item.get("params", {})
        if not isinstance(params, Mapping):
            raise AugmentError(f'step {number}: "params" must be an object')
        try:
            steps.append(Step(item["name"], params, item.get("p")))
        except AugmentError as error:
            raise AugmentError(f"step {number}: {error}") from None
    return PipelineSpec(tuple(steps))


def spec_from_json(text: str | bytes) -> PipelineSpec:
    """Parse exported JSON back into a spec; an ``AugmentError`` says what is wrong with it."""
    if len(text) > MAX_JSON_CHARS:
        raise AugmentError(f"the pipeline JSON is over {MAX_JSON_CHARS:,} characters")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        # ValueError: bad syntax or encoding (JSONDecodeError, UnicodeDecodeError), or an integer over Python's
        # 4300-digit limit; RecursionError: arrays or objects nested thousands deep.
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise AugmentError(f"not valid JSON ({reason})") from None
    return spec_from_dict(data)


# --- Custom v2 transforms (digits): in vision_core.standalone_transforms, which exported code carries along ----------

_CUSTOM: dict[str, type[v2.Transform]] = {"StrokeThickness": StrokeThickness, "DigitWarp": DigitWarp}


# --- Building and exporting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """A constructor call, kept as data so that building and code export cannot drift apart."""

    target: str
    kwargs: tuple[tuple[str, Any], ...] = ()


_TO_FLOAT = (_Call("v2.ToImage"), _Call("v2.ToDtype", (("dtype", torch.float32), ("scale", True))))


def _plan(spec: PipelineSpec) -> list[list[_Call]]:
    """Per step, the calls that make it: the step, wrapped in RandomApply when p < 1, after a float conversion
    in front of the first step that has no PIL kernel."""
    plan, converted = [], False
    for step in spec.steps:
        info = step.info
        calls = [] if converted or not info.needs_tensor else list(_TO_FLOAT)
        converted = converted or info.needs_tensor
        call = _Call(info.target, tuple(info.kwargs(step.values, step.p).items()))
        if not info.native_p and step.p < 1:
            call = _Call("v2.RandomApply", (("transforms", [call]), ("p", step.p)))
        plan.append([*calls, call])
    return plan


def _instantiate(call: _Call) -> v2.Transform:
    kwargs = {k: [_instantiate(c) for c in v] if k == "transforms" else v for k, v in call.kwargs}
    cls = getattr(v2, call.target[3:]) if call.target.startswith("v2.") else _CUSTOM[call.target]
    return cls(**kwargs)


def _literal(value: Any) -> str:
    if isinstance(value, _Call):
        return f"{value.target}({', '.join(f'{k}={_literal(v)}' for k, v in value.kwargs)})"
    if isinstance(value, v2.InterpolationMode):
        return f"v2.InterpolationMode.{value.name}"
    if isinstance(value, torch.dtype):
        return str(value)  # "torch.float32"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_literal(v) for v in value) + ")"
    return repr(value)  # floats round-trip exactly through repr


def _targets(call: _Call) -> Iterator[str]:
    yield call.target
    for key, value in call.kwargs:
        if key == "transforms":
            for inner in value:
                yield from _targets(inner)


def _build_groups(spec: PipelineSpec) -> list[list[v2.Transform]]:
    return [[_instantiate(call) for call in calls] for calls in _plan(spec)]


def build_pipeline(spec: PipelineSpec) -> v2.Compose:
    """The spec as a torchvision ``v2.Compose`` for single images (a PIL image, or a (C, H, W) float tensor).

    >>> build_pipeline(PipelineSpec((Step("RandomRotation", {"degrees": (-30, 30)}),))).transforms
    [RandomRotation(degrees=[-30.0, 30.0], interpolation=InterpolationMode.BILINEAR, expand=False, fill=0)]
    """
    transforms = [t for group in _build_groups(spec) for t in group]
    return v2.Compose(transforms or [v2.Identity()])


def _standalone_source() -> str:
    """``standalone_transforms.py`` from its imports on: its module docstring is for the project, not the export."""
    source = inspect.getsource(standalone)
    tree = ast.parse(source)
    first = tree.body[1] if ast.get_docstring(tree) else tree.body[0]
    return "\n".join(source.splitlines()[first.lineno - 1 :]).rstrip()


def pipeline_to_code(spec: PipelineSpec) -> str:
    """Runnable Python, needing only torch and torchvision, that builds the same ``v2.Compose`` as
    ``build_pipeline(spec)`` and redoes any sample of the lab's grids: ``sample(image, seed, index)``."""
    calls = [call for calls in _plan(spec) for call in calls] or [_Call("v2.Identity")]
    custom = {target for call in calls for target in _targets(call)} & set(_CUSTOM)
    lines = [
        '"""Augmentation pipeline exported from the Vision explorer\'s Augmentation lab (needs torch and torchvision).',
        "",
        "sample(image, seed, index) is sample `index` of the lab's preview grid for `seed`, pixel for pixel.",
        '"""',
        "",
    ]
    lines += [_standalone_source()] if custom else ["import torch", "from torchvision.transforms import v2"]
    lines += ["", "", "pipeline = v2.Compose(", "    ["]
    lines += [f"        {_literal(call)}," for call in calls]
    lines += [
        "    ]",
        ")",
        "",
        "",
        "def sample(image, seed, index):",
        '    """Each sample of a grid has its own seed, so any one can be redone alone."""',
        f"    torch.manual_seed({SEED_STRIDE} * seed + index)",
        "    return pipeline(image)",
        "",
        "",
        "# pipeline(image) takes a PIL image, or a (C, H, W) float tensor in [0, 1] such as an MNIST digit; the lab",
        "# shows a float result x as the 8-bit pixels (x.clamp(0, 1) * 255).round().",
        "# The lab's 3 x 3 grid for seed 0: grid = [sample(image, 0, i) for i in range(9)]",
    ]
    return "\n".join(lines) + "\n"


# --- Bounds: what a preview may cost, known before any work ---------------------------------------------------------


@dataclass(frozen=True)
class PreviewLimits:
    """What one preview request (a grid, one sample step by step, a batched grid) may cost.

    Image sizes and the time estimate are checked before any work starts, with a message that says what to
    lower; the time and memory limits then hold in the worker process that runs the request.
    """

    max_image_pixels: int = 2048 * 2048  # any image along the pipeline (the lab shows photos at 1024 px at most)
    max_result_pixels: int = 16 * 1024 * 1024  # all the images one request sends back: 4 x 4 at 1024 x 1024
    max_estimated_seconds: float = 2.0  # the whole request, estimated for one core of the project's CPU
    seconds: float = 8.0  # wall-clock in the worker: the last line of defence, should the estimate be wrong
    memory_mb: int = 1024  # what the worker may allocate for the request
    wait_seconds: float = 10.0  # for a worker to come free
    light_seconds: float = 0.25  # requests estimated under this may use the worker kept free for small ones


PREVIEW_LIMITS = PreviewLimits()

# Nanoseconds per value (pixel x channel) of the larger of a step's input and output, on a PIL image / a float
# tensor: measured on the project's 2-core CPU with one thread, as the workers run them (`python
# benchmarks/augment.py --calibrate` measures them again). Blurs add their kernels' taps (_NS_PER_*_TAP).
_NS_PER_VALUE: dict[str, tuple[float, float]] = {
    "Resize": (4, 17),
    "RandomRotation": (10, 20),
    "RandomHorizontalFlip": (0.5, 1),
    "RandomVerticalFlip": (0.5, 1),
    "RandomCrop": (0.5, 1),
    "RandomResizedCrop": (3, 6),
    "RandomAffine": (10, 21),
    "RandomPerspective": (9, 16),
    "ElasticTransform": (40, 40),
    "ColorJitter": (13, 32),
    "GaussianBlur": (44, 38),
    "GaussianNoise": (47, 47),
    "RandomErasing": (1, 1),
    "RandomInvert": (0.5, 0.5),
    "RandomGrayscale": (1.2, 1.2),
    "StrokeThickness": (18, 18),
    "DigitWarp": (12, 12),
}
_NS_PER_BLUR_TAP = 0.17  # torchvision blurs with a full k x k kernel: per value and tap
_NS_PER_FIELD_TAP = 0.33  # ElasticTransform blurs two (H, W) displacement planes, k x k: per pixel, plane and tap
_NS_PER_RESULT_VALUE = 2.0  # a result to 8-bit pixels, sent back


@dataclass(frozen=True)
class _StepEstimate:
    size_in: tuple[int, int]  # (height, width)
    size_out: tuple[int, int]
    largest: tuple[int, int]  # (height, width) of the largest image it makes (a padded crop's is over its output's)
    seconds: float  # one sample


def _step_size(step: Step, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(height, width) after ``step``, and of the largest image it makes on the way."""
    v = step.values
    largest = None
    if step.name == "Resize":
        out = kernels.resized_size(height, width, v["size"])
    elif step.name == "RandomCrop":  # padding first; pad_if_needed pads up to the crop's size
        out = (v["size"], v["size"])
        largest = (max(height + 2 * v["padding"], v["size"]), max(width + 2 * v["padding"], v["size"]))
    elif step.name == "RandomResizedCrop":
        out = (v["size"], v["size"])
    else:
        out = (height, width)
    if step.p < 1:  # a step that may not apply: later steps may see either size, so count the larger
        out = (max(out[0], height), max(out[1], width))
    return out, largest or out


def _step_seconds(step: Step, channels: int, pixels: int, pil: bool) -> float:
    v = step.values
    per_value = _NS_PER_VALUE[step.name][0 if pil else 1]
    if step.name == "GaussianBlur":
        per_value += _NS_PER_BLUR_TAP * v["kernel_size"] ** 2
    ns = per_value * channels * pixels
    if step.name == "ElasticTransform":
        ns += _NS_PER_FIELD_TAP * 2 * kernels.elastic_kernel_size(v["sigma"]) ** 2 * pixels
    return ns * 1e-9


def _walk(spec: PipelineSpec, channels: int, height: int, width: int, pil: bool) -> list[_StepEstimate]:
    """Each step's sizes and estimated time for one sample, from sizes and parameters alone (no pixels touched)."""
    estimates = []
    for step in spec.steps:
        pil = pil and not step.info.needs_tensor
        out, largest = _step_size(step, height, width)
        pixels = max(largest[0] * largest[1], height * width)
        estimates.append(_StepEstimate((height, width), out, largest, _step_seconds(step, channels, pixels, pil)))
        height, width = out
    return estimates


@dataclass(frozen=True)
class PreviewCost:
    """A preview request's sizes and estimated time, from the image's size and the steps' parameters alone."""

    largest_image: tuple[int, int]  # (width, height) of the largest image along the pipeline
    largest_step: int  # the step that makes it (0: the input itself)
    result_images: int
    result_pixels: int  # all the images the request sends back together
    seconds: float  # estimated, for one core of the project's CPU
    costliest_step: int  # the step that takes longest (0: no steps)


def _image_shape(x: Image.Image | Tensor) -> tuple[int, int, int, bool]:
    """(channels, height, width, is PIL)."""
    if isinstance(x, Image.Image):
        return len(x.getbands()), x.height, x.width, True
    return x.shape[0], x.shape[-2], x.shape[-1], False


def preview_cost(
    image: Image.Image | Tensor, spec: PipelineSpec, samples: int = 9, stages: bool = False
) -> PreviewCost:
    """The cost of ``samples`` runs of ``spec`` on ``image`` (``stages``: one run, every step's image sent back)."""
    channels, height, width, pil = _image_shape(image)
    walk = _walk(spec, channels, height, width, pil)
    largest = [(height, width)] + [e.largest for e in walk]
    largest_step = max(range(len(largest)), key=lambda k: largest[k][0] * largest[k][1])
    outputs = [(height, width)] + [e.size_out for e in walk]
    shown = outputs if stages else [outputs[-1]] * samples
    per_sample = sum(e.seconds for e in walk)
    result_pixels = sum(h * w for h, w in shown)
    return PreviewCost(
        largest_image=(largest[largest_step][1], largest[largest_step][0]),
        largest_step=largest_step,
        result_images=len(shown),
        result_pixels=result_pixels,
        seconds=samples * per_sample + _NS_PER_RESULT_VALUE * 1e-9 * channels * result_pixels,
        costliest_step=max(range(len(walk)), key=lambda k: walk[k].seconds) + 1 if walk else 0,
    )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest value in [low, high] that ``fits`` (which holds up to some value, then never), or None."""
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _lower_sizes(step: Step, height: int, width: int, limit: int) -> str | None:
    """What to lower in ``step`` (Resize or a crop) on a ``height`` x ``width`` input so that its images fit in
    ``limit`` pixels: one parameter if that is enough, else each of them; None when no values are small enough."""

    def fits(values: dict[str, Any]) -> bool:
        big_height, big_width = _step_size(Step(step.name, values, step.p), height, width)[1]
        return big_height * big_width <= limit

    names = [name for name in ("size", "padding") if name in step.values]
    lowest = {q.name: int(q.low) for q in step.info.params if q.name in names}

    def largest(values: dict[str, Any], name: str) -> int | None:
        return _largest(lambda value: fits({**values, name: value}), lowest[name], step.values[name])

    for name in names:
        value = largest(step.values, name)
        if value is not None:
            return f"lower its {name} to {value} or less"
    chosen: dict[str, int] = {}
    for name in names:  # together: each as large as it can be with the ones after it at their lowest
        value = largest({**step.values, **lowest, **chosen}, name)
        if value is None:
            return None
        chosen[name] = value
    return "lower " + " and ".join(f"its {name} to {value} or less" for name, value in chosen.items())


def _too_large(cost: PreviewCost, spec: PipelineSpec, image: Image.Image | Tensor, limit: int) -> str:
    width, height = cost.largest_image
    allowed = f"over the lab's {_megapixels(limit)} per image ({math.isqrt(limit)} × {math.isqrt(limit)})"
    if cost.largest_step == 0:
        return f"the image is {width} × {height} ({_megapixels(width * height)}), {allowed}: make it smaller first"
    # Only Resize and the two crops make images larger than their input; each has a size, RandomCrop a padding too.
    step = spec.steps[cost.largest_step - 1]
    where = f"step {cost.largest_step} ({step.info.title}) makes {width} × {height} images ({_megapixels(width * height)}), {allowed}"
    advice = _lower_sizes(step, *_walk(spec, *_image_shape(image))[cost.largest_step - 1].size_in, limit)
    return f"{where}: {advice or 'make the image, or the steps before it, smaller'}"


def _too_slow(cost: PreviewCost, spec: PipelineSpec, samples: int, limit: float) -> str:
    step = spec.steps[cost.costliest_step - 1]
    advice = {
        "GaussianBlur": "lower its kernel_size (the time grows with its square)",
        "ElasticTransform": "lower its sigma (the time grows with its square)",
        "Resize": "lower its size",
        "RandomCrop": "lower its size or padding",
        "RandomResizedCrop": "lower its size",
    }.get(step.name, "put a crop or a resize before it")
    fewer = ", or use fewer samples" if samples > 1 else ""
    return (
        f"this preview needs an estimated {cost.seconds:.1f} s of computing, over the lab's {limit:g} s; "
        f"step {cost.costliest_step} ({step.info.title}) takes the longest: {advice}{fewer}"
    )


def check_preview(
    image: Image.Image | Tensor,
    spec: PipelineSpec,
    samples: int = 9,
    stages: bool = False,
    limits: PreviewLimits = PREVIEW_LIMITS,
) -> PreviewCost:
    """``preview_cost``, or an ``AugmentError`` saying what to lower when the request is over a limit."""
    cost = preview_cost(image, spec, samples, stages)
    if cost.largest_image[0] * cost.largest_image[1] > limits.max_image_pixels:
        raise AugmentError(_too_large(cost, spec, image, limits.max_image_pixels))
    if cost.seconds > limits.max_estimated_seconds:
        raise AugmentError(_too_slow(cost, spec, samples, limits.max_estimated_seconds))
    if cost.result_pixels > limits.max_result_pixels:
        raise AugmentError(
            f"the preview would send back {cost.result_images} images of {_megapixels(cost.result_pixels)} together, "
            f"over the lab's {_megapixels(limits.max_result_pixels)}: use fewer samples or smaller images"
        )
    return cost


# --- Previews: run in a worker process (its own global random generator, a time and a memory limit) -----------------

SEED_STRIDE = 1000  # sample i of seed s draws from torch.manual_seed(1000 * s + i): any sample can be redone alone
MAX_SEED = 2**32 - 1


def sample_seed(seed: int, index: int) -> int:
    """The torch seed of sample ``index`` of the grid for ``seed`` (exported code's ``sample`` uses the same)."""
    return SEED_STRIDE * seed + index


def _check_count(what: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise AugmentError(f"{what} must be a whole number from {low} to {high} (got {value!r})")
    return int(value)


def _as_input(image: Image.Image | Tensor) -> Image.Image | Tensor:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        x = image.detach().cpu()
        x = x[None] if x.ndim == 2 else x
        if x.ndim == 3 and x.shape[0] in (1, 3) and x.is_floating_point():
            return x.float().as_subclass(torch.Tensor)
        raise AugmentError(
            f"expected a (C, H, W) float tensor in [0, 1] with 1 or 3 channels, got {x.dtype} of shape {tuple(x.shape)}"
        )
    raise AugmentError(f"expected a PIL image or a (C, H, W) float tensor, got {type(image).__name__}")


def to_pil(x: Image.Image | Tensor) -> Image.Image:
    """A pipeline output (PIL, or a 1- or 3-channel tensor, float in [0, 1] or uint8) as a PIL image."""
    if isinstance(x, Image.Image):
        return x
    t = x.detach().cpu().as_subclass(torch.Tensor)
    t = t.float() / 255 if not t.is_floating_point() else t.float()
    pixels = (t.clamp(0, 1) * 255).round().to(torch.uint8)
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0].numpy(), mode="L")
    return Image.fromarray(pixels.permute(1, 2, 0).numpy(), mode="RGB")


def _size_of(x: Image.Image | Tensor) -> str:
    width, height = x.size if isinstance(x, Image.Image) else (x.shape[-1], x.shape[-2])
    return f"{width} × {height}"


def _run_group(group: list[v2.Transform], x: Any, step: Step, number: int) -> Any:
    """Apply one step's transforms; a failure on this image becomes an ``AugmentError`` naming the step."""
    size = _size_of(x)
    try:
        for transform in group:
            x = transform(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        if sandbox.is_out_of_memory(error):
            raise  # the sandbox reports it against the request's memory limit
        raise AugmentError(f"step {number} ({step.info.title}) cannot run on this {size} image: {error}") from error
    return x


def _run(groups: list[list[v2.Transform]], spec: PipelineSpec, x: Any) -> Any:
    for number, (step, group) in enumerate(zip(spec.steps, groups, strict=True), 1):
        x = _run_group(group, x, step, number)
    return x


def _seed_cpu(seed: int, index: int) -> None:
    """``torch.manual_seed(sample_seed(seed, index))`` for CPU work: the same CPU draws, without queueing a seed for
    each accelerator torch knows of (which formats a stack trace: 0.3 ms a call, 3 ms of a 3 x 3 digit grid)."""
    torch.default_generator.manual_seed(sample_seed(seed, index))


def _grid(x: Image.Image | Tensor, spec: PipelineSpec, n: int, seed: int) -> list[Image.Image]:
    """In a worker: sample i is ``torch.manual_seed(sample_seed(seed, i)); pipeline(x)``."""
    groups, samples = _build_groups(spec), []
    with torch.random.fork_rng(devices=[]):
        for index in range(n):
            _seed_cpu(seed, index)
            samples.append(to_pil(_run(groups, spec, x)))
    return samples


def _stages(x: Image.Image | Tensor, spec: PipelineSpec, seed: int, index: int) -> list[StepImage]:
    """In a worker: the input and the image after each step, for sample ``index`` of the grid."""
    shots = [StepImage("input", to_pil(x))]
    with torch.random.fork_rng(devices=[]):
        _seed_cpu(seed, index)
        for number, (step, group) in enumerate(zip(spec.steps, _build_groups(spec), strict=True), 1):
            x = _run_group(group, x, step, number)
            shots.append(StepImage(f"{number}. {step.info.title}", to_pil(x)))
    return shots


def _batched_grid(x: Tensor, spec: PipelineSpec, n: int, seed: int) -> list[Image.Image]:
    """In a worker: ``n`` copies of ``x`` through the batched pipeline, drawing from a generator seeded ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [to_pil(t) for t in batch_augment(spec)(x.expand(n, -1, -1, -1).contiguous(), generator)]


def _bounded(task: Callable[..., T], *args: Any, cost: PreviewCost, limits: PreviewLimits) -> T:
    """``task(*args)`` in a sandbox worker under ``limits``; what stopped it, as an ``AugmentError``."""
    bounds = sandbox.Limits(
        seconds=limits.seconds,
        memory_mb=limits.memory_mb,
        wait_seconds=limits.wait_seconds,
        light=cost.seconds <= limits.light_seconds,
    )
    try:
        return sandbox.run(task, *args, limits=bounds)
    except sandbox.TimeLimitError:
        raise AugmentError(
            f"the preview ran past {limits.seconds:g} s and was stopped: use fewer samples, smaller images or lighter steps"
        ) from None
    except sandbox.MemoryLimitError:
        raise AugmentError(
            f"the preview needed more than {limits.memory_mb} MB and was stopped: use fewer samples or smaller images"
        ) from None
    except sandbox.PoolBusyError:
        raise AugmentError("the server is busy with other previews: try again in a moment") from None
    except sandbox.SandboxError as error:
        raise AugmentError(f"the preview could not run: {error}") from None


def preview(
    image: Image.Image | Tensor, spec: PipelineSpec, n: int = 9, seed: int = 0, limits: PreviewLimits = PREVIEW_LIMITS
) -> list[Image.Image]:
    """``n`` random outputs of the pipeline for ``image``: the same seed gives the same images.

    Sample i is ``torch.manual_seed(sample_seed(seed, i)); pipeline(image)``, which the exported code's
    ``sample(image, seed, i)`` redoes. Runs in a worker process, within ``limits`` (refused before any work
    when the sizes or the estimated time are over them).

    >>> digit = torch.zeros(1, 28, 28); digit[:, 6:22, 12:16] = 1
    >>> [im.size for im in preview(digit, SHIPPED_DIGIT_PRESET, n=2, seed=0)]
    [(28, 28), (28, 28)]
    """
    n = _check_count("the number of samples", n, 1, MAX_SAMPLES)
    seed = _check_count("the seed", seed, 0, MAX_SEED)
    x = _as_input(image)
    cost = check_preview(x, spec, samples=n, limits=limits)
    return _bounded(_grid, x, spec, n, seed, cost=cost, limits=limits)


@dataclass(frozen=True)
class StepImage:
    title: str  # "input" or "2. Random rotation"
    image: Image.Image


def intermediates(
    image: Image.Image | Tensor,
    spec: PipelineSpec,
    seed: int = 0,
    index: int = 0,
    limits: PreviewLimits = PREVIEW_LIMITS,
) -> list[StepImage]:
    """The input and the image after each step, for sample ``index`` of ``preview(image, spec, n, seed)``."""
    index = _check_count("the sample index", index, 0, MAX_SAMPLES - 1)
    seed = _check_count("the seed", seed, 0, MAX_SEED)
    x = _as_input(image)
    cost = check_preview(x, spec, samples=1, stages=True, limits=limits)
    return _bounded(_stages, x, spec, seed, index, cost=cost, limits=limits)


# --- Batched: what training uses --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchAugment:
    """A spec applied to whole (B, C, H, W) float batches on their device, every sample with its own draws.

    Called like ``DigitAugment``: ``augment(x, generator)``. ``keep_size`` (training) refuses pipelines
    that change the image size.

    >>> x = torch.rand(4, 1, 28, 28); g = torch.Generator().manual_seed(0)
    >>> torch.equal(batch_augment(SHIPPED_DIGIT_PRESET)(x, g), DigitAugment()(x, torch.Generator().manual_seed(0)))
    True
    """

    spec: PipelineSpec
    keep_size: bool = True

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.ndim != 4 or not x.is_floating_point() or x.shape[1] not in (1, 3):
            raise AugmentError(
                f"expected a (B, C, H, W) float batch with 1 or 3 channels, got {x.dtype} of shape {tuple(x.shape)}"
            )
        out = x
        for number, step in enumerate(self.spec.steps, 1):
            info = step.info
            try:
                if info.native_p or step.p >= 1:
                    new = info.batched(out, step.values, step.p, generator)
                else:
                    applied = info.batched(out, step.values, 1.0, generator)
                    if applied.shape != out.shape:
                        raise AugmentError(
                            f"step {number} ({info.title}) changes the image size, so it cannot apply to only some samples (p < 1)"
                        )
                    new = torch.where(kernels.coin(out.shape[0], step.p, generator, out.device), applied, out)
            except (RuntimeError, IndexError) as error:
                size = f"{out.shape[-1]} × {out.shape[-2]}"
                raise AugmentError(f"step {number} ({info.title}) cannot run on a {size} batch: {error}") from error
            out = new
        if self.keep_size and out.shape[-2:] != x.shape[-2:]:
            raise AugmentError(
                f"the pipeline turns {x.shape[-1]} × {x.shape[-2]} images into {out.shape[-1]} × {out.shape[-2]}; "
                f"training needs the size kept (the models take {x.shape[-1]} × {x.shape[-2]})"
            )
        return out


def batch_augment(spec: PipelineSpec, keep_size: bool = True) -> BatchAugment:
    """The batched version of ``spec``: what training runs (``SHIPPED_DIGIT_PRESET`` gives ``DigitAugment``)."""
    return BatchAugment(spec, keep_size)


def preview_batch(
    digit: Tensor, spec: PipelineSpec, n: int = 9, seed: int = 0, limits: PreviewLimits = PREVIEW_LIMITS
) -> list[Image.Image]:
    """``n`` copies of a (1, 28, 28) digit through the batched (training) version of ``spec``, seeded; in a worker."""
    x, n = _as_input(digit), _check_count("the number of samples", n, 1, MAX_SAMPLES)
    if isinstance(x, Image.Image):
        raise AugmentError("the batched preview needs a (C, H, W) float tensor, such as a 28 x 28 digit")
    seed = _check_count("the seed", seed, 0, MAX_SEED)
    cost = check_preview(x, spec, samples=n, limits=limits)
    return _bounded(_batched_grid, x, spec, n, seed, cost=cost, limits=limits)


# --- Sources ----------------------------------------------------------------------------------------------------


def list_sample_photos(directory: Path = SAMPLES_DIR) -> list[Path]:
    """The shipped sample photos (whatever images ``data/samples`` holds), sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())


# --- The robustness probe ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A deterministic transform of a digit, controlled by one value, for sweeping."""

    name: str
    title: str
    unit: str
    low: float
    high: float
    default: tuple[float, float]
    neutral: float  # the value that leaves the digit unchanged


PROBES: dict[str, Probe] = {
    p.name: p
    for p in (
        Probe("rotation", "Rotation", "degrees, counter-clockwise", -180, 180, (-90, 90), 0),
        Probe("shift-x", "Horizontal shift", "pixels, to the right", -14, 14, (-8, 8), 0),
        Probe("shift-y", "Vertical shift", "pixels, downwards", -14, 14, (-8, 8), 0),
        Probe("scale", "Scale", "factor", 0.2, 3, (0.4, 1.6), 1),
        Probe("thickness", "Stroke thickness", "3 × 3 dilations (negative: erosions)", -2, 3, (-1.5, 2.5), 0),
        Probe("blur", "Gaussian blur", "sigma, pixels", 0, 4, (0, 3), 0),
        Probe("noise", "Gaussian noise", "sigma", 0, 1, (0, 0.8), 0),
    )
}
MAX_PROBE_VALUES = 721


def get_probe(name: str) -> Probe:
    try:
        return PROBES[name]
    except (KeyError, TypeError):
        raise AugmentError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}") from None


def probe_images(image: Tensor, transform: str, values: Sequence[float], seed: int = 0) -> Tensor:
    """(V, 1, 28, 28): the (1, 28, 28) digit ``image`` transformed once per value (noise: one seeded field, scaled)."""
    probe = get_probe(transform)
    if len(values) < 1 or len(values) > MAX_PROBE_VALUES:
        raise AugmentError(f"give 1 to {MAX_PROBE_VALUES} values (got {len(values)})")
    v = torch.tensor([_number(f"{probe.title}: value", value) for value in values], dtype=torch.float32)
    if v.min() < probe.low or v.max() > probe.high:
        raise AugmentError(f"{probe.title} values must lie in [{probe.low:g}, {probe.high:g}] ({probe.unit})")
    x = _as_input(image)
    if isinstance(x, Image.Image) or tuple(x.shape) != (1, MNIST_SIZE, MNIST_SIZE):  # bounds the work, with the values
        raise AugmentError(f"the probe needs a digit: a (1, {MNIST_SIZE}, {MNIST_SIZE}) float tensor in [0, 1]")
    x = x.expand(len(v), -1, -1, -1).contiguous()
    zero, one = torch.zeros_like(v), torch.ones_like(v)
    if probe.name == "rotation":
        return kernels.affine_warp(x, kernels.inverse_affine(-v, zero, zero, one, zero), "bilinear")
    if probe.name in ("shift-x", "shift-y"):
        tx, ty = (v, zero) if probe.name == "shift-x" else (zero, v)
        return kernels.affine_warp(x, kernels.inverse_affine(zero, tx, ty, one, zero), "bilinear")
    if probe.name == "scale":
        return kernels.affine_warp(x, kernels.inverse_affine(zero, zero, zero, v, zero), "bilinear")
    if probe.name == "thickness":
        return kernels.change_stroke(x, v)
    if probe.name == "blur":  # sigma 0 is a kernel of one tap: the digit itself
        kernel = min(2 * math.ceil(3 * float(v.max())) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
        return kernels.gaussian_blur(x, max(kernel, 1), v.clamp(min=1e-3))
    noise = torch.randn(1, *x.shape[1:], generator=torch.Generator().manual_seed(seed))
    return (x + v.view(-1, 1, 1, 1) * noise).clamp(0, 1)


def robustness_curve(
    image: Tensor, label: int, transform: str, values: Sequence[float], models: Mapping[str, nn.Module], seed: int = 0
) -> pd.DataFrame:
    """Each model's confidence in ``label`` (and its prediction) as ``transform`` sweeps over ``values``.

    One forward pass per model over all values. Columns: value, model, confidence (probability of the
    true label), predicted, predicted_confidence, correct.

    >>> from vision_core import load_model
    >>> table = robustness_curve(torch.zeros(1, 28, 28), 0, "rotation", [0, 90], {"lenet": load_model("lenet", device="cpu")})
    >>> list(table.columns)
    ['value', 'model', 'confidence', 'predicted', 'predicted_confidence', 'correct']
    """
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label <= 9:
        raise AugmentError(f"the true label must be a digit 0-9 (got {label!r})")
    if not models:
        raise AugmentError("no digit models to probe")
    batch = probe_images(image, transform, values, seed)
    frames = []
    with torch.inference_mode():
        for name, model in models.items():
            device = next(model.parameters()).device
            probs = torch.softmax(model(batch.to(device)).float(), dim=1).cpu()  # (V, 10)
            top, predicted = probs.max(dim=1)
            frames.append(
                pd.DataFrame(
                    {
                        "value": [float(v) for v in values],
                        "model": name,
                        "confidence": probs[:, label].numpy(),
                        "predicted": predicted.numpy(),
                        "predicted_confidence": top.numpy(),
                        "correct": (predicted == label).numpy(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)
