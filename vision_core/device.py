"""Device choice: CUDA when present, the CPU otherwise."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no GPU is available; use device='auto' or 'cpu'")
    return resolved


def describe_device(device: str | torch.device = "auto") -> str:
    """A readable name: the GPU's model name, or "CPU (N threads)"."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return torch.cuda.get_device_name(resolved)
    return f"CPU ({torch.get_num_threads()} threads)"


def device_of(model: nn.Module) -> torch.device:
    """Where ``model``'s weights are: inputs go there."""
    return next(model.parameters()).device
