"""Command line: python -m core {train,finish,resume,predict,runs,evaluate,export} ...

    python -m core train --mode frozen --data ../shared/data/SMSSpamCollection   # last stdout line: run folder
    python -m core finish --run checkpoints/<run>                                # end it, keep its best weights
    python -m core resume --run checkpoints/<run>                                # killed? train on from its state
    python -m core predict --run checkpoints/<run> "WIN a free phone now!"       # one JSON line per text
    python -m core runs                                                          # table of runs
    python -m core evaluate --run checkpoints/<run> --data my_messages.csv       # metrics on another file
    python -m core export --run checkpoints/<run> --out run.zip                  # loads without this project

Bad input exits with status 2 and one line on stderr, never a traceback (--debug shows it).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import logging
import os
import sys
import types
import typing

from tqdm.contrib.logging import logging_redirect_tqdm

from .config import BASELINE_SETTINGS, TrainConfig

log = logging.getLogger("core")

# the app's settings from the environment, read here too as defaults (a flag or a --config entry wins), so that
# `core runs` lists, and `core train` writes, the runs the app shows
ENV_DEFAULTS = {"runs_dir": "SPAM_RUNS_DIR", "model": "SPAM_MODEL", "cache_dir": "SPAM_CACHE_DIR"}


def _env_defaults() -> dict:
    return {name: os.environ[var] for name, var in ENV_DEFAULTS.items() if os.environ.get(var)}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; the field's help is the flag's help."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # "int | None" -> int
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        # a None default depends on the mode, and the field's help already says how
        default = "" if f.default is None else f" (default: {f.default})"
        if f.name in ENV_DEFAULTS:
            default = f" (default: ${ENV_DEFAULTS[f.name]}, else {f.default})"
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=argparse.SUPPRESS,
                            choices=f.metadata.get("choices"), help=f.metadata["help"].replace("%", "%%") + default)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) like every other bad input; --help shows usage."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    runs_dir = dict(default=_env_defaults().get("runs_dir", TrainConfig.runs_dir),
                    help="folder holding the runs (default: $SPAM_RUNS_DIR, else checkpoints)")
    parser = _Parser(prog="python -m core", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="log everything and show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model; prints the run folder last (with --config, each run's "
                           "folder as that run ends)")
    train.add_argument("--config", help="JSON file with one config object, or a list of them to train one after "
                       "the other (flags given here override every entry)")
    _add_config_flags(train)

    finish = sub.add_parser("finish", help="end a run and keep its best weights: a running one stops at its next "
                            "step; one that stopped before its end (killed, crashed, Ctrl-C) has its last "
                            "checkpoint tested, and completes. Prints the run folder last")
    finish.add_argument("--run", required=True, help="run folder or run id")
    finish.add_argument("--runs-dir", **runs_dir)
    finish.add_argument("--take-over", action="store_true", help=TAKE_OVER_HELP)

    resume = sub.add_parser("resume", help="go on training a run that stopped before its end (killed, crashed, "
                            "Ctrl-C, SIGTERM) from its last saved training state, to the end it was set for. Prints "
                            "the run folder last")
    resume.add_argument("--run", required=True, help="run folder or run id")
    resume.add_argument("--runs-dir", **runs_dir)
    resume.add_argument("--take-over", action="store_true", help=TAKE_OVER_HELP)

    predict = sub.add_parser("predict", help="spam probability of messages (arguments or stdin, one per line)")
    predict.add_argument("--run", required=True, help="run folder or run id")
    predict.add_argument("--runs-dir", **runs_dir)
    predict.add_argument("texts", nargs="*", help="messages; read from stdin, one per line, when none are given")

    runs = sub.add_parser("runs", help="list runs with mode, model, status and headline metrics")
    runs.add_argument("--runs-dir", **runs_dir)
    runs.add_argument("--json", action="store_true", help="one JSON object per run")

    evaluate = sub.add_parser("evaluate", help="evaluate a run on another labelled file")
    evaluate.add_argument("--run", required=True, help="run folder or run id")
    evaluate.add_argument("--runs-dir", **runs_dir)
    evaluate.add_argument("--data", required=True, help="labelled file (UCI or CSV/TSV with a header)")

    export = sub.add_parser("export", help="write a run as a zip that loads with plain transformers / scikit-learn")
    export.add_argument("--run", required=True, help="run folder or run id")
    export.add_argument("--runs-dir", **runs_dir)
    export.add_argument("--out", help="zip file to write, or a folder to write <run id>.zip into (default: <run id>.zip "
                        "in the current folder)")
    parser.commands = sub.choices  # each command's parser, for main's errors
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, which points to its own --help, with a close flag if there is one
        command = parser.commands[args.command]
        close = difflib.get_close_matches(unknown[0].split("=")[0], list(command._option_string_actions), n=1)
        command.error(f"unrecognized arguments: {' '.join(unknown)}"
                      + (f"; did you mean {close[0]}?" if close and unknown[0].startswith("-") else ""))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _log_above_bars():
            return {"train": _train, "finish": _finish, "resume": _resume, "predict": _predict, "runs": _runs,
                    "evaluate": _evaluate, "export": _export}[args.command](args)
    except BrokenPipeError:  # `core runs | head`: the reader has gone, which is no error of the user's input
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 1
    except (ValueError, OSError) as exc:  # user errors: one clear line, no traceback
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _log_above_bars():
    """Log lines above a terminal's progress bar, not onto its line (a Ctrl-C's warnings did). Only where logging
    writes to the console: elsewhere (a test capturing logs) redirecting would add a console handler."""
    console = any(type(h) is logging.StreamHandler and h.stream in (sys.stdout, sys.stderr)
                  for h in logging.getLogger().handlers)
    return logging_redirect_tqdm() if console else contextlib.nullcontext()


def _quiet_libraries(args) -> None:
    """Called once a command is about to load models, not before: importing transformers takes over a second, which
    a refused setting or an unknown run should not wait for."""
    if args.debug:
        return
    import transformers
    transformers.logging.set_verbosity_error()  # "newly initialized classifier" is expected, not news
    transformers.logging.disable_progress_bar()  # weight-loading bars would drown the training bar
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # a line per file of each saved training state


def _train(args) -> int:
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    entries = [{}]
    if args.config:
        if not os.path.isfile(args.config):
            raise ValueError(f"--config: no such file {args.config}")
        with open(args.config, encoding="utf-8") as f:
            try:
                loaded = json.load(f)
            except ValueError as exc:
                raise ValueError(f"{args.config}: not valid JSON ({exc})") from None
        entries = loaded if isinstance(loaded, list) else [loaded]
        if not entries or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"{args.config}: expected a config object or a non-empty list of them")
        known = [f.name for f in dataclasses.fields(TrainConfig)]
        for entry in entries:  # from_dict drops unknown keys: a misspelt one would silently train the default
            for key in sorted(entry.keys() - set(known)):
                close = difflib.get_close_matches(key, known, n=1)
                raise ValueError(f"{args.config}: unknown setting {key!r}"
                                 + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"))
    # every hyperparameter is validated here, and every entry's data before the first trains (train_sequence)
    configs = []
    for number, entry in enumerate(entries, start=1):
        try:
            configs.append(TrainConfig.from_dict({**_env_defaults(), **entry, **flags}))
        except ValueError as exc:  # in a plan, say which entry
            message = _as_typed(str(exc), flags)
            raise ValueError(f"{args.config}, entry {number} of {len(entries)}: {message}" if len(entries) > 1 else
                             message) from None
    if all(cfg.mode == "baseline" for cfg in configs) and (ignored := sorted(flags.keys() - BASELINE_SETTINGS)):
        log.warning("the baseline ignores %s: TF-IDF + logistic regression is fitted in one go, with no model, "
                    "epochs or learning rate", ", ".join("--" + name.replace("_", "-") for name in ignored))
    from .runs import load_run  # torch and friends load only once the settings are known to be good
    _quiet_libraries(args)
    from .modeling import ModelError
    from .train import train_sequence

    status = 0
    main_process = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, one process reports
    try:
        for run_dir in train_sequence(configs):
            run = load_run(run_dir)
            status = status or (0 if run.status == "completed" else 1)
            if not main_process:  # two processes printing at once interleave their lines
                continue
            _log_outcome(run)
            _print_lasting(run_dir)
    except ModelError as exc:  # a max length over the model's, known once it is loaded: named as typed too
        raise ModelError(_as_typed(str(exc), flags)) from None
    return status


def _as_typed(message: str, flags: dict) -> str:
    """"batch_size: expected …" as "--batch-size: expected …" when the value came from that flag."""
    field = message.split(":", 1)[0]
    return "--" + field.replace("_", "-") + message[len(field):] if field in flags else message


def _log_outcome(run) -> None:
    """One line, the same after train, finish and resume: how the run ended, whether it trained to its end, and its
    test scores."""
    from .runs import resumed_note, stopped_note
    if not run.metrics:
        log.info("run %s ended: %s", run.id, run.status)
        return
    t, notes = run.metrics["test"], [resumed_note(run.metrics["resumed"])] if run.metrics.get("resumed") else []
    if run.metrics.get("stopped"):
        notes.append(stopped_note(run.metrics["stopped"]))
    log.info("%s %s%s: accuracy %.4f precision %.4f recall %.4f f1 %.4f auroc %.4f", run.mode, run.status,
             f" ({'; '.join(notes)})" if notes else "", t["accuracy"], t["precision"], t["recall"], t["f1"],
             t["auroc"] or float("nan"))


def _print_lasting(line) -> None:
    """print(), but a reader that has gone (`core train --config plan.json | head -1`) does not stop the plan's
    other runs from training: the rest of the output goes nowhere."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


TAKE_OVER_HELP = ("an interrupted run whose status names another machine: it trains there no more (a container "
                  "recreated under a new host name, say), so go on here; two machines training one run would "
                  "overwrite each other's checkpoints")


def _taken_over(args, run_dir) -> None:
    """--take-over: make an interrupted run that names another machine this one's (said on stderr)."""
    from .runs import take_over, trained_elsewhere

    if args.take_over and trained_elsewhere(run_dir):
        print(f"took {run_dir.name} over from {take_over(run_dir)}", file=sys.stderr)


def _finish(args) -> int:
    from .runs import RunError, finishable, read_status, request_finish, resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    _taken_over(args, run_dir)
    status = read_status(run_dir)
    if status.get("status") == "running" and status.get("stopped"):  # a `core finish` is testing it right now
        raise RunError(f"{run_dir.name} is being finished from its saved weights already")
    if status.get("status") == "running":  # the training process does the rest
        request_finish(run_dir)
        print(f"asked {run_dir.name} to finish: it stops at its next step, then tests and saves its best weights",
              file=sys.stderr)
        print(run_dir)  # last, as every other way this command ends
        return 0
    finishable(run_dir)  # a run that cannot be finished is refused before torch loads
    from .runs import load_run
    _quiet_libraries(args)
    from .train import finish_stopped

    _log_outcome(load_run(finish_stopped(run_dir)))
    print(run_dir, flush=True)
    return 0


def _resume(args) -> int:
    from .runs import resolve_run, resumable

    run_dir = resolve_run(args.run, args.runs_dir)
    _taken_over(args, run_dir)
    _, state, _ = resumable(run_dir)  # a run that cannot be resumed is refused before torch loads
    log.info("%s: going on from step %s", run_dir.name, state["step"])
    from .runs import load_run
    _quiet_libraries(args)
    from .train import resume_stopped

    run = load_run(resume_stopped(run_dir))
    _log_outcome(run)
    print(run_dir, flush=True)
    return 0 if run.status == "completed" else 1


def _predict(args) -> int:
    from .runs import resolve_run, saved_run_config

    run_dir = resolve_run(args.run, args.runs_dir)  # an unknown run is refused before torch loads
    threshold = saved_run_config(run_dir).get("threshold", 0.5)  # and a broken one, before messages are typed
    if not args.texts and sys.stdin.isatty():  # else it would wait with no word of what for
        print("reading messages from the terminal, one per line; end with Ctrl-D", file=sys.stderr)
    if args.texts:
        given = [_as_text(text) for text in args.texts]
    else:  # as bytes: on a UTF-8 locale Python decodes stdin strictly, and a latin-1 line would end the command
        raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        # lines end at \n, \r\n or a bare \r, as in a data file; a UTF-8 byte-order mark is no part of the first
        given = [_as_text(line) for line in raw.removeprefix(b"\xef\xbb\xbf").splitlines()]
    texts = [text for text in given if text.strip()]  # a blank message has nothing to score, however it came
    if not texts:
        raise ValueError("no messages given: pass them as arguments or on stdin, one per line")
    if len(texts) < len(given):  # a script pairing output lines with input lines by position would be off
        print(f"skipped {len(given) - len(texts)} blank message(s): {len(texts)} line(s) of output, each with its "
              "text", file=sys.stderr)
    _quiet_libraries(args)
    from .predict import Predictor
    predictor = Predictor.load(run_dir)
    for text, p in zip(texts, predictor.predict(texts)):
        # the verdict at the run's own threshold, as the app gives it: a script need not look the threshold up
        # every digit: rounded, 0.4999997 would print as 0.5 beside the verdict "ham"
        print(json.dumps({"text": text, "spam_probability": float(p),
                          "verdict": "spam" if p >= threshold else "ham"}, ensure_ascii=False))
    return 0


def _as_text(given: str | bytes) -> str:
    """A message as a data file is read: UTF-8, else latin-1. Python passes an argument's bytes that are not UTF-8 (a
    latin-1 "é") on as lone surrogates, which the tokenizer refuses with a TypeError; stdin's lines come as bytes."""
    try:
        raw = given if isinstance(given, bytes) else given.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte stands behind
        return given.encode("utf-8", "replace").decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _runs(args) -> int:
    from .runs import list_runs, resumed_note, stopped_note, trained_messages, training_subset

    if not os.path.isdir(args.runs_dir):  # a mistyped folder is not an empty one
        raise ValueError(f"no such folder: {os.path.abspath(args.runs_dir)} (--runs-dir or $SPAM_RUNS_DIR names it)")
    runs = list_runs(args.runs_dir)
    if not runs:
        print(f"no runs in {os.path.abspath(args.runs_dir)}", file=sys.stderr)
        return 0
    if not args.json:
        print(f"{'run':40} {'mode':9} {'status':11} {'acc':>6} {'f1':>6} {'auroc':>6}  model")
    for run in runs:
        t = (run.metrics or {}).get("test", {})
        if args.json:
            # "stopped" and "resumed" as metrics.json has them: whether a run trained to its end, and how
            print(json.dumps({"id": run.id, "path": str(run.path), "mode": run.mode, "model": run.model,
                              "status": run.status, "error": run.error, "test": t or None,
                              "train_messages": trained_messages(run.config),
                              **{k: (run.metrics or {}).get(k) for k in ("stopped", "resumed")}}))
        else:
            num = lambda k: f"{t[k]:.4f}" if t.get(k) is not None else "     -"
            print(f"{run.id:40} {run.mode or '?':9} {run.status:11} {num('accuracy'):>6} {num('f1'):>6} "
                  f"{num('auroc'):>6}  {run.model or '?'}")
            if run.error:  # why a run failed or is broken, under it
                print(f"{'':40} {run.error}")
            if subset := training_subset(run.config):  # its numbers are not comparable with a run on them all
                print(f"{'':40} trained on {subset[0]:,} of the {subset[1]:,} training messages")
            if resumed := (run.metrics or {}).get("resumed"):
                print(f"{'':40} {resumed_note(resumed)}")
            if not run.error and (stopped := (run.metrics or {}).get("stopped")):
                print(f"{'':40} {stopped_note(stopped)}")
    return 0


def _evaluate(args) -> int:
    from .runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)  # before torch loads, as for predict
    _quiet_libraries(args)
    from .evaluate import evaluate_run
    result = evaluate_run(run_dir, args.data)
    if "not_saved" in result:  # printed below all the same
        print(f"warning: {result['not_saved']}", file=sys.stderr)
    # what reading the file dropped and de-duplicated, as `train` tells it: "rows" alone hides it
    read = {k: result[k] for k in ("rows_read", "dropped_empty_text", "dropped_unknown_label", "dropped_unparseable",
                                   "duplicates_removed", "label_conflicts") if k in result}
    print(json.dumps({"name": result["name"], **read, "rows": len(result["predictions"]),
                      "seen_in_training": result["seen_in_training"],
                      **result["metrics"]}))  # ci95: the 95 % bootstrap intervals, which a small file needs most
    return 0


def _export(args) -> int:
    from .runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)  # before torch loads, as for predict
    _quiet_libraries(args)
    from .export import export_run
    out = args.out or f"{run_dir.name}.zip"
    if os.path.isdir(out):  # --out some/folder: the zip goes into it, named as by default
        out = os.path.join(out, f"{run_dir.name}.zip")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):  # said plainly, not as the temp file's errno
        raise ValueError(f"--out: no folder {os.path.dirname(os.path.abspath(out))} to write {os.path.basename(out)} "
                         "into")
    partial = out + ".part"  # a failed export leaves no zip that looks complete
    try:
        export_run(run_dir, partial)
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    print(os.path.abspath(out))
    return 0
