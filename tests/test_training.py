import dataclasses
import io
import json
import math
import threading
import time
import warnings
import zipfile

import pytest
import torch
from safetensors.torch import load as load_safetensors
from torchvision.models import ResNet18_Weights, resnet18

from vision_core import RunFinished, TrainConfig, fine_tune, get_spec, load_checkpoint, load_mnist, registry
from vision_core.augment import PRESETS, PipelineSpec, Step
from vision_core.hooks import hook_count
from vision_core.models.imagenet import hub_checkpoint_path
from vision_core.registry import WeightsMissingError, list_models, load_model
from vision_core.train import main as train_cli
from vision_core.training import (
    RunNameError,
    StopRequested,
    TrainConfigError,
    build_for_training,
    check_config,
    misclassified,
    run_bundle,
    save_run,
    stop_hooks,
)

TINY = TrainConfig(
    model="lenet", train_size=600, batch_size=32, max_steps=2, val_size=200, test_size=500, device="cpu", log_every=1
)


def run(cfg: TrainConfig, model=None):
    return list(fine_tune(cfg, model))


def test_two_steps_yield_the_expected_events_and_change_the_weights():
    model = get_spec("lenet").builder()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events = run(TINY, model)
    assert [e.kind for e in events] == ["step", "step", "epoch", "epoch", "done"]
    assert [e.split for e in events[2:]] == ["train", "val", "test"]
    assert all(math.isfinite(e.loss) and 0 <= e.accuracy <= 1 for e in events)
    assert events[1].step == 2 and events[1].samples_per_s > 0 and events[1].lr > 0
    done = events[-1]
    assert isinstance(done, RunFinished) and done.n_test == 500 and done.model is model
    assert sum(map(sum, done.confusion)) == 500 and done.num_params == sum(p.numel() for p in model.parameters())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "training did not change any parameter"


def test_a_seeded_run_is_reproducible():
    first, second = run(TINY), run(TINY)
    assert [e.loss for e in first[:-1]] == [e.loss for e in second[:-1]]
    for a, b in zip(first[-1].model.state_dict().values(), second[-1].model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = run(dataclasses.replace(TINY, seed=1))
    assert [e.loss for e in other[:2]] != [e.loss for e in first[:2]]


@pytest.mark.parametrize(("model", "optimizer"), [("vgg", "sgd"), ("vit", "rmsprop"), ("lenet", "adam")])
def test_other_models_and_optimizers_train(model, optimizer):
    events = run(dataclasses.replace(TINY, model=model, optimizer=optimizer, schedule="cosine", augment=False))
    assert events[-1].kind == "done" and all(math.isfinite(e.loss) for e in events)


def test_starting_from_the_checkpoint_is_already_good_and_leaves_the_saved_model_alone():
    events = run(dataclasses.replace(TINY, init="checkpoint", lr=1e-5, max_steps=1))
    assert events[-1].accuracy > 0.98


def test_closing_the_generator_stops_the_run_without_leftover_threads():
    threads = threading.active_count()
    events = fine_tune(dataclasses.replace(TINY, max_steps=1000))
    first = next(events)
    events.close()
    assert first.kind == "step" and threading.active_count() == threads
    with pytest.raises(StopIteration):
        next(events)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lr": 0}, "lr must be positive"),
        ({"optimizer": "lbfgs"}, "unknown optimizer"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
    ],
)
def test_invalid_configs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes)


def test_cli_trains_and_saves_a_loadable_checkpoint(tmp_path, capsys):
    code = train_cli(
        [
            "lenet",
            "--max-steps",
            "3",
            "--train-size",
            "600",
            "--device",
            "cpu",
            "--name",
            "cli-run",
            "--out",
            str(tmp_path),
            "--print-every",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "step" in printed and "test accuracy" in printed
    model, card = load_checkpoint(tmp_path / "cli-run.safetensors")
    assert card.name == "cli-run" and card.recipe["max_steps"] == 3 and card.metrics["n"] == 10_000
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# --- Stop, transfer models, the lab's pipeline, saving (issue 5) ---------------------------------------------------

TRANSFER = dataclasses.replace(TINY, batch_size=4, val_size=20, test_size=20, optimizer="sgd", augment=False)


@pytest.fixture
def isolated_registry(monkeypatch):
    """Models registered by a test (saved runs) vanish after it, so other tests see the registry they expect."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_stop_ends_a_run_within_a_second_and_keeps_its_events():
    stop = threading.Event()
    events, stopped_at = [], None
    for event in fine_tune(dataclasses.replace(TINY, max_steps=100_000, train_size=60_000, epochs=50), stop=stop):
        events.append(event)
        if len(events) == 3:
            threading.Timer(0.05, stop.set).start()  # from another thread, as the app's Stop button does
            stopped_at = time.perf_counter() + 0.05
    assert events[-1].kind == "stopped" and 3 <= events[-1].step < 100_000
    assert time.perf_counter() - stopped_at < 1.0
    assert [e.kind for e in events[:-1]] == ["step"] * (len(events) - 1)


def test_stop_hooks_interrupt_forward_and_backward_and_remove_themselves():
    model, stop = get_spec("lenet").builder(), threading.Event()
    with stop_hooks(model, stop):
        loss = model(torch.rand(2, 1, 28, 28)).sum()  # not set: runs normally
        stop.set()
        with pytest.raises(StopRequested):
            loss.backward()
        with pytest.raises(StopRequested):
            model(torch.rand(2, 1, 28, 28))
    assert hook_count(model) == 0 and all(not p._backward_hooks for p in model.parameters())


@pytest.mark.parametrize(("name", "size"), [("resnet18", 32), ("alexnet", 64), ("vgg16", 32)])
def test_transfer_models_build_without_weights_and_train_two_steps(name, size):
    cfg = dataclasses.replace(TRANSFER, model=name, init="scratch", image_size=size)
    model = build_for_training(cfg)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    head_before = model.head.weight.clone()
    events = run(cfg, model)
    assert [e.kind for e in events] == ["step", "step", "epoch", "epoch", "done"]
    assert all(math.isfinite(e.loss) for e in events) and not torch.equal(model.head.weight, head_before)


def test_imagenet_init_loads_the_hub_file_and_features_mode_trains_only_the_head(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = dataclasses.replace(TRANSFER, model="resnet18", init="imagenet", mode="features", image_size=32)
    with pytest.raises(WeightsMissingError, match=r"python -m vision_core\.weights resnet18"):
        check_config(cfg)
    source = resnet18(weights=None).state_dict()
    hub_checkpoint_path(ResNet18_Weights.IMAGENET1K_V1).parent.mkdir(parents=True)
    torch.save(source, hub_checkpoint_path(ResNet18_Weights.IMAGENET1K_V1))
    model = build_for_training(cfg)
    state = model.net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items() if not k.startswith("fc."))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run(cfg, model)
    changed = {k.rsplit(".", 1)[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"net.fc"}  # batch-norm statistics included: the backbone is frozen


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": "lenet", "init": "imagenet"}, "no ImageNet weights"),
        ({"model": "lenet", "mode": "features"}, "feature extraction"),
        ({"model": "resnet18", "init": "checkpoint"}, "no trained digit checkpoint"),
        ({"model": "alexnet", "image_size": 32}, "at least 64 px"),
        ({"model": "resnet50"}, "not a digit model"),
        ({"augment": PRESETS["ImageNet-style photo training"]}, "cannot train the digit models"),
    ],
)
def test_runs_that_cannot_work_are_refused_before_they_start(changes, message):
    with pytest.raises(TrainConfigError, match=message):
        check_config(dataclasses.replace(TINY, **changes))


def test_the_augmentation_labs_pipeline_trains():
    pipeline = PipelineSpec(
        (Step("DigitWarp", {"degrees": 20.0}), Step("GaussianBlur", {"kernel_size": 3, "sigma": (0.1, 0.8)}, p=0.5))
    )
    events = run(dataclasses.replace(TINY, augment=pipeline))
    assert events[-1].kind == "done" and all(math.isfinite(e.loss) for e in events)
    assert [e.loss for e in events[:2]] != [e.loss for e in run(TINY)[:2]]


def test_a_saved_run_is_registered_loads_and_predicts_and_its_bundle_is_complete(tmp_path, isolated_registry):
    events = run(TINY)
    finished = events[-1]
    spec = save_run(TINY, finished, "tiny-run", events, directory=tmp_path)
    assert "tiny-run" in list_models(task="digits") and spec.checkpoint == tmp_path / "tiny-run.safetensors"
    loaded = load_model("tiny-run", device="cpu")
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), finished.model.eval()(x))
    assert json.loads((tmp_path / "tiny-run.history.json").read_text())[1]["split"] == "val"
    with pytest.raises(RunNameError, match="taken"):
        save_run(TINY, finished, "tiny-run", directory=tmp_path)
    with pytest.raises(RunNameError, match="letters"):
        save_run(TINY, finished, "../escape", directory=tmp_path)

    archive = zipfile.ZipFile(io.BytesIO(run_bundle(TINY, finished, "tiny-run", events)))
    files = {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}
    assert set(files) == {
        "tiny-run.safetensors",
        "tiny-run.json",
        "config.json",
        "augmentation.py",
        "augmentation.json",
        "metrics.json",
    }
    assert set(load_safetensors(files["tiny-run.safetensors"])) == set(finished.model.state_dict())
    assert json.loads(files["config.json"])["train_size"] == 600 and b"DigitWarp" in files["augmentation.py"]
    metrics = json.loads(files["metrics.json"])
    assert (
        metrics["accuracy"] == finished.accuracy
        and len(metrics["history"]) == 2
        and metrics["confusion"] == finished.confusion
    )


def test_saved_runs_are_registered_at_start_and_a_broken_card_is_skipped(tmp_path, isolated_registry):
    events = run(TINY)
    save_run(TINY, events[-1], "good-run", events, directory=tmp_path)
    save_run(TINY, events[-1], "bad-run", events, directory=tmp_path)
    (tmp_path / "bad-run.json").write_text("{not json")
    registry._REGISTRY.pop("good-run"), registry._REGISTRY.pop("bad-run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        added = registry.register_saved_runs(tmp_path)
    assert added == ["good-run"] and "bad-run" not in list_models()
    assert any("bad-run" in str(w.message) for w in caught)


def test_misclassified_lists_the_most_confident_mistakes():
    finished = run(TINY)[-1]
    labels = load_mnist("test").labels
    mistakes = misclassified(finished, labels, limit=5)
    assert len(mistakes) == 5 and all(m.label != m.predicted for m in mistakes)
    assert [m.confidence for m in mistakes] == sorted((m.confidence for m in mistakes), reverse=True)
    assert all(int(finished.predicted[m.index]) == m.predicted and int(labels[m.index]) == m.label for m in mistakes)
