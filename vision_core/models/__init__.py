"""Model families, one file each. Importing this package registers every family and its shipped checkpoints, in the
order pages list them: the digit models, the course's CIFAR-10 CNNs, the transfer backbones, the photo models.

To add a family: a new file here declaring its config, module, bounds and registrations (see ``mish.py``), its name
in ``FAMILY_MODULES``, and its checkpoint in ``checkpoints/`` (``python -m vision_core train NAME``).
"""

import importlib

FAMILY_MODULES = ("lenet", "vgg", "vit", "mish", "transfer", "imagenet")

for _module in FAMILY_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
