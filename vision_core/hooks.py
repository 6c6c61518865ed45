"""Feature-map capture as context managers: layers by name, hooks removed on the way out, errors never swallowed.

>>> from torchvision.models import resnet18
>>> model = resnet18().eval()
>>> with capture_outputs(model, ["layer1", "layer3"]) as outputs:
...     _ = model(torch.rand(1, 3, 224, 224))
>>> {name: tuple(t.shape) for name, t in outputs.items()}
{'layer1': (1, 64, 56, 56), 'layer3': (1, 256, 14, 14)}
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class LayerError(ValueError):
    """A layer name that the model does not have, or whose output is not a feature map."""


@dataclass(frozen=True)
class LayerGuide:
    """Which layers of a model are worth looking at, and how their outputs are laid out."""

    choices: tuple[str, ...]  # layers whose output is one feature map, early to late: the names a user may pick
    defaults: tuple[str, ...]  # early, middle and late
    cam: str  # the Grad-CAM target: the last spatial layer before global pooling
    first_conv: str  # the convolution that sees RGB pixels; its kernels are shown as images
    channels_last: bool = False  # outputs are (B, H, W, C) (torchvision's Swin), not (B, C, H, W)


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """``{name: module}`` for ``names``; an unknown name raises ``LayerError`` listing close and valid names."""
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules or name == ""]
    if unknown:
        valid = [name for name in modules if name]
        hints = sorted({hint for name in unknown for hint in difflib.get_close_matches(name, valid, n=3)})
        suggestion = f" Did you mean {', '.join(hints)}?" if hints else ""
        shown = ", ".join(valid[:40]) + (f", … ({len(valid)} in all)" if len(valid) > 40 else "")
        raise LayerError(f"no layer named {', '.join(map(repr, unknown))}.{suggestion} Valid names: {shown}")
    return {name: modules[name] for name in names}


@contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str], detach: bool = True) -> Iterator[dict[str, Any]]:
    """Record the output of each named layer during the forward passes run inside the block.

    The dict is filled as the model runs (the last call wins when a module runs twice). With
    ``detach=False`` the outputs stay in the autograd graph (Grad-CAM needs that). The hooks are
    removed when the block ends, also when it ends with an exception, which is re-raised.
    """
    modules = resolve_layers(model, names)
    outputs: dict[str, Any] = {}
    handles = []

    def keep(name: str):
        def hook(_module: nn.Module, _inputs: tuple[Any, ...], output: Any) -> None:
            outputs[name] = output.detach() if detach and isinstance(output, torch.Tensor) else output

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(keep(name)))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def hook_count(model: nn.Module) -> int:
    """Forward (pre-)hooks and backward hooks still registered anywhere in ``model`` (tests expect 0)."""
    return sum(
        len(module._forward_hooks) + len(module._forward_pre_hooks) + len(module._backward_hooks)
        for module in model.modules()
    )
