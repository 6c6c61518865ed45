"""Pretrained weights a page may offer to fetch: one button with a progress bar, and a plain message when offline."""

from __future__ import annotations

import streamlit as st

from vision_core import get_spec
from vision_core.models.imagenet import WeightsDownloadError, fetch_weights
from vision_core.registry import WeightsMissingError, weights_path


def offer_download(name: str) -> None:
    """A button that fetches ``name``'s weights into the torch hub cache; the page reruns once they are there."""
    spec = get_spec(name)
    if not st.button(
        f"Download the {spec.title} weights ({spec.weights.meta['_file_size']:.0f} MB)",
        key=f"fetch-{name}",
        icon=":material/download:",
    ):
        return
    slot = st.empty()  # the progress bar, replaced by the error if the download fails
    slot.progress(0.0, text=f"Downloading {spec.title}…")

    def show(done: int, total: int | None) -> None:
        text = f"Downloading {spec.title}: {done / 1e6:.0f}" + (f" of {total / 1e6:.0f} MB" if total else " MB")
        slot.progress(min(done / total, 1.0) if total else 0.0, text=text)

    try:
        fetch_weights(name, progress=show)
    except (WeightsDownloadError, WeightsMissingError) as error:
        slot.error(
            f"The download failed: {error}. Offline? Run `make weights` on a machine with internet access and copy "
            f"`{weights_path(name).parent}` to this one (or point TORCH_HOME at a shared copy)."
        )
    else:
        st.rerun()
