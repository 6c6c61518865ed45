"""vision_core: the models, preprocessing, training and analysis behind the vision explorer app.

It never imports Streamlit: everything here works from a notebook, a test or the CLI.

>>> from vision_core import list_models, load_model, predict_digit
>>> list_models(task="digits")
['lenet', 'vgg', 'vit']
"""

from vision_core.checkpoints import CheckpointError, ModelCard, load_checkpoint, save_checkpoint
from vision_core.data import DatasetMissingError, balanced_subset, load_mnist
from vision_core.device import describe_device, resolve_device
from vision_core.evaluation import evaluate
from vision_core.images import ImageError, load_image
from vision_core.predict import DigitPrediction, DigitReport, predict_digit, predict_digits, predict_prepared
from vision_core.registry import ModelSpec, WeightsMissingError, get_spec, list_models, load_model, register
from vision_core.training import RunFinished, TrainConfig, TrainEvent, fine_tune
from vision_core.transforms import (
    DigitAugment,
    DigitSteps,
    EmptyDrawingError,
    digit_steps,
    mnist_to_input,
    preprocess_digit,
    to_image,
)

__all__ = [
    "CheckpointError",
    "DatasetMissingError",
    "DigitAugment",
    "DigitPrediction",
    "DigitReport",
    "DigitSteps",
    "EmptyDrawingError",
    "ImageError",
    "ModelCard",
    "ModelSpec",
    "RunFinished",
    "TrainConfig",
    "TrainEvent",
    "WeightsMissingError",
    "balanced_subset",
    "describe_device",
    "digit_steps",
    "evaluate",
    "fine_tune",
    "get_spec",
    "list_models",
    "load_checkpoint",
    "load_image",
    "load_mnist",
    "load_model",
    "mnist_to_input",
    "predict_digit",
    "predict_digits",
    "predict_prepared",
    "preprocess_digit",
    "register",
    "resolve_device",
    "save_checkpoint",
    "to_image",
]  # fmt: skip
