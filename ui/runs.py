"""A training run on a page: its progress and live charts, its results, and keeping it (save, download, try it).

Shared by the Fine-tune and My classes pages. Draws only: every action is one call to the run service
(``ui.resources.run_service``) or to ``vision_core.runs``.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
import torch

from ui import projector
from ui.charts import confusion_chart, epoch_chart, step_loss_chart
from ui.owner import current_caller
from ui.resources import cached_split, class_policy, run_service, show_on_draw_page
from vision_core import get_dataset, to_image, to_input
from vision_core.datasets import MY_CLASSES
from vision_core.jobs import Caller, JobNotFoundError, JobView, NotYourRunError, events_frame
from vision_core.my_classes import load_class_set
from vision_core.runs import RUN_NAME, RunNameError, RunSaveError, model_from_weights, save_run
from vision_core.training import misclassified, near_chance

REFRESH_S = 1.0
_FRAMES = "run_frames"  # session state: job id -> (events read so far, their table): each refresh reads only new ones


def event_table(job: JobView) -> pd.DataFrame:
    """The run's events as a table, fetching only those this session has not seen yet."""
    frames: dict[int, tuple[int, pd.DataFrame]] = st.session_state.setdefault(_FRAMES, {})
    count, table = frames.get(job.id, (0, events_frame([])))
    if job.event_count > count:
        new = run_service().events(job.id, since=count)
        table = pd.concat([table, events_frame(new)], ignore_index=True) if count else events_frame(new)
        frames[job.id] = (count + len(new), table)
    for stale in [key for key in frames if key != job.id][:-4]:  # keep a few runs' tables per session, not all
        del frames[stale]
    return table


def show_progress(job: JobView, caller: Caller) -> None:
    if job.state == "queued":
        st.info(
            f"Waiting in the {job.device_key} queue: position {job.position}, with {job.position} run(s) ahead of it "
            "(the one running included). One run at a time per device.",
            icon=":material/hourglass_top:",
        )
    elif job.state == "running":
        p = job.progress
        eta = f" · about {p.eta_s:.0f} s of training left" if p.eta_s is not None else ""
        speed = f" · {p.samples_per_s:,.0f} images/s" if p.samples_per_s else ""
        text = f"Step {p.step:,} of {p.total_steps:,}{eta}{speed} · on {job.device}" if p.total_steps else f"Starting the run's own process on {job.device} and loading its data…"  # fmt: skip
        st.progress(p.fraction, text=text)
    may_stop = job.active and (job.owned_by(caller) or caller.teacher)
    if may_stop and st.button("Stop" if job.state == "running" else "Cancel", icon=":material/stop:", key=f"stop-{job.id}"):  # fmt: skip
        run_service().cancel(job.id, caller)
        st.rerun()


def show_charts(job: JobView) -> None:
    events = event_table(job)
    loss_column, epoch_loss_column, accuracy_column = st.columns(3)
    loss_column.altair_chart(projector.chart(step_loss_chart(events)), width="stretch")
    epoch_loss_column.altair_chart(projector.chart(epoch_chart(events, "loss")), width="stretch")
    accuracy_column.altair_chart(projector.chart(epoch_chart(events, "accuracy")), width="stretch")


def find_run(job_id: int | None) -> JobView | None:
    """The run with this id, or None (never submitted, or forgotten by the queue)."""
    try:
        return run_service().get(job_id) if job_id is not None else None
    except JobNotFoundError:
        return None


def show_live(first: JobView) -> None:
    """Progress and charts, redrawn every second while the run is active (only this part of the page reruns)."""

    @st.fragment(run_every=REFRESH_S if first.active else None)
    def live() -> None:
        job = run_service().get(first.id)
        show_progress(job, current_caller())
        show_charts(job)
        if first.active and not job.active:
            st.rerun(scope="app")  # the run ended: redraw the whole page once, with results and without the timer

    live()


def show_ending(job: JobView) -> None:
    """Why a run that did not finish ended."""
    if job.state == "failed":
        st.error(f"The run failed: {job.error}", icon=":material/error:")
    elif job.state == "cancelled":
        st.info("This run was cancelled before it started.")
    elif job.state == "stopped":
        last = job.progress
        where = f" at step {last.step:,} of {last.total_steps:,} after {last.elapsed:.1f} s" if last.total_steps else ""
        reason = f" ({job.error})" if job.error else ""
        st.warning(
            f"Stopped{where}{reason}. The charts keep what it learnt so far; a stopped run is not tested, so it cannot "
            "be saved.",
            icon=":material/stop_circle:",
        )


def test_images(job: JobView) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images and labels (uint8), in the order its answers are in."""
    if job.cfg.dataset == MY_CLASSES:
        held_out = load_class_set(job.cfg.class_set).split(seed=job.cfg.seed)[1]
        return held_out.images, held_out.labels
    test = cached_split(job.cfg.dataset, "test")
    return test.images, test.labels


def compact_count(n: int) -> str:
    """57044810 -> "57.0 M", 61706 -> "61.7 k": short enough for a metric on a narrow column."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)


def show_results(job: JobView) -> None:
    result = job.result
    st.subheader("Results")
    # Three to a row: six in one row cut long numbers short on a laptop ("57,044,...").
    cols = [*st.columns(3), *st.columns(3)]
    cols[0].metric("Test accuracy", f"{result.accuracy:.2%}")
    cols[1].metric("Macro-F1", f"{result.f1_macro:.4f}")
    cols[2].metric("Test loss", f"{result.loss:.4f}")
    cols[3].metric("Training time", f"{result.train_seconds:.1f} s")
    cols[4].metric("Images per second", f"{result.samples_per_s:,.0f}")
    cols[5].metric("Parameters", compact_count(result.num_params), help=f"{result.num_params:,} parameters")
    held = "held-out pictures" if job.cfg.dataset == MY_CLASSES else f"{get_dataset(job.cfg.dataset).title} test images"
    st.caption(f"Tested on {result.n_test:,} {held}; trained on {result.device}.")
    if near_chance(result):
        st.warning(
            f"This run is at chance level ({result.accuracy:.0%}, the same as guessing one of {len(result.classes)} "
            "classes): it learnt next to nothing. Give it more images or epochs, a learning rate between 1e-3 and "
            "3e-3, or start from a trained model.",
            icon=":material/trending_flat:",
        )
    matrix_column, gallery_column = st.columns([1, 1])
    with matrix_column:
        st.markdown("**Confusion matrix**")
        st.altair_chart(projector.chart(confusion_chart(result.confusion)), width="content")
    with gallery_column:
        images, labels = test_images(job)
        mistakes = misclassified(result, labels, limit=24)
        wrong = result.n_test - sum(result.confusion[d][d] for d in range(len(result.confusion)))
        st.markdown(f"**Misclassified test images**: {wrong:,} in all, the most confident mistakes first")
        names = result.classes
        for row in range(0, len(mistakes), 6):
            for column, mistake in zip(st.columns(6), mistakes[row : row + 6], strict=False):
                picture = to_input(images[mistake.index : mistake.index + 1])[0]
                caption = f"{names[mistake.label]} → {names[mistake.predicted]} ({mistake.confidence:.0%})"
                column.image(to_image(picture, size=84) if picture.shape[0] == 1 else _rgb(picture), caption=caption)
        if not mistakes:
            st.success("No mistakes on these test images.")


def _rgb(picture: torch.Tensor):
    from torchvision.transforms.functional import to_pil_image

    return to_pil_image(picture).resize((84, 84))


def keep_run(job: JobView, caller: Caller, after_save: Callable[[str], None] | None = None) -> None:
    """Save the run as a model (it joins the pages at once) or download its bundle: for its owner only."""
    st.subheader("Keep it")
    if not (job.owned_by(caller) or caller.teacher):
        st.caption("This is someone else's run: you can watch it, and only its owner can save or download it.")
        return
    name_column, save_column = st.columns([3, 1], vertical_alignment="bottom")
    default = f"{job.cfg.model}-run{job.id}".replace("_", "-")
    name = name_column.text_input("Name", value=default, key=f"ft_name_{job.id}", max_chars=48)
    if save_column.button("Save", icon=":material/save:", width="stretch", key=f"ft_save_{job.id}"):
        service = run_service()
        try:
            saved = save_run(
                job.cfg, job.result, service.weights(job.id, caller), name, service.events(job.id),
                owner=caller.owner, quota=class_policy().saves,
            )  # fmt: skip
        except RunSaveError as error:  # a quota, a full disk, a read-only folder: the results above stay
            st.error(f"Saving failed: {error}", icon=":material/save:")
            st.info("This run's results stay on this page, and the download bundle below needs no disk space.")
        except (RunNameError, NotYourRunError, ValueError) as error:
            st.error(f"Cannot save: {error}")
        else:
            show_on_draw_page(saved.name)
            if after_save is not None:
                after_save(saved.name)
            st.success(f"Saved as **{saved.name}** (safetensors + model card): it is on the pages and the Compare scoreboard now.", icon=":material/save:")  # fmt: skip
    bundle_name = name.strip() if RUN_NAME.fullmatch(name.strip()) else default
    st.download_button(
        "Download bundle (weights, model card, config, augmentation code, metrics)",
        data=lambda: run_service().bundle(job.id, caller, bundle_name),  # built once, and only when clicked
        file_name=f"{bundle_name}.zip", mime="application/zip", icon=":material/inventory_2:", on_click="ignore",
        key=f"ft_bundle_{job.id}",
    )  # fmt: skip


@st.cache_resource(max_entries=4, show_spinner="Loading the trained model…")
def trained_model(job_id: int, owner: str) -> torch.nn.Module:
    """A finished run's model, to try it out (a few at a time per server: they are loaded only when asked for)."""
    return model_from_weights(run_service().weights(job_id, Caller(owner)))


def try_it(model: torch.nn.Module, dataset: str, classes: tuple[str, ...], key: str) -> None:
    """Upload a photo (or take one with the camera) and see the model's answer: the top classes with their chance."""
    from vision_core import ImageError, load_image

    source = st.radio(
        "Picture", ["Upload", "Camera"], horizontal=True, key=f"{key}-source", label_visibility="collapsed"
    )
    if source == "Upload":
        picture = st.file_uploader("A photo", type=["jpg", "jpeg", "png", "webp", "gif", "bmp"], key=f"{key}-upload")
    else:
        picture = st.camera_input("Take a picture", key=f"{key}-camera")
    if picture is None:
        return
    try:
        photo = load_image(picture.getvalue(), draft_size=(256, 256), max_side=512)
    except ImageError as error:
        st.error(f"Cannot use this file: {error}")
        return
    model_input = get_dataset(dataset).preprocess(photo)  # the framing the training images had
    with torch.inference_mode():
        probabilities = torch.softmax(model(model_input.unsqueeze(0)).float(), dim=1)[0]
    photo_column, answer_column = st.columns([1, 2])
    photo_column.image(photo, caption="Your picture", width=200)
    with answer_column:
        for index in probabilities.argsort(descending=True)[: min(3, len(classes))].tolist():
            st.progress(float(probabilities[index]), text=f"{classes[index]}: {probabilities[index]:.1%}")
