"""Playground: type a message, see every selected model's spam probability side by side; or score a batch."""
import hashlib
import json
import math
import re
import secrets
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data import DataError, dropped_rows, normalise, read_messages, read_unlabelled, split_lines
from core.evaluate import seen_in_training
from core.explain import MAX_WORDS, explain_words
from core.jobs import encoding_left, format_seconds
from core.metrics import bootstrap_intervals
from core.predict import MAX_MESSAGE_CHARS
from core.runs import RunError, read_json, write_json_atomic

from views import common

EXAMPLES = {  # label -> (message, what it is): written for the demo, not taken from the data
    "Obvious spam": ("WINNER!! As a valued network customer you have been selected to receive a £900 prize reward! "
                     "To claim call 09061701461. Claim code KL341. Valid 12 hours only.", "spam"),
    "Obvious ham": ("Hey, are we still on for dinner tonight? I can pick you up at 7.", "ham"),
    "Tricky: friendly spam": ("Hi it's Sarah from the gym, we've got a free month for you if you reply YES today x",
                              "spam"),
    "Tricky: ham about money": ("Can you send me the £20 for the tickets? Need to pay before Friday", "ham"),
    "Tricky: smishing": ("Your parcel could not be delivered. Reschedule here: http://royal-mail-redelivery.co/uk",
                         "spam"),
}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

st.title("Playground")

# ---------------------------------------------------------------------------- scored batches, kept on disk
# A reload starts a new session, which would lose a batch that took minutes to score: each scored batch is saved
# under the runs folder, and the URL names it (?batch=<digest>), as Compare's does for an uploaded file.
BATCHES = common.runs_dir() / ".playground"  # a leading dot: list_runs never takes it for a run
KEEP_BATCHES = 20  # the newest; older ones are deleted when a new one is saved


def keep_batch(batch: dict) -> str | None:
    """Save a scored batch and return its digest, or None where the runs folder is read-only (the session keeps
    it then, and a reload loses it)."""
    record = {**batch, "table": batch["table"].to_dict("list")}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:10]
    try:
        BATCHES.mkdir(parents=True, exist_ok=True)
        write_json_atomic(BATCHES / f"{digest}.json", record)
        for old in sorted(BATCHES.glob("*.json"), key=lambda f: f.stat().st_mtime_ns)[:-KEEP_BATCHES]:
            old.unlink(missing_ok=True)
    except OSError:
        return None
    return digest


# the lines typed, scored or not, kept beside the batches: a reload before Score lost a pasted list. One file per
# tab, named in the Playground's URL (?play_draft=, a page parameter: not on other pages' URLs or links, so a link
# shared from them carries no one's lines): one file for all had handed a tab's lines to every new tab, and a reload
# brought back whatever another tab typed last. Not named .json, which the batches' clean-up and reopening take for a
# batch
DRAFT_KEY = "play_draft"


def draft_file(draft_id: str | None) -> Path | None:
    """Where a tab's typed lines are kept; None for an id that is not one (it comes from a URL)."""
    return BATCHES / f"{draft_id}.draft" if re.fullmatch(r"[0-9a-f]{10}", draft_id or "") else None


def keep_draft() -> None:
    if draft_file(st.session_state.get(DRAFT_KEY)) is None:  # this tab's first lines: the URL names them from now on
        st.session_state[DRAFT_KEY] = secrets.token_hex(5)
    try:
        BATCHES.mkdir(parents=True, exist_ok=True)
        write_json_atomic(draft_file(st.session_state[DRAFT_KEY]), {"lines": st.session_state.get("play_lines") or ""})
        for old in sorted(BATCHES.glob("*.draft"), key=lambda f: f.stat().st_mtime_ns)[:-KEEP_BATCHES]:
            old.unlink(missing_ok=True)
    except OSError:  # a read-only runs folder: the session keeps them, a reload does not
        pass


def reopen_batch(digest: str | None) -> dict | None:
    """The batch saved under this digest, or None (none, deleted, damaged, or not a digest: it comes from a URL)."""
    if not re.fullmatch(r"[0-9a-f]{10}", digest or ""):
        return None
    try:
        record = read_json(BATCHES / f"{digest}.json")
        return {**record, "table": pd.DataFrame(record["table"]), "digest": digest}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def delete_batch(digest: str) -> None:
    (BATCHES / f"{digest}.json").unlink(missing_ok=True)
    for key in ("play_batch", "play_batch_digest"):
        st.session_state.pop(key, None)
    st.query_params.pop("batch", None)


if "play_batch" not in st.session_state and (linked := st.session_state.get("play_batch_digest")):
    if restored := reopen_batch(linked):  # the URL named it (on every page: common.state_in_url)
        st.session_state["play_batch"] = restored
        if not st.query_params.get("play_text"):  # the link was to the batch, not to a message (and its tab)
            st.session_state.setdefault("play_tab_open", "Batch")
        for mode in common.MODE_LABELS:  # and to the runs that scored it, unless the link names runs itself
            st.session_state.setdefault(common._shared_pick(mode), restored["runs"].get(mode))
        if restored.get("lines") and "play_lines" not in st.session_state:
            st.session_state["play_lines"] = restored["lines"]  # what was pasted, back in its box
    else:
        st.session_state.pop("play_batch_digest")
        st.query_params.pop("batch", None)

# ---------------------------------------------------------------------------- which models
picked = {}
cols = st.columns(3)
for col, mode in zip(cols, ("frozen", "finetune", "baseline")):
    options = common.usable_runs(mode)
    if not options:
        col.warning(f"No {common.MODE_LABELS[mode]} run yet: train one on the Train page.")
        continue
    run = common.run_picker(col, mode, options, f"play_{mode}", none_label="not used")
    if run is not None:
        picked[mode] = run
if not picked:
    st.info("There is no trained model to try yet. Use the quick preset on Overview or start a run on Train; "
            "the models appear here as soon as their runs complete.")
    common.end_page()

for mode, run in picked.items():  # its verdicts here would all be "ham" (or all "spam"): say why, up front
    if warning := common.one_class_warning(run.metrics["test"], common.MODE_LABELS[mode]):
        st.warning(warning)
common.warn_if_cut_short(picked)  # a run finished a step in gives an untrained model's verdicts

models = {}
for mode, run in picked.items():
    try:
        models[mode] = (run, common.predictor(str(run.path), run.created))
    except (RunError, OSError, ValueError) as exc:  # weights damaged after listing: say so, keep the page
        st.error(f"{run.id} cannot be loaded: {common.plain(exc)}")


def score(texts: list[str], progress=None) -> dict[str, np.ndarray]:
    """Each model's spam probabilities; with a progress bar, it shows how far each model is (2,000 messages take
    a minute or more on a laptop CPU), and is removed at the end."""
    scores = {}
    for i, (mode, (_, predictor)) in enumerate(models.items()):
        first = {}

        def step(done, total, tokens, tokens_total, i=i, mode=mode, first=first):
            # the tokens are the clock: the batches run from the shortest messages to the longest
            latest = {"time": time.monotonic(), "tokens": tokens, "tokens_total": tokens_total}
            share, left = encoding_left(first.setdefault("event", latest), latest, latest["time"])
            progress.progress((i + share) / len(models), text=(
                f"Scoring {total:,} messages: {common.MODE_LABELS[mode]}, {done:,} done"
                + (f", about {format_seconds(left)} left for it" if left is not None and left >= 1 else "")
                + f" (model {i + 1} of {len(models)})"))
        scores[mode] = predictor.predict(texts, on_progress=step if progress else None)
    if progress:
        progress.empty()
    return scores


COLOURED, BOLD = math.log(1.1), math.log(2)  # a word's weight (log-odds) that changes the odds by 10 %, or doubles them


def highlight(word: str, weight: float) -> str:
    """A word as inert markdown, on an orange (toward spam) or green (toward ham) background when it changes the odds
    of spam. Not red and blue: beside the bars, those are the fine-tuned and the frozen model's colours."""
    safe = common.plain(word)
    if abs(weight) < COLOURED:
        return safe
    colour = "orange" if weight > 0 else "green"
    # markdown has one shade per colour: a large effect is told apart by bold and its factor
    return f":{colour}-background[**{safe} {common.odds_factor(weight)}**]" if abs(weight) >= BOLD else \
        f":{colour}-background[{safe}]"


def threshold(run) -> float:
    return run.metrics.get("threshold", 0.5)


def verdict(run, p: float) -> str:
    return "spam" if p >= threshold(run) else "ham"


def percent(p: float) -> str:
    """p as a percentage that never reads as certainty: 0.99996 is not "100.0 %", nor is a float32 softmax that
    saturated to exactly 1.0 (or 0.0)."""
    if p >= 0.999:
        return ">99.9%"
    if p < 0.0005:
        return "<0.1%"
    return f"{p:.1%}"


# the open tab is tracked (on_change) and kept for the session: coming back from another page to a scored batch
# opens the Batch tab, not "One message" with the batch hidden behind it
single, batch = st.tabs(["One message", "Batch"], key="play_tab", on_change="rerun",
                        default=st.session_state.get("play_tab_open", "One message"))
st.session_state["play_tab_open"] = "Batch" if batch.open else "One message"

# ---------------------------------------------------------------------------- one message
with single:
    def use_example(text):
        st.session_state["play_text"] = text

    with st.container(horizontal=True):  # buttons as wide as their labels, wrapping: equal columns cut them
        for label, (text, _) in EXAMPLES.items():
            st.button(label, on_click=use_example, args=(text,), key=f"example-{label}")
    # kept in the URL (?play_text=…), so a reload or a shared link shows the same message; each message (typed or
    # an example) is a browser-history entry, so Back brings back the one before it (common.PAGE_PARAMS)
    common.widget_from_url("play_text", "")
    text = st.text_area("Message", key="play_text", persist_state=common.KEEP, height=110,
                        placeholder="Type or paste an SMS…",
                        help=f"Up to {common.MAX_INPUT_CHARS:,} characters; the models read the first "
                             f"{MAX_MESSAGE_CHARS:,} characters and at most their max length in tokens.")
    # not one too long to score: a browser's URL has its limits too
    common.set_in_url("play_text", text if text and len(text) <= common.MAX_INPUT_CHARS else None)
    if not text.strip():
        st.info("Type a message above, or click an example.")
    elif len(text) > common.MAX_INPUT_CHARS:
        st.error(f"That message is {len(text):,} characters; the limit here is {common.MAX_INPUT_CHARS:,}. "
                 "An SMS is at most a few hundred. Paste a shorter text.")
    elif models:
        probabilities = score([text])
        # the probability alone in the big figure: "85.9% spam" did not fit a third of a 1024 px screen ("85.9% sp…")
        st.caption("Each model's probability that this message is spam, and its verdict at its own threshold:")
        cols = st.columns(len(models))
        for col, (mode, (run, predictor)) in zip(cols, models.items()):
            p = float(probabilities[mode][0])
            col.metric(common.MODE_LABELS[mode], percent(p),
                       # which side of its threshold: "HAM (spam at ≥ 0.5)" read as a contradiction
                       delta=f"SPAM (≥ threshold {threshold(run):g})" if verdict(run, p) == "spam" else
                       f"HAM (< threshold {threshold(run):g})",
                       delta_color="inverse" if verdict(run, p) == "spam" else "normal", delta_arrow="off")
            if predictor.max_length:
                tokens = predictor.token_counts([text])[0]
                if tokens > predictor.max_length:
                    counted = f" in its first {MAX_MESSAGE_CHARS:,} characters" if len(text) > MAX_MESSAGE_CHARS else ""
                    col.caption(f"Truncated: {tokens:,} tokens{counted}, the model reads the first "
                                f"{predictor.max_length}.")
        truth = next((truth for example, truth in EXAMPLES.values() if example == text), None)
        if truth:  # an example: say what it is, so a miss in a demo reads as a miss, not as the right answer
            wrong = [common.MODE_LABELS[m] for m, (run, _) in models.items()
                     if verdict(run, float(probabilities[m][0])) != truth]
            every = "Every model" if len(models) > 1 else common.MODE_LABELS[next(iter(models))]
            st.caption(f"This example is {truth}. " + (
                f"{every} gets it right." if not wrong else f"{every} gets it wrong." if len(wrong) == len(models)
                else f"{' and '.join(wrong)} {'gets' if len(wrong) == 1 else 'get'} it wrong."))
        fig = go.Figure(go.Bar(
            x=[float(probabilities[m][0]) for m in models], y=[common.MODE_LABELS[m] for m in models],
            orientation="h", marker_color=[common.MODE_COLORS[m] for m in models],
            text=[percent(float(probabilities[m][0])) for m in models], showlegend=False,
            # outside a short bar: inside one near 0 the label had no room and was dropped. Inside, at the bar's
            # start: at its end, a score near the threshold had the threshold's line through it ("5|.0%")
            textposition=["inside" if probabilities[m][0] >= 0.2 else "outside" for m in models],
            insidetextanchor="start"))
        # each model's own threshold, where its verdict flips
        fig.add_scatter(x=[threshold(run) for run, _ in models.values()], y=[common.MODE_LABELS[m] for m in models],
                        mode="markers", marker=dict(symbol="line-ns-open", size=34, color="black", line_width=2),
                        name="each model's threshold", hovertemplate="threshold %{x}<extra></extra>")
        fig.update_layout(xaxis=dict(range=[0, 1], title="spam probability"), yaxis=dict(autorange="reversed"),
                          # left: the chart toolbar appears at the top right on hover
                          legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0, xanchor="left"),
                          height=110 + 45 * len(models), margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key="play-bars")
        if len(text) > MAX_MESSAGE_CHARS:
            st.caption(f"Every model scored only the first {MAX_MESSAGE_CHARS:,} of the message's {len(text):,} "
                       "characters (an SMS is a few hundred), and the BERTs only their max length in tokens of those.")
        common.widget_from_url("play_explain", False, parse=lambda linked: linked == "true")
        explain = st.toggle("Why this verdict: which words push each model toward spam", key="play_explain",
                            persist_state=common.KEEP)
        common.set_in_url("play_explain", "true" if explain else None)
        if explain:
            st.caption("Each word is left out in turn, and what that does to the model's odds of spam, p / (1 − p), "
                       "is its weight: odds still move where a near-certain model's probability hardly does. Orange "
                       "words raise the odds, green words lower them. Bold words at least double or halve them, with "
                       "the factor (×12: the word multiplies the odds of spam by 12; ÷4: it divides them by 4); words "
                       f"that change them by less than 10 % are not coloured (first {MAX_WORDS} words). Under each "
                       "model, its spam probability without each of its strongest words: where a model is near "
                       "certain, even a large factor can leave the probability where it was.")
            for col, (mode, (_, predictor)) in zip(st.columns(len(models)), models.items()):
                col.markdown(f"**{common.MODE_LABELS[mode]}**")
                explained = explain_words(predictor, CONTROL.sub(" ", text))
                col.markdown(" ".join(highlight(w, d) for w, d in explained.weights))
                strongest = sorted((wd for wd in explained.weights if abs(wd[1]) >= BOLD), key=lambda wd: -abs(wd[1]))
                # not the text's own probability again: scored in a batch of variants, it can differ from the figure
                # above in its last digit
                if strongest:
                    col.caption("Its spam probability without " + ", ".join(
                        f"“{common.plain(w)}”: {percent(explained.probability_without(d))}" for w, d in strongest[:3]))
                elif explained.weights and max(abs(d) for _, d in explained.weights) < COLOURED:
                    col.caption("No single word changes this model's odds by 10 %: the rest of the message decides "
                                "without it.")
        with st.expander("The message as scored (shown as plain text)", expanded=True):
            st.text(CONTROL.sub("\ufffd", text[:MAX_MESSAGE_CHARS]) + ("…" if len(text) > MAX_MESSAGE_CHARS else ""))

# ---------------------------------------------------------------------------- batch
with batch:
    st.caption(f"One message per line, or a CSV/TSV file (a 'text' or 'message' column; a label column is "
               f"used to show accuracy). Up to {common.MAX_BATCH_LINES:,} messages.")
    if DRAFT_KEY not in st.session_state and draft_file(linked := st.query_params.get(DRAFT_KEY)):
        st.session_state[DRAFT_KEY] = linked  # a reload: this tab's lines
    if st.session_state.get(DRAFT_KEY):  # kept in this page's URL (written by keep_draft's rerun too)
        common.set_in_url(DRAFT_KEY, st.session_state[DRAFT_KEY])
    if "play_lines" not in st.session_state and (draft := draft_file(st.session_state.get(DRAFT_KEY))):
        try:  # a new session (a reload) of a tab that typed lines: they come back
            st.session_state["play_lines"] = str(read_json(draft)["lines"])
        except (OSError, ValueError, TypeError, KeyError):  # deleted (the oldest go), or damaged
            pass
    lines = st.text_area("Messages, one per line", key="play_lines", height=150, persist_state=common.KEEP,
                         on_change=keep_draft)
    upload = st.file_uploader(f"…or a file, {common.upload_limit()}", key="play_upload")
    if st.button("Score", key="play_score", type="primary"):
        texts, labels, problem, left_out, dropped = [], None, None, 0, []
        if upload is not None:
            raw = upload.getvalue()
            try:
                frame, counts = read_messages(raw, name=upload.name)  # labelled (UCI or CSV with a label column)
                texts, labels = frame["text"].tolist(), frame["label"].tolist()
                dropped = dropped_rows(counts)
            except DataError:
                try:  # no labels: just the messages
                    texts, left_out = read_unlabelled(raw, name=upload.name)
                except DataError as exc:  # empty or binary
                    problem = str(exc)
            source = f"the file {upload.name}"
        else:
            texts = [l for l in split_lines(lines) if l.strip()]
            source = "the pasted lines"
        texts = [t for t in texts if str(t).strip()]
        if problem or not texts:
            st.session_state.pop("play_batch", None)  # the last batch's table would read as this file's result
            st.session_state.pop("play_batch_digest", None)
            st.query_params.pop("batch", None)
        if problem:
            st.error(common.plain(problem))
        elif not texts:
            st.warning("Nothing to score: type messages (one per line) or upload a file.")
        else:
            if dropped:
                st.warning(f"Left out of {common.plain(upload.name)}: {', '.join(dropped)}, of {counts['rows_read']:,} "
                           "rows read." + common.QUOTE_ADVICE * bool(counts.get("dropped_unparseable")))
            if left_out:
                st.warning(f"{left_out:,} row(s) of {common.plain(upload.name)} have more fields than its header "
                           "(a separator inside an unquoted message) and were left out: quote such messages to score "
                           "them.")
            if len(texts) > common.MAX_BATCH_LINES:
                st.warning(f"{len(texts):,} messages; scoring the first {common.MAX_BATCH_LINES:,}.")
                texts, labels = texts[:common.MAX_BATCH_LINES], labels and labels[:common.MAX_BATCH_LINES]
            probabilities = score([str(t) for t in texts], progress=st.progress(0.0, text="Scoring…"))
            out = pd.DataFrame({"message": texts})
            if labels is not None:
                out["label"] = ["spam" if l else "ham" for l in labels]
            for mode, (run, _) in models.items():
                out[f"{mode} p(spam)"] = probabilities[mode].astype(float)  # every digit: the CSV keeps them
                out[f"{mode} verdict"] = [verdict(run, p) for p in probabilities[mode]]
            # a labelled batch gets accuracies: say when a model had trained on some of its messages, as Compare does
            seen = {m: seen_in_training(run.config, [str(t) for t in texts]) for m, (run, _) in models.items()} \
                if labels is not None else {}
            # accuracy counts each message once, as Compare scores a file: a repeated one would count its verdict
            # as often as it appears, and the same file would score differently on the two pages
            once = (~pd.Series([normalise(str(t)) for t in texts]).duplicated()).tolist()
            # with its 95 % interval, as on Compare: a batch of 40 messages pins an accuracy down to a few points only
            intervals = {m: bootstrap_intervals(np.asarray(labels)[once], probabilities[m][once], threshold(run))[
                "accuracy"] for m, (run, _) in models.items()} if labels is not None else {}
            scored = {"runs": {m: run.id for m, (run, _) in models.items()}, "table": out, "source": source,
                      "lines_unused": upload is not None and bool(lines.strip()), "seen": seen,
                      "accuracy_ci": intervals, "lines": lines if upload is None else None, "once": once}
            scored["digest"] = keep_batch(scored)
            st.session_state["play_batch"] = scored
            if scored["digest"]:
                st.session_state["play_batch_digest"] = st.query_params["batch"] = scored["digest"]
            else:  # the URL would name the batch before
                st.session_state.pop("play_batch_digest", None)
                st.query_params.pop("batch", None)
    scored = st.session_state.get("play_batch")
    if scored and scored["runs"] != {m: run.id for m, (run, _) in models.items()}:
        st.info("The models above changed since this batch was scored: press Score to score it with them.")
    elif scored:
        out = scored["table"]
        st.caption(f"{len(out):,} messages from {common.plain(scored.get('source', 'the batch'))}, scored by " + " · ".join(
            f"{common.MODE_LABELS[m]} {run.id} (spam at ≥ {threshold(run):g})" for m, (run, _) in models.items()))
        if scored.get("lines_unused"):
            st.info("The file was scored, not the pasted lines: remove the file to score the lines.")
        if "label" in out:
            ci = scored.get("accuracy_ci") or {}
            once = np.asarray(scored.get("once") or [True] * len(out), dtype=bool)
            repeats = f"each repeated message counted once, as on Compare ({common._n(int((~once).sum()), 'repeat')})"
            notes = ["95 % intervals"] * any(ci.values()) + [repeats] * (not once.all())
            st.caption(" · ".join(f"{common.MODE_LABELS[m]} accuracy "
                                  f"{common._fmt(np.mean((out[f'{m} verdict'] == out['label'])[once]), 3)}"
                                  + (f" [{common._fmt(ci[m][0], 3)}, {common._fmt(ci[m][1], 3)}]" if ci.get(m) else "")
                                  for m in models if f"{m} verdict" in out)
                       + (f" ({'; '.join(notes)})" if notes else ""))
            # a perfect batch of a few messages reads as a perfect model: said as on Compare
            flat = {low for low, high in filter(None, ci.values()) if low == high and low in (0, 1)}
            for end in (1, 0):
                if end in flat:
                    st.warning(common.FLAT_INTERVAL_NOTES[end].format(what="these messages", cases="messages"))
            if seen := {m: n for m, n in scored.get("seen", {}).items() if n}:
                st.warning("Some of these messages were in a model's training or validation data ("
                           + ", ".join(f"{common.MODE_LABELS[m]}: {n:,}" for m, n in seen.items())
                           + "): its accuracy on them says little about new messages. Remove them for a fair test.")
            if unknown := [common.MODE_LABELS[m] for m, n in scored.get("seen", {}).items() if n is None]:
                st.caption(f"Whether {' and '.join(unknown)} trained on some of these messages cannot be checked: "
                           "its dataset has moved or changed since.")
        # narrow columns, so every model's verdict fits a laptop screen (hover shows a message whole), and the
        # message last: first, at 1024 px it pushed the baseline's columns out of sight. Short headers:
        # "finetune p(spam)" and "baseline verdict" were cut off in a narrow column
        runs = {m: run for m, (run, _) in models.items()}
        st.caption("Per model: its spam probability, then its verdict at its threshold; the message last. Click a "
                   "row's left edge to read its whole message.")
        # keyed by the batch: a picked row is a position, which would point elsewhere in another batch
        batch_key = scored.get("digest") or hash(tuple(out["message"]))  # no digest where the batch was not kept
        picked_row = st.dataframe(out, hide_index=True, placeholder="—", key=f"play_batch_rows:{batch_key}",
                                  on_select="rerun", selection_mode="single-row",
                                  column_order=[c for c in out if c != "message"] + ["message"], column_config={
            f"{m} p(spam)": st.column_config.ProgressColumn(
                common.SHORT_LABELS[m], format="%.3f", min_value=0.0, max_value=1.0, width="small",
                help=f"{common.MODE_LABELS[m]} ({run.id}): probability of spam",
                color=common.MODE_COLORS[m]) for m, run in runs.items()} | {
            f"{m} verdict": st.column_config.TextColumn(
                "verdict", width="small", help=f"{common.MODE_LABELS[m]}: spam at probability ≥ {threshold(run):g}")
            for m, run in runs.items()} | {"message": st.column_config.TextColumn("message", width="medium")})
        # the message column shows some 40 characters on a laptop: a picked row is shown whole, as plain text
        if picked_row.selection.rows and picked_row.selection.rows[0] < len(out):
            row = out.iloc[picked_row.selection.rows[0]]
            st.text(CONTROL.sub("\ufffd", str(row["message"])))
            st.caption(" · ".join(([f"Truth: {row['label']}"] if "label" in out else []) + [
                f"{common.SHORT_LABELS[m]} {percent(row[f'{m} p(spam)'])} ({row[f'{m} verdict']})" for m in runs]))
        if common.shows_as_certain(out.filter(like="p(spam)").to_numpy(dtype=float), decimals=3):
            st.caption("Probabilities are shown to 3 decimals: 1.000 means at least 0.9995 and 0.000 less than 0.0005, "
                       "not certainty. The CSV has them to 9 significant digits.")
        # a cell starting with = + - @ would run as a formula in a spreadsheet: prefix it with '
        safe = out.assign(message=out["message"].map(lambda t: "'" + t if str(t)[:1] in ("=", "+", "-", "@") else t))
        # with a byte-order mark: Excel reads a CSV without one in the local code page, garbling £ and emoji
        # on its own, the file names the run behind each column and the threshold behind each verdict
        safe = safe.rename(columns={**{f"{m} p(spam)": f"{m} p(spam) [run {run.id}]" for m, run in runs.items()},
                                    **{f"{m} verdict": f"{m} verdict (spam at p >= {threshold(run):g})"
                                       for m, run in runs.items()}})
        with st.container(horizontal=True):
            st.download_button("Download CSV", safe.to_csv(index=False, float_format="%.9g").encode("utf-8-sig"),
                               "predictions.csv", "text/csv", key="play_download")
            if scored.get("digest"):
                st.button("Delete this batch", key="play_batch_delete", on_click=delete_batch, args=(scored["digest"],),
                          help="Scored batches are saved under the runs folder (the 20 newest), messages included, "
                               "so that a reload shows them again. This deletes this one.")
