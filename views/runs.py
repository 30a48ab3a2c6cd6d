"""Runs: every run with its settings and results; loss curves overlaid; resume a run that stopped from its saved
training state, or finish it from its saved weights; delete (confirmed) or download."""
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from core import jobs
from core.data import describe
from core.runs import (FINISHABLE, NEWER_FORMAT, RunError, checkpoint_info, finishable_weights, read_history,
                       resumable_state, resumed_note, running_job, saved_state, saved_weights, stopped_note,
                       take_over, time_spent, trained_elsewhere, training_subset, validate_run_id)

from views import common

st.title("Runs")
if deleted := st.session_state.pop("runs_deleted_toast", None):
    st.toast(f"Deleted {deleted}", icon=":material/delete:")
picked = st.session_state.get("runs_one")  # from the URL after a reload: the job's progress is shown again
if not st.session_state.get("runs_job") and picked and jobs.in_use(common.runs_dir(), picked):
    st.session_state["runs_job"] = picked
if st.session_state.get("runs_job"):  # a finish or resume started here: its progress, then how it ended
    common.job_panel("runs")
all_runs = common.runs()
if not all_runs:
    st.info(f"No runs yet in {common.runs_dir()}. Start one on the Train page.")
    common.end_page()

# ?run=<id> preselects a run; anything that is not a valid id is refused, never used as a path
wanted = st.query_params.get("run")
if wanted is not None:
    try:
        validate_run_id(wanted)
    except RunError as exc:
        st.warning(f"Ignoring the link's run: {common.plain(exc)}")
        wanted = None
    if wanted is not None and wanted not in {run.id for run in all_runs}:
        st.warning(f"The link's run {common.plain(wanted)} is not in {common.plain(common.runs_dir())} (deleted, or "
                   "another runs folder): showing the newest run instead.")
        wanted = None
    # the link is spent once read: the user's picks then stay, and following the link again shows its run again
    del st.query_params["run"]


def duration(run) -> float | None:
    m = run.metrics or {}
    if m.get("total_seconds") is not None:
        return m["total_seconds"]
    events = read_history(run.path)
    # until it stopped: a finish from its checkpoint may come hours later, as may each resume
    finishing = next((i for i, e in enumerate(events) if e.get("event") == "finish_saved"), None)
    ran = events[:finishing]
    if run.status == "running":  # so far, up to now: its events may all be seconds old while it loads or encodes
        timed = [e["time"] for e in ran if isinstance(e.get("time"), (int, float))]
        if not timed:
            return time.time() - run.created
        # the stretches it ran, then this one: a run resumed or finished days after it stopped did not run meanwhile
        since = events[finishing]["time"] if finishing is not None else timed[-1]
        return time_spent(ran, run.created)[1] + max(0.0, time.time() - since)
    return time_spent(ran, run.created)[1] if ran else None


def settings(cfg: dict, neural: bool) -> dict[str, str]:
    """The main hyperparameters, as shown in one column: one column each pushed the results off a laptop screen."""
    if not cfg:  # a broken run's config is unreadable
        return {}
    lr = cfg.get("lr")
    epochs = cfg.get("epochs")
    trained = {"epochs": f"{epochs} epoch{'s' * (epochs != 1)}",
               "lr": f"lr {lr:g}" if isinstance(lr, (int, float)) else f"lr {lr}",
               "batch_size": f"batch {cfg.get('batch_size')}",
               "max_length": f"max len {cfg.get('max_length')}"} if neural else {}  # not the linear model's
    sample = {"train_messages": f"{subset[0]:,} train msgs"} if (subset := training_subset(cfg)) else {}
    return sample | trained | {"seed": f"seed {cfg.get('seed')}"}


# the settings that apply to each mode, in the Train form's order: a baseline has no epochs or learning rate
SHARED_SETTINGS = ["seed", "val_fraction", "test_fraction", "train_messages", "class_weight", "threshold"]
NEURAL_SETTINGS = ["epochs", "lr", "batch_size", "max_length", "warmup_ratio", "weight_decay", "max_grad_norm",
                   "patience", "evals_per_epoch", "precision"]
MODE_SETTINGS = {"baseline": SHARED_SETTINGS,
                 # its min steps per epoch beside its validations per epoch, as on the form
                 "finetune": NEURAL_SETTINGS[:-1] + ["min_epoch_steps", "precision"] + SHARED_SETTINGS,
                 "frozen": NEURAL_SETTINGS + ["pooling", "head_hidden", "dropout"] + SHARED_SETTINGS}


def settings_table(cfg: dict, mode: str | None) -> pd.DataFrame:
    names = [k for k in MODE_SETTINGS.get(mode, NEURAL_SETTINGS + SHARED_SETTINGS) if k in cfg]
    shown = [f"{cfg[k]:g}" if isinstance(cfg[k], float) else "—" if cfg[k] is None else str(cfg[k]) for k in names]
    if "train_messages" in names:  # what it trained on: all of them also where more were asked for than there are
        shown[names.index("train_messages")] = f"{subset[0]:,}" if (subset := training_subset(cfg)) else "all"
    return pd.DataFrame({"setting": [k.replace("_", " ") for k in names], "value": shown})


def configuration_notes(run) -> str:
    """What else config.json records, as lines: the model, the data, where it ran, with what."""
    cfg, lines = run.config, []
    if run.mode != "baseline":
        lines.append(f"**Model:** {common.plain(common.model_used(run))}")
    elif isinstance(cfg.get("baseline"), dict):  # its fixed settings (older runs did not record them)
        fitted = [f"{v.get('analyzer')} {'-'.join(map(str, v.get('ngram_range', [])))}-grams"
                  for v in (cfg["baseline"].get("vectorizers") or {}).values() if isinstance(v, dict)]
        classifier = ", ".join(f"{k} {', '.join(f'{p}={x}' for p, x in v.items())}"
                               for k, v in (cfg["baseline"].get("classifier") or {}).items() if isinstance(v, dict))
        lines.append("**Fitted:** " + common.plain(" + ".join(fitted) + f" TF-IDF; {classifier}"))
    if isinstance(cfg.get("data_info"), dict):
        try:
            lines.append(f"**Data:** {common.plain(cfg['data_info'].get('source'))}: {describe(cfg['data_info'])}")
        except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):  # an older or hand-edited summary
            lines.append(f"**Data:** {common.plain(cfg['data_info'].get('source'))}")
    ran = [str(cfg["device"])] if cfg.get("device") else []
    if isinstance(cfg.get("num_processes"), int) and cfg["num_processes"] > 1:
        ran.append(f"{cfg['num_processes']} processes")
    if isinstance(cfg.get("trainable_parameters"), int) and isinstance(cfg.get("total_parameters"), int):
        ran.append(f"{cfg['trainable_parameters']:,} of {cfg['total_parameters']:,} parameters trained")
    if cfg.get("allocator"):
        ran.append(f"{cfg['allocator']} malloc")
    if ran:
        lines.append("**Ran on:** " + common.plain(", ".join(ran)))
    if isinstance(cfg.get("versions"), dict):
        lines.append("**Versions:** " + common.plain(", ".join(f"{k} {v}" for k, v in cfg["versions"].items())))
    return "  \n".join(lines)  # values are escaped as they are added: a path or model name is not markdown


def metrics_table(metrics: dict) -> pd.DataFrame:
    """One row per measure: the test value with its 95 % bootstrap interval, and the validation value."""
    test, validation = metrics["test"], metrics.get("validation") or {}
    keys = common.HEADLINE + ["mcc"]
    return pd.DataFrame({"measure": [common.METRIC_NAMES[k] for k in keys],
                         "test [95 % interval]": [common.with_interval(test, k) for k in keys],
                         "validation": [common._fmt(validation.get(k), 3) if validation.get(k) is not None else None
                                        for k in keys]})


def cancelled_note(run) -> str | None:
    """Where a cancelled run stopped, and that nothing of it can be used; None when it kept something (the page
    then offers to finish or resume it) or was not cancelled."""
    if run.status != "cancelled" or finishable_weights(run.path) or resumable_state(run.path):
        return None
    events = read_history(run.path)
    total = next((e.get("total_steps") for e in events if e.get("event") == "start"), None)
    # any event's: train events are logged every few hundredth of the run, so the last one may lag the last step
    step = max((e["step"] for e in events if isinstance(e.get("step"), int)), default=0)
    where = f"at step {step} of {total}" if total and step else "before its first training step"
    return f"cancelled {where}; no weights were kept"


def kept_note(run) -> str | None:
    """What a run that stopped before its end kept, so the table tells one that can go on from one that cannot."""
    if run.status not in FINISHABLE:
        return None
    if elsewhere := trained_elsewhere(run.path):  # it may have kept much: finish and resume refuse it as it is
        return f"its status names another machine, {elsewhere} (see One run)"
    if resumable_state(run.path):
        return "its training state is kept (resume or finish it under One run)"
    if finishable_weights(run.path):
        return "its best weights are kept (finish it under One run)"
    return cancelled_note(run)


def status_text(run, worked_on: str | None) -> str:
    """The status, with why a run failed, how it stopped early or was resumed, in the same cell: a column of its own
    pushed the settings off a 1280 px screen, and repeated "stopped early"."""
    if run.id == worked_on:  # being resumed or finished: its old error, and what it kept, are old news
        note = None
    elif run.status in FINISHABLE:
        note = "; ".join(note for note in (run.error, kept_note(run)) if note)
    else:
        note = run.error or "; ".join(note for note in (  # in order
            resumed_note(run.metrics["resumed"]) if (run.metrics or {}).get("resumed") else None,
            stopped_note(run.metrics["stopped"]) if (run.metrics or {}).get("stopped") else None) if note)
    if not note:
        return run.status if common.trained_to_end(run) else f"{run.status}, stopped early"
    return note if note.startswith(run.status) else f"{run.status}: {note}"


thresholds = {run.config["threshold"] for run in all_runs if "threshold" in (run.config or {})}
worked_on = running_job(common.runs_dir())  # a run a job is resuming or finishing: its old error is old news
rows = []
for run in all_runs:
    cfg, test = run.config or {}, (run.metrics or {}).get("test", {})
    rows.append({"run": run.id, "mode": run.mode, "status": status_text(run, worked_on),  # no "created": in the id
                 **{k: test.get(k) for k in ("accuracy", "f1", "auroc")},
                 **({"threshold": cfg.get("threshold")} if len(thresholds) > 1 else {}),
                 "time (s)": common.seconds_shown(duration(run)),
                 "model": Path(run.model or "?").name, "settings": settings(cfg, run.mode != "baseline")})
# a setting every run that has it shares goes in the caption, so the column shows what tells the runs apart (the
# full list cut it off at 1280 px)
listed = [row["settings"] for row in rows if row["settings"]]
# (train_messages applies to every run, and is missing where a run trained on them all: then it is not shared)
shared = {name: text for name, text in {n: t for parts in listed for n, t in parts.items()}.items()
          if len(listed) > 1 and len({parts.get(name) for parts in listed
                                      if name in parts or name == "train_messages"}) == 1}
for row in rows:
    row["settings"] = " · ".join(text for name, text in row["settings"].items() if name not in shared) or None
frame = pd.DataFrame(rows)
if frame["settings"].isna().all():
    frame = frame.drop(columns="settings")
# a column that says nothing row by row would push the settings off a laptop screen: the model when every BERT run
# used the same one (the caption names it)
bert_models = set(frame.loc[frame["mode"] != "baseline", "model"])
if len(bert_models) == 1:
    frame = frame.drop(columns="model")
st.dataframe(frame, hide_index=True, placeholder="—", column_config={
    "run": st.column_config.TextColumn(pinned=True),  # still names the row when the table scrolls sideways
    "time (s)": st.column_config.NumberColumn(format="%g", help="How long the run took, from start to end"),
    "mode": None,  # hidden: the run id names it, and the settings need the room at 1280 px
    # a long error is cut, and hovering shows all of it; "completed" alone leaves the settings the room
    "status": st.column_config.TextColumn(width="medium" if frame["status"].str.len().max() > 20 else "small"),
    # as the other pages name and round them
    **{k: st.column_config.NumberColumn(common.METRIC_NAMES[k], format="%.3f") for k in ("accuracy", "f1", "auroc")}})
st.caption(" ".join(filter(None, [
    "Metrics on each run's test split" + (f"; a message is called spam at probability ≥ {thresholds.pop():g}."
                                          if len(thresholds) == 1 else "."),
    f"Every BERT run here used {common.plain(bert_models.pop())}." if len(bert_models) == 1 else None,
    f"Settings every run shares (where they apply): {' · '.join(shared.values())}." if shared else None])))
broken = [r for r in all_runs if r.status == "broken" and not (r.error or "").startswith(NEWER_FORMAT)]
if broken:
    st.caption(f"{len(broken)} run(s) are broken (damaged or incomplete files); they are listed but never "
               "loaded. Delete them below.")
if newer := sum(r.status == "broken" and (r.error or "").startswith(NEWER_FORMAT) for r in all_runs):  # keep them
    st.caption(f"{newer} run(s) were written by a newer version of this project: they are listed but not loaded. "
               "Update the project to use them.")

# ---------------------------------------------------------------------------- loss curves
st.subheader("Loss curves")
ids = [r.id for r in all_runs]
by_id = {r.id: r for r in all_runs}
# by default the frozen and fine-tuned runs the other pages compare, not merely the newest two (a quick run, say)
compared = [r.id for r in map(common.compared_run, ("frozen", "finetune")) if r]
default = [wanted] if wanted in ids else compared
# kept across page switches (persist_state); a kept run that was deleted since drops out; a link's run is added
if "runs_overlay" in st.session_state:
    kept = [i for i in st.session_state["runs_overlay"] if i in ids]
    if not kept and st.session_state["runs_overlay"]:  # every run overlaid was deleted: the default, not an empty chart
        kept = compared
    st.session_state["runs_overlay"] = kept + ([wanted] if wanted in ids and wanted not in kept else [])
else:
    st.session_state["runs_overlay"] = default
# bound to the URL (?runs_overlay=<id>&runs_overlay=…): a reload shows the same curves
chosen = st.multiselect("Runs to overlay", ids, key="runs_overlay", persist_state=common.KEEP, bind="query-params")
# oldest chosen run first
figure = common.loss_figure({run_id: read_history(common.run_path(common.runs_dir(), run_id))
                             for run_id in sorted(chosen, key=ids.index, reverse=True)},
                            modes={r.id: r.mode for r in all_runs},
                            balanced={r.id for r in all_runs if (r.config or {}).get("class_weight") == "balanced"})
if figure is not None:
    st.plotly_chart(figure, key="runs-loss")
    if len({(by_id[i].config or {}).get("class_weight") for i in chosen if by_id[i].mode != "baseline"}) > 1:
        st.caption("Class-balanced cross-entropy (each class weighs half, the frozen default) and plain cross-entropy "
                   "are on different scales: compare the curves' shapes across them, not their levels.")
if any(by_id[i].mode == "baseline" for i in chosen):
    st.caption("The TF-IDF baseline has no loss curve: it is fitted in one go, not trained step by step.")
elif chosen and figure is None:
    st.caption("No loss recorded for these runs (a run that failed early may have none).")

# ---------------------------------------------------------------------------- one run: details, download, delete
st.subheader("One run")
# a link's run; otherwise the user's pick stays, across page switches too (or the URL's: common.state_in_url)
if wanted is not None:
    st.session_state["runs_one"], st.session_state["runs_one_chosen"] = wanted, True
if st.session_state.get("runs_one") not in by_id:  # first visit, or the picked run was deleted
    gone = st.session_state.get("runs_one")
    if gone is not None and st.session_state.get("runs_deleted") != gone:  # not here: a page left open elsewhere
        st.warning(f"Run {common.plain(gone)} is no longer in {common.plain(common.runs_dir())}: it was deleted in "
                   "another tab or outside the app, so nothing of it can be shown or downloaded.")
    newest = all_runs[0]  # one that stopped with work to resume or finish: that is what the user came for
    needs_action = newest.status in FINISHABLE and (resumable_state(newest.path) or finishable_weights(newest.path))
    # else not a cancelled or failed one
    st.session_state["runs_one"] = newest.id if needs_action else next((r.id for r in all_runs if r.usable), ids[0])
    st.session_state["runs_one_chosen"] = False  # a default, which the URL does not keep
    common.set_in_url("runs_pick", None)
# set again, to itself: the label carries the run's status, and the selectbox redraws the label it shows only when
# its value is set (Streamlit 1.67), so a run resumed from here read "interrupted" on screen while it trained
st.session_state["runs_one"] = st.session_state["runs_one"]
run = by_id[st.selectbox("Run", ids, key="runs_one", persist_state=common.KEEP,
                         on_change=lambda: st.session_state.update(runs_one_chosen=True),
                         format_func=lambda i: f"{i} · {by_id[i].status}"
                                               + ("" if common.trained_to_end(by_id[i]) else ", stopped early"))]
# a pick is kept in the URL (common.url_state), so a reload shows the same run; not bind="query-params", which would
# write the label, with its status. The default is not: it would add a browser-history entry to every visit
if st.session_state.get("runs_one_chosen"):
    common.set_in_url("runs_pick", run.id)
if st.session_state.get("runs_job") not in (None, run.id):  # the user moved on to another run
    st.session_state.pop("runs_job")
left, right = st.columns([2, 1])  # the details take the room: halves left the settings' notes in a narrow column
with left:
    if run.error and not jobs.in_use(common.runs_dir(), run.id):  # a job finishing or resuming it: old news
        st.error(f"{run.status}: {common.plain(run.error)}")
    if note := cancelled_note(run):
        st.info(f"This run was {note}: it can be deleted, or trained again from the Train page.")
    if (run.metrics or {}).get("resumed"):
        st.info(f"This run stopped and went on training from its saved state: "
                f"{common.plain(resumed_note(run.metrics['resumed']))}.")
    if (run.metrics or {}).get("stopped"):
        st.info("This run " + ("did not train to its end: " if not common.trained_to_end(run) else "")
                + f"{common.plain(stopped_note(run.metrics['stopped']))}.")
    weights = finishable_weights(run.path) if run.status in FINISHABLE else None
    state = resumable_state(run.path) if run.status in FINISHABLE else None
    if run.status in FINISHABLE and (elsewhere := trained_elsewhere(run.path)):
        kept = "its training state" if saved_state(run.path) else \
            "its best weights" if saved_weights(run.path, run.mode) else None
        st.warning(f"Its status names another machine, {common.plain(elsewhere)}, as the one training it, whose "
                   "processes cannot be seen from here: it may still be training there (a runs folder shared between "
                   "machines), or that machine may be gone (a container recreated under a new name). "
                   + (f"It kept {kept}. Finish or resume it there, or, if it trains there no more, take it over here."
                      if kept else "It kept no weights to go on from."))
        if kept:
            sure = st.checkbox(f"It is not training on {common.plain(elsewhere)} any more", key="runs_take_over_sure",
                               help="Two machines training one run would overwrite each other's checkpoints.")
            if st.button("Take this run over", key="runs_take_over", disabled=not sure):
                try:
                    take_over(run.path)
                    st.rerun()
                except (RunError, OSError) as exc:  # a job holds it after all, or a read-only runs folder
                    st.error(common.plain(exc))
    if state:
        total = next((e.get("total_steps") for e in read_history(run.path) if e.get("event") == "start"), None)
        st.info(f"It saved its whole training state at step {state['step']}{f' of {total}' if total else ''}. "
                "**Resume training** goes on from there to the end it was set for, with the same batches and "
                "random state, so it ends as it would have had it never stopped.")
    if weights is not None:
        step = checkpoint_info(weights).get("step")
        st.info(f"It saved its best weights before it stopped{f', from step {step}' if step else ''}. Testing them "
                "completes the run now, as **Finish this run now** would have then; the run records where it stopped.")
    if state or weights is not None:
        busy = jobs.current_job(common.runs_dir()) is not None
        common.refused_start(busy)
        wait = "Wait for the running job to end first." if busy else None
        actions = [("Test the saved weights and complete the run", "runs_finish", jobs.launch_finish)] if weights else []
        if state:  # going on keeps the work: it comes first
            actions.insert(0, (f"Resume training from step {state['step']}", "runs_resume", jobs.launch_resume))
        for i, (column, (label, key, launch)) in enumerate(zip(st.columns(len(actions)), actions)):
            if column.button(label, key=key, type="primary" if i == 0 else "secondary", disabled=busy, help=wait):
                try:
                    launch(common.runs_dir(), run.id)
                    # the URL keeps the run (it may have been the default): a reload shows the job's progress again
                    st.session_state["runs_job"], st.session_state["runs_one_chosen"] = run.id, True
                    st.session_state.pop(common.REFUSED_START, None)
                    st.rerun()
                except jobs.JobBusy as exc:  # another tab's job started first: said across the redraw it causes
                    common.note_refused(f"The {key.removeprefix('runs_')} of run {run.id}", exc)
                    st.rerun()
                except jobs.JobError as exc:
                    st.error(common.plain(exc))
    with st.expander("Configuration"):
        if run.config:
            st.dataframe(settings_table(run.config, run.mode), hide_index=True, height="content")
            st.markdown(configuration_notes(run))
            if st.toggle("Show config.json as it is", key="runs_raw_config"):
                st.json(run.config, expanded=1)
        else:
            st.caption("Its config.json cannot be read.")
    if run.metrics:
        with st.expander("Test metrics"):
            test = run.metrics["test"]
            st.dataframe(metrics_table(run.metrics), hide_index=True, height="content")
            (tn, fp), (fn, tp) = test["confusion_matrix"]
            st.dataframe(pd.DataFrame({"": ["actual ham", "actual spam"], "called ham": [tn, fn],
                                       "called spam": [fp, tp]}), hide_index=True, height="content")
            # a baseline is fitted once, with fixed settings: its validation scores chose nothing
            chose = "scored for reference (the baseline is fitted once, with fixed settings)" \
                if run.mode == "baseline" else "the messages that chose the kept weights"
            st.caption(f"{test['n']:,} test messages, {test['n_spam']:,} of them spam, at this run's threshold of "
                       f"{run.metrics.get('threshold', 0.5):g}. Validation: {chose}. ROC and PR curves are on Compare.")
with right:
    st.download_button("Download run as zip", data=lambda: common.zip_run(run.id), file_name=f"{run.id}.zip",
                       help="Loads without this app: plain transformers (fine-tuned, frozen encoder + head) or "
                       "scikit-learn (baseline); README.md inside shows how." if run.usable else
                       f"Only completed runs with saved weights can be downloaded; this one is {run.status}.",
                       mime="application/zip", key="runs_download", disabled=not run.usable)
    if st.session_state.get("runs_confirm") != run.id:
        in_use = jobs.in_use(common.runs_dir(), run.id)  # training it, or loading to resume or finish it
        if st.button("Delete this run…", key="runs_delete", disabled=in_use,
                     help="Cancel the running job on the Train page first." if in_use else None):
            st.session_state["runs_confirm"] = run.id
            st.rerun()
    else:
        st.warning(f"Delete {run.id} and its model for good?")
        with st.container(horizontal=True):  # side by side where they fit, one under the other where not
            delete_now = st.button("Yes, delete", type="primary", key="runs_delete_yes")
            keep = st.button("Keep it", key="runs_delete_no")
        if delete_now:
            st.session_state.pop("runs_confirm")
            try:
                with st.spinner("Deleting (after any job that is being started has started)…"):
                    jobs.delete(common.runs_dir(), run.id)
                common.forget_run(run)
                st.session_state["runs_deleted"] = run.id  # the toast says so: no warning that it has gone
                st.session_state["runs_deleted_toast"] = run.id  # shown by the rerun: a toast before it is dropped
                st.rerun()
            except (RunError, OSError) as exc:
                st.error(common.plain(exc))
        if keep:
            st.session_state.pop("runs_confirm")
            st.rerun()
