"""Checkpoints: safetensors weights plus a JSON model card. Nothing is ever unpickled.

``checkpoints/NAME.safetensors`` holds the tensors; ``checkpoints/NAME.json`` says what they are
(architecture and its config, so loading never guesses) and how they were made (recipe, seed,
data, device, time) and how good they are (MNIST test metrics).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vision_core.models.mnist import ARCHITECTURES, build_digit_model, config_from_dict

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
CARD_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match its model card."""


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
        except json.JSONDecodeError as error:
            raise CheckpointError(f"model card is not valid JSON: {error}") from error
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
        if values.get("architecture") not in ARCHITECTURES:
            raise CheckpointError(
                f"model card names unknown architecture {values.get('architecture')!r}; known: {sorted(ARCHITECTURES)}"
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
