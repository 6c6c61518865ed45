import json

import pytest
import torch

from vision_core.checkpoints import CheckpointError, ModelCard, count_parameters, load_checkpoint, save_checkpoint
from vision_core.models.lenet import LeNetConfig
from vision_core.registry import build_model


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
    return build_model("lenet", LeNetConfig(channels=(4, 8), hidden=(32, 16)))


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

    monkeypatch.setattr(checkpoints.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tiny, small_card(tiny), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_version_1_card_reads_as_an_mnist_model(tmp_path, tiny):
    path = save_checkpoint(tiny, small_card(tiny), tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    for key in ("dataset", "labels", "card_version"):
        del card[key]
    path.with_suffix(".json").write_text(json.dumps(card))
    _, loaded = load_checkpoint(path)
    assert loaded.dataset == "mnist" and loaded.card_version == 1 and loaded.class_names[3] == "3"
