"""Checkpoints: safetensors weights plus a JSON model card. Nothing is ever unpickled.

``NAME.safetensors`` holds the tensors; ``NAME.json`` says what they are (the architecture, a registered family, and
its config, so loading never guesses), what they were trained on (dataset and class names), how they were made
(recipe, seed, device, time) and how good they are (test metrics). Saving runs, bundles and imports: ``runs.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from vision_core.datasets import get_dataset
from vision_core.registry import Family, ModelSpec, Source, get_family, register

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
CARD_VERSION = 2  # 2 added dataset and labels; version 1 cards are MNIST digit models


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match its model card."""


def clip(text: str, limit: int = 80) -> str:
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
    dataset: str = "mnist"
    labels: list[str] = field(default_factory=list)  # class names; empty: the dataset's own
    recipe: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    data: str = "MNIST train (60,000 images)"
    metrics: dict[str, float] = field(default_factory=dict)  # test set: accuracy, f1_macro, loss, n
    train_seconds: float | None = None
    device: str | None = None
    created: str | None = None
    torch_version: str = torch.__version__
    card_version: int = CARD_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as error:  # bad syntax or encoding, a 5000-digit number, deep nesting
            reason = "nested too deeply" if isinstance(error, RecursionError) else error
            raise CheckpointError(f"model card is not valid JSON: {reason}") from None
        if not isinstance(values, dict):
            raise CheckpointError("model card must be a JSON object")
        fields = dataclasses.fields(cls)
        required = {
            f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        if missing := required - set(values):
            raise CheckpointError(f"model card lacks {sorted(missing)}")
        try:
            get_family(values["architecture"]) if isinstance(values["architecture"], str) else get_family("")
        except KeyError as error:
            raise CheckpointError(f"model card names {clip(str(error.args[0]), 200)}") from None
        values.setdefault("card_version", 1)  # cards before version 2 did not say; they are MNIST models
        known = {f.name for f in fields}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.labels) or get_dataset(self.dataset).classes


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors: what safetensors writes."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def write_durably(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a unique temporary file in the same folder, fsynced, then renamed: a crash
    or a full disk never leaves a half-written file under the real name, and two writers never share a temporary."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is as readable as any other file here
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_checkpoint(model: nn.Module, card: ModelCard, directory: Path = CHECKPOINT_DIR) -> Path:
    """Write ``NAME.safetensors`` then ``NAME.json`` (the card last: it makes the pair a checkpoint) into ``directory``.

    Returns the weights path. Used by the CLI for the shipped checkpoints; runs saved from the app go through
    ``runs.save_run``, which also claims the name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{card.name}.safetensors"
    metadata = {"architecture": card.architecture, "name": card.name}
    write_durably(weights, safetensors_bytes(state_of(model), metadata=metadata))
    write_durably(weights.with_suffix(".json"), card.to_json().encode())
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
    family = get_family(card.architecture)
    try:
        model = family.build(family.config_from_dict(card.config))
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


def _load_for_spec(architecture: str, path: Path, device: torch.device) -> nn.Module:
    model, card = load_checkpoint(path, device=device)
    if card.architecture != architecture:
        raise CheckpointError(f"{path.name} holds a {card.architecture}, but its model is a {architecture}")
    return model


def register_checkpoint(
    family: Family,
    path: Path,
    name: str,
    source: Source,
    title: str | None = None,
    dataset: str | None = None,
    labels: tuple[str, ...] = (),
    description: str | None = None,
) -> ModelSpec:
    """Register the checkpoint at ``path`` (it may be missing: loading then says how to rebuild it) as model ``name``.

    Shipped checkpoints are registered from their family's facts, so a lost card or weights file still leaves a
    named model that explains itself; saved runs pass what their card says.
    """
    data = get_dataset(dataset or family.datasets[0])
    size = data.image_size
    return register(
        ModelSpec(
            name=name, title=title or family.title, task=data.task, architecture=family.name,
            preprocess=data.preprocess, labels=tuple(labels) or data.classes, input_size=(data.channels, size, size),
            weights_file=lambda: Path(path).with_suffix(".safetensors"), loader=partial(_load_for_spec, family.name),
            source=source, checkpoint=Path(path).with_suffix(".safetensors"),
            description=description or family.description,
            rebuild_hint=f"Rebuild it with: python -m vision_core train {family.name}" if source == "shipped" else "",
        )
    )  # fmt: skip
