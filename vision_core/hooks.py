"""Hooks as context managers: layer outputs (and inputs) by name, a ViT's attention weights, and a hook-free twin
of a shared model. Hooks record only the thread that opened the block, are removed on the way out, and never
swallow errors.

>>> from torchvision.models import resnet18
>>> model = resnet18().eval()
>>> with capture_outputs(model, ["layer1", "layer3"]) as outputs:
...     _ = model(torch.rand(1, 3, 224, 224))
>>> {name: tuple(t.shape) for name, t in outputs.items()}
{'layer1': (1, 64, 56, 56), 'layer3': (1, 256, 14, 14)}
"""

from __future__ import annotations

import copy
import difflib
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
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
def _recording(modules: dict[str, nn.Module], record: Callable[[str, tuple[Any, ...], Any], None]) -> Iterator[None]:
    """Call ``record(name, inputs, output)`` after each named module runs in this thread, inside the block.

    Hooks live on the module object, and the app's cached models are shared by every session (one thread each):
    a forward pass run by another thread while the block is open is not recorded, so the hooks never mix two
    sessions' passes up. The hooks are removed when the block ends, also when it raises (the error is re-raised).
    """
    owner = threading.get_ident()
    handles = []

    def hook_for(name: str):
        def hook(_module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if threading.get_ident() == owner:
                record(name, inputs, output)

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str], detach: bool = True) -> Iterator[dict[str, Any]]:
    """Record the output of each named layer during the forward passes run inside the block (by this thread).

    The dict is filled as the model runs (the last call wins when a module runs twice). With
    ``detach=False`` the outputs stay in the autograd graph. The hooks are removed when the block
    ends, also when it ends with an exception, which is re-raised.
    """
    outputs: dict[str, Any] = {}

    def keep(name: str, _inputs: tuple[Any, ...], output: Any) -> None:
        outputs[name] = output.detach() if detach and isinstance(output, torch.Tensor) else output

    with _recording(resolve_layers(model, names), keep):
        yield outputs


@contextmanager
def capture_inputs_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, tuple[torch.Tensor, Any]]]:
    """Like ``capture_outputs``, but ``{name: (first input, output)}``, detached, in the order the layers ran.

    The input is what the layer computed from: for a convolution, the tensor its kernels slide over. Both are
    copies, so an in-place operation that runs later (``ReLU(inplace=True)``) cannot change what was recorded.
    """
    seen: dict[str, tuple[torch.Tensor, Any]] = {}

    def keep(name: str, inputs: tuple[Any, ...], output: Any) -> None:
        seen.pop(name, None)  # a module that runs again moves to its latest place in the order
        seen[name] = (
            inputs[0].detach().clone(),
            output.detach().clone() if isinstance(output, torch.Tensor) else output,
        )

    with _recording(resolve_layers(model, names), keep):
        yield seen


@contextmanager
def capture_attention(vit: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record each block's attention weights (B, heads, N, N) of a timm ``VisionTransformer`` during the forward
    passes run inside the block (by this thread), first block first.

    timm's fused attention never forms the weights, so a forward hook on each block's ``attn``
    recomputes softmax(q k^T * scale) from the block's input with the module's own layers. The
    hooks are removed on the way out, also when the block raises (the error is not swallowed).
    """
    maps: list[torch.Tensor] = []
    blocks = {f"blocks.{i}.attn": block.attn for i, block in enumerate(vit.blocks)}

    def keep(name: str, inputs: tuple[Any, ...], _output: Any) -> None:
        attn = blocks[name]
        x = inputs[0]  # (B, N, C): the block's normalised tokens
        batch, tokens, _ = x.shape
        qkv = attn.qkv(x).reshape(batch, tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # (B, H, N, d)
        maps.append(((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1).detach())

    with _recording(blocks, keep):
        yield maps


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def private_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules that shares its weights and buffers (no tensor is copied) and has no hooks.

    For code that registers its own hooks (torchcam's extractors): on the twin they see only the
    twin's forward passes, never another session's pass through the shared model, and no lock is
    held while they run. Costs about 1 ms for LeNet, 7 ms for the digit ViT, 16 ms for
    EfficientNet-Lite0 (the module objects, not the weights). Never train the twin: it would
    change the shared weights.
    """
    shared = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
    twin = copy.deepcopy(model, memo=shared)
    for module in twin.modules():
        for attribute in _HOOK_DICTS:
            hooks = getattr(module, attribute, None)
            if hooks is not None:
                hooks.clear()
    return twin


_SPARE_TWINS: weakref.WeakKeyDictionary[nn.Module, list[nn.Module]] = weakref.WeakKeyDictionary()
_SPARE_LOCK = threading.Lock()
MAX_SPARE_TWINS = 4  # per model: about the number of sessions computing on it at the same moment


@contextmanager
def borrowed_twin(model: nn.Module) -> Iterator[nn.Module]:
    """A ``private_twin`` of ``model`` for the block, taken from a small pool and given back afterwards.

    Saves the copy on every call (the digit ViT's twin takes 7 ms, more than its Grad-CAM). A twin is lent
    to one caller at a time; it goes back to the pool only without hooks, and one whose weights are no
    longer the model's (the model was moved or reloaded) is dropped, as is one in another train/eval mode.
    """
    with _SPARE_LOCK:
        spare = _SPARE_TWINS.setdefault(model, [])
        twin = spare.pop() if spare else None
    if twin is None or twin.training != model.training or not _shares_weights(twin, model):
        twin = private_twin(model)
    try:
        yield twin
    finally:
        if hook_count(twin) == 0:
            with _SPARE_LOCK:
                if len(spare) < MAX_SPARE_TWINS:
                    spare.append(twin)


def _shares_weights(twin: nn.Module, model: nn.Module) -> bool:
    ours, theirs = [*twin.parameters(), *twin.buffers()], [*model.parameters(), *model.buffers()]
    return len(ours) == len(theirs) and all(a is b for a, b in zip(ours, theirs, strict=True))


def hook_count(model: nn.Module) -> int:
    """Forward (pre-)hooks and backward hooks still registered anywhere in ``model`` (tests expect 0)."""
    return sum(
        len(module._forward_hooks) + len(module._forward_pre_hooks) + len(module._backward_hooks)
        for module in model.modules()
    )
