"""Inside the digit models, for the Draw page: every convolution's feature maps, the first layer's kernels beside
their maps, the kernel x patch arithmetic behind one clicked value, a ViT's attention, and two models' class
activation maps side by side. Renders only: the numbers come from ``vision_core.inside`` and ``vision_core.cams``.

>>> show_inside(models, digit)  # models: name -> digit model (shipped or saved runs); digit: (1, 28, 28) in [0, 1]
>>> show_cams(models, digit)

Widget keys start with ``inside_`` (``key``), so the page that hosts these keeps its own names.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import streamlit as st
import torch
from torch import nn

from vision_core import get_spec, to_image
from vision_core.cams import CAM_METHODS, CamError, digit_cam, digit_cam_layers
from vision_core.inside import (
    DigitMaps,
    KernelPatch,
    attention_maps,
    digit_feature_maps,
    find_vit,
    kernel_patch,
)
from vision_core.visuals import channel_grid, heat_image, kernels_beside_maps, overlay_image

MAP_COLUMNS = 8  # feature-map tiles a row
MAP_TILE = 36  # px at least, whatever the map's size: 10 x 10 maps are enlarged 4 times, 28 x 28 ones twice
GRIDS_A_ROW = 3  # layers a row
OWN_ANSWER = "each model's own answer"


def model_title(name: str) -> str:
    try:
        return get_spec(name).title
    except KeyError:  # a model handed in that is not registered (a notebook, a test)
        return name


# --- charts: plain Vega-Lite specs (altair's schema validation took ~25 ms a chart, most of a rerun) ---------------


def _cells(values: torch.Tensor) -> list[dict[str, float]]:
    return [{"y": y, "x": x, "value": v} for y, row in enumerate(values.tolist()) for x, v in enumerate(row)]


def map_spec(values: torch.Tensor, picked: tuple[int, int], selection: str = "cell") -> dict:
    """One (H, W) feature map as clickable cells (a point selection on x and y named ``selection``), the picked
    (y, x) cell outlined in red."""
    ticks = list(range(0, max(values.shape), 4))
    position = {
        "x": {"field": "x", "type": "ordinal", "axis": {"values": ticks, "labelAngle": 0}},
        "y": {"field": "y", "type": "ordinal", "axis": {"values": ticks}},
    }
    cells = {
        "params": [
            {"name": selection, "select": {"type": "point", "encodings": ["x", "y"], "on": "click", "clear": False}}
        ],
        "mark": "rect",
        "encoding": {
            **position,
            "color": {"field": "value", "type": "quantitative", "scale": {"scheme": "viridis"}, "legend": None},
            "tooltip": [
                {"field": "y", "type": "ordinal"},
                {"field": "x", "type": "ordinal"},
                {"field": "value", "type": "quantitative", "format": ".4f"},
            ],
        },
    }
    outline = {
        "transform": [{"filter": f"datum.y == {picked[0]} && datum.x == {picked[1]}"}],
        "mark": {"type": "rect", "filled": False, "stroke": "#e4572e", "strokeWidth": 3},
        "encoding": position,
    }
    step = max(5, 196 // max(values.shape))  # about 200 px square (and its axes) whatever the map's size: fits a column
    return {
        "data": {"values": _cells(values)},
        "width": {"step": step},
        "height": {"step": step},
        "layer": [cells, outline],
    }


def matrix_spec(values: torch.Tensor, title: str, diverging: bool = True, size: int = 26) -> dict:
    """A small (h, w) matrix (a patch, a kernel, their products) as coloured cells with the numbers written in."""
    peak = max(float(values.abs().max()), 1e-12)
    scale = {"scheme": "redblue", "domain": [peak, -peak]} if diverging else {"scheme": "greys", "reverse": True}
    position = {
        "x": {"field": "x", "type": "ordinal", "axis": None},
        "y": {"field": "y", "type": "ordinal", "axis": None},
    }
    light = {"condition": {"test": f"abs(datum.value) > {0.6 * peak}", "value": "white"}, "value": "black"}
    return {
        "data": {"values": _cells(values)},
        "title": title,
        "width": {"step": size},
        "height": {"step": size},
        "layer": [
            {
                "mark": "rect",
                "encoding": {
                    **position,
                    "color": {"field": "value", "type": "quantitative", "scale": scale, "legend": None},
                },
            },
            {
                "mark": {"type": "text", "fontSize": 10},
                "encoding": {
                    **position,
                    "text": {"field": "value", "type": "quantitative", "format": ".2f"},
                    "color": light,
                },
            },
        ],
    }


# --- convolutions --------------------------------------------------------------------------------------------------


def show_inside(models: Mapping[str, nn.Module], digit: torch.Tensor, key: str = "inside") -> None:
    """A tab per model for ``digit`` ((1, 28, 28) in [0, 1]): a CNN's convolutions, a ViT's attention."""
    for tab, (name, model) in zip(st.tabs([model_title(name) for name in models]), models.items(), strict=True):
        with tab:
            if find_vit(model) is not None:
                show_attention(name, model, digit, key)
            else:
                show_convolutions(name, model, digit, key)


def show_convolutions(name: str, model: nn.Module, digit: torch.Tensor, key: str = "inside") -> None:
    """Every convolution's maps, the first layer's kernels beside their maps, and one value computed by hand."""
    maps = digit_feature_maps(model, digit)
    first = maps.layers[0]
    weights = model.get_submodule(first.name).weight.detach()
    st.caption(
        f"{model_title(name)} says **{maps.prediction}**. Its {len(maps.layers)} convolutions, each map scaled to its "
        f"own range (yellow high, purple low), before the activation; recorded by forward hooks in "
        f"{maps.seconds * 1000:.1f} ms."
    )
    rest = maps.layers
    if weights.shape[1] == 1:  # one input channel: each kernel is a small grey picture
        rest = maps.layers[1:]
        st.image(
            kernels_beside_maps(weights, first.output, columns=min(4, len(first.output))),
            caption=f"{first.name}: each {weights.shape[2]} × {weights.shape[3]} kernel (grey is 0, light positive, "
            "dark negative) beside the map it makes by sliding over the digit",
        )
    for row in range(0, len(rest), GRIDS_A_ROW):
        for column, layer in zip(st.columns(min(GRIDS_A_ROW, len(rest))), rest[row : row + GRIDS_A_ROW], strict=False):
            channels, height, width = layer.output.shape
            column.image(
                channel_grid(layer.output, columns=MAP_COLUMNS, tile=MAP_TILE),
                caption=f"{layer.name}: {channels} maps of {height} × {width}",
            )
    show_arithmetic(name, model, maps, key)


def _clamp(state_key: str, default: int, top: int) -> None:
    """Keep a number input's value valid when the map it indexes changes size (another layer)."""
    st.session_state[state_key] = max(0, min(int(st.session_state.get(state_key, default)), top))


def show_arithmetic(name: str, model: nn.Module, maps: DigitMaps, key: str = "inside") -> None:
    """One channel's map to click, and the kernel x patch sum behind the clicked value."""
    st.markdown("**One value, computed by hand**")
    names = [layer.name for layer in maps.layers]
    layer_column, channel_column, y_column, x_column = st.columns(4)
    layer = maps.layer(layer_column.selectbox("Layer", names, key=f"{key}_layer_{name}"))
    channels, height, width = layer.output.shape
    ids = {axis: f"{key}_{axis}_{name}" for axis in ("channel", "y", "x")}
    _clamp(ids["channel"], 0, channels - 1)
    _clamp(ids["y"], height // 2, height - 1)
    _clamp(ids["x"], width // 2, width - 1)
    channel = channel_column.number_input("Channel", 0, channels - 1, key=ids["channel"])
    y = y_column.number_input("Row (y)", 0, height - 1, key=ids["y"])
    x = x_column.number_input("Column (x)", 0, width - 1, key=ids["x"])
    chart_key = f"{key}_map_{name}"

    def take_click() -> None:
        points = st.session_state[chart_key]["selection"].get("cell", [])
        if points:
            st.session_state[ids["y"]], st.session_state[ids["x"]] = int(points[0]["y"]), int(points[0]["x"])

    map_column, sum_column = st.columns([2, 3])
    with map_column:
        st.vega_lite_chart(
            spec=map_spec(layer.output[channel], (y, x)),
            width="content",  # the spec's own size: square cells, not squeezed into the column
            key=chart_key,
            on_select=take_click,
            selection_mode="cell",
        )
        st.caption(f"Channel {channel} of {layer.name}: click a cell to take it apart.")
    with sum_column:
        show_patch(kernel_patch(model, maps, layer.name, channel, y, x), key=f"{key}_source_{name}")


def show_patch(step: KernelPatch, key: str) -> None:
    """The patch, the kernel and their products for one input channel, the per-channel sums, and the total."""
    sums = step.products.double().sum(dim=(1, 2))  # (C,): each input channel's share
    source = 0
    if len(step.input_channels) > 1:
        biggest = int(sums.abs().argmax())
        table = pd.DataFrame({"input channel": step.input_channels, "kernel × patch, summed": sums.tolist()})
        st.dataframe(table, hide_index=True, height=min(240, 36 * (len(table) + 1)))
        source = st.selectbox(
            "Input channel to show",
            range(len(step.input_channels)),
            index=biggest,
            format_func=lambda i: f"{step.input_channels[i]} (sum {sums[i]:+.3f})",
            key=key,
        )
    patch_column, kernel_column, product_column = st.columns(3)
    for column, values, title, diverging in (
        (patch_column, step.patch[source], "input patch", False),  # grey: the input's own values
        (kernel_column, step.kernel[source], "kernel", True),  # red positive, blue negative
        (product_column, step.products[source], "products", True),
    ):
        column.vega_lite_chart(spec=matrix_spec(values, title, diverging), width="content")
    st.markdown(
        f"Sum of all {step.products.numel()} products over {len(step.input_channels)} input channel(s) "
        f"= {float(sums.sum()):+.4f}; plus the bias {step.bias:+.4f} = **{step.total:+.4f}**. "
        f"The map holds **{step.output:+.4f}** at ({step.y}, {step.x})."
    )
    top, left = step.origin
    st.caption(
        f"The input patch, from row {top}, column {left} of the layer's input, is what the kernel covers there: "
        "for the first layer the digit after the model's own normalisation, (pixel − mean) / std with MNIST's mean "
        "and standard deviation, so the black background is no longer 0; deeper, the previous stage's output. "
        "Cells outside the input are the padding (zeros)."
    )


# --- the ViT -------------------------------------------------------------------------------------------------------


def show_attention(name: str, model: nn.Module, digit: torch.Tensor, key: str = "inside") -> None:
    """The class token's attention over the digit: rolled out through all layers, and per head at one layer."""
    maps = attention_maps(model, digit)
    layers, heads = maps.heads.shape[:2]
    st.caption(
        f"{model_title(name)} says **{maps.prediction}**. It cuts the digit into {maps.grid} × {maps.grid} patches; "
        f"these maps show how much its class token attends to each ({maps.seconds * 1000:.1f} ms)."
    )
    source_column, rollout_column = st.columns(2)
    source_column.image(to_image(digit, size=196), caption="The input")
    rollout_column.image(
        overlay_image(digit, maps.rollout, size=196), caption="Attention rolled out through all layers"
    )
    layer = layers
    if layers > 1:  # a slider needs min < max
        layer = st.slider("Layer", 1, layers, layers, key=f"{key}_attention_layer_{name}")
    for head, column in enumerate(st.columns(heads)):
        column.image(heat_image(maps.heads[layer - 1, head], size=96), caption=f"layer {layer}, head {head + 1}")


# --- class activation maps -----------------------------------------------------------------------------------------


def show_cams(models: Mapping[str, nn.Module], digit: torch.Tensor, key: str = "inside_cam") -> None:
    """Two models' class activation maps on ``digit`` side by side, with a method, a class and a layer for each."""
    names = list(models)
    if not names:
        return
    vit = next((name for name in names if find_vit(models[name]) is not None), names[-1])
    cnn = next((name for name in names if name != vit), vit)
    method_column, class_column = st.columns(2)
    method = method_column.selectbox(
        "Method", list(CAM_METHODS), format_func=lambda m: CAM_METHODS[m].title, key=f"{key}_method"
    )
    target = class_column.selectbox("Explain", [OWN_ANSWER, *range(10)], key=f"{key}_class")
    st.caption(CAM_METHODS[method].summary)
    for side, (column, default) in enumerate(zip(st.columns(2), [cnn, vit], strict=True)):
        with column:
            name = st.selectbox(
                "Model", names, index=names.index(default), format_func=model_title, key=f"{key}_model_{side}"
            )
            layers = digit_cam_layers(models[name])
            layer = st.selectbox("Layer", layers, index=len(layers) - 1, key=f"{key}_layer_{side}_{name}")
            try:
                cam = digit_cam(models[name], digit, method, layer, None if target == OWN_ANSWER else int(target))
            except CamError as error:
                st.warning(str(error), icon=":material/timer_off:")
                continue
            st.image(
                overlay_image(digit, cam.heatmap, size=224),
                caption=f"{model_title(name)} says {cam.predicted}; evidence for {cam.class_index} "
                f"({cam.probability:.1%}) at {cam.layer}, {cam.seconds * 1000:.0f} ms",
            )
