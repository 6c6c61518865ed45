import dataclasses
import math
import threading

import pytest
import torch

from vision_core import RunFinished, TrainConfig, fine_tune, get_spec, load_checkpoint
from vision_core.train import main as train_cli

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
