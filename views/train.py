"""Train: the hyperparameters that matter, validated before launch; the live job with Cancel."""
import dataclasses
import re

import streamlit as st

from core import jobs
from core.config import (BASELINE_SETTINGS, FEW_FINETUNE_STEPS, MODE_DEFAULTS, TrainConfig, few_steps_warning,
                         passes_per_epoch, steps_per_epoch)
from core.data import split_sizes
from core.runs import read_json, write_json_atomic

from views import common

# the CLI's help, less the pointers to benchmark sections, which mean nothing on a form
HELP = {name: re.sub(r" \([^()]*benchmarks/README\.md[^()]*\)", "", f.metadata.get("help") or "")
        for name, f in TrainConfig.__dataclass_fields__.items()}
HELP["class_weight"] = ("balanced: weight the loss by inverse class frequency, so that the 12 % of spam is not "
                        "ignored (the seed experiment's frozen model called every message ham); mode default: frozen "
                        "balanced, fine-tune none (weighting cost the fine-tune precision on validation)")
DEFAULTS = TrainConfig()  # field defaults, shown in the form
PLANS = {
    "frozen": ["frozen"],
    "finetune": ["finetune"],
    "both": ["frozen", "finetune"],
    "baseline": ["baseline"],
}
# a learning curve's sizes: from 50 messages, where a fine-tune of one pass an epoch collapsed (benchmarks/README.md,
# section 17), up
CURVE_SIZES = [50, 100, 300, 1000, 2000]
PLAN_LABELS = {"frozen": "Frozen encoder + MLP head", "finetune": "Fine-tune the whole encoder",
               "both": "Both, one after the other", "baseline": "TF-IDF baseline only"}

st.title("Train")
common.job_panel("train")
busy = jobs.current_job(common.runs_dir())
common.refused_start(busy)  # a Start another tab's job beat: above the form, which a running job hides
# while a job runs, its live panel is the page: Start was pressed at the bottom of a long form, and the curves would
# be out of sight above it. The form, with what was typed, comes back when asked for or when the job ends.
with st.container():  # drawn with or without the toggle: when the job ends and the toggle goes, the fields below
    # keep their places on the page, and one being typed in keeps what was typed (moved, the browser redrew it afresh)
    next_run = bool(busy) and st.toggle("Set up the next run while this one trains", key="train_next")
if busy and not next_run:
    common.end_page()

# ---------------------------------------------------------------------------- the form, kept on disk
# A reload starts a new session, which would reset every field: each field that differs from its default is also
# kept in the runs folder, and a new session starts from it, a new tab too. Not in the URL, unlike Playground's message
# and Compare's threshold: the link would carry every changed field, and a tab opened without it would start afresh.
FORM_FILE = common.runs_dir() / ".train-form.json"
try:
    SAVED = read_json(FORM_FILE)
    SAVED = SAVED if isinstance(SAVED, dict) else {}
except (OSError, ValueError):  # none yet, or damaged: the defaults
    SAVED = {}
# Each field starts from the file as this session first read it, and from nothing else: a widget's value= that
# followed the file, which this page rewrites after each edit, brought a number typed just before a page switch back
# as the one before it (and Start trained that one)
START = st.session_state.setdefault("train_form_start", SAVED)
DRAWN = {}  # widget key -> (default, value now) of each field drawn on this run
DRAWN_LABELS = {}  # widget key -> how the form names it, for the note on fields that differ from their defaults


def saved(key: str, default, options=None):
    """The field's kept value if it has the right type (and is among the options), else its default. Only the first
    draw of a field in a session uses it: after that the field keeps what the user typed."""
    value = START.get(key, default)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not type(default) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                            and not abs(value) < 2**53):  # nan, inf, huge: the number field refuses
        return default
    return value if options is None or value in options else default


def same(value, default) -> bool:
    """Unchanged: 5e-5 typed where the default reads 5e-05 is the default too."""
    if isinstance(value, str) and isinstance(default, str) and value != default:
        try:
            return float(value) == float(default)
        except ValueError:
            return False
    return value == default


def drawn(key: str, default, value, label: str):
    DRAWN[key], DRAWN_LABELS[key] = (default, value), label
    st.session_state.setdefault("train_field_defaults", {})[key] = default  # for the reset, drawn now or not
    return value


choice = drawn("train_plan", "both", st.radio(
    "What to train", list(PLANS), format_func=PLAN_LABELS.get, horizontal=True, key="train_plan",
    index=list(PLANS).index(saved("train_plan", "both", PLANS)), persist_state=common.KEEP), "What to train")
modes = list(PLANS[choice])
if choice != "baseline" and drawn("train_with_baseline", True, st.checkbox(
        "Also fit the TF-IDF + logistic-regression baseline first (seconds)", key="train_with_baseline",
        value=saved("train_with_baseline", True), persist_state=common.KEEP), "Also fit the baseline"):
    modes.insert(0, "baseline")
neural = [m for m in modes if m != "baseline"]

model_name = common.default_model()
if neural:
    model_name = drawn("train_model", common.default_model(), st.text_input(
        "Model (hub id or local directory)", help=HELP["model"], key="train_model", persist_state=common.KEEP,
        value=saved("train_model", common.default_model())), "Model")
    if not model_name.strip():
        model_info = {"error": "Model: enter a hub id (such as bert-base-uncased) or a local model directory"}
    else:
        model_info = common.resolved_model(model_name.strip())
    if "error" not in model_info:  # the sidebar shows the model a run would use; a typo stays on this page
        st.session_state["model_name"] = model_name.strip()
    else:  # under the field it is about, not with the other settings' errors at the foot of the form
        st.error(common.plain(model_info["error"]))
    if model_info.get("fallback_reason"):
        st.info(f"{common.plain(model_name)} is not available offline ({model_info['fallback_reason']}): training uses the "
                f"bundled {model_info['name']}.", icon=":material/cloud_off:")

values, errors = {}, []  # errors: what no single field shows (the data, a combination of fields)
wrong_fields = []  # each shows its error under itself; any one keeps Start disabled


LABELS = {}  # field name -> its label on this form, for the messages about a combination of fields


def number(label, name, col, kind=int, default=None, fmt=None, scope="shared", limit=None, help=None):
    """A number field without min/max: TrainConfig's validation gives the message for a bad value. limit: (the
    most, and why), a tighter bound than TrainConfig's, checked first so the message gives the bound that applies.
    help: the field's help where TrainConfig's needs more said on this form."""
    LABELS[name] = label
    default, key = kind(getattr(DEFAULTS, name) if default is None else default), f"train_{scope}_{name}"
    entered = drawn(key, default, col.number_input(
        label, value=saved(key, default), step=kind(1) if kind is int else None, format=fmt, help=help or HELP[name],
        key=key, persist_state=common.KEEP), scoped(label, scope))
    if limit and entered > limit[0]:
        return field_error(col, name, f"expected at most {limit[0]} {limit[1]}, got {entered}")
    decimals = int(fmt[2:-1]) if fmt else None  # "%.3f": the box shows 3 decimals, and trains what it shows
    if decimals is not None and abs(entered - round(entered, decimals)) > 1e-9:
        return field_error(col, name, f"expected at most {decimals} decimals (the box rounds to that many), "
                                      f"got {entered:g}")
    return checked(name, entered, col, scope)


def scoped(label: str, scope: str) -> str:
    """"Epochs (Fine-tuned BERT)": a per-mode field named with its mode."""
    return label if scope == "shared" else f"{label} ({common.MODE_LABELS[scope]})"


def rate(label, name, col, default, scope):
    key = f"train_{scope}_{name}"
    text = drawn(key, f"{default:g}", col.text_input(label, value=saved(key, f"{default:g}"), help=HELP[name], key=key,
                                                     persist_state=common.KEEP), scoped("Learning rate", scope))
    try:
        return checked(name, float(text), col, scope)
    except ValueError:
        return field_error(col, name, f"expected a number such as 5e-5, got {text!r}")


def checked(name, value, col, scope):
    """`value` if TrainConfig accepts it for this field (its bounds are the same in every mode), else None with
    TrainConfig's message under the field."""
    try:
        TrainConfig(mode=scope if scope in MODE_DEFAULTS else "finetune", **{name: value})
        return value
    except (ValueError, TypeError) as exc:
        return field_error(col, name, str(exc).removeprefix(f"{name}: "))


def field_error(col, name, message):
    """The message under its field, whose label says what it is about: no internal name in front."""
    col.error(common.plain(message[:1].upper() + message[1:]))
    wrong_fields.append(name)


def in_labels(message: str) -> str:
    """TrainConfig's message with its field names (val_fraction) as this form labels them (Validation share)."""
    return re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: LABELS.get(m.group(), m.group()), message)


if neural:
    st.subheader("Shared settings")
    c = st.columns(5)
    values["batch_size"] = number("Batch size", "batch_size", c[0])
    values["max_length"] = number("Max length", "max_length", c[1], limit=None if "error" in model_info else
                                  (model_info["max_positions"], f"for {model_info['name']}"))
    values["seed"] = number("Seed", "seed", c[2])
    values["warmup_ratio"] = number("Warmup ratio", "warmup_ratio", c[3], float, fmt="%.2f")
    values["patience"] = number("Patience", "patience", c[4])  # a longer label wraps and pushes its box out of line

per_mode = {m: {} for m in modes}
columns = st.columns(len(neural)) if neural else []
for col, mode in zip(columns, neural):
    with col:
        st.subheader(common.MODE_LABELS[mode])
        c = st.columns(2)
        per_mode[mode]["epochs"] = number("Epochs", "epochs", c[0], default=MODE_DEFAULTS[mode]["epochs"],
                                         scope=mode)
        per_mode[mode]["lr"] = rate("Learning rate", "lr", c[1], MODE_DEFAULTS[mode]["lr"], scope=mode)
        # two fields a row: a third column beside them wraps their labels at 1280 px with both modes, and cuts "mean".
        # Boxes level at the bottom: this label wraps at 1024 px and would push its box below Pooling's
        c = st.columns(2, vertical_alignment="bottom")
        per_mode[mode]["evals_per_epoch"] = number("Validations per epoch", "evals_per_epoch", c[0],
                                                   default=MODE_DEFAULTS[mode]["evals_per_epoch"], scope=mode)
        if mode == "finetune":
            per_mode[mode]["min_epoch_steps"] = number("Min steps per epoch", "min_epoch_steps", c[1],
                                                       default=MODE_DEFAULTS[mode]["min_epoch_steps"], scope=mode)
        if mode == "frozen":
            pooling = ["mean", "cls"]
            per_mode[mode]["pooling"] = drawn("train_frozen_pooling", "mean", c[1].selectbox(
                "Pooling", pooling, index=pooling.index(saved("train_frozen_pooling", "mean", pooling)),
                help=HELP["pooling"], key="train_frozen_pooling", persist_state=common.KEEP), scoped("Pooling", mode))
            c = st.columns(2)
            per_mode[mode]["head_hidden"] = number("Head size", "head_hidden", c[0], scope=mode)
            per_mode[mode]["dropout"] = number("Dropout", "dropout", c[1], float, fmt="%.2f", scope=mode)

hidden_from = len(wrong_fields)
with st.expander("More settings"):
    # first row: what every run of the plan uses, the baseline's too (core.config.BASELINE_SETTINGS)
    # the dropdowns wider than the number boxes: at 1024 px an even share cut their values ("mode defaul"). Boxes
    # level at the bottom, as labels wrap there
    c = st.columns([1, 1, 1.5, 1] + ([] if neural else [1]), vertical_alignment="bottom")
    values["val_fraction"] = number("Validation share", "val_fraction", c[0], float, fmt="%.2f")
    values["test_fraction"] = number("Test share", "test_fraction", c[1], float, fmt="%.2f")
    choices = ["per mode", "balanced", "none"]
    weights = drawn("train_class_weight", "per mode", c[2].selectbox(
        "Class weights", choices, index=choices.index(saved("train_class_weight", "per mode", choices)),
        help=HELP["class_weight"], format_func=lambda v: "mode default" if v == "per mode" else v,
        key="train_class_weight", persist_state=common.KEEP), "Class weights")
    if weights != "per mode":  # else each mode keeps its own (frozen balanced, finetune none), as on the CLI
        values["class_weight"] = weights
    values["threshold"] = number("Spam threshold", "threshold", c[3], float, fmt="%.3f", help=(
        f"{HELP['threshold']}; the run's test metrics and confusion matrix, and its verdicts on Overview and "
        "Playground, use it (Compare's slider tries others)"))
    if not neural:  # the shared settings above are a BERT's, but for the seed: else a seed kept there went unused
        values["seed"] = number("Seed", "seed", c[4])
    # a learning curve: every run of the plan on the same sample, tested on the same messages as a run on them all
    c = st.columns([1, 3.5], vertical_alignment="bottom")
    LABELS["train_messages"] = "Training messages"
    sample = drawn("train_shared_train_messages", 0, c[0].number_input(
        "Training messages", min_value=0, step=100, value=saved("train_shared_train_messages", 0),
        help=f"{HELP['train_messages']}. 0: all of them", key="train_shared_train_messages",
        persist_state=common.KEEP), "Training messages")
    values["train_messages"] = checked("train_messages", sample, c[0], "shared") if sample else None
    c[1].caption("0 trains on every training message. Fewer shows what fine-tuning buys when labels are scarce: a "
                 "sample of the training split, the same for a seed and nested (300 holds the 100), tested on the "
                 "same messages.")
    kept_sizes = START.get("train_shared_curve", [])
    curve = drawn("train_shared_curve", [], st.columns([2, 1])[0].multiselect(
        "Learning curve: first train each model of the plan on fewer messages", CURVE_SIZES,
        default=[n for n in kept_sizes if n in CURVE_SIZES] if isinstance(kept_sizes, list) else [],
        format_func=lambda n: f"{n:,} messages", key="train_shared_curve", persist_state=common.KEEP,
        placeholder="None: only the runs above",
        help="One more run of each model per size, smallest first, with the same settings on a sample of the "
             "training messages; the Overview then plots test errors against training messages"),
        "Learning curve")
    if neural:  # second row: a BERT's alone; the baseline's solver has no weight decay, gradients or encoder
        c = st.columns([1, 1, 2.5], vertical_alignment="bottom")
        values["weight_decay"] = number("Weight decay", "weight_decay", c[0], float, fmt="%.3f")
        values["max_grad_norm"] = number("Gradient clipping", "max_grad_norm", c[1], float, fmt="%.2f")
        # not "Precision": the form would then seem to set the metric
        arithmetic = {"bf16": "bf16 where supported", "fp32": "fp32"}
        values["precision"] = drawn("train_precision", DEFAULTS.precision, c[2].selectbox(
            "Encoder arithmetic", list(arithmetic),
            index=list(arithmetic).index(saved("train_precision", DEFAULTS.precision, arithmetic)),
            help=HELP["precision"], format_func=arithmetic.get, key="train_precision", persist_state=common.KEEP),
            "Encoder arithmetic")

changed = {key: value for key, (default, value) in DRAWN.items() if not same(value, default) and value is not None}
# the file takes only the fields this session edited since its last run: every open Train tab reruns (when a job
# ends, for one), and writing all its fields wrote back what it showed when opened over another tab's edits
seen = st.session_state.setdefault("train_form_seen", {})  # field -> its value on this session's last run
keep = dict(SAVED)
for key, (default, value) in DRAWN.items():
    if key in seen and not same(value, seen[key]):  # edited here: kept, or forgotten when back at its default
        if key in changed:
            keep[key] = value
        else:
            keep.pop(key, None)
    seen[key] = value
if keep != SAVED:
    try:
        FORM_FILE.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(FORM_FILE, keep)
    except OSError:  # a read-only runs folder: the form still works, and a reload resets it
        pass


def shown(value, key: str | None = None) -> str:
    """A field's value as the note on changed fields gives it: on/off, a plan's label, 0.002, all training messages,
    a learning curve's sizes."""
    if key == "train_shared_train_messages" and value == 0:
        return "all"
    if isinstance(value, list):
        return ", ".join(f"{n:,}" for n in value) or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return common.plain(PLAN_LABELS.get(value, value)) if isinstance(value, str) else f"{value:g}"


def reset_form():
    """Every field back to its default, drawn now or not, and nothing kept for the next session. Each is set to its
    default: a field whose value is only removed keeps showing it in the browser, which sends it back."""
    for key, default in st.session_state.get("train_field_defaults", {}).items():
        st.session_state[key] = default
    st.session_state.pop("model_name", None)  # the model the sidebar shows
    st.session_state["train_form_start"] = {}  # a field drawn afresh starts from its default, not the old file
    try:
        FORM_FILE.unlink(missing_ok=True)
    except OSError:
        pass


if changed:  # kept for every session and tab: one opened later, or by someone else, could take them for the recipe
    st.caption("Not the defaults (the form keeps them for every session, in the runs folder): " + "; ".join(
        f"{DRAWN_LABELS[key]} {shown(value, key)} (default {shown(DRAWN[key][0], key)})"
        for key, value in changed.items()) + ".")
st.button("Reset the form to its defaults", type="tertiary", icon=":material/restart_alt:", on_click=reset_form,
          disabled=not keep, key="train_reset")

# ---------------------------------------------------------------------------- validate before anything starts
data_path, data_summary, data_error = common.data_source()
if data_error:
    errors.append(f"data: {data_error}")
# a bad model name or field shows its error under itself, and keeps Start disabled
blocked = bool(wrong_fields) or (neural and "error" in model_info)
configs = []
for mode in modes:
    settings = {**values, **per_mode[mode]} if mode != "baseline" else \
        {k: v for k, v in values.items() if k in BASELINE_SETTINGS}  # the seed, split, class weights and threshold
    settings = {k: v for k, v in settings.items() if v is not None}  # a wrong field (None) is named under itself
    try:
        cfg = TrainConfig(mode=mode, data=data_path, model=model_name.strip() if mode != "baseline" and
                          "error" not in model_info else common.default_model(), runs_dir=str(common.runs_dir()),
                          cache_dir=common.cache_dir(), **settings)
        if not blocked:
            configs.append(cfg)
    except (ValueError, TypeError) as exc:  # every field is valid alone: a combination is not (shared fields)
        errors.append(in_labels(str(exc)))
for message in dict.fromkeys(errors):
    st.error(common.plain(message))
if hidden := list(dict.fromkeys(LABELS[name] for name in wrong_fields[hidden_from:])):
    # its message is under the field, which a closed expander (and a reload, which closes it) puts out of sight
    st.error(f"Start training is disabled: {' and '.join(hidden)} under \"More settings\" "
             f"{'has a value' if len(hidden) == 1 else 'have values'} that cannot be used; open it to see why, or "
             "reset the form.")

# ---------------------------------------------------------------------------- how long
def features_cached(cfg) -> bool:
    """Whether this frozen run will read its encoder features from the cache instead of computing them."""
    from core.features import cache_key, effective_precision, feature_file, tokenizer_digest

    if not model_info.get("digest") or not data_summary:
        return False
    key = cache_key(model_info["name"], model_info["digest"], tokenizer_digest(model_info["path"]), cfg.max_length,
                    cfg.pooling, effective_precision(cfg.precision), data_summary["fingerprint"])
    return feature_file(cfg.cache_dir, key).is_file()


curve_configs = []  # a learning curve's runs, trained before those above
if data_summary and not errors and not blocked:
    n_messages = data_summary["rows"]
    sizes = split_sizes(n_messages, configs[0].val_fraction, configs[0].test_fraction)
    in_split = sizes["train"]
    n_train = min(in_split, configs[0].train_messages or in_split)
    left_out = sorted(n for n in curve if n >= n_train)  # a size not below the runs' own adds nothing to the curve
    curve = sorted(n for n in curve if n < n_train)
    curve_configs = [dataclasses.replace(cfg, train_messages=n) for n in curve for cfg in configs]
    lines, untimed = [], []
    past = common.runs()  # read once: each run's metrics file is parsed, and a learning curve asks for each size

    def timing_key(cfg) -> tuple:  # a timing is scaled to an epoch of this many messages
        return cfg.mode, model_name, cfg.max_length, cfg.batch_size, n_train

    for cfg in configs:
        line, needs_timing = jobs.describe_estimate(
            cfg, common.MODE_LABELS[cfg.mode], past, model_info.get("name") if cfg.mode != "baseline" else None,
            n_train, n_messages, cfg.mode == "frozen" and features_cached(cfg),
            st.session_state.get("train_measured", {}).get(timing_key(cfg)), sizes["validation"])
        lines.append(line)
        if needs_timing:
            untimed.append(cfg.mode)
    st.caption((f"{n_train:,} of the {in_split:,} training messages. " if n_train < in_split else
                f"{n_train:,} training messages. ") + " · ".join(lines))
    if curve:  # each size's runs, after any encoding the first frozen run does (counted in the line above)
        seconds, untimed_curve = 0.0, []
        for cfg in curve_configs:
            found = jobs.estimate_seconds(cfg, past, model_info.get("name") if cfg.mode != "baseline" else
                                          None, cfg.train_messages, sizes["validation"],
                                          st.session_state.get("train_measured", {}).get(timing_key(cfg)))
            seconds += found or 0.0
            if found is None and cfg.mode not in untimed_curve:
                untimed_curve.append(cfg.mode)
        if "finetune" in untimed_curve:  # timed by the button below, as the run on them all is
            took = "not all of them timed on this machine yet"
        else:  # a frozen head's epochs and a baseline's fit take seconds
            parts = [f"about {jobs.format_seconds(seconds)} in all"] if seconds or not untimed_curve else []
            if untimed_curve:
                parts.append(f"seconds for each {' and '.join(common.SHORT_LABELS[m] for m in untimed_curve)} run")
            took = " and ".join(parts)
        st.caption(f"Learning curve first: {len(curve_configs)} more run{'s' * (len(curve_configs) > 1)} on "
                   f"{shown(curve)} training messages, {took}." + (f" Left out: {shown(left_out)}, not fewer than "
                                                                    f"the {n_train:,} above." if left_out else ""))
    elif left_out:
        st.caption(f"Learning curve: {shown(left_out)} left out, not fewer than the {n_train:,} training messages "
                   "above.")
    for cfg in configs:  # a small sample's epochs, with min steps per epoch lowered, can be too few steps to learn
        if cfg.mode != "finetune":
            continue
        if (few := few_steps_warning(steps_per_epoch(cfg, n_train) * cfg.epochs, cfg.epochs)):
            st.warning(f"{common.MODE_LABELS['finetune']}: {in_labels(few)}.")  # the form's name for min_epoch_steps
        if passes := [f"{n:,} messages {k} times" for n in [*curve, n_train] if (k := passes_per_epoch(cfg, n)) > 1]:
            listed = passes[0] if len(passes) == 1 else f"{', '.join(passes[:-1])} and {passes[-1]}"
            st.caption(f"{common.MODE_LABELS['finetune']}: an epoch goes over {listed}, so that it makes at least "
                       f"{cfg.min_epoch_steps} optimisation steps (Min steps per epoch).")
        steps = {n: steps_per_epoch(cfg, n) * cfg.epochs for n in curve}
        if (few := few_steps_warning(list(steps.values()), cfg.epochs)):
            st.warning(f"{common.MODE_LABELS['finetune']} on the learning curve's "
                       f"{shown([n for n, k in steps.items() if k < FEW_FINETUNE_STEPS])} training messages: "
                       f"{in_labels(few)}.")
    if untimed and st.button("Time a few steps on this machine", disabled=busy is not None,
                             help="Loads the model and times 3 training steps (a few seconds)."):
        with st.spinner("Timing…"):
            measured = st.session_state.setdefault("train_measured", {})
            for cfg in configs:
                if cfg.mode in untimed:
                    measured[timing_key(cfg)] = jobs.measure_epoch_seconds(
                        model_name.strip(), cfg.mode, cfg.max_length, cfg.batch_size, n_train, n_messages)
        st.rerun()

# ---------------------------------------------------------------------------- launch
if busy:
    st.info("A training job is running (above). Only one job runs at a time; this form is ready for the next one.")
if st.button("Start training", type="primary", disabled=bool(errors) or blocked or busy is not None,
             key="train_launch"):
    try:
        with st.spinner("Starting the training process…"):
            jobs.launch(curve_configs + configs)
        st.session_state.pop(common.REFUSED_START, None)
        st.rerun()
    except jobs.JobBusy as exc:  # names the running job; the page redraws as it appears, so the message is kept
        common.note_refused("Your plan", exc)
        st.rerun()
    except jobs.JobError as exc:
        st.error(common.plain(exc))
