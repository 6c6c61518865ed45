"""The augmentation lab's widgets and image grids. The pipeline being edited lives in ``st.session_state``
as plain dicts (``{"id", "name", "params", "p"}``); ``vision_core.augment.Step`` validates them."""

from __future__ import annotations

from typing import Any

import streamlit as st
from PIL import Image

from vision_core.augment import CATALOGUE, Param, PipelineSpec, StepImage, default_params

STEPS = "aug_steps"  # session-state key of the pipeline being edited
_NEXT_ID = "aug_next_id"
DIGIT_TILE = 112  # px: a 28 x 28 digit enlarged 4x with crisp pixels


def _new_id() -> int:
    st.session_state[_NEXT_ID] = st.session_state.get(_NEXT_ID, 0) + 1
    return st.session_state[_NEXT_ID]


def load_spec(spec: PipelineSpec) -> None:
    """Replace the edited pipeline by ``spec`` (fresh ids, so every widget starts from the spec's values)."""
    st.session_state[STEPS] = [{"id": _new_id(), "name": s.name, "params": s.values, "p": s.p} for s in spec.steps]


def add_step(choice_key: str, digit: bool) -> None:
    """Append the transform chosen in the selectbox ``choice_key`` (read at click time, not at render time)."""
    name = st.session_state[choice_key]
    step = {"id": _new_id(), "name": name, "params": default_params(name, digit), "p": CATALOGUE[name].default_p}
    st.session_state[STEPS].append(step)


def remove_step(index: int) -> None:
    del st.session_state[STEPS][index]


def move_step(index: int, offset: int) -> None:
    steps = st.session_state[STEPS]
    steps[index], steps[index + offset] = steps[index + offset], steps[index]


def _param_input(param: Param, value: Any, key: str) -> Any:
    """One widget per parameter. No min/max on numbers: ``Step`` validates, so nonsense gets a clear message."""
    label, helptext = param.name.replace("_", " "), param.help or None
    if param.kind == "bool":
        return st.checkbox(label, value=bool(value), key=key, help=helptext)
    if param.kind == "choice":
        return st.selectbox(label, param.choices, index=param.choices.index(value), key=key, help=helptext)
    if param.kind == "int":
        return st.number_input(label, value=int(value), step=1, key=key, help=helptext)
    if param.kind == "float":
        return st.number_input(label, value=float(value), step=0.05, format="%.3f", key=key, help=helptext)
    low, high = st.columns(2)  # a span: (low, high)
    return (
        low.number_input(
            f"{label} from", value=float(value[0]), step=0.05, format="%.3f", key=f"{key}-low", help=helptext
        ),
        high.number_input(f"{label} to", value=float(value[1]), step=0.05, format="%.3f", key=f"{key}-high"),
    )


def edit_step(step: dict[str, Any], index: int, count: int):
    """Draw one step's card (title, move/remove buttons, parameters, probability), writing values into ``step``.

    Returns the card's container, so the page can put a validation message inside it.
    """
    info, sid = CATALOGUE[step["name"]], step["id"]
    card = st.container(border=True)
    with card:
        title, up, down, remove = st.columns([8, 1, 1, 1], vertical_alignment="center")
        title.markdown(f"**{index + 1}. {info.title}** · `{info.target}` — {info.summary}")
        up.button(
            ":material/arrow_upward:",
            key=f"aug-up-{sid}",
            on_click=move_step,
            args=(index, -1),
            disabled=index == 0,
            help="earlier",
        )
        down.button(
            ":material/arrow_downward:",
            key=f"aug-down-{sid}",
            on_click=move_step,
            args=(index, 1),
            disabled=index == count - 1,
            help="later",
        )
        remove.button(
            ":material/close:", key=f"aug-remove-{sid}", on_click=remove_step, args=(index,), help="remove this step"
        )
        columns = st.columns(4)
        for number, param in enumerate(info.params):
            with columns[number % 4]:
                step["params"][param.name] = _param_input(param, step["params"][param.name], f"aug-{sid}-{param.name}")
        with columns[len(info.params) % 4]:
            step["p"] = st.number_input(
                "probability", value=float(step["p"]), step=0.05, format="%.2f", key=f"aug-{sid}-p",
                help="how often the step applies" + (" (torchvision's own p)" if info.native_p else " (v2.RandomApply)"),
            )  # fmt: skip
    return card


def enlarge(image: Image.Image, digit: bool) -> Image.Image:
    """Digits are shown 4x with crisp pixels; photos as they are (``st.image`` scales them to the column)."""
    if not digit:
        return image
    scale = DIGIT_TILE / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.NEAREST)


def show_grid(images: list[Image.Image], columns: int, digit: bool) -> None:
    for start in range(0, len(images), columns):
        for column, image in zip(st.columns(columns), images[start : start + columns], strict=False):
            column.image(enlarge(image, digit), width="stretch" if not digit else "content")


def show_stages(shots: list[StepImage], digit: bool, per_row: int = 6) -> None:
    for start in range(0, len(shots), per_row):
        row = shots[start : start + per_row]
        for column, shot in zip(st.columns(per_row), row, strict=False):
            column.image(enlarge(shot.image, digit), caption=shot.title, width="stretch" if not digit else "content")
