"""Contract tests over every shipped model (digits and CIFAR-10), and the shipped checkpoints' targets."""

import subprocess
import sys

import pytest
import torch

from vision_core import evaluate, get_spec, list_models, load_model, predict_digit, registry
from vision_core.checkpoints import count_parameters, read_card
from vision_core.datasets import dataset_for_task
from vision_core.registry import ModelSpec, WeightsMissingError, build_model, register

DIGIT_MODELS = list_models(task="digits")
SHIPPED = list_models(source="shipped")
# Full test-set accuracy each shipped model must reach (the course's MNIST figures: 99.05%, 99.11%, 97.44%; CIFAR-10:
# the shipped 2,000-image test subset, after training on the 10,000-image subset).
TARGETS = {"lenet": 0.990, "vgg": 0.995, "vit": 0.985, "mish_cnn": 0.55, "deep_mish_cnn": 0.72}


def test_the_shipped_models_are_registered():
    assert DIGIT_MODELS[:3] == ["lenet", "vgg", "vit"] and SHIPPED == [
        "lenet",
        "vgg",
        "vit",
        "mish_cnn",
        "deep_mish_cnn",
    ]
    assert list_models(task="cifar10", source="shipped") == ["mish_cnn", "deep_mish_cnn"]


@pytest.mark.parametrize("name", SHIPPED)
def test_fresh_build_has_the_right_output(name):
    spec = get_spec(name)
    model = build_model(spec.architecture).eval()
    x = torch.rand(4, *spec.input_size)
    logits = model(x)
    assert logits.shape == (4, len(spec.labels)) and torch.isfinite(logits).all()
    torch.testing.assert_close(torch.softmax(logits, 1).sum(1), torch.ones(4))


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_loads_without_pickle_and_matches_its_card(name, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be used"))
    model = load_model(name, device="cpu")
    card = read_card(get_spec(name).checkpoint)
    assert not model.training and card.architecture == get_spec(name).architecture
    assert card.num_params == count_parameters(model)
    assert card.seed is not None and card.recipe["model"] == card.architecture and card.train_seconds > 0
    dataset = dataset_for_task(get_spec(name).task).name
    fresh = evaluate(model, dataset=dataset)  # the full test set: a few seconds per model on a CPU
    assert fresh["n"] == card.metrics["n"] == {"mnist": 10_000, "cifar10": 2_000}[dataset] and card.dataset == dataset
    for metric in ("accuracy", "f1_macro", "loss"):
        assert fresh[metric] == pytest.approx(card.metrics[metric], abs=2e-4), metric


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reaches_its_target(name):
    card = read_card(get_spec(name).checkpoint)
    assert card.metrics["accuracy"] >= TARGETS[name]
    dataset = dataset_for_task(get_spec(name).task).name
    assert evaluate(load_model(name, device="cpu"), limit=2_000, dataset=dataset)["accuracy"] >= TARGETS[name] - 0.003


def test_checkpoints_are_small(root):
    total = sum(p.stat().st_size for p in (root / "checkpoints").glob("*.safetensors"))
    assert total < 5 * 1024 * 1024


@pytest.mark.parametrize("name", DIGIT_MODELS)
def test_probabilities_sum_to_one(name):
    canvas = torch.zeros(280, 280, 4, dtype=torch.uint8)
    canvas[40:240, 130:150] = 255
    prediction = predict_digit(canvas.numpy(), load_model(name, device="cpu"))
    assert len(prediction.probs) == 10 and sum(prediction.probs) == pytest.approx(1.0, abs=1e-5)
    assert prediction.label == max(range(10), key=prediction.probs.__getitem__)
    assert prediction.model_input.shape == (1, 28, 28) and prediction.seconds > 0


def test_registry_refuses_duplicates_and_explains_unknown_names():
    with pytest.raises(ValueError, match="already registered"):
        register(get_spec("lenet"))
    with pytest.raises(KeyError, match="known: "):
        get_spec("lenet-9000")


def test_missing_weights_say_how_to_rebuild(tmp_path, monkeypatch):
    spec = get_spec("lenet")
    ghost = ModelSpec(
        **{**spec.__dict__, "name": "ghost-lenet", "weights_file": lambda: tmp_path / "ghost.safetensors"}
    )
    monkeypatch.setitem(registry._REGISTRY, ghost.name, ghost)  # registered for this test only
    with pytest.raises(WeightsMissingError, match=r"python -m vision_core train lenet"):
        load_model("ghost-lenet")


def test_core_never_imports_streamlit():
    code = "import sys, vision_core, vision_core.__main__, vision_core.jobs; assert 'streamlit' not in sys.modules, 'streamlit imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
