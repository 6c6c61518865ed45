"""AppTest of the Fine-tune, My classes and Compare pages: start tiny runs, watch them finish, save, stop, sweep."""

import io
import time

import numpy as np
import pytest
from PIL import Image
from runs_helpers import EPOCH, shipped_run
from streamlit.testing.v1 import AppTest

from vision_core import list_models, registry, runs


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """Saved runs go to a temporary folder and leave the registry as they found it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path)
    return tmp_path


def open_page(root, page: str) -> AppTest:
    app = AppTest.from_file(str(root / "app.py"), default_timeout=180).run()
    return app.switch_page(page).run()


def rerun_until(app: AppTest, done, timeout: float = 180) -> AppTest:
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


def tiny_run(app: AppTest, steps: int = 0, size: int = 600, epochs: int = 1, kind: str = "mnist-own") -> AppTest:
    app.select_slider(key=f"ft_size_{kind}").set_value(size)
    app.number_input(key=f"ft_epochs_{kind}").set_value(epochs)
    app.number_input(key=f"ft_steps_{kind}").set_value(steps)
    app.select_slider(key=f"ft_val_{kind}").set_value(200)
    app.select_slider(key=f"ft_test_{kind}").set_value(1_000)
    return button(app, "Start run").click().run()


def png(size=(64, 48), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_tiny_run_shows_live_charts_then_metrics_and_saves_to_the_draw_page(root, runs_dir):
    app = open_page(root, "app_pages/finetune.py")
    assert not app.exception and any("Training runs on" in i.value for i in [*app.info, *app.success])
    assert any("This run needs about" in c.value for c in app.caption)  # the estimate, before it starts
    app = tiny_run(app, steps=3)
    assert not app.error and "ft_job" in app.session_state
    app = rerun_until(app, lambda a: any(m.label == "Test accuracy" for m in a.metric))
    metrics = {m.label: m.value for m in app.metric}
    assert {"Test accuracy", "Macro-F1", "Test loss", "Training time", "Images per second", "Parameters"} <= set(
        metrics
    )
    assert metrics["Parameters"] == "61.7 k" and metrics["Test accuracy"].endswith("%")
    specs = " ".join(chart.proto.spec for chart in charts(app))
    for title in ("Loss per step (smoothed)", "Loss per epoch", "Accuracy per epoch", '"predicted"'):
        assert title in specs, title
    assert any("Misclassified" in m.value for m in app.markdown)
    assert any(b.label.startswith("Download bundle") for b in app.get("download_button"))

    job = app.session_state["ft_job"]
    app.text_input(key=f"ft_name_{job}").set_value("page-run")
    button(app, "Save").click().run()
    assert any("Saved as **page-run**" in s.value for s in app.success), [e.value for e in app.error]
    assert (runs_dir / "page-run.safetensors").is_file() and "page-run" in list_models(task="digits")

    app.switch_page("app_pages/draw.py").run()
    button(app, "Random MNIST").click().run()
    assert not app.exception and "LeNet-style CNN: page-run" in [m.label for m in app.metric]


def test_another_browser_watches_a_run_but_cannot_stop_or_save_it(root, runs_dir):
    owner = tiny_run(open_page(root, "app_pages/finetune.py"), size=60_000, epochs=20)
    job = owner.session_state["ft_job"]
    owner = rerun_until(owner, lambda a: any(b.label == "Stop" for b in a.button))
    other = open_page(root, "app_pages/finetune.py")
    other.selectbox(key="ft_watch").set_value(job)
    button(other, "Show").click().run()
    assert f"Run #{job} (someone else's: you can watch it)" in [h.value for h in other.subheader]
    assert not any(b.label == "Stop" for b in other.button)
    button(owner, "Stop").click().run()
    owner = rerun_until(owner, lambda a: any("Stopped at step" in w.value for w in a.warning), timeout=30)
    assert not any(m.label == "Test accuracy" for m in owner.metric) and len(charts(owner)) >= 3


def test_a_run_too_big_for_the_server_and_a_bad_augmentation_are_explained_not_started(root):
    app = open_page(root, "app_pages/finetune.py")
    app.selectbox(key="ft_augment_mnist").set_value("ImageNet-style photo training").run()
    button(app, "Start run").click().run()
    assert not app.exception and any("cannot train on MNIST digits" in e.value for e in app.error)
    app.selectbox(key="ft_augment_mnist").set_value("The dataset's standard augmentation").run()
    app.selectbox(key="ft_model_mnist").set_value("vgg16").run()
    app.radio(key="ft_init_vgg16").set_value("scratch").run()
    app.select_slider(key="ft_batch_mnist-transfer").set_value(512).run()
    app.select_slider(key="ft_image_vgg16_mnist").set_value(224).run()
    assert any("too big for this server" in e.value and "lower the batch size" in e.value for e in app.error)
    assert button(app, "Start run").disabled


def test_a_cifar10_run_trains_on_the_shipped_subset_and_can_be_tried_on_a_photo(root, runs_dir):
    app = open_page(root, "app_pages/finetune.py")
    app.selectbox(key="ft_dataset").set_value("cifar10").run()
    assert app.selectbox(key="ft_model_cifar10").value == "mish_cnn"
    app = tiny_run(app, steps=2, size=1_000, kind="cifar10-own")
    app = rerun_until(app, lambda a: any(m.label == "Test accuracy" for m in a.metric))
    assert any("CIFAR-10 test images" in c.value for c in app.caption)
    app.file_uploader(key=f"ft-try-{app.session_state['ft_job']}-upload").set_value(("red.png", png(), "image/png")).run()  # fmt: skip
    answers = [p.proto.text for p in app.get("progress") if ":" in p.proto.text]
    assert len(answers) == 3 and all(any(c in a for c in ("airplane", "truck", "ship", "frog", "cat", "dog", "bird", "deer", "horse", "automobile")) for a in answers)  # fmt: skip


def test_my_classes_trains_from_uploads_and_answers_on_a_new_photo(root, runs_dir):
    app = open_page(root, "app_pages/my_classes.py")
    rng = np.random.default_rng(0)

    def pictures(color, count=6):
        return [(f"{color}{i}.png", png((96, 80), tuple(int(c) for c in np.clip(np.array(color) + rng.integers(-20, 20, 3), 0, 255))), "image/png") for i in range(count)]  # fmt: skip

    app.text_input(key="my_name_0").set_value("red").run()
    app.text_input(key="my_name_1").set_value("blue").run()
    app.file_uploader(key="my_upload_0_0").set_value(pictures((220, 30, 30))).run()
    app.file_uploader(key="my_upload_1_0").set_value(pictures((30, 30, 220))).run()
    assert [c.value for c in app.caption if "picture(s)" in c.value] == ["6 picture(s)", "6 picture(s)"]
    button(app, "Train").click().run()
    assert not app.error, [e.value for e in app.error]
    app = rerun_until(app, lambda a: any(m.label == "Test accuracy" for m in a.metric))
    job = app.session_state["my_classes_job"]
    app.file_uploader(key=f"my-try-{job}-upload").set_value(
        ("new.png", png((120, 90), (200, 40, 50)), "image/png")
    ).run()
    answers = [p.proto.text for p in app.get("progress") if ":" in p.proto.text]
    assert answers[0].startswith("red: "), answers


def test_my_classes_explains_what_is_missing(root):
    app = open_page(root, "app_pages/my_classes.py")
    button(app, "Train").click().run()
    assert any("has 0 picture(s): give each class at least 4" in e.value for e in app.error)
    app.file_uploader(key="my_upload_0_0").set_value([("notes.png", b"not a picture", "image/png")]).run()
    assert any("Skipped notes.png" in w.value for w in app.warning) and "picture(s)" in app.caption[-1].value


def test_compare_page_scores_per_dataset_looks_inside_and_sweeps(root, runs_dir):
    from vision_core.runs import save_run

    cfg, result, weights, _ = shipped_run("vit")
    save_run(cfg, result, weights, "tiny-vit", [EPOCH])
    app = open_page(root, "app_pages/compare.py")
    assert not app.exception
    scores = app.dataframe[0].value
    assert {"lenet", "tiny-vit"} <= set(scores["name"]) and "mish_cnn" not in set(scores["name"])
    assert "mish_cnn" in set(app.dataframe[1].value["name"])  # the CIFAR-10 tab
    app.toggle(key="cmp_latency_mnist").set_value(True).run()
    assert app.dataframe[0].value.set_index("name").loc["lenet", "latency (ms)"] > 0
    assert "saved: tiny-vit" in set(app.session_state["cmp_runs_MNIST digits"])

    app.selectbox(key="cmp_model").set_value("tiny-vit").run()
    summary = next(d.value for d in app.dataframe if "output shape" in d.value)
    assert summary["parameters"].sum() == result.num_params
    captions = [caption for image in app.image for caption in image.captions]
    assert "Attention rollout through all layers" in captions and sum(" head " in c for c in captions) == 4

    app.multiselect(key="cmp_grid_batch").set_value([64])
    app.multiselect(key="cmp_grid_lr").set_value([1e-3, 3e-3])
    app.select_slider(key="cmp_grid_size_mnist").set_value(600).run()
    button(app, "Queue 2 runs").click().run()
    app = rerun_until(app, lambda a: any("2 of 2 runs finished" in m.value for m in a.markdown), timeout=240)
    assert len(app.dataframe[-1].value) == 2 and app.dataframe[-1].value["accuracy"].notna().all()


def test_saved_runs_join_the_draw_page_only_when_picked(root, runs_dir):
    from vision_core.runs import save_run

    cfg, result, weights, _ = shipped_run("lenet")
    save_run(cfg, result, weights, "someone-elses-run")  # saved by another session: listed, not loaded
    app = open_page(root, "app_pages/draw.py")
    button(app, "Random MNIST").click().run()
    run_title = "LeNet-style CNN: someone-elses-run"
    assert app.multiselect(key="draw_runs").options == [run_title]
    assert {m.label for m in app.metric} == {"LeNet-style CNN", "VGG-style CNN", "Vision Transformer (timm)"}
    app.multiselect(key="draw_runs").select("someone-elses-run").run()
    assert not app.exception and run_title in {m.label for m in app.metric}


def test_the_teacher_signs_in_and_may_delete_anyones_saved_run(root, runs_dir, tmp_path, monkeypatch):
    from ui.resources import class_policy
    from vision_core.runs import save_run

    (tmp_path / "class.toml").write_text('[teacher]\npassword = "owl"\n')
    monkeypatch.setenv("VISION_EXPLORER_CONFIG", str(tmp_path / "class.toml"))
    class_policy.clear()  # read once per process: this test's configuration
    try:
        cfg, result, weights, _ = shipped_run("lenet")
        save_run(cfg, result, weights, "a-students-run", owner="someone-else")
        app = open_page(root, "app_pages/compare.py")
        assert not any(b.key == "cmp_delete_a-students-run" for b in app.button)  # not this browser's run
        app.text_input(key="teacher-password").set_value("wrong")
        button(app, "Sign in").click().run()
        assert any("not the teacher's password" in e.value for e in app.error)
        app.text_input(key="teacher-password").set_value("owl")
        button(app, "Sign in").click().run()
        # The same browser, reloaded (or on the next scene of a lecture): still the teacher; another browser is not.
        again = AppTest.from_file(str(root / "app.py"), default_timeout=180)
        again.session_state["owner_token"] = app.session_state["owner_token"]
        again = again.run().switch_page("app_pages/compare.py").run()
        other = open_page(root, "app_pages/compare.py")
        assert any(b.key == "teacher-out" for b in again.button)
        assert not any(b.key == "cmp_delete_a-students-run" for b in other.button)
        next(b for b in app.button if b.key == "cmp_delete_a-students-run").click().run()
        assert any("Deleted a-students-run" in s.value for s in app.success)
        assert "a-students-run" not in list_models() and not (runs_dir / "a-students-run.safetensors").exists()
        button(app, "Sign out").click().run()
        assert any(b.key == "teacher-in" for b in app.button)
    finally:
        class_policy.clear()


def test_parameter_counts_are_short_enough_for_a_metric():
    """Issue 10: "57,044,..." was cut off in a sixth of the page's width."""
    from ui.runs import compact_count

    assert [compact_count(n) for n in (999, 61_706, 57_044_810, 3_000_000_000)] == ["999", "61.7 k", "57.0 M", "3.0 G"]
