"""My classes: name 2 to 10 classes, give each a few pictures, train a head on a frozen EfficientNet-Lite0 in seconds,
then try it on new photos or the camera (as in Teachable Machine, on this machine, offline)."""

import dataclasses
import hashlib

import streamlit as st
import torch
from torchvision.transforms.functional import to_pil_image

from ui.owner import current_caller
from ui.resources import run_service
from ui.runs import find_run, keep_run, show_ending, show_live, show_results, trained_model, try_it
from vision_core.cost import BudgetError
from vision_core.datasets import MY_CLASSES
from vision_core.images import ImageError, load_image
from vision_core.jobs import QueueFullError
from vision_core.my_classes import (
    MAX_CLASSES,
    MAX_IMAGES,
    MAX_PER_CLASS,
    MIN_CLASSES,
    MIN_PER_CLASS,
    ClassSetError,
    build_class_set,
    prepare_picture,
    read_pictures,
    read_zip,
)
from vision_core.runs import RUNS_DIR
from vision_core.training import TrainConfigError, default_config

PICTURES, NAMES, NOTES = "my_pictures", "my_class_names", "my_notes"
CLASS_SET, JOB = "my_classes_file", "my_classes_job"
SETS_DIR = RUNS_DIR / ".work" / "class-sets"  # what a run reads in its own process (bounded: 500 pictures, ~25 MB)
service, caller = run_service(), current_caller()
pictures: dict[int, list[torch.Tensor]] = st.session_state.setdefault(
    PICTURES, {}
)  # class number -> (3, 128, 128) uint8


def add(number: int, new: list[torch.Tensor], problems: list[str]) -> None:
    """Keep ``new`` pictures for class ``number`` (up to the limit) and what went wrong, to show on the next run."""
    room = MAX_PER_CLASS - len(pictures.get(number, []))
    pictures.setdefault(number, []).extend(new[:room])
    if len(new) > room:
        problems.append(f"only {max(room, 0)} of the {len(new)} pictures were added: a class takes at most {MAX_PER_CLASS}")  # fmt: skip
    st.session_state[NOTES] = problems[:5]
    st.session_state[f"my_round_{number}"] = st.session_state.get(f"my_round_{number}", 0) + 1  # empties the uploader


def on_upload(number: int, key: str) -> None:
    """The uploader's callback: each batch of files is read once (a rerun does not read them again)."""
    uploads = st.session_state.get(key) or []
    try:
        new, problems = read_pictures([(upload.name, upload.getvalue()) for upload in uploads])
    except ClassSetError as error:
        new, problems = [], [str(error)]
    add(number, new, [f"skipped {problem}" for problem in problems])


def on_camera(number: int, key: str) -> None:
    shot = st.session_state.get(key)
    if shot is None:
        return
    try:
        add(number, [prepare_picture(load_image(shot.getvalue()))], [])
    except ImageError as error:
        add(number, [], [f"cannot use this picture: {error}"])


def class_box(number: int) -> None:
    """One class: its name, uploads, the camera, and its pictures so far."""
    with st.container(border=True):
        st.session_state.setdefault(f"my_name_{number}", f"class {number + 1}")
        name = st.text_input(f"Class {number + 1}", key=f"my_name_{number}", max_chars=40)
        st.session_state.setdefault(NAMES, {})[number] = name
        round_ = st.session_state.get(f"my_round_{number}", 0)
        key = f"my_upload_{number}_{round_}"
        st.file_uploader(
            f"Pictures of {name}", type=["jpg", "jpeg", "png", "webp", "gif", "bmp"], accept_multiple_files=True,
            key=key, on_change=on_upload, args=(number, key),
        )  # fmt: skip
        if st.toggle("Camera", key=f"my_camera_on_{number}"):
            camera = f"my_camera_{number}_{round_}"
            st.camera_input(f"A picture of {name}", key=camera, on_change=on_camera, args=(number, camera))
        mine = pictures.get(number, [])
        st.caption(f"{len(mine)} picture(s)" + ("" if len(mine) >= MIN_PER_CLASS else f": at least {MIN_PER_CLASS} needed"))  # fmt: skip
        if mine:
            st.image([to_pil_image(p) for p in mine[-8:]], width=56)
            if st.button("Remove all", key=f"my_clear_{number}", icon=":material/delete:"):
                pictures[number] = []
                st.rerun()


def class_set_file() -> str:
    """The pictures as one class-set file the run's process reads (named by its contents: the same set, one file)."""
    count = st.session_state.my_count
    names = {st.session_state[NAMES][n]: pictures.get(n, []) for n in range(count)}
    class_set = build_class_set(names)
    data = class_set.to_bytes()
    path = SETS_DIR / f"{hashlib.sha256(data).hexdigest()[:24]}.safetensors"
    if not path.is_file():
        SETS_DIR.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def train() -> None:
    try:
        base = default_config("effnet_lite0", "auto", MY_CLASSES)
        cfg = dataclasses.replace(base, class_set=class_set_file())
        job = service.submit(cfg, caller, label="My classes · EfficientNet-Lite0 head (frozen backbone)")
    except (ClassSetError, TrainConfigError, BudgetError, QueueFullError, ValueError) as error:
        st.error(f"Cannot train yet: {error}", icon=":material/block:")
    else:
        st.session_state[CLASS_SET], st.session_state[JOB] = cfg.class_set, job.id


st.title("My classes")
st.caption(
    f"Teach a network your own classes: name {MIN_CLASSES} to {MAX_CLASSES}, give each at least {MIN_PER_CLASS} pictures "
    f"(upload many at once, a zip with one folder per class, or the camera; at most {MAX_PER_CLASS} per class and "
    f"{MAX_IMAGES} in all). Training puts a new head on EfficientNet-Lite0, whose ImageNet features stay frozen: "
    "it takes seconds, on this machine, offline."
)
st.number_input("Number of classes", min_value=MIN_CLASSES, max_value=MAX_CLASSES, value=MIN_CLASSES, key="my_count")
with st.expander("Or upload a zip with one folder per class", icon=":material/folder_zip:"):
    archive = st.file_uploader("A zip of class folders", type=["zip"], key="my_zip")
    if archive is not None and st.button("Use this zip", icon=":material/upload_file:"):
        try:
            found, problems = read_zip(archive.getvalue())
            build_class_set(found)  # the same checks as for training: say now what is wrong
        except ClassSetError as error:
            st.error(f"Cannot use this zip: {error}")
        else:
            st.session_state.my_count = len(found)
            for number, (name, new) in enumerate(found.items()):
                st.session_state[f"my_name_{number}"] = name
                pictures[number] = list(new)
            for problem in problems[:5]:
                st.warning(f"Skipped {problem}")
            st.rerun()

for note in st.session_state.pop(NOTES, []):
    st.warning(note[0].upper() + note[1:], icon=":material/warning:")
columns = st.columns(min(st.session_state.my_count, 3))
for number in range(st.session_state.my_count):
    with columns[number % len(columns)]:
        class_box(number)

if st.button("Train", type="primary", icon=":material/play_arrow:"):
    train()

job = find_run(st.session_state.get(JOB))
if job is not None:
    show_live(job)
    show_ending(job)
    if job.result is not None:
        st.subheader("Try it")
        try_it(trained_model(job.id, job.owner), MY_CLASSES, job.result.classes, key=f"my-try-{job.id}")
        show_results(job)
        keep_run(job, caller)
