"""Lecture mode without a browser (issue 12): links hold the current page's view and reproduce it, the scenes file
and where it is found, the uploaded photos a link names, the projector's chart sizes. The browser side (the copy
button, Previous / Next, the projector's measured sizes): tests/test_browser_scenes.py."""

from __future__ import annotations

import hashlib
import io

import altair as alt
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from ui import state
from ui.charts import confusion_chart, epoch_chart, overlay_chart, robustness_chart, step_loss_chart
from ui.navigation import PAGES
from ui.projector import MIN_CHART_PX, PROJECTOR_CHART_PX, sized
from ui.resources import BoundedCache
from ui.scenes import SceneError, parse_scenes, scenes_path
from vision_core.policy import load_policy

PATHS = {page.url_path: page.path for page in PAGES}


@pytest.fixture
def app(root, monkeypatch, tmp_path) -> AppTest:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no hub weights: the Photo explorer uses EfficientNet-Lite0
    return AppTest.from_file(str(root / "app.py"), default_timeout=180)


def open_link(app: AppTest, page: str, query: dict[str, str]) -> AppTest:
    """Open ``/page?query`` in a new session, as a copied link does."""
    app.query_params.update(query)
    if page:
        app.switch_page(PATHS[page])
    return app.run()


def test_every_example_scene_opens_its_view(root, app):
    """scenes.example.toml is valid, and each link's settings are the session's after opening it."""
    scenes = parse_scenes((root / "scenes.example.toml").read_text(), "scenes.example.toml")
    assert len(scenes) == 7 and {scene.page for scene in scenes} >= {"draw", "augment", "photo", "finetune"}
    for scene in scenes:
        opened = open_link(AppTest.from_file(str(root / "app.py"), default_timeout=180), scene.page, dict(scene.query))
        assert not opened.exception and not opened.error, scene.title
        for name, text in scene.query:
            setting = state.declared()[name]
            assert opened.session_state[name] == setting.decode(text), (scene.title, name)
            value = setting.decode(text)  # the page's link holds it again, unless it is the default (left out)
            assert opened.query_params.get(name) == (None if value == setting.default else setting.encode(value))


def test_a_link_holds_the_current_pages_settings_only(app):
    app = open_link(app, "draw", {})
    app.slider(key="stroke_width.widget").set_value(31).run()
    assert app.query_params["stroke_width"] == "31"
    app.switch_page(PATHS["augment"]).run()
    assert "stroke_width" not in app.query_params and "aug_digit" in app.query_params
    app.switch_page(PATHS["draw"]).run()
    assert app.query_params["stroke_width"] == "31" and "aug_digit" not in app.query_params
    app.slider(key="stroke_width.widget").set_value(22).run()  # the default: left out of the link
    assert "stroke_width" not in app.query_params


def test_a_link_reproduces_the_augmentation_lab(app, root):
    app = open_link(app, "augment", {})
    app.number_input(key="aug_seed.widget").set_value(99).run()
    next(b for b in app.button if b.key and b.key.startswith("aug-remove-")).click().run()
    link = dict(app.query_params)
    assert link["aug_seed"] == "99" and "aug_pipeline" in link and "aug_digit" in link
    again = open_link(AppTest.from_file(str(root / "app.py"), default_timeout=180), "augment", link)
    assert not again.exception
    assert again.number_input(key="aug_seed.widget").value == 99
    assert [s["name"] for s in again.session_state["aug_steps"]] == [s["name"] for s in app.session_state["aug_steps"]]
    assert again.code[0].value == app.code[0].value  # the exported pipeline


@pytest.mark.parametrize(
    ("page", "query", "expected"),
    [
        ("draw", {"stroke_width": "999", "draw_source": "camera", "mnist_index": "-4"}, {"stroke_width.widget": 22}),
        ("augment", {"aug_pipeline": '{"steps": [{"name": "os.system"}]}', "aug_seed": "x"}, {"aug_seed.widget": 0}),
        ("photo", {"photo_sample": "../../etc/passwd", "photo_model": "nope", "photo_class": "5000"}, {}),
        ("finetune", {"ft_data": "imagenet", "ft_job": "0"}, {}),
    ],
)
def test_hand_edited_links_give_the_defaults(app, page, query, expected):
    opened = open_link(app, page, query)
    assert not opened.exception and not opened.error
    for name, value in expected.items():
        assert opened.session_state[name] == value
    for name in query:
        assert opened.query_params.get(name) != query[name]  # rewritten from what the page shows


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 80, 3), color, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_link_to_an_uploaded_photo_works_while_the_server_keeps_it(app, root):
    from ui.scenes import kept_uploads

    photo = png((200, 40, 40))
    app = open_link(app, "photo", {"photo_source": "upload"})
    app.file_uploader[0].set_value(("red.png", photo, "image/png")).run()
    link = dict(app.query_params)
    assert link["photo_upload"] == hashlib.sha1(photo).hexdigest() and link["photo_source"] == "upload"
    again = open_link(AppTest.from_file(str(root / "app.py"), default_timeout=180), "photo", link)
    assert not again.exception and any("this link names" in c.value for c in again.caption)
    assert any(c.startswith("The photo: 80 × 64") for image in again.get("image") for c in image.captions)
    kept_uploads().clear()  # the server forgot it (restarted, or newer uploads took its place)
    gone = open_link(AppTest.from_file(str(root / "app.py"), default_timeout=180), "photo", link)
    assert not gone.exception and any("no longer kept" in info.value for info in gone.info)


def test_kept_uploads_are_bounded_in_bytes():
    kept = BoundedCache(max_bytes=100)  # what kept_uploads() is, with a smaller bound
    for name in "abc":
        kept.put(name, bytes(40))
    assert kept.get("a") is None and kept.get("c") == bytes(40) and kept.get("b") == bytes(40)
    kept.put("d", bytes(40))  # "b" was read after "c": "c" is now the oldest
    assert kept.get("c") is None and kept.get("b") is not None


SCENE = '[[scene]]\ntitle = "A seven"\nlink = "/draw?stroke_width=30"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[scene]\n", "not valid TOML"),
        ("", "one or more"),
        ('[[scene]]\ntitle = "x"\n', "exactly a title and a link"),
        ('[[scene]]\ntitle = ""\nlink = "/draw"\n', "title must be text"),
        ('[[scene]]\ntitle = "x"\nlink = "/admin"\n', "no page '/admin'"),
        (SCENE * 201, "at most 200"),
        (SCENE + "[other]\n", "one or more"),
    ],
)
def test_a_bad_scenes_file_is_refused_with_the_reason(text, message):
    with pytest.raises(SceneError, match=message):
        parse_scenes(text, "scenes.toml")


def test_a_scene_link_may_be_a_full_address_and_keeps_its_query():
    (scene,) = parse_scenes(SCENE.replace("/draw", "http://class.example:8501/draw"), "scenes.toml")
    assert (scene.page, scene.query) == ("draw", (("stroke_width", "30"),))
    assert scene.link(scene="4", projector="1") == "/draw?stroke_width=30&scene=4&projector=1"


def test_the_scenes_file_comes_from_the_environment_then_the_class_configuration(tmp_path, monkeypatch):
    monkeypatch.delenv("VISION_SCENES", raising=False)
    config = tmp_path / "class.toml"
    config.write_text('[lecture]\nscenes = "week3.toml"\n\n[teacher]\npassword = "owl"\n')
    monkeypatch.setenv("VISION_EXPLORER_CONFIG", str(config))
    assert scenes_path() == tmp_path / "week3.toml"
    assert load_policy().is_teacher_password("owl")  # the class policy accepts the [lecture] table
    monkeypatch.setenv("VISION_SCENES", "elsewhere.toml")
    assert str(scenes_path()) == "elsewhere.toml"


def test_the_projector_makes_every_chart_tall_enough():
    steps = pd.DataFrame({"kind": ["step"] * 3 + ["epoch"] * 2, "step": [1, 2, 3, 3, 3], "loss": [2.0, 1.5, 1.0, 1.1, 1.0],
                          "epoch": [0, 0, 0, 1, 1], "split": [None] * 3 + ["train", "val"], "accuracy": [None] * 3 + [0.8, 0.7]})  # fmt: skip
    curves = pd.DataFrame({"run": ["a", "a"], "epoch": [1, 2], "accuracy": [0.8, 0.9], "loss": [0.5, 0.4]})
    probe = pd.DataFrame({"value": [0, 1], "model": ["m", "m"], "confidence": [0.9, 0.2], "correct": [True, False],
                          "predicted": [7, 1], "predicted_confidence": [0.9, 0.6]})  # fmt: skip
    charts = [step_loss_chart(steps), epoch_chart(steps), overlay_chart(curves), robustness_chart(probe, 7, "x"),
              confusion_chart(np.eye(10, dtype=int).tolist())]  # fmt: skip
    for chart in charts:
        assert sized(chart, projector=False) is chart
        spec = sized(chart, projector=True).to_dict()
        assert spec["height"] >= PROJECTOR_CHART_PX > MIN_CHART_PX and spec["config"]["axis"]["labelFontSize"] >= 20
    assert sized(confusion_chart(np.eye(10, dtype=int).tolist()), True).to_dict()["width"] == PROJECTOR_CHART_PX
    assert isinstance(sized(charts[0], True), alt.LayerChart)


def test_the_projector_flag_in_a_link_turns_the_view_on(app):
    opened = open_link(app, "augment", {"projector": "1"})
    assert not opened.exception and opened.session_state["projector"] is True
    assert opened.query_params["projector"] == "1"
    next(b for b in opened.button if b.label == "Leave projector view").click().run()
    assert "projector" not in opened.query_params and opened.session_state["projector"] is False
    assert opened.toggle(key="projector.widget").value is False  # back in the sidebar, off


def test_the_photo_explorers_side_by_side_models_are_in_its_link(app, tmp_path):
    """Issue 12 lists the models among a page's state: the Photo explorer's "compare side by side" too."""
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    from ui.resources import cached_model, clear_photo_caches
    from vision_core.models.imagenet import hub_checkpoint_path

    path = hub_checkpoint_path(ResNet50_Weights.DEFAULT)  # under this test's TORCH_HOME
    path.parent.mkdir(parents=True)
    torch.save(resnet50().state_dict(), path)  # random weights: ResNet-50 is offered, EfficientNet-Lite0 beside it
    cached_model.clear()
    try:
        linked = open_link(app, "photo", {"photo_compare": "efficientnet_lite0"})
        assert not linked.exception
        side = linked.multiselect(key="compare-resnet50")
        assert side.value == ["efficientnet_lite0"]
        assert dict(linked.query_params)["photo_compare"] == "efficientnet_lite0"
        side.set_value([]).run()  # back to the page's default beside a CNN (no transformer here): out of the link
        assert "photo_compare" not in dict(linked.query_params)
    finally:
        cached_model.clear()  # this random ResNet-50, and what it said, must not answer for other tests
        clear_photo_caches()
