"""Fetch the full datasets for users who are online (the app ships MNIST whole and a CIFAR-10 subset).

python -m vision_core data cifar10    # the full CIFAR-10 (163 MB) into data/cifar10/full, torchvision's way
python -m vision_core data --list     # what is here
"""

from __future__ import annotations

import argparse
import sys

from vision_core.data import CIFAR10_FULL, cifar10_full_present
from vision_core.datasets import get_dataset, list_datasets, train_count


def main(argv: list[str] | None = None) -> int:
    fetchable = [name for name in list_datasets() if get_dataset(name).fetch is not None]
    parser = argparse.ArgumentParser(
        prog="python -m vision_core data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("datasets", nargs="*", help=f"any of {', '.join(fetchable)} (default: all)")
    parser.add_argument("--list", action="store_true", help="show what is here, fetch nothing")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.datasets) - set(fetchable)):
        parser.error(f"nothing to fetch for {', '.join(unknown)}; choose from {', '.join(fetchable)}")
    if args.list:
        for name in list_datasets():
            spec = get_dataset(name)
            here = f"{train_count(name):,} training images" if spec.load is not None else "made on the My classes page"
            print(f"{name:12s} {here:32s} {spec.folder}")
        return 0
    for name in args.datasets or fetchable:
        if name == "cifar10" and cifar10_full_present():
            print(f"cifar10: already in {CIFAR10_FULL}")
            continue
        print(f"{name}: downloading (torchvision checks every file's md5)...", flush=True)
        try:
            path = get_dataset(name).fetch()
        except (OSError, RuntimeError) as error:  # offline: URLError is an OSError
            print(f"{name}: FAILED: {error}. Check the connection (or proxy) and run again.", file=sys.stderr)
            return 1
        print(f"{name}: {train_count(name):,} training images in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
