"""The command lines: ``python -m vision_core train | weights | data``."""
