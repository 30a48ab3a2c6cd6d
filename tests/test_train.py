"""Both modes end to end with a tiny random BERT, plus the faults a training run must survive."""
import dataclasses
import json
import logging
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import TrainConfig
from core.data import read_messages
from core.modeling import ModelError, resolve_model
from core.predict import Predictor
from core.runs import (RunError, checkpoints, finishable, list_runs, load_run, read_history, read_status,
                       request_cancel, request_finish, running_job)
from core.train import finish_stopped, train, train_sequence

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"frozen": {"epochs": 8}, "finetune": {"epochs": 2, "lr": 1e-3}, "baseline": {}}


def quick_config(mode, sms_file, tiny_bert, tmp_path, **overrides):
    return TrainConfig(mode=mode, data=str(sms_file), model=tiny_bert, runs_dir=str(tmp_path / "runs"),
                       cache_dir=str(tmp_path / "cache"), batch_size=16, **{**QUICK[mode], **overrides})


@pytest.mark.parametrize("mode", ["frozen", "finetune", "baseline"])
def test_mode_end_to_end(mode, sms_file, tiny_bert, tmp_path):
    run_dir = train(quick_config(mode, sms_file, tiny_bert, tmp_path))
    run = load_run(run_dir)
    assert run.status == "completed" and run.usable and run.mode == mode

    config = json.loads((run_dir / "config.json").read_text())
    assert config["format_version"] == 1 and config["seed"] == 42
    assert config["data_info"]["fingerprint"] and config["data_info"]["splits"]["test"]["rows"] == 26
    # absolute, so the run can be finished (core finish) from any working directory
    assert Path(config["data_info"]["source"]).is_absolute() and Path(config["cache_dir"]).is_absolute()
    assert "torch" in config["versions"]
    if mode != "baseline":
        assert config["model"]["source"] == "local" and config["trainable_parameters"] > 0

    metrics = run.metrics
    test = metrics["test"]
    for key in ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "mcc"):
        assert 0 <= test[key] <= 1 or (key == "mcc" and -1 <= test[key] <= 1)
        if test["ci95"][key] is None:  # precision where the model calls no message spam: undefined, as is its interval
            assert key == "precision" and test["confusion_matrix"][0][1] + test["confusion_matrix"][1][1] == 0
            continue
        lo, hi = test["ci95"][key]
        assert lo <= hi
    assert np.array(test["confusion_matrix"]).sum() == test["n"] == len(metrics["predictions"]) == 26
    assert metrics["curves"]["roc"]["fpr"][-1] == 1

    events = read_history(run_dir)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "data" and kinds[-1] == "end" and events[-1]["status"] == "completed"
    assert "eval" in kinds and "test" in kinds
    if mode != "baseline":
        assert "train" in kinds and "start" in kinds
        steps = [e["step"] for e in events if e["event"] == "train"]
        assert steps == sorted(steps) and steps[-1] == events[kinds.index("start")]["total_steps"]

    # the saved model reproduces the probabilities recorded at evaluation time
    texts = [p["text"] for p in metrics["predictions"]]
    recorded = np.array([p["spam_probability"] for p in metrics["predictions"]])
    assert np.allclose(Predictor.load(run_dir).predict(texts), recorded, atol=1e-4)
    weights = {"finetune": "model.safetensors", "frozen": "head.safetensors", "baseline": "baseline.safetensors"}
    assert (run_dir / "model" / weights[mode]).is_file()
    assert not list(run_dir.rglob("*.bin")) and not list(run_dir.rglob("*.pt")) and not list(run_dir.rglob("*.pkl"))


@pytest.mark.parametrize("mode", ["frozen", "finetune", "baseline"])
def test_a_run_on_fewer_training_messages_trains_on_them_alone_and_is_tested_like_a_full_one(
        mode, sms_file, tiny_bert, tmp_path, caplog):
    full = load_run(train(quick_config(mode, sms_file, tiny_bert, tmp_path)))
    caplog.clear()
    few = load_run(train(quick_config(mode, sms_file, tiny_bert, tmp_path, train_messages=40, epochs=3,
                                      min_epoch_steps=0)))  # one pass an epoch: the few steps of a small sample
    assert few.config["train_messages"] == 40 and few.config["data_info"]["splits"]["train"]["rows"] == 40
    assert few.config["data_info"]["splits"]["test"] == full.config["data_info"]["splits"]["test"]
    assert [p["text"] for p in few.metrics["predictions"]] == [p["text"] for p in full.metrics["predictions"]]
    if mode != "baseline":  # one epoch of 40 messages at batch 16 is 3 steps
        start = next(e for e in read_history(few.path) if e["event"] == "start")
        assert start["steps_per_epoch"] == 3 and start["total_steps"] == 3 * few.config["epochs"]
    # a fine-tune of so few steps is said to be one, in the log, before it trains
    said = [r.getMessage() for r in caplog.records if "optimisation steps" in r.getMessage()]
    assert said == (["this fine-tune is 9 optimisation steps (3 epochs): on SMS spam, fine-tunes of 30 steps or "
                     "fewer collapsed to calling every message ham on 8 of 9 splits, and none of 60 or more did; more "
                     "epochs or a higher min_epoch_steps give a small sample more steps (benchmarks/README.md, "
                     "section 17)"]
                    if mode == "finetune" else [])
    # the training messages it left out it never saw: they count as new to it
    from core.data import load_messages, split_messages
    parts = split_messages(load_messages(sms_file).frame, 0.1, 0.2, 42)
    unseen = [t for t in parts["train"]["text"] if t not in set(split_messages(
        load_messages(sms_file).frame, 0.1, 0.2, 42, 40)["train"]["text"])]
    from core.evaluate import seen_in_training
    assert seen_in_training(few.config, unseen) == 0 and seen_in_training(full.config, unseen) == len(unseen)

def test_an_epoch_goes_over_a_small_sample_as_often_as_min_epoch_steps_asks():
    from core.batches import LengthBucketSampler
    from core.config import passes_per_epoch, steps_per_epoch

    cfg = TrainConfig(mode="finetune")  # batch 32, at least 100 steps an epoch
    assert cfg.min_epoch_steps == 100
    assert TrainConfig(mode="frozen").min_epoch_steps == TrainConfig(mode="baseline").min_epoch_steps == 0
    # 50 messages are 2 batches a pass: 50 passes make an epoch of 100 steps; 1,000 messages need 4 passes (128
    # steps); the whole SMS training split (3,612 messages, 113 steps) one, as before, whatever the epochs
    assert [(passes_per_epoch(cfg, n), steps_per_epoch(cfg, n)) for n in (50, 1000, 3612)] == [(50, 100), (4, 128),
                                                                                               (1, 113)]
    assert passes_per_epoch(dataclasses.replace(cfg, epochs=1), 3612) == 1  # the quick preset's one epoch stays one
    # in 2 processes each takes every other batch: twice the passes, so that each still makes 100 steps
    assert passes_per_epoch(cfg, 50, processes=2) == 100
    assert passes_per_epoch(dataclasses.replace(cfg, min_epoch_steps=0), 50) == 1
    assert passes_per_epoch(TrainConfig(mode="frozen", min_epoch_steps=100), 50) == 1  # a head trains 60 epochs
    with pytest.raises(ValueError, match=r"min_epoch_steps: expected a value in \[0, "):
        TrainConfig(min_epoch_steps=-1)

    lengths = np.random.default_rng(0).integers(5, 60, size=50)
    sampler = LengthBucketSampler(lengths, 32, shuffle=True, seed=7, passes=3)
    epoch = list(sampler)
    assert len(sampler) == len(epoch) == 6
    passes = [epoch[i:i + 2] for i in (0, 2, 4)]  # each pass: every message once, in a batch of its own pass
    assert all(sorted(i for batch in one for i in batch) == list(range(50)) for one in passes)
    assert passes[0] != passes[1] != passes[2]  # each in a fresh order
    assert passes[0] == list(LengthBucketSampler(lengths, 32, shuffle=True, seed=7))  # one pass: the epoch of before
    assert list(sampler) != epoch and list(LengthBucketSampler(lengths, 32, True, seed=7, passes=3)) == epoch
    assert len(LengthBucketSampler(lengths, 32, shuffle=False, passes=3)) == 2  # evaluation goes over them once


def test_a_fine_tune_on_a_small_sample_makes_min_epoch_steps_with_the_validations_of_its_epochs(
        sms_file, tiny_bert, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="core.train")
    run = load_run(train(quick_config("finetune", sms_file, tiny_bert, tmp_path, train_messages=40)))
    start = next(e for e in read_history(run.path) if e["event"] == "start")
    # 40 messages at batch 16 are 3 steps a pass: 34 passes make an epoch of at least 100 steps, and 2 epochs 204
    assert (start["passes_per_epoch"], start["steps_per_epoch"], start["total_steps"]) == (34, 102, 204)
    assert (run.metrics["steps"], run.metrics["passes_per_epoch"]) == (204, 34)
    # its speed counts messages, not batch slots: each pass ends in a batch of 8 (2 epochs of 34 passes of 40 messages)
    trained = run.metrics["train_messages_per_second"] * run.metrics["train_seconds"]
    assert trained == pytest.approx(2 * 34 * 40)
    evals = [e["step"] for e in read_history(run.path) if e["event"] == "eval"]
    assert evals == [26, 52, 78, 104, 130, 156, 182, 204]  # 4 an epoch, as with one pass
    said = [r.getMessage() for r in caplog.records if "training messages" in r.getMessage()]
    assert said == ["each epoch goes over the 40 training messages 34 times, so that it makes at least "
                    "min_epoch_steps 100 (102)"]
    assert not [r for r in caplog.records if "optimisation steps" in r.getMessage()]  # no few-steps warning


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_same_seed_same_result(mode, sms_file, tiny_bert, tmp_path):
    first = load_run(train(quick_config(mode, sms_file, tiny_bert, tmp_path, epochs=1)))
    second = load_run(train(quick_config(mode, sms_file, tiny_bert, tmp_path, epochs=1)))
    p1 = [p["spam_probability"] for p in first.metrics["predictions"]]
    p2 = [p["spam_probability"] for p in second.metrics["predictions"]]
    assert p1 == p2
    third = load_run(train(quick_config(mode, sms_file, tiny_bert, tmp_path, epochs=1, seed=3)))
    assert [p["text"] for p in third.metrics["predictions"]] != [p["text"] for p in first.metrics["predictions"]]


def test_frozen_features_are_computed_once(sms_file, tiny_bert, tmp_path, caplog):
    caplog.set_level("INFO", logger="core")
    first = train(quick_config("frozen", sms_file, tiny_bert, tmp_path, epochs=1))
    # no terminal here, so no progress bars: a log file still says what the run is doing
    steps = next(e["total_steps"] for e in read_history(first) if e["event"] == "start")
    assert re.search(r"encoding \d+ messages with the frozen encoder", caplog.text)
    assert re.search(rf"step {steps} of {steps} \(epoch 1\.00, \d+ s\): validation loss [0-9.]+, accuracy", caplog.text)
    second = train(quick_config("frozen", sms_file, tiny_bert, tmp_path, epochs=1, head_hidden=16, dropout=0.0))
    ready = [e for e in read_history(second) if e["event"] == "features_ready"]
    assert ready[0]["cached"] is True
    assert not any(e["event"] == "features" for e in read_history(second))
    # a different pooling is a different feature set
    third = train(quick_config("frozen", sms_file, tiny_bert, tmp_path, epochs=1, pooling="cls"))
    assert [e for e in read_history(third) if e["event"] == "features_ready"][0]["cached"] is False


def test_an_edited_tokenizer_under_the_same_model_folder_gets_new_features(sms_file, tiny_bert, tmp_path):
    import shutil
    encoder = Path(shutil.copytree(tiny_bert, tmp_path / "encoder"))
    train(quick_config("frozen", sms_file, str(encoder), tmp_path, epochs=1))
    config = json.loads((encoder / "tokenizer_config.json").read_text())
    (encoder / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))  # same weights
    again = train(quick_config("frozen", sms_file, str(encoder), tmp_path, epochs=1))
    assert [e for e in read_history(again) if e["event"] == "features_ready"][0]["cached"] is False


def test_the_tokenizer_digest_covers_added_tokens(tiny_bert, tmp_path):
    import shutil

    from core.features import tokenizer_digest
    model = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    before = tokenizer_digest(model)
    (model / "added_tokens.json").write_text(json.dumps({"[URL]": 1000}))  # read by a slow tokenizer: other ids
    assert tokenizer_digest(model) != before


def test_an_encoding_stopped_midway_resumes_where_it_stopped(tiny_bert, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from core.features import cached_features, encode, partial_file
    texts = [f"message {i} " + "word " * (i % 17) for i in range(300)]  # 5 batches of 64
    tokenizer, encoder = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert)
    whole = encode(encoder, tokenizer, texts, 32, "mean", "cpu")
    partial = partial_file(tmp_path, "key")
    first = []

    def killed_after_two_batches(done, total, tokens, tokens_total):
        first.append((done, tokens))
        if len(first) == 2:
            raise KeyboardInterrupt  # a cancel or Ctrl-C arrives here, after the second batch was saved
    with pytest.raises(KeyboardInterrupt):  # no timed save: what it keeps, it saved as it stopped
        encode(encoder, tokenizer, texts, 32, "mean", "cpu", on_progress=killed_after_two_batches, resume=partial,
               save_every=1e9)
    other = []  # other tokens (here a shorter max length) are other work: the saved rows are not taken
    encode(encoder, tokenizer, texts, 8, "mean", "cpu", on_progress=lambda *progress: other.append(progress),
           resume=partial, save_every=1e9)
    assert len(other) == 5
    again = []
    resumed = encode(encoder, tokenizer, texts, 32, "mean", "cpu", on_progress=lambda *progress: again.append(progress),
                     resume=partial, save_every=0)
    assert len(again) == 3 and again[0][0] > first[1][0] and again[-1][0] == 300  # only the three batches left ran
    # the tokens count the padded batches, shortest first, and a resumed encoding counts what was done before it
    lengths = sorted(len(ids) for ids in tokenizer(texts, truncation=True, max_length=32)["input_ids"])
    padded = [len(lengths[i:i + 64]) * max(lengths[i:i + 64]) for i in range(0, 300, 64)]
    assert [t for _, t in first] == [padded[0], sum(padded[:2])] and again[0][2] == sum(padded[:3])
    assert again[-1][2:] == (sum(padded), sum(padded))
    assert torch.equal(resumed, whole)  # the same batches as an encoding from scratch: the same features
    cached_features(tmp_path, "key", lambda: (resumed, {}))
    assert not partial.exists()  # the complete features replace it


def test_a_cache_hit_removes_a_partial_encoding_left_beside_it(tmp_path):
    """Two jobs (two runs folders, one cache) encode the same messages: the one that stopped midway leaves its
    partial features, and the other saved the whole. The next run's cache hit removes the partial file, which
    would otherwise sit in the cache for good (nothing would encode that key again)."""
    from core.features import cached_features, partial_file
    features = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    cached_features(tmp_path, "key", lambda: (features, {"hidden": 2}))
    partial = partial_file(tmp_path, "key")
    partial.write_bytes(b"the other job's rows so far")

    def never():
        raise AssertionError("a cache hit encodes nothing")
    got, cached, info = cached_features(tmp_path, "key", never)
    assert cached and torch.equal(got, features) and info == {"hidden": "2"}
    assert not partial.exists()


def test_an_encoding_whose_partial_features_cannot_be_saved_goes_on(tiny_bert, tmp_path, caplog, monkeypatch):
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoTokenizer

    from core.features import cached_features, encode, partial_file
    texts = [f"message {i} " + "word " * (i % 17) for i in range(300)]
    tokenizer, encoder = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert)
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    stopped = []

    def cancelled_at_the_fourth_batch(done, *_):
        stopped.append(done)
        if len(stopped) == 4:
            raise KeyboardInterrupt  # its save on the way out is not tried again either: the cancel comes through
    with pytest.raises(KeyboardInterrupt):  # a save after every batch, each one failing
        encode(encoder, tokenizer, texts, 32, "mean", "cpu", on_progress=cancelled_at_the_fourth_batch,
               resume=partial_file(tmp_path / "cache", "key"), save_every=0)
    assert sum("could not save partial features" in r.getMessage() for r in caplog.records) == 1  # said once
    features = encode(encoder, tokenizer, texts, 32, "mean", "cpu", resume=partial_file(tmp_path / "cache", "key"),
                      save_every=0)
    assert torch.equal(features, encode(encoder, tokenizer, texts, 32, "mean", "cpu"))

    def disk_full(*args, **kwargs):  # safetensors' own error as a write fails, not an OSError
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")
    monkeypatch.setattr("core.features.save_file", disk_full)
    partial = partial_file(tmp_path / "writable", "key")
    assert torch.equal(encode(encoder, tokenizer, texts, 32, "mean", "cpu", resume=partial, save_every=0), features)
    assert cached_features(tmp_path / "writable", "key", lambda: (features, {}))[1] is False and not partial.exists()


def test_an_overwritten_encoder_directory_is_neither_reused_from_cache_nor_trusted_by_old_runs(
        sms_file, tiny_bert, tmp_path):
    import shutil

    from transformers import BertConfig, BertModel

    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_bert, encoder)
    first = train(quick_config("frozen", sms_file, str(encoder), tmp_path, epochs=1))
    Predictor.load(first)  # loads while the encoder is the one it was trained on
    # same directory, new weights: what a second save_pretrained to the same path does
    BertModel(BertConfig.from_pretrained(encoder)).save_pretrained(encoder)
    second = train(quick_config("frozen", sms_file, str(encoder), tmp_path, epochs=1))
    assert [e for e in read_history(second) if e["event"] == "features_ready"][0]["cached"] is False
    with pytest.raises(ModelError, match="has changed since the run was trained"):
        Predictor.load(first)
    Predictor.load(second)
    shutil.rmtree(encoder)
    with pytest.raises(ModelError, match="no longer exists"):
        Predictor.load(second)


def test_balanced_class_weights_keep_the_frozen_head_from_collapsing(sms_file, tiny_bert, tmp_path):
    # the seed's frozen model predicted "ham" for everything; with balanced weights (the frozen default) spam must be
    # found, and no less of it than the same head finds unweighted on the same features
    recall = {weights: load_run(train(quick_config("frozen", sms_file, tiny_bert, tmp_path / weights, epochs=30,
                                                   class_weight=weights))).metrics["test"]["recall"]
              for weights in ("balanced", "none")}
    assert recall["balanced"] > 0.5 and recall["balanced"] >= recall["none"], recall


def test_early_stopping_stops_and_keeps_the_best(sms_file, tiny_bert, tmp_path):
    run_dir = train(quick_config("frozen", sms_file, tiny_bert, tmp_path, epochs=200, patience=2, lr=0.05))
    events = read_history(run_dir)
    stop = [e for e in events if e["event"] == "early_stop"]
    assert stop, "expected early stopping with a large learning rate and patience 2"
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) < 200
    assert min(e["loss"] for e in evals) == pytest.approx(stop[0]["best_loss"])


def test_no_validation_just_before_the_final_one(sms_file, tiny_bert, tmp_path):
    # 13 steps, a validation due every 4: at 4 and 8, then 12 would come one step before the last step's own
    cfg = dataclasses.replace(quick_config("finetune", sms_file, tiny_bert, tmp_path, epochs=1, evals_per_epoch=3),
                              batch_size=7, min_epoch_steps=0)
    run_dir = train(cfg)
    events = read_history(run_dir)
    [start] = [e for e in events if e["event"] == "start"]
    assert (start["total_steps"], start["eval_every"]) == (13, 4)
    assert [e["step"] for e in events if e["event"] == "eval"] == [4, 8, 13]


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_how_often_a_run_validates_does_not_change_what_it_trains(mode, sms_file, tiny_bert, tmp_path):
    # a validation once drew from the global random state (a DataLoader's iterator seeds itself from it), which
    # shifted every later dropout mask: 16 validations per epoch trained another model than 4
    def steps(evals_per_epoch):
        events = read_history(train(quick_config(mode, sms_file, tiny_bert, tmp_path, evals_per_epoch=evals_per_epoch)))
        train_losses = [(e["step"], e["loss"]) for e in events if e["event"] == "train"]
        last = max((e for e in events if e["event"] == "eval"), key=lambda e: e["step"])
        return train_losses, last["loss"]

    rarely, often = steps(1), steps(4)
    assert len(rarely[0]) > 10
    assert rarely == often


def test_nan_loss_fails_the_run_with_the_reason(sms_file, tiny_bert, tmp_path):
    from transformers import BertModel
    broken = tmp_path / "nan-bert"
    model = BertModel.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((Path(tiny_bert) / name).read_bytes())
    with pytest.raises(ValueError, match="loss became nan"):
        train(quick_config("finetune", sms_file, str(broken), tmp_path))
    [run] = list_runs(tmp_path / "runs")
    assert run.status == "failed" and "nan" in run.error
    assert running_job(tmp_path / "runs") is None


def test_model_resolution(tiny_bert, tmp_path, monkeypatch):
    assert resolve_model(tiny_bert).source == "local"
    import shutil
    damaged = Path(shutil.copytree(tiny_bert, tmp_path / "damaged"))
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])  # a copy cut short
    with pytest.raises(ModelError, match="model.safetensors cannot be read"):
        resolve_model(str(damaged))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model directory"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(tmp_path / "missing"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    resolved = resolve_model("bert-base-uncased")
    assert time.time() - t0 < 5  # offline is detected at once, not after the hub's retries
    assert resolved.source == "bundled" and "HF_HUB_OFFLINE" in resolved.fallback_reason
    assert resolved.name == "sentence-transformers/all-MiniLM-L6-v2" and Path(resolved.path, "model.safetensors").is_file()
    # asking for the bundled model by name is no fallback; any other unavailable name is refused, not replaced
    assert resolve_model("all-MiniLM-L6-v2").source == "bundled" and not resolve_model("all-MiniLM-L6-v2").fallback_reason
    with monkeypatch.context() as online:  # online too: the short name is no hub id, so the hub is never asked
        online.delenv("HF_HUB_OFFLINE")
        online.setattr("core.modeling.hub_reachable", lambda: pytest.fail("the hub was asked for the bundled model"))
        assert resolve_model("all-MiniLM-L6-v2").source == "bundled"
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        resolve_model("bert-large-uncased")
    with pytest.raises(ModelError, match="nor a valid hub id"):
        resolve_model("bert base uncased")


def test_a_gated_or_unknown_hub_model_is_named_as_such(monkeypatch):
    """The hub's answers, as huggingface_hub raises them (this machine has no network): a gated model is no
    unknown one, since its GatedRepoError subclasses RepositoryNotFoundError."""
    import httpx2  # huggingface_hub's own HTTP client
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    response = httpx2.Response(401, request=httpx2.Request("GET", "https://huggingface.co/api/models/org/nothing-here"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("core.modeling.hub_reachable", lambda: True)
    for error, expected in [(GatedRepoError, "is a gated model on the Hugging Face hub"),
                            (RepositoryNotFoundError, "unknown model: 'org/nothing-here'")]:
        def snapshot_download(repo_id, local_files_only=False, **kwargs):
            if local_files_only:
                raise FileNotFoundError(repo_id)  # not in the local cache, as huggingface_hub says it
            raise error("403 Client Error", response=response)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
        with pytest.raises(ModelError, match=expected):
            resolve_model("org/nothing-here")


def test_max_length_above_the_model_limit_is_refused_before_a_run_exists(sms_file, tiny_bert, tmp_path):
    with pytest.raises(ModelError, match="max_length: expected at most 128"):
        train(quick_config("finetune", sms_file, tiny_bert, tmp_path, max_length=256))
    assert list_runs(tmp_path / "runs") == []


def test_a_roberta_style_model_takes_two_tokens_fewer_than_its_positions(sms_file, tmp_path):
    """RoBERTa's position ids start after its padding index: of 22 positions, 20 are usable. Longer messages would
    index past the table (an IndexError mid-run on the CPU, a device assert on CUDA)."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    from core.modeling import bundled_model_dir
    model_dir = tmp_path / "tiny-roberta"
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir())  # any tokenizer: the limit is the model's
    config = RobertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=22, pad_token_id=1)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    with pytest.raises(ModelError, match="max_length: expected at most 20 "):
        train(quick_config("frozen", sms_file, str(model_dir), tmp_path, max_length=21))
    texts = read_messages(sms_file)[0]["text"].tolist()
    assert max(len(ids) for ids in tokenizer(texts)["input_ids"]) > 20  # so the limit is reached
    assert load_run(train(quick_config("frozen", sms_file, str(model_dir), tmp_path, max_length=20))).usable
    config = json.loads((model_dir / "config.json").read_text())  # a config that leaves the padding index null
    (model_dir / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    assert resolve_model(str(model_dir)).max_positions == 20  # RoBERTa's own, 1: no TypeError


# ---------------------------------------------------------------------------- faults, through the real CLI

def _start_cli(tmp_path, sms_file, tiny_bert, *extra):
    cmd = [sys.executable, "-m", "core", "train", "--mode", "finetune", "--data", str(sms_file), "--model", tiny_bert,
           "--runs-dir", str(tmp_path / "runs"), "--epochs", "300", "--batch-size", "8", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _wait_for_training(runs_dir: Path, timeout=60) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run in list_runs(runs_dir):
            if any(e["event"] == "train" for e in read_history(run.path)):
                return run.path
        time.sleep(0.2)
    raise AssertionError("training did not start")


def test_cancel_from_outside(tmp_path, sms_file, tiny_bert):
    proc = _start_cli(tmp_path, sms_file, tiny_bert)
    run_dir = _wait_for_training(tmp_path / "runs")
    assert running_job(tmp_path / "runs") == run_dir.name
    _wait_for(lambda: checkpoints(run_dir))  # so there is something for the cancel to discard
    request_cancel(run_dir)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out.strip().splitlines()[-1] == str(run_dir)
    assert read_status(run_dir)["status"] == "cancelled"
    assert read_history(run_dir)[-1] == {**read_history(run_dir)[-1], "event": "end", "status": "cancelled"}
    assert not checkpoints(run_dir)  # Cancel discards: nothing is left to finish it from
    with pytest.raises(RunError, match="saved no weights"):
        finishable(run_dir)
    assert running_job(tmp_path / "runs") is None


def test_finish_now_keeps_the_best_weights_so_far_and_completes_the_run(tmp_path, sms_file, tiny_bert):
    proc = _start_cli(tmp_path, sms_file, tiny_bert)  # 300 epochs: only the request ends it
    run_dir = _wait_for_training(tmp_path / "runs")
    request_finish(run_dir)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip().splitlines()[-1] == str(run_dir), err[-2000:]
    run = load_run(run_dir)
    assert run.status == "completed" and run.usable and not (run_dir / "finish").exists()
    events = read_history(run_dir)
    [stop] = [e for e in events if e["event"] == "early_stop"]
    start = next(e for e in events if e["event"] == "start")
    assert stop["reason"] == "asked" and stop["step"] < start["total_steps"]
    assert run.metrics["best_step"] == stop["best_step"] and run.metrics["steps"] == stop["step"]
    assert run.metrics["stopped"] == {"status": "asked", "reason": "finished early on request", "after_step": stop["step"],
                                      "total_steps": start["total_steps"], "weights_from_step": stop["best_step"]}
    # the saved weights are the ones that were tested
    predictions = run.metrics["predictions"]
    assert np.allclose(Predictor.load(run_dir).predict([p["text"] for p in predictions]),
                       [p["spam_probability"] for p in predictions], atol=2e-2)


def test_sigterm_cancels_cleanly_and_keeps_the_checkpoint(tmp_path, sms_file, tiny_bert):
    proc = _start_cli(tmp_path, sms_file, tiny_bert)
    run_dir = _wait_for_training(tmp_path / "runs")
    _wait_for(lambda: checkpoints(run_dir))
    proc.send_signal(signal.SIGTERM)  # timeout, docker stop, a scheduler's preemption: not the app's Cancel
    out, err = proc.communicate(timeout=60)
    assert read_status(run_dir)["status"] == "cancelled"
    assert f"python -m core finish --run {run_dir}" in err and finishable(run_dir)


def test_kill_9_mid_epoch_leaves_an_interrupted_run_and_a_free_lock(tmp_path, sms_file, tiny_bert):
    proc = _start_cli(tmp_path, sms_file, tiny_bert)
    run_dir = _wait_for_training(tmp_path / "runs")
    proc.kill()
    proc.wait()
    run = load_run(run_dir)
    assert run.status == "interrupted" and not run.usable
    assert not (run_dir / "model").exists()  # weights are only ever renamed into place when complete
    with pytest.raises(RunError, match="no saved weights"):
        Predictor.load(run_dir)
    if not checkpoints(run_dir):  # killed before its first validation: nothing to finish it from
        with pytest.raises(RunError, match="saved no weights before it stopped"):
            finishable(run_dir)
    assert running_job(tmp_path / "runs") is None
    # and a new job can start at once
    done = train(TrainConfig(mode="frozen", data=str(sms_file), model=tiny_bert, runs_dir=str(tmp_path / "runs"),
                             cache_dir=str(tmp_path / "cache"), epochs=1))
    assert load_run(done).status == "completed"


def _newest_run(tmp_path):
    return max((tmp_path / "runs").iterdir(), key=lambda p: p.name if p.is_dir() and p.name[0] != "." else "")


def test_a_cancel_during_the_baseline_fit_stops_the_whole_plan(tmp_path, sms_file, tiny_bert, monkeypatch):
    from core import baseline
    real_fit = baseline.Baseline.fit.__func__

    def fit_then_cancel(cls, *args):  # the cancel arrives while the solver runs, as from the app's button
        fitted = real_fit(cls, *args)
        request_cancel(_newest_run(tmp_path))
        return fitted
    monkeypatch.setattr(baseline.Baseline, "fit", classmethod(fit_then_cancel))
    plan = [quick_config(m, sms_file, tiny_bert, tmp_path) for m in ("baseline", "finetune")]
    done = list(train_sequence(plan))
    assert [load_run(d).status for d in done] == ["cancelled"]  # the fine-tune never started
    assert not (done[0] / "model").exists()
    assert [r.id for r in list_runs(tmp_path / "runs")] == [done[0].name]


def test_a_cancel_while_a_run_saves_keeps_that_run_and_stops_the_plan(tmp_path, sms_file, tiny_bert, monkeypatch):
    import core.train
    real_finish = core.train._finish

    def cancel_then_save(cfg, run_dir, *args):  # too late to stop this run: its weights are already being written
        request_cancel(run_dir)
        real_finish(cfg, run_dir, *args)
    monkeypatch.setattr(core.train, "_finish", cancel_then_save)
    plan = [quick_config(m, sms_file, tiny_bert, tmp_path, epochs=1) for m in ("frozen", "finetune")]
    done = list(train_sequence(plan))
    [run] = [load_run(d) for d in done]
    assert run.mode == "frozen" and run.status == "completed" and run.usable
    assert not (done[0] / "cancel").exists()  # consumed: it must not look like a pending request later


def test_ctrl_c_in_the_terminal_ends_the_run_as_cancelled_but_keeps_its_weights(tmp_path, sms_file, tiny_bert,
                                                                                monkeypatch, caplog):
    import core.train

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(core.train, "_finish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(quick_config("frozen", sms_file, tiny_bert, tmp_path, epochs=1))
    run_dir = _newest_run(tmp_path)
    assert read_status(run_dir)["status"] == "cancelled"
    assert read_history(run_dir)[-1]["event"] == "end" and read_history(run_dir)[-1]["status"] == "cancelled"
    # unlike the app's Cancel, which discards: the user is told how to finish it, and can
    assert f"python -m core finish --run {run_dir}" in caplog.text
    monkeypatch.undo()
    from core.cli import main
    caplog.set_level("INFO", logger="core")
    assert main(["finish", "--run", str(run_dir)]) == 0
    run = load_run(run_dir)
    assert run.usable and run.metrics["stopped"]["status"] == "cancelled"
    # its last line says how it ended, with every test score: it had trained its steps, and stopped while it saved
    assert re.search(r"frozen completed \(trained to its end, then stopped before it completed \(cancelled\); tested "
                     r"later .*\): accuracy [0-9.]+ precision [0-9.]+ recall [0-9.]+ f1 [0-9.]+ auroc", caplog.text), \
        caplog.text[-500:]
    # and `core runs --json` tells a script so, as the table does
    listed = subprocess.run([sys.executable, "-m", "core", "runs", "--json", "--runs-dir", str(run_dir.parent)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert json.loads(listed.stdout.splitlines()[0])["stopped"] == run.metrics["stopped"]


def test_in_a_terminal_a_ctrl_cs_warnings_go_above_the_progress_bar_not_onto_it(tmp_path, sms_file, tiny_bert):
    """On a real terminal (a pseudo-terminal, 120 columns): the bar redraws its line with carriage returns, and the
    Ctrl-C warnings, logged while it shows, landed on its line ("loss=0.64]WARNING core.train: stopping ...")."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0 columns wide
    cmd = [sys.executable, "-m", "core", "train", "--mode", "finetune", "--data", str(sms_file), "--model", tiny_bert,
           "--runs-dir", str(tmp_path / "runs"), "--epochs", "300", "--batch-size", "8"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=follower, stdout=follower, stderr=follower,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True)
    os.close(follower)
    shown, deadline, interrupted = b"", time.time() + 120, False
    while time.time() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process has ended and closed the terminal
            break
        shown += chunk
        if not interrupted and re.search(rb"\| *[1-9][0-9]*/[0-9]+ \[", shown):  # the bar is up and moving
            os.killpg(proc.pid, signal.SIGINT)
            interrupted = True
    os.close(leader)
    assert proc.wait(timeout=60) == 1 and interrupted, shown[-2000:]
    # each line as the terminal ends up showing it: the text after its last carriage return
    lines = [line.rsplit("\r", 1)[-1] for line in shown.decode().replace("\r\n", "\n").split("\n")]
    warnings = [line for line in lines if "WARNING" in line]  # "stopping at the next step", "the state is kept"
    assert len(warnings) >= 2 and all(line.startswith("WARNING core.train: ") for line in warnings), warnings
    assert any(line.startswith("finetune: ") and "step/s" in line for line in lines)  # the bar's last state, kept


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_a_run_that_failed_after_training_finishes_from_its_saved_weights_with_the_same_results(
        mode, tmp_path, sms_file, tiny_bert, monkeypatch):
    import core.train

    clean = load_run(train(quick_config(mode, sms_file, tiny_bert, tmp_path / "clean")))

    def disk_trouble(*args):
        raise OSError("No space left on device")
    monkeypatch.setattr(core.train, "_finish", disk_trouble)
    with pytest.raises(OSError):
        train(quick_config(mode, sms_file, tiny_bert, tmp_path))
    monkeypatch.undo()
    run_dir = _newest_run(tmp_path)
    assert load_run(run_dir).status == "failed" and (run_dir / "model").is_dir() and not checkpoints(run_dir)

    sms_file.write_text(sms_file.read_text() + "ham\tone more message\n")  # not the data it trained on
    with pytest.raises(RunError, match="not the data this run trained on"):
        finish_stopped(run_dir)
    sms_file.write_text(sms_file.read_text().removesuffix("ham\tone more message\n"))
    monkeypatch.setattr(core.train, "_evaluate", disk_trouble)  # a first attempt at finishing fails too
    with pytest.raises(OSError):
        finish_stopped(run_dir)
    monkeypatch.undo()
    assert "finishing from the saved weights failed" in load_run(run_dir).error
    run = load_run(finish_stopped(run_dir))  # the second attempt works, and keeps the first reason
    assert run.status == "completed" and run.usable and run.error is None
    # the same weights on the same split: the clean run's numbers, to the last digit
    assert run.metrics["test"] == clean.metrics["test"] and run.metrics["best_step"] == clean.metrics["best_step"]
    assert run.metrics["stopped"]["reason"] == "No space left on device"
    from core.export import readme  # the README of its zip says so too: it had trained its steps, then failed
    assert "trained to its end, then stopped before it completed (No space left on device)" in readme(run.config,
                                                                                                    run.metrics)
    assert "did not train to its end" not in readme(run.config, run.metrics)
    with pytest.raises(RunError, match="already completed"):
        finishable(run_dir)


def test_a_frozen_run_is_not_finished_with_an_encoder_that_changed_since(tmp_path, sms_file, tiny_bert, monkeypatch):
    import shutil

    import core.train
    from transformers import BertConfig, BertModel

    encoder = Path(shutil.copytree(tiny_bert, tmp_path / "encoder"))

    def disk_trouble(*args):
        raise OSError("No space left on device")
    monkeypatch.setattr(core.train, "_finish", disk_trouble)
    with pytest.raises(OSError):
        train(quick_config("frozen", sms_file, str(encoder), tmp_path))
    monkeypatch.undo()
    BertModel(BertConfig.from_pretrained(encoder)).save_pretrained(encoder)  # new weights under the same name
    run_dir = _newest_run(tmp_path)
    with pytest.raises(ModelError, match="has changed since the run was trained"):
        finish_stopped(run_dir)
    assert load_run(run_dir).status == "failed" and not (run_dir / "metrics.json").exists()


def test_kill_9_keeps_the_last_checkpoint_and_core_finish_completes_the_run_from_it(tmp_path, sms_file, tiny_bert):
    # trained from the data's folder with a relative path; finished below from another working directory
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", "--mode", "finetune", "--data", sms_file.name,
                             "--model", tiny_bert, "--runs-dir", str(tmp_path / "runs"), "--epochs", "300",
                             "--batch-size", "8", "--min-epoch-steps", "0"], cwd=sms_file.parent, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # killed long before its end
    run_dir = _wait_for_training(tmp_path / "runs")
    _wait_for(lambda: len([e for e in read_history(run_dir) if e["event"] == "checkpoint"]) >= 2)
    proc.kill()
    proc.wait()
    saved = [e for e in read_history(run_dir) if e["event"] == "checkpoint"][-1]
    # the newest complete checkpoint: the last one announced, or one the kill caught between its save and its event
    checkpoint = checkpoints(run_dir)[-1]
    step = int(checkpoint.name.removeprefix("checkpoint-"))
    assert load_run(run_dir).status == "interrupted" and step >= saved["step"]
    [at_step] = [e for e in read_history(run_dir) if e["event"] == "eval" and e["step"] == step]
    assert json.loads((checkpoint / "checkpoint.json").read_text())["validation_loss"] == at_step["loss"]

    request_cancel(run_dir)  # left by a second Ctrl-C, for the process that died: not this finish's, nor kept
    cli = [sys.executable, "-m", "core", "finish", "--run", str(run_dir)]
    done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == str(run_dir), done.stderr[-2000:]
    run = load_run(run_dir)
    assert run.status == "completed" and run.usable and not checkpoints(run_dir)
    assert not (run_dir / "cancel").exists()
    stopped = run.metrics["stopped"]
    assert stopped["status"] == "interrupted" and stopped["weights_from_step"] == run.metrics["best_step"] == step
    last_step = max(e["step"] for e in read_history(run_dir) if e["event"] in ("train", "eval", "checkpoint"))
    assert stopped["after_step"] == run.metrics["steps"] == last_step and stopped["total_steps"] == 300 * 12
    # its speed counts the messages of the steps it made: 12 a pass of 91 messages, the last one of 3
    assert run.metrics["train_messages_per_second"] * run.metrics["train_seconds"] == pytest.approx(
        run.metrics["steps"] / 12 * 91)
    predictions = run.metrics["predictions"]  # the tested weights are the ones now in model/
    assert np.allclose(Predictor.load(run_dir).predict([p["text"] for p in predictions]),
                       [p["spam_probability"] for p in predictions], atol=2e-2)
    listing = subprocess.run([sys.executable, "-m", "core", "runs", "--runs-dir", str(tmp_path / "runs")], cwd=ROOT,
                             capture_output=True, text=True, timeout=120).stdout
    assert f"tested with the best weights saved by then, from step {step}" in listing
    again = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.strip() == \
        f"error: {run_dir.name} cannot be finished from saved weights: it has already completed"


def _wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def test_second_job_is_refused_while_one_runs(tmp_path, sms_file, tiny_bert):
    proc = _start_cli(tmp_path, sms_file, tiny_bert)
    run_dir = _wait_for_training(tmp_path / "runs")
    try:
        second = subprocess.run([sys.executable, "-m", "core", "train", "--mode", "baseline", "--data", str(sms_file),
                                 "--runs-dir", str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [f"error: another training job is running: {run_dir.name}"]
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- real data

@pytest.mark.real_data
def test_frozen_bundled_model_on_the_real_data(real_data, tmp_path):
    """The bundled MiniLM, frozen, on the UCI data: must find spam (the seed's collapsed to P = R = 0)."""
    cfg = TrainConfig(mode="frozen", data=str(real_data), model="bert-base-uncased", runs_dir=str(tmp_path / "runs"),
                      cache_dir=str(tmp_path / "cache"))
    run = load_run(train(cfg))
    assert run.config["model"]["source"] == "bundled" and run.config["model"]["fallback_reason"]
    test = run.metrics["test"]
    assert test["n"] > 1000 and test["n_spam"] > 100
    assert test["accuracy"] > 0.96 and test["recall"] > 0.85 and test["precision"] > 0.8 and test["auroc"] > 0.98


@pytest.mark.parametrize("batch_size", [3, 8, 40])
def test_validation_loss_is_weighted_over_the_split_and_metrics_use_the_run_threshold(batch_size):
    # class-weighted loss summed over the split and divided by its total weight, however the batches fall; a mean
    # of per-batch weighted means moved with the batch size (and the length-sorted batches are class-skewed)
    from accelerate import Accelerator
    from core.batches import feature_loader
    from core.modeling import MLPHead
    from core.train import _evaluate
    torch.manual_seed(0)
    features, labels = torch.randn(40, 6), torch.tensor([0] * 30 + [1] * 10)
    head, weight = MLPHead(6, 4, dropout=0.0), torch.tensor([0.6, 2.5])
    result = _evaluate(head, feature_loader(features, labels, batch_size, shuffle=False), Accelerator(cpu=True),
                       weight, threshold=0.3)
    with torch.no_grad():
        logits = head(features)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weight).item()  # torch's weighted mean
    assert result["loss"] == pytest.approx(expected, rel=1e-6)
    p = torch.softmax(logits, -1)[:, 1].numpy()
    assert result["metrics"]["threshold"] == 0.3 and result["metrics"]["confusion_matrix"] == [
        [int(((p < 0.3) & (labels.numpy() == 0)).sum()), int(((p >= 0.3) & (labels.numpy() == 0)).sum())],
        [int(((p < 0.3) & (labels.numpy() == 1)).sum()), int(((p >= 0.3) & (labels.numpy() == 1)).sum())]]


def test_a_baseline_run_scores_validation_at_its_own_threshold(sms_file, tmp_path):
    run_dir = train(TrainConfig(mode="baseline", data=str(sms_file), runs_dir=str(tmp_path / "runs"), threshold=0.2))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["threshold"] == metrics["test"]["threshold"] == metrics["validation"]["threshold"] == 0.2


@pytest.mark.parametrize("steps_per_epoch,asked,every", [(113, 4, 28), (113, 1, 113), (113, 30, 4), (113, 60, 2),
                                                         (3, 2, 2), (5, 100, 1)])
def test_validations_per_epoch_come_as_close_to_those_asked_as_whole_steps_allow(steps_per_epoch, asked, every):
    from core.train import eval_interval
    assert eval_interval(steps_per_epoch, asked) == every  # 113 // 30 = 3 steps validated 37.7 times an epoch
    per_epoch = [steps_per_epoch / e for e in range(1, steps_per_epoch + 1)]
    assert abs(steps_per_epoch / every - asked) == min(abs(n - asked) for n in per_epoch)


# ---------------------------------------------------------------------------- one early-stopped run, threshold 0.1
# Trained once for the tests below: a high learning rate makes the validation loss turn up, so patience stops it
# after its best step, and its threshold is far from 0.5, with several test messages scored between the two.
EARLY = {"epochs": 200, "patience": 2, "lr": 0.05, "threshold": 0.1, "precision": "fp32"}


@pytest.fixture(scope="module")
def early_stopped(tiny_bert, tmp_path_factory) -> Path:
    from conftest import make_messages, write_uci
    tmp = tmp_path_factory.mktemp("early")
    return train(quick_config("frozen", write_uci(tmp / "sms.txt", make_messages()), tiny_bert, tmp, **EARLY))


def _recorded_test(run_dir: Path) -> tuple[list[str], np.ndarray]:
    predictions = load_run(run_dir).metrics["predictions"]
    return [p["text"] for p in predictions], np.array([p["spam_probability"] for p in predictions])


def _confusion(y, p, threshold) -> list[list[int]]:
    y, spam = np.asarray(y), np.asarray(p) >= threshold
    return [[int((~spam & (y == 0)).sum()), int((spam & (y == 0)).sum())],
            [int((~spam & (y == 1)).sum()), int((spam & (y == 1)).sum())]]


def test_an_early_stopped_run_tests_its_best_weights_not_its_last(early_stopped):
    # the test split must be scored with the weights of the lowest validation loss, which model/ holds; scored with
    # the last weights, the recorded probabilities would not be what the saved model gives
    metrics = load_run(early_stopped).metrics
    assert 0 < metrics["best_step"] < metrics["steps"]
    texts, recorded = _recorded_test(early_stopped)
    assert np.allclose(Predictor.load(early_stopped).predict(texts), recorded, atol=1e-4)


def test_early_stopping_comes_exactly_patience_validations_after_the_best(early_stopped):
    # patience 2: the second validation without a lower loss stops the run, not the third
    events = read_history(early_stopped)
    [stop] = [e for e in events if e["event"] == "early_stop"]
    assert stop["reason"] == "patience"
    after_best = [e["step"] for e in events if e["event"] == "eval" and e["step"] > stop["best_step"]]
    assert len(after_best) == EARLY["patience"] and after_best[-1] == stop["step"] == load_run(early_stopped).metrics[
        "steps"]


def test_validation_metrics_are_counted_at_the_runs_threshold(early_stopped):
    # the validation scores kept with the best weights were once counted at 0.5 whatever the run's threshold
    from core.data import load_messages, split_messages
    run = load_run(early_stopped)
    validation = run.metrics["validation"]
    assert run.metrics["threshold"] == validation["threshold"] == EARLY["threshold"]
    c = run.config
    part = split_messages(load_messages(c["data_info"]["source"]).frame, c["val_fraction"], c["test_fraction"],
                          c["seed"])["validation"]
    p = Predictor.load(early_stopped).predict(part["text"].tolist())
    assert validation["confusion_matrix"] == _confusion(part["label"], p, EARLY["threshold"])
    assert validation["confusion_matrix"] != _confusion(part["label"], p, 0.5)  # else the threshold would not show


def test_evaluating_a_file_counts_at_the_runs_threshold(early_stopped, tmp_path):
    from conftest import make_messages, write_uci
    from core.evaluate import evaluate_run
    result = evaluate_run(early_stopped, write_uci(tmp_path / "other.txt", make_messages(30, 15, seed=7)))
    y = [p["label"] for p in result["predictions"]]
    p = [p["spam_probability"] for p in result["predictions"]]
    assert result["metrics"]["threshold"] == EARLY["threshold"]
    assert result["metrics"]["confusion_matrix"] == _confusion(y, p, EARLY["threshold"]) != _confusion(y, p, 0.5)


def test_predict_gives_verdicts_at_the_runs_threshold(early_stopped, capsys):
    from core.cli import main
    texts, _ = _recorded_test(early_stopped)
    assert main(["predict", "--run", str(early_stopped), *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    p = np.array([r["spam_probability"] for r in rows])
    assert ((EARLY["threshold"] <= p) & (p < 0.5)).sum() >= 2  # verdicts that 0.5 would give otherwise
    assert [r["verdict"] for r in rows] == ["spam" if q >= EARLY["threshold"] else "ham" for q in p]


def test_balanced_class_weights_are_n_over_twice_each_class_count_and_change_the_training_loss(sms_file, tiny_bert,
                                                                                                tmp_path):
    # the recall test above passes with the weights switched off too: this one fails if "balanced" weighs nothing
    from core.data import load_messages, split_messages
    from core.train import _class_weight
    cfg = quick_config("frozen", sms_file, tiny_bert, tmp_path, epochs=2, precision="fp32")
    splits = split_messages(load_messages(sms_file).frame, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    n_ham, n_spam = np.bincount(splits["train"]["label"], minlength=2)  # 63 and 28 of the 91 training messages
    weight = _class_weight(cfg, splits, torch.device("cpu"))
    assert weight is not None and weight.tolist() == pytest.approx([91 / (2 * n_ham), 91 / (2 * n_spam)])
    assert _class_weight(dataclasses.replace(cfg, class_weight="none"), splits, torch.device("cpu")) is None

    def losses(class_weight):  # the same head on the same cached features, batches and seed
        run_dir = train(dataclasses.replace(cfg, class_weight=class_weight))
        return [e["loss"] for e in read_history(run_dir) if e["event"] in ("train", "eval")]
    balanced, unweighted = losses("balanced"), losses("none")
    assert len(balanced) == len(unweighted) and all(a != pytest.approx(b) for a, b in zip(balanced, unweighted))


def test_cached_features_are_reused_only_for_the_same_max_length_and_the_same_data(sms_file, tiny_bert, tmp_path):
    # the cache key once could lose a field: features of 128 tokens served to a run of 16, or of yesterday's file
    # served for an edited one, would train a head on other inputs than the run names, with no error
    def cached(**overrides) -> bool:
        run_dir = train(quick_config("frozen", sms_file, tiny_bert, tmp_path, epochs=1, **overrides))
        [ready] = [e for e in read_history(run_dir) if e["event"] == "features_ready"]
        return ready["cached"]
    assert cached() is False
    assert cached(max_length=16) is False
    assert cached() is True and cached(max_length=16) is True
    rows = sms_file.read_text(encoding="utf-8").splitlines()
    sms_file.write_text("\n".join([rows[0] + " edited"] + rows[1:]) + "\n", encoding="utf-8")  # as many messages
    assert cached() is False


# ---------------------------------------------------------------------------- what the optimiser is given
SPIED = {"epochs": 1, "min_epoch_steps": 0, "warmup_ratio": 0.5, "max_grad_norm": 0.1, "weight_decay": 0.05,
         "precision": "fp32"}  # 6 steps of 16 messages, the first 3 warming up


@pytest.fixture(scope="module")
def spied_finetune(tiny_bert, tmp_path_factory) -> dict:
    """A tiny fp32 fine-tune whose AdamW parameter groups and gradient clipping are recorded as they happen. The spies
    call through: the run trains exactly as it would without them."""
    from accelerate import Accelerator
    from conftest import make_messages, write_uci
    tmp = tmp_path_factory.mktemp("spied")
    seen = {"groups": [], "clips": []}

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, params, *args, **kwargs):
            params = list(params)
            seen["groups"].append([{**group, "params": list(group["params"])} for group in params])
            super().__init__(params, *args, **kwargs)

    clip = Accelerator.clip_grad_norm_

    def recording_clip(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        before = clip(self, parameters, max_norm, norm_type)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None]))
        seen["clips"].append((max_norm, float(before), float(after)))
        return before

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim, "AdamW", RecordingAdamW)
        patch.setattr(Accelerator, "clip_grad_norm_", recording_clip)
        seen["run"] = train(quick_config("finetune", write_uci(tmp / "sms.txt", make_messages()), tiny_bert, tmp,
                                         **SPIED))
    return seen


def test_the_learning_rate_warms_up_linearly_then_decays(spied_finetune):
    # warmup_ratio 0.5 of 6 steps: the train events' lr (logged after each step) climbs a third of the peak a step
    lr = QUICK["finetune"]["lr"]
    logged = [(e["step"], e["lr"]) for e in read_history(spied_finetune["run"]) if e["event"] == "train"]
    assert logged == [(k, pytest.approx(lr * f)) for k, f in enumerate([1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0], 1)]


def test_every_step_clips_the_gradient_norm_to_max_grad_norm(spied_finetune):
    clips = spied_finetune["clips"]
    assert len(clips) == load_run(spied_finetune["run"]).metrics["steps"] == 6
    assert all(max_norm == SPIED["max_grad_norm"] for max_norm, _, _ in clips)
    assert all(before > SPIED["max_grad_norm"] for _, before, _ in clips)  # so clipping had work at every step
    assert [after for _, _, after in clips] == pytest.approx([SPIED["max_grad_norm"]] * 6, rel=1e-4)


def test_biases_and_layernorm_weights_are_not_decayed(tiny_bert, spied_finetune):
    from transformers import AutoModelForSequenceClassification
    [groups] = spied_finetune["groups"]
    decay, no_decay = groups
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (SPIED["weight_decay"], 0.0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    one_d = [name for name, p in model.named_parameters() if p.ndim < 2]
    assert any("LayerNorm.weight" in name for name in one_d) and any(name.endswith(".bias") for name in one_d)
    # every 1-D tensor (biases, LayerNorm weights) in the group without decay, every matrix in the other
    assert sorted(p.shape for p in no_decay["params"]) == sorted(p.shape for p in model.parameters() if p.ndim < 2)
    assert sorted(p.shape for p in decay["params"]) == sorted(p.shape for p in model.parameters() if p.ndim >= 2)


def test_a_very_long_message_is_cut_to_max_message_chars_before_it_is_tokenised(early_stopped):
    # a pasted megabyte is scored, but not tokenised whole; the cut shows where the first MAX_MESSAGE_CHARS
    # characters are blank: what follows them must not count, in the score or in the token count
    from core.predict import MAX_MESSAGE_CHARS
    predictor = Predictor.load(early_stopped)
    spam = "WINNER!! you have won a £5000 prize, call 09061234 now"
    [cut], [blank], [alone] = (predictor.predict([text]) for text in (" " * MAX_MESSAGE_CHARS + spam,
                                                                       " " * MAX_MESSAGE_CHARS, spam))
    assert cut == blank and abs(alone - blank) > 0.1
    assert predictor.token_counts([" " * MAX_MESSAGE_CHARS + spam]) == predictor.token_counts([""])
    [huge] = predictor.predict(["WIN cash now " * 100_000])
    assert 0 <= huge <= 1
