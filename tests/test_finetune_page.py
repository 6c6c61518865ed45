"""AppTest of the Fine-tune and Compare pages: start tiny runs, watch them finish, save one, stop one, sweep."""

import time

import pytest
from streamlit.testing.v1 import AppTest

from vision_core import fine_tune, list_models, registry, training
from vision_core.training import TrainConfig, save_run

TINY_CFG = TrainConfig(train_size=600, max_steps=2, val_size=200, test_size=200, device="cpu")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """Saved runs go to a temporary folder and leave the registry as they found it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(training, "RUNS_DIR", tmp_path)
    return tmp_path


def open_page(root, page: str) -> AppTest:
    app = AppTest.from_file(str(root / "app.py"), default_timeout=120).run()
    return app.switch_page(page).run()


def rerun_until(app: AppTest, done, timeout: float = 120) -> AppTest:
    """Rerun the page (as the live fragment does every second) until ``done(app)`` or the timeout."""
    deadline = time.monotonic() + timeout
    while not done(app) and time.monotonic() < deadline:
        time.sleep(0.3)
        app.run()
    assert not app.exception, app.exception
    return app


def button(app: AppTest, label: str):
    return next(b for b in app.button if label in b.label)


def charts(app: AppTest) -> list:
    return app.get("vega_lite_chart")


def tiny_run(app: AppTest, steps: int = 0, size: int = 600, epochs: int = 1) -> AppTest:
    app.select_slider(key="ft_size_digits").set_value(size)
    app.number_input(key="ft_epochs_digits").set_value(epochs)
    app.number_input(key="ft_steps_digits").set_value(steps)
    app.select_slider(key="ft_val_digits").set_value(200)
    app.select_slider(key="ft_test_digits").set_value(1_000)
    return button(app, "Start run").click().run()


def test_a_tiny_run_shows_live_charts_then_metrics_and_saves_to_the_draw_page(root, runs_dir):
    app = open_page(root, "app_pages/finetune.py")
    assert not app.exception and any("Training runs on" in i.value for i in [*app.info, *app.success])
    app = tiny_run(app, steps=3)
    assert not app.error and "ft_job" in app.session_state
    app = rerun_until(app, lambda a: any(m.label == "Test accuracy" for m in a.metric))
    metrics = {m.label: m.value for m in app.metric}
    assert {"Test accuracy", "Macro-F1", "Test loss", "Training time", "Samples/s", "Parameters"} <= set(metrics)
    assert metrics["Parameters"] == "61,706" and metrics["Test accuracy"].endswith("%")
    specs = " ".join(chart.proto.spec for chart in charts(app))
    for title in ("Loss per step (smoothed)", "Loss per epoch", "Accuracy per epoch", '"predicted"'):
        assert title in specs, title
    assert any("Misclassified" in m.value for m in app.markdown)
    assert any(b.label.startswith("Download bundle") for b in app.get("download_button"))

    job = app.session_state["ft_job"]
    app.text_input(key=f"ft_name_{job}").set_value("page-run")
    button(app, "Save checkpoint").click().run()
    assert any("Saved as **page-run**" in s.value for s in app.success)
    assert (runs_dir / "page-run.safetensors").is_file() and "page-run" in list_models(task="digits")

    app.switch_page("app_pages/draw.py").run()
    button(app, "Random MNIST").click().run()
    assert not app.exception and "LeNet-style CNN: page-run" in [m.label for m in app.metric]


def test_stop_ends_a_run_and_keeps_its_partial_chart(root):
    app = tiny_run(open_page(root, "app_pages/finetune.py"), size=60_000, epochs=20)  # thousands of steps
    app = rerun_until(app, lambda a: any(b.label == "Stop" for b in a.button) and len(charts(a)) >= 3)
    button(app, "Stop").click().run()
    app = rerun_until(app, lambda a: any("Stopped at step" in w.value for w in a.warning), timeout=30)
    assert not any(m.label == "Test accuracy" for m in app.metric) and len(charts(app)) >= 3


def test_a_bad_augmentation_is_explained_not_started(root):
    app = open_page(root, "app_pages/finetune.py")
    app.selectbox(key="ft_augment").set_value("ImageNet-style photo training").run()
    button(app, "Start run").click().run()
    assert not app.exception and any("cannot train the digit models" in e.value for e in app.error)


def test_compare_page_scores_looks_inside_and_sweeps(root, runs_dir):
    events = list(
        fine_tune(TrainConfig(model="vit", train_size=600, max_steps=2, val_size=200, test_size=200, device="cpu"))
    )
    save_run(TrainConfig(model="vit"), events[-1], "tiny-vit", events)
    app = open_page(root, "app_pages/compare.py")
    assert not app.exception
    scores = app.dataframe[0].value
    assert {"lenet", "tiny-vit"} <= set(scores["name"]) and (scores.set_index("name").loc["lenet", "latency (ms)"] > 0)
    assert "saved: tiny-vit" in set(app.session_state["cmp_runs"])  # its curve is on the overlay chart

    app.selectbox(key="cmp_model").set_value("tiny-vit").run()
    summary = app.dataframe[1].value
    assert summary["parameters"].sum() == events[-1].num_params
    captions = [caption for image in app.image for caption in image.captions]
    assert "Attention rollout through all layers" in captions and sum(" head " in c for c in captions) == 4
    assert any(c.startswith("vit.patch_embed.proj: 64 kernels") for c in captions)

    app.multiselect(key="cmp_grid_batch").set_value([64])
    app.multiselect(key="cmp_grid_lr").set_value([1e-3, 3e-3])
    app.select_slider(key="cmp_grid_size").set_value(600).run()
    button(app, "Queue 2 runs").click().run()
    app = rerun_until(app, lambda a: any("2 of 2 runs finished" in m.value for m in a.markdown), timeout=180)
    assert len(app.dataframe[-1].value) == 2 and app.dataframe[-1].value["accuracy"].notna().all()


def test_saved_runs_join_the_draw_page_only_when_picked(root, runs_dir):
    finished = next(e for e in fine_tune(TINY_CFG) if isinstance(e, training.RunFinished))
    save_run(TINY_CFG, finished, "someone-elses-run")  # saved by another session: listed, not loaded
    app = open_page(root, "app_pages/draw.py")
    button(app, "Random MNIST").click().run()
    run_title = "LeNet-style CNN: someone-elses-run"
    assert app.multiselect(key="draw_runs").options == [run_title]
    assert {m.label for m in app.metric} == {"LeNet-style CNN", "VGG-style CNN", "Vision Transformer (timm)"}
    app.multiselect(key="draw_runs").select("someone-elses-run").run()
    assert not app.exception and run_title in {m.label for m in app.metric}


def test_a_bundle_takes_a_valid_run_name_only():
    finished = next(e for e in fine_tune(TINY_CFG) if isinstance(e, training.RunFinished))
    for name in ("../../evil", "my run", ""):
        with pytest.raises(training.RunNameError):
            training.run_bundle(TINY_CFG, finished, name)
    assert training.run_bundle(TINY_CFG, finished, "fine-name")[:2] == b"PK"
