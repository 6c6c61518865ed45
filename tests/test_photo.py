"""The photo explorer, offline: oracle tests against torchvision, real predictions from the shipped EfficientNet-Lite0,
hook hygiene, weight handling without a network, and the page in AppTest.

ResNet-50 and Faster R-CNN cannot be downloaded here, so randomly initialised models are saved where torchvision looks
for the pretrained files (under a temporary TORCH_HOME): our code and torchvision's own loading then see the same
weights, and any difference in preprocessing, loading or post-processing shows up.
"""

from __future__ import annotations

import hashlib
import io
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from torchvision.models import ResNet50_Weights, resnet50
from torchvision.models.detection import FasterRCNN_MobileNet_V3_Large_FPN_Weights, fasterrcnn_mobilenet_v3_large_fpn
from torchvision.models.feature_extraction import create_feature_extractor

from vision_core import get_spec, list_models, load_image, load_model, resolve_device
from vision_core.checkpoints import CheckpointError
from vision_core.cli.weights import main as weights_cli
from vision_core.hooks import LayerError, capture_outputs, hook_count
from vision_core.images import PHOTO_DRAFT_SIZE
from vision_core.models.imagenet import WeightsDownloadError, download_file, fetch_weights, hub_checkpoint_path
from vision_core.photo import (
    Detection,
    analyze,
    classify,
    detect,
    fast_precision,
    feature_maps,
    first_layer_filters,
    grad_cam,
)
from vision_core.registry import WeightsMissingError, weights_available
from vision_core.visuals import cam_overlay, denormalize, draw_detections, feature_grid, filter_grid, to_png

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}  # ImageNet 281-285
DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No test here may touch the network: connecting or resolving a name fails at once."""

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in the tests")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        yield


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """TORCH_HOME with a random ResNet-50 (with non-trivial batch-norm statistics) as torchvision's pretrained file."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        torch.manual_seed(0)
        model = resnet50()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # eval-mode BN then differs from train mode and from identity
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        path = hub_checkpoint_path(ResNet50_Weights.DEFAULT)
        path.parent.mkdir(parents=True)
        torch.save(model.state_dict(), path)
        yield home


@pytest.fixture(scope="module")
def resnet(hub):
    """Our ResNet-50 (through the registry) and torchvision's own, loaded from the same file."""
    ours = load_model("resnet50", device="cpu")
    reference = resnet50(weights=ResNet50_Weights.DEFAULT).eval()  # torchvision's loader: finds the file, no download
    return ours, reference


@pytest.fixture(scope="module")
def detector_hub(hub):
    """A random Faster R-CNN (MobileNetV3) saved where torchvision looks; the "dog" class is biased up so boxes survive."""
    torch.manual_seed(1)
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[18] = 8.0  # 18: "dog"
    torch.save(model.state_dict(), hub_checkpoint_path(FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT))
    return hub


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet_lite0", device="cpu")


def sample(name: str) -> Image.Image:
    return load_image(SAMPLES / name, draft_size=PHOTO_DRAFT_SIZE)


# --- the registry ------------------------------------------------------------------------------------------------


def test_imagenet_models_share_the_registry_with_the_digit_models():
    assert list_models("digits") == ["lenet", "vgg", "vit"]
    assert list_models("imagenet") == ["resnet50", "efficientnet_lite0", "swin_t"]
    assert list_models("detection") == ["fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn"]
    assert get_spec("resnet50").labels == tuple(ResNet50_Weights.DEFAULT.meta["categories"])


DEFAULT_SHAPES = {  # early / middle / late: the same scales for a CNN, a mobile CNN and a transformer
    "resnet50": [(256, 56, 56), (512, 28, 28), (1024, 14, 14)],
    "efficientnet_lite0": [(24, 56, 56), (40, 28, 28), (112, 14, 14)],
    "swin_t": [(96, 56, 56), (192, 28, 28), (384, 14, 14)],  # Swin's (B, H, W, C) outputs come out as (C, H, W)
}


@pytest.mark.parametrize("name", list(DEFAULT_SHAPES))
def test_every_offered_layer_gives_a_feature_map(name):
    """Defaults, Grad-CAM layer and first conv exist; every layer a user may pick yields one (C, H, W) map."""
    spec = get_spec(name)
    model = spec.builder().eval()
    assert set(spec.layers.defaults) <= set(spec.layers.choices)
    assert spec.layers.cam in dict(model.named_modules()) and spec.layers.first_conv in dict(model.named_modules())
    image = Image.new("RGB", (300, 240), (120, 80, 40))
    maps = feature_maps(image, name, layers=spec.layers.choices, module=model)
    assert list(maps) == list(spec.layers.choices)
    assert all(t.dim() == 3 and min(t.shape) >= 1 for t in maps.values())
    assert [tuple(maps[layer].shape) for layer in spec.layers.defaults] == DEFAULT_SHAPES[name]
    assert first_layer_filters(name, module=model).shape[1] == 3
    cam = grad_cam(image, name, module=model)
    assert cam.heatmap.shape == (224, 224) and 0.0 <= cam.heatmap.min() <= cam.heatmap.max() <= 1.0
    assert hook_count(model) == 0


# --- oracle tests: ResNet-50 equals torchvision with the same weights -----------------------------------------


@pytest.mark.parametrize("photo", ["chelsea.png", "rocket.jpg"])
def test_classify_equals_torchvision_with_the_same_weights(resnet, photo):
    ours, reference = resnet
    image = sample(photo)
    predictions = classify(image, "resnet50", k=5, module=ours)  # ours: load_model("resnet50") from TORCH_HOME
    weights = ResNet50_Weights.DEFAULT
    with torch.inference_mode():
        expected = torch.softmax(reference(weights.transforms()(image).unsqueeze(0)), dim=1)[0].topk(5)
    assert [p.index for p in predictions] == expected.indices.tolist()
    assert [p.label for p in predictions] == [weights.meta["categories"][i] for i in expected.indices.tolist()]
    # Our ResNet-50 is channels_last: oneDNN sums in another order, so floats agree to ~1e-5, not bit for bit.
    torch.testing.assert_close(
        torch.tensor([p.probability for p in predictions]), expected.values, rtol=1e-4, atol=1e-7
    )
    if photo == "chelsea.png":  # without module=: loaded by name (on the GPU when there is one, hence approx)
        by_name = classify(image, "resnet50", k=1)[0]
        assert by_name.index == predictions[0].index and by_name.probability == pytest.approx(
            predictions[0].probability, rel=1e-3
        )


def test_feature_maps_equal_create_feature_extractor(resnet):
    ours, reference = resnet
    image = sample("coffee.png")
    layers = ["conv1", "maxpool", "layer1.2", "layer2.3", "layer3.5", "layer4"]
    maps = feature_maps(image, "resnet50", layers=layers, module=ours)
    extractor = create_feature_extractor(reference, return_nodes=layers)
    with torch.inference_mode():
        expected = extractor(ResNet50_Weights.DEFAULT.transforms()(image).unsqueeze(0))
    assert list(maps) == layers
    for layer in layers:
        # channels_last sums in another order: errors stay at float32 rounding relative to the layer's scale.
        reference_map = expected[layer][0]
        assert maps[layer].shape == reference_map.shape
        assert (maps[layer] - reference_map).abs().max() <= 1e-5 * reference_map.abs().max(), layer
    assert {name: tuple(t.shape) for name, t in feature_maps(image, "resnet50", module=ours).items()} == {
        "layer1.2": (256, 56, 56),
        "layer2.3": (512, 28, 28),
        "layer3.5": (1024, 14, 14),
    }


def test_no_hook_remains_after_success_or_error(resnet):
    ours, _ = resnet
    image = sample("chelsea.png")
    feature_maps(image, "resnet50", module=ours)
    grad_cam(image, "resnet50", module=ours)
    assert hook_count(ours) == 0

    def explode(*_):
        raise RuntimeError("boom in layer2")

    handle = ours.layer2.register_forward_hook(explode)  # fails mid-forward, after our layer1.2 hook has run
    try:
        with pytest.raises(RuntimeError, match="boom in layer2"):
            feature_maps(image, "resnet50", module=ours)
        # CAMs run on a twin of the shared model (vision_core.cams): another session's hook on it is not theirs.
        assert grad_cam(image, "resnet50", module=ours).layer == "layer4"
        assert hook_count(ours) == 1
    finally:
        handle.remove()
    assert hook_count(ours) == 0
    with pytest.raises(ValueError, match="not the context manager's"), capture_outputs(ours, ["layer1"]):
        raise ValueError("not the context manager's")  # errors inside the block propagate, hooks go
    assert hook_count(ours) == 0
    assert all(p.grad is None for p in ours.parameters())  # Grad-CAM asked autograd for activations only


def test_unknown_layer_is_refused_with_the_valid_names(resnet):
    ours, _ = resnet
    with pytest.raises(LayerError, match=r"layer3\.9.*valid names: conv1, relu, maxpool, layer1\.0"):
        feature_maps(sample("coffee.png"), "resnet50", layers=["layer3.9"], module=ours)
    with pytest.raises(LayerError, match=r"Did you mean .*layer3\.5\?"), capture_outputs(ours, ["layer3.55"]):
        pass
    assert hook_count(ours) == 0


def test_grad_cam_of_resnet50_equals_the_class_activation_map(resnet):
    """layer4 feeds global average pooling and the fc layer, so Grad-CAM's channel weights are fc.weight[c] / 49:
    the map must equal CAM (Zhou et al. 2016), computed here from create_feature_extractor and the fc weights,
    normalised as torchcam does (minimum 0, maximum 1), then upsampled to the input and scaled to a maximum of 1."""
    ours, reference = resnet
    image = sample("chelsea.png")
    top1, top2 = classify(image, "resnet50", k=2, module=ours)
    cam = grad_cam(image, "resnet50", module=ours)
    assert cam.prediction.index == top1.index and cam.layer == "layer4" and cam.method == "gradcam"
    assert cam.prediction.probability == pytest.approx(top1.probability, rel=1e-5)
    chosen = grad_cam(image, "resnet50", class_index=top2.index, module=ours)
    assert chosen.prediction.index == top2.index and chosen.prediction.probability == pytest.approx(
        top2.probability, rel=1e-5
    )
    extractor = create_feature_extractor(reference, ["layer4"])
    for result in (cam, chosen):
        with torch.inference_mode():
            features = extractor(ResNet50_Weights.DEFAULT.transforms()(image)[None])["layer4"][0]  # (2048, 7, 7)
            expected = torch.relu(torch.einsum("c,chw->hw", reference.fc.weight[result.prediction.index], features))
            expected = (expected - expected.min()) / (expected.max() - expected.min())
            upsampled = torch.nn.functional.interpolate(expected[None, None], size=(224, 224), mode="bilinear")[0, 0]
        torch.testing.assert_close(result.layer_map, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(result.heatmap, upsampled / upsampled.max(), rtol=1e-4, atol=1e-5)
        assert result.heatmap.shape == (224, 224) and result.heatmap.max() == 1.0 and result.heatmap.min() >= 0.0
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(image, "resnet50", class_index=1000, module=ours)


def test_first_layer_filters_are_conv1(resnet):
    ours, reference = resnet
    filters = first_layer_filters("resnet50", module=ours)
    assert filters.shape == (64, 3, 7, 7)
    torch.testing.assert_close(filters, reference.conv1.weight.detach())


def test_detect_equals_torchvision_with_the_same_weights(detector_hub):
    image = sample("motorcycle_left.png")
    module = load_model(DETECTOR, device="cpu")
    detections = detect(image, threshold=0.3, model=DETECTOR, module=module)
    reference = fasterrcnn_mobilenet_v3_large_fpn(weights=FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT).eval()
    with torch.inference_mode():
        expected = reference([FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT.transforms()(image)])[0]
    keep = expected["scores"] >= 0.3
    assert len(detections) == int(keep.sum()) > 0
    torch.testing.assert_close(torch.tensor([d.box for d in detections]), expected["boxes"][keep], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(
        torch.tensor([d.score for d in detections]), expected["scores"][keep], rtol=1e-4, atol=1e-5
    )
    assert {d.label for d in detections} == {"dog"} and [d.score for d in detections] == sorted(
        (d.score for d in detections), reverse=True
    )
    for x0, y0, x1, y1 in (d.box for d in detections):
        assert 0 <= x0 <= x1 <= image.width and 0 <= y0 <= y1 <= image.height  # in the photo's pixels
    with pytest.raises(ValueError, match="threshold"):
        detect(image, threshold=1.5, model=DETECTOR, module=module)
    with pytest.raises(ValueError, match="detection model"):
        detect(image, model="resnet50")


# --- weights: missing, damaged, downloaded -------------------------------------------------------------------


def test_missing_resnet_weights_fail_fast_and_say_how_to_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.perf_counter()
    assert not weights_available("resnet50") and weights_available("efficientnet_lite0")
    with pytest.raises(
        WeightsMissingError, match=r"ResNet-50 weights are missing.*resnet50-11ad3fa6\.pth.*make weights"
    ):
        load_model("resnet50")
    with pytest.raises(WeightsMissingError, match="make weights"):
        classify(sample("coffee.png"), "resnet50")
    with pytest.raises(WeightsDownloadError, match="could not download"):
        fetch_weights("resnet50")  # offline: a clear error at once, no long network timeout
    assert time.perf_counter() - start < 5.0
    assert not list(tmp_path.rglob("*.pth*"))  # no partial file left behind


def test_make_weights_cli_lists_and_fails_clearly_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert weights_cli(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "resnet50" in listing and "missing" in listing and str(tmp_path) in listing
    assert weights_cli(["resnet50"]) == 1
    assert "resnet50: FAILED: could not download" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        weights_cli(["efficientnet_lite0"])  # ships in a package: nothing to download


def test_damaged_weights_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = hub_checkpoint_path(ResNet50_Weights.DEFAULT)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"<html>proxy login page</html>")
    with pytest.raises(CheckpointError, match="damaged"):
        load_model("resnet50")


def test_download_file_checks_the_hash_and_never_leaves_half_files(tmp_path):
    payload = b"pretend weights " * 1000
    source = tmp_path / "source.bin"
    source.write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    seen = []
    good = download_file(
        source.as_uri(), tmp_path / "hub" / f"model-{digest[:8]}.pth", progress=lambda d, t: seen.append(d)
    )
    assert good.read_bytes() == payload and seen[-1] == len(payload)
    with pytest.raises(WeightsDownloadError, match="corrupt"):
        download_file(source.as_uri(), tmp_path / "hub" / "model-00000000.pth")
    with pytest.raises(WeightsDownloadError, match="could not download"):
        download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "hub" / "other-12345678.pth")
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == [good.name]


# --- EfficientNet-Lite0: real ImageNet weights shipped with the app ----------------------------------------------


def test_efficientnet_lite0_uses_timms_preprocessing(lite0):
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=lite0)
    assert config["input_size"] == (3, 224, 224) and config["interpolation"] == "bicubic"
    assert config["crop_pct"] == 0.875 and config["mean"] == config["std"] == (0.5, 0.5, 0.5)
    image = sample("rocket.jpg")
    torch.testing.assert_close(get_spec("efficientnet_lite0").preprocess(image), create_transform(**config)(image))


@pytest.mark.parametrize(
    ("photo", "expected_top1"),
    [
        ("coffee.png", {"espresso"}),
        ("chelsea.png", CAT_CLASSES),
        ("rocket.jpg", {"missile", "projectile", "space shuttle"}),
        ("motorcycle_left.png", {"moped", "motor scooter"}),  # ImageNet-1k has no "motorcycle"
    ],
)
def test_efficientnet_lite0_recognises_the_sample_photos(lite0, photo, expected_top1):
    predictions = classify(sample(photo), "efficientnet_lite0", k=3, module=lite0)
    assert predictions[0].label in expected_top1, predictions
    assert predictions[0].probability > 0.25
    if photo == "chelsea.png":
        assert {p.label for p in predictions} <= CAT_CLASSES  # all three are cats
    assert [p.probability for p in predictions] == sorted((p.probability for p in predictions), reverse=True)


def test_bf16_gives_the_same_classes_within_a_few_points(lite0):
    image = sample("coffee.png")
    exact = classify(image, "efficientnet_lite0", k=3, module=lite0)
    fast = classify(image, "efficientnet_lite0", k=3, module=lite0, precision="bf16")
    assert [p.label for p in fast] == [p.label for p in exact]
    assert all(abs(f.probability - e.probability) < 0.03 for f, e in zip(fast, exact, strict=True))
    maps = feature_maps(image, "efficientnet_lite0", module=lite0, precision="bf16")
    assert all(t.dtype == torch.float32 for t in maps.values())
    assert analyze(image, "efficientnet_lite0", module=lite0, precision="bf16").precision == "bf16"  # as computed
    assert analyze(image, "efficientnet_lite0", module=lite0).precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        classify(image, "efficientnet_lite0", module=lite0, precision="fp16")


def test_awkward_photos_still_classify(lite0):
    for image in (
        Image.new("RGB", (1, 1), (200, 30, 30)),
        Image.new("RGB", (4000, 200), (30, 30, 200)),
        Image.new("L", (50, 40)),
    ):
        report = analyze(image, "efficientnet_lite0", module=lite0)
        assert len(report.predictions) == 3 and report.model_input.shape == (3, 224, 224)
    with pytest.raises(ValueError, match="imagenet model"):
        classify(Image.new("RGB", (8, 8)), "lenet")
    with pytest.raises(ValueError, match="k must be"):
        classify(Image.new("RGB", (8, 8)), "efficientnet_lite0", k=0, module=lite0)


# --- the page ------------------------------------------------------------------------------------------------------


def open_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    return at.switch_page("app_pages/photo.py").run()


def bar_texts(at: AppTest) -> list[str]:
    return [bar.proto.text for bar in at.get("progress")]


def image_captions(at: AppTest) -> list[str]:
    return [caption for image in at.get("image") for caption in image.captions]


def test_page_without_resnet_weights_says_so_and_uses_efficientnet(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.perf_counter()
    at = open_page()
    assert not at.exception
    warning = at.warning[0].value
    assert (
        "ResNet-50's pretrained weights are missing" in warning
        and "make weights" in warning
        and "EfficientNet-Lite0" in warning
    )
    assert at.selectbox[1].value == "efficientnet_lite0"
    labels = [text.split(":")[0] for text in bar_texts(at)]
    assert len(labels) == 3 and set(labels) <= CAT_CLASSES  # Chelsea, the default sample
    assert any(caption.startswith("Grad-CAM for") for caption in image_captions(at))
    assert len(at.get("download_button")) == 4  # three feature-map grids and the Grad-CAM overlay
    assert any("make weights" in info.value for info in at.info)  # detection: how to get the weights
    assert time.perf_counter() - start < 120


def test_page_with_resnet_weights_classifies_and_detects(detector_hub):
    at = open_page()
    try:
        assert not at.exception and not at.warning
        assert at.selectbox[1].value == "resnet50"
        reference = classify(sample("chelsea.png"), "resnet50", k=3, precision=fast_precision(resolve_device()))
        assert [text.split(":")[0] for text in bar_texts(at)] == [p.label for p in reference]
        at.multiselect[1].set_value(["conv1", "layer4"]).run()
        captions = image_captions(at)
        assert any(c.startswith("conv1: 64 channels × 112 × 112") for c in captions)
        assert any(c.startswith("layer4: 2048 channels × 7 × 7") for c in captions)
        next(button for button in at.button if button.label == "Find objects").click().run()
        assert not at.exception
        assert any("objects scoring at least 50%" in c for c in image_captions(at))
    finally:
        from ui.resources import cached_model, clear_photo_caches

        cached_model.clear()  # the random ResNet-50 and what it computed must not outlive this test
        clear_photo_caches()


def test_page_shows_a_clear_error_for_a_bad_upload(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    at = open_page()
    at.radio[0].set_value("Upload a photo").run()
    assert not at.exception and any("Upload a photo" in info.value for info in at.info)
    at.file_uploader[0].set_value(("holiday.jpg", b"this is not a photo", "image/jpeg")).run()
    assert not at.exception
    assert any("Cannot use this file" in error.value and "not an image" in error.value for error in at.error)
    truncated = (SAMPLES / "rocket.jpg").read_bytes()[:20000]
    at.file_uploader[0].set_value(("rocket.jpg", truncated, "image/jpeg")).run()
    assert not at.exception and any("damaged or incomplete" in error.value for error in at.error)


# --- pictures ------------------------------------------------------------------------------------------------------


def test_feature_grid_orders_channels_by_mean_and_scales_each_map():
    maps = torch.zeros(6, 4, 4)
    maps[2] = 5.0  # constant: strongest mean, no pattern -> a flat tile, not NaN
    maps[4, 0, 0] = 3.0  # one hot pixel
    maps[1] = torch.linspace(-1, 2, 16).view(4, 4)  # mean 0.5
    grid = feature_grid(maps, count=3, tile=8)
    assert grid.channels == (2, 1, 4) and grid.shape == (6, 4, 4)
    assert grid.means == pytest.approx((5.0, 0.5, 3.0 / 16))
    pixels = np.asarray(grid.image)
    assert grid.image.size == (2 * 8 + 2, 2 * 8 + 2)  # 2 x 2 tiles of 8 px (4 px maps enlarged x2) with a 2 px gap
    assert np.isfinite(pixels).all() and len(np.unique(pixels[:8, :8].reshape(-1, 3), axis=0)) == 1  # the flat map
    assert len(np.unique(pixels[:8, 10:].reshape(-1, 3), axis=0)) > 8  # the ramp spans the colour map


def test_filter_grid_shows_zero_as_grey_and_pictures_have_the_right_size():
    weights = torch.zeros(4, 3, 2, 2)
    weights[0, 0] = 1.0  # a red-positive kernel
    image = filter_grid(weights, tile=4)
    pixels = np.asarray(image)
    assert image.size == (2 * 4 + 2, 2 * 4 + 2)
    assert pixels[0, 0].tolist() == [255, 128, 128] and pixels[0, 6].tolist() == [128, 128, 128]
    spec = get_spec("resnet50")
    solid = Image.new("RGB", (300, 200), (200, 100, 50))
    seen = denormalize(spec.preprocess(solid), spec.mean_std)
    assert seen.size == (224, 224) and np.abs(np.asarray(seen, dtype=int) - [200, 100, 50]).max() <= 1
    overlay = cam_overlay(seen, torch.linspace(0, 1, 224 * 224).view(224, 224), size=300)
    assert overlay.size == (300, 300) and overlay.mode == "RGB"
    boxes = draw_detections(solid, [Detection(box=(10, 20, 110, 120), label="cat", index=17, score=0.9)])
    assert boxes.size == solid.size and np.asarray(boxes)[70, 10].tolist() != [200, 100, 50]  # the box's left edge
    assert Image.open(io.BytesIO(to_png(boxes))).size == solid.size


def test_page_reruns_that_only_change_the_drawing_do_not_run_the_network(monkeypatch):
    from ui import resources

    calls = []
    real = resources.analyze
    monkeypatch.setattr(resources, "analyze", lambda *args, **kwargs: calls.append(args[1]) or real(*args, **kwargs))
    resources.clear_photo_caches()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page("app_pages/photo.py").run()
    assert not at.exception and len(calls) == 1
    next(s for s in at.slider if s.label == "Channels per layer").set_value(32).run()
    assert not at.exception and len(calls) == 1  # the same photo, model, layers and precision: from the cache
    resources.clear_photo_caches()


def test_page_lists_layers_in_network_order_and_follows_the_fast_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # EfficientNet-Lite0 only
    at = open_page()
    layers = next(m for m in at.multiselect if m.label == "Layers (early to late)")
    layers.set_value(["blocks.4", "conv_stem", "blocks.1"]).run()  # picked out of order
    grids = [caption.split(":")[0] for caption in image_captions(at) if " channels × " in caption]
    assert not at.exception and grids == ["conv_stem", "blocks.1", "blocks.4"]

    def precisions() -> set[str]:
        """The precision every prediction and CAM caption says its result was computed in."""
        texts = [c.value for c in at.caption if " ms on " in c.value] + [c for c in image_captions(at) if " in " in c]
        return {text.rsplit(" in ", 1)[1].split(":")[0] for text in texts if "CAM" in text or " ms on " in text}

    fast = [toggle for toggle in at.toggle if toggle.label.startswith("Fast mode")]
    assert precisions() == ({"bf16"} if fast and fast[0].value else {"fp32"})
    if fast:  # a CPU or GPU with native bf16: the switch shows, and switching it off gives fp32 everywhere
        fast[0].set_value(False).run()
        assert not at.exception and precisions() == {"fp32"}
        next(t for t in at.toggle if t.label.startswith("Fast mode")).set_value(True).run()
        assert precisions() == {"bf16"}


def test_page_replaces_the_progress_bar_by_the_error_when_a_download_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    at = open_page()
    next(button for button in at.button if button.label.startswith("Download the ResNet-50 weights")).click().run()
    assert not at.exception
    assert any("The download failed" in error.value and "make weights" in error.value for error in at.error)
    assert not [text for text in bar_texts(at) if text.startswith("Downloading")]  # no empty bar left above it


def test_photo_cache_is_bounded_in_bytes(lite0):
    from ui.resources import SHOWN_CHANNELS, BoundedCache, size_of, summarize

    image = sample("coffee.png")
    layers = get_spec("efficientnet_lite0").layers.choices
    full = analyze(image, "efficientnet_lite0", layers=layers, module=lite0)
    kept = summarize(full)
    assert list(kept.channels) == list(layers) and kept.report.feature_maps == {}
    assert all(c.maps.dtype == torch.float16 and c.maps.shape[0] <= SHOWN_CHANNELS for c in kept.channels.values())
    assert size_of(kept) < size_of(full) / 2  # 3.9 MB of 8.1 MB here; ResNet-50: 6.5 MB of 36 MB
    for layer in ("conv_stem", "blocks.4", "bn2"):  # the page draws the same grid from what is kept
        exact, drawn = feature_grid(full.feature_maps[layer], count=16), feature_grid(kept.channels[layer], count=16)
        assert drawn.channels == exact.channels and drawn.shape == exact.shape
        difference = np.abs(np.asarray(drawn.image, dtype=int) - np.asarray(exact.image, dtype=int))
        assert difference.max() <= 3  # float16 rounding moves a colour by a level or two

    entry = size_of(kept)
    cache = BoundedCache(max_bytes=3 * entry + entry // 2)  # room for three
    computed = []
    for i in range(10):
        cache.get_or_compute(i, lambda i=i: computed.append(i) or kept)
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 3 and cache.nbytes == 3 * entry and computed == list(range(10))
    cache.get_or_compute(7, lambda: pytest.fail("7 is cached"))  # a hit: 7 becomes the most recent
    cache.get_or_compute(10, lambda: kept)  # evicts the least recently used, 8
    cache.get_or_compute(7, lambda: pytest.fail("7 was used recently and must have stayed"))
    assert cache.get_or_compute(8, lambda: "computed again") == "computed again"
    tiny = BoundedCache(max_bytes=entry - 1)
    assert tiny.get_or_compute("big", lambda: kept) is kept and len(tiny) == 0  # returned, not kept


def test_page_offers_every_cam_method_and_bounds_score_cam(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # EfficientNet-Lite0 only
    at = open_page()
    at.selectbox(key="photo_cam_method").set_value("scorecam").run()  # at bn2: 1280 channels, refused before running
    assert not at.exception
    assert any("would run 1280 forward passes" in warning.value for warning in at.warning)
    at.selectbox(key="photo_cam_layer-efficientnet_lite0").set_value("blocks.2").run()
    captions = image_captions(at)
    assert any(c.startswith("Score-CAM for") and "blocks.2" in c and "42 forward passes" in c for c in captions)
    for method, title in (("layercam", "LayerCAM"), ("gradcampp", "Grad-CAM++")):
        at.selectbox(key="photo_cam_method").set_value(method).run()
        assert not at.exception and any(c.startswith(f"{title} for") for c in image_captions(at))
