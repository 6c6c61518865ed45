"""Compare: a scoreboard of every trained model per dataset, runs overlaid, a look inside each model, and sweeps."""

import dataclasses
import uuid

import streamlit as st

from ui import projector, state
from ui.charts import overlay_chart, scaling_chart, sweep_bar_chart
from ui.owner import current_caller
from ui.resources import (
    cached_mnist,
    class_policy,
    loaded_model,
    model_card,
    run_service,
    saved_runs_at_start,
    show_on_draw_page,
)
from ui.runs import try_it
from vision_core import describe_device, get_dataset, get_spec, resolve_device, to_image, to_input
from vision_core.checkpoints import CheckpointError
from vision_core.compare import (
    MAX_SWEEP,
    CompareError,
    architecture_summary,
    carded_models,
    filter_image,
    first_conv,
    grid_configs,
    history_table,
    measure_latency,
    scaling_configs,
    scoreboard,
    sweep_table,
)
from vision_core.cost import BudgetError
from vision_core.datasets import MY_CLASSES, list_datasets, train_count
from vision_core.inside import attention_maps, find_vit
from vision_core.jobs import QueueFullError
from vision_core.registry import WeightsMissingError
from vision_core.runs import delete_run, import_run, owner_of
from vision_core.training import TrainConfig, TrainConfigError, default_config
from vision_core.visuals import heat_image, overlay_image

REFRESH_S = 2.0
on_gpu = resolve_device("auto").type == "cuda"
service, caller = run_service(), current_caller()
saved_runs_at_start()


@st.cache_data(max_entries=256, show_spinner="Measuring…")
def latency_ms(name: str, card_created: str | None) -> float:
    """Median ms per image here, measured once per model and card (a retrained run has a new card)."""
    return measure_latency(loaded_model(name), get_spec(name).input_size)


def scores_for(dataset: str) -> None:
    names = carded_models(dataset)
    if not names:
        st.info("No trained models on this dataset yet: train one on the Fine-tune page.", icon=":material/model_training:")  # fmt: skip
        return
    table = scoreboard(names)
    if st.toggle("Measure latency here (loads each model once)", key=f"cmp_latency_{dataset}"):
        table.insert(4, "latency (ms)", [latency_ms(n, getattr(model_card(n), "created", None)) for n in names])
    st.dataframe(
        table.drop(columns=["note"], errors="ignore"), hide_index=True,
        column_config={
            "accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
            "macro-F1": st.column_config.NumberColumn(format="%.4f"), "loss": st.column_config.NumberColumn(format="%.4f"),
            "parameters": st.column_config.NumberColumn(format="localized"),
            "test images": st.column_config.NumberColumn(format="localized"),
            "latency (ms)": st.column_config.NumberColumn(format="%.2f", help=f"median time for one image on {describe_device()}"),
        },
    )  # fmt: skip


def delete_saved(name: str) -> None:
    try:
        delete_run(name, caller.owner, teacher=caller.teacher)
    except (PermissionError, ValueError, KeyError) as error:
        st.session_state["cmp_message"] = ("error", f"Cannot delete {name}: {error}")
    else:
        st.session_state["cmp_message"] = ("success", f"Deleted {name}.")


def import_upload() -> None:
    """Button callback, so the scoreboard above already lists the imported model on this rerun."""
    upload = st.session_state.get("cmp_import_file")
    if upload is None:
        st.session_state["cmp_message"] = ("error", "Choose a run bundle (.zip) first.")
        return
    try:
        name = st.session_state.get("cmp_import_name", "").strip() or None
        spec = import_run(upload.getvalue(), name=name, owner=caller.owner, quota=class_policy().saves)
    except CheckpointError as error:
        st.session_state["cmp_message"] = ("error", f"Cannot import {upload.name}: {error}")
    else:
        show_on_draw_page(spec.name)
        st.session_state["cmp_message"] = ("success", f"Imported {spec.name}: it is on the scoreboard (and on the Draw page if it reads digits).")  # fmt: skip


st.title("Compare")
st.caption(
    "Every trained model side by side, per dataset (the shipped ones and the runs saved on this server), their "
    "training curves, what is inside each one, and the course's sweeps: a hyperparameter grid and data-size scaling."
)
if "cmp_message" in st.session_state:
    kind, message = st.session_state.pop("cmp_message")
    (st.success if kind == "success" else st.error)(message)

# --- Scoreboard ----------------------------------------------------------------------------------------------------
st.subheader("Scoreboard")
datasets = list_datasets()
tab_titles = [get_dataset(d).title for d in datasets]
tabs = st.tabs(tab_titles, **state.CMP_TAB.widget(options=tab_titles))
for dataset, tab in zip(datasets, tabs, strict=True):
    with tab:
        scores_for(dataset)
st.caption("Click a column header to sort. Metrics are on each model card's test images.")

with st.expander("Saved runs: delete", icon=":material/delete:"):
    deletable = [
        n for n in carded_models() if get_spec(n).source == "run" and (caller.teacher or owner_of(n) == caller.owner)
    ]
    if not deletable:
        st.caption("You have no saved runs here." + ("" if caller.teacher else " (The teacher can delete anyone's.)"))
    for name in deletable:
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.text(f"{name} · {get_spec(name).title}")
        right.button("Delete", key=f"cmp_delete_{name}", on_click=delete_saved, args=(name,), icon=":material/delete:")

with st.expander("Import a run bundle", icon=":material/inventory_2:"):
    st.caption(
        "A zip downloaded from the Fine-tune or My classes page (weights as safetensors and the NAME.json model card). "
        "Everything is checked before it is saved: the card, the architecture, the size of the model and the shape of "
        "every tensor. Nothing is unpickled. Bundles over 25 MB (VGG16, AlexNet, ResNet-18 runs) cannot be uploaded."
    )
    upload_column, name_column = st.columns([3, 2])
    upload_column.file_uploader("Run bundle", type=["zip"], key="cmp_import_file")
    name_column.text_input("Save as (optional)", key="cmp_import_name", help="a new name, if the card's is taken")
    st.button("Import", icon=":material/upload_file:", on_click=import_upload, key="cmp_import_go")

# --- Runs overlaid ---------------------------------------------------------------------------------------------------
st.subheader("Training curves")
CURVES_OF_RUNS = 20  # the latest runs' curves: reading every kept run's events on each rerun would not scale
runs = [(job, service.events(job.id, kind="epoch")) for job in service.jobs()[-CURVES_OF_RUNS:] if job.event_count]
history = history_table(runs, saved=[n for n in carded_models() if get_spec(n).source == "run"])
if history.empty:
    st.info("No training curves yet: runs from the Fine-tune page (and saved runs) appear here.", icon=":material/show_chart:")  # fmt: skip
else:
    curve_datasets = list(dict.fromkeys(history["dataset"]))
    curve_data = st.selectbox("Dataset", curve_datasets, **state.CMP_CURVES.widget(options=curve_datasets))
    of_data = history[history["dataset"] == curve_data]
    labels = list(dict.fromkeys(of_data["run"]))
    if f"cmp_runs_{curve_data}" not in st.session_state:  # each dataset keeps its own choice; a link's runs first
        st.session_state[f"cmp_runs_{curve_data}"] = [r for r in state.CMP_RUNS.get() if r in labels] or labels[-4:]
    shown = st.multiselect("Runs", labels, key=f"cmp_runs_{curve_data}")
    state.CMP_RUNS.set(tuple(shown))
    if shown:
        st.altair_chart(projector.chart(overlay_chart(of_data[of_data["run"].isin(shown)])), width="stretch")

# --- Inside a model --------------------------------------------------------------------------------------------------
st.subheader("Inside a model")
names = carded_models()


def inside_a_model(name: str) -> None:
    spec = get_spec(name)
    try:
        model = loaded_model(name)
    except (WeightsMissingError, CheckpointError) as error:
        st.warning(f"{spec.title} is unavailable: {error}")
        return
    summary_tab, filters_tab, attention_tab, try_tab = st.tabs(["Architecture", "First-layer filters", "Attention (ViT)", "Try it on a photo"])  # fmt: skip
    with summary_tab:
        depth = st.slider("Depth", 1, 4, 3, key="cmp_depth", help="how many levels of nested modules to list")
        table = architecture_summary(model, spec.input_size, depth=depth)
        st.dataframe(
            table, hide_index=True, column_config={"parameters": st.column_config.NumberColumn(format="localized")}
        )
        st.caption(f"{int(table['parameters'].sum()):,} parameters in all (torchinfo, one {spec.input_size[1]} × {spec.input_size[2]} input).")  # fmt: skip
    with filters_tab:
        try:
            layer, weights = first_conv(model)
            st.image(filter_image(weights), caption=f"{layer}: {weights.shape[0]} kernels of {weights.shape[2]} × {weights.shape[3]} over {weights.shape[1]} channel(s), each scaled to its own range")  # fmt: skip
        except CompareError as error:
            st.info(str(error))
    with attention_tab:
        show_attention(model, spec.title)
    with try_tab:
        if spec.task == "digits":
            st.info("Digit models read drawings: try them on the Draw page.", icon=":material/draw:")
            st.page_link("app_pages/draw.py", label="Draw a digit", icon=":material/draw:")
        else:
            try_it(model, MY_CLASSES if spec.task == "classes" else "cifar10", spec.labels, key=f"cmp-try-{name}")


def show_attention(model, title: str) -> None:
    if find_vit(model) is None:
        st.info(f"{title} is a CNN: it has no attention. Pick the Vision Transformer.", icon=":material/visibility:")
        return
    digit = st.session_state.get("last_drawing")
    if digit is None:
        digit = to_input(cached_mnist("test").images[:1])[0]
        st.caption("No drawing yet: showing MNIST test digit #0. Draw a digit on the Draw page to see your own.")
    else:
        st.caption("Your latest drawing from the Draw page.")
    maps = attention_maps(model, digit)
    layers = maps.heads.shape[0]
    layer = st.slider("Layer", 1, layers, layers, key="cmp_layer") if layers > 1 else layers
    source_column, rollout_column = st.columns(2)
    source_column.image(to_image(digit, size=224), caption=f"Input (the ViT says {maps.prediction})")
    rollout_column.image(overlay_image(digit, maps.rollout), caption="Attention rollout through all layers")
    for head, column in enumerate(st.columns(maps.heads.shape[1])):
        column.image(heat_image(maps.heads[layer - 1, head]), caption=f"layer {layer}, head {head + 1}")


inside_a_model(st.selectbox("Model", names, format_func=lambda n: f"{get_spec(n).title} ({n})", **state.CMP_MODEL.widget(options=names)))  # fmt: skip

# --- Sweeps --------------------------------------------------------------------------------------------------------
st.subheader("Sweeps")
st.caption(
    "Each setting is queued as a short run in the same queue as the Fine-tune page; a sweep counts as its runs against "
    "your limit of runs at once"
    + ("." if on_gpu else ": on this CPU a sweep takes minutes, so the defaults are small.")
)
sweep_data = st.selectbox("Dataset", ["mnist", "cifar10"], format_func=lambda d: get_dataset(d).title, key="cmp_sweep_dataset")  # fmt: skip
sweep_models = [n for n in carded_models(sweep_data) if get_spec(n).source == "shipped"]
sizes_here = [s for s in get_dataset(sweep_data).train_sizes if s <= train_count(sweep_data)]


def queue_sweep(configs: list[TrainConfig], kind: str) -> None:
    group = f"{kind}-{uuid.uuid4().hex[:8]}"
    try:
        service.submit_many(configs, caller, group=group)
    except (CompareError, TrainConfigError, BudgetError, QueueFullError, ValueError) as error:
        st.error(f"Cannot queue this sweep: {error}", icon=":material/block:")
    else:
        st.session_state[f"cmp_{kind}"] = group


grid_tab, scaling_tab = st.tabs(["Hyperparameter grid", "Data-size scaling"])
with grid_tab:
    a, b, c, d = st.columns(4)
    grid_model = a.selectbox("Model", sweep_models, format_func=lambda n: get_spec(n).title, key="cmp_grid_model")
    batch_sizes = b.multiselect("Batch sizes", [32, 64, 128, 256, 512], default=[64, 128], key="cmp_grid_batch")
    lrs = c.multiselect("Learning rates", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], default=[1e-3, 3e-3], key="cmp_grid_lr")
    optimizers = d.multiselect("Optimizers", ["adam", "adamw", "sgd", "rmsprop"], default=["adam"], key="cmp_grid_opt")
    a, b = st.columns(2)
    grid_size = a.select_slider("Training images", sizes_here, value=sizes_here[min(2, len(sizes_here) - 1)], format_func="{:,}".format, key=f"cmp_grid_size_{sweep_data}")  # fmt: skip
    grid_epochs = b.number_input("Epochs per run", 1, 20, 2 if on_gpu else 1, key="cmp_grid_epochs")
    count = len(batch_sizes) * len(lrs) * len(optimizers)
    if st.button(
        f"Queue {count} runs", icon=":material/grid_on:", disabled=not 0 < count <= MAX_SWEEP, key="cmp_grid_go"
    ):
        base = dataclasses.replace(default_config(grid_model, "auto", sweep_data), epochs=int(grid_epochs), train_size=grid_size, val_size=500, log_every=20)  # fmt: skip
        queue_sweep(grid_configs(base, batch_sizes, lrs, optimizers), "grid")
    if count > MAX_SWEEP:
        st.error(f"{count} settings: at most {MAX_SWEEP} per sweep.")
with scaling_tab:
    a, b, c = st.columns(3)
    scaling_model = a.selectbox("Model", sweep_models, format_func=lambda n: get_spec(n).title, key="cmp_scale_model")
    sizes = b.multiselect("Training-set sizes (balanced)", sizes_here, default=sizes_here[:3], format_func="{:,}".format, key=f"cmp_scale_sizes_{sweep_data}")  # fmt: skip
    scaling_epochs = c.number_input("Epochs per run", 1, 20, 3 if on_gpu else 2, key="cmp_scale_epochs")
    if st.button(f"Queue {len(sizes)} runs", icon=":material/show_chart:", disabled=not sizes, key="cmp_scale_go"):
        base = dataclasses.replace(default_config(scaling_model, "auto", sweep_data), epochs=int(scaling_epochs), val_size=500, log_every=20)  # fmt: skip
        queue_sweep(scaling_configs(base, sizes), "scaling")

sweeps = {key: st.session_state[key] for key in ("cmp_grid", "cmp_scaling") if key in st.session_state}
sweeping = any(job.active for group in sweeps.values() for job in service.jobs(group))


@st.fragment(run_every=REFRESH_S if sweeping else None)
def sweep_results() -> None:
    """The sweeps' results so far, redrawn while their runs are queued or running."""
    for key, group in sweeps.items():
        jobs = service.jobs(group)
        table = sweep_table(jobs)
        finished = int(table["accuracy"].notna().sum()) if len(table) else 0
        st.markdown(f"**{'Hyperparameter grid' if key == 'cmp_grid' else 'Data-size scaling'}**: {finished} of {len(jobs)} runs finished")  # fmt: skip
        if finished:
            chart = sweep_bar_chart(table) if key == "cmp_grid" else scaling_chart(table)
            st.altair_chart(projector.chart(chart), width="stretch")
        st.dataframe(table, hide_index=True, column_config={"accuracy": st.column_config.NumberColumn(format="percent"), "lr": st.column_config.NumberColumn(format="%g")})  # fmt: skip
    if sweeping and not any(job.active for group in sweeps.values() for job in service.jobs(group)):
        st.rerun(scope="app")


if sweeps:
    sweep_results()
