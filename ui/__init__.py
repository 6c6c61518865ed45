"""Streamlit-side helpers shared by the pages: cached resources and chart builders."""
