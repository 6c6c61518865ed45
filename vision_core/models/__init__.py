"""Model families, one file each. Importing this package registers every family and its shipped checkpoints: first
those of ``PAGE_ORDER``, in the order pages list them (the digit models, the course's CIFAR-10 CNNs, the transfer
backbones, the photo models), then any other file here, by name.

To add a family: a new file here declaring its config, module, bounds and registrations (see ``mish.py``), and its
checkpoint in ``checkpoints/`` (``python -m vision_core train NAME``). Nothing else to edit.
"""

import importlib
import pkgutil

PAGE_ORDER = ("lenet", "vgg", "vit", "mish", "transfer", "imagenet")
SHARED = ("layers",)  # building blocks, not families

FAMILY_MODULES = PAGE_ORDER + tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in PAGE_ORDER + SHARED)
)

for _module in FAMILY_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
