"""Streamlit-side helpers shared by the pages: cached resources (resources), chart builders (charts), the session
settings every page shares (state), the Draw page's canvas (canvas) and answers (digits), and the one-thread worker
for small tensor work (single_thread)."""
