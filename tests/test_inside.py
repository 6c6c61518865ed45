"""Inside the digit models and CAMs: feature maps against create_feature_extractor, kernel x patch against the
network's own value, every CAM method against torchcam used directly, hooks gone after errors, threads kept apart,
and the Draw page's render helpers in AppTest."""

from __future__ import annotations

import copy
import re
import threading
import weakref
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from streamlit.testing.v1 import AppTest
from torch import nn
from torchcam.methods import GradCAM, GradCAMpp, LayerCAM, ScoreCAM
from torchvision.models.feature_extraction import create_feature_extractor

from vision_core import get_spec, hooks, load_image, load_mnist, load_model, to_input
from vision_core.cams import CAM_METHODS, CamError, compute_cam, digit_cam, digit_cam_layers, tokens_to_grid
from vision_core.hooks import LayerError, capture_inputs_outputs, capture_outputs, hook_count, private_twin
from vision_core.images import PHOTO_DRAFT_SIZE
from vision_core.inside import (
    InsideError,
    attention_maps,
    conv_layers,
    digit_feature_maps,
    kernel_patch,
)
from vision_core.photo import LayerError as PhotoLayerError
from vision_core.photo import photo_cam
from vision_core.visuals import channel_grid, kernels_beside_maps

ROOT = Path(__file__).resolve().parents[1]
TORCHCAM = {"gradcam": GradCAM, "gradcampp": GradCAMpp, "scorecam": ScoreCAM, "layercam": LayerCAM}


@pytest.fixture(scope="module")
def digits() -> dict[str, nn.Module]:
    return {name: load_model(name, device="cpu") for name in ("lenet", "vgg", "vit")}


@pytest.fixture(scope="module")
def seven() -> torch.Tensor:
    return to_input(load_mnist("test").images[:1])[0]  # (1, 28, 28): MNIST test image 0, a 7


class Strided(nn.Module):
    """Every way a convolution can place its kernel: stride, dilation, groups, "same" and reflect padding, no bias."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(inplace=True),  # in-place: must not change the record
            nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), nn.Tanh(),
            nn.Conv2d(8, 6, (3, 5), padding="same", padding_mode="reflect", bias=False),
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# --- feature maps --------------------------------------------------------------------------------------------------


def test_conv_layers_are_found_by_type_in_network_order(digits):
    assert conv_layers(digits["lenet"]) == ["features.0", "features.3"]
    assert conv_layers(digits["vgg"]) == ["features.0", "features.3", "features.7", "features.10", "features.14", "features.17"]  # fmt: skip
    assert conv_layers(digits["vit"]) == ["vit.patch_embed.proj"]  # the patch embedding is a 4 x 4, stride 4 conv
    vgg = digits["vgg"]
    assert conv_layers(type(vgg)(type(vgg.config)(widths=(8, 8), convs_per_stage=1))) == [
        "features.0",
        "features.4",
    ]  # a saved run's other layout: found the same way


@pytest.mark.parametrize("name", ["lenet", "vgg"])
def test_digit_feature_maps_equal_create_feature_extractor(digits, seven, name):
    model = digits[name]
    maps = digit_feature_maps(model, seven)
    names = conv_layers(model)
    with torch.inference_mode():
        expected = create_feature_extractor(model, return_nodes=names)(seven[None])
        logits = model(seven[None])
    assert [layer.name for layer in maps.layers] == names and maps.prediction == int(logits.argmax()) == 7
    for layer in maps.layers:
        torch.testing.assert_close(layer.output, expected[layer.name][0], rtol=0, atol=0)
        conv = model.get_submodule(layer.name)  # the recorded input is what the conv computed from
        with torch.no_grad():
            again = F.conv2d(layer.input[None], conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
        torch.testing.assert_close(again[0], layer.output, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the model normalises inside: the first conv sees the normalised digit
        torch.testing.assert_close(maps.layers[0].input, model.normalize(seven[None])[0])
    assert hook_count(model) == 0


def test_recorded_maps_survive_in_place_activations():
    """create_feature_extractor itself gets this wrong: the in-place ReLU overwrites the conv output it returns."""
    model = Strided().eval()
    maps = digit_feature_maps(model, torch.rand(1, 28, 28))
    first, second, _ = maps.layers
    assert first.output.min() < 0  # the conv's own output, before the in-place ReLU
    torch.testing.assert_close(second.input, torch.relu(first.output))  # the ReLU happened after it was recorded
    with torch.no_grad():
        for layer in maps.layers:
            torch.testing.assert_close(model.get_submodule(layer.name)(layer.input[None])[0], layer.output)


# --- kernel x patch ------------------------------------------------------------------------------------------------


def positions(height: int, width: int) -> list[tuple[int, int]]:
    """Corners and edges (where padding enters the sum) and the middle."""
    return [
        (0, 0),
        (0, width - 1),
        (height - 1, 0),
        (height - 1, width - 1),
        (height // 2, width // 2),
        (1, width // 3),
    ]


@pytest.mark.parametrize("name", ["lenet", "vgg", "strided"])
def test_kernel_times_patch_equals_the_feature_map_value(digits, seven, name):
    model = Strided().eval() if name == "strided" else digits[name]
    maps = digit_feature_maps(model, seven)
    for layer in maps.layers:
        conv = model.get_submodule(layer.name)
        channels, height, width = layer.output.shape
        for channel in sorted({0, channels // 2, channels - 1}):
            for y, x in positions(height, width):
                step = kernel_patch(model, maps, layer.name, channel, y, x)
                assert step.output == float(layer.output[channel, y, x])
                assert step.total == pytest.approx(step.output, rel=1e-5, abs=1e-5), (layer.name, channel, y, x)
                assert step.patch.shape == step.kernel.shape == (conv.in_channels // conv.groups, *conv.kernel_size)
                torch.testing.assert_close(step.products, step.patch * step.kernel, rtol=0, atol=0)
                torch.testing.assert_close(step.kernel, conv.weight[channel].detach())
                assert step.bias == (float(conv.bias[channel].detach()) if conv.bias is not None else 0.0)
    first = kernel_patch(model, maps, maps.layers[0].name, 0, 0, 0)
    if name == "lenet":  # 5 x 5 kernel, padding 2: the top-left patch starts two pixels outside, in zeros
        assert first.origin == (-2, -2) and (first.patch[0, :2] == 0).all() and (first.patch[0, :, :2] == 0).all()
    if name == "strided":
        grouped = kernel_patch(model, maps, "body.2", channel=7, y=3, x=3)
        assert grouped.input_channels == (2, 3)  # groups=2: output channels 4-7 read input channels 2-3


def test_kernel_patch_refuses_what_is_not_there(digits, seven):
    maps = digit_feature_maps(digits["lenet"], seven)
    with pytest.raises(InsideError, match=r"outside features\.3's 16 × 10 × 10"):
        kernel_patch(digits["lenet"], maps, "features.3", channel=0, y=10, x=0)
    with pytest.raises(InsideError, match="outside"):
        kernel_patch(digits["lenet"], maps, "features.0", channel=6, y=0, x=0)
    with pytest.raises(InsideError, match="not a convolution"):
        kernel_patch(digits["lenet"], maps, "features.1", channel=0, y=0, x=0)
    with pytest.raises(LayerError, match="Did you mean"):
        kernel_patch(digits["lenet"], maps, "features.33", channel=0, y=0, x=0)
    with pytest.raises(InsideError, match="no convolution"):
        digit_feature_maps(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), seven)
    with pytest.raises(InsideError, match="one"):
        digit_feature_maps(digits["lenet"], torch.rand(2, 28, 28))


# --- hooks: threads, errors ----------------------------------------------------------------------------------------


def test_hooks_record_only_the_thread_that_opened_them(digits, seven):
    """The app's models are shared by every session: another thread's forward pass, run while this thread's hooks
    are on the model, must not be recorded (nor mixed with this thread's)."""
    model = digits["vgg"]
    other = torch.rand(1, 1, 28, 28)
    with torch.inference_mode(), capture_inputs_outputs(model, conv_layers(model)) as seen, capture_outputs(model, ["features.17"]) as outputs:  # fmt: skip
        worker = threading.Thread(target=model, args=(other,))
        worker.start()
        worker.join()
        assert seen == {} and outputs == {}
        model(seven[None])
    torch.testing.assert_close(seen["features.0"][1], digit_feature_maps(model, seven).layers[0].output[None])
    assert hook_count(model) == 0


def run_in_threads(work, count: int) -> None:
    """``work(i)`` for i in range(count), each in its own thread, all at once."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_feature_maps_from_many_threads_at_once_stay_apart(digits):
    model, inputs = digits["lenet"], [torch.rand(1, 28, 28) for _ in range(8)]
    expected = [digit_feature_maps(model, digit).layers[1].output for digit in inputs]
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        for _ in range(20):
            results[i] = digit_feature_maps(model, inputs[i]).layers[1].output

    run_in_threads(work, len(inputs))
    for i, output in results.items():
        torch.testing.assert_close(output, expected[i])
    assert hook_count(model) == 0


def test_no_hook_remains_after_an_error(digits):
    model = digits["lenet"]
    with pytest.raises(RuntimeError):  # 20 x 28: the convolutions run, the first linear layer refuses
        digit_feature_maps(model, torch.rand(1, 20, 28))
    assert hook_count(model) == 0

    def explode(*_):
        raise RuntimeError("boom after the first conv")

    handle = model.features[2].register_forward_hook(explode)  # fails mid-forward, after a recording hook ran
    try:
        with pytest.raises(RuntimeError, match="boom"):
            digit_feature_maps(model, torch.rand(1, 28, 28))
        assert hook_count(model) == 1  # only the test's own
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="not ours"), capture_inputs_outputs(model, ["features.0"]):
        raise ValueError("not ours")  # an error inside the block propagates; the hooks go
    assert hook_count(model) == 0 and hook_count(digits["vit"]) == 0


def test_private_twin_shares_the_weights_and_none_of_the_hooks(digits):
    model = digits["vit"]
    handle = model.vit.blocks[0].register_forward_hook(lambda *_: None)
    try:
        twin = private_twin(model)
    finally:
        handle.remove()
    assert hook_count(twin) == 0 and twin is not model and twin.vit.blocks[0] is not model.vit.blocks[0]
    assert all(a is b for a, b in zip(twin.parameters(), model.parameters(), strict=True))
    assert all(a is b for a, b in zip(twin.buffers(), model.buffers(), strict=True))
    digit = torch.rand(1, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(twin(digit), model(digit), rtol=0, atol=0)


# --- attention -----------------------------------------------------------------------------------------------------


def test_attention_maps_need_no_copy_and_leave_no_hook(digits, seven):
    maps = attention_maps(digits["vit"], seven)
    assert maps.heads.shape == (6, 4, 7, 7) and maps.prediction == 7 and maps.seconds > 0
    torch.testing.assert_close(maps.heads.sum(dim=(-1, -2)) <= 1.0 + 1e-6, torch.ones(6, 4, dtype=torch.bool))
    assert hook_count(digits["vit"]) == 0
    with pytest.raises(InsideError, match="not a vision transformer"):
        attention_maps(digits["vgg"], seven)


# --- CAMs against torchcam -----------------------------------------------------------------------------------------


def torchcam_map(model, model_input, layer, method, class_index, reshape=None, batch_size=64) -> torch.Tensor:
    """torchcam used directly, as its README does, on a deep copy (so the shared model stays untouched)."""
    private = copy.deepcopy(model).eval()
    options = {"batch_size": batch_size} if method == "scorecam" else {}
    with TORCHCAM[method](private, layer, reshape_transform=reshape, **options) as extractor:
        scores = private(model_input.clone().requires_grad_(method != "scorecam"))
        return extractor(class_idx=class_index, scores=scores)[0][0].detach()


@pytest.mark.parametrize("method", list(CAM_METHODS))
@pytest.mark.parametrize("name", ["lenet", "vgg", "vit"])
def test_each_digit_cam_equals_torchcam(digits, seven, name, method):
    model = digits[name]
    layers = digit_cam_layers(model)
    for layer, class_index in ((layers[-1], None), (layers[0], 3)):
        cam = digit_cam(model, seven, method, layer, class_index)
        expected_class = 7 if class_index is None else class_index
        reshape = partial(tokens_to_grid, prefix=1) if name == "vit" else None
        expected = torchcam_map(model, seven[None], layer, method, expected_class, reshape)
        assert cam.class_index == expected_class and cam.predicted == 7 and cam.layer == layer
        torch.testing.assert_close(cam.layer_map, expected, rtol=1e-4, atol=1e-5)
        assert cam.heatmap.shape == (28, 28) and cam.heatmap.min() >= 0 and cam.heatmap.max() <= 1
        assert cam.forward_passes == (2 + cam_channels(model, layer) if method == "scorecam" else 1)
    assert hook_count(model) == 0 and all(p.grad is None for p in model.parameters())


def cam_channels(model: nn.Module, layer: str) -> int:
    module = model.get_submodule(layer)
    return module.out_channels if isinstance(module, nn.Conv2d) else module.normalized_shape[0]


@pytest.mark.parametrize(("method", "layer"), [("gradcam", "bn2"), ("gradcampp", "blocks.5"), ("scorecam", "blocks.2"), ("layercam", "blocks.1")])  # fmt: skip
def test_each_photo_cam_equals_torchcam(method, layer):
    module = load_model("efficientnet_lite0", device="cpu")
    image = load_image(ROOT / "data" / "samples" / "chelsea.png", draft_size=PHOTO_DRAFT_SIZE)
    cam = photo_cam(image, "efficientnet_lite0", method, layer, module=module)
    model_input = get_spec("efficientnet_lite0").preprocess(image)[None]
    expected = torchcam_map(module, model_input, layer, method, cam.prediction.index, batch_size=8)
    torch.testing.assert_close(cam.layer_map, expected, rtol=1e-4, atol=1e-4)
    assert cam.heatmap.shape == (224, 224) and cam.heatmap.max() == 1.0
    assert cam.prediction.label in {"tabby", "tiger cat", "Egyptian cat"} and hook_count(module) == 0


def test_cam_layers_and_methods_are_checked(digits, seven):
    with pytest.raises(CamError, match="choose one of gradcam, gradcampp, scorecam, layercam"):
        digit_cam(digits["lenet"], seven, "cam")
    with pytest.raises(CamError, match=r"no CAM layer 'features\.1'.*features\.0, features\.3"):
        digit_cam(digits["lenet"], seven, "gradcam", "features.1")
    with pytest.raises(CamError, match="between 0 and 9"):
        digit_cam(digits["lenet"], seven, "gradcam", class_index=10)
    assert digit_cam_layers(digits["vit"])[-1] == "vit.blocks.5.norm1"
    image = Image.new("RGB", (64, 48), (90, 120, 30))
    with pytest.raises(PhotoLayerError, match="no CAM layer 'fc'"):
        photo_cam(image, "efficientnet_lite0", layer="fc", module=load_model("efficientnet_lite0", device="cpu"))


@pytest.fixture
def twins(monkeypatch) -> list[nn.Module]:
    """Every twin made from now on (none is taken from the pool that earlier tests filled)."""
    made = []
    monkeypatch.setattr(hooks, "_SPARE_TWINS", weakref.WeakKeyDictionary())
    monkeypatch.setattr(hooks, "private_twin", lambda model: made.append(private_twin(model)) or made[-1])
    return made


def test_no_cam_hook_remains_after_errors(digits, seven, twins):
    model = digits["vgg"]
    with pytest.raises(CamError, match="between 0 and 9"):
        digit_cam(model, seven, "gradcam", class_index=-1)
    with pytest.raises(RuntimeError):  # three channels: the first convolution refuses, mid-extraction
        compute_cam(model, torch.rand(1, 3, 28, 28), "features.17", "layercam")
    with pytest.raises(CamError, match="would run 64 forward passes"):
        compute_cam(model, seven[None], "features.17", "scorecam", max_channels=32)
    assert len(twins) == 1 and hook_count(twins[0]) == 0  # the same twin, lent three times, hooks gone each time
    assert hook_count(model) == 0 and all(p.grad is None for p in model.parameters())


def test_twins_are_lent_one_at_a_time_and_dropped_when_stale(digits, seven, twins):
    model = copy.deepcopy(digits["lenet"])
    with hooks.borrowed_twin(model) as first, hooks.borrowed_twin(model) as second:
        assert first is not second  # two callers at once: two twins
    with hooks.borrowed_twin(model) as again:
        assert again in (first, second)  # given back, lent again
        again.features[0].register_forward_hook(lambda *_: None)  # left with a hook: not given back
    with hooks.borrowed_twin(model) as other:
        assert other is not again
    model.features[0].weight = nn.Parameter(model.features[0].weight.detach().clone())  # the model's weights change
    digit_cam(model, seven)
    assert len(twins) == 3  # the stale spare was replaced by a fresh twin
    assert twins[-1].features[0].weight is model.features[0].weight


def test_score_cam_refuses_a_costly_layer_after_one_pass(monkeypatch):
    passes = []

    def counted(model):
        twin = private_twin(model)
        twin.register_forward_pre_hook(lambda *_: passes.append(1))  # removed with the twin
        return twin

    monkeypatch.setattr(hooks, "_SPARE_TWINS", weakref.WeakKeyDictionary())
    monkeypatch.setattr(hooks, "private_twin", counted)
    module = load_model("efficientnet_lite0", device="cpu")
    image = Image.new("RGB", (64, 48), (90, 120, 30))
    with pytest.raises(CamError, match=r"Score-CAM at bn2 would run 1280 forward passes.*at most 128"):
        photo_cam(image, "efficientnet_lite0", "scorecam", "bn2", module=module)
    assert len(passes) == 1 and hook_count(module) == 0


def test_cams_in_many_threads_on_one_shared_model_match_one_at_a_time(digits):
    model, inputs = digits["vit"], [torch.rand(1, 28, 28) for _ in range(4)]
    expected = [digit_cam(model, digit, "gradcam").layer_map for digit in inputs]
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = digit_cam(model, inputs[i], "gradcam").layer_map
            with torch.inference_mode():
                model(torch.rand(1, 1, 28, 28))  # another session's prediction on the same model, meanwhile

    run_in_threads(work, len(inputs))
    for i, layer_map in results.items():
        torch.testing.assert_close(layer_map, expected[i])
    assert hook_count(model) == 0


# --- pictures ------------------------------------------------------------------------------------------------------


def test_kernels_beside_maps_and_channel_grids_have_the_right_layout():
    kernels = torch.zeros(3, 1, 5, 5)
    kernels[1, 0, 0, 0] = 1.0
    maps = torch.rand(3, 28, 28)
    image = kernels_beside_maps(kernels, maps, columns=2, tile=10)
    assert image.size == (2 * (10 + 2 + 10) + 2, 2 * 10 + 2)  # two pairs a row, a 2 px gap inside and between
    pixels = np.asarray(image)
    assert pixels[0, 0].tolist() == [128, 128, 128]  # a zero kernel is grey
    assert pixels[0, 24].tolist() == [255, 255, 255]  # kernel 1's positive corner is white
    grid = channel_grid(torch.rand(16, 7, 7), columns=8, tile=14)
    assert grid.size == (8 * 14 + 7 * 2, 2 * 14 + 2)
    with pytest.raises(ValueError, match="kernels"):
        kernels_beside_maps(torch.zeros(3, 3, 5, 5), maps)


# --- the render helpers --------------------------------------------------------------------------------------------


def inside_page():
    import streamlit as st

    from ui.inside import show_cams, show_inside
    from vision_core import load_mnist, load_model, to_input

    models = {name: load_model(name, device="cpu") for name in ("lenet", "vgg", "vit")}
    vgg = models["vgg"]
    models["my-run"] = type(vgg)(type(vgg.config)(widths=(8, 12), convs_per_stage=1)).eval()  # another layout
    digit = to_input(load_mnist("test").images[:1])[0]
    show_inside(models, digit)
    st.divider()
    show_cams(models, digit)


def sums(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("Sum of all")]


def test_render_helpers_show_every_layer_and_the_arithmetic():
    at = AppTest.from_function(inside_page, default_timeout=120).run()
    assert not at.exception
    captions = [caption for image in at.get("image") for caption in image.captions]
    for name in ("features.3", "features.7", "features.10", "features.14", "features.17"):
        assert any(caption.startswith(f"{name}: ") for caption in captions), name
    assert sum("kernel (grey is 0" in caption for caption in captions) == 3  # every CNN's first layer
    assert any("Attention rolled out" in caption for caption in captions)
    assert any(caption.startswith("features.4: 12 maps of 14 × 14") for caption in captions)  # the run's second conv
    assert [tab.label for tab in at.tabs] == ["LeNet-style CNN", "VGG-style CNN", "Vision Transformer (timm)", "my-run"]
    assert any(c.startswith("LeNet-style CNN says 7; evidence for 7") for c in captions)
    assert any(c.startswith("Vision Transformer (timm) says 7; evidence for 7") for c in captions)
    first = sums(at)[0]
    at.number_input(key="inside_y_lenet").set_value(0).run()
    at.number_input(key="inside_x_lenet").set_value(0).run()
    assert not at.exception and sums(at)[0] != first and "at (0, 0)" in sums(at)[0]
    total, shown = re.search(r"= \*\*([-+.\d]+)\*\*\. The map holds \*\*([-+.\d]+)\*\*", sums(at)[0]).groups()
    assert float(total) == pytest.approx(float(shown), abs=1e-4)
    at.selectbox(key="inside_layer_vgg").set_value("features.17").run()  # 7 x 7: the position (14, 14) is clamped
    assert not at.exception and "at (6, 6)" in sums(at)[1] and "over 64 input channel(s)" in sums(at)[1]
    at.selectbox(key="inside_cam_method").set_value("scorecam").run()
    at.selectbox(key="inside_cam_class").set_value(3).run()
    assert not at.exception
    cam_captions = [c for image in at.get("image") for c in image.captions if "evidence for" in c]
    assert len(cam_captions) == 2 and all("evidence for 3" in c for c in cam_captions)
