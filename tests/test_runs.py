"""Saved runs: saving under a claimed name (races, quotas, full disks), deleting, registering, bundles and imports."""

import dataclasses
import json
import os
import threading
import warnings
from types import SimpleNamespace

import pytest
import torch
from runs_helpers import bundle_of, finished, shipped_run, weights_of

from vision_core import registry, runs
from vision_core.checkpoints import CheckpointError, count_parameters
from vision_core.datasets import MY_CLASSES, get_dataset
from vision_core.policy import SaveQuota
from vision_core.registry import build_model, get_family, list_families, list_models, load_model
from vision_core.runs import (
    MAX_BUNDLE_BYTES,
    MAX_PARAMS,
    RunNameError,
    RunSaveError,
    TrainedWeights,
    delete_run,
    import_run,
    owner_of,
    read_bundle,
    register_saved_runs,
    save_run,
)
from vision_core.training import TrainConfig


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Runs saved here leave the registry as they found it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def files_in(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_a_saved_run_is_registered_loads_predicts_and_names_its_data(tmp_path):
    cfg, result, weights, model = shipped_run("lenet")
    spec = save_run(cfg, result, weights, "my-lenet", owner="alice", directory=tmp_path)
    assert spec.name == "my-lenet" and spec.task == "digits" and spec.source == "run" and "my-lenet" in list_models()
    assert files_in(tmp_path) == ["my-lenet.history.json", "my-lenet.json", "my-lenet.owner", "my-lenet.safetensors"]
    card = json.loads((tmp_path / "my-lenet.json").read_text())
    assert card["dataset"] == "mnist" and card["title"] == "LeNet-style CNN: my-lenet" and card["card_version"] == 2
    assert owner_of("my-lenet", tmp_path) == "alice"
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(load_model("my-lenet", "cpu")(x), model(x))


def test_two_concurrent_saves_of_one_name_leave_one_correct_run_in_40_trials(tmp_path):
    """Two sessions press Save with the same name at the same moment: one wins with its own weights, the other is told."""
    cfg, result, _, _ = shipped_run("lenet")
    for trial in range(40):
        weights = [weights_of(build_model("lenet"), "lenet") for _ in range(2)]  # two different models
        barrier, outcomes = threading.Barrier(2), [None, None]

        def save(i, name, weights=weights, barrier=barrier, outcomes=outcomes):
            barrier.wait()
            try:
                outcomes[i] = save_run(cfg, result, weights[i], name, directory=tmp_path)
            except RunNameError as error:
                outcomes[i] = error

        threads = [threading.Thread(target=save, args=(i, f"race{trial}")) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, Exception)]
        assert len(winners) == 1, outcomes
        loser = outcomes[1 - winners[0]]
        assert isinstance(loser, RunNameError) and "taken" in str(loser)
        saved = load_model(f"race{trial}", "cpu").state_dict()  # what the registered name loads
        for key, tensor in weights[winners[0]].state.items():
            assert torch.equal(saved[key], tensor), f"trial {trial}: {key} holds the other run's weights"
    assert len([p for p in tmp_path.glob("race*.safetensors")]) == 40 and not list(tmp_path.glob("*.tmp"))


def test_quotas_refuse_clearly_and_write_nothing(tmp_path, monkeypatch):
    cfg, result, weights, _ = shipped_run("lenet")
    quota = SaveQuota(max_runs_per_owner=2, max_total_mb=2_000, min_free_disk_mb=0)
    for name in ("a1", "a2"):
        save_run(cfg, result, weights, name, owner="alice", quota=quota, directory=tmp_path)
    with pytest.raises(RunSaveError, match=r"you have saved 2 runs, the most this class allows \(2\)"):
        save_run(cfg, result, weights, "a3", owner="alice", quota=quota, directory=tmp_path)
    save_run(cfg, result, weights, "b1", owner="bob", quota=quota, directory=tmp_path)  # per owner: bob may
    with pytest.raises(RunSaveError, match="this class's limit"):
        save_run(cfg, result, weights, "b2", owner="bob", quota=SaveQuota(10, 0, 0), directory=tmp_path)
    monkeypatch.setattr("vision_core.runs.shutil.disk_usage", lambda path: SimpleNamespace(free=10 * 2**20))
    with pytest.raises(RunSaveError, match="the disk has 10 MB free"):
        save_run(cfg, result, weights, "b3", owner="bob", quota=SaveQuota(10, 2_000, 100), directory=tmp_path)
    assert files_in(tmp_path) == sorted(f"{n}{s}" for n in ("a1", "a2", "b1") for s in (".history.json", ".json", ".owner", ".safetensors"))  # fmt: skip
    assert "a3" not in list_models() and "b3" not in list_models()


def test_only_the_owner_or_the_teacher_deletes_and_the_name_is_free_again(tmp_path):
    cfg, result, weights, _ = shipped_run("lenet")
    save_run(cfg, result, weights, "alices", owner="alice", directory=tmp_path)
    with pytest.raises(PermissionError, match="belongs to someone else"):
        delete_run("alices", "bob", directory=tmp_path)
    with pytest.raises(RunNameError, match="shipped models cannot be deleted"):
        delete_run("lenet", "alice", teacher=True, directory=tmp_path)
    delete_run("alices", "bob", teacher=True, directory=tmp_path)
    assert files_in(tmp_path) == [] and "alices" not in list_models()
    save_run(cfg, result, weights, "alices", owner="bob", directory=tmp_path)
    delete_run("alices", "bob", directory=tmp_path)


def test_saved_runs_are_registered_at_start_and_broken_or_unfinished_ones_are_skipped(tmp_path, monkeypatch):
    cfg, result, weights, _ = shipped_run("lenet")
    save_run(cfg, result, weights, "kept", directory=tmp_path)
    save_run(cfg, result, weights, "broken", directory=tmp_path)
    (tmp_path / "half.safetensors").write_bytes(b"a crashed save: weights, no card")
    monkeypatch.setattr(registry, "_REGISTRY", {k: v for k, v in registry._REGISTRY.items() if k not in ("kept", "broken")})  # fmt: skip
    (tmp_path / "broken.json").write_text('{"name": "broken", "architecture": "resnet9000"}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert register_saved_runs(tmp_path) == ["kept"]
    assert any("broken" in str(w.message) for w in caught) and "half" not in list_models()


def test_a_full_disk_part_way_leaves_nothing_and_frees_the_name(tmp_path, monkeypatch):
    from vision_core import checkpoints

    cfg, result, weights, _ = shipped_run("lenet")
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:  # the weights and the history are written; the owner file fails
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(checkpoints.os, "fsync", fsync)
    with pytest.raises(RunSaveError, match="the disk is full"):
        save_run(cfg, result, weights, "full", directory=tmp_path)
    assert files_in(tmp_path) == [] and "full" not in list_models()
    monkeypatch.setattr(checkpoints.os, "fsync", real_fsync)
    assert save_run(cfg, result, weights, "full", directory=tmp_path).name == "full"


# --- Bundles and imports ---------------------------------------------------------------------------------------------


def family_run(architecture: str):
    """A fresh model of every family, with a finished run around it (classes of its first dataset)."""
    family = get_family(architecture)
    dataset = family.datasets[-1] if MY_CLASSES in family.datasets else family.datasets[0]
    classes = ("cats", "dogs", "birds") if dataset == MY_CLASSES else get_dataset(dataset).classes
    config = family.config(image_size=64, num_classes=len(classes)) if "image_size" in family.bounds else None
    model = family.build(config).eval()
    cfg = TrainConfig(model=architecture, dataset=dataset, class_set="x" if dataset == MY_CLASSES else None)
    return cfg, finished(model, classes), weights_of(model, architecture), model


def meta_parameters(architecture: str) -> int:
    with torch.device("meta"):
        return count_parameters(get_family(architecture).build())


@pytest.mark.parametrize("architecture", list_families())
def test_every_family_has_bounds_and_round_trips_through_save_bundle_and_import(architecture, tmp_path, monkeypatch):
    family = get_family(architecture)
    assert set(family.bounds) == {f for f in family.config.__dataclass_fields__}
    if meta_parameters(architecture) > MAX_PARAMS:  # VGG16, AlexNet: their weights alone are over the limits
        cfg, result, _, _ = family_run("effnet_lite0")
        card_only = bundle_of(cfg, result, TrainedWeights({}, architecture, dataclasses.asdict(family.config())), "big")
        with pytest.raises(CheckpointError, match="parameters; the limit is"):
            read_bundle(card_only)
        return
    cfg, result, weights, model = family_run(architecture)
    spec = save_run(cfg, result, weights, "saved", directory=tmp_path / "saved")
    data = bundle_of(cfg, result, weights, "original")
    if len(data) > MAX_BUNDLE_BYTES:  # ResNet-18: 39 MB, over the upload limit; the format itself still reads
        with pytest.raises(CheckpointError, match="a run bundle is at most 25 MB"):
            import_run(data, name="imported", directory=tmp_path / "imported")
        monkeypatch.setattr(runs, "BUNDLE_LIMITS", dataclasses.replace(runs.BUNDLE_LIMITS, max_bytes=len(data)))
    imported = import_run(data, name="imported", directory=tmp_path / "imported")
    assert spec.labels == imported.labels == result.classes and imported.title == f"{family.title}: imported"
    x = torch.rand(2, *spec.input_size)
    for name in ("saved", "imported"):
        torch.testing.assert_close(load_model(name, "cpu")(x), model(x))


def test_an_import_is_checked_renamed_and_never_unpickles(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be used"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("nothing may be unpickled"))
    data = bundle_of(*shipped_run("lenet")[:3], "lenet")
    with pytest.raises(CheckpointError, match="taken"):
        import_run(data, directory=tmp_path)  # the shipped model's own name
    with pytest.raises(CheckpointError, match="taken"):
        import_run(data, name="LeNet", directory=tmp_path)  # no look-alikes in another letter case
    with pytest.raises(CheckpointError, match="letters, digits"):
        import_run(data, name="../escape", directory=tmp_path)
    assert files_in(tmp_path) == []
    spec = import_run(data, name="theirs", owner="carol", directory=tmp_path)
    card = json.loads((tmp_path / "theirs.json").read_text())
    assert spec.title == "LeNet-style CNN: theirs" and card["data"] == "MNIST digits, from an imported run bundle"
    assert json.loads((tmp_path / "theirs.history.json").read_text())[0]["split"] == "val"


def test_a_costly_model_is_refused_at_import(tmp_path):
    """A ViT with 2-pixel patches and a wide embedding passes the bounds but would take ~100 ms per digit."""
    family = get_family("vit")
    model = family.build(family.config(patch_size=2, embed_dim=192, depth=8, num_heads=4))
    cfg, classes = TrainConfig(model="vit"), get_dataset("mnist").classes
    data = bundle_of(cfg, finished(model, classes), weights_of(model, "vit"), "slow-vit")
    with pytest.raises(CheckpointError, match="GFLOPs per image; the limit here is"):
        import_run(data, directory=tmp_path)
