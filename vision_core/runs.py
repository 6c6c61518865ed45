"""Saved runs: saving a finished run under a name, bundles to download, importing them, quotas, deleting.

A run's worker leaves its trained weights in the run's folder (``weights.safetensors``, the architecture and config in
its metadata), so any finished run can be saved, at any time, without keeping a live model in memory. Saving:

1. the name is claimed atomically (``.names/<lower-case name>``, created with O_EXCL: of two sessions saving one name
   at the same moment exactly one wins, the other is told the name is taken);
2. the files are written under unique temporary names, fsynced and renamed: weights, history, owner, and the model
   card last (a card is what makes the files a checkpoint; a crash before it leaves nothing registered);
3. on any failure this call removes exactly what it wrote, and its claim.

Saved runs live in ``RUNS_DIR`` (``checkpoints/runs``, or ``$VISION_EXPLORER_RUNS_DIR``): ``NAME.safetensors``,
``NAME.json`` (card), ``NAME.history.json`` (per-epoch curves), ``NAME.owner`` (who saved it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import math
import os
import re
import shutil
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes
from torch.utils.flop_counter import FlopCounterMode

from vision_core.augment import pipeline_to_code, spec_to_dict
from vision_core.checkpoints import (
    CHECKPOINT_DIR,
    CheckpointError,
    ModelCard,
    clip,
    count_parameters,
    read_card,
    register_checkpoint,
    write_durably,
)
from vision_core.datasets import MY_CLASSES, get_dataset
from vision_core.policy import MB, SaveQuota
from vision_core.registry import ModelSpec, get_family, get_spec, list_models, unregister
from vision_core.safezip import ZipError, ZipLimits, open_zip, read_member
from vision_core.training import (
    INIT_TITLES,
    RunFinished,
    TrainConfig,
    TrainEvent,
    augment_spec,
    config_to_dict,
    describe_augment,
    epoch_history,
)

# VISION_EXPLORER_RUNS_DIR moves it (the tests point it at a temporary folder, so runs a user saved never change what
# the test suite sees).
RUNS_DIR = Path(os.environ.get("VISION_EXPLORER_RUNS_DIR") or CHECKPOINT_DIR / "runs")
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,47}")
NAME_RULE = "a run name is 1-48 letters, digits, '-' or '_', starting with a letter or digit"
WEIGHTS_FILE = "weights.safetensors"  # in a run's folder, written by its worker
STALE_CLAIM_S = 3_600  # a claim with no card after an hour is a crashed save: its name is free again
SUFFIXES = (".safetensors", ".history.json", ".owner", ".json")  # the card (.json) is written last, deleted first


class RunNameError(ValueError):
    """A run name that cannot become a checkpoint: bad characters, or the name is taken."""


class RunSaveError(OSError):
    """The disk or a quota refused a run's checkpoint; nothing partial was left behind. The message says what to do."""


# --- Cards --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedWeights:
    """What a finished run left in its folder: the weights and the model they fit."""

    state: dict[str, torch.Tensor]
    architecture: str
    config: dict[str, Any]

    @classmethod
    def read(cls, run_dir: Path) -> TrainedWeights:
        raw = (Path(run_dir) / WEIGHTS_FILE).read_bytes()
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")]).get("__metadata__", {})
        return cls(safetensors_load(raw), header["architecture"], json.loads(header["config"]))

    def to_bytes(self, name: str | None = None) -> bytes:
        metadata = {"architecture": self.architecture, "config": json.dumps(self.config)}
        return safetensors_bytes(self.state, metadata={**metadata, **({"name": name} if name else {})})


def write_weights(model: torch.nn.Module, architecture: str, run_dir: Path) -> Path:
    """The worker's last act: the trained model's weights (and what model they fit) into the run's folder."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(run_dir) / WEIGHTS_FILE
    write_durably(path, TrainedWeights(state, architecture, dataclasses.asdict(model.config)).to_bytes())
    return path


def run_card(cfg: TrainConfig, finished: RunFinished, name: str, weights: TrainedWeights) -> ModelCard:
    """The model card of a finished run: architecture and config, dataset and classes, recipe, test metrics, time."""
    family, data = get_family(weights.architecture), get_dataset(cfg.dataset)
    start = INIT_TITLES[cfg.init].replace("its trained checkpoint", f"the {get_spec(cfg.model).title} checkpoint")
    if cfg.dataset == MY_CLASSES:
        images = f"{len(finished.classes)} classes of your own pictures"
    else:
        count = min(cfg.train_size, len(data.load("train")))
        images = f"{count:,} {'balanced ' if count < len(data.load('train')) else ''}images"
    return ModelCard(
        name=name, title=f"{family.title}: {name}", architecture=weights.architecture, config=weights.config,
        num_params=finished.num_params, task=data.task, dataset=cfg.dataset,
        labels=list(finished.classes) if cfg.dataset == MY_CLASSES else [], recipe=config_to_dict(cfg), seed=cfg.seed,
        data=f"{data.title} train, {images}, {describe_augment(cfg.augment, cfg.dataset)}; {start}",
        metrics={"accuracy": finished.accuracy, "f1_macro": finished.f1_macro, "loss": finished.loss, "n": finished.n_test},
        train_seconds=round(finished.train_seconds, 1), device=finished.device,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip


# --- Saving: claim the name, write the files (card last), register ------------------------------------------------


def check_run_name(name: str) -> str:
    """``name`` stripped, when it can name a new saved run; a ``RunNameError`` says why not otherwise."""
    name = name.strip()
    if not RUN_NAME.fullmatch(name):
        raise RunNameError(NAME_RULE)
    if name.lower() in {taken.lower() for taken in list_models()}:
        raise RunNameError(f"the name {name!r} is taken; pick another")
    return name


def _claim_path(directory: Path, name: str) -> Path:
    return directory / ".names" / name.lower()


@contextmanager
def claimed(directory: Path, name: str) -> Iterator[list[Path]]:
    """Hold the name while the block writes the run's files; on an error, remove what the block listed, and the claim.

    The claim is one file created with O_EXCL: the operating system lets exactly one of two racing savers create it.
    """
    claim = _claim_path(directory, name)
    claim.parent.mkdir(parents=True, exist_ok=True)
    _free_stale_claim(claim, directory / f"{name}.json")
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise RunNameError(f"the name {name!r} is taken (another save took it just now); pick another") from None
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):  # the folder refuses even that: then nothing was written there
                path.unlink(missing_ok=True)
        claim.unlink(missing_ok=True)
        raise


def _free_stale_claim(claim: Path, card: Path) -> None:
    with contextlib.suppress(OSError):
        if claim.exists() and not card.exists() and time.time() - claim.stat().st_mtime > STALE_CLAIM_S:
            claim.unlink()


def owner_of(name: str, directory: Path | None = None) -> str | None:
    """Who saved run ``name`` (an owner id), or None (saved before owners existed, or imported by the CLI)."""
    path = Path(directory or RUNS_DIR) / f"{name}.owner"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def saved_runs(directory: Path | None = None) -> list[str]:
    """Names of the complete saved runs in ``directory`` (a card and its weights), sorted."""
    directory = Path(directory or RUNS_DIR)
    cards = (p for p in directory.glob("*.json") if not p.name.endswith(".history.json"))
    return sorted(p.stem for p in cards if p.with_suffix(".safetensors").is_file())


def _folder_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*") if p.is_file())


def check_quota(quota: SaveQuota, owner: str | None, size: int, directory: Path) -> None:
    """Refuse a save of ``size`` bytes that would break the class's quota, with what to do about it."""
    if owner is not None:
        mine = [name for name in saved_runs(directory) if owner_of(name, directory) == owner]
        if len(mine) >= quota.max_runs_per_owner:
            raise RunSaveError(
                f"you have saved {len(mine)} runs, the most this class allows ({quota.max_runs_per_owner}): delete one "
                f"on the Compare page first ({', '.join(mine[:5])}{'...' if len(mine) > 5 else ''})"
            )
    if directory.exists() and _folder_bytes(directory) + size > quota.max_total_mb * MB:
        raise RunSaveError(
            f"saved runs would take over {quota.max_total_mb:,} MB, this class's limit: ask your teacher to delete "
            "old runs (or download this run's bundle instead)"
        )
    free = shutil.disk_usage(directory if directory.exists() else directory.parent).free
    if free - size < quota.min_free_disk_mb * MB:
        raise RunSaveError(
            f"the disk has {free / MB:,.0f} MB free; saving would leave less than the {quota.min_free_disk_mb:,} MB "
            "the server keeps free. Download the run's bundle instead"
        )


def save_error(error: OSError, name: str, directory: Path) -> RunSaveError:
    """``error`` from writing run ``name`` into ``directory`` as a ``RunSaveError``: what failed, where, what to do."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        cause, todo = "the disk is full", f"free some space on the disk that holds {directory} and press Save again"
    elif isinstance(error, PermissionError) or error.errno == errno.EROFS:
        cause = "the folder is read-only or not writable by the app"
        todo = f"make {directory} writable for the user running the app (or mount it read-write) and press Save again"
    else:
        cause = error.strerror or type(error).__name__
        todo = f"check that {directory} is a folder that can be written, and press Save again"
    detail = f" ({error.strerror or error}{f': {error.filename}' if error.filename else ''})"
    return RunSaveError(
        f"could not save run {name!r} in {directory}: {cause}{detail}. Nothing was saved and nothing half-written "
        f"was left. To fix it, {todo}."
    )


def publish(
    directory: Path, card: ModelCard, weights: bytes, history: list[dict], owner: str | None, quota: SaveQuota | None
) -> ModelSpec:
    """Write a checkpoint under ``card.name`` the safe way (see the module docstring) and register it."""
    name = check_run_name(card.name)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if quota is not None:
            check_quota(quota, owner, len(weights), directory)
        contents = {
            ".safetensors": weights,
            ".history.json": (json.dumps(history, indent=1) + "\n").encode(),
            ".owner": (owner or "").encode(),
            ".json": card.to_json().encode(),  # last: it makes the files a checkpoint
        }
        with claimed(directory, name) as written:
            for suffix in SUFFIXES:
                path = directory / f"{name}{suffix}"
                written.append(path)
                write_durably(path, contents[suffix])
            _sync_folder(directory)
            return register_saved(directory / f"{name}.safetensors")
    except OSError as error:
        if isinstance(error, RunSaveError):
            raise
        raise save_error(error, name, directory) from error


def _sync_folder(directory: Path) -> None:
    """fsync the folder, so the new names survive a power cut as well as the data does."""
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def save_run(
    cfg: TrainConfig, finished: RunFinished, weights: TrainedWeights, name: str, events: Sequence[TrainEvent] = (),
    owner: str | None = None, quota: SaveQuota | None = None, directory: Path | None = None,
) -> ModelSpec:  # fmt: skip
    """Save a finished run (its ``weights`` from the run service) as ``NAME`` and register it (pages list it at once).

    Raises ``RunNameError`` (bad or taken name), ``RunSaveError`` (a quota, a full or read-only disk: nothing left
    behind). The run itself is untouched: it can be saved again under another name or bundled.
    """
    name = check_run_name(name)
    card = run_card(cfg, finished, name, weights)
    return publish(Path(directory or RUNS_DIR), card, weights.to_bytes(name), epoch_history(events), owner, quota)


def delete_run(name: str, by_owner: str | None, teacher: bool = False, directory: Path | None = None) -> None:
    """Delete saved run ``name``: its owner or the teacher may; the card goes first, so a crash leaves no half model."""
    directory = Path(directory or RUNS_DIR)
    if get_spec(name).source != "run":
        raise RunNameError(f"{name!r} is not a saved run: shipped models cannot be deleted")
    if not teacher and (by_owner is None or owner_of(name, directory) != by_owner):
        raise PermissionError(f"run {name!r} belongs to someone else: only its owner or the teacher may delete it")
    unregister(name)
    for suffix in (".json", ".safetensors", ".history.json", ".owner"):
        (directory / f"{name}{suffix}").unlink(missing_ok=True)
    _claim_path(directory, name).unlink(missing_ok=True)


# --- Registering saved runs ------------------------------------------------------------------------------------------


def register_saved(path: Path) -> ModelSpec:
    """Register the saved run at ``path`` (its card names family, dataset and classes) under the card's name."""
    card = read_card(path)
    return register_checkpoint(
        get_family(card.architecture), path, card.name, "run", title=card.title, dataset=card.dataset,
        labels=tuple(card.labels), description=f"Saved run on {get_dataset(card.dataset).title}: {card.data}",
    )  # fmt: skip


def register_saved_runs(directory: Path | None = None) -> list[str]:
    """Register every saved run in ``directory`` not yet registered; a broken one is skipped with a warning."""
    added = []
    for name in saved_runs(directory):
        path = Path(directory or RUNS_DIR) / f"{name}.safetensors"
        try:
            if name in list_models():
                continue
            added.append(register_saved(path).name)
        except (CheckpointError, ValueError, KeyError, OSError) as error:  # a bad file must never stop the app
            warnings.warn(f"skipped saved run {path.name}: {error}", stacklevel=2)
    return added


def load_history(name: str) -> list[dict[str, Any]]:
    """A saved run's per-epoch history (written beside its checkpoint); [] when there is none."""
    checkpoint = get_spec(name).checkpoint
    path = checkpoint.with_name(f"{checkpoint.stem}.history.json") if checkpoint is not None else None
    try:
        history = json.loads(path.read_text()) if path is not None else []
    except (OSError, json.JSONDecodeError):
        return []
    return history if isinstance(history, list) else []


# --- Bundles: a zip to download, and importing one ------------------------------------------------------------------

MAX_BUNDLE_BYTES = 25 * MB  # the zip itself: the app's upload limit (.streamlit/config.toml maxUploadSize)
MAX_WEIGHTS_BYTES = 64 * MB  # decompressed safetensors
MAX_TEXT_BYTES = MB  # decompressed card / metrics / anything else in the zip
MAX_PARAMS = MAX_WEIGHTS_BYTES // 4  # float32 parameters the weights limit can hold: 16.8 M
MAX_FLOPS = 600e6  # per image: the default ViT needs 0.03 GFLOPs; one with 1-px patches (1 GFLOP, 170 ms) is refused
MAX_HISTORY = 2_000  # per-epoch records in metrics.json
BUNDLE_LIMITS = ZipLimits(
    what="a run bundle", max_bytes=MAX_BUNDLE_BYTES, max_members=16, max_index_bytes=16 * 1024,
    max_member_bytes=lambda name: MAX_WEIGHTS_BYTES if name.endswith(".safetensors") else MAX_TEXT_BYTES,
)  # fmt: skip


def bundle_files(card: ModelCard, weights: bytes, cfg: dict[str, Any], augment: Any, metrics: dict[str, Any]) -> bytes:
    """The zip: weights (safetensors), model card, config, the augmentation as code and JSON, metrics and history."""
    files = {
        f"{card.name}.safetensors": weights,
        f"{card.name}.json": card.to_json(),
        "config.json": json.dumps(cfg, indent=2) + "\n",
        "augmentation.py": pipeline_to_code(augment),
        "augmentation.json": json.dumps(spec_to_dict(augment), indent=2) + "\n",
        "metrics.json": json.dumps(metrics, indent=2) + "\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for filename, content in files.items():
            archive.writestr(f"{card.name}/{filename}", content)
    return buffer.getvalue()


def run_metrics(finished: RunFinished, events: Sequence[TrainEvent]) -> dict[str, Any]:
    return {
        "accuracy": finished.accuracy, "f1_macro": finished.f1_macro, "loss": finished.loss, "n": finished.n_test,
        "train_seconds": round(finished.train_seconds, 2), "samples_per_s": round(finished.samples_per_s, 1),
        "num_params": finished.num_params, "device": finished.device, "confusion": finished.confusion,
        "classes": list(finished.classes), "history": epoch_history(events),
    }  # fmt: skip


def write_bundle(cfg: TrainConfig, finished: RunFinished, run_dir: Path, name: str, events: Sequence[TrainEvent]) -> Path:  # fmt: skip
    """The download bundle of the run whose worker wrote ``run_dir``, as a file there, built once per name (a rerun or
    a second click reuses it, instead of zipping half a gigabyte again)."""
    if not RUN_NAME.fullmatch(name):  # the name becomes the zip's folder and file names, and the importer's rule
        raise RunNameError(NAME_RULE)
    path = Path(run_dir) / f"bundle-{name}.zip"
    if not path.is_file():
        weights = TrainedWeights.read(run_dir)
        card = run_card(cfg, finished, name, weights)
        zipped = bundle_files(card, weights.to_bytes(name), config_to_dict(cfg), augment_spec(cfg), run_metrics(finished, events))  # fmt: skip
        write_durably(path, zipped)
    return path


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_str(card: dict[str, Any], key: str, limit: int, optional: bool = True) -> None:
    value = card.get(key)
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > limit or not value.isprintable():
        raise CheckpointError(f"model card: {key} must be one line of text up to {limit} characters")


def _check_card(values: Any) -> None:
    """Types and ranges of everything the app reads from a card (pages format these values without asking)."""
    if not isinstance(values, dict):
        raise CheckpointError("model card must be a JSON object")
    for key in ("title", "architecture", "data"):
        _check_str(values, key, 300, optional=False)
    for key in ("device", "created", "torch_version"):
        _check_str(values, key, 100)
    if values.get("card_version", 1) not in (1, 2):
        raise CheckpointError(f"model card version {clip(repr(values.get('card_version')))}: this app reads 1 and 2")
    dataset = values.get("dataset", "mnist")
    try:
        task = get_dataset(dataset).task
    except (KeyError, TypeError):
        raise CheckpointError(f"model card: unknown dataset {clip(repr(dataset))}") from None
    if values.get("task", "digits") != task:
        raise CheckpointError(
            f"model card: a {dataset} model's task is {task!r} (got {clip(repr(values.get('task')))})"
        )
    labels = values.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) and 0 < len(x) <= 40 and x.isprintable() for x in labels):  # fmt: skip
        raise CheckpointError("model card: labels must be a list of class names (1 to 40 characters each)")
    if (dataset == MY_CLASSES) != (2 <= len(labels) <= 10):
        raise CheckpointError("model card: a my-classes model names its 2 to 10 classes in labels; others name none")
    for key in ("num_params", "seed"):
        if not (isinstance(values.get(key), int) and not isinstance(values[key], bool)) and not (key == "seed" and values.get(key) is None):  # fmt: skip
            raise CheckpointError(f"model card: {key} must be a whole number")
    if values.get("train_seconds") is not None and not (_is_number(values["train_seconds"]) and values["train_seconds"] >= 0):  # fmt: skip
        raise CheckpointError("model card: train_seconds must be a number of seconds or null")
    _check_metrics(values)


def _check_metrics(values: dict[str, Any]) -> None:
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
    """The card's config as a config object, each field typed and bounded by its family, so the model it builds is small."""
    family = get_family(architecture)
    if unknown := sorted(set(values) - set(family.bounds)):
        raise CheckpointError(f"model card: the {architecture} config has unknown fields {clip(str(unknown))}")
    for key, value in values.items():
        low, high, *length = family.bounds[key]
        if length and not (isinstance(value, list) and 1 <= len(value) <= length[0]):
            raise CheckpointError(f"model card: config {key} must be a list of 1 to {length[0]} numbers")
        integer = isinstance(low, int)
        for item in value if length else [value]:
            ok = isinstance(item, int) and not isinstance(item, bool) if integer else _is_number(item)
            if not ok or not low <= item <= high:
                kind = "whole number" if integer else "number"
                raise CheckpointError(f"model card: config {key} must be a {kind} from {low} to {high} (got {clip(repr(item))})")  # fmt: skip
    try:
        return family.config_from_dict(values)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"model card: bad {architecture} config ({error})") from None


def _expected(card: ModelCard, config: Any) -> tuple[dict[str, torch.Tensor], int, float]:
    """The architecture's state dict (shapes and dtypes only), parameters and FLOPs per image, all on the meta device."""
    data = get_dataset(card.dataset)
    try:
        with torch.device("meta"):
            model = get_family(card.architecture).build(config).eval()
            with FlopCounterMode(display=False) as flops:
                model(torch.zeros(1, data.channels, data.image_size, data.image_size))
    except (ValueError, TypeError, AssertionError, RuntimeError, ZeroDivisionError, NotImplementedError) as error:
        raise CheckpointError(f"the card's {card.architecture} config does not build a model ({clip(str(error), 200)})") from None  # fmt: skip
    return model.state_dict(), count_parameters(model), flops.get_total_flops()


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
    fields = ("epoch", "split", "loss", "accuracy")
    for record in history:
        if not (isinstance(record, dict) and type(record.get("epoch")) is int and record.get("split") in ("train", "val") and all(_is_number(record.get(k)) for k in fields[2:])):  # fmt: skip
            raise CheckpointError("metrics.json: each history record needs an epoch, split, loss and accuracy")
    return [{key: record[key] for key in (*fields, "elapsed") if key in record} for record in history]


@dataclass(frozen=True)
class Bundle:
    """A validated run bundle, in memory: the card, the weights (matching the card's architecture) and the history."""

    card: ModelCard
    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]


def _read_card(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> tuple[ModelCard, str]:
    weights = [name for name in members if name.endswith(".safetensors")]
    if any(name.endswith((".pt", ".pth", ".pkl", ".ckpt", ".bin")) for name in members):
        raise CheckpointError("the zip holds pickled PyTorch weights: the app never unpickles; it reads safetensors")
    if len(weights) != 1:
        raise CheckpointError(
            f"a run bundle holds exactly one .safetensors weights file; this zip holds {len(weights)}"
        )
    folder, _, filename = weights[0].rpartition("/")
    stem = filename.removesuffix(".safetensors")
    card_info = members.get(f"{folder}/{stem}.json" if folder else f"{stem}.json")
    if card_info is None:
        raise CheckpointError(f"the zip has no model card {stem}.json beside {filename}")
    try:
        values = json.loads(read_member(archive, card_info, MAX_TEXT_BYTES).decode("utf-8"))
    except (ValueError, RecursionError):
        raise CheckpointError(f"the model card {stem}.json is not valid JSON") from None
    _check_card(values)
    if values.get("name") != stem:
        raise CheckpointError(f"the model card names {clip(repr(values.get('name')))}, but the weights are {filename}")
    return ModelCard.from_json(json.dumps(values)), weights[0]


def _check_state(card: ModelCard, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], filename: str) -> None:  # fmt: skip
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [
        f"{key} {tuple(state[key].shape)} {state[key].dtype}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape or state[key].dtype != expected[key].dtype
    ]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{filename} does not match a {card.architecture} with the card's config: missing {clip(str(missing[:3]))}, "
            f"unexpected {clip(str(unexpected[:3]))}, wrong shape or dtype {clip(str(wrong[:3]), 200)}"
        )
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        raise CheckpointError(f"{filename} holds NaN or infinite weights")


def _refuse_what_is_not_a_bundle(data: bytes) -> None:
    """The two files people upload instead of a bundle, named, so they know what to upload instead."""
    if data.startswith(b"PK") or len(data) > MAX_BUNDLE_BYTES:
        return
    header = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if 2 <= header < len(data) and data[8:9] == b"{":
        raise CheckpointError(
            "this is a bare .safetensors file: it has no model card to say what it is. Upload the run's zip "
            "bundle (Fine-tune page, 'Download bundle'): weights and NAME.json card together"
        )
    if data[:1] == b"\x80":
        raise CheckpointError("this is a Python pickle: the app never unpickles (it can run code); use safetensors")


def read_bundle(data: bytes) -> Bundle:
    """Validate a run bundle entirely in memory; nothing is written.

    Checked, in this order, each before the next is read: the zip (size, index, names, sizes: ``safezip``); the card
    (JSON types, a known family and dataset, a config within the family's bounds whose parameters and FLOPs per image
    are counted on the meta device, without allocating the model); the weights (safetensors only, never a pickle):
    names, shapes and dtypes exactly the architecture's, all finite; and finally the built model runs on two images of
    its dataset. Raises ``CheckpointError``.
    """
    data = bytes(data)
    _refuse_what_is_not_a_bundle(data)
    try:
        archive, members = open_zip(data, BUNDLE_LIMITS)
        with archive:
            card, weights_name = _read_card(archive, members)
            config = _check_config(card.architecture, card.config)
            expected, num_params, flops = _expected(card, config)
            if num_params > MAX_PARAMS:
                raise CheckpointError(
                    f"the card's config builds {num_params:,} parameters; the limit is {MAX_PARAMS:,}"
                )
            if card.num_params != num_params:
                raise CheckpointError(f"the card says {card.num_params:,} parameters; its config builds {num_params:,}")
            if flops > MAX_FLOPS:
                raise CheckpointError(f"the model needs {flops / 1e9:.2f} GFLOPs per image; the limit here is {MAX_FLOPS / 1e9:.2f} (it would slow every page that uses it)")  # fmt: skip
            metrics = next((info for name, info in members.items() if name.rsplit("/", 1)[-1] == "metrics.json"), None)
            history = _check_history(read_member(archive, metrics, MAX_TEXT_BYTES) if metrics else None)
            raw = read_member(archive, members[weights_name], MAX_WEIGHTS_BYTES)
    except ZipError as error:
        raise CheckpointError(str(error)) from None
    try:
        state = safetensors_load(raw)
    except (SafetensorError, ValueError, TypeError, RuntimeError, OverflowError, KeyError) as error:
        raise CheckpointError(f"{weights_name} is not a readable safetensors file ({clip(str(error), 200)})") from None
    _check_state(card, state, expected, weights_name.rsplit("/", 1)[-1])
    _check_runs(card, config, state)
    return Bundle(card=card, state=state, history=history)


def _check_runs(card: ModelCard, config: Any, state: dict[str, torch.Tensor]) -> None:
    data = get_dataset(card.dataset)
    try:
        model = get_family(card.architecture).build(config)
        model.load_state_dict(state)
        with torch.inference_mode():
            out = model.eval()(torch.zeros(2, data.channels, data.image_size, data.image_size))
    except (RuntimeError, ValueError, TypeError, AssertionError) as error:
        raise CheckpointError(f"the model does not run on a {data.title} image ({clip(str(error), 200)})") from None
    classes = len(card.class_names)
    if tuple(out.shape) != (2, classes) or not bool(torch.isfinite(out).all()):
        raise CheckpointError(f"the model gives {tuple(out.shape)} outputs, not {classes} finite class scores")


def import_run(
    data: bytes, name: str | None = None, owner: str | None = None, quota: SaveQuota | None = None,
    directory: Path | None = None,
) -> ModelSpec:  # fmt: skip
    """Validate an uploaded run bundle (``read_bundle``), save it under ``name`` (default: its card's) and register it.

    The card's title is replaced by the family's title and the new name, and its description is written here: two
    imports of one bundle never look alike, and nothing a stranger typed is shown as the model's title.
    """
    bundle = read_bundle(data)
    name = (name or "").strip() or bundle.card.name
    if not RUN_NAME.fullmatch(name):
        raise CheckpointError(f"the name {clip(repr(name))} is not a valid run name ({NAME_RULE}); import it under another")  # fmt: skip
    family, data = get_family(bundle.card.architecture), get_dataset(bundle.card.dataset)
    card = dataclasses.replace(
        bundle.card, name=name, title=f"{family.title}: {name}", data=f"{data.title}, from an imported run bundle"
    )
    weights = safetensors_bytes(bundle.state, metadata={"architecture": card.architecture, "name": name})
    try:
        return publish(Path(directory or RUNS_DIR), card, weights, bundle.history, owner, quota)
    except RunNameError as error:
        raise CheckpointError(f"{error}; import it under another name") from None
    except RunSaveError as error:
        raise CheckpointError(str(error)) from None


def model_from_weights(weights: TrainedWeights) -> torch.nn.Module:
    """A finished run's model, built from its family and loaded strictly, in eval mode on the CPU (to try it out)."""
    family = get_family(weights.architecture)
    model = family.build(family.config_from_dict(weights.config))
    model.load_state_dict(weights.state)
    return model.eval()
