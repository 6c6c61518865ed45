"""vision_core: the models, datasets, preprocessing, training and analysis behind the vision explorer app.

It never imports Streamlit: everything here works from a notebook, a test or the command line
(``python -m vision_core``). Importing it registers every model family and shipped checkpoint
(``vision_core.models``); runs saved from the app join with ``register_saved_runs()``.

>>> from vision_core import list_models, load_model, predict_digit
>>> list_models(task="digits")
['lenet', 'vgg', 'vit']
"""

from vision_core import models  # noqa: F401  (registers the model families and the shipped checkpoints)
from vision_core.augment import (
    AugmentError,
    PipelineSpec,
    Step,
    build_pipeline,
    intermediates,
    pipeline_to_code,
    preview,
    robustness_curve,
    spec_from_json,
    spec_to_json,
)
from vision_core.checkpoints import CheckpointError, ModelCard, load_checkpoint, save_checkpoint
from vision_core.data import DatasetMissingError, balanced_subset, load_cifar10, load_mnist
from vision_core.datasets import get_dataset, list_datasets
from vision_core.device import describe_device, resolve_device
from vision_core.evaluation import evaluate
from vision_core.images import ImageError, load_image
from vision_core.photo import Detection, Prediction, classify, detect, feature_maps, grad_cam
from vision_core.predict import DigitPrediction, DigitReport, predict_digit, predict_digits, predict_prepared
from vision_core.registry import (
    Family,
    ModelSpec,
    WeightsMissingError,
    get_family,
    get_spec,
    list_families,
    list_models,
    load_model,
    register,
)
from vision_core.runs import register_saved_runs
from vision_core.training import RunFinished, TrainConfig, TrainEvent, fine_tune
from vision_core.transforms import (
    DigitAugment,
    DigitSteps,
    EmptyDrawingError,
    digit_steps,
    preprocess_digit,
    to_image,
    to_input,
)

__all__ = [
    "AugmentError",
    "CheckpointError",
    "DatasetMissingError",
    "Detection",
    "DigitAugment",
    "DigitPrediction",
    "DigitReport",
    "DigitSteps",
    "EmptyDrawingError",
    "Family",
    "ImageError",
    "ModelCard",
    "ModelSpec",
    "PipelineSpec",
    "Prediction",
    "RunFinished",
    "Step",
    "TrainConfig",
    "TrainEvent",
    "WeightsMissingError",
    "balanced_subset",
    "build_pipeline",
    "classify",
    "describe_device",
    "detect",
    "digit_steps",
    "evaluate",
    "feature_maps",
    "fine_tune",
    "get_dataset",
    "get_family",
    "get_spec",
    "grad_cam",
    "intermediates",
    "list_datasets",
    "list_families",
    "list_models",
    "load_checkpoint",
    "load_cifar10",
    "load_image",
    "load_mnist",
    "load_model",
    "pipeline_to_code",
    "predict_digit",
    "predict_digits",
    "predict_prepared",
    "preprocess_digit",
    "preview",
    "register",
    "register_saved_runs",
    "resolve_device",
    "robustness_curve",
    "save_checkpoint",
    "spec_from_json",
    "spec_to_json",
    "to_image",
    "to_input",
]  # fmt: skip
