"""Inside the digit models, on one drawing: every convolution's feature maps, the kernel x patch arithmetic behind
one value of a map (what CNN Explainer shows), and a ViT's attention to its patches.

Everything works on any digit model (the shipped ones and saved runs): convolutions are found by type, not by
name. The models may be the app's shared cached objects: the hooks here record only the calling thread's
forward pass (``vision_core.hooks``), so no lock and no copy is needed, and one stroke costs a forward pass
(``benchmarks/inside.py`` measures it).

>>> from vision_core import load_model
>>> lenet = load_model("lenet", device="cpu")
>>> maps = digit_feature_maps(lenet, torch.zeros(1, 28, 28))
>>> [(layer.name, tuple(layer.output.shape)) for layer in maps.layers]
[('features.0', (6, 28, 28)), ('features.3', (16, 10, 10))]
>>> step = kernel_patch(lenet, maps, "features.3", channel=2, y=4, x=5)
>>> abs(step.total - step.output) < 1e-4
True
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vision_core.device import device_of
from vision_core.hooks import capture_attention, capture_inputs_outputs, resolve_layers


class InsideError(ValueError):
    """Something a model does not have: no convolution, no attention, a channel or position off the map."""


def conv_layers(model: nn.Module) -> list[str]:
    """The names of every ``nn.Conv2d`` in ``model``, in the order they are defined (for these models, the order
    they run; ``digit_feature_maps`` returns the order they actually ran)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def find_vit(model: nn.Module) -> VisionTransformer | None:
    """The timm ``VisionTransformer`` inside ``model`` (the digit ViT wraps one), or None for a CNN."""
    return next((m for m in model.modules() if isinstance(m, VisionTransformer)), None)


def as_batch(digit: torch.Tensor) -> torch.Tensor:
    """A digit ((28, 28), (1, 28, 28) or (1, 1, 28, 28), values in [0, 1]) as the (1, 1, 28, 28) float batch the
    digit models take."""
    if digit.dim() not in (2, 3, 4) or digit.numel() != digit.shape[-1] * digit.shape[-2]:
        raise InsideError(f"expected one (1, 28, 28) digit, got shape {tuple(digit.shape)}")
    return digit.detach().reshape(1, 1, *digit.shape[-2:]).float()


@dataclass(frozen=True)
class ConvMaps:
    """One convolution on one digit: what it slid its kernels over and what came out (before any activation)."""

    name: str
    input: torch.Tensor  # (C_in, H_in, W_in): the layer's input (the normalised digit, or the previous stage's output)
    output: torch.Tensor  # (C_out, H, W): the convolution's output, before batch norm / ReLU


@dataclass(frozen=True)
class DigitMaps:
    layers: tuple[ConvMaps, ...]  # every convolution, in the order they ran
    prediction: int  # the model's answer for this digit
    seconds: float  # the hooked forward pass and copying the maps to the CPU

    def layer(self, name: str) -> ConvMaps:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise InsideError(f"no convolution named {name!r}; this model has {', '.join(c.name for c in self.layers)}")


@torch.inference_mode()
def digit_feature_maps(model: nn.Module, digit: torch.Tensor) -> DigitMaps:
    """Every convolution's input and output for ``digit`` ((1, 28, 28) in [0, 1]), from one hooked forward pass.

    ``model`` may be shared with other threads (the app's cached models): only this thread's pass is recorded.
    """
    names = conv_layers(model)
    if not names:
        raise InsideError(f"{type(model).__name__} has no convolution")
    start = time.perf_counter()
    with capture_inputs_outputs(model, names) as seen:
        logits = model(as_batch(digit).to(device_of(model)))
    layers = tuple(
        ConvMaps(name=name, input=inputs[0].float().cpu(), output=output[0].float().cpu())
        for name, (inputs, output) in seen.items()
    )
    return DigitMaps(layers=layers, prediction=int(logits.argmax()), seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class KernelPatch:
    """One value of a feature map, taken apart: kernel x the input patch under it, summed, plus the bias."""

    layer: str
    channel: int
    y: int  # position in the feature map
    x: int
    input_channels: tuple[int, ...]  # the input channels this output channel reads (all of them unless groups > 1)
    origin: tuple[int, int]  # the patch's top-left corner in the input (negative where it reaches into the padding)
    patch: torch.Tensor  # (C, kh, kw): the input values under the kernel (padding included: zeros)
    kernel: torch.Tensor  # (C, kh, kw): the weights of output channel ``channel``
    products: torch.Tensor  # (C, kh, kw): patch * kernel
    bias: float
    total: float  # products summed (in float64) plus the bias
    output: float  # the feature map's value at (channel, y, x), as the network computed it: equals ``total``


def kernel_patch(model: nn.Module, maps: DigitMaps, layer: str, channel: int, y: int, x: int) -> KernelPatch:
    """The arithmetic behind ``maps.layer(layer).output[channel, y, x]``: the kernel times the patch of the layer's
    input it covers there (respecting stride, padding and dilation), summed, plus the bias."""
    conv = resolve_layers(model, [layer])[layer]
    if not isinstance(conv, nn.Conv2d):
        raise InsideError(f"{layer!r} is a {type(conv).__name__}, not a convolution")
    recorded = maps.layer(layer)
    out_channels, height, width = recorded.output.shape
    if not (0 <= channel < out_channels and 0 <= y < height and 0 <= x < width):
        raise InsideError(f"({channel}, {y}, {x}) is outside {layer}'s {out_channels} × {height} × {width} output")
    per_group = conv.in_channels // conv.groups
    first = channel // (conv.out_channels // conv.groups) * per_group
    pad_left, _, pad_top, _ = conv._reversed_padding_repeated_twice  # what Conv2d itself pads with, "same" included
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    padded = F.pad(recorded.input[None, first : first + per_group], conv._reversed_padding_repeated_twice, mode=mode)[0]
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    top, left = y * sh, x * sw  # in the padded input
    patch = padded[:, top : top + dh * (kh - 1) + 1 : dh, left : left + dw * (kw - 1) + 1 : dw]
    kernel = conv.weight[channel].detach().float().cpu()
    products = patch * kernel
    bias = float(conv.bias[channel].detach()) if conv.bias is not None else 0.0
    return KernelPatch(
        layer=layer,
        channel=channel,
        y=y,
        x=x,
        input_channels=tuple(range(first, first + per_group)),
        origin=(top - pad_top, left - pad_left),
        patch=patch,
        kernel=kernel,
        products=products,
        bias=bias,
        total=float(products.double().sum()) + bias,
        output=float(recorded.output[channel, y, x]),
    )


@dataclass(frozen=True)
class AttentionMaps:
    heads: torch.Tensor  # (layers, heads, g, g): how much the class token attends to each patch
    rollout: torch.Tensor  # (g, g): attention rolled out through all layers (Abnar & Zuidema 2020), max 1
    grid: int  # g: patches per side (7 for 4 x 4 patches on 28 x 28)
    prediction: int
    seconds: float = 0.0  # the hooked forward pass and the rollout


@torch.inference_mode()
def attention_maps(model: nn.Module, digit: torch.Tensor) -> AttentionMaps:
    """The class token's attention to the patches of ``digit`` ((1, 28, 28) in [0, 1]), per layer and head, and
    rolled out. ``model`` may be shared with other threads: only this thread's forward pass is recorded."""
    vit = find_vit(model)
    if vit is None:
        raise InsideError(f"{type(model).__name__} is not a vision transformer: it has no attention to show")
    start = time.perf_counter()
    with capture_attention(vit) as maps:
        logits = model(as_batch(digit).to(device_of(model)))
    prefix = vit.num_prefix_tokens
    attention = torch.stack([m[0] for m in maps]).float().cpu()  # (L, H, N, N)
    grid = math.isqrt(attention.shape[-1] - prefix)
    heads = attention[:, :, 0, prefix:].reshape(*attention.shape[:2], grid, grid)
    # Rollout: heads averaged, the residual path added as identity, rows renormalised, layers multiplied.
    tokens = attention.shape[-1]
    rollout = torch.eye(tokens)
    for layer in attention.mean(dim=1):
        mixed = 0.5 * layer + 0.5 * torch.eye(tokens)
        rollout = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rollout
    cls_to_patches = rollout[0, prefix:].reshape(grid, grid)
    return AttentionMaps(
        heads=heads,
        rollout=cls_to_patches / cls_to_patches.max(),
        grid=grid,
        prediction=int(logits.argmax()),
        seconds=time.perf_counter() - start,
    )
