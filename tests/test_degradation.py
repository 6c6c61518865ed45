"""Degradation: no GPU, no pretrained weights, no network, a full disk, a read-only folder, a lost digit checkpoint.

Each is met with a plain message (what failed, where, what to do) and the rest of the app keeps working.
Already covered elsewhere, not repeated here: missing ResNet-50 weights in the core and on the Photo page
(tests/test_photo.py: ``test_missing_resnet_weights_fail_fast_and_say_how_to_fetch_them``,
``test_page_without_resnet_weights_says_so_and_uses_efficientnet``, ``test_make_weights_cli_lists_and_fails_clearly_offline``),
and a Stop that ends a run within a second (tests/test_jobs.py).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from runs_helpers import shipped_run
from streamlit.testing.v1 import AppTest
from torchvision.models import ResNet50_Weights

from vision_core import checkpoints, list_models, registry, runs
from vision_core.device import resolve_device
from vision_core.jobs import Caller, RunQueue
from vision_core.models import imagenet
from vision_core.models.imagenet import DOWNLOAD_TIMEOUT_S, WeightsDownloadError, download_file, fetch_weights
from vision_core.registry import weights_available
from vision_core.runs import RunSaveError, save_run
from vision_core.training import TrainConfig, TrainConfigError, check_config

ROOT = Path(__file__).resolve().parents[1]
TINY = TrainConfig(model="lenet", train_size=600, max_steps=2, val_size=200, test_size=200, device="cpu")


def open_page(page: str) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    return app.switch_page(page).run()


def button(app: AppTest, label: str):
    return next(b for b in app.button if label in b.label)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """Saved runs go to a temporary folder and leave the registry as they found it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


@pytest.fixture(scope="module")
def finished():
    """A finished run (the shipped LeNet's weights): what the run service hands over for saving."""
    return shipped_run("lenet")


def disk_error(code: int, message: str, after: int = 0):
    """An ``fsync`` stand-in that lets ``after`` files through, then fails as the disk would (the data is half out)."""
    calls = []

    def fsync(_fd):
        calls.append(_fd)
        if len(calls) > after:
            raise OSError(code, message)

    return fsync


# --- (a) no GPU -------------------------------------------------------------------------------------------------


def test_no_gpu_auto_means_cpu_and_asking_for_cuda_is_refused_clearly(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    queue = RunQueue(work_dir=tmp_path)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(TrainConfigError, match=r"cannot train on device 'cuda.*no GPU.*offers auto, cpu;"):
            queue.submit(dataclasses.replace(TINY, device=device), Caller("me"))
    with pytest.raises(TrainConfigError, match="cannot train on device 'gpu'"):
        check_config(dataclasses.replace(TINY, device="gpu"))  # a typo is explained too, not a RuntimeError
    assert not queue.jobs() and not [t for t in threading.enumerate() if t.name.startswith("run-queue")]


def test_a_gpu_index_the_machine_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(TrainConfigError, match=r"'cuda:3'.*1 GPU\(s\), cuda:0 to cuda:0"):
        check_config(dataclasses.replace(TINY, device="cuda:3"))


def test_finetune_page_without_a_gpu_offers_the_cpu_and_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    app = open_page("app_pages/finetune.py")
    assert not app.exception and not app.error
    assert any("Training runs on **CPU" in i.value for i in app.info)
    assert app.radio(key="ft_device").options == ["auto", "cpu"]


# --- (b) no ImageNet weights for a transfer model (the Photo page's case is in test_photo.py) ------------------


@pytest.fixture
def offline(monkeypatch):
    """No network: any URL open fails at once, as on an unplugged laptop."""
    calls = []

    def refuse(url, *args, **kwargs):
        calls.append(kwargs.get("timeout"))
        raise urllib.error.URLError(OSError(errno.ENETUNREACH, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return calls


def test_finetune_page_without_imagenet_weights_explains_and_fails_the_download_clearly(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    app = open_page("app_pages/finetune.py")
    app.selectbox(key="ft_model_mnist").set_value("resnet18").run()
    assert any("ImageNet weights are not on this machine" in w.value for w in app.warning)
    button(app, "Start run").click().run()  # init "imagenet" without the file: refused with the fix
    assert not app.exception and any("Cannot start this run" in e.value and "weights" in e.value for e in app.error)

    started = time.perf_counter()
    button(app, "Download the ResNet-18").click().run()
    assert time.perf_counter() - started < 10 and offline == [DOWNLOAD_TIMEOUT_S]
    message = " ".join(e.value for e in app.error)
    assert not app.exception and "The download failed" in message and "make weights" in message
    assert not list(tmp_path.rglob("*.partial")) and not weights_available("resnet18")
    app.selectbox(key="ft_model_mnist").set_value("lenet").run()  # the rest of the page still works
    assert not app.exception and not app.error


# --- (c) no network ---------------------------------------------------------------------------------------------


def test_fetching_weights_offline_fails_at_once_with_the_fix(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    started = time.perf_counter()
    with pytest.raises(WeightsDownloadError, match=r"could not download https://.*resnet50.*Network is unreachable"):
        fetch_weights("resnet50")
    assert time.perf_counter() - started < 1 and offline == [DOWNLOAD_TIMEOUT_S]  # the page's path sets a timeout
    assert 1 <= DOWNLOAD_TIMEOUT_S <= 30 and not list(tmp_path.rglob("*.pth*"))


def test_a_refused_connection_fails_fast(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(WeightsDownloadError, match=r"could not download.*refused"):
        download_file(f"http://127.0.0.1:{port}/resnet50-11ad3fa6.pth", tmp_path / "resnet50-11ad3fa6.pth")
    assert time.perf_counter() - started < 5 and not list(tmp_path.iterdir())


def test_a_server_that_never_answers_is_given_up_after_the_timeout(tmp_path):
    """A black hole (a captive portal, a dead proxy): connected, then silence. The read timeout ends the wait."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        started = time.perf_counter()
        with pytest.raises(WeightsDownloadError, match=r"could not download.*timed out"):
            download_file(f"http://127.0.0.1:{port}/weights-12345678.pth", tmp_path / "w-12345678.pth", timeout=0.5)
        waited = time.perf_counter() - started
    assert 0.4 < waited < 5 and not list(tmp_path.iterdir())


def test_a_full_disk_during_a_download_is_a_download_error(tmp_path, monkeypatch):
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights" * 1000)
    real_open = Path.open

    def full(self, mode="r", *args, **kwargs):
        if self.name.endswith(".partial") and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(WeightsDownloadError, match=r"could not save the download .* No space left on device; free"):
        download_file(source.as_uri(), tmp_path / "hub" / "model.pth")
    assert not (tmp_path / "hub").exists() or not list((tmp_path / "hub").iterdir())
    assert imagenet.WeightsDownloadError is WeightsDownloadError


# --- (d, e) a full disk or a read-only folder when saving a run ------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "cause", "advice"),
    [
        (errno.ENOSPC, "No space left on device", "the disk is full", "free some space"),
        (errno.EACCES, "Permission denied", "the folder is read-only or not writable by the app", "make .* writable"),
        (
            errno.EROFS,
            "Read-only file system",
            "the folder is read-only or not writable by the app",
            "make .* writable",
        ),
    ],
)
def test_save_run_on_a_refusing_disk_explains_and_leaves_nothing(
    finished, runs_dir, monkeypatch, code, text, cause, advice
):
    cfg, result, weights, _ = finished
    monkeypatch.setattr(checkpoints.os, "fsync", disk_error(code, text))
    with pytest.raises(RunSaveError, match=rf"could not save run 'broken' in {runs_dir}: {cause} \({text}.*{advice}"):
        save_run(cfg, result, weights, "broken")
    assert not visible(runs_dir) and "broken" not in list_models()
    monkeypatch.undo()  # the disk is fine again: the same name saves, nothing half-written blocks it
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    assert save_run(cfg, result, weights, "broken", directory=runs_dir).name == "broken"
    assert visible(runs_dir) == ["broken.history.json", "broken.json", "broken.owner", "broken.safetensors"]


def visible(folder: Path) -> list[str]:
    """The files a saved run consists of (name claims live in a hidden folder)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def test_a_disk_that_fills_up_after_the_weights_leaves_no_half_checkpoint(finished, runs_dir, monkeypatch):
    cfg, result, weights, _ = finished
    monkeypatch.setattr(checkpoints.os, "fsync", disk_error(errno.ENOSPC, "No space left on device", after=1))
    with pytest.raises(RunSaveError, match="the disk is full"):
        save_run(cfg, result, weights, "late")
    assert not visible(runs_dir) and "late" not in list_models()


def test_a_folder_that_cannot_be_created_is_explained(finished, tmp_path, monkeypatch):
    cfg, result, weights, _ = finished
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the runs folder should be")
    with pytest.raises(RunSaveError, match=r"could not save run 'x' in .*not-a-folder/runs.*press Save again"):
        save_run(cfg, result, weights, "x", directory=blocker / "runs")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through chmod 0o555")
def test_a_really_read_only_folder(finished, runs_dir):
    cfg, result, weights, _ = finished
    runs_dir.mkdir()
    runs_dir.chmod(0o555)
    try:
        with pytest.raises(RunSaveError, match="read-only or not writable"):
            save_run(cfg, result, weights, "ro")
        assert not list(runs_dir.iterdir())
    finally:
        runs_dir.chmod(0o755)


def test_finetune_page_keeps_the_results_when_saving_fails(root, runs_dir, monkeypatch):
    app = open_page("app_pages/finetune.py")
    app.select_slider(key="ft_size_mnist-own").set_value(600)
    app.number_input(key="ft_epochs_mnist-own").set_value(1)
    app.number_input(key="ft_steps_mnist-own").set_value(2)
    app.select_slider(key="ft_val_mnist-own").set_value(200)
    app.select_slider(key="ft_test_mnist-own").set_value(1_000)
    button(app, "Start run").click().run()
    deadline = time.monotonic() + 120
    while not any(m.label == "Test accuracy" for m in app.metric) and time.monotonic() < deadline:
        time.sleep(0.3)
        app.run()
    accuracy = next(m.value for m in app.metric if m.label == "Test accuracy")
    job = app.session_state["ft_job"]
    app.text_input(key=f"ft_name_{job}").set_value("kept")

    for code, text, expected in (
        (errno.ENOSPC, "No space left on device", "the disk is full"),
        (errno.EACCES, "Permission denied", "not writable by the app"),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(checkpoints.os, "fsync", disk_error(code, text))
            button(app, "Save").click().run()
        assert not app.exception
        error = next(e.value for e in app.error if "Saving failed" in e.value)
        assert expected in error and str(runs_dir) in error and "press Save again" in error
        assert any("results stay on this page" in i.value for i in app.info)
        assert next(m.value for m in app.metric if m.label == "Test accuracy") == accuracy  # the results stay
        assert any(b.label.startswith("Download bundle") for b in app.get("download_button"))
        assert not visible(runs_dir)

    button(app, "Save").click().run()  # space freed: the same run saves under the same name
    assert any("Saved as **kept**" in s.value for s in app.success) and "kept" in list_models(task="digits")
    app.switch_page("app_pages/draw.py").run()
    button(app, "Random MNIST").click().run()
    assert not app.exception and "LeNet-style CNN: kept" in [m.label for m in app.metric]


# --- a shipped digit checkpoint that is missing or damaged --------------------------------------------------------


@pytest.fixture
def fresh_model_cache():
    from ui.resources import cached_model

    cached_model.clear()  # the cache is per process: a ViT loaded by an earlier test would hide the missing file
    yield
    cached_model.clear()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_draw_page_works_with_the_other_models_when_one_checkpoint_is_lost(
    tmp_path, monkeypatch, fresh_model_cache, damage
):
    spec = registry.get_spec("vit")
    copy = tmp_path / "vit.safetensors"
    if damage == "truncated":
        copy.write_bytes(spec.checkpoint.read_bytes()[:5000])
        copy.with_suffix(".json").write_text(spec.checkpoint.with_suffix(".json").read_text())
    moved = dataclasses.replace(spec, checkpoint=copy, weights_file=lambda: copy)
    monkeypatch.setattr(registry, "_REGISTRY", {**registry._REGISTRY, "vit": moved})
    app = open_page("app_pages/draw.py")
    assert not app.exception
    (error,) = [e.value for e in app.error]
    assert "Model 'vit' is unavailable" in error
    assert ("python -m vision_core train vit" in error) if damage == "missing" else ("vit.safetensors" in error)
    button(app, "Random MNIST").click().run()
    titles = [m.label for m in app.metric]
    assert not app.exception and {"LeNet-style CNN", "VGG-style CNN"} <= set(titles)
    assert "Vision Transformer (timm)" not in titles
    assert ResNet50_Weights.DEFAULT.url  # the photo models are untouched by a lost digit checkpoint
