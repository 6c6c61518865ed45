import dataclasses
import math
import threading
import time

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18

from vision_core import RunFinished, TrainConfig, fine_tune, load_checkpoint, load_mnist
from vision_core.augment import PRESETS, PipelineSpec, Step
from vision_core.cli.train import main as train_cli
from vision_core.hooks import hook_count
from vision_core.models.imagenet import hub_checkpoint_path
from vision_core.registry import WeightsMissingError, build_model
from vision_core.training import (
    StopRequested,
    TrainConfigError,
    allowed_inits,
    build_for_training,
    check_config,
    default_config,
    misclassified,
    near_chance,
    stop_hooks,
)

TINY = TrainConfig(
    model="lenet", train_size=600, batch_size=32, max_steps=2, val_size=200, test_size=500, device="cpu", log_every=1
)


def run(cfg: TrainConfig, model=None):
    return list(fine_tune(cfg, model))


def test_two_steps_yield_the_expected_events_and_change_the_weights():
    model = build_model("lenet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events = run(TINY, model)
    assert [e.kind for e in events] == ["step", "step", "epoch", "epoch", "done"]
    assert [e.split for e in events[2:]] == ["train", "val", "test"]
    assert all(math.isfinite(e.loss) and 0 <= e.accuracy <= 1 for e in events)
    assert events[1].step == 2 and events[1].samples_per_s > 0 and events[1].lr > 0
    done = events[-1]
    assert isinstance(done, RunFinished) and done.n_test == 500 and len(done.predicted) == 500
    assert sum(map(sum, done.confusion)) == 500 and done.num_params == sum(p.numel() for p in model.parameters())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "training did not change any parameter"


def test_a_seeded_run_is_reproducible_whoever_builds_the_model():
    first, built_outside = run(TINY), build_for_training(TINY)
    second = run(TINY, built_outside)  # what a worker process does: build, then train
    assert [e.loss for e in first[:-1]] == [e.loss for e in second[:-1]] and first[-1].predicted == second[-1].predicted
    assert torch.equal(build_for_training(TINY).features[0].weight, build_for_training(TINY).features[0].weight)
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
    options = ["--max-steps", "3", "--train-size", "600", "--device", "cpu", "--print-every", "1"]
    code = train_cli(["lenet", *options, "--name", "cli-run", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "step" in printed and "test accuracy" in printed
    model, card = load_checkpoint(tmp_path / "cli-run.safetensors")
    assert card.name == "cli-run" and card.recipe["max_steps"] == 3 and card.metrics["n"] == 10_000
    assert card.dataset == "mnist" and card.recipe["epochs"] == 12  # the family's recipe, with the options on top
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# --- Stop, transfer models, the lab's pipeline, saving (issue 5) ---------------------------------------------------

TRANSFER = dataclasses.replace(TINY, batch_size=4, val_size=20, test_size=20, optimizer="sgd", augment=False)


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
    model, stop = build_model("lenet"), threading.Event()
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
    with pytest.raises(WeightsMissingError, match=r"python -m vision_core weights resnet18"):
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
        ({"model": "lenet", "init": "imagenet"}, "can start from scratch or from its trained checkpoint"),
        ({"model": "lenet", "mode": "features"}, "feature extraction"),
        ({"model": "resnet18", "init": "checkpoint"}, "can start from ImageNet weights or from scratch"),
        ({"model": "alexnet", "image_size": 32}, "at least 64 px"),
        ({"model": "resnet50"}, "is a photo model"),
        ({"augment": PRESETS["ImageNet-style photo training"]}, "cannot train on MNIST digits"),
        ({"dataset": "cifar10"}, "LeNet-style CNN trains on MNIST digits, not CIFAR-10"),
        ({"model": "mish_cnn"}, "trains on CIFAR-10, not MNIST digits"),
        ({"dataset": "my-classes", "model": "effnet_lite0"}, "needs a class set"),
        ({"train_size": 605}, "multiple of 10"),
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


def test_misclassified_lists_the_most_confident_mistakes():
    finished = run(TINY)[-1]
    labels = load_mnist("test").labels
    mistakes = misclassified(finished, labels, limit=5)
    assert len(mistakes) == 5 and all(m.label != m.predicted for m in mistakes)
    assert [m.confidence for m in mistakes] == sorted((m.confidence for m in mistakes), reverse=True)
    assert all(finished.predicted[m.index] == m.predicted and int(labels[m.index]) == m.label for m in mistakes)


def test_the_course_cnns_train_on_the_shipped_cifar10_subset():
    for model in ("mish_cnn", "deep_mish_cnn"):
        cfg = dataclasses.replace(TINY, model=model, dataset="cifar10", train_size=200, max_steps=3, val_size=50, test_size=100)  # fmt: skip
        events = run(cfg)
        assert events[-1].kind == "done" and events[-1].classes[:3] == ("airplane", "automobile", "bird")
        assert events[-1].n_test == 100 and all(math.isfinite(e.loss) for e in events)


def test_efficientnet_lite0_transfers_to_cifar10_offline_frozen_and_full(monkeypatch):
    """Its ImageNet weights ship in a package: no network. A frozen backbone trains its head on cached features."""
    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download may happen"))
    base = dataclasses.replace(
        default_config("effnet_lite0", "cpu", "cifar10"), train_size=100, val_size=50, test_size=100, epochs=1
    )
    assert base.init == "imagenet" and base.mode == "features" and base.augment is False
    frozen_model = build_for_training(base)
    backbone_before = frozen_model.net.conv_stem.weight.clone()
    frozen = run(base, frozen_model)
    assert frozen[-1].kind == "done" and torch.equal(frozen_model.net.conv_stem.weight, backbone_before)
    full = dataclasses.replace(base, mode="full", augment=True, max_steps=2, batch_size=8)
    full_model = build_for_training(full)
    assert run(full, full_model)[-1].kind == "done"
    assert not torch.equal(full_model.net.conv_stem.weight, backbone_before)


def test_defaults_and_starting_points_come_from_the_core():
    from vision_core import get_spec

    assert allowed_inits(get_spec("lenet")) == ["scratch", "checkpoint"]
    assert allowed_inits(get_spec("effnet_lite0")) == ["imagenet", "scratch"]
    cpu = default_config("vgg16", "cpu", "mnist")
    assert (cpu.train_size, cpu.batch_size, cpu.image_size, cpu.test_size) == (600, 32, 64, 1_000)
    assert (
        default_config("lenet", "cpu").train_size == 18_000 and default_config("mish_cnn", "cpu").dataset == "cifar10"
    )


def test_a_run_that_learnt_nothing_is_flagged():
    dead = run(dataclasses.replace(TINY, lr=1e-9, max_steps=1))[-1]
    assert near_chance(dead) and not near_chance(
        run(dataclasses.replace(TINY, init="checkpoint", lr=1e-5, max_steps=1))[-1]
    )
