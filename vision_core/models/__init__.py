"""Model families, one file each. Importing this package registers every family and its shipped checkpoints, in the
order pages list them: the digit models, the course's CIFAR-10 CNNs, the transfer backbones, the photo models.

To add a family: a new file here declaring its config, module, bounds and registrations (see ``mish.py``), a line
below, and its checkpoint in ``checkpoints/`` (``python -m vision_core train NAME``).
"""

from vision_core.models import imagenet, lenet, mish, transfer, vgg, vit

__all__ = ["imagenet", "lenet", "mish", "transfer", "vgg", "vit"]
