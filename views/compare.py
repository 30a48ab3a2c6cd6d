"""Compare: ROC and PR overlaid, confusion matrices side by side at one threshold, the messages they get wrong."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data import dropped_rows
from core.evaluate import delete_evaluations, saved_evaluation
from core.metrics import calibration, classification_metrics, mcnemar_test

from views import common

st.title("Compare")

choices = {mode: common.usable_runs(mode) for mode in ("frozen", "finetune", "baseline")}
if not choices["frozen"] and not choices["finetune"]:
    st.info("No completed frozen or fine-tuned run yet. Train one on the Train page (or use the quick preset on "
            "Overview), then come back here.")
    common.end_page()

c = st.columns(3)
picked = {}
for col, mode in zip(c, ("frozen", "finetune", "baseline")):
    if not choices[mode] and mode != "baseline":
        col.warning(f"No completed run of {common.MODE_LABELS[mode]} yet.")
        continue
    picked[mode] = common.run_picker(col, mode, choices[mode], f"compare_{mode}",
                                     none_label="none" if mode == "baseline" else None)
picked = {m: r for m, r in picked.items() if r is not None}
common.warn_if_cut_short(picked)
common.note_other_data(picked)
bert = picked.get("finetune") or picked.get("frozen")  # the two BERTs' own mismatch is said with their McNemar test
if "baseline" in picked and bert is not None and not common.same_test_messages(picked["baseline"], bert):
    counts = [run.metrics["test"].get("n", "?") for run in (picked["baseline"], bert)]
    st.warning(f"The TF-IDF baseline run was tested on other messages ({counts[0]}, against {counts[1]}: other "
               "data, seed or split), so its curves, matrix and "
               "metrics are not comparable with the BERTs', and it is left out of the table of messages they get "
               "wrong. Pick a baseline trained on the same data and seed, or none.")
if unequal := common.unequal_training(picked):  # e.g. a 50-message fine-tune beside the frozen run on them all
    st.warning(unequal)

# ---------------------------------------------------------------------------- ROC and PR
# at full scale every ROC curve hugs the top-left corner, where the models differ. The zoom, the threshold and the
# search are bound to the URL (?compare_threshold=0.3…): a reload or a shared link shows the same view
zoom = st.toggle("Zoom into the corners where the models differ (ROC: false positive rate up to 10 %; "
                 "precision-recall: recall from 80 %, precision from 50 %)", key="compare_roc_zoom",
                 persist_state=common.KEEP, bind="query-params")
left, right = st.columns(2)
roc, pr = go.Figure(), go.Figure()
for mode, run in picked.items():
    curves, test = run.metrics.get("curves") or {}, run.metrics["test"]
    name = common.MODE_LABELS[mode]
    if curves.get("roc"):
        roc.add_scatter(x=curves["roc"]["fpr"], y=curves["roc"]["tpr"], mode="lines",
                        name=f"{name} (AUROC {common._fmt(test.get('auroc'))})",
                        line=dict(color=common.MODE_COLORS[mode]))
    if curves.get("pr"):
        pr.add_scatter(x=curves["pr"]["recall"], y=curves["pr"]["precision"], mode="lines",
                       name=f"{name} (AUPRC {common._fmt(test.get('auprc'))})",
                       line=dict(color=common.MODE_COLORS[mode]))
roc.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="lightgray"), name="chance",
                showlegend=False)
for fig, title, xt, yt in ((roc, "ROC curve", "false positive rate", "true positive rate"),
                           (pr, "Precision-recall curve", "recall", "precision")):
    fig.update_layout(title=title, xaxis_title=xt, yaxis_title=yt, height=420, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2))
if zoom:
    # from where the lowest curve leaves the y axis (its true positive rate with no false alarm)
    low = min((max(t for f, t in zip(roc_points["fpr"], roc_points["tpr"]) if f == 0)
               for roc_points in ((run.metrics.get("curves") or {}).get("roc") for run in picked.values()) if roc_points),
              default=0.0)
    roc.update_layout(xaxis=dict(range=[0, 0.1], title="false positive rate (zoomed: up to 0.1)"),
                      yaxis=dict(range=[max(0.0, low - 0.02), 1.005], title="true positive rate (zoomed)"))
    # the PR curves crowd the top-right corner. A fixed window: each curve ends at recall 1 with precision at the
    # spam share (~0.13), so a window fitted to the lowest point would zoom nothing
    pr.update_layout(xaxis=dict(range=[0.8, 1.005], title="recall (zoomed: from 0.8)"),
                     yaxis=dict(range=[0.5, 1.005], title="precision (zoomed: from 0.5)"))
left.plotly_chart(roc, key="compare-roc")
right.plotly_chart(pr, key="compare-pr")

# ---------------------------------------------------------------------------- calibration
reliability = go.Figure()
for mode, run in picked.items():
    predictions = run.metrics.get("predictions") or []
    if not predictions:
        continue
    cal = calibration([p["label"] for p in predictions], [p["spam_probability"] for p in predictions])
    low, high = np.array(cal["observed_ci95"]).T
    # points without lines: a line drawn through bins of one message each made a calibrated model look erratic
    reliability.add_scatter(x=cal["predicted"], y=cal["observed"], mode="markers",
                            name=f"{common.MODE_LABELS[mode]} (Brier {cal['brier']:.4f})",
                            marker_color=common.MODE_COLORS[mode],
                            error_y=dict(type="data", array=high - cal["observed"], arrayminus=cal["observed"] - low,
                                         thickness=1, width=3),
                            # area ~ messages in the bin: a jump made of one message should look like one
                            marker=dict(size=[min(22, 5 + 1.5 * n ** 0.5) for n in cal["counts"]]),
                            customdata=[f"{n:,} message{'s' * (n != 1)}" for n in cal["counts"]],
                            hovertemplate=f"{common.MODE_LABELS[mode]}: predicted %{{x:.2f}}, observed %{{y:.2f}}, "
                                          "%{customdata}<extra></extra>")
reliability.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="lightgray"),
                        name="perfectly calibrated", showlegend=False)
# the key on a line of its own: on one line, a 1024 px screen cut it off
reliability.update_layout(title="Calibration: does 80 % spam mean spam 80 % of the time?<br><sup>point size: messages; "
                                "bars: 95 % intervals</sup>",
                          height=380,
                          xaxis_title="predicted spam probability (10 bins)", yaxis_title="share that is spam",
                          margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.25))
st.plotly_chart(reliability, key="compare-calibration")

# ---------------------------------------------------------------------------- intervals and the paired test
# one row per metric and one column per model: a column per metric was too wide for a laptop screen
metrics_table = pd.DataFrame({"metric": ["threshold"] + [common.METRIC_NAMES[k] for k in common.HEADLINE + ["mcc"]]} | {
    common.MODE_LABELS[mode]: [f"{run.metrics.get('threshold', 0.5):g}"]
    + [common.with_interval(run.metrics["test"], k) for k in common.HEADLINE + ["mcc"]] for mode, run in picked.items()})
st.subheader("Test metrics with 95 % bootstrap intervals")
thresholds = sorted({float(r.metrics.get("threshold", 0.5)) for r in picked.values()})
each = ", ".join(f"{common.SHORT_LABELS[m]} {float(r.metrics.get('threshold', 0.5)):g}" for m, r in picked.items()) \
    if len(thresholds) > 1 else f"{thresholds[0]:g}"  # which run has which, when they differ
st.caption(f"At each run's own threshold ({each}, the table's first row); the slider below does not change these.")
table_note = "The metrics table gives each run at its own threshold (its first row); the confusion matrices{} use {:g}."
st.dataframe(metrics_table, hide_index=True, placeholder="—")
glossary = "; ".join([f"{common.METRIC_NAMES[k]}: {common.METRIC_MEANINGS[k]}" for k in common.HEADLINE + ["mcc"]]
                     + [f"{term}: {meaning}" for term, meaning in common.TERM_MEANINGS.items()])  # for the report
common.glossary()
table_warnings = [w for mode, run in picked.items()  # a 0.000 precision that means "calls nothing spam" needs saying
                  if (w := common.one_class_warning(run.metrics["test"], common.MODE_LABELS[mode]))]
for warning in table_warnings:
    st.warning(warning)


a, b = picked.get("frozen"), picked.get("finetune")
# the two models compared message by message (McNemar, the table of errors): the two BERTs, or, where one of them
# has no run, the other against the baseline
pair = {m: picked[m] for m in (("frozen", "finetune") if a is not None and b is not None else
                               ("baseline", "frozen", "finetune")) if m in picked}
paired = len(pair) == 2 and common.same_test_messages(*pair.values())

# ---------------------------------------------------------------------------- one threshold, both matrices
st.subheader("Confusion matrices at one threshold")
threshold = st.slider("Spam threshold: a message is called spam when its probability is at least this",
                      0.01, 0.99, 0.5, 0.01, key="compare_threshold", persist_state=common.KEEP,
                      bind="query-params")
cols = st.columns(max(len(picked), 3))  # one or two matrices keep the size of three, not the page's width
matrices, matrix_warnings = {}, []
for col, (mode, run) in zip(cols, picked.items()):
    preds = run.metrics.get("predictions") or []
    if not preds:
        col.warning(f"{run.id} has no stored predictions.")
        continue
    y = np.array([p["label"] for p in preds])
    p = np.array([p["spam_probability"] for p in preds])
    m = classification_metrics(y, p, threshold)
    # the threshold on a line of its own: after the label, a third of a laptop screen cut it to "threshold 0"
    matrices[mode] = common.confusion_figure(m["confusion_matrix"],
                                             f"{common.MODE_LABELS[mode]}<br><sup>at threshold {threshold:g}</sup>")
    col.plotly_chart(matrices[mode], key=f"compare-cm-{mode}")
    no_spam_called = m["confusion_matrix"][0][1] + m["confusion_matrix"][1][1] == 0
    # one line, not three st.metric: those cut "0.945" to "0…" in a third of a laptop screen
    col.markdown(f"Precision **{'undefined' if no_spam_called else common._fmt(m['precision'], 3)}** · "
                 f"Recall **{common._fmt(m['recall'], 3)}** · F1 **{common._fmt(m['f1'], 3)}**")
    if warning := common.one_class_warning(m, common.MODE_LABELS[mode]):
        col.warning(warning)
        matrix_warnings.append(f"At the confusion matrices' threshold, {threshold:g}: {warning}")  # the report too

mcnemar = None
if paired:
    (first, run_a), (second, run_b) = pair.items()
    y = np.array([p["label"] for p in run_a.metrics["predictions"]])
    pa, pb = (np.array([p["spam_probability"] for p in run.metrics["predictions"]]) for run in (run_a, run_b))
    test = mcnemar_test(y, pa, pb, threshold)
    verdict = "a real difference" if test["p_value"] < 0.05 else "not a significant difference"
    # the later model first, as the Overview says it (fine-tuned before frozen, a BERT before the baseline)
    mcnemar = (f"McNemar test at threshold {threshold:g}: only the {common.SHORT_LABELS[second]} model is right on "
               f"{common._n(test['only_b_right'], 'message')}, only the {common.SHORT_LABELS[first]} one on "
               f"{test['only_a_right']}; p = {test['p_value']:.3g} ({verdict} at the 5 % level).")
    st.markdown(f"**{mcnemar}**")
elif a is not None and b is not None:  # the baseline's own mismatch is said above, under the pickers
    st.warning("These two runs were tested on different messages (other data, seed or split), so they "
               "cannot be compared message by message. Pick runs trained on the same data and seed.")

# ---------------------------------------------------------------------------- the messages they get wrong
SHORT = common.SHORT_LABELS
BY_SHORT = {short: mode for mode, short in SHORT.items()}


def messages_frame(scored: dict[str, tuple[list[dict], float]]) -> pd.DataFrame:
    """One row per message: its text and truth, each model's spam probability and whether it is wrong at its
    threshold. scored: mode -> (its per-message predictions, threshold); every mode scored the same messages, in
    the same order."""
    first = next(iter(scored.values()))[0]
    frame = pd.DataFrame({"message": [p["text"] for p in first], "truth": ["spam" if p["label"] else "ham" for p in first]})
    for mode, (predictions, _) in scored.items():
        frame[f"{SHORT[mode]} p(spam)"] = [p["spam_probability"] for p in predictions]
    for mode, (_, at) in scored.items():
        frame[f"{SHORT[mode]} wrong"] = (frame[f"{SHORT[mode]} p(spam)"] >= at) != (frame["truth"] == "spam")
    return frame


def wrong_messages_table(wrong: pd.DataFrame, key: str, at: str) -> None:
    """Messages with each model's spam probability ("<model> p(spam)") and ✗ where it is wrong ("<model>
    wrong", at: the threshold, in words), sortable; a picked row is shown whole, as plain text."""
    if wrong.empty:  # "0 message(s)" over an empty table read as a fault
        st.caption(f"None {at}: every model gets every message here right.")
        return
    st.caption(f"{len(wrong)} message(s): each model's spam probability, and ✗ where it is wrong {at}. "
               "Click a column header to sort, and a row's left edge to read its whole message (the last column).")
    # short headers, so that all the columns and their names fit a laptop screen; the hover says the rest. Each
    # model's "wrong" mark sits beside its probability under a short header. The message comes last: first, at
    # 1024 px it pushed every model but the first out of sight, and a picked row shows it whole anyway
    models = [c.removesuffix(" p(spam)") for c in wrong.columns if c.endswith(" p(spam)")]
    # ✗, not a tick box: beside the row-selection boxes, ticks read as something to click
    shown = wrong.assign(**{f"{m} wrong": wrong[f"{m} wrong"].map({True: "✗", False: ""}) for m in models})
    picked_row = st.dataframe(shown, hide_index=True, placeholder="—", key=key, on_select="rerun",
                              selection_mode="single-row",
                              column_order=["truth"] + [f"{m} {c}" for m in models for c in ("p(spam)", "wrong")]
                              + ["message"],
                              column_config={
        f"{m} p(spam)": st.column_config.ProgressColumn(m, format="%.3f", min_value=0.0, max_value=1.0, width=80,
                                                        help=f"{m}: spam probability",  # in the model's colour
                                                        color=common.MODE_COLORS[BY_SHORT[m]]) for m in models} | {
        f"{m} wrong": st.column_config.TextColumn("wrong", width=62, help=f"{m} wrong {at}") for m in models} | {
        "message": st.column_config.TextColumn(width=300)})
    # the message column shows some 40 characters: a picked row is shown whole, as plain text
    if picked_row.selection.rows and picked_row.selection.rows[0] < len(wrong):
        row = wrong.iloc[picked_row.selection.rows[0]]
        st.text(row["message"])
        st.caption(f"Truth: {row['truth']} · " + " · ".join(
            f"{c.removesuffix(' p(spam)')} {row[c]:.3f}" for c in wrong.columns if c.endswith("p(spam)")))


if paired:
    st.subheader("Test messages at least one model gets wrong")
    anchor = next(iter(pair.values()))
    frame = messages_frame({mode: (run.metrics["predictions"], threshold) for mode, run in picked.items()
                            if common.same_test_messages(anchor, run)})
    wrong = frame[frame.filter(like=" wrong").any(axis=1)]
    query = st.text_input("Search the messages", key="compare_search", placeholder="a word or part of one, e.g. call",
                          persist_state=common.KEEP, bind="query-params")
    if query:
        wrong = wrong[wrong["message"].str.contains(query, case=False, regex=False)]
    if query and wrong.empty:
        st.caption(f"No message that a model gets wrong at {threshold:g} contains “{common.plain(query)}”.")
    else:  # keyed by what filters its rows: a picked row is a position, which would point elsewhere after a search
        wrong_messages_table(wrong, f"compare_wrong:{threshold:g}:{query}", f"at {threshold:g}")

# ---------------------------------------------------------------------------- your own messages
st.subheader("Evaluate on your own messages")
st.caption("The UCI messages date from 2011; today's smishing (parcel fees, bank \"verify\" links, \"Hi mum\") "
           "looks different. Upload labelled messages from your own traffic (UCI format, or CSV/TSV with a label "
           "and a text column) to see how each model holds up, next to its own test split. Results are saved "
           "in each run's evaluations/ folder, which a run's zip leaves out.")


def _forget_own_file(uploader_key: str | None = None):
    if uploader_key is None or st.session_state.get(uploader_key) is None:  # None: removed from the uploader
        st.session_state.pop("compare_own_file", None)
        st.session_state.pop("compare_own_digest", None)
        st.query_params.pop("own", None)


def _delete_own_scores(digest: str):
    st.session_state["compare_own_deleted"] = delete_evaluations([run.path for run in common.runs()], digest)
    common.evaluate_upload.clear()  # else a cached result would come back without being saved again
    _forget_own_file()
    # a new key empties the uploader, which would otherwise hand the file back to be scored and saved again
    st.session_state["compare_own_uploader"] = st.session_state.get("compare_own_uploader", 0) + 1


if (deleted := st.session_state.pop("compare_own_deleted", None)) is not None:
    st.toast(f"Deleted the file's saved scores from {deleted:,} run(s)", icon=":material/delete:")
uploader_key = "compare_own" + (f"-{n}" if (n := st.session_state.get("compare_own_uploader")) else "")
uploaded = st.file_uploader(f"Labelled messages, {common.upload_limit()}", key=uploader_key,
                            on_change=_forget_own_file, args=(uploader_key,))
# an uploader forgets its file on a page switch (it has no persist_state): the session keeps it, so the results
# and the report still hold it when the user comes back
if uploaded is not None:
    st.session_state["compare_own_file"] = (uploaded.name, uploaded.getvalue())
own = st.session_state.get("compare_own_file")
# a reload starts a new session, which has no file: the URL names the last one scored (?own=<its sha256, 10 digits>,
# on every page: common.state_in_url), and each run kept its scores in evaluations/, so they are reopened from there
# (own[1] None: no bytes to score)
reopened = {}
if own is None and (linked := st.session_state.get("compare_own_digest")):
    reopened = {mode: found for mode, run in picked.items() if (found := saved_evaluation(run.path, linked))}
    if reopened:
        own = (next(iter(reopened.values()))["name"], None)
    else:  # deleted, or none of the runs picked now scored it
        st.query_params.pop("own", None)
        st.session_state.pop("compare_own_digest", None)
if own is not None and uploaded is None:
    kept, forget = st.columns([4, 1], vertical_alignment="center")
    kept.caption(f"Scoring {common.plain(own[0])}, uploaded earlier in this session. Upload a file to replace it."
                 if own[1] is not None else
                 f"The scores of {common.plain(own[0])}, uploaded earlier and saved with each run (a reload forgets "
                 "the file itself). Upload a file to replace it.")
    if forget.button("Forget this file", key="compare_own_forget"):
        _forget_own_file()
        st.rerun()
own_rows, own_warnings, zero_width, own_results = [], [], set(), {}
if own is not None:
    for mode, run in picked.items():
        if own[1] is None and mode not in reopened:
            st.info(f"{common.MODE_LABELS[mode]} ({run.id}) has not scored {common.plain(own[0])}: upload the file "
                    "again to score it with this run too.")
            continue
        try:
            result = own_results[mode] = reopened.get(mode) or common.evaluate_and_keep(str(run.path), run.created, *own)
        except (ValueError, OSError) as exc:  # DataError / RunError carry a message meant for the user
            st.error(common.plain(exc))  # DataError names the file already
            break
        st.session_state["compare_own_digest"] = st.query_params["own"] = result["sha256"][:10]
        if result.get("not_saved"):  # a full disk or read-only runs folder: shown now, gone after a reload
            own_warnings.append(f"{common.MODE_LABELS[mode]}: {common.plain(result['not_saved'])}, so a reload or a "
                                "link will not bring them back.")
        m, test = result["metrics"], run.metrics["test"]
        if m["n_spam"] in (0, m["n"]):  # the same file for every run: what one class in it leaves undefined
            text = ("Your file has no spam: recall, F1, AUROC and AUPRC are undefined here (– in the table), as is "
                    "precision for a model that calls nothing spam; accuracy is the share of ham let through."
                    if m["n_spam"] == 0 else
                    "Your file has no ham: AUROC and AUPRC need both classes, so they are undefined here (– in the "
                    "table), and precision is 1 for any model that calls something spam (there is no ham to raise a "
                    "false alarm on). Recall, the share of spam caught, is the measure that means something.")
            own_warnings += [text] if text not in own_warnings else []
        elif warning := common.one_class_warning(m, common.MODE_LABELS[mode], "message in your file"):
            own_warnings.append(warning)
        zero_width |= common.flat_intervals(m)
        own_rows.append({"model": common.MODE_LABELS[mode], "threshold": f"{m['threshold']:g}",
                         "messages": m["n"], "spam": m["n_spam"],
                         "seen in training": result.get("seen_in_training"),
                         # with intervals: a file of 40 messages pins little down, and a lone number hides it
                         **{f"{common.METRIC_NAMES[k]} (yours)": common.with_interval(m, k) for k in common.HEADLINE},
                         **{f"{common.METRIC_NAMES[k]} (UCI test)": common._fmt(test.get(k), 3)
                            for k in ("accuracy", "f1")}})
    if own_rows and (dropped := dropped_rows(result)):  # the same file for every run: said once, and in the report
        own_warnings.insert(0, f"Left out of {common.plain(own[0])}: {', '.join(dropped)}, of {result['rows_read']:,} "
                               "rows read. The scores are on the rest." + common.QUOTE_ADVICE * bool(
                                   result.get("dropped_unparseable")))
    # every resample perfect, or every one wrong: a percentile interval of no width, which reads as certainty
    own_warnings += [common.FLAT_INTERVAL_NOTES[end].format(what="your file", cases="cases of that kind (spam, for "
                                                            "recall)") for end in (1, 0) if end in zero_width]
    if own_rows and result.get("duplicates_removed"):
        own_warnings.append(f"{result['duplicates_removed']:,} repeated message(s) in {common.plain(own[0])} were "
                            "scored once.")
    if own_rows:
        st.caption("At each run's own threshold, like the metrics table above; the slider does not apply here. "
                   "Your file's scores carry 95 % bootstrap intervals: the fewer its messages, the wider they are.")
        # one column per model, one row per measure, as in the metrics table above: 14 columns did not fit a laptop
        own_frame = pd.DataFrame(own_rows, dtype=object).set_index("model").T.rename_axis("measure").reset_index()
        own_frame = own_frame.map(lambda v: None if v is None else f"{v:,}" if isinstance(v, int) else str(v))
        st.dataframe(own_frame, hide_index=True, placeholder="—", height="content")
        if unknown := [row["model"] for row in own_rows if row["seen in training"] is None]:
            own_warnings.append(f"Whether {' and '.join(unknown)} trained on some of these messages cannot be checked: "
                                "its dataset has moved or changed since ('seen in training' shows —).")
        if any(row["seen in training"] for row in own_rows):
            own_warnings.append("Some of these messages were in a model's training or validation data (row "
                                "'seen in training'): its scores on them say little about new messages. Remove them "
                                "for a fair test.")
        for warning in own_warnings:
            st.warning(warning)
        # which of them each model gets wrong: "which smishing did it let through?" (every run scored the same
        # de-duplicated messages, in the same order)
        yours = messages_frame({mode: (res["predictions"], res["metrics"]["threshold"])
                                for mode, res in own_results.items()})
        st.markdown("**Your messages at least one model gets wrong**")
        wrong_messages_table(yours[yours.filter(like=" wrong").any(axis=1)], "compare_own_wrong",
                             "at its run's own threshold")
        st.button("Delete this file's saved scores", key="compare_own_delete", on_click=_delete_own_scores,
                  args=(result["sha256"],), help="Each run keeps the file's messages and scores in its evaluations/ "
                  "folder, so that a reload shows them again. This removes them from every run, and the file from "
                  "this page.")

# ---------------------------------------------------------------------------- the take-away for stakeholders
run_thresholds = sorted({float(r.metrics.get("threshold", 0.5)) for r in (a, b) if r is not None})
# a threshold picked here is picked on the test messages: it can flatter either model, so the handout says so
off_threshold = (("The runs' own threshold, " if len(run_thresholds) == 1 else "The runs' own thresholds, ")
                 + " and ".join(f"{t:g}" for t in run_thresholds)
                 + (", set before testing, gives" if len(run_thresholds) == 1 else ", set before testing, give")
                 + " the fair counts (as the Overview page counts them): a threshold chosen on the test messages "
                   "themselves can flatter either model."
                 ) if a is not None and b is not None and run_thresholds != [threshold] else None


def report() -> str:
    """The comparison as one HTML file, built on click: 5 MB of HTML, and the verdict, are not for every rerun."""
    # the verdict, at the slider's threshold like the matrices, says what the McNemar line says and more
    headline = common.finetuning_verdict(a, b, picked.get("baseline"), threshold) if a is not None and b is not None \
        else None
    also = " and \"What fine-tuning bought\"" if headline else " and the McNemar test" if mcnemar else ""
    notes = [table_note.format(also, threshold), f"What the metrics measure: {glossary}.", *table_warnings,
             *matrix_warnings] + [
        n for n in (mcnemar,) if n and not headline] + [n for n in (unequal,) if n] + [
        n for n in (off_threshold,) if n]
    extra = {f"Your own messages ({own[0]}), at each run's own threshold": (own_frame, own_warnings)} \
        if own_rows else None
    return common.comparison_report(runs={common.MODE_LABELS[m]: (r.id, common.model_used(r)) for m, r in picked.items()},
                                    table=metrics_table, figure_rows=[[roc, pr], [reliability], list(matrices.values())],
                                    notes=notes, extra_tables=extra, verdict=headline)


st.download_button("Download this comparison as a self-contained HTML report", report, key="compare_report",
                   file_name="spam-model-comparison.html", mime="text/html",
                   help="Charts and tables as on this page, plotly included: it opens without a network.")
if off_threshold:  # a handout that disagrees with the Overview
    st.caption(f"The report's \"What fine-tuning bought\" counts errors at the slider's threshold, {threshold:g}. "
               + off_threshold)
