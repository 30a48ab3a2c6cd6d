"""core.jobs: one detached training process at a time, followed through history.jsonl, cancellable."""
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import ctrl_c_at_evaluations
from core import jobs
from core.config import TrainConfig, validations_planned
from core.runs import RunError, list_runs, load_run, read_history, running_job


def _cfg(tiny_bert, data, tmp_path, **kw):
    return TrainConfig(model=tiny_bert, data=str(data), runs_dir=str(tmp_path / "runs"),
                       cache_dir=str(tmp_path / "cache"), max_length=32, **kw)


def _wait(predicate, timeout=120, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def test_launch_refuses_a_second_job_shows_progress_and_cancels(tiny_bert, sms_file, tmp_path):
    runs = tmp_path / "runs"
    # long enough to still be running while we look at it: hundreds of tiny steps
    job = jobs.launch([_cfg(tiny_bert, sms_file, tmp_path, mode="finetune", epochs=300, batch_size=8)])
    assert job.modes == ["finetune"] and job.log.is_file()
    progress = _wait(lambda: (p := jobs.current_job(runs)) and p.eta_seconds is not None and p)
    assert progress.run_id == running_job(runs)
    assert progress.phase == "training" and 0 < progress.fraction < 1 and progress.total_steps > progress.step
    assert progress.eta_seconds > 0

    with pytest.raises(jobs.JobBusy, match=progress.run_id):
        jobs.launch([_cfg(tiny_bert, sms_file, tmp_path, mode="baseline")])

    assert jobs.cancel(runs) == progress.run_id
    _wait(lambda: running_job(runs) is None)
    run = load_run(runs / progress.run_id)
    assert run.status == "cancelled"
    assert [r.id for r in list_runs(runs)] == [progress.run_id]  # the refused launch created nothing
    assert jobs.current_job(runs) is None
    with pytest.raises(jobs.JobError, match="no training job"):
        jobs.cancel(runs)


def test_two_sessions_launching_at_once_start_exactly_one_job(tiny_bert, sms_file, tmp_path):
    runs = tmp_path / "runs"
    cfg = _cfg(tiny_bert, sms_file, tmp_path, mode="finetune", epochs=300, batch_size=8)
    results, barrier = [], threading.Barrier(2)

    def press_train():
        barrier.wait()
        try:
            results.append(jobs.launch([cfg]))
        except jobs.JobBusy as exc:
            results.append(exc)

    threads = [threading.Thread(target=press_train) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [r for r in results if isinstance(r, jobs.Job)]
    refused = [r for r in results if isinstance(r, jobs.JobBusy)]
    assert len(started) == 1 and len(refused) == 1
    run_id = _wait(lambda: (holder := running_job(runs)) != "starting" and holder)
    assert str(refused[0]).startswith((f"training job {run_id} is running;",  # the refusal names the job
                                       "a training job is still loading its data and model;"))  # or says it starts
    jobs.cancel(runs)
    _wait(lambda: running_job(runs) is None)
    assert [r.status for r in list_runs(runs)] == ["cancelled"]


def test_a_plan_trains_in_order_and_progress_follows_the_real_history(tiny_bert, sms_file, tmp_path):
    runs = tmp_path / "runs"
    plan = [_cfg(tiny_bert, sms_file, tmp_path, mode="baseline"),
            _cfg(tiny_bert, sms_file, tmp_path, mode="frozen", epochs=3),
            _cfg(tiny_bert, sms_file, tmp_path, mode="finetune", epochs=1)]
    job = jobs.launch(plan)
    assert job.modes == ["baseline", "frozen", "finetune"]
    _wait(lambda: running_job(runs) is None and len(list_runs(runs)) == 3)
    import psutil
    _wait(lambda: not psutil.pid_exists(job.pid), timeout=10)  # reaped by the app, not left a zombie
    done = list_runs(runs)
    assert [r.mode for r in reversed(done)] == ["baseline", "frozen", "finetune"]
    assert all(r.usable for r in done), [(r.id, r.status, r.error) for r in done]

    # replay a finished run's history: the fraction only grows and ends at 1
    events = read_history(load_run(done[0].path).path)
    fractions = [jobs.progress_from_history(events[:i], now=events[i - 1]["time"]).fraction
                 for i in range(1, len(events) + 1)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    curves = jobs.loss_curves(events)  # the fine-tune's: a point per validation, losses by epoch
    evals = [e for e in events if e["event"] == "eval"]
    assert [epoch for epoch, _ in curves["validation"]] == [e["epoch"] for e in evals] and len(evals) > 1
    assert curves["train"] and all(loss > 0 for _, loss in curves["train"])
    # validating is timed apart from training (a small sample's estimate needs it), and the form counts as many
    # validations as the run made
    start, config, metrics = next(e for e in events if e["event"] == "start"), done[0].config, done[0].metrics
    n_validation = config["data_info"]["splits"]["validation"]["rows"]
    assert validations_planned(start["steps_per_epoch"], start["epochs"], config["evals_per_epoch"]) == len(evals)
    assert metrics["validation_seconds"] * metrics["validation_messages_per_second"] == pytest.approx(
        len(evals) * n_validation)
    assert 0 < metrics["validation_seconds"] < metrics["train_seconds"]
    assert jobs.loss_curves(read_history(done[2].path)) == {"train": [], "validation": []}  # the baseline has none

    # time per epoch for the form, from the finished runs' own throughput on this machine
    seconds, sources = jobs.estimate_from_runs(done, "finetune", done[0].model, n_train=1000)
    assert sources == [done[0].id] and seconds == pytest.approx(1000 / done[0].metrics["train_messages_per_second"])
    assert jobs.estimate_from_runs(done, "finetune", "another-model", n_train=1000) is None


def test_a_plan_counts_its_runs_itself_so_deleting_a_finished_one_does_not_renumber_the_next(tiny_bert, sms_file,
                                                                                             tmp_path):
    # the place in the plan was counted from the run folders made since the job started: with the plan's completed
    # baseline deleted mid-plan, the fine-tune read "run 1 of 2"
    runs = tmp_path / "runs"
    jobs.launch([_cfg(tiny_bert, sms_file, tmp_path, mode="baseline"),
                  _cfg(tiny_bert, sms_file, tmp_path, mode="finetune", epochs=300, batch_size=8)])
    progress = _wait(lambda: (p := jobs.current_job(runs)) and p.mode == "finetune" and p.phase == "training" and p)
    assert (progress.index, progress.count) == (2, 2)
    [baseline] = [r for r in list_runs(runs) if r.mode == "baseline"]
    jobs.delete(runs, baseline.id)
    progress = jobs.current_job(runs)
    assert (progress.mode, progress.index, progress.count) == ("finetune", 2, 2)
    assert progress.describe().startswith("finetune (run 2 of 2, training")
    jobs.cancel(runs)
    _wait(lambda: running_job(runs) is None)


def test_between_two_runs_of_a_plan_the_next_one_is_shown_loading(tmp_path):
    """The lock names the plan's first run until the second starts: with the first completed, the job is loading
    the second, run 2 of 2, not still on the first (nor past the end of the plan)."""
    from core.runs import set_lock_holder, set_status, training_lock, write_json_atomic
    first = tmp_path / "20260101-000000-baseline-aaaa"
    first.mkdir()
    write_json_atomic(first / "config.json", {"mode": "baseline", "created": 1.0})
    set_status(first, "completed")
    with training_lock(tmp_path) as lock:
        set_lock_holder(lock, first.name, (1, 2))
        progress = jobs.current_job(tmp_path)
        assert (progress.phase, progress.index, progress.count) == ("preparing", 2, 2)
        set_lock_holder(lock, first.name, (2, 2))  # the last run of the plan, ended: there is no run 3
        assert (jobs.current_job(tmp_path).index, jobs.current_job(tmp_path).count) == (2, 2)


def test_the_estimate_is_the_median_of_recent_runs_so_one_slow_run_does_not_set_it(monkeypatch):
    from types import SimpleNamespace

    from core import features

    def run(i, rate, max_length=128, batch_size=32, steps=339, stopped=None):  # newest first, as list_runs gives them
        return SimpleNamespace(id=f"r{i}", usable=True, mode="finetune", model="m",
                               config={"max_length": max_length, "batch_size": batch_size},
                               metrics={"train_messages_per_second": rate, "steps": steps, "stopped": stopped})
    past = [run(1, 10.0), run(2, 40.0), run(3, 44.0), run(4, 1.0)]  # the newest ran on a busy CPU; r4 is too old
    seconds, sources = jobs.estimate_from_runs(past, "finetune", "m", n_train=4000, max_length=128)
    assert sources == ["r1", "r2", "r3"] and seconds == pytest.approx(4000 / 40.0)
    # a run on a GPU (a runs folder copied from another machine) is no rate for this CPU, nor the other way round
    gpu = run(0, 900.0)
    gpu.config["device"] = "cuda:0" if jobs._device_type() == "cpu" else "cpu"
    assert jobs.estimate_from_runs([gpu] + past, "finetune", "m", n_train=4000, max_length=128)[1] == sources
    gpu.config["device"] = jobs._device_type()
    assert jobs.estimate_from_runs([gpu] + past, "finetune", "m", n_train=4000, max_length=128)[1] == ["r0", "r1", "r2"]
    # a run finished a step in timed its slow first step, not a rate: left out
    asked = {"status": "asked", "after_step": 1, "total_steps": 339}
    assert jobs.estimate_from_runs([run(0, 0.5, steps=1, stopped=asked)] + past, "finetune", "m",
                                   n_train=4000)[1] == sources
    # a run on a sample of the training messages spent most of its time validating on the whole validation split:
    # its rate is no rate for a run on them all
    sample = run(0, 1.2)
    sample.config |= {"train_messages": 50, "val_fraction": 0.1, "test_fraction": 0.2,
                      "data_info": {"rows": 5160, "splits": {"train": {"rows": 50}}}}
    assert jobs.estimate_from_runs([sample] + past, "finetune", "m", n_train=4000)[1] == sources
    # one that timed its validations apart gives two rates, and a sample's epoch is mostly validation: 40 messages a
    # second training (200 of its 400 s), 20 validating
    timed = run(6, 20.0)
    timed.config |= sample.config
    timed.metrics |= {"train_seconds": 400.0, "validation_seconds": 200.0, "validation_messages_per_second": 20.0}
    seconds, used = jobs.estimate_from_runs([timed] + past, "finetune", "m", n_train=50, validating=(2, 500))
    assert used == ["r6"] and seconds == pytest.approx(50 / 40 + 2 * 500 / 20)  # before runs that timed them together
    cfg = TrainConfig(mode="finetune", epochs=2, max_length=128, min_epoch_steps=0)
    every = validations_planned(2, 2, cfg.evals_per_epoch) / 2  # 50 messages: 2 steps an epoch
    line, _ = jobs.describe_estimate(cfg, "Fine-tuned BERT", [timed], "m", n_train=50, n_messages=5000,
                                     n_validation=500)
    assert line.startswith(f"Fine-tuned BERT: about {jobs.format_seconds(2 * (50 / 40 + every * 500 / 20))} for 2")
    assert jobs.estimate_seconds(cfg, [timed], "m", 50, 500) == pytest.approx(2 * (50 / 40 + every * 500 / 20))
    assert jobs.estimate_seconds(cfg, [timed], "another-model", 50, 500) is None
    # by default an epoch goes over 50 messages 50 times (100 steps): 50 times the messages to train on, and the
    # validations of 100 steps an epoch
    passes = dataclasses.replace(cfg, min_epoch_steps=100)
    every_of_100 = validations_planned(100, 2, cfg.evals_per_epoch) / 2
    assert jobs.estimate_seconds(passes, [timed], "m", 50, 500) == pytest.approx(
        2 * (50 * 50 / 40 + every_of_100 * 500 / 20))
    # with no run, a fine-tune's few steps timed just now (for 320 messages: 10 steps) scale to 50 (2 steps)
    measured = {"epoch_seconds": 10.0, "n_train": 320, "validation_seconds_per_message": 0.01}
    assert jobs.estimate_seconds(cfg, [], "m", 50, 500, measured) == pytest.approx(2 * (10.0 * 2 / 10 + every * 5))
    # a run on all the messages is estimated from one of about as many, not from a small sample's
    whole = run(7, 30.0)
    whole.config |= {"data_info": {"splits": {"train": {"rows": 3612}}}}
    assert jobs.estimate_from_runs([timed, whole], "finetune", "m", 3612, validating=(4, 500))[1] == ["r7"]
    assert jobs.estimate_from_runs([timed, whole], "finetune", "m", 60, validating=(4, 500))[1] == ["r6"]
    line, _ = jobs.describe_estimate(cfg, "Fine-tuned BERT", past, "m", n_train=4000, n_messages=5000)
    assert line == "Fine-tuned BERT: about 3 min 20 s for 2 epochs (from the median of the last 3 runs on this machine)"
    # none at this length: the runs it comes from say theirs
    line, _ = jobs.describe_estimate(dataclasses.replace(cfg, max_length=64), "Fine-tuned BERT", past[:1], "m",
                                     n_train=4000, n_messages=5000)
    assert line == "Fine-tuned BERT: about 13 min 20 s for 2 epochs (from run r1, which used max length 128)"
    # another batch size: a run with it comes first, at the same length; without one, the line says so
    at_16 = [run(5, 8.0, batch_size=16)] + past
    assert jobs.estimate_from_runs(at_16, "finetune", "m", n_train=4000, max_length=128, batch_size=16)[1] == ["r5"]
    line, _ = jobs.describe_estimate(dataclasses.replace(cfg, batch_size=16), "Fine-tuned BERT", at_16, "m",
                                     n_train=4000, n_messages=5000)
    assert line == "Fine-tuned BERT: about 16 min 40 s for 2 epochs (from run r5 on this machine)"
    line, _ = jobs.describe_estimate(dataclasses.replace(cfg, batch_size=8), "Fine-tuned BERT", at_16, "m",
                                     n_train=4000, n_messages=5000)
    assert line == ("Fine-tuned BERT: about 13 min 20 s for 2 epochs (from the median of the last 3 runs, which used "
                    "batch size 16, 32)")
    # the arithmetic sets a fine-tune's step time too (bf16 92 s where fp32 took 132 s on an AMX CPU): a run in the
    # precision that will train comes first, and runs in another are named
    fp32, bf16 = run(8, 40.0), run(9, 20.0)
    fp32.config["precision"], bf16.config["precision"] = "fp32", "bf16"
    assert jobs.estimate_from_runs([bf16, fp32], "finetune", "m", 4000, precision="fp32")[1] == ["r8"]
    assert jobs.estimate_from_runs([bf16, fp32], "finetune", "m", 4000, precision="bf16")[1] == ["r9"]
    monkeypatch.setattr(features, "_bf16_native", lambda: False)  # bf16 asked for, fp32 trained
    line, _ = jobs.describe_estimate(cfg, "Fine-tuned BERT", [bf16], "m", n_train=4000, n_messages=5000)
    assert line == "Fine-tuned BERT: about 6 min 40 s for 2 epochs (from run r9, which used precision bf16)"
    # of two runs, the faster: the mean of a run and one 5 times slower beside another job was no time either took
    for pair in ([run(1, 40.0), run(2, 8.0)], [run(1, 8.0), run(2, 40.0)]):
        seconds, sources = jobs.estimate_from_runs(pair, "finetune", "m", n_train=4000)
        assert seconds == pytest.approx(4000 / 40.0) and sources == ["r1", "r2"]
    line, _ = jobs.describe_estimate(cfg, "Fine-tuned BERT", pair, "m", n_train=4000, n_messages=5000)
    assert line == "Fine-tuned BERT: about 3 min 20 s for 2 epochs (from the faster of the last 2 runs on this machine)"
    # the frozen head's steps cost about the same at any batch size: a run at another one is named, one at this one
    # comes first
    def head(i, rate, batch_size):
        return SimpleNamespace(id=f"h{i}", usable=True, mode="frozen", model="m", config={"batch_size": batch_size},
                               metrics={"train_messages_per_second": rate})
    frozen = TrainConfig(mode="frozen", epochs=60, batch_size=8)
    line, _ = jobs.describe_estimate(frozen, "Frozen", [head(1, 8000.0, 32)], "m", n_train=4000, n_messages=5000,
                                     features_cached=True)
    assert line.startswith("Frozen: about 30 s for 60 epochs (from run h1, which used batch size 32)")
    line, _ = jobs.describe_estimate(frozen, "Frozen", [head(1, 8000.0, 32), head(2, 2000.0, 8)], "m", n_train=4000,
                                     n_messages=5000, features_cached=True)
    assert line.startswith("Frozen: about 2 min 00 s for 60 epochs (from run h2 on this machine)")
    # a fraction of a second (a baseline's fit on a small file) is said so, not "about 0 s"
    fast = [SimpleNamespace(id="b1", usable=True, mode="baseline", model="tfidf", config={},
                            metrics={"train_messages_per_second": 5000.0})]
    line, _ = jobs.describe_estimate(TrainConfig(mode="baseline"), "TF-IDF baseline", fast, "tfidf", n_train=300,
                                     n_messages=400)
    assert line == "TF-IDF baseline: under a second (from run b1 on this machine)"


def test_a_frozen_run_bar_gives_encoding_its_share_only_when_it_encodes(tiny_bert, sms_file, tmp_path):
    import core.train
    encoding, cached = (core.train.train(_cfg(tiny_bert, sms_file, tmp_path, mode="frozen", epochs=4))
                        for _ in range(2))  # the second reads the first one's features from the cache
    for run_dir, base in ((encoding, jobs.FEATURES_SHARE), (cached, 0.0)):
        events = read_history(run_dir)
        fractions = [jobs.progress_from_history(events[:i], now=events[i - 1]["time"]).fraction
                     for i in range(1, len(events) + 1)]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        ready = next(i for i, e in enumerate(events) if e["event"] == "features_ready")
        assert events[ready]["cached"] is (base == 0.0)
        assert fractions[ready] == base  # from the cache, the head's steps are the whole bar
        half = next(i for i, e in enumerate(events) if e["event"] == "train" and e["step"] >= e["total_steps"] / 2)
        share = events[half]["step"] / events[half]["total_steps"]
        assert fractions[half] == pytest.approx(base + (1 - base) * share)


@pytest.mark.parametrize("mode, key", [("finetune", "epoch_seconds"), ("frozen", "features_seconds")])
def test_timing_a_few_steps_scales_to_an_epoch(tiny_bert, mode, key, monkeypatch):
    ticks = iter(range(1000))  # a clock on which every timed step takes exactly 0.25 s; the steps themselves run
    monkeypatch.setattr(jobs.time, "perf_counter", lambda: next(ticks) * 0.25)
    measured = jobs.measure_epoch_seconds(tiny_bert, mode, max_length=32, batch_size=8, n_train=800, n_messages=1000)
    # finetune: 800 / 8 = 100 batches; frozen: every one of 1000 messages encoded in batches of 64 = 16 batches
    assert measured[key] == pytest.approx(0.25 * (100 if mode == "finetune" else 16))
    assert measured["model"] == tiny_bert


def test_a_job_that_cannot_start_says_why(tiny_bert, tmp_path):
    bad = tmp_path / "one-class.txt"
    bad.write_text("".join(f"ham\tmessage {i}\n" for i in range(40)))
    with pytest.raises(jobs.JobError, match="only one class"):
        jobs.launch([_cfg(tiny_bert, bad, tmp_path, mode="baseline")])
    assert running_job(tmp_path / "runs") is None
    assert "only one class" in jobs.log_tail(tmp_path / "runs")


def test_the_log_tail_keeps_the_last_state_of_each_progress_bar(tmp_path):
    """tqdm redraws a line with carriage returns: each redraw is not a line of its own, and a CRLF line ends whole."""
    log = tmp_path / "job.log"
    log.write_text("Downloading: 10%\rDownloading: 50%\rDownloading: 100%\nwarning: slow\r\nerror: boom\n")
    (tmp_path / "runs" / jobs.JOBS_DIR).mkdir(parents=True)
    (tmp_path / "runs" / jobs.JOBS_DIR / jobs.LAST_JOB).write_text(json.dumps({"log": str(log)}))
    assert jobs.log_tail(tmp_path / "runs") == "Downloading: 100%\nwarning: slow\nerror: boom"
    assert jobs.log_tail(tmp_path / "runs", 2) == "warning: slow\nerror: boom"


def test_format_seconds():
    assert [jobs.format_seconds(s) for s in (None, 4.4, 75, 3725)] == ["?", "4 s", "1 min 15 s", "1 h 02 min"]
    last = jobs.Progress("r", "finetune", "training", 299 / 300, 0.3, step=299, total_steps=300)  # "about 0 s" was odd
    assert last.describe() == "finetune (training), under a second of training left"


def test_the_encoding_rate_comes_from_a_whole_encoding_not_one_that_went_on_from_a_stopped_runs_rows(tmp_path):
    """A frozen run that went on from a stopped encoding's rows timed only the rest (the longest messages), but
    has every message in its features: its seconds per message are no rate."""
    from types import SimpleNamespace

    def run(name, first_done, seconds):  # newest first, as list_runs gives them
        path = tmp_path / name
        path.mkdir()
        events = [{"event": "features", "done": first_done, "total": 1000},
                  {"event": "features_ready", "cached": False, "seconds": seconds, "shape": [1000, 384]}]
        (path / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        return SimpleNamespace(id=name, path=path, usable=True, mode="frozen", model="m", config={"max_length": 128})
    went_on, whole = run("went-on", 700, 3.0), run("whole", 64, 10.0)
    assert jobs.encoding_rate([went_on, whole], "m", 128) == (0.01, "whole", 128)
    assert jobs.encoding_rate([went_on], "m", 128) is None


def test_while_encoding_the_time_left_is_the_encoding_s_not_the_run_s():
    events = [{"event": "features", "done": 0, "total": 1000, "time": 100.0},
              {"event": "features", "done": 250, "total": 1000, "time": 110.0}]
    progress = jobs.progress_from_history(events, now=110.0)
    assert progress.eta_seconds is None  # the head and the test come after: no honest ETA for the run yet
    assert progress.describe() == "frozen (features: encoding messages 250/1000, done in about 30 s)"
    events += [{"event": "features_ready", "cached": False, "time": 140.0},
               {"event": "start", "total_steps": 100, "time": 141.0}, {"event": "train", "step": 10, "time": 142.0}]
    training = jobs.progress_from_history(events, now=142.0)  # the bar counts the encoding too: ahead of the steps
    assert training.fraction > 0.1 and training.detail == "step 10/100 of the head, after encoding the messages"


def test_the_encoding_s_time_left_counts_tokens_since_the_short_messages_come_first():
    # 436 short messages took 10 s; the 500 left are longer: 15,552 of the 20,000 padded tokens are still to encode
    events = [{"event": "features", "done": 64, "total": 1000, "tokens": 448, "tokens_total": 20000, "time": 100.0},
              {"event": "features", "done": 500, "total": 1000, "tokens": 4448, "tokens_total": 20000, "time": 110.0}]
    progress = jobs.progress_from_history(events, now=110.0)
    assert progress.describe() == "frozen (features: encoding messages 500/1000, done in about 39 s)"  # not 11 s
    assert progress.fraction == pytest.approx(jobs.FEATURES_SHARE * 4448 / 20000)  # the bar moves with the work


def test_after_the_last_step_it_says_validating_and_testing_not_0_s_left():
    events = [{"event": "start", "total_steps": 100, "time": 0.0},
              {"event": "train", "step": 10, "time": 10.0}, {"event": "eval", "step": 50, "time": 55.0},
              {"event": "train", "step": 99, "time": 100.0}]
    assert jobs.progress_from_history(events, now=100.0).describe() == \
        "training (training: step 99/100), about 1 s of training left"  # the mode is set by current_job
    events.append({"event": "train", "step": 100, "time": 101.0})  # the final validation and the test run now
    progress = jobs.progress_from_history(events, now=120.0)
    assert progress.eta_seconds is None and progress.fraction == 1.0
    assert progress.describe() == "training (evaluating: step 100/100, the last validation, then the test)"
    # early stopping (patience) ends training before the last step: no time left is claimed for steps never taken
    events[-1:] = [{"event": "early_stop", "step": 99, "reason": "patience", "time": 101.0}]
    progress = jobs.progress_from_history(events, now=120.0)
    assert progress.eta_seconds is None
    assert progress.describe() == "training (evaluating: stopped early at step 99/100, now the test)"


def test_a_baseline_fit_is_shown_as_fitting_not_as_loading(tmp_path):
    from core.runs import EventLog, set_lock_holder, set_status, training_lock, write_json_atomic
    run = tmp_path / "20260101-000000-baseline-abcd"
    run.mkdir()
    write_json_atomic(run / "config.json", {"mode": "baseline", "created": 1.0})
    set_status(run, "running")
    EventLog(run / "history.jsonl").emit("data", rows=100)  # data loaded; the solver is fitting
    with training_lock(tmp_path) as lock:
        set_lock_holder(lock, run.name)
        progress = jobs.current_job(tmp_path)
    assert progress.describe() == "baseline (training: fitting TF-IDF + logistic regression, takes seconds)"


def test_finish_asks_only_the_run_the_page_showed(tmp_path):
    from core.runs import EventLog, set_lock_holder, set_status, training_lock, write_json_atomic
    shown, now = tmp_path / "20260101-000000-frozen-aaaa", tmp_path / "20260101-000100-finetune-bbbb"
    for run in (shown, now):
        run.mkdir()
        write_json_atomic(run / "config.json", {"mode": "finetune", "created": 1.0})
        set_status(run, "running")
    with training_lock(tmp_path) as lock:
        set_lock_holder(lock, now.name)  # the plan moved on to the next run since the page was drawn
        with pytest.raises(jobs.JobError, match="has already ended; the job is now training"):
            jobs.finish(tmp_path, shown.name)
        assert not (now / "finish").exists()
        EventLog(now / "history.jsonl").emit("start", total_steps=100)
        EventLog(now / "history.jsonl").emit("train", step=10, loss=0.5)
        assert jobs.current_job(tmp_path).phase == "training"
        assert jobs.finish(tmp_path, now.name) == now.name and (now / "finish").exists()
        # until the process reads the request, the page says it is finishing, not training on with an ETA
        progress = jobs.current_job(tmp_path)
        assert progress.phase == "finishing" and progress.eta_seconds is None and "asked to finish" in progress.describe()
        EventLog(now / "history.jsonl").emit("early_stop", step=11, reason="asked")  # read: now it tests
        assert jobs.current_job(tmp_path).describe() == "finetune (finishing: testing its best weights)"


def test_a_finish_job_completes_a_stopped_run_and_progress_shows_it_testing(tiny_bert, sms_file, tmp_path,
                                                                             monkeypatch):
    import core.train
    from core.runs import finishable

    def disk_trouble(*args):  # the run fails after training, as on a full disk
        raise OSError("No space left on device")
    monkeypatch.setattr(core.train, "_finish", disk_trouble)
    with pytest.raises(OSError):
        core.train.train(_cfg(tiny_bert, sms_file, tmp_path, mode="frozen", epochs=3))
    monkeypatch.undo()
    [stopped] = list_runs(tmp_path / "runs")
    assert stopped.status == "failed"

    job = jobs.launch_finish(tmp_path / "runs", stopped.id)
    assert job.modes == ["frozen"] and job.plan is None
    _wait(lambda: running_job(tmp_path / "runs") is None and load_run(stopped.path).status == "completed")
    run = load_run(stopped.path)
    assert run.usable and run.metrics["stopped"]["reason"] == "No space left on device"
    with pytest.raises(jobs.JobError, match="already completed"):
        jobs.launch_finish(tmp_path / "runs", stopped.id)
    with pytest.raises(ValueError):
        finishable(stopped.path)

    events = read_history(run.path)
    resumed = next(i for i, e in enumerate(events) if e["event"] == "finish_saved")
    testing = jobs.progress_from_history(events[:resumed + 1])
    assert testing.phase == "testing saved weights" and testing.eta_seconds is None
    assert testing.fraction == 1.0  # it failed after training to its end: the bar stays full while it tests
    assert jobs.progress_from_history(events).fraction == 1.0


def _stopped_frozen_run(tiny_bert, sms_file, tmp_path, monkeypatch, evaluations: int, epochs: int):
    """A frozen run stopped by Ctrl-C at its `evaluations`-th validation, with a training state saved at each."""
    import core.train

    ctrl_c_at_evaluations(monkeypatch, evaluations)
    with pytest.raises(KeyboardInterrupt):
        core.train.train(_cfg(tiny_bert, sms_file, tmp_path, mode="frozen", epochs=epochs, save_state_every=0))
    monkeypatch.undo()
    [stopped] = list_runs(tmp_path / "runs")
    return stopped


def test_a_resume_job_goes_on_from_the_saved_state_and_progress_counts_from_there(tiny_bert, sms_file, tmp_path,
                                                                                    monkeypatch):
    from core.runs import saved_state

    stopped = _stopped_frozen_run(tiny_bert, sms_file, tmp_path, monkeypatch, evaluations=5, epochs=8)
    step = saved_state(stopped.path)["step"]

    job = jobs.launch_resume(tmp_path / "runs", stopped.id)
    assert job.modes == ["frozen"] and job.plan is None and job.log.name.startswith("resume-")
    _wait(lambda: running_job(tmp_path / "runs") is None and load_run(stopped.path).status == "completed")
    assert load_run(stopped.path).metrics["resumed"] == [{"from_step": step, "after": "cancelled"}]
    with pytest.raises(jobs.JobError, match="cannot be resumed: it has already completed"):
        jobs.launch_resume(tmp_path / "runs", stopped.id)

    events = read_history(stopped.path)
    at = next(i for i, e in enumerate(events) if e["event"] == "resumed")
    loading = jobs.progress_from_history(events[:at + 1])
    assert loading.phase == "preparing" and loading.detail == f"loading data and model to go on from step {step}"
    start = next(i for i, e in enumerate(events) if e["event"] == "start" and i > at)
    assert events[start]["resumed_from"] == step
    total = events[start]["total_steps"]
    # the bar stays where the run had got to (a frozen run's encoding, then its share of the head's steps)
    assert loading.fraction == pytest.approx(jobs.FEATURES_SHARE + (1 - jobs.FEATURES_SHARE) * step / total)
    # and never falls back while the resumed run reloads its features (from the cache) and goes on to its end
    going_on = [jobs.progress_from_history(events[:i], now=events[i - 1]["time"]).fraction
                for i in range(at + 1, len(events) + 1)]
    assert going_on == sorted(going_on) and going_on[-1] == 1.0
    # the rate counts only steps trained since the resume, from its first logged step (which also sets up kernels),
    # and is given once a validation has come since, so it includes the time validating takes
    first = next(i for i, e in enumerate(events) if e["event"] == "train" and i > start)
    validated = next(i for i, e in enumerate(events) if e["event"] == "eval" and i > first)
    later = next(i for i, e in enumerate(events) if e["event"] == "train" and i > validated)
    for i in range(first, validated):
        assert jobs.progress_from_history(events[:i + 1], now=events[i]["time"]).eta_seconds is None
    going = jobs.progress_from_history(events[:later + 1], now=events[later]["time"])
    rate = (events[later]["time"] - events[first]["time"]) / (events[later]["step"] - events[first]["step"])
    assert going.step == events[later]["step"] and going.eta_seconds == pytest.approx(rate * (total - going.step))
    assert "of training left" in going.describe()  # the test and the save come after



def test_a_frozen_run_asked_to_finish_while_it_encodes_says_so(tmp_path):
    """Finish pressed while a frozen run encodes its messages: it is read only once the encoding ends, so the page
    says it is finishing and how, not that it encodes on as if nothing was asked."""
    from core.runs import EventLog, request_finish, set_lock_holder, set_status, training_lock, write_json_atomic
    run = tmp_path / "20260101-000000-frozen-aaaa"
    run.mkdir()
    write_json_atomic(run / "config.json", {"mode": "frozen", "created": 1.0})
    set_status(run, "running")
    EventLog(run / "history.jsonl").emit("features", done=64, total=1000)
    with training_lock(tmp_path) as lock:
        set_lock_holder(lock, run.name)
        assert jobs.current_job(tmp_path).phase == "features"
        request_finish(run)
        progress = jobs.current_job(tmp_path)
    assert (progress.phase, progress.eta_seconds) == ("finishing", None)
    assert progress.detail == "asked to finish: it ends its encoding, validates at its first step, then tests"


def test_while_a_stopped_run_is_tested_the_bar_stays_where_its_training_stopped():
    events = [{"event": "start", "total_steps": 100, "time": 0.0}, {"event": "train", "step": 40, "time": 9.0},
              {"event": "checkpoint", "step": 30, "time": 7.0}, {"event": "finish_saved", "step": 30, "time": 50.0}]
    testing = jobs.progress_from_history(events, now=51.0)
    assert (testing.phase, testing.fraction) == ("testing saved weights", 0.4)
    assert testing.detail == "the best weights it saved, from step 30"


@pytest.mark.parametrize("command", ["resume", "finish"])
def test_a_run_cannot_be_deleted_while_a_job_loads_to_resume_or_finish_it(tiny_bert, sms_file, tmp_path, monkeypatch,
                                                                          command):
    import core.train

    stopped = _stopped_frozen_run(tiny_bert, sms_file, tmp_path, monkeypatch, evaluations=3, epochs=6)
    # the job loads its data and model for seconds before it trains: hold it there
    loading, go_on, load = threading.Event(), threading.Event(), core.train._stopped_run_inputs
    monkeypatch.setattr(core.train, "_stopped_run_inputs",
                        lambda *a: (loading.set(), go_on.wait(60), load(*a))[-1])
    done = []
    job = threading.Thread(target=lambda: done.append(
        (core.train.resume_stopped if command == "resume" else core.train.finish_stopped)(stopped.path)))
    job.start()
    try:
        assert loading.wait(60)
        assert load_run(stopped.path).status != "running"  # not yet: only the lock names it
        assert running_job(tmp_path / "runs") == stopped.id
        loading = jobs.current_job(tmp_path / "runs")  # not the stopped run's old progress
        assert (loading.phase, loading.run_id, loading.detail) == ("preparing", None, "loading data and model")
        with pytest.raises(RunError, match="in use by the running job"):
            jobs.delete(tmp_path / "runs", stopped.id)
        assert stopped.path.is_dir()
    finally:
        go_on.set()
        job.join(120)
    assert done and load_run(stopped.path).status == "completed"
    jobs.delete(tmp_path / "runs", stopped.id)  # with no job on it, it goes
    assert not stopped.path.exists()


def test_the_time_left_waits_for_a_validation_or_a_tenth_of_the_run():
    start = {"event": "start", "total_steps": 100, "time": 0.0}
    steps = [{"event": "train", "step": k, "time": 10.0 + 2.0 * k} for k in range(1, 12)]  # 2 s a step, step 1 slow
    events = [start, *steps]
    # from the first logged step on, and not before 10 steps (a tenth of 100) have passed since it
    assert jobs.progress_from_history(events[:11], now=events[10]["time"]).eta_seconds is None  # step 10: 9 since
    assert jobs.progress_from_history(events, now=events[-1]["time"]).eta_seconds == pytest.approx(2.0 * (100 - 11))
    # a validation since the first logged step is enough on its own, and its time counts in the rate
    validated = [start, steps[0], steps[1], {"event": "eval", "step": 2, "time": 20.0},
                 {"event": "train", "step": 3, "time": 22.0}]
    going = jobs.progress_from_history(validated, now=22.0)
    assert going.eta_seconds == pytest.approx((22.0 - 12.0) / 2 * 97)
    assert going.describe().endswith("about 8 min 05 s of training left")


def test_the_time_left_counts_down_between_two_logged_steps():
    """Steps are logged every few seconds (minutes for a big model): between two, the time left goes down with
    the clock, not stays put until the next step is logged."""
    events = [{"event": "start", "total_steps": 100, "time": 0.0},
              *({"event": "train", "step": k, "time": 10.0 + 2.0 * k} for k in range(1, 21))]
    at_step = jobs.progress_from_history(events, now=events[-1]["time"]).eta_seconds
    assert at_step == pytest.approx(2.0 * 80)
    assert jobs.progress_from_history(events, now=events[-1]["time"] + 30).eta_seconds == pytest.approx(at_step - 30)
    assert jobs.progress_from_history(events, now=events[-1]["time"] + 999).eta_seconds == 0.0  # late: not negative


def test_a_job_started_elsewhere_is_not_given_the_apps_last_plan(tmp_path):
    # the app's last job (a plan of three) had ended; a CLI job then showed as "run 3 of 3" of that old plan
    import psutil

    from core.runs import training_lock
    (tmp_path / jobs.JOBS_DIR).mkdir()
    last = {"started": time.time() - 60, "modes": ["baseline", "frozen", "finetune"], "log": "x", "plan": None}
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (tmp_path / jobs.JOBS_DIR / jobs.LAST_JOB).write_text(json.dumps({**last, "pid": ended.pid, "pid_started": 1.0}))
    with training_lock(tmp_path):  # a job started by another process, not yet naming its run
        progress = jobs.current_job(tmp_path)
        assert (progress.phase, progress.count, progress.mode) == ("starting", 1, None)
        # the app's own job, still running: its plan is this one's
        me = {"pid": os.getpid(), "pid_started": psutil.Process().create_time()}
        (tmp_path / jobs.JOBS_DIR / jobs.LAST_JOB).write_text(json.dumps({**last, **me}))
        progress = jobs.current_job(tmp_path)
        assert (progress.phase, progress.count, progress.mode) == ("starting", 3, "baseline")
