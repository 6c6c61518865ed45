"""Server time of "inside the network" per stroke, and of each CAM method for a digit and a photo.

    python benchmarks/inside.py [--repeats 300] [--cam-repeats 20] [--photo-repeats 5] [--threads N]

Prints medians and p90 in milliseconds. Target: the digit feature maps of LeNet and VGG add at most 5 ms to a
rerun of the Draw page (the ViT's attention is printed beside them). The whole render helpers (ui/inside.py: the
computation, the pictures encoded as st.image sends them, the chart specs) are timed in Streamlit's bare mode,
and each CAM method for a digit and a photo (Score-CAM runs one forward pass per channel).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import streamlit
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from predict_digit import timings_ms  # noqa: E402

from ui.inside import show_cams, show_inside  # noqa: E402
from vision_core import describe_device, get_spec, load_image, load_mnist, load_model, to_input  # noqa: E402
from vision_core.cams import CAM_METHODS, compute_cam, digit_cam  # noqa: E402
from vision_core.images import PHOTO_DRAFT_SIZE  # noqa: E402
from vision_core.inside import attention_maps, digit_feature_maps, kernel_patch  # noqa: E402
from vision_core.photo import photo_cam  # noqa: E402

# The render helpers run in Streamlit's bare mode (no `streamlit run`): the same work, minus its warnings about that.
streamlit.config.set_option("global.showWarningOnDirectExecution", False)
for _name in ("streamlit.runtime.scriptrunner_utils.script_run_context", "streamlit.runtime.state.session_state_proxy"):
    logging.getLogger(_name).disabled = True
PHOTO_LAYERS = {"gradcam": "bn2", "gradcampp": "bn2", "layercam": "bn2", "scorecam": "blocks.2"}  # Score-CAM: 40 ch


def report(label: str, function: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    median, p90 = timings_ms(function, repeats, warmup)
    print(f"{label:58s} {median:10.2f} {p90:8.2f}", flush=True)
    return median


def stroke(models: dict[str, torch.nn.Module], digit: torch.Tensor, names: tuple[str, ...], vit: bool) -> None:
    """The feature maps of ``names`` and, with ``vit``, the ViT's attention: one rerun's computation."""
    for name in names:
        digit_feature_maps(models[name], digit)
    if vit:
        attention_maps(models["vit"], digit)


@torch.inference_mode()
def bare_forward(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--cam-repeats", type=int, default=20)
    parser.add_argument("--photo-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 is steadier on a busy machine")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    models = {name: load_model(name) for name in ("lenet", "vgg", "vit")}
    digit = to_input(load_mnist("test").images[:1])[0]  # (1, 28, 28): a 7
    batch = digit[None].to(next(models["lenet"].parameters()).device)
    print(f"device: {describe_device()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'per stroke (' + str(args.repeats) + ' repeats)':58s} {'median ms':>10s} {'p90 ms':>8s}")
    n = args.repeats
    for name in ("lenet", "vgg", "vit"):
        report(f"{name} forward alone, no hooks", partial(bare_forward, models[name], batch), n)
    for name in ("lenet", "vgg"):
        report(f"digit_feature_maps({name}): every conv, in and out", partial(digit_feature_maps, models[name], digit), n)  # fmt: skip
    report("attention_maps(vit): 6 layers x 4 heads + rollout", partial(attention_maps, models["vit"], digit), n)
    both = report("LeNet + VGG feature maps (what a rerun adds)", partial(stroke, models, digit, ("lenet", "vgg"), False), n)  # fmt: skip
    report("LeNet + VGG feature maps + ViT attention", partial(stroke, models, digit, ("lenet", "vgg"), True), n)
    vgg_maps = digit_feature_maps(models["vgg"], digit)
    report("kernel_patch: one clicked value of VGG's last conv", partial(kernel_patch, models["vgg"], vgg_maps, "features.17", 5, 3, 3), n)  # fmt: skip
    report("show_inside, whole (Streamlit bare mode: + pictures, charts)", partial(show_inside, models, digit), n // 5)
    report("show_cams, Grad-CAM of LeNet and the ViT, whole", partial(show_cams, models, digit), n // 5)
    print(f"target: LeNet + VGG feature maps <= 5 ms per rerun; measured {both:.2f} ms median")

    print(
        f"\n{'digit CAMs, default layer (' + str(args.cam_repeats) + ' repeats)':58s} {'median ms':>10s} {'p90 ms':>8s}"
    )
    for method in CAM_METHODS:
        for name, model in models.items():
            report(f"{CAM_METHODS[method].title} {name}", partial(digit_cam, model, digit, method), args.cam_repeats)

    lite0 = load_model("efficientnet_lite0")
    photo = load_image(ROOT / "data" / "samples" / "chelsea.png", draft_size=PHOTO_DRAFT_SIZE)
    title = f"photo CAMs, EfficientNet-Lite0 ({args.photo_repeats} repeats)"
    print(f"\n{title:58s} {'median ms':>10s} {'p90 ms':>8s}")
    for precision in ("fp32", "bf16"):
        for method, layer in PHOTO_LAYERS.items():
            run = partial(photo_cam, photo, "efficientnet_lite0", method, layer, module=lite0, precision=precision)
            report(f"{CAM_METHODS[method].title} at {layer}, {precision}", run, args.photo_repeats, warmup=1)
    model_input = get_spec("efficientnet_lite0").preprocess(photo)[None]
    for layer in ("blocks.5", "blocks.6"):  # 192 and 320 channels; the second is over the page's bound (256)
        run = partial(compute_cam, lite0, model_input, layer, "scorecam", max_channels=4096, precision="bf16")
        report(f"Score-CAM at {layer}, bf16 (once, bound lifted)", run, 1, warmup=0)


if __name__ == "__main__":
    main()
