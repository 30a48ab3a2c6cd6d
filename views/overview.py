"""Overview: a frozen run against a fine-tuned run (and the TF-IDF baseline): by default the newest of each kind
that trained to its end for at least the default epochs."""
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from core import jobs
from core.config import TrainConfig
from core.features import effective_precision
from core.runs import stopped_note, trained_messages

from views import common

st.title("Frozen vs fine-tuned BERT for SMS spam")

usable = {mode: common.usable_runs(mode) for mode in ("frozen", "finetune", "baseline")}
latest = {mode: common.latest(found) for mode, found in usable.items()}
busy = jobs.current_job(common.runs_dir())


# what a learning curve's points share with the run shown above, beside the data, split and model: every setting
# that changes what is trained or kept, but the number of training messages, the epochs and the fine-tune's min steps
# per epoch (a small sample needs more steps: benchmarks/README.md, sections 17 and 19)
RECIPE = ("val_fraction", "test_fraction", "seed", "lr", "batch_size", "max_length", "warmup_ratio", "weight_decay",
          "max_grad_norm", "patience", "evals_per_epoch", "class_weight", "threshold", "pooling", "head_hidden",
          "dropout", "precision")
BASELINE_RECIPE = ("val_fraction", "test_fraction", "seed", "class_weight", "threshold")


def _recipe(run) -> dict:
    cfg = run.config or {}
    # the baseline records the encoder's settings too (a plan's shared form), but they change nothing it fits
    keys = [k for k in RECIPE if run.mode != "baseline" or k in BASELINE_RECIPE]
    return {"model": run.model, "data": (cfg.get("data_info") or {}).get("fingerprint")} | {k: cfg.get(k) for k in keys}


CURVE_SYMBOLS = {"baseline": "square", "frozen": "circle", "finetune": "diamond"}


def _setting(value) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else common.plain(str(value))


def curve_points(shown: dict) -> tuple[dict, list[str]]:
    """The learning curve's points, mode -> {training messages: run}, for the runs shown above (mode -> run): at each
    size, the newest run of that mode that trained to its end, tested on the same messages, with the same data, model
    and settings as that one but for its training messages, epochs and min steps per epoch. And a line for each size
    left out because its newest such run has another setting, naming it: a point missing without a word looked like
    no run at all (bf16 runs beside an fp32 one, say)."""
    points, other = {}, {}
    for mode, shown_run in shown.items():
        for run in usable[mode]:  # newest first: the first at a size is its point
            if common.trained_to_end(run) and (size := trained_messages(run.config)) \
                    and common.same_test_messages(shown_run, run):
                (points if _recipe(run) == _recipe(shown_run) else other).setdefault(mode, {}).setdefault(size, run)
    left_out = []
    for mode, sizes in other.items():
        ours = _recipe(shown[mode])
        for size, run in sorted(sizes.items()):
            if size in points.get(mode, {}):
                continue
            theirs = _recipe(run)
            # named as the Runs page's settings table names them, where both runs' settings can be read
            differ = "; ".join(f"{k.replace('_', ' ')} {_setting(theirs[k])}, not {_setting(v)}"
                               for k, v in ours.items() if theirs[k] != v and k != "data")
            left_out.append(f"{common.MODE_LABELS[mode]} on {size:,} training messages (run {run.id}): "
                            f"{differ or 'another dataset file'}.")
    return points, left_out


def learning_curve(points: dict) -> tuple[go.Figure, list[str]] | None:
    """Test errors against training messages, a line per mode of `points` (curve_points); with a note on each point
    that calls no message spam. None unless some line has two sizes (runs on a sample of the training messages: the
    Train page's "Training messages", or benchmarks/bench_data_size.py)."""
    if not any(len(sizes) > 1 for sizes in points.values()):
        return None
    anchor = next(run for sizes in points.values() for run in sizes.values())
    fig, notes = go.Figure(), []
    for mode in ("baseline", "frozen", "finetune"):  # the BERTs drawn last, over the baseline's larger squares
        if not (sizes := points.get(mode)):
            continue
        runs = [sizes[n] for n in sorted(sizes)]
        # a BERT on a small sample can train few steps: on SMS spam, fine-tunes of one pass an epoch collapsed there
        more = "More epochs or a higher Min steps per epoch give" if mode == "finetune" else "More epochs give"
        notes += [f"{common.MODE_LABELS[mode]} on {trained_messages(run.config):,} training messages calls no test "
                  f"message spam (\"always ham\"): its {common._n(run.config['epochs'], 'epoch')} were "
                  f"{common._n(run.metrics.get('steps'), 'optimisation step')}. {more} a small sample more steps."
                  for run in runs if mode != "baseline" and isinstance(run.metrics.get("steps"), int)
                  and sum(run.metrics["test"]["confusion_matrix"][i][1] for i in (0, 1)) == 0]
        errors = [sum(run.metrics["test"]["confusion_matrix"][i][1 - i] for i in (0, 1)) for run in runs]
        fig.add_scatter(x=sorted(sizes), y=errors, mode="lines+markers", name=common.MODE_LABELS[mode],
                        line=dict(color=common.MODE_COLORS[mode]),
                        # one symbol each: equal errors at a size had hidden one model's point under another's
                        marker=dict(size=12 if mode == "baseline" else 9, symbol=CURVE_SYMBOLS[mode]),
                        # the epochs too: a small sample may have been given more of them than the default
                        customdata=[[run.id, common._fmt(run.metrics["test"]["f1"], 3), "" if mode == "baseline"
                                     else ", " + common._n(run.config["epochs"], "epoch") + (
                                         f" ({common._n(run.metrics['steps'], 'step')})"
                                         if isinstance(run.metrics.get("steps"), int) else "")] for run in runs],
                        hovertemplate=f"{common.MODE_LABELS[mode]}, %{{x:,}} training messages: %{{y}} errors, "
                                      "F1 %{customdata[1]}<br>%{customdata[0]}%{customdata[2]}<extra></extra>")
    ticks = sorted({n for by_size in points.values() for n in by_size})  # at the sizes trained, not 2 3 4…
    fig.update_layout(xaxis=dict(type="log", title="training messages (log scale)", tickvals=ticks,
                                 ticktext=[f"{n:,}" for n in ticks]), height=380,
                      yaxis=dict(rangemode="tozero", title=f"test errors (of {anchor.metrics['test']['n']:,})"),
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12))
    return fig, notes


def quick_preset(data_path: str) -> list[TrainConfig]:
    """Baseline (seconds), frozen with its defaults (one encoding pass, then a small head), and one
    fine-tuning epoch at 64 tokens (most SMS fit): a first result in minutes on a laptop CPU."""
    shared = dict(data=data_path, model=st.session_state.get("model_name", common.default_model()),
                  runs_dir=str(common.runs_dir()), cache_dir=common.cache_dir())
    return [TrainConfig(mode="baseline", **shared), TrainConfig(mode="frozen", **shared),
            TrainConfig(mode="finetune", epochs=1, max_length=64, **shared)]


if busy or not (latest["frozen"] or latest["finetune"]):
    st.markdown(
        "A **frozen** model keeps the pre-trained BERT encoder fixed and trains only a small classifier on its "
        "features; a **fine-tuned** model updates the whole encoder on the SMS messages. This dashboard trains "
        "both on the same split and shows what fine-tuning buys in spam caught and false alarms, and at what cost.")
common.refused_start(busy)
if busy:
    common.job_panel("overview")
elif not (latest["frozen"] or latest["finetune"]):
    data_path, _, data_error = common.data_source()
    if data_error:
        st.warning("Add a dataset in the sidebar first (upload a file or give a path).")
    if st.button("Train all three with the quick preset", type="primary", disabled=data_path is None,
                 key="overview_preset",
                 help="TF-IDF baseline, frozen encoder + head, and one fine-tuning epoch at 64 tokens. "
                      "A few minutes on a laptop CPU; the Train page has every setting."):
        try:
            with st.spinner("Starting the training process…"):
                jobs.launch(quick_preset(data_path))
            st.session_state.pop(common.REFUSED_START, None)
            st.rerun()
        except jobs.JobBusy as exc:  # another tab's job started first: said across the redraw it causes
            common.note_refused("The quick preset", exc)
            st.rerun()
        except (jobs.JobError, ValueError) as exc:
            st.error(common.plain(exc))
    # the times measured through the CLI (benchmarks/README.md, section 9): 49 s, 76 s and 223 s
    this_cpu = "" if torch.cuda.is_available() else \
        " (this one has)" if effective_precision("bf16") == "bf16" else " (this one has not, so it trains in fp32)"
    st.caption("The quick preset trains the TF-IDF baseline (seconds), the frozen encoder with its small head (one "
               "pass to encode every message, then a head on the cached features), and one fine-tuning epoch at 64 "
               "tokens. On a quiet 2-core CPU with the bundled model it took 50-80 s in all where the CPU has "
               f"native bf16 instructions, and about 4 minutes where it has not{this_cpu}; several times that when "
               "the CPU is busy. Progress and live loss curves appear on this page.")
    common.job_panel("overview-idle")  # how the last job ended, if one failed

shown = {}
if any(latest.values()):
    # which runs the page is about, in plain sight: a quick run trained during a demo is the newest, and would
    # otherwise replace the full one without a word. The picks are shared with Compare and Playground.
    for col, mode in zip(st.columns(3), ("frozen", "finetune", "baseline")):
        if usable[mode]:
            run = common.run_picker(col, mode, usable[mode], f"overview_{mode}",
                                    none_label="not shown" if mode == "baseline" else None)
            if run is not None:
                shown[mode] = run
    st.caption("Each defaults to the newest run of its kind that trained to its end, on all the training messages, "
               "for at least the default epochs (else the closest to that, in that order); the frozen and baseline "
               "ones, among the runs tested on the same messages as the fine-tuned one. A pick here is kept on "
               "Compare and Playground too.")
    # a quick run picked during a demo ("Compare them" after a job on 200 messages) stays the page's subject for the
    # session: one click back to the full runs, not three pickers
    if chosen := [mode for mode in usable if common.picked_by_user(mode)]:
        st.button("Show the default runs", key="overview_defaults", on_click=common.forget_picks, args=(chosen,),
                  help="Drops the runs picked here, on Compare or Playground, or by a link, on every page.")
    common.note_other_data(shown)
    encoders = {mode: (run.config or {}).get("model") or {} for mode, run in shown.items() if mode != "baseline"}
    bundled = {mode: m for mode, m in encoders.items() if m.get("source") == "bundled"}
    if bundled and len(bundled) == len(encoders):  # the title says BERT: say which one, and what that means for the gap
        fell_back = {mode: m for mode, m in bundled.items() if m.get("fallback_reason")}
        # only for the runs that asked for another model: one may have asked for MiniLM by name
        which = "" if len(fell_back) == len(bundled) else \
            " in the " + " and ".join(common.MODE_LABELS[mode] for mode in fell_back) + " run"
        stand_in = next((f", standing in for {m['requested']}{which} ({m['fallback_reason']})"
                         for m in fell_back.values()), "")
        st.info(f"The BERT here is the bundled all-MiniLM-L6-v2{common.plain(stand_in)}: a 6-layer BERT trained as a "
                "sentence encoder, so its frozen features are good from the start. What fine-tuning buys on it need "
                "not be what it buys on bert-base-uncased.", icon=":material/info:")
if shown:
    verdict = common.finetuning_verdict(shown["frozen"], shown["finetune"], shown.get("baseline")) \
        if "frozen" in shown and "finetune" in shown else None
    if verdict:
        st.subheader("What fine-tuning bought")
        st.markdown(verdict)
    thresholds = {float(run.metrics.get("threshold", 0.5)) for run in shown.values()}
    rows, costs = [], []
    # a column only where the BERTs' encoders differ: the same name twice costs the metrics room at 1024 px
    encoder_names = {mode: Path(run.model or "?").name for mode, run in shown.items() if mode != "baseline"}
    one_encoder = len(set(encoder_names.values())) <= 1
    for mode, run in shown.items():
        m, model = run.metrics, {"model": common.MODE_LABELS[mode]}
        rows.append(model | ({} if one_encoder else {"encoder": encoder_names.get(mode)}) |
                    {common.METRIC_NAMES[k]: m["test"].get(k) for k in common.HEADLINE})
        costs.append(model | {"trainable params": common._count(m["trainable_parameters"])  # as the paragraph says it
                              if m.get("trainable_parameters") else None,
                              "time (s)": common.seconds_shown(m.get("total_seconds"))})
    st.subheader("Test-set results")
    st.dataframe(pd.DataFrame(rows), hide_index=True, placeholder="—", column_config={
        common.METRIC_NAMES[k]: st.column_config.NumberColumn(format="%.3f") for k in common.HEADLINE})
    # a table of its own: as columns of the one above, they scrolled out of view at 1024 px with the sidebar open
    st.dataframe(pd.DataFrame(costs), hide_index=True, placeholder="—", width="content", column_config={
        "trainable params": st.column_config.TextColumn(help="Parameters that training updates", alignment="right"),
        "time (s)": st.column_config.NumberColumn(
            format="%g", help="Whole run, on the machine that trained it: data, encoding (frozen, unless it read its "
                              "features from the cache), training and testing")})
    common.glossary()
    # in words, not as a column: the table's columns just fit at 1024 px with the sidebar open
    at = f" A message is called spam at probability ≥ {thresholds.pop():g}." if len(thresholds) == 1 else \
        " Each run calls a message spam at its own threshold: " + ", ".join(
            f"{common.SHORT_LABELS[m]} at probability ≥ {float(r.metrics.get('threshold', 0.5)):g}"
            for m, r in shown.items()) + "."
    first = next(iter(shown.values()))  # a run picked by hand may have been tested on other data: say so
    same = [common.MODE_LABELS[m] for m, r in shown.items() if common.same_test_messages(first, r)] or \
        [common.MODE_LABELS[next(iter(shown))]]
    elsewhere = [f"{common.MODE_LABELS[m]}: {r.metrics['test'].get('n') or 'its'} other messages"
                 for m, r in shown.items() if common.MODE_LABELS[m] not in same]
    n_test = first.metrics["test"].get("n")
    count = (f"{n_test:,}" if n_test else "the") + " messages never seen in training" + (
        f" (for {' and '.join(same)}; " + "; ".join(elsewhere) + ", from other data or another split: not comparable "
        "row by row)" if elsewhere else "")
    paired = " The paired test above is what says whether the two BERTs differ." if verdict and \
        common.same_test_messages(shown["frozen"], shown["finetune"]) else ""
    # the paragraph above says it where there is one; the table alone would read the time as one with encoding
    cached = " The frozen run read its features from the cache: its time leaves encoding out." if not verdict and \
        "frozen" in shown and common._encoded_from_cache(shown["frozen"]) else ""
    both = (" Both BERTs use" if len(encoder_names) > 1 else " The BERT uses") + f" {encoder_names.popitem()[1]}." \
        if one_encoder and encoder_names else ""
    st.caption(f"Test split: {count}. Spam is the positive class.{at}{both}{cached} The chart's "
               f"whiskers are 95 % bootstrap intervals, one model at a time; overlapping ones do not show that two "
               f"models are equal.{paired}")
    for mode, run in shown.items():
        if warning := common.one_class_warning(run.metrics["test"], common.MODE_LABELS[mode]):
            st.warning(warning)
        if run.metrics.get("stopped"):
            st.info(f"{common.MODE_LABELS[mode]} ({run.id}) " + ("did not train to its end: " if not
                    common.trained_to_end(run) else "") + f"{common.plain(stopped_note(run.metrics['stopped']))}.")

    fig = go.Figure()
    for mode, run in shown.items():
        test, ci = run.metrics["test"], run.metrics["test"].get("ci95") or {}
        y = [test.get(k) for k in common.HEADLINE]
        lo = [(v - ci[k][0]) if ci.get(k) and v is not None else 0 for k, v in zip(common.HEADLINE, y)]
        hi = [(ci[k][1] - v) if ci.get(k) and v is not None else 0 for k, v in zip(common.HEADLINE, y)]
        # points, not bars: on an axis zoomed to show the gaps, a bar's length would overstate them
        fig.add_scatter(x=[common.METRIC_NAMES[k] for k in common.HEADLINE], y=y, name=common.MODE_LABELS[mode],
                        mode="markers", marker=dict(color=common.MODE_COLORS[mode], size=11),
                        error_y=dict(type="data", array=hi, arrayminus=lo, thickness=1.5, width=6),
                        # the model and the interval too: the hover is what a stakeholder reads off a point
                        customdata=[common.with_interval(test, k) for k in common.HEADLINE],
                        hovertemplate=f"{common.MODE_LABELS[mode]}<br>%{{x}}: %{{customdata}}<extra></extra>")
    low = min((v for run in shown.values() for k in common.HEADLINE  # the lowest point or interval end
               for v in [run.metrics["test"].get(k), *((run.metrics["test"].get("ci95") or {}).get(k) or [])]
               if v is not None), default=0)
    start = max(0.0, round(low - 0.02, 2))  # zoomed so the gaps show; the axis title says where it starts
    fig.update_layout(scattermode="group", yaxis=dict(range=[start, 1.005], title=f"score (axis from {start:.2f})"),
                      height=420,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.1))
    st.plotly_chart(fig, key="overview-bars")
    points, left_out = curve_points(shown)
    curve = learning_curve(points)
    if curve or left_out:
        st.subheader("What fine-tuning buys as labels get scarce")
    if curve:
        st.plotly_chart(curve[0], key="overview-learning-curve")
        for note in curve[1]:
            st.warning(note)
        st.caption("Each point is a run trained on that many of the training messages (a nested sample of the same "
                   "split) and tested on the same messages, with the same model and settings as the run of its kind "
                   "above but for the epochs and a fine-tune's min steps per epoch (hover: its epochs and steps); at "
                   "each size, the newest that trained to its end, with errors at its own threshold. More points: "
                   "\"Learning curve\" under \"More settings\" on the Train page.")
    if left_out:  # a missing point, or a missing chart, says why
        st.caption(("Left out of the learning curve" if curve else "No learning curve for the runs shown") +
                   ": runs whose settings differ from those of the run of their kind above (a line varies the number "
                   "of training messages alone). Picked above, one of them draws the line of its own settings.\n\n"
                   + "\n".join(f"- {line}" for line in left_out))
    planned = set(jobs.planned_modes(common.runs_dir())) if busy else set()
    if training := [common.MODE_LABELS[m] for m in ("frozen", "finetune") if m not in shown and m in planned]:
        st.info(f"{' and '.join(training)}: the running job (above) is training "
                f"{'it' if len(training) == 1 else 'them'}; the results appear here when it completes.")
    if missing := [common.MODE_LABELS[m] for m in ("frozen", "finetune") if m not in shown and m not in planned]:
        st.info(f"No completed run to show for: {', '.join(missing)}. Start one on the Train page.")
    common.page_link("views/compare.py", label="ROC, PR and confusion matrices on Compare", icon=":material/compare:")
