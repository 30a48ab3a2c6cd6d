"""Frozen vs fine-tuned BERT for SMS spam: the dashboard.

    streamlit run app.py          # http://localhost:8501 (localhost only; see .streamlit/config.toml)

A router plus the sidebar every page shares: where the data comes from, which model is in use, and
whether a training job is running. Settings come from the environment: SPAM_DATA, SPAM_RUNS_DIR,
SPAM_MODEL, SPAM_UPLOADS_DIR, SPAM_CACHE_DIR.
"""
import streamlit as st

from views import sidebar
from views.common import PageEnd, state_in_url

st.set_page_config(page_title="SMS spam: frozen vs fine-tuned BERT", page_icon="✉️", layout="wide")

pages = [
    st.Page("views/overview.py", title="Overview", icon=":material/insights:", default=True),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("views/playground.py", title="Playground", icon=":material/edit_note:"),
    st.Page("views/runs.py", title="Runs", icon=":material/folder_open:"),
]
# the sidebar's own links replace Streamlit's: they carry the run picks in the URL (common.url_state)
page = st.navigation(pages, position="hidden")
state_in_url()  # before the page draws: a reload's new session takes the runs (and scored file, batch) the URL names
st.session_state["job_panel_shown"] = False  # common.job_panel sets it: then the sidebar need not repeat the progress
places = sidebar.reserve(pages)
try:
    page.run()
except PageEnd:  # a page with nothing to show yet ended early
    pass
finally:  # drawn after the page, so it shows what the page just chose (e.g. the model typed on Train)
    sidebar.render(places)
