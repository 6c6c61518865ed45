import json

import pytest
import torch

from vision_core.checkpoints import CheckpointError, ModelCard, count_parameters, load_checkpoint, save_checkpoint
from vision_core.models.mnist import LeNetConfig, build_digit_model


def small_card(model, name="tiny", **changes):
    values = dict(
        name=name,
        title="Tiny LeNet",
        architecture="lenet",
        config={"channels": [4, 8], "hidden": [32, 16], "num_classes": 10},
        num_params=count_parameters(model),
    )
    values.update(changes)
    return ModelCard(**values)


@pytest.fixture
def tiny():
    return build_digit_model("lenet", LeNetConfig(channels=(4, 8), hidden=(32, 16)))


def test_round_trip_restores_weights_and_card(tmp_path, tiny):
    path = save_checkpoint(tiny, small_card(tiny), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.safetensors"]
    loaded, card = load_checkpoint(path)
    assert card.architecture == "lenet" and card.config["channels"] == [4, 8] and not loaded.training
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), tiny.eval()(x))


def test_loading_never_unpickles(tmp_path, tiny, monkeypatch):
    path = save_checkpoint(tiny, small_card(tiny), tmp_path)
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle stream
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be used"))
    load_checkpoint(path)


def test_card_that_does_not_match_the_weights_is_refused(tmp_path, tiny):
    path = save_checkpoint(tiny, small_card(tiny), tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    card["config"]["channels"] = [6, 16]
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (
            '{"name": "x", "title": "x", "architecture": "resnet9000", "config": {}, "num_params": 1}',
            "unknown architecture",
        ),
        ('{"name": "x", "architecture": "lenet"}', "lacks"),
    ],
)
def test_malformed_cards_give_clear_errors(tmp_path, tiny, text, message):
    path = save_checkpoint(tiny, small_card(tiny), tmp_path)
    path.with_suffix(".json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_corrupt_or_missing_weights_give_clear_errors(tmp_path, tiny):
    path = save_checkpoint(tiny, small_card(tiny), tmp_path)
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)
    path.unlink()
    with pytest.raises(CheckpointError, match="no weights file"):
        load_checkpoint(path)


def test_failed_save_leaves_no_partial_files(tmp_path, tiny, monkeypatch):
    import vision_core.checkpoints as checkpoints

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tiny, small_card(tiny), tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- importing a run bundle (Compare page) -----------------------------------------------------------------------


def shipped_lenet_bundle(name: str = "imported-lenet") -> bytes:
    """``training.run_bundle`` of a "finished run" that carries the shipped LeNet: the real download format."""
    from vision_core import load_model
    from vision_core.checkpoints import read_card
    from vision_core.registry import get_spec
    from vision_core.training import RunFinished, TrainConfig, TrainEvent, run_bundle

    model, card = load_model("lenet", device="cpu"), read_card(get_spec("lenet").checkpoint)
    common = dict(step=10, epoch=1, lr=1e-3, samples_per_s=100.0, elapsed=2.0, total_steps=10)
    epoch = TrainEvent(kind="epoch", split="val", loss=0.1, accuracy=0.97, **common)
    finished = RunFinished(
        kind="done", split="test", loss=card.metrics["loss"], accuracy=card.metrics["accuracy"], **common,
        f1_macro=card.metrics["f1_macro"], n_test=card.metrics["n"], train_seconds=1.0, confusion=[[0] * 10] * 10,
        num_params=count_parameters(model), device="cpu", model=model, predicted=torch.zeros(1), confidence=torch.zeros(1),
    )  # fmt: skip
    return run_bundle(TrainConfig(model="lenet"), finished, name, [epoch])


@pytest.fixture
def registry_copy(monkeypatch):
    from vision_core import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_an_imported_bundle_is_validated_saved_registered_and_predicts(tmp_path, registry_copy, monkeypatch):
    import pickle

    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be used"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("nothing may be unpickled"))
    spec = registry_copy.import_run(shipped_lenet_bundle(), tmp_path)
    assert spec.name == "imported-lenet" and spec.task == "digits" and "imported-lenet" in registry_copy.list_models()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "imported-lenet.history.json",
        "imported-lenet.json",
        "imported-lenet.safetensors",
    ]
    assert json.loads((tmp_path / "imported-lenet.history.json").read_text())[0]["split"] == "val"
    imported, shipped = registry_copy.load_model("imported-lenet", "cpu"), registry_copy.load_model("lenet", "cpu")
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(imported(x), shipped(x))


def test_name_clashes_are_refused_and_a_new_name_can_be_given(tmp_path, registry_copy):
    from vision_core.checkpoints import import_checkpoint

    data = shipped_lenet_bundle("lenet")
    with pytest.raises(CheckpointError, match="already exists"):
        registry_copy.import_run(data, tmp_path)
    with pytest.raises(CheckpointError, match="already exists"):
        registry_copy.import_run(shipped_lenet_bundle("LeNet"), tmp_path)  # case-insensitive: no look-alikes
    with pytest.raises(CheckpointError, match="letters, digits"):
        registry_copy.import_run(data, tmp_path, name="../escape")
    assert list(tmp_path.iterdir()) == []
    assert registry_copy.import_run(data, tmp_path, name="my-lenet").name == "my-lenet"
    (tmp_path / "orphan.safetensors").write_bytes(b"someone else's")
    with pytest.raises(CheckpointError, match="taken"):
        import_checkpoint(data, tmp_path, name="orphan")
    assert (tmp_path / "orphan.safetensors").read_bytes() == b"someone else's" and not (
        tmp_path / "orphan.json"
    ).exists()


@pytest.mark.parametrize("errno", [28, 30], ids=["disk-full", "read-only"])
def test_a_failed_write_leaves_nothing_behind(tmp_path, registry_copy, monkeypatch, errno):
    import os

    from vision_core import checkpoints

    real_fdopen, calls = os.fdopen, []

    def failing_fdopen(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 3:  # the weights, after the card and the history were written
            os.close(fd)
            raise OSError(errno, os.strerror(errno))
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(checkpoints.os, "fdopen", failing_fdopen)
    with pytest.raises(CheckpointError, match="cannot save"):
        registry_copy.import_run(shipped_lenet_bundle(), tmp_path)
    assert list(tmp_path.iterdir()) == [] and "imported-lenet" not in registry_copy.list_models()


def test_two_simultaneous_imports_of_one_name_give_one_model(tmp_path, registry_copy):
    import threading

    data, outcomes = shipped_lenet_bundle("race"), []
    barrier = threading.Barrier(4)

    def attempt():
        barrier.wait()
        try:
            outcomes.append(registry_copy.import_run(data, tmp_path).name)
        except CheckpointError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("race") == 1 and all("taken" in o or "exists" in o for o in outcomes if o != "race")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.history.json", "race.json", "race.safetensors"]
    registry_copy.load_model("race", "cpu")
