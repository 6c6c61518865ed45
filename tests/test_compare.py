"""Compare: the scoreboard, torchinfo summaries, first-layer filters, ViT attention (against timm's own weights), sweeps."""

import copy

import pytest
import torch

from vision_core import get_spec, registry
from vision_core.checkpoints import count_parameters
from vision_core.compare import (
    CompareError,
    architecture_summary,
    filter_image,
    first_conv,
    grid_configs,
    history_table,
    scaling_configs,
    scoreboard,
    sweep_table,
)
from vision_core.hooks import capture_attention, hook_count
from vision_core.inside import InsideError, attention_maps
from vision_core.jobs import RunQueue
from vision_core.training import TRAIN_SIZES, TrainConfig, fine_tune, save_run

TINY = TrainConfig(
    model="lenet", train_size=600, batch_size=32, max_steps=2, val_size=200, test_size=200, device="cpu", log_every=1
)


@pytest.fixture
def isolated_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return get_spec("vit").builder().eval()


def test_attention_maps_match_timms_unfused_attention(vit):
    digit = torch.rand(1, 28, 28)
    oracle, weights = copy.deepcopy(vit), []
    for block in oracle.vit.blocks:  # timm's explicit path softmax(q k^T) -> attn_drop: its input is the weights
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda module, args, output: weights.append(output[0]))
    with torch.inference_mode():
        expected = oracle(digit[None])
    maps = attention_maps(vit, digit)
    reference = torch.stack(weights)[:, :, 0, 1:].reshape(6, 4, 7, 7)
    torch.testing.assert_close(maps.heads, reference)
    assert maps.grid == 7 and maps.prediction == int(expected.argmax())
    assert maps.rollout.shape == (7, 7) and maps.rollout.max() == 1 and (maps.rollout >= 0).all()
    assert hook_count(vit) == 0


def test_attention_hooks_are_removed_when_the_forward_fails(vit):
    private = copy.deepcopy(vit)
    with pytest.raises(RuntimeError), capture_attention(private.vit):
        private(torch.rand(1, 3, 28, 28))  # three channels: the patch embedding refuses
    assert hook_count(private) == 0


def test_cnns_have_no_attention_to_show():
    with pytest.raises(InsideError, match="not a vision transformer"):
        attention_maps(get_spec("lenet").builder(), torch.rand(1, 28, 28))


@pytest.mark.parametrize("name", ["lenet", "vgg", "vit", "resnet18"])
def test_architecture_summary_adds_up_and_leaves_the_model_alone(name):
    model = get_spec(name).builder().train()
    for depth in (1, 3):
        table = architecture_summary(model, get_spec(name).input_size, depth=depth)
        assert table["parameters"].sum() == count_parameters(model), depth
        assert table["depth"].max() <= depth and {"layer", "type", "output shape"} <= set(table.columns)
    assert model.training and hook_count(model) == 0


def test_first_layer_filters_become_a_picture():
    name, weights = first_conv(get_spec("lenet").builder())
    assert name == "features.0" and weights.shape == (6, 1, 5, 5)
    assert filter_image(weights, tile=20).size[0] >= 3 * 20  # 6 tiles: 3 per row
    _, rgb = first_conv(get_spec("resnet18").builder())
    assert rgb.shape == (64, 3, 7, 7) and filter_image(rgb).mode == "RGB"


def test_scoreboard_has_every_carded_model_with_latency_and_saved_runs(tmp_path, isolated_registry):
    events = list(fine_tune(TINY))
    save_run(TINY, events[-1], "scored-run", events, directory=tmp_path)
    table = scoreboard(repeats=3)
    row = table.set_index("name").loc["scored-run"]
    assert row["source"] == "saved run" and row["accuracy"] == events[-1].accuracy and row["latency (ms)"] > 0
    shipped = table.set_index("name").loc["lenet"]
    assert shipped["source"] == "shipped" and shipped["accuracy"] > 0.98 and shipped["parameters"] == 61_706
    history = history_table(saved=["scored-run"])
    assert list(history["run"]) == ["saved: scored-run"] and history["accuracy"].between(0, 1).all()


def test_sweep_configs_and_results():
    grid = grid_configs(TINY, [32, 64], [1e-3, 3e-3, 1e-2], ["adam"])
    assert len(grid) == 6 and {(c.batch_size, c.lr) for c in grid} == {
        (b, lr) for b in (32, 64) for lr in (1e-3, 3e-3, 1e-2)
    }
    with pytest.raises(CompareError, match="too many"):
        grid_configs(TINY, [16, 32, 64, 128, 256], [1e-4, 1e-3, 1e-2], ["adam", "sgd"])
    assert [c.train_size for c in scaling_configs(TINY)] == list(TRAIN_SIZES)

    queue = RunQueue()
    jobs = [queue.submit(cfg, group="g") for cfg in scaling_configs(TINY, [1_800, 600])]
    assert all(queue.wait(job, timeout=120) for job in jobs) and queue.join(timeout=10)
    table = sweep_table(queue.jobs("g"))
    assert list(table["train size"]) == [600, 1_800] and table["accuracy"].notna().all()
    assert history_table(queue.jobs("g"), saved=[])["run"].nunique() == 2
