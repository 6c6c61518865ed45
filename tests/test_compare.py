"""Compare: the scoreboard, torchinfo summaries, first-layer filters, ViT attention (against timm's own weights), sweeps."""

import copy

import pytest
import torch

from vision_core import get_spec, registry
from vision_core.checkpoints import count_parameters
from vision_core.compare import (
    CompareError,
    architecture_summary,
    carded_models,
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
from vision_core.jobs import Caller, RunQueue
from vision_core.registry import build_model
from vision_core.runs import save_run
from vision_core.training import TrainConfig

TINY = TrainConfig(
    model="lenet", train_size=600, batch_size=32, max_steps=2, val_size=200, test_size=200, device="cpu", log_every=1
)


@pytest.fixture
def isolated_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_model("vit").eval()


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
        attention_maps(build_model("lenet"), torch.rand(1, 28, 28))


@pytest.mark.parametrize("name", ["lenet", "vgg", "vit", "resnet18"])
def test_architecture_summary_adds_up_and_leaves_the_model_alone(name):
    model = build_model(get_spec(name).architecture).train()
    for depth in (1, 3):
        table = architecture_summary(model, get_spec(name).input_size, depth=depth)
        assert table["parameters"].sum() == count_parameters(model), depth
        assert table["depth"].max() <= depth and {"layer", "type", "output shape"} <= set(table.columns)
    assert model.training and hook_count(model) == 0


def test_first_layer_filters_become_a_picture():
    name, weights = first_conv(build_model("lenet"))
    assert name == "features.0" and weights.shape == (6, 1, 5, 5)
    assert filter_image(weights, tile=20).size[0] >= 3 * 20  # 6 tiles: 3 per row
    _, rgb = first_conv(build_model("resnet18"))
    assert rgb.shape == (64, 3, 7, 7) and filter_image(rgb).mode == "RGB"


def test_scoreboard_reads_every_card_of_a_dataset_and_never_loads_a_model(tmp_path, isolated_registry, monkeypatch):
    from runs_helpers import EPOCH, shipped_run

    from vision_core import registry as core_registry

    cfg, result, weights, _ = shipped_run("lenet")
    save_run(cfg, result, weights, "scored-run", [EPOCH], directory=tmp_path)
    monkeypatch.setattr(core_registry, "load_model", lambda *a, **k: pytest.fail("the scoreboard reads cards only"))
    names = carded_models("mnist")
    assert names[:3] == ["lenet", "vgg", "vit"] and "scored-run" in names and "mish_cnn" not in names
    table = scoreboard(names).set_index("name")
    assert table.loc["scored-run", "source"] == "saved run" and table.loc["scored-run", "accuracy"] == result.accuracy
    assert table.loc["lenet", "accuracy"] > 0.98 and table.loc["lenet", "parameters"] == 61_706
    assert set(table["dataset"]) == {"MNIST digits"} and "latency (ms)" not in table
    history = history_table(saved=["scored-run"])
    assert list(history["run"]) == ["saved: scored-run"] and list(history["dataset"]) == ["MNIST digits"]


def test_sweep_configs_and_results(tmp_path):
    grid = grid_configs(TINY, [32, 64], [1e-3, 3e-3, 1e-2], ["adam"])
    assert len(grid) == 6 and {(c.batch_size, c.lr) for c in grid} == {
        (b, lr) for b in (32, 64) for lr in (1e-3, 3e-3, 1e-2)
    }
    with pytest.raises(CompareError, match="too many"):
        grid_configs(TINY, [16, 32, 64, 128, 256], [1e-4, 1e-3, 1e-2], ["adam", "sgd"])
    assert [c.train_size for c in scaling_configs(TINY, [6_000, 600])] == [600, 6_000]

    queue = RunQueue(work_dir=tmp_path)
    jobs = queue.submit_many(scaling_configs(TINY, [1_800, 600]), Caller("me"), group="g")
    assert all(queue.wait(job.id, timeout=180) for job in jobs) and queue.join(timeout=10)
    table = sweep_table(queue.jobs("g"))
    assert list(table["train size"]) == [600, 1_800] and table["accuracy"].notna().all()
    runs = [(job, queue.events(job.id)) for job in queue.jobs("g")]
    assert history_table(runs)["run"].nunique() == 2
    queue.shutdown()
