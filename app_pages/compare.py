"""Compare: a scoreboard of every digit checkpoint, runs overlaid, a look inside each model, and sweeps."""

import uuid

import streamlit as st

from ui.charts import overlay_chart, scaling_chart, sweep_bar_chart
from ui.resources import cached_mnist, digit_models, run_queue, show_on_draw_page
from vision_core import describe_device, get_spec, list_models, mnist_to_input, resolve_device, to_image
from vision_core.checkpoints import CheckpointError
from vision_core.compare import (
    MAX_SWEEP,
    CompareError,
    architecture_summary,
    filter_image,
    first_conv,
    grid_configs,
    history_table,
    scaling_configs,
    scoreboard,
    sweep_table,
)
from vision_core.inside import attention_maps, find_vit
from vision_core.registry import import_run
from vision_core.training import TRAIN_SIZES, TrainConfig, TrainConfigError
from vision_core.visuals import heat_image, overlay_image

REFRESH_S = 2.0
on_gpu = resolve_device("auto").type == "cuda"
queue = run_queue()
models, problems = digit_models(list_models(task="digits"))  # the scoreboard lists every checkpoint

st.title("Compare")
st.caption(
    "Every digit checkpoint side by side (the shipped models and the runs saved from the Fine-tune page), their "
    "training curves, what is inside each one, and the course's sweeps: a hyperparameter grid and data-size scaling."
)
for name, message in problems.items():
    st.warning(f"{get_spec(name).title} is unavailable: {message}")

# --- Scoreboard ----------------------------------------------------------------------------------------------------
st.subheader("Scoreboard")
names = tuple(sorted(models))
again = st.button("Measure latency again", icon=":material/timer:")
if again or st.session_state.get("cmp_scores_for") != names:
    st.session_state["cmp_scores"] = scoreboard(models)
    st.session_state["cmp_scores_for"] = names
scores = st.session_state["cmp_scores"]
st.dataframe(
    scores.drop(columns=["note"], errors="ignore"),
    hide_index=True,
    column_config={
        "accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
        "macro-F1": st.column_config.NumberColumn(format="%.4f"),
        "loss": st.column_config.NumberColumn(format="%.4f"),
        "parameters": st.column_config.NumberColumn(format="localized"),
        "test images": st.column_config.NumberColumn(format="localized"),
        "latency (ms)": st.column_config.NumberColumn(
            format="%.2f", help="median time for one digit, measured on this machine"
        ),
    },
)
st.caption(
    f"Click a column header to sort. Accuracy, macro-F1 and loss are on the MNIST test images named in each model card; "
    f"latency is the median of 30 single-digit forward passes measured just now on {describe_device()}."
)


# --- Import a run ---------------------------------------------------------------------------------------------------
def import_upload() -> None:
    """Button callback, so the scoreboard above already lists the imported model on this rerun."""
    upload = st.session_state.get("cmp_import_file")
    if upload is None:
        st.session_state["cmp_import_result"] = ("error", "Choose a run bundle (.zip) first.")
        return
    try:
        spec = import_run(upload.getvalue(), name=st.session_state.get("cmp_import_name", "").strip() or None)
    except CheckpointError as error:
        st.session_state["cmp_import_result"] = ("error", f"Cannot import {upload.name}: {error}")
    else:
        show_on_draw_page(spec.name)
        st.session_state["cmp_import_result"] = (
            "success",
            f"Imported {spec.title} ({spec.name}): it is on the scoreboard and on the Draw page.",
        )


with st.expander("Import a run bundle", icon=":material/inventory_2:"):
    st.caption(
        "A zip downloaded from the Fine-tune page (weights as safetensors and the NAME.json model card). Everything "
        "is checked before it is saved: the card, the architecture and the shape of every tensor. Nothing is unpickled. "
        "Bundles of the ImageNet transfer models (VGG16, AlexNet, ResNet-18) exceed the 25 MB limit."
    )
    upload_column, name_column = st.columns([3, 2])
    upload_column.file_uploader("Run bundle", type=["zip"], key="cmp_import_file")
    name_column.text_input("Save as (optional)", key="cmp_import_name", help="a new name, if the card's is taken")
    st.button("Import", icon=":material/upload_file:", on_click=import_upload, key="cmp_import_go")
    if "cmp_import_result" in st.session_state:
        kind, message = st.session_state.pop("cmp_import_result")
        (st.success if kind == "success" else st.error)(message)

# --- Runs overlaid ---------------------------------------------------------------------------------------------------
st.subheader("Training curves")
history = history_table(queue.jobs())
if history.empty:
    st.info(
        "No training curves yet: runs from the Fine-tune page (and saved runs) appear here.",
        icon=":material/show_chart:",
    )
else:
    runs = list(dict.fromkeys(history["run"]))
    shown = st.multiselect("Runs", runs, default=runs[-8:], key="cmp_runs")
    st.altair_chart(overlay_chart(history[history["run"].isin(shown)]), width="stretch")

# --- Inside a model --------------------------------------------------------------------------------------------------
st.subheader("Inside a model")
if models:
    name = st.selectbox("Model", list(models), format_func=lambda n: get_spec(n).title, key="cmp_model")
    model, spec = models[name], get_spec(name)
    summary_tab, filters_tab, attention_tab = st.tabs(["Architecture", "First-layer filters", "Attention (ViT)"])
    with summary_tab:
        depth = st.slider("Depth", 1, 4, 3, key="cmp_depth", help="how many levels of nested modules to list")
        table = architecture_summary(model, spec.input_size, depth=depth)
        st.dataframe(
            table, hide_index=True, column_config={"parameters": st.column_config.NumberColumn(format="localized")}
        )
        st.caption(
            f"{int(table['parameters'].sum()):,} parameters in all (torchinfo, one {spec.input_size[1]} × {spec.input_size[2]} digit)."
        )
    with filters_tab:
        try:
            layer, weights = first_conv(model)
        except CompareError as error:
            st.info(str(error))
        else:
            st.image(
                filter_image(weights),
                caption=f"{layer}: {weights.shape[0]} kernels of {weights.shape[2]} × {weights.shape[3]} over {weights.shape[1]} channel(s), each scaled to its own range",
            )
    with attention_tab:
        if find_vit(model) is None:
            st.info(
                f"{spec.title} is a CNN: it has no attention. Pick the Vision Transformer.",
                icon=":material/visibility:",
            )
        else:
            digit = st.session_state.get("last_drawing")
            if digit is None:
                test = cached_mnist("test")
                digit = mnist_to_input(test.images[:1])[0]
                st.caption(
                    "No drawing yet: showing MNIST test digit #0. Draw a digit on the Draw page to see your own."
                )
            else:
                st.caption("Your latest drawing from the Draw page.")
            maps = attention_maps(model, digit)
            layers = maps.heads.shape[0]
            layer = layers  # a one-layer ViT has nothing to choose (and a slider needs min < max)
            if layers > 1:
                layer = st.slider(
                    "Layer", 1, layers, layers, key="cmp_layer", help="the class token's attention to the 7 × 7 patches"
                )
            source_column, rollout_column = st.columns(2)
            source_column.image(to_image(digit, size=224), caption=f"Input (the ViT says {maps.prediction})")
            rollout_column.image(overlay_image(digit, maps.rollout), caption="Attention rollout through all layers")
            head_columns = st.columns(maps.heads.shape[1])
            for head, column in enumerate(head_columns):
                column.image(heat_image(maps.heads[layer - 1, head]), caption=f"layer {layer}, head {head + 1}")

# --- Sweeps --------------------------------------------------------------------------------------------------------
st.subheader("Sweeps")
st.caption(
    "Each setting is queued as a short run in the same queue as the Fine-tune page"
    + ("." if on_gpu else ": on this CPU a sweep takes minutes, so the defaults are small (and say so).")
)
digit_names = list_models(task="digits")
grid_tab, scaling_tab = st.tabs(["Hyperparameter grid", "Data-size scaling"])
with grid_tab:
    a, b, c, d = st.columns(4)
    grid_model = a.selectbox("Model", digit_names, format_func=lambda n: get_spec(n).title, key="cmp_grid_model")
    batch_sizes = b.multiselect("Batch sizes", [32, 64, 128, 256, 512], default=[64, 128], key="cmp_grid_batch")
    lrs = c.multiselect("Learning rates", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], default=[3e-4, 1e-3, 3e-3], key="cmp_grid_lr")
    optimizers = d.multiselect("Optimizers", ["adam", "adamw", "sgd", "rmsprop"], default=["adam"], key="cmp_grid_opt")
    a, b = st.columns(2)
    grid_size = a.select_slider(
        "Training images",
        TRAIN_SIZES,
        value=60_000 if on_gpu else 6_000,
        format_func="{:,}".format,
        key="cmp_grid_size",
    )
    grid_epochs = b.number_input("Epochs per run", 1, 20, 2 if on_gpu else 1, key="cmp_grid_epochs")
    count = len(batch_sizes) * len(lrs) * len(optimizers)
    if st.button(
        f"Queue {count} runs", icon=":material/grid_on:", disabled=not 0 < count <= MAX_SWEEP, key="cmp_grid_go"
    ):
        base = TrainConfig(
            model=grid_model, epochs=int(grid_epochs), train_size=grid_size, val_size=1_000, log_every=20
        )
        try:
            group = f"grid-{uuid.uuid4().hex[:8]}"
            for cfg in grid_configs(base, batch_sizes, lrs, optimizers):
                queue.submit(cfg, group=group)
        except (CompareError, TrainConfigError, ValueError) as error:
            st.error(f"Cannot queue this grid: {error}")
        else:
            st.session_state["cmp_grid"] = group
    if count > MAX_SWEEP:
        st.error(f"{count} settings: at most {MAX_SWEEP} per sweep.")
with scaling_tab:
    a, b, c = st.columns(3)
    scaling_model = a.selectbox("Model", digit_names, format_func=lambda n: get_spec(n).title, key="cmp_scale_model")
    sizes = b.multiselect(
        "Training-set sizes (balanced)",
        TRAIN_SIZES,
        default=list(TRAIN_SIZES) if on_gpu else [600, 1_800, 6_000, 18_000],
        format_func="{:,}".format,
        key="cmp_scale_sizes",
    )
    scaling_epochs = c.number_input("Epochs per run", 1, 20, 3 if on_gpu else 2, key="cmp_scale_epochs")
    if st.button(f"Queue {len(sizes)} runs", icon=":material/show_chart:", disabled=not sizes, key="cmp_scale_go"):
        base = TrainConfig(model=scaling_model, epochs=int(scaling_epochs), val_size=1_000, log_every=20)
        try:
            group = f"scaling-{uuid.uuid4().hex[:8]}"
            for cfg in scaling_configs(base, sizes):
                queue.submit(cfg, group=group)
        except (CompareError, TrainConfigError, ValueError) as error:
            st.error(f"Cannot queue these runs: {error}")
        else:
            st.session_state["cmp_scaling"] = group

sweeps = {key: st.session_state[key] for key in ("cmp_grid", "cmp_scaling") if key in st.session_state}
sweeping = any(job.active for group in sweeps.values() for job in queue.jobs(group))


@st.fragment(run_every=REFRESH_S if sweeping else None)
def sweep_results() -> None:
    """The sweeps' results so far, redrawn while their runs are queued or running."""
    for key, group in sweeps.items():
        jobs = queue.jobs(group)
        table = sweep_table(jobs)
        finished = int(table["accuracy"].notna().sum()) if len(table) else 0
        st.markdown(
            f"**{'Hyperparameter grid' if key == 'cmp_grid' else 'Data-size scaling'}**: {finished} of {len(jobs)} runs finished"
        )
        if finished:
            chart = sweep_bar_chart(table) if key == "cmp_grid" else scaling_chart(table)
            st.altair_chart(chart, width="stretch")
        st.dataframe(
            table,
            hide_index=True,
            column_config={
                "accuracy": st.column_config.NumberColumn(format="percent"),
                "lr": st.column_config.NumberColumn(format="%g"),
            },
        )
    if sweeping and not any(job.active for group in sweeps.values() for job in queue.jobs(group)):
        st.rerun(scope="app")


if sweeps:
    sweep_results()
