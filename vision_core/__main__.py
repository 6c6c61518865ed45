"""``python -m vision_core <command>``: train a model, fetch pretrained weights, fetch the full datasets.

python -m vision_core train lenet                    # rebuild a shipped checkpoint with its recipe (seeded)
python -m vision_core train mish_cnn --epochs 5 --name mish-short --out checkpoints/runs
python -m vision_core weights --list                 # what pretrained weights are here, what is missing
python -m vision_core data cifar10                   # the full CIFAR-10 (163 MB), for users who are online
"""

from __future__ import annotations

import sys

from vision_core.cli import data, train, weights

COMMANDS = {"train": train.main, "weights": weights.main, "data": data.main}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
