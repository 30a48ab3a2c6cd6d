"""What every page shares: settings, cached runs/models/data, the live job panel and plotly figures.

Pages stay thin views: training, metrics and storage live in `core`; this module only caches and draws.
User text is shown with st.text / st.dataframe / plotly, never as markdown or raw HTML (a test checks).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import streamlit as st

from core import jobs
from core.config import DEFAULT_MODEL, MODE_DEFAULTS, few_steps_warning
from core.data import DataError, check_classes, deduplicate, find_data_source, load_messages, read_messages
from core.export import export_bytes
from core.hub import RECHECK_S
from core.metrics import classification_metrics, mcnemar_test
from core.runs import FINISHABLE, RUN_ID_RE, RunError, finishable_weights, list_runs, read_history, read_json, \
    cut_short, lock_position, read_status, resumable_state, run_path, stopped_note, trained_messages, \
    training_subset, write_bytes_atomic

# ---------------------------------------------------------------------------- settings (env, for demos and tests)
# read on every use, not at import: the module is imported once per server (and once per test process)
def runs_dir() -> Path:
    return Path(os.environ.get("SPAM_RUNS_DIR", "checkpoints"))


def default_model() -> str:
    return os.environ.get("SPAM_MODEL", DEFAULT_MODEL)


def served_to_network() -> bool:
    """Whether the server listens beyond this machine (`--server.address 0.0.0.0`, or no address: every interface)."""
    return st.get_option("server.address") not in ("localhost", "127.0.0.1", "::1")


def upload_limit() -> str:
    """The per-file upload limit users are told about (server.maxUploadSize in .streamlit/config.toml)."""
    return f"up to {st.get_option('server.maxUploadSize')} MB"


def uploads_dir() -> Path:
    return Path(os.environ.get("SPAM_UPLOADS_DIR", "data/uploads"))


def cache_dir() -> str:
    return os.environ.get("SPAM_CACHE_DIR", "data/cache")


# after a count of rows left out that did not parse: how to keep them (core.data keeps them in a file of just a
# label and a message column; with more columns, an unquoted separator in a message cannot be told apart)
QUOTE_ADVICE = " Quote a message that holds the file's separator, or keep only its label and message columns."
MAX_INPUT_CHARS = 20_000  # one Playground message; longer pastes are refused, not silently cut
MAX_BATCH_LINES = 2_000  # Playground batch mode
LIVE_REFRESH_S = 2.0  # how often the live training panel re-reads history.jsonl

MODE_LABELS = {"frozen": "Frozen BERT + MLP head", "finetune": "Fine-tuned BERT", "baseline": "TF-IDF baseline"}
MODE_COLORS = {"frozen": "#636EFA", "finetune": "#EF553B", "baseline": "#7F7F7F"}
# loss curves of several runs of one mode: shades of its colour, in the order they are given out, each as far as
# can be from those before it (so two runs are red and orange, not two reds)
RUN_SHADES = {"frozen": ["#636EFA", "#19D3F3", "#1B2A9C", "#8E6BE8", "#0B7FAB"],
              "finetune": ["#EF553B", "#FFA15A", "#A3200B", "#FF6692", "#C2185B"],
              None: ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880"]}
HEADLINE = ["accuracy", "precision", "recall", "f1", "auroc", "auprc"]
METRIC_NAMES = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1", "auroc": "AUROC",
                "auprc": "AUPRC", "mcc": "MCC"}
# in words for whoever hears the numbers; spam is the positive class
METRIC_MEANINGS = {
    "accuracy": "the share of all messages called right (with 12 % spam, calling everything ham scores 0.88)",
    "precision": "of the messages called spam, the share that is spam (high: few false alarms)",
    "recall": "of the spam, the share caught (high: little spam let through)",
    "f1": "precision and recall in one number (their harmonic mean)",
    "auroc": "the chance that a random spam message scores above a random ham one, whatever the threshold",
    "auprc": "precision averaged over every level of recall, whatever the threshold; with spam rare, it falls with "
             "false alarms that AUROC barely registers",
    "mcc": "the correlation between verdicts and truth, from -1 to 1 (0: no better than chance); fair when one class "
           "is rare"}


# the other words the pages use: a stakeholder reading "McNemar p = 0.754" or "Brier 0.0089" had nothing to go by
TERM_MEANINGS = {
    "McNemar p": "the chance of a split of the messages only one model gets right at least this uneven, if the two "
                 "models were equally good: below 0.05, a real difference",
    "95 % interval": "the range the score falls in for 95 % of resamples of the messages it was measured on: how "
                     "much that many messages pin it down",
    "TN, FP, FN, TP": "ham kept, false alarms (ham called spam), spam missed, spam caught",
    "Brier": "the mean squared gap between the spam probability and the truth (0 or 1): lower is better calibrated"}


def glossary() -> None:
    """An expander with what the metrics and the pages' other terms mean, in plain words."""
    with st.expander("What these measure"):
        st.markdown("\n".join([f"- **{METRIC_NAMES[k]}**: {METRIC_MEANINGS[k]}." for k in HEADLINE + ["mcc"]]
                              + [f"- **{term}**: {meaning}." for term, meaning in TERM_MEANINGS.items()]))


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$])")  # links, images, emphasis, code, HTML, tables, LaTeX


# ":x:" would show as an emoji, ":material/...:" as an icon, and ":red[x]" or a bare ":red" as a colour directive,
# whose name and colon vanish (the brackets are escaped anyway)
_SHORTCODE = re.compile(r":(?=[\w+/-]+:)|:(?=[A-Za-z])")


# markdown makes bare URLs, www. names and e-mail addresses live links (GFM autolinks): in a spam message, a phishing
# link one click away. A word joiner (zero-width, and no line break there, unlike a zero-width space) where the
# autolink needs "://", "www." or "@" keeps them text.
_AUTOLINK = re.compile(r"(?<=[A-Za-z])(?=://)|(?i:(?<=(?<![a-z0-9])www))(?=\.)|(?=@)")  # www. may follow _


def plain(text) -> str:
    """User-derived text (messages, file names, column names, paths) made inert for markdown: no formatting, no
    links, no emoji or icons. A zero-width character is what breaks a shortcode or an autolink."""
    text = _SHORTCODE.sub(":\u200b", _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)))
    return _AUTOLINK.sub("\u2060", text)


def as_text(markdown: str) -> str:
    """A page's text as it reads, for a file that is not markdown (the HTML report): plain()'s escapes and breaks
    undone."""
    return re.sub(r"\\([\\`*_\[\]<>#|~$])", r"\1", markdown).replace(":\u200b", ":").replace("\u2060", "")


def shows_as_certain(probabilities, decimals: int) -> bool:
    """Whether some probability shows as 0 or 1 at this many decimals. A model's probability is never certainty, even
    when its float is exactly 0 or 1 (a softmax saturates in float32), so those count too."""
    p, half = np.asarray(probabilities, dtype=float), 0.5 * 10.0 ** -decimals
    return bool(((p >= 1 - half) | (p < half)).any())


# ---------------------------------------------------------------------------- runs

def runs() -> list:
    """Every run, newest first (broken ones included, with their reason); none when the folder cannot be read
    (the sidebar says so, once per page)."""
    try:
        return list_runs(runs_dir())
    except RunError:
        return []


def usable_runs(mode: str | None = None) -> list:
    return [r for r in runs() if r.usable and (mode is None or r.mode == mode)]


def trained_to_end(run) -> bool:
    """False for a run that stopped before the steps it was set for (finished early on request, or from a
    checkpoint after a kill)."""
    return not cut_short((run.metrics or {}).get("stopped"))


def warn_if_cut_short(picked: dict) -> None:
    """A warning above a page's results for each picked run (mode -> run) that stopped before its end: one finished
    a step in is an untrained model, and became the default where it was the mode's only run."""
    for mode, run in picked.items():
        if not trained_to_end(run):
            st.warning(f"The {MODE_LABELS[mode]} run did not train to its end: "
                       f"{plain(stopped_note(run.metrics['stopped']))}. Its results are not what the mode gives once "
                       "trained; pick another run above, or train one on the Train page.")


def note_other_data(picked: dict) -> None:
    """A note where runs shown trained on another dataset than the one chosen in the sidebar: that choice is for
    new runs, and the sidebar beside these results would otherwise seem to say what they were trained on."""
    _, summary, _ = data_source()
    if not summary:
        return
    other = {mode: (run.config or {}).get("data_info") or {} for mode, run in picked.items()}
    other = {mode: info for mode, info in other.items() if info.get("fingerprint") != summary["fingerprint"]}
    if not other:
        return
    which = ("runs shown were" if len(picked) > 1 else "run shown was") if len(other) == len(picked) else \
        " and ".join(SHORT_LABELS[mode] for mode in other) + f" run{'s were' if len(other) > 1 else ' was'}"
    chosen = Path(summary["source"]).resolve()

    def trained_on(info: dict) -> str:
        if not info.get("source"):
            return "data it did not record"
        # the very file, edited since (the fingerprint is its de-duplicated messages'), or another of the same name
        source = Path(info["source"])
        return ("an earlier version of " if source.resolve() == chosen else "") + source.name
    names = sorted({trained_on(info) for info in other.values()})
    st.info(f"The {which} trained on {' and '.join(plain(n) for n in names)}, not on {plain(chosen.name)}, the "
            "dataset chosen in the sidebar: that one is for new runs, on the Train page.", icon=":material/dataset:")


def full_length(run) -> bool:
    """Trained to its end, for at least its mode's default epochs: not a quick run (the Overview's preset trains one
    fine-tuning epoch) nor one stopped early."""
    epochs = (run.config or {}).get("epochs")
    short = run.mode in MODE_DEFAULTS and run.mode != "baseline" and isinstance(epochs, int) \
        and epochs < MODE_DEFAULTS[run.mode]["epochs"]
    return trained_to_end(run) and not short


def latest(found: list):
    """Of one mode's runs, newest first (usable_runs), the newest that trained to its end, on all the training
    messages, for at least the default epochs: one stopped early, one on a sample of the messages (a learning
    curve's) or a quick run trained during a demo says less about what the mode can do and must not become the
    headline by being newer. Short of that, in that order of what matters most, down to the newest."""
    # max keeps the first of equals: the newest
    return max(found, key=lambda r: (trained_to_end(r), not training_subset(r.config), full_length(r)), default=None)


def compared_run(mode: str):
    """The run of this mode that Overview, Compare and Playground show: the user's pick (None for one left out),
    else the default pick, default_run()."""
    found, key = usable_runs(mode), _shared_pick(mode)
    if key in st.session_state and (st.session_state[key] is None or st.session_state[key] in {r.id for r in found}):
        return next((r for r in found if r.id == st.session_state[key]), None)
    return default_run(mode, found)


# whose test messages a mode's default follows: the fine-tuned run is the headline, the frozen one stands in for it
FOLLOWS = {"frozen": ("finetune",), "baseline": ("finetune", "frozen")}


def followed_run(mode: str) -> tuple[str, object] | None:
    """The mode whose run shown this mode's default follows (FOLLOWS), and that run; None for none."""
    return next(((other, run) for other in FOLLOWS.get(mode, ()) if (run := compared_run(other)) is not None), None)


def default_run(mode: str, found: list, followed: tuple | None = None):
    """The run a mode's picker starts on: latest(), among the runs tested on the same messages as the fine-tuned
    run shown (for the baseline with none, the frozen one's) where there are any. A baseline fitted in seconds on an
    uploaded file had become the default beside BERTs tested on 1,032 other messages, in one table and chart.
    followed: followed_run(mode), where the caller has it already (each call reads the runs folder)."""
    followed = followed or followed_run(mode)
    same = [r for r in found if same_test_messages(r, followed[1])] if followed else []
    return latest(same or found)


def passed_over(found: list, default, followed: tuple | None) -> str | None:
    """Why the default pick (default_run) is not the newest run, in words for under a picker; None when it is."""
    if not found or default is found[0]:
        return None
    newest, subset = found[0], training_subset(found[0].config)
    # the first of latest()'s criteria on which the newest falls short of the default
    if not trained_to_end(newest) and trained_to_end(default):
        why = "stopped early"
    elif subset and not training_subset(default.config):
        why = f"trained on {subset[0]:,} of the {subset[1]:,} training messages"
    elif not full_length(newest) and full_length(default):
        why = f"trained {_n(newest.config['epochs'], 'epoch')}, fewer than the default " \
              f"{MODE_DEFAULTS[newest.mode]['epochs']}"
    elif followed:  # passed over for its test messages
        why = f"was tested on other messages than the {MODE_LABELS[followed[0]]} run shown (other data, seed or split)"
    else:
        return None
    return f"Showing an older run: the newest ({time.strftime('%d %b %H:%M', time.localtime(newest.created))}) " \
           f"{why}. Pick it here to see it."


def run_labels(runs: list) -> dict[str, str]:
    """Each run's picker label: its F1, epochs and when it started. A picker's column already names the mode, and
    a third of a laptop screen fits little more, so the run id's last part is added only where two labels would
    be the same. "stopped early" comes first, where a narrow picker cannot cut it off."""
    def label(run) -> str:
        t = (run.metrics or {}).get("test", {})
        f1 = f"F1 {t['f1']:.3f} · " if t.get("f1") is not None else ""
        stopped = "" if trained_to_end(run) else "stopped early · "  # fewer steps than it was set to
        # a learning curve's run on a sample of the training messages, beside one on them all
        sample = f"{subset[0]:,} msgs · " if (subset := training_subset(run.config)) else ""
        # a quick run beside a full one; not for a stopped run, which did not train the epochs it was set for (and a
        # narrow picker cut its date off)
        epochs = (run.config or {}).get("epochs") if run.mode != "baseline" and not stopped else None
        early = "up to " if (run.config or {}).get("patience") else ""  # early stopping may have ended it sooner
        epochs = f"{early}{_n(epochs, 'epoch')} · " if isinstance(epochs, int) else ""
        return f"{stopped}{sample}{f1}{epochs}{time.strftime('%d %b %H:%M', time.localtime(run.created))}"

    labels = {run.id: label(run) for run in runs}
    count = Counter(labels.values())
    return {i: f"{text} · {i.rsplit('-', 1)[-1]}" if count[text] > 1 else text for i, text in labels.items()}


def same_test_messages(a, b) -> bool:
    """Whether two runs were tested on the same messages, in the same order: only then can they be compared
    message by message (McNemar, the table of errors)."""
    texts = [[p["text"] for p in run.metrics.get("predictions") or []] for run in (a, b)]
    return bool(texts[0]) and texts[0] == texts[1]


class PageEnd(Exception):
    """Raised by end_page; app.py catches it."""


SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def unequal_training(picked: dict) -> str | None:
    """A warning where the runs shown trained on different numbers of messages (a learning curve's run on a sample
    beside one on them all): their differences are then partly the data's."""
    counts = {mode: trained_messages(run.config) for mode, run in picked.items()}
    if len(counts) < 2 or None in counts.values() or len(set(counts.values())) == 1:
        return None
    return ("The runs shown trained on different numbers of messages (" + "; ".join(
        f"{SHORT_LABELS[mode]}: {n:,}" for mode, n in counts.items()) + "), so the differences between them are not "
        "the models' alone. Pick runs trained on as many messages to compare the models.")


def odds_factor(weight: float) -> str:
    """How a word changes the odds of spam, from its log-odds weight: ×12 (multiplies them by 12), ÷3 (divides them
    by 3), ×2·10⁶ (not "×2e+06", which a stakeholder reads as a typo)."""
    factor = math.exp(min(abs(weight), 700))  # exp overflows a float past about 709
    if factor < 10:
        shown = f"{factor:.1f}"
    elif factor < 1e6:
        shown = f"{factor:,.0f}"
    else:
        mantissa, exponent = f"{factor:.0e}".split("e")
        shown = f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPT)}"
    return ("×" if weight > 0 else "÷") + shown


def end_page():
    """End the page here, like st.stop(), but let app.py still draw the sidebar: after st.stop() Streamlit drops
    whatever the script draws, so the data source, model and running job would go missing from the sidebar."""
    raise PageEnd


# Inputs that survive a page switch: widgets on pages take persist_state=KEEP (Streamlit forgets a widget's value
# when its page is not shown, unless told otherwise).
KEEP = "session"


SHORT_LABELS = {"frozen": "frozen", "finetune": "fine-tuned", "baseline": "baseline"}  # column names a laptop fits


NO_RUN = "none"  # a run picker's "not shown" / "not used" option, as in the URL (?baseline=none); no run id is this


def _shared_pick(mode: str) -> str:
    """The session-state key of a mode's run pick, shared by every page's picker and the URL (plain session state,
    which Streamlit never drops)."""
    return f"picked_run_{mode}"


def picked_by_user(mode: str) -> bool:
    """Whether this mode's run was picked (on any page's picker, or by a link), not left to its default."""
    return _shared_pick(mode) in st.session_state


def forget_picks(modes: list[str]) -> None:
    """Back to the default runs for these modes, on every page and in the URL."""
    for mode in modes:
        st.session_state.pop(_shared_pick(mode), None)
        set_in_url(mode, None)


def run_picker(col, mode: str, runs: list, key: str, none_label: str | None = None):
    """A run selectbox for one mode that follows the newest full-length run (see latest) until the
    user picks one. The pick is shared by every page's picker for that mode, so Compare and Playground show the
    same runs, and it is kept until the picked run is deleted. Returns the Run or None."""
    by_id, labels = {run.id: run for run in runs}, run_labels(runs)
    # "none" and not None for no run: a selectbox at None shows an empty "Choose an option" box, not the label
    options = ([NO_RUN] if none_label else []) + list(by_id)
    followed = followed_run(mode)
    default_pick = default_run(mode, runs, followed)
    default = getattr(default_pick, "id", None) or (NO_RUN if none_label else None)
    shared, gone = _shared_pick(mode), f"{_shared_pick(mode)}_gone"
    if st.session_state.get(shared) is not None and st.session_state[shared] not in by_id:
        st.session_state[gone] = st.session_state.pop(shared)  # deleted, or no longer usable: said below
        set_in_url(mode, None)
    if shared in st.session_state and (st.session_state[shared] or NO_RUN) in options:
        st.session_state[key] = st.session_state[shared] or NO_RUN
    else:  # no pick, or one this picker cannot show (Playground's "not used" on a Compare picker without it)
        st.session_state[key] = default

    def on_pick():  # the user's pick, shared by every page's picker; no longer a gone one's default
        st.session_state[shared] = None if st.session_state[key] == NO_RUN else st.session_state[key]
        st.session_state[gone] = None

    shown = st.session_state[key]
    picked = col.selectbox(MODE_LABELS[mode], options, key=key, on_change=on_pick,
                           format_func=lambda i: none_label if i == NO_RUN else labels[i],
                           # the whole label on hover: a third of a 1024 px page cuts off its start time
                           help=None if shown == NO_RUN else f"Shown: {labels[shown]}, run {shown}.")
    if st.session_state.get(gone) and shared not in st.session_state:  # or the numbers change with no word why
        col.caption(f"The run picked before, {plain(st.session_state[gone])}, is gone (deleted, perhaps in another "
                    "tab, or a link from another runs folder) or can no longer be loaded: this is the default."
                    if RUN_ID_RE.match(st.session_state[gone])
                    else f"The link names no run here ({plain(st.session_state[gone])}): this is the default.")
    if shared not in st.session_state and picked == default and (note := passed_over(runs, default_pick, followed)):
        col.caption(note)  # a quick run trained during a demo does not take over the pages unannounced either
    return by_id.get(picked)


# what a page scored, by its digest, kept in the URL on every page: URL parameter -> session-state key
SCORED_IN_URL = {"own": "compare_own_digest", "batch": "play_batch_digest"}


URL_WRITTEN = "url_written"  # what url_state() put in the URL last: another value there came from Back or Forward

# widget values the URL keeps on their own page only, written by the app (widget_from_url, set_in_url), not bound
# with bind="query-params": leaving a page, Streamlit strips bound parameters in a browser-history entry of their
# own, and Back onto it showed the widgets' defaults, so a message typed in the Playground was gone. Written, each
# value is a history entry (Back steps through the messages, as through the picks), and links to the page carry it
PAGE_PARAMS = {"playground": ("play_text", "play_explain", "play_draft")}


def url_state() -> dict[str, str]:
    """What the URL keeps on every page, so that a reload (a new session) or a shared link shows the same: the run
    picks (?frozen=<run id>&finetune=…&baseline=none), Compare's scored file (?own=<digest>), the Playground's scored
    batch (?batch=…), an uploaded dataset (?data=<its name in the uploads folder>) and the run picked on Runs
    (?runs_pick=). Links between pages carry it (page_link): a page switch clears the URL's query, and setting it
    again would add a second browser-history entry per page, which made Back seem to do nothing."""
    state = {mode: st.session_state[_shared_pick(mode)] or NO_RUN
             for mode in MODE_LABELS if _shared_pick(mode) in st.session_state}
    state |= {param: st.session_state[key] for param, key in SCORED_IN_URL.items() if st.session_state.get(key)}
    if (chosen := st.session_state.get("data_path")) and Path(chosen).resolve().parent == uploads_dir().resolve():
        state["data"] = Path(chosen).name
    if st.session_state.get("runs_one_chosen") and st.session_state.get("runs_one"):
        state["runs_pick"] = st.session_state["runs_one"]
    return state


def state_in_url() -> None:
    """Before the page runs: take the run picks from the URL where it differs from what this session last wrote
    there (a new session's link, or Back and Forward, which so undo a pick), and the scored file and batch where
    the session has none; then write url_state() where the URL differs (each write is a browser-history entry).
    Pages drop a pick or digest that names nothing usable."""
    written = st.session_state.get(URL_WRITTEN, {})
    for mode in MODE_LABELS:
        if (linked := st.query_params.get(mode)) and linked != written.get(mode):
            st.session_state[_shared_pick(mode)] = None if linked == NO_RUN else linked
        elif not linked and mode in written:  # links carry the picks: Back went to before the first pick
            st.session_state.pop(_shared_pick(mode), None)
    linked = st.query_params.get("runs_pick")  # the Runs page's pick; not a run (deleted, say): its default
    if linked and linked != written.get("runs_pick") and RUN_ID_RE.match(linked) and (runs_dir() / linked).is_dir():
        st.session_state["runs_one"], st.session_state["runs_one_chosen"] = linked, True
    elif not linked and "runs_pick" in written:
        st.session_state["runs_one_chosen"] = False
        st.session_state.pop("runs_one", None)
    for param, key in SCORED_IN_URL.items():
        if key not in st.session_state and (linked := st.query_params.get(param)):
            st.session_state[key] = linked
    st.session_state[URL_WRITTEN] = {param: value for param, value in written.items()  # kept for links to the page
                                     if any(param in params for params in PAGE_PARAMS.values())}
    for param, value in url_state().items():
        if param != "runs_pick":  # the Runs page writes it after its curves' picker, whose bound value joins it
            set_in_url(param, value)


def set_in_url(param: str, value: str | None) -> None:
    """Write a URL parameter (None: drop it), and note it as this session's own for state_in_url."""
    written = st.session_state.setdefault(URL_WRITTEN, {})
    if value is None:
        st.query_params.pop(param, None)
        written.pop(param, None)
    else:
        if st.query_params.get(param) != value:
            st.query_params[param] = value
        written[param] = value


def widget_from_url(key: str, default, parse=str) -> None:
    """Before a PAGE_PARAMS widget: its value from the URL where that differs from what this session last wrote
    there (a shared link, Back or Forward); its default where the URL has none but the session wrote one (Back to
    before it). After the widget, the page writes its value with set_in_url."""
    written = st.session_state.setdefault(URL_WRITTEN, {})
    linked = st.query_params.get(key)
    if linked is not None and linked != written.get(key):
        st.session_state[key], written[key] = parse(linked), linked
    elif linked is None and key in written and st.session_state.get(key) in (None, parse(written[key])):
        del written[key]
        st.session_state[key] = default  # set, not deleted: the browser would keep showing the old value
    # else changed since it was written: a page switch that cut the run short left the URL behind, and Back to
    # before it would have wiped what the user had just typed


def link_params(page: str, carried: dict[str, str]) -> dict[str, str]:
    """What a link to `page` (its URL path, e.g. "playground") puts in the URL: url_state() (`carried`), plus the
    page's own widget values as it last wrote them (PAGE_PARAMS), so that going back to it is one history entry."""
    written = st.session_state.get(URL_WRITTEN, {})
    return carried | {param: written[param] for param in PAGE_PARAMS.get(page, ()) if param in written}


def page_link(page: str, **kwargs) -> None:
    """st.page_link that keeps url_state() in the URL (kwargs' query_params added to it)."""
    query_params = link_params(Path(page).stem, url_state()) | kwargs.pop("query_params", {})
    st.page_link(page, **kwargs, query_params=query_params)


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def predictor(run_dir: str, created: float):
    """One read-only model per run, shared by every session (keyed by creation time: a re-used id reloads)."""
    from core.predict import Predictor

    return Predictor.load(run_dir)


@st.cache_data(max_entries=32, show_spinner="Scoring your messages…")
def evaluate_upload(run_dir: str, created: float, name: str, raw: bytes) -> dict:
    """core.evaluate on an uploaded file, once per (run, file): moving a slider must not score it again."""
    from core.evaluate import evaluate_run
    return evaluate_run(run_dir, raw, name=name, predictor=predictor(run_dir, created), save=False)


def evaluate_and_keep(run_dir: str, created: float, name: str, raw: bytes) -> dict:
    """evaluate_upload's scores, kept beside the run (core.evaluate.save_evaluation) where they are not yet: a save
    that failed (a full disk) is tried again at the next rerun, without scoring again, and said until it works."""
    from core.evaluate import EVALUATIONS, save_evaluation

    result = evaluate_upload(run_dir, created, name, raw)
    kept = any((Path(run_dir) / EVALUATIONS).glob(f"*-{result['sha256'][:10]}.json"))  # a glob: no JSON read per rerun
    if not kept and (problem := save_evaluation(run_dir, result)):
        return {**result, "not_saved": problem}
    return result


def forget_run(run) -> None:
    """Drop a deleted run's cached model."""
    predictor.clear(str(run.path), run.created)


def zip_run(run_id: str) -> bytes:
    """The run as a stand-alone zip (core.export), made when the download button is clicked, not every rerun."""
    return export_bytes(run_path(runs_dir(), run_id))


# ---------------------------------------------------------------------------- data and model

@st.cache_data(max_entries=16, show_spinner=False)
def _data_summary(path: str, mtime: float) -> dict:
    messages = load_messages(path)
    return {"source": messages.source, **messages.summary}


LINKED_DATA_MISSING = "linked_data_missing"  # the upload a link named, not in the uploads folder


def data_source() -> tuple[str | None, dict | None, str | None]:
    """(path, summary, error): the session's chosen file, else $SPAM_DATA / data/ / the hub. An uploaded file is
    named in the URL too (?data=<its name in the uploads folder>): a reload starts a new session, which would
    otherwise go back to the default data without a word."""
    chosen, linked = st.session_state.get("data_path"), st.query_params.get("data")
    if chosen is None and linked:  # a new session: only a file in the uploads folder, never a path from a link
        if Path(linked).name == linked and (uploads_dir() / linked).is_file():
            chosen = st.session_state["data_path"] = str(uploads_dir() / linked)
        else:  # deleted, or a link from another machine: the sidebar says so, or the data would change silently
            st.session_state[LINKED_DATA_MISSING] = linked
    if chosen:  # a dataset chosen since: the note is old news
        st.session_state.pop(LINKED_DATA_MISSING, None)
    if chosen and Path(chosen).resolve().parent == uploads_dir().resolve():
        if st.query_params.get("data") != Path(chosen).name:  # chosen just now (url_state() keeps it on every page)
            st.query_params["data"] = Path(chosen).name
    elif linked:
        del st.query_params["data"]
    try:
        path = find_data_source(chosen)
        return path, _data_summary(path, os.path.getmtime(path)), None
    except (DataError, OSError) as exc:
        return None, None, str(exc)


def save_upload(name: str, raw: bytes) -> Path:
    """Check an uploaded dataset like training will, then keep it under data/uploads/ (content-addressed)."""
    frame, _ = read_messages(raw, name=name)
    check_classes(deduplicate(frame)[0], name)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).stem)[:40] or "upload"
    suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(name).suffix)[:8]
    uploads_dir().mkdir(parents=True, exist_ok=True)
    target = uploads_dir() / f"{stem}-{hashlib.sha256(raw).hexdigest()[:10]}{suffix}"
    if not target.exists():  # two sessions may upload the same file at once
        write_bytes_atomic(target, raw)
    return target


@st.cache_data(ttl=RECHECK_S, show_spinner=False)
def resolved_model(name: str) -> dict:
    """Which encoder a name resolves to here (hub, cache, local or the bundled fallback), or the error; asked
    again as often as the hub's reachability, so the page says what a job started now would train."""
    from core.modeling import resolve_model

    try:
        return resolve_model(name).to_dict()
    except ValueError as exc:
        return {"error": str(exc)}


# ---------------------------------------------------------------------------- the live job

REFUSED_START = "refused_start"  # (what, why) of this session's last Start refused because another job ran


def note_refused(what: str, exc: Exception) -> None:
    """Keep a Start refused because another job started first (jobs.JobBusy) for refused_start to say."""
    st.session_state[REFUSED_START] = (what, str(exc))


def refused_start(busy) -> None:
    """Say this session's Start that another job's start beat, until this session starts a job. Drawn once, beside
    the button, it vanished within a second (a page redraws when a job appears), and the page then showed the other
    job's outcome as if it were this one's."""
    if refused := st.session_state.get(REFUSED_START):
        what, why = refused
        st.error(f"{what} did not start, and nothing of it was trained: {plain(why)}." if busy else
                 f"{what} was refused while another job ran, so nothing of it was trained: start it again.")


def job_panel(key: str) -> None:
    """Progress, ETA, live loss curves and Cancel for the running job; the last job's outcome otherwise.

    A fragment that re-reads history.jsonl every LIVE_REFRESH_S while a job runs, so every tab and
    every page that shows it sees the same curves; it reruns the whole page when the job ends.
    """
    running = jobs.current_job(runs_dir()) is not None
    st.session_state["job_panel_shown"] = True

    @st.fragment(run_every=LIVE_REFRESH_S if running else None)
    def panel():
        progress = jobs.current_job(runs_dir())
        if progress is None and running:  # it just ended: redraw the page so results and the form come back
            st.rerun(scope="app")
        if st.session_state.pop(f"{key}-cancel-sent", None):  # from cancel_now(); after a rerun, which would lose it
            st.toast("Cancel requested: the job stops at its next step and keeps status 'cancelled'.")
        if progress is None:
            _last_outcome()
            return
        command = jobs.live_job(runs_dir()).get("command")  # the app's job: train, resume or finish
        # a `core finish` job, seconds long: nothing to finish early, and its Cancel would not discard anything
        finishing_saved = progress.phase == "testing saved weights" or command == "finish"
        st.progress(min(max(progress.fraction, 0.0), 1.0), text=progress.describe(MODE_LABELS))
        controls = st.container()  # Finish and Cancel, drawn last: under the bar, still on a laptop's screen
        events = []  # the run's history, read once per refresh: for the curves, and for whether it is a resume
        if progress.run_id:
            st.caption(f"Run {progress.run_id} · the curves update every {LIVE_REFRESH_S:g} s")
            events = read_history(run_path(runs_dir(), progress.run_id))
            config = read_json(run_path(runs_dir(), progress.run_id) / "config.json")  # written before any event
            figure = loss_figure({progress.run_id: events}, modes={progress.run_id: progress.mode},
                                 balanced={progress.run_id} if config.get("class_weight") == "balanced" else set())
            if figure is not None:
                st.plotly_chart(figure, key=f"{key}-live-loss")
            elif progress.phase == "features":
                st.caption("Frozen mode first encodes every message once with the encoder; "
                           "the loss curve starts when the head trains.")
            evals = [e for e in events if e.get("event") == "eval"]
            if evals:
                e = evals[-1]
                st.caption(f"Latest validation: loss {_fmt(e.get('loss'))}, accuracy {_fmt(e.get('accuracy'))}, "
                           f"F1 {_fmt(e.get('f1'))}, AUROC {_fmt(e.get('auroc'))}")
            saved = [e for e in events if e.get("event") == "checkpoint"]
            if saved and not finishing_saved:
                state = [e for e in events if e.get("event") == "state_saved"]
                st.caption(f"Best weights so far saved to disk at step {saved[-1].get('step')} (validation loss "
                           f"{_fmt(saved[-1].get('validation_loss'))})" + (
                               f", the whole training state at step {state[-1].get('step')}: if this process dies, "
                               "the run can be resumed from there, or finished from its best weights, on the Runs "
                               "page." if state else ": if this process dies, the run can be finished from them on "
                               "the Runs page."))
        if finishing_saved:
            return
        finish_col, cancel_col = controls.columns(2)
        if failed := st.session_state.pop(f"{key}-cancel-failed", None):  # said by cancel_now(), shown here
            cancel_col.warning(failed)
        if progress.mode != "baseline" and progress.phase != "finishing" and finish_col.button(
                "Finish this run now", key=f"{key}-finish", type="primary",
                help="Stop training at the next step and keep the best weights so far: they are validated, tested "
                     "and saved, and the run completes. The rest of the job's plan goes on."):
            try:
                jobs.finish(runs_dir(), progress.run_id)
                st.toast("Finishing: the run validates, tests and saves its best weights, then completes."
                         + (" A frozen run first finishes encoding its features." if progress.phase == "features"
                            else ""))
            except jobs.JobError as exc:
                st.warning(plain(exc))
        if progress.phase == "finishing" and progress.index == progress.count:  # the finish wins: nothing to stop
            return
        confirm = f"{key}-cancel-confirm"  # one click next to "Finish this run now" must not discard a run's training
        target = progress.run_id or "starting"  # the run it was asked for: a confirmation is not carried to the next
        # a resume's Cancel keeps what the run saved (core.train._record): its earlier training is not discarded
        resuming = command == "resume" or any(e.get("event") == "resumed" for e in events)
        if st.session_state.get(confirm) != target:  # callbacks: they take effect in the click's own rerun
            cancel_col.button("Cancel training…", key=f"{key}-cancel", type="secondary",
                              on_click=lambda: st.session_state.update({confirm: target}),
                              help="Stop resuming: the run keeps its training state at the step it stops (or the "
                                   "last one saved, where a validation was due at that step) and its best weights so "
                                   "far, to resume or finish later (status 'cancelled'); asks first." if resuming
                              else "Stop the whole job and discard this run's weights (status 'cancelled'); asks "
                                   "first.")
            return
        cancel_col.warning("Stop the rest of the job? This run still completes with its best weights, and the runs "
                           "after it do not start." if progress.phase == "finishing" else
                           "Stop resuming this run? It keeps its training state at the step it stops and its best "
                           "weights so far: resume or finish it again on the Runs page." if resuming
                           else
                           "Stop the whole job and discard this run's weights? To keep them, use \"Finish this run "
                           "now\" instead.")
        yes, no = cancel_col.columns(2)
        no.button("Keep training", key=f"{key}-cancel-no", on_click=lambda: st.session_state.pop(confirm, None))

        def cancel_now():  # a callback: the rerun the click starts no longer shows the question (it stayed for ~2 s)
            st.session_state.pop(confirm, None)
            try:
                jobs.cancel(runs_dir())
                st.session_state[f"{key}-cancel-sent"] = True  # said by the panel: a callback drawing warns
            except jobs.JobError as exc:
                st.session_state[f"{key}-cancel-failed"] = plain(exc)
        yes.button("Yes, cancel", key=f"{key}-cancel-yes", on_click=cancel_now)

    panel()


def compare_link_picks(done: list) -> dict[str, str]:
    """The runs a job's "Compare them" link picks: each mode's newest of the job (a learning curve's runs on samples
    came before those on all messages). After a job on a sample of the training messages, for a BERT mode it did
    not train, also that mode's run on as many messages, tested on the same ones, that latest() prefers: a 50-message
    fine-tune was paired with the frozen run on them all (Compare warns where the picks still differ). After a job on
    them all, the other mode keeps the user's pick."""
    picks = {run.mode: run for run in reversed(done)}
    job = picks.get("finetune") or picks.get("frozen")
    for mode in ("frozen", "finetune"):
        if mode not in picks and job is not None and training_subset(job.config):
            like = [run for run in usable_runs(mode) if trained_messages(run.config) == trained_messages(job.config)
                    and same_test_messages(run, job)]
            if like:
                picks[mode] = latest(like)
    return {mode: run.id for mode, run in picks.items()}


def _same_process(status: dict, job: dict) -> bool:
    started = status.get("pid_started")
    return status.get("pid") == job.get("pid") and (started is None or job.get("pid_started") is None
                                                    or abs(started - job["pid_started"]) < 1)


def _test_scores(run) -> str:
    """' · test accuracy 0.989, F1 0.955, AUROC 0.998' for a completed run; empty without its metrics."""
    test = (run.metrics or {}).get("test") or {}
    scores = [f"{name} {_fmt(test[k], 3)}" for k, name in (("accuracy", "accuracy"), ("f1", "F1"), ("auroc", "AUROC"))
              if test.get(k) is not None]
    return " · test " + ", ".join(scores) if scores else ""


def _on_sample(run) -> str:
    """" on 300 messages" for a run on a sample of the training messages (a learning curve's), else nothing."""
    return f" on {subset[0]:,} messages" if (subset := training_subset(run.config)) else ""


def _last_outcome() -> None:
    """After a job: say how its runs ended, with the reason and the log tail when one failed."""
    info = jobs.last_job(runs_dir())
    if not info:
        return
    # the job's own runs: their status names its process (a CLI job since then is not the app's to report). By
    # process, not by creation time: a `finish` job completes a run created long before it
    finished = [r for r in runs() if _same_process(read_status(r.path), info)]
    done = [f"{MODE_LABELS.get(r.mode, r.mode)}{_on_sample(r)} finished: {r.id}"
            + ("" if trained_to_end(r) else f" ({plain(stopped_note(r.metrics['stopped']))})")
            + _test_scores(r)
            for r in reversed(finished) if r.status == "completed"]
    if done:
        st.success("  \n".join(done))
        if usable_runs("frozen") or usable_runs("finetune"):  # Compare has nothing to show for a baseline alone
            # picks the job's runs: a shorter run than the defaults' is not what Compare shows unpicked
            page_link("views/compare.py", label=("Compare them" if len(done) > 1 else "Compare it with the others")
                      + ": ROC, PR, confusion matrices and the errors", icon=":material/compare:",
                      query_params=compare_link_picks([r for r in finished if r.status == "completed" and r.usable]))
    for run in reversed(finished):
        if run.status == "completed":
            continue
        elif run.status == "cancelled":
            st.info(f"{run.id} was cancelled.")
        else:
            st.error(f"{run.id} ended as {run.status}: {plain(run.error or 'no reason recorded')}")
        if run.status in FINISHABLE and resumable_state(run.path):
            page_link("views/runs.py", query_params={"run": run.id}, icon=":material/save:",
                      label="Its training state was saved: resume it on the Runs page")
        elif run.status in FINISHABLE and finishable_weights(run.path):
            page_link("views/runs.py", query_params={"run": run.id}, icon=":material/save:",
                      label="Its best weights so far were saved: test them and complete the run on the Runs page")
    planned = info.get("modes") or []
    # the plan runs in order: a run that fails or dies, or a process killed between two runs, leaves the rest
    # unstarted, which nothing else on the page would say. How far the job got is in the training lock (the run it
    # named last, its place in the plan, and its pid: a later CLI job names its own). Not after a Cancel, which
    # stops the plan on purpose, also where the run it came to then completed (it was saving)
    position = lock_position(runs_dir())
    last = next((r for r in finished if r.id == position.run_id), None) \
        if position and position.pid == info.get("pid") and not info.get("cancelled") else None
    never = [MODE_LABELS.get(mode, mode) for mode in planned[position.index:]] \
        if last and last.status != "cancelled" else []
    if never:
        st.warning(f"The job ended before it started its {' and '.join(never)} run{'s' * (len(never) > 1)}: "
                   f"start {'them' if len(never) > 1 else 'it'} again on the Train page.")
    if len(finished) < len(planned) and not any(r.status == "cancelled" for r in finished):
        tail = jobs.log_tail(runs_dir(), 8)
        if tail and "error" in tail.lower():
            st.error("The last job stopped early. Its last output:")
            st.code(tail, language=None)


# ---------------------------------------------------------------------------- figures

def with_interval(metrics: dict, key: str, digits: int = 3) -> str:
    """"0.955 [0.925, 0.979]": a value with its 95 % bootstrap interval, where the run saved one."""
    ci = (metrics.get("ci95") or {}).get(key)
    value = _fmt(metrics.get(key), digits)
    return f"{value} [{_fmt(ci[0], digits)}, {_fmt(ci[1], digits)}]" if ci else value


# what an interval of no width at 1 or 0 does not mean, for a file or batch of the user's ({what})
FLAT_INTERVAL_NOTES = {
    1: "An interval of 1.000 [1.000, 1.000] means that no resample of {what} held a single error of that kind. It "
       "does not show that the model makes none: with no errors in n cases, the true rate can still be up to about "
       "3/n (95 %).",
    0: "An interval of 0.000 [0.000, 0.000] means that every resample of {what} that holds {cases} got all of them "
       "wrong: usually a file with only a few. It does not show that the model always fails there: with none right "
       "in n cases, the true rate can still be up to about 3/n (95 %)."}


def flat_intervals(metrics: dict) -> set:
    """The ends, 0 or 1, at which a headline metric's interval has no width: every resample perfect, or every one
    wrong, which reads as certainty. Unrounded: [0.9996, 1.0] has resamples with an error in them."""
    return {ci[0] for k, ci in (metrics.get("ci95") or {}).items()
            if k in HEADLINE and ci and ci[0] == ci[1] and ci[0] in (0, 1)}


def _fmt(value, digits=4) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    value = round(value, 12)  # a sum's float error is no miss: 0.9999999999999999 (a perfect AUPRC) is 1
    shown = f"{value:.{digits}f}"
    # a rate short of 1 (or above 0) is not shown as a perfect 1.000 (or a flat 0.000): "[0.997, 1.000]" for an
    # interval that ends at 0.99976 read as "can be perfect". A digit more, up to six
    while 0 < value < 1 and float(shown) in (0, 1) and digits < 6:
        digits += 1
        shown = f"{value:.{digits}f}"
    return shown


def loss_figure(histories: dict[str, list[dict]], modes: dict[str, str] | None = None,
                balanced: set[str] = frozenset()) -> go.Figure | None:
    """Training (solid) and validation (dashed, markers) loss against epochs, one colour per run.

    A run is drawn in a shade of its mode's colour (blue frozen, red fine-tuned, as on every page): the first run of a
    mode on the chart in that colour itself, the next ones in the shades furthest from it first (a shade picked from
    the run's id kept it stable, but gave two fine-tuned runs near-identical reds). Runs of different modes
    (`modes`: run -> mode) get a panel each, side by side with one loss axis: a frozen head's 60 epochs on the same
    epoch axis as a fine-tune's 3 would squash the fine-tune into a corner. `balanced`: the runs trained on
    class-balanced cross-entropy (the frozen default), whose level is not comparable with plain cross-entropy's: each
    panel's axis names its loss, and panels of different losses do not share one."""
    curves = {name: jobs.loss_curves(events) for name, events in histories.items()}
    drawn = [name for name, c in curves.items() if c["train"] or c["validation"]]  # the baseline has no loss
    panels = list(dict.fromkeys((modes or {}).get(name) for name in drawn))
    if not drawn:
        return None
    def loss(name) -> str:
        return "class-balanced cross-entropy" if name in balanced else "cross-entropy"

    panel_losses = [{loss(n) for n in drawn if (modes or {}).get(n) == panel} for panel in panels]
    mixed = len(set().union(*panel_losses)) > 1
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=not mixed, horizontal_spacing=0.12 if mixed else 0.04,
                        subplot_titles=[MODE_LABELS.get(m, m) for m in panels] if len(panels) > 1 else None)
    runs_of_mode = Counter()
    for name in drawn:
        mode = (modes or {}).get(name)
        shades = RUN_SHADES.get(mode, RUN_SHADES[None])
        color = shades[runs_of_mode[mode] % len(shades)]  # more runs of a mode than shades: colours repeat
        runs_of_mode[mode] += 1
        col = panels.index((modes or {}).get(name)) + 1
        which = f" ({'class-balanced' if name in balanced else 'plain'})" if len(panel_losses[col - 1]) > 1 else ""
        if curves[name]["train"]:
            epochs, losses = zip(*curves[name]["train"])
            # thin and faded: per-step losses are noisy, and would hide the validation points drawn over them
            # a line through one point draws nothing: the first logged step of a live run showed empty axes
            fig.add_scatter(x=epochs, y=losses, mode="lines" if len(epochs) > 1 else "markers",
                            name=f"train · {name}{which}", line=dict(color=color, width=1), opacity=0.5,
                            row=1, col=col)
        if curves[name]["validation"]:
            epochs, losses = zip(*curves[name]["validation"])
            fig.add_scatter(x=epochs, y=losses, mode="lines+markers", name=f"validation · {name}{which}",
                            line=dict(color=color, dash="dash"), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    for col, kinds in enumerate(panel_losses, start=1):
        if col == 1 or mixed:
            fig.update_yaxes(title_text=f"loss ({next(iter(kinds)) if len(kinds) == 1 else 'see legend'})", col=col)
    # panel titles need room below the chart's toolbar, which would cover the right-hand one
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=55 if len(panels) > 1 else 30, b=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def one_class_warning(metrics: dict, label: str, messages: str = "test message") -> str | None:
    """What to say when a model calls every message ham (the seed's frozen model did) or every one spam:
    its accuracy is then only the class share, and precision (no spam called) is undefined, shown as 0.
    A high AUROC says the probabilities still rank spam first, so the threshold is what failed."""
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    if tp + fp == 0:
        # on its own test split that is the seed's failure; on a file of the user's (another language, say) it may
        # only mean the file is unlike anything the model trained on
        why = ": it has collapsed to 'always ham'" if messages == "test message" else ""
        text = (f"{label} calls no {messages} spam{why}. Its accuracy is just the share of ham, recall and F1 are 0, "
                "and precision is undefined (tables show 0, as scikit-learn does).")
    elif tn + fn == 0:
        text = f"{label} calls every {messages} spam: its accuracy is just the share of spam."
    else:
        return None
    auroc = metrics.get("auroc")
    if auroc is not None and auroc >= 0.9:
        at = f" ({metrics['threshold']:g})" if metrics.get("threshold") is not None else ""
        text += (f" Its probabilities still rank spam above ham (AUROC {_fmt(auroc, 3)}), so the threshold{at} is what "
                 "fails, not the model.")
    return text


# ---------------------------------------------------------------------------- the headline, in words

def _errors_at(run, threshold: float) -> tuple[int, int]:
    """(spam missed, false alarms) among the run's test messages, calling spam at `threshold`."""
    predictions = run.metrics["predictions"]
    matrix = classification_metrics([p["label"] for p in predictions], [p["spam_probability"] for p in predictions],
                                    threshold)["confusion_matrix"]
    return matrix[1][0], matrix[0][1]


def _count(n: int) -> str:
    # from 999,500 on, "1.0 M": "1000 k" would say the same less plainly
    return f"{n / 1e6:.1f} M" if n >= 999_500 else f"{n / 1e3:.0f} k" if n >= 1e3 else str(n)


def seconds_shown(seconds: float | None) -> float | None:
    """A run's time for a table (with format "%g"): tenths below 10 s (a baseline's 0.2 s read as 0), else whole."""
    return None if seconds is None else round(seconds, 1 if seconds < 10 else None)


def _n(count: int, thing: str) -> str:
    """'1 error', '2 errors'."""
    return f"{count:,} {thing}{'s' * (count != 1)}"


def _encoded_from_cache(run) -> bool:
    """Whether a frozen run read its features from the cache: its run time then leaves encoding out."""
    return any(e.get("event") == "features_ready" and e.get("cached") for e in read_history(run.path))


def model_used(run) -> str:
    """The model a run trained, and whether it was a fallback for the one asked for: a report read away from the
    app must not pass the bundled MiniLM off as bert-base-uncased."""
    info = (run.config or {}).get("model")
    if not isinstance(info, dict):
        return run.model or "?"
    asked = info.get("requested")
    if asked and asked != info.get("name") and info.get("fallback_reason"):
        return f"{info.get('name')} (bundled fallback: {asked} was asked for, but {info['fallback_reason']})"
    return str(info.get("name"))


def _in_short(t_errors: int, f_errors: int, p_value: float, b_errors: int | None, b_seconds: float | None) -> str:
    """finetuning_verdict's first line: the two error counts, whether their difference is more than chance, and the
    baseline's count (None: not tested on the same messages at the same threshold) with its run's time."""
    if t_errors == f_errors:
        said = f"the fine-tuned and the frozen model make as many errors ({t_errors})"
    elif p_value < 0.05:
        said = (f"the fine-tuned model makes {'fewer' if t_errors < f_errors else 'more'} errors than the frozen one "
                f"({t_errors} against {f_errors}), more than chance explains")
    else:
        said = (f"the fine-tuned model makes {_n(t_errors, 'error')}, the frozen one {f_errors}: a difference within "
                "chance")
    if b_errors is not None:
        took = "" if not b_seconds else ", whose run took " + (
            f"{seconds_shown(b_seconds):g} s," if b_seconds >= 0.05 else "under 0.1 s,")
        said += f"; the TF-IDF baseline{took} makes {b_errors}"
    return said


def finetuning_verdict(frozen, finetune, baseline, threshold: float | None = None) -> str | None:
    """What fine-tuning bought over the frozen encoder, in words and counted in messages, with the paired test
    that says whether the difference is more than chance, and what it cost. threshold: one for every run (the
    Compare page's slider); by default each run's own. None when a run has no per-message results to count."""
    def at(run) -> float:
        return float(run.metrics.get("threshold", 0.5)) if threshold is None else threshold

    if not (frozen.metrics.get("predictions") and finetune.metrics.get("predictions")):
        return None
    (f_missed, f_alarms), (t_missed, t_alarms) = _errors_at(frozen, at(frozen)), _errors_at(finetune, at(finetune))
    f_errors, t_errors = f_missed + f_alarms, t_missed + t_alarms
    n = len(finetune.metrics["predictions"])
    gap = abs(t_errors - f_errors)
    change = "as many errors as" if gap == 0 else \
        f"{gap} {'fewer' if t_errors < f_errors else 'more'} error{'s' * (gap != 1)} than"
    where = f"At threshold {at(finetune):g}" if at(frozen) == at(finetune) else \
        f"Each at its own threshold ({at(frozen):g} frozen, {at(finetune):g} fine-tuned)"
    lines = []
    if same_test_messages(frozen, finetune):
        lines.append(f"{where}, on the same {n:,} test messages, the fine-tuned model makes **{change} the frozen "
                     f"one**: {t_errors} against {f_errors}. It misses {t_missed} spam (frozen: {f_missed}) and raises "
                     f"{_n(t_alarms, 'false alarm')} (frozen: {f_alarms}).")
        y = [p["label"] for p in frozen.metrics["predictions"]]
        p_frozen, p_finetune = ([p["spam_probability"] for p in run.metrics["predictions"]] for run in (frozen, finetune))
        test = mcnemar_test(y, p_frozen, p_finetune, at(frozen), at(finetune))
        verdict = "a real difference" if test["p_value"] < 0.05 else "not a significant difference"
        lines.append(f"Only the fine-tuned model is right on {_n(test['only_b_right'], 'message')}, only the frozen "
                     f"one on {test['only_a_right']}: McNemar p = {test['p_value']:.3g}, **{verdict}** at the 5 % "
                     "level.")
        # the take-away first, in a line: in the details, "2 fewer errors" was what a skimming stakeholder kept,
        # and "within chance" and "the baseline does as well" came after it
        comparable = baseline is not None and baseline.metrics.get("predictions") and at(baseline) == at(finetune) \
            and same_test_messages(finetune, baseline)
        b_errors = sum(_errors_at(baseline, at(baseline))) if comparable else None
        short = _in_short(t_errors, f_errors, test["p_value"], b_errors,
                          comparable and baseline.metrics.get("total_seconds"))
        lines.insert(0, f"\n\n**In short: {short}.**\n\n")  # a paragraph of its own, also after a warning
    else:
        lines.append(f"{where}, the fine-tuned model makes {_n(t_errors, 'error')} in its {n:,} test messages, the "
                     f"frozen one {f_errors} in its {len(frozen.metrics['predictions']):,}. They were tested on "
                     "different messages (other data, seed or split), so they cannot be compared message by message: "
                     "train both on one split for a paired test.")
    if frozen.model != finetune.model:  # the page's premise is one encoder used two ways
        lines.append(f"The two runs used different encoders (frozen: {plain(frozen.model)}; fine-tuned: "
                     f"{plain(finetune.model)}), so the difference between them is not fine-tuning's alone.")
    # a learning curve's runs, on a sample of the training messages: said before the counts (after any note on a run
    # cut short or quick, inserted before it below), as what the numbers are about
    trained_on = [trained_messages(run.config) for run in (frozen, finetune)]
    if (samples := [s for s in (training_subset(frozen.config), training_subset(finetune.config)) if s]) \
            and None not in trained_on:
        lines.insert(0, f"**Both runs trained on {samples[0][0]:,} of the {samples[0][1]:,} training messages**: the "
                        "comparison is for that many labels." if trained_on[0] == trained_on[1] else
                     f"**The two runs trained on different numbers of messages** (frozen: {trained_on[0]:,}; "
                     f"fine-tuned: {trained_on[1]:,}), so the difference between them is not fine-tuning's alone.")
    steps = finetune.metrics.get("steps")
    if isinstance(steps, int) and trained_to_end(finetune) and few_steps_warning(steps, finetune.config.get("epochs")
                                                                                  or 0):
        # so few that fine-tunes collapsed: the gap is then the recipe's, not fine-tuning's (a run cut short has a
        # note of its own)
        lines.insert(0, f"**The fine-tuned run trained only {_n(steps, 'optimisation step')}**: on SMS spam, "
                        "fine-tunes of 30 steps or fewer collapsed to calling every message ham on 8 of 9 splits. "
                        "Give it more epochs or a higher Min steps per epoch before reading what follows as what "
                        "fine-tuning buys.")
    weights = {which: (run.config or {}).get("class_weight") for run, which in ((frozen, "frozen"), (finetune, "fine-tuned"))}
    if len(set(weights.values())) > 1 and None not in weights.values():
        weighted = [which for which, w in weights.items() if w == "balanced"]
        lines.append(f"The {' and '.join(weighted)} run{'s' * (len(weighted) > 1)} trained with class-balanced loss and "
                     "the other without: such weighting trades false alarms for spam caught on its own, so the split "
                     "between the two kinds of error is not all fine-tuning's doing (the total is the fairer measure).")
    quick = []
    for run, which in ((finetune, "fine-tuned"), (frozen, "frozen")):
        if not trained_to_end(run):  # its numbers are not what training as set up gives: said first, and in bold
            lines.insert(0, f"**The {which} run did not train to its end**: "
                            f"{plain(stopped_note(run.metrics['stopped']))}. Read what follows with that in mind.")
        elif not full_length(run):  # the quick preset's fine-tune: a stakeholder would repeat its verdict as final
            quick.append((which, f"{_n(run.config['epochs'], 'epoch')}, fewer than the default "
                                 f"{MODE_DEFAULTS[run.mode]['epochs']}"))
    advice = "before reading what follows as what fine-tuning buys."
    # first, after any run cut short: mid-paragraph, a stakeholder read the headline and not this
    first = sum(not trained_to_end(run) for run in (finetune, frozen))
    if len(quick) == 1:
        [(which, what)] = quick
        lines.insert(first, f"**The {which} run is a quick one**: it trained {what}, so a full-length run may do "
                            f"better. Train one on the Train page {advice}")
    elif quick:  # a 1-epoch "Both" job: one sentence, not the same advice twice
        lines.insert(first, "**Both runs are quick ones**: " + "; ".join(f"the {which} one trained {what}"
                                                                          for which, what in quick)
                     + f". Full-length runs may do better: train them on the Train page {advice}")
    params = [run.metrics.get("trainable_parameters") for run in (finetune, frozen)]
    seconds = [run.metrics.get("total_seconds") for run in (finetune, frozen)]
    if all(params) and all(seconds):
        notes = [f"{seconds[0] / seconds[1]:.1f} times as long"] if seconds[0] >= 1.05 * seconds[1] else []
        if _encoded_from_cache(frozen):
            notes.append("the frozen run read its features from the cache, so its time leaves encoding out")
        notes += [f"the {which} run was stopped and resumed, and its time adds up the stretches it ran"
                  for run, which in ((finetune, "fine-tuned"), (frozen, "frozen")) if run.metrics.get("resumed")]
        # where they ran, as the runs recorded it (older runs did not): a runs folder copied from a GPU machine is not
        # "this machine", and a GPU run's time beside a CPU run's is no cost of fine-tuning
        devices = [str((run.config or {}).get("device") or "").split(":")[0] for run in (finetune, frozen)]
        where = {"cpu": " on the CPU", "cuda": " on a GPU", "mps": " on Apple's GPU"}.get(devices[0], "") \
            if devices[0] == devices[1] else ""
        if all(devices) and devices[0] != devices[1]:
            notes = [f"on different devices ({devices[0]} and {devices[1]}), so the times do not compare"] + [
                note for note in notes if "times as long" not in note]
        lines.append(f"The cost: fine-tuning trains {params[0] / params[1]:.0f} times as many parameters "
                     f"({_count(params[0])} against {_count(params[1])}), and its run took {seconds[0]:.0f} s against "
                     f"{seconds[1]:.0f} s{where}" + (f" ({'; '.join(notes)})." if notes else "."))
    if baseline is not None and baseline.metrics.get("predictions"):
        b_missed, b_alarms = _errors_at(baseline, at(baseline))
        notes = [f"at threshold {at(baseline):g}"] if at(baseline) != at(finetune) else []
        notes += [] if same_test_messages(finetune, baseline) else ["on other test messages"]
        b_errors, took = b_missed + b_alarms, baseline.metrics.get("total_seconds")
        gap = b_errors - t_errors  # counted against the fine-tuned model only on the same messages and threshold
        against = "" if notes else ", as many as the fine-tuned model" if gap == 0 else \
            f", {abs(gap)} {'fewer' if gap < 0 else 'more'} than the fine-tuned model"
        lines.append(f"For scale, the TF-IDF baseline makes {_n(b_errors, 'error')} ({b_missed} spam "
                     f"missed, {_n(b_alarms, 'false alarm')}{''.join(', ' + note for note in notes)}){against}"
                     + (f", and its run took {took:.1f} s." if took else "."))
    return " ".join(lines)


def confusion_figure(matrix, title: str) -> go.Figure:
    (tn, fp), (fn, tp) = matrix
    z = [[tn, fp], [fn, tp]]
    text = [[f"TN {tn}", f"FP {fp}"], [f"FN {fn}", f"TP {tp}"]]
    fig = go.Figure(go.Heatmap(z=z, x=["ham", "spam"], y=["ham", "spam"], text=text, texttemplate="%{text}",
                               colorscale="Blues", showscale=False,
                               hovertemplate="actual %{y}, predicted %{x}: %{text}<extra></extra>"))
    # short ticks under axis titles, with room made for them: in a third of a 1024-px screen "predicted spam" was
    # turned on its side and "actual ham" cut to "ctual ham"
    fig.update_layout(title=title, height=300, margin=dict(l=10, r=10, t=55, b=10),
                      xaxis=dict(title="predicted", automargin=True, tickangle=0),
                      yaxis=dict(title="actual", autorange="reversed", automargin=True))
    return fig


def comparison_report(runs: dict[str, tuple[str, str]], table: pd.DataFrame, figure_rows: list[list[go.Figure]],
                      notes: list[str], extra_tables: dict[str, tuple[pd.DataFrame, list[str]]] | None = None,
                      verdict: str | None = None) -> str:
    """One HTML file with the comparison's table and charts; plotly.js is inlined once, so it opens offline.
    runs: label -> (run id, model_used). figure_rows: the charts, each row's side by side (ROC beside PR, the
    matrices three across: one to a row, a matrix was 1,000 px wide). extra_tables: title -> (table, the warnings
    that go under it). verdict: finetuning_verdict's paragraph."""
    import html
    import time

    import plotly.io as pio

    # the app's tight margins rely on Streamlit's theme; on their own the charts need room for axis labels
    def chart(fig: go.Figure, share: float, first: bool) -> str:
        fig = go.Figure(fig).update_layout(margin=dict(l=70, r=30, t=60, b=60)).update_xaxes(automargin=True) \
            .update_yaxes(automargin=True)
        # a fixed share of the row, not flex:1: plotly sizes a chart when its script runs, before the row's next
        # chart exists, so a flexible first chart was drawn the row's whole width and then cut in half
        return f"<div style='width:{share:.3f}%'>{pio.to_html(fig, full_html=False, include_plotlyjs=first)}</div>"

    rows = [row for row in figure_rows if row]
    charts = "".join("<div style='display:flex'>" + "".join(chart(fig, 100 / len(row), i == j == 0)
                                                           for j, fig in enumerate(row)) + "</div>"
                     for i, row in enumerate(rows))
    def text(markdown: str) -> str:  # what the page shows, as HTML: plain()'s markdown escapes would show as "\_"
        return html.escape(as_text(markdown))

    # the verdict's only markdown is **bold**, around counts and fixed words (a file name's escaped \*\* is not),
    # and its paragraphs
    def bold(paragraph: str) -> str:
        return "".join(f"<b>{text(part)}</b>" if i % 2 else text(part)
                       for i, part in enumerate(re.split(r"(?<!\\)\*\*", paragraph)))
    paragraphs = "".join(f"<p>{bold(p.strip())}</p>" for p in (verdict or "").split("\n\n") if p.strip())
    headline = f"<h2>What fine-tuning bought</h2>{paragraphs}" if verdict else ""
    listed = "".join(f"<li>{html.escape(label)}: <code>{html.escape(run_id)}</code>, {html.escape(model)}</li>"
                     for label, (run_id, model) in runs.items())
    noted = "".join(f"<p>{text(n)}</p>" for n in notes)
    def as_html(frame: pd.DataFrame) -> str:  # without the columns' name, which to_html draws as an empty column
        return frame.rename_axis(columns=None).to_html(index=False, escape=True)

    noted += "".join(f"<h2>{html.escape(title)}</h2>{as_html(frame)}"
                     + "".join(f"<p><b>{text(w)}</b></p>" for w in warnings)
                     for title, (frame, warnings) in (extra_tables or {}).items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>SMS spam: model comparison</title>"
            f"<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} table{{border-collapse:collapse}}"
            f" td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>"
            f"<h1>SMS spam: frozen vs fine-tuned BERT</h1><p>Generated {time.strftime('%Y-%m-%d %H:%M')}. "
            f"Test split messages were never seen in training; spam is the positive class; brackets are 95 % "
            f"bootstrap intervals.</p><ul>{listed}</ul>{headline}{as_html(table)}{noted}"
            f"{charts}</body></html>")
