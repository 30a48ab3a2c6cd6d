"""The sidebar on every page: running job, data source (with upload / path when there is none), model."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core import jobs
from core.data import DataError, dropped_rows

from views import common


# the buttons that start a training job (their value is True in the rerun a click starts)
LAUNCH_BUTTONS = ("train_launch", "overview_preset")


def reserve(pages: list) -> tuple:
    """The sidebar's places, made before the page runs and filled after it (render). A page that starts a
    job spends seconds starting it; meanwhile the job's place says so, instead of the last run's "No job running".
    Only then is a placeholder made: made on every rerun, it would blank the place until the page is done. The page
    links are drawn at once (a first page takes seconds), and again after the page if it changed what they carry."""
    with st.sidebar:  # the job first: below the data and model, its progress was off a laptop's screen
        nav, job, data, model = st.empty(), st.container(), st.container(), st.container()
    _links(nav, pages)
    starting = None
    if any(st.session_state.get(key) for key in LAUNCH_BUTTONS):
        starting = job.empty()
        with starting.container():
            st.subheader("Training job")
            st.caption("Starting a training job…")
    return (nav, pages, _carried()), data, model, job, starting


def render(places: tuple) -> None:
    """Filled after the page, so it shows what the page just chose (e.g. the model typed on Train)."""
    (nav, pages, carried), data, model, job, starting = places
    if _carried() != carried:  # e.g. a batch scored or a message typed: the links take it along
        _links(nav, pages)
    with data:
        _data()
    with model:
        _model()
    with starting.container() if starting else job:
        _job_status()


def _carried() -> dict[str, str]:
    """What the links carry: url_state() and what pages wrote of their own widgets (common.PAGE_PARAMS)."""
    return common.url_state() | st.session_state.get(common.URL_WRITTEN, {})


def _links(nav, pages: list) -> None:
    carried = common.url_state()  # once for the five links
    with nav.container():
        for page in pages:
            st.page_link(page, query_params=common.link_params(page.url_path, carried))
        st.divider()


def _data() -> None:
    st.subheader("Data")
    path, summary, error = common.data_source()
    if path:
        st.caption(f"**{common.plain(Path(path).name)}** · {summary['rows']:,} messages after removing "
                   f"{summary['duplicates_removed']:,} duplicates · {summary['spam']:,} spam "
                   f"({summary['spam'] / summary['rows']:.1%})")
        if dropped := dropped_rows(summary):
            st.caption(f"Of {summary['rows_read']:,} rows read, dropped {', '.join(dropped)}")
        st.caption(common.plain(path))
    else:
        st.error(common.plain(error))
    if (missing := st.session_state.get(common.LINKED_DATA_MISSING)) and not st.session_state.get("data_path"):
        st.warning(f"The link named an uploaded dataset, {common.plain(missing)}, that is not in the uploads folder "
                   "here (deleted, or a link from another machine): this is the default data. Upload the file again "
                   "to use it.")
    with st.expander("Use another dataset", expanded=path is None):
        upload = st.file_uploader(f"Upload a CSV/TSV (label and text columns) or the UCI file (label<TAB>text), "
                                  f"{common.upload_limit()}", key="data_upload", help="Labels ham/spam or 0/1. The "
                                  "size limit is server.maxUploadSize in .streamlit/config.toml.")
        if upload is not None:  # checked once per file: a rerun must not re-read 50 MB
            checked = st.session_state.setdefault("uploads_checked", {})
            if upload.file_id not in checked:
                try:
                    checked[upload.file_id] = {"path": str(common.save_upload(upload.name, upload.getvalue()))}
                    st.session_state["data_path"] = checked[upload.file_id]["path"]
                    st.rerun()
                except DataError as exc:
                    checked[upload.file_id] = {"error": str(exc)}
                except OSError as exc:  # the uploads folder full or read-only: said here, and the sidebar goes on
                    checked[upload.file_id] = {"error": f"cannot keep the upload in {common.uploads_dir()} "
                                                        f"({exc.strerror or exc}); free some space there or set "
                                                        "SPAM_UPLOADS_DIR to a writable folder"}
            if "error" in checked[upload.file_id]:
                st.error(common.plain(checked[upload.file_id]["error"]))
        if common.served_to_network():
            # a typed path reads any file the server can, and an error quotes its first line: not for a network
            st.caption("Paths on the server can be typed only when the app listens on localhost; it is served to "
                       f"the network now (server.address {common.plain(st.get_option('server.address'))}), so "
                       "upload the file instead.")
        else:
            _typed_path()
        if st.session_state.get("data_path") and st.button("Back to the default dataset", key="data_reset"):
            st.session_state.pop("data_path")
            st.query_params.pop("data", None)  # or the link would bring the upload back
            st.rerun()


def _typed_path() -> None:
    """A dataset path on this machine, checked before it is used (only when the app listens on localhost)."""
    typed = st.text_input("…or a path on this machine", key="data_path_input", placeholder="/path/to/SMSSpamCollection")
    if st.button("Use this file", key="data_path_use", disabled=not typed.strip()):
        try:
            common._data_summary.clear()
            from core.data import load_messages
            load_messages(typed.strip())  # parse and check it now, not when training starts
            st.session_state["data_path"] = typed.strip()
            st.rerun()
        except (DataError, OSError) as exc:
            st.error(common.plain(exc))


def _model() -> None:
    st.subheader("Model")
    name = st.session_state.get("model_name", common.default_model())
    info = common.resolved_model(name)
    if "error" in info:
        st.error(common.plain(info["error"]))
    elif info.get("fallback_reason"):
        st.caption(f"Asked for **{common.plain(name)}**; using the bundled **{info['name']}**.")
        st.warning(f"Offline fallback: {info['fallback_reason']}.", icon=":material/cloud_off:")
    else:
        st.caption(f"**{common.plain(info['name'])}** ({info['source']})")


@st.fragment(run_every=3)
def _job_status() -> None:
    st.subheader("Training job")
    folder = common.runs_dir()
    if folder.exists() and not os.access(folder, os.R_OK | os.X_OK):  # a page would otherwise look empty
        st.error(f"The runs folder {common.plain(folder)} cannot be read: no runs can be shown. Set SPAM_RUNS_DIR "
                 "to a folder you can read.")
    progress = jobs.current_job(folder)
    busy = progress is not None
    if busy and st.session_state.get("job_panel_shown"):  # a second bar, read a second apart, gave another time left
        st.caption(f"{common.plain(common.MODE_LABELS.get(progress.mode, 'Training'))}: live on this page.")
    elif busy:
        st.progress(min(max(progress.fraction, 0.0), 1.0), text=progress.describe(common.MODE_LABELS))
        common.page_link("views/train.py", label="Watch it on Train", icon=":material/monitoring:")
    else:
        st.caption("No job running.")
    # the job's run: None until it is training (a resume or a plan's next run first loads data and model)
    now = (busy, progress.run_id if busy else None)
    was = st.session_state.get("sidebar_job")
    st.session_state["sidebar_job"] = now
    if was is not None and was != now:  # a job started or ended, or its run did: redraw the page, whose run
        st.rerun(scope="app")  # statuses and picks (Runs' list and picker, the next run of a plan) are out of date
