"""Checkpoints: safetensors weights plus a JSON model card. Nothing is ever unpickled.

``checkpoints/NAME.safetensors`` holds the tensors; ``checkpoints/NAME.json`` says what they are
(architecture and its config, so loading never guesses) and how they were made (recipe, seed,
data, device, time) and how good they are (MNIST test metrics).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import load_file, save_file
from safetensors.torch import save as safetensors_save
from torch import nn

from vision_core.models.mnist import ARCHITECTURES, build_digit_model, config_from_dict

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
CARD_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match its model card."""


def _clip(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters: messages quote untrusted input without echoing all of it."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


@dataclass(frozen=True)
class ModelCard:
    name: str
    title: str
    architecture: str
    config: dict[str, Any]
    num_params: int
    task: str = "digits"
    recipe: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    data: str = "MNIST train (60,000 images)"
    metrics: dict[str, float] = field(default_factory=dict)  # MNIST test: accuracy, f1_macro, loss, n
    train_seconds: float | None = None
    device: str | None = None
    created: str | None = None
    torch_version: str = torch.__version__
    card_version: int = CARD_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as error:  # bad syntax or encoding, a 5000-digit number, deep nesting
            reason = "nested too deeply" if isinstance(error, RecursionError) else error
            raise CheckpointError(f"model card is not valid JSON: {reason}") from None
        if not isinstance(values, dict):
            raise CheckpointError("model card must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        if missing := required - set(values):
            raise CheckpointError(f"model card lacks {sorted(missing)}")
        if not isinstance(values.get("architecture"), str) or values["architecture"] not in ARCHITECTURES:
            raise CheckpointError(
                f"model card names unknown architecture {_clip(repr(values.get('architecture')))}; "
                f"known: {sorted(ARCHITECTURES)}"
            )
        return cls(**{k: v for k, v in values.items() if k in known})


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(model: nn.Module, card: ModelCard, directory: Path = CHECKPOINT_DIR) -> Path:
    """Write ``NAME.safetensors`` and ``NAME.json`` into ``directory``; returns the weights path.

    Both files are written to temporary names first, so a full disk or a crash never leaves a
    half-written checkpoint under the real name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    weights, card_path = directory / f"{card.name}.safetensors", directory / f"{card.name}.json"
    tmp_weights, tmp_card = weights.with_suffix(".safetensors.tmp"), card_path.with_suffix(".json.tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    try:
        save_file(state, str(tmp_weights), metadata={"architecture": card.architecture, "name": card.name})
        tmp_card.write_text(card.to_json())
        tmp_weights.replace(weights)
        tmp_card.replace(card_path)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_card.unlink(missing_ok=True)
    return weights


def read_card(path: Path) -> ModelCard:
    """The model card beside ``path`` (either the ``.json`` or the ``.safetensors`` file)."""
    card_path = Path(path).with_suffix(".json")
    if not card_path.exists():
        raise CheckpointError(f"no model card at {card_path}")
    return ModelCard.from_json(card_path.read_text())


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Build the card's architecture and load the safetensors weights into it (strictly), in eval mode."""
    card = read_card(path)
    weights_path = Path(path).with_suffix(".safetensors")
    if not weights_path.exists():
        raise CheckpointError(f"model card {weights_path.with_suffix('.json').name} has no weights file {weights_path}")
    try:
        model = build_digit_model(card.architecture, config_from_dict(card.architecture, card.config))
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot read checkpoint {weights_path.name}: {error}") from error
    expected = model.state_dict()
    mismatched = [k for k, v in state.items() if k in expected and expected[k].shape != v.shape]
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if mismatched or missing or unexpected:
        raise CheckpointError(
            f"{weights_path.name} does not match its card's {card.architecture} config: "
            f"shape mismatches {mismatched[:5]}, missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.load_state_dict(state)
    return model.to(device).eval(), card


# --- Importing a run bundle (the zip the Fine-tune page downloads) -----------------------------------------------
# An upload is untrusted: every limit below is checked before the bytes it guards are read, decompressed or built.
# Where saved and imported runs live. VISION_EXPLORER_RUNS_DIR moves it (the tests point it at a temporary folder,
# so runs a user saved never change what the test suite sees).
RUNS_DIR = Path(os.environ.get("VISION_EXPLORER_RUNS_DIR") or CHECKPOINT_DIR / "runs")
MAX_BUNDLE_BYTES = 25 * 1024 * 1024  # the zip itself: the app's upload limit (.streamlit/config.toml maxUploadSize)
MAX_MEMBERS = 16  # a bundle has 6 files
MAX_CENTRAL_DIRECTORY = (
    16 * 1024
)  # bytes of the zip's index: read before anything is parsed, so 1M tiny entries cost nothing
MAX_WEIGHTS_BYTES = 64 * 1024 * 1024  # decompressed safetensors
MAX_TEXT_BYTES = 1024 * 1024  # decompressed card / metrics / anything else in the zip
MAX_RATIO = 100  # decompressed / compressed for members over 1 MB: float weights deflate ~1.1x, a zip bomb 1000x
MAX_PARAMS = MAX_WEIGHTS_BYTES // 4  # float32 parameters the weights limit can hold: 16.8 M
MAX_HISTORY = 2_000  # per-epoch records in metrics.json
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")  # the Fine-tune page's rule for run names
_READ_CHUNK = 1024 * 1024
# Each importable architecture's config fields: (low, high) for numbers, or (low, high, max length) for tuples.
# They bound the model's size before it is built at all (num_classes is always 10: the models name digits).
_CONFIG_BOUNDS: dict[str, dict[str, tuple]] = {
    "lenet": {"channels": (1, 256, 2), "hidden": (1, 4096, 2), "num_classes": (10, 10)},
    "vgg": {"widths": (1, 512, 6), "convs_per_stage": (1, 6), "dropout": (0.0, 0.99), "num_classes": (10, 10)},
    "vit": {
        "patch_size": (1, 28), "embed_dim": (1, 1024), "depth": (1, 24), "num_heads": (1, 32), "mlp_ratio": (0.01, 8.0),
        "drop_path_rate": (0.0, 0.99), "num_classes": (10, 10),
    },
    **{name: {"image_size": (32, 224), "num_classes": (10, 10)} for name in ("vgg16", "alexnet", "resnet18")},
}  # fmt: skip


@dataclass(frozen=True)
class Bundle:
    """A validated run bundle, in memory: the card, the weights (matching the card's architecture) and the history."""

    card: ModelCard
    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_member_name(name: str) -> None:
    parts = name.rstrip("/").split("/")
    if (
        not name
        or len(name) > 255
        or name.startswith("/")
        or "\\" in name
        or any(ord(c) < 32 for c in name)
        or re.match(r"[A-Za-z]:", name)
        or any(part in ("", ".", "..") for part in parts)
        or len(parts) > 3
    ):
        raise CheckpointError(f"the zip holds an unsafe file name {_clip(repr(name))}: is it really a run bundle?")


def _check_index(data: bytes) -> None:
    """Read the zip's end record ourselves: refuse a huge index (a zip of a million empty files) before parsing it."""
    tail = data[-(65_535 + 22) :]
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise CheckpointError("the file is damaged: it starts like a zip but has no end-of-archive record")
    _, _, _, entries, index_size, _, comment = struct.unpack("<HHHHIIH", tail[at + 4 : at + 22])
    if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        pickled = b"data.pkl" in tail  # torch.save writes ZIP64 zips around a pickle
        raise CheckpointError(
            "this is a PyTorch pickle (torch.save): the app never unpickles; import the run bundle (safetensors)"
            if pickled
            else "the zip uses ZIP64 records, which a run bundle never needs"
        )
    if at + 22 + comment != len(tail):
        raise CheckpointError("the zip's end record is damaged or not where it belongs")
    if entries > MAX_MEMBERS or index_size > MAX_CENTRAL_DIRECTORY:
        raise CheckpointError(
            f"the zip lists {entries:,} files ({index_size:,} bytes of index); a run bundle has at most {MAX_MEMBERS}"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The member's bytes, decompressed in chunks and stopped at ``limit`` whatever its header claims."""
    chunks, size = [], 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(_READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise CheckpointError(
                        f"{info.filename} unpacks to over {limit / 2**20:.0f} MB although its header says "
                        f"{info.file_size:,} bytes: a zip bomb?"
                    )
                chunks.append(chunk)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as error:
        raise CheckpointError(f"{info.filename} in the zip is damaged ({error})") from None
    return b"".join(chunks)


def _open_bundle(data: bytes) -> tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]:
    if len(data) > MAX_BUNDLE_BYTES:
        raise CheckpointError(f"the file is {len(data) / 2**20:.0f} MB; a run bundle is at most {MAX_BUNDLE_BYTES / 2**20:.0f} MB")  # fmt: skip
    if not data:
        raise CheckpointError("the file is empty")
    if not data.startswith(b"PK\x03\x04"):
        header = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
        if 2 <= header < len(data) and data[8:9] == b"{":
            raise CheckpointError(
                "this is a bare .safetensors file: it has no model card to say what it is. Upload the run's zip "
                "bundle (Fine-tune page, 'Download the run'): weights and NAME.json card together"
            )
        if data[:1] == b"\x80":
            raise CheckpointError("this is a Python pickle: the app never unpickles (it can run code); use safetensors")
        raise CheckpointError("this is not a zip file: upload the run bundle (.zip) from the Fine-tune page")
    _check_index(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, struct.error) as error:
        raise CheckpointError(f"the zip file is damaged ({error})") from None
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"the zip holds {len(infos)} files; a run bundle has at most {MAX_MEMBERS}")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        _check_member_name(info.filename)
        if info.filename in members:
            raise CheckpointError(f"the zip holds {_clip(info.filename)} twice")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{_clip(info.filename)} is encrypted; a run bundle never is")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{_clip(info.filename)} uses a compression the app does not read (only deflate)")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise CheckpointError(f"{_clip(info.filename)} is a symbolic link; a run bundle holds plain files")
        limit = MAX_WEIGHTS_BYTES if info.filename.endswith(".safetensors") else MAX_TEXT_BYTES
        if info.file_size > limit:
            raise CheckpointError(f"{_clip(info.filename)} unpacks to {info.file_size / 2**20:.0f} MB; the limit is {limit / 2**20:.0f} MB")  # fmt: skip
        if info.file_size > 2**20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise CheckpointError(
                f"{_clip(info.filename)} would unpack {info.file_size / max(info.compress_size, 1):,.0f}x: a zip bomb?"
            )
        if not info.is_dir():
            members[info.filename] = info
    return archive, members


def _check_str(card: dict[str, Any], key: str, limit: int, optional: bool = True) -> None:
    value = card.get(key)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > limit or any(ord(c) < 32 for c in value):
        raise CheckpointError(f"model card: {key} must be one line of text up to {limit} characters")


def _check_card(values: Any) -> None:
    """Types and ranges of everything the app reads from a card (pages format these values without asking)."""
    if not isinstance(values, dict):
        raise CheckpointError("model card must be a JSON object")
    for key in ("title", "architecture", "data"):
        _check_str(values, key, 300, optional=False)
    for key in ("device", "created", "torch_version"):
        _check_str(values, key, 100)
    if values.get("task", "digits") != "digits":
        raise CheckpointError(f"model card: task must be 'digits' (got {_clip(repr(values.get('task')))})")
    if values.get("card_version", CARD_VERSION) != CARD_VERSION:
        raise CheckpointError(f"model card version {_clip(repr(values.get('card_version')))}: this app reads version {CARD_VERSION}")  # fmt: skip
    if not isinstance(values.get("num_params"), int) or isinstance(values["num_params"], bool):
        raise CheckpointError("model card: num_params must be a whole number")
    if values.get("seed") is not None and (not isinstance(values["seed"], int) or isinstance(values["seed"], bool)):
        raise CheckpointError("model card: seed must be a whole number or null")
    seconds = values.get("train_seconds")
    if seconds is not None and not (_is_number(seconds) and seconds >= 0):
        raise CheckpointError("model card: train_seconds must be a number of seconds or null")
    for key in ("config", "recipe", "metrics"):
        if not isinstance(values.get(key, {}), dict):
            raise CheckpointError(f"model card: {key} must be a JSON object")
    metrics = values.get("metrics", {})
    if not all(_is_number(v) for v in metrics.values()):
        raise CheckpointError("model card: every metric must be a finite number")
    if metrics and "accuracy" not in metrics:
        raise CheckpointError("model card: metrics must include the test accuracy")
    for key in ("accuracy", "f1_macro"):
        if key in metrics and not 0 <= metrics[key] <= 1:
            raise CheckpointError(f"model card: {key} must be between 0 and 1 (got {metrics[key]:g})")
    if metrics.get("loss", 0) < 0 or metrics.get("n", 0) < 0:
        raise CheckpointError("model card: loss and n must not be negative")


def _check_config(architecture: str, values: dict[str, Any]) -> Any:
    """The card's config as a config object, each field typed and bounded, so the model it builds is small."""
    bounds = _CONFIG_BOUNDS.get(architecture)
    if bounds is None:
        raise CheckpointError(f"{architecture} checkpoints cannot be imported")
    unknown = sorted(set(values) - set(bounds))
    if unknown:
        raise CheckpointError(f"model card: the {architecture} config has unknown fields {_clip(str(unknown))}")
    for key, value in values.items():
        low, high, *length = bounds[key]
        items = value if length else [value]
        if length and not (isinstance(value, list) and 1 <= len(value) <= length[0]):
            raise CheckpointError(f"model card: config {key} must be a list of 1 to {length[0]} numbers")
        integer = isinstance(low, int)
        for item in items:
            ok = isinstance(item, int) and not isinstance(item, bool) if integer else _is_number(item)
            if not ok or not low <= item <= high:
                kind = "whole number" if integer else "number"
                raise CheckpointError(
                    f"model card: config {key} must be a {kind} from {low} to {high} (got {_clip(repr(item))})"
                )
    try:
        return config_from_dict(architecture, values)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"model card: bad {architecture} config ({error})") from None


def _expected_state(architecture: str, config: Any) -> tuple[dict[str, torch.Tensor], int]:
    """The architecture's state dict (shapes and dtypes only) and parameter count, built on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            model = build_digit_model(architecture, config)
    except (ValueError, TypeError, AssertionError, RuntimeError, ZeroDivisionError) as error:
        raise CheckpointError(f"the card's {architecture} config does not build a model ({error})") from None
    return model.state_dict(), count_parameters(model)


def _check_history(metrics: bytes | None) -> list[dict[str, Any]]:
    """metrics.json's per-epoch history (what the Compare page charts), type-checked; [] when absent."""
    if metrics is None:
        return []
    try:
        values = json.loads(metrics)
    except (ValueError, RecursionError):
        raise CheckpointError("metrics.json is not valid JSON") from None
    history = values.get("history", []) if isinstance(values, dict) else None
    if not isinstance(history, list) or len(history) > MAX_HISTORY:
        raise CheckpointError(f"metrics.json: history must be a list of at most {MAX_HISTORY} epochs")
    clean = []
    for record in history:
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("epoch"), int)
            or isinstance(record.get("epoch"), bool)
            or record.get("split") not in ("train", "val")
            or not all(_is_number(record.get(key)) for key in ("loss", "accuracy"))
        ):
            raise CheckpointError("metrics.json: each history record needs an epoch, split, loss and accuracy")
        clean.append({key: record[key] for key in ("epoch", "split", "loss", "accuracy", "elapsed") if key in record})
    return clean


def read_bundle(data: bytes) -> Bundle:
    """Validate a run bundle (``training.run_bundle``'s zip) entirely in memory; nothing is written.

    Checked, in this order, each before the next is read: the size, that it is a zip, its index
    size and file count, every file name (no absolute paths, ``..`` or links), every declared and
    actual decompressed size; then the card (JSON types, a known architecture, a bounded config
    whose parameter count is computed without allocating the model), then the weights
    (safetensors only, never a pickle): names, shapes and dtypes exactly the architecture's, all
    finite; and finally the built model runs on a 28 x 28 digit. Raises ``CheckpointError``.
    """
    archive, members = _open_bundle(bytes(data))
    with archive:
        weights = [name for name in members if name.endswith(".safetensors")]
        if any(name.endswith((".pt", ".pth", ".pkl", ".ckpt", ".bin")) for name in members):
            raise CheckpointError(
                "the zip holds pickled PyTorch weights: the app never unpickles; it reads safetensors"
            )
        if len(weights) != 1:
            raise CheckpointError(
                f"a run bundle holds exactly one .safetensors weights file; this zip holds {len(weights)}"
            )
        folder, _, filename = weights[0].rpartition("/")
        stem, prefix = filename.removesuffix(".safetensors"), f"{folder}/" if folder else ""
        card_info = members.get(f"{prefix}{stem}.json")
        if card_info is None:
            raise CheckpointError(f"the zip has no model card {stem}.json beside {filename}")
        try:
            card_values = json.loads(_read_member(archive, card_info, MAX_TEXT_BYTES).decode("utf-8"))
        except (ValueError, RecursionError):
            raise CheckpointError(f"the model card {stem}.json is not valid JSON") from None
        _check_card(card_values)
        if card_values.get("name") != stem:
            raise CheckpointError(f"the model card names {_clip(repr(card_values.get('name')))}, but the weights are {filename}")  # fmt: skip
        card = ModelCard.from_json(json.dumps(card_values))  # required fields and a known architecture
        config = _check_config(card.architecture, card.config)
        expected, num_params = _expected_state(card.architecture, config)
        if num_params > MAX_PARAMS:
            raise CheckpointError(f"the card's config builds {num_params:,} parameters; the limit is {MAX_PARAMS:,}")
        if card.num_params != num_params:
            raise CheckpointError(f"the card says {card.num_params:,} parameters; its config builds {num_params:,}")
        metrics = members.get(f"{prefix}metrics.json")
        history = _check_history(_read_member(archive, metrics, MAX_TEXT_BYTES) if metrics else None)
        raw = _read_member(archive, members[weights[0]], MAX_WEIGHTS_BYTES)
    try:
        state = safetensors_load(raw)
    except (SafetensorError, ValueError, TypeError, RuntimeError, OverflowError, KeyError) as error:
        raise CheckpointError(f"{filename} is not a readable safetensors file ({_clip(str(error), 200)})") from None
    del raw
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [
        f"{key} {tuple(state[key].shape)} {state[key].dtype}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape or state[key].dtype != expected[key].dtype
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{filename} does not match a {card.architecture} with the card's config: missing {_clip(str(missing[:3]))}, "
            f"unexpected {_clip(str(unexpected[:3]))}, wrong shape or dtype {_clip(str(wrong[:3]), 200)}"
        )
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        raise CheckpointError(f"{filename} holds NaN or infinite weights")
    try:
        model = build_digit_model(card.architecture, config)
        model.load_state_dict(state)
        with torch.inference_mode():
            out = model.eval()(torch.zeros(2, 1, 28, 28))
    except (RuntimeError, ValueError, TypeError, AssertionError) as error:
        raise CheckpointError(f"the model does not run on a 28 x 28 digit ({_clip(str(error), 200)})") from None
    if tuple(out.shape) != (2, 10) or not bool(torch.isfinite(out).all()):
        raise CheckpointError(f"the model gives {tuple(out.shape)} outputs, not 10 finite digit scores")
    return Bundle(card=card, state=state, history=history)


def _publish(tmp: Path, final: Path) -> None:
    """Give ``tmp`` its real name atomically, never replacing a file that is already there (another upload's)."""
    try:
        os.link(tmp, final)  # fails with FileExistsError if ``final`` exists: no check-then-write race
    except FileExistsError:
        raise CheckpointError(f"the name {final.stem!r} is taken; pick another") from None
    except OSError:  # a file system without hard links
        if final.exists():
            raise CheckpointError(f"the name {final.stem!r} is taken; pick another") from None
        os.replace(tmp, final)


def import_checkpoint(
    data: bytes, directory: Path = RUNS_DIR, taken: Iterable[str] = (), name: str | None = None
) -> Path:
    """Validate a run bundle (see ``read_bundle``) and save it as ``directory/NAME.safetensors`` + card + history.

    ``taken``: names already in use (registered models), compared case-insensitively; ``name``: save
    under this name instead of the card's. Nothing is written unless the whole bundle is valid, and
    each file appears under its real name at once or not at all. Returns the weights path; raises
    ``CheckpointError`` (also for a full disk or a read-only folder).
    """
    bundle = read_bundle(data)
    card = bundle.card
    if name is not None:
        name = name.strip()
        if not RUN_NAME.fullmatch(name):
            raise CheckpointError("a run name is 1-48 letters, digits, '-' or '_', starting with a letter or digit")
        card = dataclasses.replace(card, name=name)
    if not RUN_NAME.fullmatch(card.name):
        raise CheckpointError(f"the card's name {_clip(repr(card.name))} is not a valid run name; import it under another")  # fmt: skip
    if card.name.lower() in {t.lower() for t in taken}:
        raise CheckpointError(f"a model named {card.name!r} already exists; import it under another name")
    directory = Path(directory)
    final = {
        ".json": directory / f"{card.name}.json",
        ".history.json": directory / f"{card.name}.history.json",
        ".safetensors": directory / f"{card.name}.safetensors",
    }
    if any(path.exists() for path in final.values()):
        raise CheckpointError(f"the name {card.name!r} is taken; pick another")
    contents = {
        ".json": card.to_json().encode(),
        ".history.json": (json.dumps(bundle.history, indent=1) + "\n").encode(),
        ".safetensors": safetensors_save(bundle.state, metadata={"architecture": card.architecture, "name": card.name}),
    }
    temporary, published = [], []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for content in contents.values():
            handle, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{card.name}", suffix=".tmp")
            temporary.append(Path(tmp_name))
            os.chmod(tmp_name, 0o644)  # mkstemp makes it private; a checkpoint is as readable as save_checkpoint's
            with os.fdopen(handle, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
        for suffix, tmp in zip(contents, temporary, strict=True):  # the weights last: they make it a checkpoint
            _publish(tmp, final[suffix])
            published.append(final[suffix])
    except (CheckpointError, OSError) as error:
        for path in published:
            path.unlink(missing_ok=True)
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"cannot save the checkpoint in {directory}: {error.strerror or error}") from None
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
    return final[".safetensors"]
