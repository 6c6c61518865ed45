"""The class configuration (class.toml) and the cost estimate runs are checked against."""

import dataclasses
import hashlib

import pytest

from vision_core.cost import BudgetError, check_budget, estimate
from vision_core.policy import Policy, PolicyError, load_policy
from vision_core.training import TrainConfig


def test_the_example_file_is_the_defaults_and_a_teacher_changes_them_in_one_file(root, tmp_path):
    example = load_policy(root / "class.example.toml")
    assert dataclasses.replace(example, source="built-in defaults") == Policy()
    (tmp_path / "class.toml").write_text(
        '[runs.cpu]\nmemory_mb = 2000\n[runs.queue]\nmax_active_per_owner = 1\n[teacher]\npassword = "owl"\n'
    )
    policy = load_policy(tmp_path / "class.toml")
    assert policy.cpu.memory_mb == 2_000 and policy.cpu.wall_seconds == 900 and policy.queue.max_active_per_owner == 1
    assert policy.is_teacher_password("owl") and not policy.is_teacher_password("Owl") and policy.has_teacher
    assert not Policy().has_teacher and not Policy().is_teacher_password("")


def test_a_hashed_teacher_password_and_the_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "elsewhere.toml"
    path.write_text(f'[teacher]\npassword_sha256 = "{hashlib.sha256(b"owl").hexdigest()}"\n')
    monkeypatch.setenv("VISION_EXPLORER_CONFIG", str(path))
    assert load_policy().is_teacher_password("owl") and "owl" not in path.read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[runs.cpu]\nmemory = 1\n", "unknown setting"),
        ("[runs.cpu]\nmemory_mb = -1\n", "whole number >= 0"),
        ("[runs.queue]\nmax_active_per_owner = 2.5\n", "whole number"),
        ("[runs.gpu]\n", "unknown table"),
        ("[students]\n", "unknown table"),
        ("not toml at all [", "not valid TOML"),
    ],
)
def test_a_broken_configuration_names_the_file_and_the_setting(tmp_path, text, message):
    path = tmp_path / "class.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        load_policy(path)
    with pytest.raises(PolicyError, match="no class configuration"):
        load_policy(tmp_path / "missing.toml")


def test_the_estimate_grows_with_the_run_and_refusals_say_what_to_lower():
    budget = Policy().cpu
    small = estimate(TrainConfig(model="lenet", train_size=600, epochs=1, device="cpu"), budget)
    large = estimate(TrainConfig(model="lenet", train_size=60_000, epochs=10, batch_size=512, device="cpu"), budget)
    assert small.parameters == large.parameters == 61_706 and small.memory_mb < large.memory_mb
    assert large.seconds > 50 * small.seconds and "61,706 parameters" in small.describe()
    cifar = estimate(TrainConfig(model="mish_cnn", dataset="cifar10", device="cpu"), budget)
    assert cifar.gflops_per_image > small.gflops_per_image  # 32 x 32 x 3 through 64-channel convs
    with pytest.raises(BudgetError, match=r"lower the batch size to at most \d+"):
        check_budget(TrainConfig(model="vgg", batch_size=512, epochs=1, train_size=600, device="cpu"), dataclasses.replace(budget, memory_mb=1_100))  # fmt: skip
    with pytest.raises(BudgetError, match="train on at most about"):
        check_budget(TrainConfig(model="vit", epochs=50, device="cpu"), budget)
