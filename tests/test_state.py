"""ui/state.py: declared session settings that survive runs without their widget, and their URL mirror."""

import pytest
from streamlit.testing.v1 import AppTest

from ui import state


def settings_page() -> None:
    """A page with a widget bound to a setting, shown only while a checkbox is ticked, and a URL-mirrored one."""
    import streamlit as st

    from ui.state import Setting, declared

    width = declared().get("test_width") or Setting("test_width", 5, encode=str, decode=int)
    zoom = declared().get("test_zoom") or Setting("test_zoom", 1, encode=str, decode=int, in_url=True)
    if st.checkbox("show", value=True, key="show"):
        st.number_input("width", 1, 50, **width.widget())
    st.number_input("zoom", 1, 9, **zoom.widget())
    st.write(f"width={width.get()} zoom={zoom.get()}")


@pytest.fixture
def page() -> AppTest:
    return AppTest.from_function(settings_page, default_timeout=30).run()


def shown(app: AppTest) -> str:
    return app.markdown[-1].value


def test_a_bound_widget_keeps_its_value_through_runs_without_it(page):
    page.number_input(key="test_width.widget").set_value(17).run()
    page.checkbox(key="show").uncheck().run()  # Streamlit forgets the widget's own state here
    assert "width=17" in shown(page)
    page.checkbox(key="show").check().run()
    assert page.number_input(key="test_width.widget").value == 17


def test_a_url_setting_starts_from_the_link_and_writes_back(page):
    linked = AppTest.from_function(settings_page, default_timeout=30)
    linked.query_params["test_zoom"] = "7"
    linked.run()
    assert "zoom=7" in shown(linked) and linked.number_input(key="test_zoom.widget").value == 7
    linked.number_input(key="test_zoom.widget").set_value(3).run()
    assert linked.query_params["test_zoom"] == "3" and "zoom=3" in shown(linked)


def test_a_bad_value_in_the_link_gives_the_default():
    linked = AppTest.from_function(settings_page, default_timeout=30)
    linked.query_params["test_zoom"] = "lots"
    linked.run()
    assert not linked.exception and "zoom=1" in shown(linked)


def test_a_name_is_declared_once():
    with pytest.raises(ValueError, match="declared twice"):
        state.Setting("stroke_width", 3)


def test_a_url_setting_needs_a_codec():
    with pytest.raises(ValueError, match="encode and decode"):
        state.Setting("test_no_codec", 3, in_url=True)


def test_the_shared_keys_keep_the_names_other_pages_read():
    """The Augmentation lab and Compare read "last_drawing" by name until they adopt ui/state.py; the Fine-tune
    test drives the Draw page's picker by its key "draw_runs"."""
    assert state.LAST_DRAWING.name == "last_drawing"
    assert state.RUNS_ON_DRAW.widget_key == "draw_runs"
    assert {"stroke_width", "draw_source", "drawing", "mnist_index", "runs_on_draw"} <= set(state.declared())
