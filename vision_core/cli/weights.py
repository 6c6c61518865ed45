"""Pre-fetch pretrained weights into the torch hub cache, for classrooms without internet (``make weights``).

    python -m vision_core weights                # every registered model with torchvision weights
    python -m vision_core weights resnet50       # just these
    python -m vision_core weights --list         # what is here and what is missing

Files go where torchvision looks for them: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub``).
Fetch once on a connected machine, then copy that folder to the classroom machines or point
``TORCH_HOME`` at a shared copy.
"""

from __future__ import annotations

import argparse
import sys

from vision_core.models.imagenet import WeightsDownloadError, fetch_weights
from vision_core.registry import get_spec, list_models, weights_available, weights_path


def downloadable() -> list[str]:
    return [name for name in list_models() if get_spec(name).weights is not None]


def _progress(name: str):
    shown = {"step": -1}

    def report(done: int, total: int | None) -> None:
        step = int(10 * done / total) if total else done >> 24  # every 10 %, or every 16 MB when the size is unknown
        if step != shown["step"]:
            shown["step"] = step
            size = f" of {total / 1e6:.0f}" if total else ""
            print(f"  {name}: {done / 1e6:.0f}{size} MB", file=sys.stderr, flush=True)

    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vision_core weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="*", help=f"any of {', '.join(downloadable())} (default: all)")
    parser.add_argument("--list", action="store_true", help="show where each model's weights are, fetch nothing")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(downloadable()))
    if unknown:
        parser.error(f"no downloadable model named {', '.join(unknown)}; choose from {', '.join(downloadable())}")
    names = args.models or downloadable()
    if args.list:
        for name in list_models():
            state = "present" if weights_available(name) else "missing"
            print(f"{name:36s} {state:8s} {weights_path(name)}")
        return 0
    wanted = [name for name in names if not weights_available(name)]
    total = sum(get_spec(name).weights.meta["_file_size"] for name in wanted)
    print(f"{len(wanted)} of {len(names)} weight files to fetch ({total:.0f} MB) into {weights_path(names[0]).parent}")
    failed = []
    for name in names:
        if weights_available(name):
            print(f"{name}: already in {weights_path(name)}")
            continue
        size = get_spec(name).weights.meta["_file_size"]
        print(f"{name}: downloading {size:.0f} MB to {weights_path(name)}", flush=True)
        try:
            fetch_weights(name, progress=_progress(name))
        except WeightsDownloadError as error:
            print(f"{name}: FAILED: {error}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"Could not fetch: {', '.join(failed)}. Check the connection (or proxy) and run again.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
