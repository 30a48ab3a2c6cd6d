"""Every dashboard page, driven with streamlit's AppTest, with no runs, with completed runs, and with a
running, failed, interrupted and broken run present. The runs are made by the real training code
(core.train) with the tiny random BERT on synthetic messages; the running job is a real process."""
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import psutil
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ctrl_c_at_evaluations, make_messages, saved_evaluation, write_uci
from core import jobs
from core.config import TrainConfig
from core.evaluate import evaluate_run, seen_in_training
from core.predict import Predictor
from core.runs import RunError, list_runs, load_run, read_history, running_job, saved_state
from core.train import train

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["views/overview.py", "views/train.py", "views/compare.py", "views/playground.py", "views/runs.py"]


def _wait(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="session")
def sms_data(tmp_path_factory) -> Path:
    return write_uci(tmp_path_factory.mktemp("data") / "sms.txt", make_messages())


def _config(mode, root: Path, tiny_bert, data, **kw):
    return TrainConfig(mode=mode, model=tiny_bert, data=str(data), runs_dir=str(root / "runs"),
                       cache_dir=str(root / "cache"), max_length=32, **kw)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_bert, sms_data) -> Path:
    """A runs folder with one completed baseline, frozen and fine-tuned run (same data, same split)."""
    root = tmp_path_factory.mktemp("trained")
    for mode, epochs in (("baseline", None), ("frozen", 20), ("finetune", 3)):
        train(_config(mode, root, tiny_bert, sms_data, epochs=epochs))
    return root / "runs"


def _app(monkeypatch, tmp_path, runs_dir, tiny_bert, data) -> AppTest:
    monkeypatch.setenv("SPAM_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("SPAM_MODEL", tiny_bert)
    if data is None:
        monkeypatch.delenv("SPAM_DATA", raising=False)
    else:
        monkeypatch.setenv("SPAM_DATA", str(data))
    monkeypatch.setenv("SPAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SPAM_UPLOADS_DIR", str(tmp_path / "uploads"))
    return AppTest.from_file(APP, default_timeout=90).run()


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _scores(run) -> str:
    """How the job's outcome line gives a completed run's test scores, read from its metrics.json."""
    test = json.loads((Path(run.path) / "metrics.json").read_text())["test"]
    return f" · test accuracy {test['accuracy']:.3f}, F1 {test['f1']:.3f}, AUROC {test['auroc']:.3f}"


def _unescape(markdown: str) -> str:
    """The text a reader sees in a message whose user-derived parts were markdown-escaped (common.plain)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def _texts(at: AppTest) -> str:
    """Everything a page says in messages, captions and markdown, as one string to search."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success") for e in getattr(at, kind)]
    return _unescape("\n".join(str(p) for p in parts))


def _errors(where) -> list[str]:
    return [_unescape(e.value) for e in where.error]


def _keys(elements) -> list[str]:
    return [e.key for e in elements]


def _errors_beside(at: AppTest, key: str) -> list[str]:
    """The errors in the innermost column that holds the widget `key`: the ones shown right under it."""
    def keys(block):
        return [w.key for kind in ("number_input", "text_input", "selectbox") for w in getattr(block, kind)]
    holding = [col for col in at.columns if key in keys(col)]
    return _errors(min(holding, key=lambda col: len(keys(col))))



def _copied_run(run, runs_dir: Path, tag: str, config=None, metrics=None):
    """A copy of a completed run under a new id, with its config.json and metrics.json edited in place by the given
    functions: a case (a sample's run, another split, a stopped run) set up without training one."""
    path = Path(shutil.copytree(run.path, runs_dir / run.path.name.replace(run.mode, f"{run.mode}-{tag}")))
    for name, edit in (("config.json", config), ("metrics.json", metrics)):
        if edit:
            data = json.loads((path / name).read_text())
            edit(data)
            (path / name).write_text(json.dumps(data))
    return load_run(path)


def _on_messages(n: int, created: float | None = None):
    """A config.json edit: the run trained on a sample of n messages (a learning curve's), created then."""
    def edit(config):
        config["train_messages"] = n
        config["data_info"]["splits"]["train"]["rows"] = n
        if created is not None:
            config["created"] = created
    return edit

# ---------------------------------------------------------------------------- no runs yet

def test_every_page_renders_with_no_runs_and_the_quick_preset_gets_a_first_result(
        monkeypatch, tmp_path, tiny_bert, sms_data):
    runs_dir = tmp_path / "runs"
    at = _app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data)
    for page in PAGES:
        _page(at, page)
    for page, empty in (("views/compare.py", "No completed frozen or fine-tuned run"),
                        ("views/playground.py", "no trained model"), ("views/runs.py", "No runs yet")):
        assert empty in _texts(_page(at, page))
        assert "messages after removing" in _texts(at.sidebar), page  # the page ended early, the sidebar did not

    _page(at, "views/overview.py")
    assert "fine-tuned" in _texts(at)  # the two-sentence explanation
    preset = next(b for b in at.button if b.label == "Train all three with the quick preset")
    preset.click().run()
    assert not at.exception, [e.value for e in at.exception]
    _wait(lambda: running_job(runs_dir) is None and len(list_runs(runs_dir)) == 3)
    runs = list_runs(runs_dir)
    assert sorted(r.mode for r in runs) == ["baseline", "finetune", "frozen"]
    assert all(r.usable for r in runs), [(r.id, r.status, r.error) for r in runs]
    finetune = next(r for r in runs if r.mode == "finetune")
    assert finetune.config["epochs"] == 1 and finetune.config["max_length"] == 64  # the quick preset

    at.run()  # the page now shows the headline instead of the button
    table = at.dataframe[0].value
    assert list(table["model"]) == ["Frozen BERT + MLP head", "Fine-tuned BERT", "TF-IDF baseline"]
    assert np.allclose(table["F1"], [next(r for r in runs if r.mode == m).metrics["test"]["f1"]
                                     for m in ("frozen", "finetune", "baseline")])
    assert not any(b.label == "Train all three with the quick preset" for b in at.button)
    assert "The paired test above is what says whether the two BERTs differ." in _texts(at)
    # one encoder: named once in the caption, not in a column that repeats it on every BERT row
    assert "encoder" not in table.columns
    assert f"is called spam at probability ≥ 0.5. Both BERTs use {Path(finetune.model).name}." in _texts(at)
    shutil.rmtree(finetune.path)  # a run of the job deleted since: the job still ran its whole plan
    _page(at, "views/train.py")
    assert "Frozen BERT + MLP head finished" in _texts(at) + " ".join(s.value for s in at.success)
    assert not any("ended before it started" in w.value for w in at.warning)


def test_quick_preset_caption_gives_the_time_measured_for_this_kind_of_cpu(monkeypatch, tmp_path, tiny_bert, sms_data):
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data)
    for native, said in ((True, "(this one has)"), (False, "(this one has not, so it trains in fp32)")):
        monkeypatch.setattr("core.features._bf16_native", lambda: native)
        _page(at, "views/overview.py")
        caption = next(c.value for c in at.caption if c.value.startswith("The quick preset trains"))
        assert "50-80 s in all where the CPU has native bf16" in caption and said in caption, caption


def test_sidebar_says_what_to_do_without_data_and_accepts_an_upload(monkeypatch, tmp_path, tiny_bert):
    monkeypatch.chdir(tmp_path)  # no data/SMSSpamCollection here, and HF_HUB_OFFLINE=1
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, None)
    assert any("no SMS Spam Collection found" in e for e in _errors(at.sidebar))
    preset = next(b for b in at.button if b.label == "Train all three with the quick preset")
    assert preset.disabled

    upload = at.sidebar.file_uploader[0]
    upload.set_value(("one-class.csv", b"label,text\n" + b"".join(b"ham,hello %d\n" % i for i in range(30)),
                      "text/csv")).run()
    assert any("only one class" in e for e in _errors(at.sidebar))

    good = pd.DataFrame(make_messages(40, 20, seed=3), columns=["label", "text"]).to_csv(index=False)
    at.sidebar.file_uploader[0].set_value(("mine.csv", good.encode(), "text/csv")).run()
    assert not at.exception and not at.sidebar.error, [e.value for e in at.sidebar.error]
    saved = list((tmp_path / "uploads").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("mine-")
    assert any("mine-" in _unescape(c.value) and "60 messages" in c.value for c in at.sidebar.caption)
    assert not next(b for b in at.button if b.label == "Train all three with the quick preset").disabled
    # a reload is a new session: the URL names the upload, so it stays the data in use, on every page
    assert at.query_params["data"] == saved[0].name
    reloaded = AppTest.from_file(APP, default_timeout=90)
    reloaded.query_params["data"] = saved[0].name
    for page in PAGES:
        _page(reloaded.run(), page)
        assert any("mine-" in _unescape(c.value) and "60 messages" in c.value for c in reloaded.sidebar.caption), page
        assert reloaded.query_params["data"] == saved[0].name
    reloaded.sidebar.button(key="data_reset").click().run()
    assert "data" not in reloaded.query_params and any("no SMS Spam Collection found" in e for e in _errors(reloaded.sidebar))
    # a link can name only a file in the uploads folder, never a path elsewhere on the machine
    for linked in ("../uploads/" + saved[0].name, str(saved[0]), "no-such-upload.csv"):
        elsewhere = AppTest.from_file(APP, default_timeout=90)
        elsewhere.query_params["data"] = linked
        elsewhere.run()
        assert any("no SMS Spam Collection found" in e for e in _errors(elsewhere.sidebar)), linked
        assert "data" not in elsewhere.query_params
        # a data change said, not silent (a deleted upload, or a link from another machine)
        assert [_unescape(w.value) for w in elsewhere.sidebar.warning if "The link named" in w.value] == [
            f"The link named an uploaded dataset, {linked}, that is not in the uploads folder here (deleted, "
            "or a link from another machine): this is the default data. Upload the file again to use it."], linked
        elsewhere.sidebar.file_uploader[0].set_value(("mine.csv", good.encode(), "text/csv")).run()
        assert not [w for w in elsewhere.sidebar.warning if "The link named" in w.value]  # a dataset chosen since
        elsewhere.sidebar.button(key="data_reset").click().run()  # and back to the default: still old news
        assert not [w for w in elsewhere.sidebar.warning if "The link named" in w.value]
    # an uploads folder that cannot be written (full, read-only; here under a file, which holds for root too): the
    # upload is refused in words, and the rest of the sidebar is drawn
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("SPAM_UPLOADS_DIR", str(tmp_path / "a-file" / "uploads"))
    unwritable = AppTest.from_file(APP, default_timeout=90).run()
    unwritable.sidebar.file_uploader[0].set_value(("mine.csv", good.encode(), "text/csv")).run()
    assert not unwritable.exception
    assert [e for e in _errors(unwritable.sidebar)
            if _unescape(e).startswith(f"cannot keep the upload in {tmp_path / 'a-file' / 'uploads'} (")]
    assert {"Training job", "Model"} <= {h.value for h in unwritable.sidebar.subheader}


def test_runs_trained_on_other_data_than_the_sidebar_chose_are_said_to_be(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                         trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")

    def notes():
        return [_unescape(i.value) for i in at.info if "the dataset chosen in the sidebar" in i.value]
    assert not notes()  # trained on the data in use
    good = pd.DataFrame(make_messages(40, 20, seed=3), columns=["label", "text"]).to_csv(index=False)
    at.sidebar.file_uploader[0].set_value(("mine.csv", good.encode(), "text/csv")).run()
    [upload] = list((tmp_path / "uploads").iterdir())
    trained_on = Path(list_runs(trained)[0].config["data_info"]["source"]).name
    said = f"trained on {trained_on}, not on {upload.name}, the dataset chosen in the sidebar: that one is for new " \
           "runs, on the Train page."
    assert notes() == [f"The runs shown were {said}"]
    at = _page(at, "views/compare.py")
    assert notes() == [f"The runs shown were {said}"]
    at.selectbox(key="compare_baseline").set_value("none").run()  # a baseline fitted on the upload, picked
    baseline = load_run(train(_config("baseline", tmp_path, tiny_bert, upload)))
    at.run()
    at.selectbox(key="compare_baseline").set_value(baseline.id).run()
    assert notes() == [f"The frozen and fine-tuned runs were {said}"]


def test_a_run_trained_on_the_data_file_before_it_was_edited_is_said_to_be(monkeypatch, tmp_path, tiny_bert):
    data = write_uci(tmp_path / "mine.txt", make_messages())
    train(_config("baseline", tmp_path, tiny_bert, data))
    with open(data, "a") as f:
        f.write("spam\tWIN a brand new prize today, reply YES\n")  # edited since: another fingerprint
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, data), "views/overview.py")
    assert [_unescape(i.value) for i in at.info if "the dataset chosen in the sidebar" in i.value] == [
        "The run shown was trained on an earlier version of mine.txt, not on mine.txt, the dataset chosen in the "
        "sidebar: that one is for new runs, on the Train page."]


# ---------------------------------------------------------------------------- completed runs

def test_every_page_renders_with_completed_runs(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    at = _app(monkeypatch, tmp_path, trained, tiny_bert, sms_data)
    for page in PAGES:
        _page(at, page)
    _page(at, "views/overview.py")
    assert len(at.dataframe[0].value) == 3 and "Test split" in _texts(at)
    # one threshold for all: named once under the table, not a column of 0.5s
    assert "threshold" not in at.dataframe[0].value.columns and "called spam at probability ≥ 0.5" in _texts(at)
    _page(at, "views/runs.py")
    assert len(at.dataframe[0].value) == 3


def test_runs_page_keeps_its_picks_across_a_page_switch(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    runs = {r.mode: r for r in list_runs(trained)}
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/runs.py")
    at.multiselect(key="runs_overlay").set_value([runs["baseline"].id, runs["frozen"].id]).run()
    at.selectbox(key="runs_one").set_value(runs["frozen"].id).run()
    assert at.selectbox(key="runs_one").value != list_runs(trained)[0].id  # not what the page would pick itself
    _page(at, "views/overview.py")
    _page(at, "views/runs.py")
    assert at.multiselect(key="runs_overlay").value == [runs["baseline"].id, runs["frozen"].id]
    assert at.selectbox(key="runs_one").value == runs["frozen"].id
    # a link to a run (as after a killed job) shows that run, each time it is followed, and adds it to the overlay
    for _ in range(2):
        at.query_params["run"] = runs["finetune"].id
        _page(at, "views/runs.py")
        assert at.selectbox(key="runs_one").value == runs["finetune"].id and "run" not in at.query_params
        assert runs["finetune"].id in at.multiselect(key="runs_overlay").value
        at.selectbox(key="runs_one").set_value(runs["baseline"].id).run()
        _page(at, "views/overview.py")


def _expected_verdict(runs: dict, threshold: float) -> list[str]:
    """The phrases "What fine-tuning bought" must hold, counted here from the stored per-message probabilities."""
    y = np.array([p["label"] for p in runs["frozen"].metrics["predictions"]])
    called = {m: np.array([p["spam_probability"] for p in run.metrics["predictions"]]) >= threshold
              for m, run in runs.items()}
    missed = {m: int((~c & (y == 1)).sum()) for m, c in called.items()}
    alarms = {m: int((c & (y == 0)).sum()) for m, c in called.items()}
    t, f = missed["finetune"] + alarms["finetune"], missed["frozen"] + alarms["frozen"]
    change = "as many errors as" if t == f else \
        f"{abs(t - f)} {'fewer' if t < f else 'more'} error{'s' * (abs(t - f) != 1)} than"
    right = {m: called[m] == (y == 1) for m in ("frozen", "finetune")}
    params = runs["finetune"].metrics["trainable_parameters"] / runs["frozen"].metrics["trainable_parameters"]
    from scipy.stats import binomtest
    only = [int((right[a] & ~right[b]).sum()) for a, b in (("finetune", "frozen"), ("frozen", "finetune"))]
    p = binomtest(only[0], sum(only), 0.5).pvalue if sum(only) else 1.0
    short = f"the fine-tuned and the frozen model make as many errors ({t})" if t == f else \
        f"the fine-tuned model makes {'fewer' if t < f else 'more'} errors than the frozen one ({t} against {f}), " \
        "more than chance explains" if p < 0.05 else \
        f"the fine-tuned model makes {plural(t, 'error')}, the frozen one {f}: a difference within chance"
    b = missed["baseline"] + alarms["baseline"]
    took = runs["baseline"].metrics["total_seconds"]
    took = f"{round(took, 1 if took < 10 else None):g} s" if took >= 0.05 else "under 0.1 s"
    return [f"**In short: {short}; the TF-IDF baseline, whose run took {took}, "
            f"makes {b}.**\n\n At threshold {threshold:g}, on the same {len(y):,} test messages, the fine-tuned model "
            f"makes **{change} "
            f"the frozen one**: {t} against {f}. It misses {missed['finetune']} spam (frozen: {missed['frozen']}) and "
            f"raises {alarms['finetune']} false alarm",
            f" (frozen: {alarms['frozen']}).",
            f"Only the fine-tuned model is right on {plural(int((right['finetune'] & ~right['frozen']).sum()), 'message')}, "
            f"only the frozen one on {int((right['frozen'] & ~right['finetune']).sum())}: McNemar p = {p:.3g}, "
            f"**{'a real difference' if p < 0.05 else 'not a significant difference'}** at the 5 % level.",
            f"fine-tuning trains {params:.0f} times as many parameters",
            " s on the CPU",  # as the runs recorded it: a copied runs folder is not "this machine"
            f"the TF-IDF baseline makes {plural(missed['baseline'] + alarms['baseline'], 'error')} "
            f"({missed['baseline']} spam missed"]


def plural(count: int, thing: str) -> str:
    return f"{count} {thing}" + ("s" if count != 1 else "")


def test_overview_says_what_fine_tuning_bought_in_messages(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    runs = {r.mode: r for r in list_runs(trained)}
    for run in runs.values():  # the page's default: each run at its own threshold, 0.5 here
        assert run.metrics["threshold"] == 0.5
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/overview.py")
    assert "What fine-tuning bought" in [h.value for h in at.subheader]
    assert "What fine-tuning buys as labels get scarce" not in [h.value for h in at.subheader]  # one size each
    [verdict] = [_unescape(m.value) for m in at.markdown if "test messages" in m.value]
    for phrase in _expected_verdict(runs, 0.5):
        assert phrase in verdict
    # Compare's HTML report counts at the slider's threshold, as its confusion matrices do
    import dataclasses
    from views.common import finetuning_verdict
    for threshold in (0.3, 0.7):
        verdict = finetuning_verdict(runs["frozen"], runs["finetune"], runs["baseline"], threshold)
        for phrase in _expected_verdict(runs, threshold):
            assert phrase in verdict
    # runs scored at thresholds of their own: the paragraph counts each at its own and says so
    thresholds = {"frozen": 0.3, "finetune": 0.5, "baseline": 0.7}
    own = {m: dataclasses.replace(r, metrics={**r.metrics, "threshold": thresholds[m]}) for m, r in runs.items()}
    verdict = finetuning_verdict(own["frozen"], own["finetune"], own["baseline"])
    frozen_missed = _expected_verdict(runs, 0.3)[0].split("(frozen: ")[1].split(")")[0]
    # after the notes that the frozen run is a quick one and the tiny fine-tune's 9 steps few, which come first
    assert verdict.rsplit("as what fine-tuning buys. ", 1)[1].startswith("\n\n**In short: ")  # its own paragraph
    # the baseline, at another threshold than the fine-tuned model, is not counted in the short line
    assert ".**\n\n Each at its own threshold (0.3 frozen, 0.5 fine-tuned), on the same " in verdict
    assert "baseline" not in verdict.split("**In short: ")[1].split(".**")[0]
    assert f"(frozen: {frozen_missed})" in verdict
    # the baseline's threshold is named when it differs, and then it is not counted against the fine-tuned model
    assert re.search(r", at threshold 0\.7\), and its run took [\d.]+ s\.$", verdict), verdict
    # a resumed run's time is the sum of the stretches it ran, not the time from its start: the cost says so
    resumed = dataclasses.replace(runs["finetune"], metrics={**runs["finetune"].metrics,
                                                              "resumed": [{"from_step": 3, "after": "killed"}]})
    assert "the fine-tuned run was stopped and resumed, and its time adds up the stretches it ran)." in \
        finetuning_verdict(runs["frozen"], resumed, None)
    assert "resumed" not in finetuning_verdict(runs["frozen"], runs["finetune"], None)
    # runs on two different encoders: the headline says the gap is not fine-tuning's alone
    assert "different encoders" not in verdict
    other_encoder = dataclasses.replace(runs["frozen"], model="bert-base-uncased")
    assert f"The two runs used different encoders (frozen: bert-base-uncased; fine-tuned: {runs['finetune'].model})" \
        in _unescape(finetuning_verdict(other_encoder, runs["finetune"], None))
    # the defaults weight the frozen head's loss by class and not the fine-tune's: the split of errors says so
    assert runs["frozen"].config["class_weight"] == "balanced" and runs["finetune"].config["class_weight"] == "none"
    assert "The frozen run trained with class-balanced loss and the other without" in verdict
    unweighted = dataclasses.replace(runs["frozen"], config={**runs["frozen"].config, "class_weight": "none"})
    assert "class-balanced" not in finetuning_verdict(unweighted, runs["finetune"], None)
    # a run shorter than its mode's default (the quick preset's 1-epoch fine-tune) is named as such, in bold
    assert runs["frozen"].config["epochs"] == 20 and runs["finetune"].config["epochs"] == 3
    assert verdict.startswith("**The frozen run is a quick one**: it trained 20 epochs, fewer than the default 60")
    assert "fine-tuned run is a quick one" not in verdict
    quick = dataclasses.replace(runs["finetune"], config={**runs["finetune"].config, "epochs": 1})
    full_frozen = dataclasses.replace(runs["frozen"], config={**runs["frozen"].config, "epochs": 60})
    assert "**The fine-tuned run is a quick one**: it trained 1 epoch, fewer than the default 3, so a full-length " \
           "run may do better." in finetuning_verdict(full_frozen, quick, None)
    both = finetuning_verdict(runs["frozen"], quick, None)  # a 1-epoch "Both" job: the advice once, not twice
    assert "**Both runs are quick ones**: the fine-tuned one trained 1 epoch, fewer than the default 3; the frozen " \
           "one trained 20 epochs, fewer than the default 60. Full-length runs may do better: train them on the " \
           "Train page before reading what follows as what fine-tuning buys." in both
    assert both.startswith("**Both runs are quick ones**")  # first: mid-paragraph, it was read past
    assert both.count("Train page") == 1 and "is a quick one" not in both

    # a frozen run on another split: no message-by-message test, and the page says why
    train(_config("frozen", tmp_path, tiny_bert, sms_data, epochs=2, seed=7))
    for run in list_runs(trained):
        if run.mode != "frozen":
            shutil.copytree(run.path, tmp_path / "runs" / run.id)
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/overview.py")
    [verdict] = [_unescape(m.value) for m in at.markdown if "test messages" in m.value]
    assert "tested on different messages" in verdict and "McNemar" not in verdict
    assert "The paired test above" not in _texts(at)  # there is none to point to


def test_overview_says_which_missing_run_the_running_job_is_training(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                     trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs", ignore=lambda _, names: [
        n for n in names if "finetune" in n]))  # the job's fine-tune has not completed yet
    starting = jobs.Progress(None, "finetune", "starting", 0.0, None, detail="loading data and model")
    monkeypatch.setattr(jobs, "current_job", lambda *_: starting)
    me = psutil.Process()  # the app's job: a process alive
    monkeypatch.setattr(jobs, "last_job", lambda *_: {"modes": ["finetune"], "pid": me.pid,
                                                      "pid_started": me.create_time()})
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    infos = [i.value for i in at.info]
    assert "Fine-tuned BERT: the running job (above) is training it; the results appear here when it completes." \
        in infos
    assert not any(i.startswith("No completed run yet") for i in infos)
    # the app's last job has ended, and the running one was started from the CLI: its plan is unknown here
    monkeypatch.setattr(jobs, "last_job", lambda *_: {"modes": ["finetune"], "pid": me.pid, "pid_started": 1.0})
    at.run()
    assert not any("the running job (above) is training" in i.value for i in at.info)
    monkeypatch.setattr(jobs, "last_job", lambda *_: {"modes": ["finetune"], "pid": me.pid,
                                                      "pid_started": me.create_time()})
    monkeypatch.setattr(jobs, "current_job", lambda *_: None)  # no job: the run is missing, and where to start one
    at.run()
    assert "No completed run to show for: Fine-tuned BERT. Start one on the Train page." in [i.value for i in at.info]


def test_overview_names_each_runs_threshold_in_words_when_they_differ(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                       trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    baseline = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    metrics = json.loads((baseline.path / "metrics.json").read_text())
    (baseline.path / "metrics.json").write_text(json.dumps({**metrics, "threshold": 0.7}))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    metrics, costs = (d.value for d in at.dataframe if "model" in d.value.columns)
    assert list(metrics.columns) == ["model", "Accuracy", "Precision", "Recall", "F1", "AUROC", "AUPRC"]
    assert list(costs.columns) == ["model", "trainable params", "time (s)"]
    assert ("Each run calls a message spam at its own threshold: frozen at probability ≥ 0.5, fine-tuned at "
            "probability ≥ 0.5, baseline at probability ≥ 0.7.") in _texts(at)


def test_overview_says_when_a_frozen_runs_time_leaves_encoding_out(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                   trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    shutil.rmtree(next(r for r in list_runs(runs_dir) if r.mode == "finetune").path)  # no paragraph to say it
    note = "The frozen run read its features from the cache: its time leaves encoding out."
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    assert "What fine-tuning bought" not in _texts(at) and note not in _texts(at)  # this one encoded
    cached = train(TrainConfig(mode="frozen", model=tiny_bert, data=str(sms_data), runs_dir=str(runs_dir),
                               cache_dir=str(trained.parent / "cache"), max_length=32, epochs=20))
    assert any(e.get("event") == "features_ready" and e.get("cached") for e in read_history(cached))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    assert note in _texts(at)


def test_runs_on_fewer_training_messages_are_offered_named_and_never_the_default(monkeypatch, tmp_path, tiny_bert,
                                                                               sms_data, trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    full = {r.mode: r for r in list_runs(runs_dir)}
    # a learning curve's point, newer than the rest; the fine-tune in one pass an epoch, as before min_epoch_steps
    few = {mode: load_run(train(_config(mode, tmp_path, tiny_bert, sms_data, epochs=epochs, train_messages=40,
                                        min_epoch_steps=0))) for mode, epochs in (("frozen", 20), ("finetune", 3))}
    n_train = full["finetune"].config["data_info"]["splits"]["train"]["rows"]
    # an older run on 30 messages with early stopping (patience), which changes the weights kept: not on the curve,
    # whose points share every such setting with the run shown (a copy of the frozen one, relabelled)
    other = Path(shutil.copytree(few["frozen"].path, runs_dir / few["frozen"].path.name.replace("frozen", "frozen-x")))
    config = json.loads((other / "config.json").read_text())
    config["data_info"]["splits"]["train"]["rows"] = 30
    (other / "config.json").write_text(json.dumps({**config, "patience": 1, "train_messages": 30,
                                                   "created": config["created"] - 1}))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    for mode in ("frozen", "finetune"):
        picker = at.selectbox(key=f"overview_{mode}")
        assert picker.value == full[mode].id and picker.options[0].startswith("40 msgs · F1 ")
    assert [c.value for c in at.caption if c.value.startswith("Showing an older run")] == [
        f"Showing an older run: the newest ({_when(few[m])}) trained on 40 of the {n_train:,} training messages. "
        "Pick it here to see it." for m in ("frozen", "finetune")]

    def headline():
        return next(_unescape(m.value) for m in at.markdown if "test messages" in m.value)
    assert "training messages" not in headline()

    def errors(run):
        (_, fp), (fn, _) = run.metrics["test"]["confusion_matrix"]
        return fp + fn
    # test errors against training messages, a line per run shown: each at 40 messages and at all of them
    [curve] = [c for c in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
               if "training messages" in json.dumps(c["layout"].get("xaxis", {}))]
    lines = {t["name"]: (t["x"], t["y"]) for t in curve["data"]}
    assert lines == {"Frozen BERT + MLP head": ([40, n_train], [errors(few["frozen"]), errors(full["frozen"])]),
                     "Fine-tuned BERT": ([40, n_train], [errors(few["finetune"]), errors(full["finetune"])]),
                     "TF-IDF baseline": ([n_train], [errors(full["baseline"])])}
    # the patience-1 run on 30 messages is no point, and the page says why: a point missing without a word read as
    # no run at all; the BERTs' symbols differ from the baseline's, drawn first, so an equal count hides no point
    [left_out] = [c.value for c in at.caption if c.value.startswith("Left out of the learning curve")]
    assert left_out.endswith(f"\n- Frozen BERT + MLP head on 30 training messages (run {other.name}): patience 1, "
                             "not 0.")
    assert [t["name"] for t in curve["data"]] == ["TF-IDF baseline", "Frozen BERT + MLP head", "Fine-tuned BERT"]
    assert len({t["marker"]["symbol"] for t in curve["data"]}) == 3
    # the hover gives each BERT point's epochs and steps (a sample's min steps per epoch may have given it more)
    hovers = {t["name"]: [c[2] for c in t["customdata"]] for t in curve["data"]}
    assert hovers["Fine-tuned BERT"] == [f", 3 epochs ({r.metrics['steps']} steps)" for r in (few["finetune"],
                                                                                             full["finetune"])]
    assert hovers["TF-IDF baseline"] == [""]
    # a point that calls no message spam is said to, with the steps its epochs were
    silent = [r for r in (few["finetune"], full["finetune"]) if sum(r.metrics["test"]["confusion_matrix"][i][1]
                                                                    for i in (0, 1)) == 0]
    assert silent, "the tiny fine-tunes were expected to call nothing spam"
    assert [w.value for w in at.warning if "training messages calls no test message spam" in w.value] == [
        f"Fine-tuned BERT on {r.config['data_info']['splits']['train']['rows']:,} training messages calls no test "
        f"message spam (\"always ham\"): its 3 epochs were {r.metrics['steps']} optimisation steps. More epochs or "
        "a higher Min steps per epoch give a small sample more steps." for r in silent]
    at.selectbox(key="overview_finetune").set_value(few["finetune"].id).run()
    said = headline()  # before the counts (after the note that the frozen run is a quick one)
    assert said.index("**The two runs trained on different numbers of messages** (frozen: "
                      f"{n_train:,}; fine-tuned: 40), so the difference between them is not fine-tuning's") \
        < said.index("on the same")
    at = _page(at, "views/compare.py")  # the same picks (shared by the pages): Compare says it too
    assert [w.value for w in at.warning if "different numbers of messages" in w.value] == [
        f"The runs shown trained on different numbers of messages (frozen: {n_train:,}; fine-tuned: 40; baseline: "
        f"{n_train:,}), so the differences between them are not the models' alone. Pick runs trained on as many "
        "messages to compare the models."]
    at.selectbox(key="compare_baseline").set_value("none").run()
    at.selectbox(key="compare_finetune").set_value(full["finetune"].id).run()
    assert not [w.value for w in at.warning if "different numbers of messages" in w.value]
    at.selectbox(key="compare_finetune").set_value(few["finetune"].id).run()
    at = _page(at, "views/overview.py")
    at.selectbox(key="overview_frozen").set_value(few["frozen"].id).run()
    assert f"**Both runs trained on 40 of the {n_train:,} training messages**: the comparison is for that many " \
           "labels." in headline()
    # the tiny fine-tune's 3 epochs of 40 messages are 6 steps: so few that fine-tunes collapsed, said before the counts
    said = headline()
    assert 0 <= said.index("**The fine-tuned run trained only 6 optimisation steps**: on SMS spam, fine-tunes of 30 "
                           "steps or fewer collapsed to calling every message ham on 8 of 9 splits. Give it more "
                           "epochs or a higher Min steps per epoch before reading what follows as what fine-tuning "
                           "buys.") < said.index("on the same")
    at = _page(at, "views/runs.py")  # the runs table names the sample too
    table = next(d.value for d in at.dataframe if "settings" in d.value.columns).set_index("run")
    assert all(table.loc[r.id, "settings"].startswith("40 train msgs · ") for r in few.values())
    assert not str(table.loc[full["finetune"].id, "settings"]).startswith("40")


def test_runs_on_a_sample_with_another_setting_are_named_where_the_curve_would_be(monkeypatch, tmp_path, tiny_bert,
                                                                                 sms_data, trained):
    """The runs shown trained in fp32 and the samples in bf16 (the form's default where the CPU has it): no line has
    two sizes, so no chart, and the page names the runs and the setting that keeps them off it."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    full = {r.mode: r for r in list_runs(runs_dir)}

    def in_bf16(config):
        _on_messages(40)(config)
        config["precision"] = "bf16"
    bf16 = {mode: _copied_run(full[mode], runs_dir, "s40", config=in_bf16) for mode in ("frozen", "finetune")}
    for mode in ("frozen", "finetune"):  # the runs shown, in fp32
        config = json.loads((full[mode].path / "config.json").read_text())
        (full[mode].path / "config.json").write_text(json.dumps(config | {"precision": "fp32"}))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    assert "What fine-tuning buys as labels get scarce" in [h.value for h in at.subheader]
    assert not [c for c in at.get("plotly_chart") if "training messages" in c.proto.spec]
    [note] = [c.value for c in at.caption if "training messages (run " in c.value]
    assert note.startswith("No learning curve for the runs shown: ") and note.endswith(
        f"\n- Frozen BERT + MLP head on 40 training messages (run {bf16['frozen'].id}): precision bf16, not fp32."
        f"\n- Fine-tuned BERT on 40 training messages (run {bf16['finetune'].id}): precision bf16, not fp32.")


def test_a_stopped_run_on_a_sample_is_no_point_of_the_learning_curve(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                      trained):
    """A run stopped a step in is an untrained model: as a point at its size it would draw the curve's dip, however
    new it is. The point is the newest run at that size that trained to its end."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    full = next(r for r in list_runs(runs_dir) if r.mode == "frozen")
    done = _copied_run(full, runs_dir, "s40", config=_on_messages(40, full.created + 1))

    def stop(metrics):
        metrics["stopped"] = {"status": "asked", "after_step": 1, "total_steps": 20, "weights_from_step": 1}
    stopped = _copied_run(full, runs_dir, "cut40", config=_on_messages(40, full.created + 2), metrics=stop)
    assert list_runs(runs_dir)[0].id == stopped.id and not stopped.metrics["stopped"].get("trained_to_end")
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    [curve] = [c for c in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
               if "training messages" in json.dumps(c["layout"].get("xaxis", {}))]
    [frozen] = [t for t in curve["data"] if t["name"] == "Frozen BERT + MLP head"]
    assert frozen["x"][0] == 40 and [c[0] for c in frozen["customdata"]] == [done.id, full.id]


def test_a_sample_size_only_some_runs_have_is_not_listed_as_shared(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                   trained):
    """Runs on all the training messages have no "train msgs" setting: the 40-message runs' one is not what every
    run shares, so it stays in their rows and out of the caption, which would say every run trained on 40."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    few = [_copied_run(r, runs_dir, "s40", config=_on_messages(40))
           for r in list_runs(runs_dir) if r.mode != "baseline"]
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/runs.py")
    table = next(d.value for d in at.dataframe if "settings" in d.value.columns).set_index("run")
    assert all(table.loc[r.id, "settings"].startswith("40 train msgs · ") for r in few)
    [caption] = [c.value for c in at.caption if c.value.startswith("Metrics on each run's test split")]
    assert "Settings every run shares" in caption and "train msgs" not in caption

def test_the_default_pick_ranks_training_to_the_end_then_all_the_messages_then_the_epochs():
    from types import SimpleNamespace
    from views.common import latest, passed_over

    def run(name, epochs=3, sample=None, stopped=None):  # newest first, as usable_runs gives them
        cfg = {"epochs": epochs, "train_messages": sample, "val_fraction": 0.1, "test_fraction": 0.2,
               "data_info": {"rows": 5160, "splits": {"train": {"rows": sample or 3612}}}}
        return SimpleNamespace(id=name, mode="finetune", config=cfg, created=0.0,
                               metrics={"stopped": stopped} if stopped else {})
    quick, s50, s300 = run("quick", epochs=1), run("s50", sample=50), run("s300", sample=300)
    assert latest([s50, s300, quick]) is quick  # a quick run on all the messages before a sample's full epochs
    assert passed_over([s50, s300, quick], quick, None).endswith(
        ") trained on 50 of the 3,612 training messages. Pick it here to see it.")
    cut = run("cut", stopped={"status": "asked", "after_step": 5, "total_steps": 339})
    assert latest([cut, s50]) is s50  # a run cut short is the last resort, even on all the messages
    assert passed_over([cut, s50], s50, None).endswith(") stopped early. Pick it here to see it.")
    cut_sample = run("cut_sample", sample=50, stopped={"status": "asked", "after_step": 1, "total_steps": 6})
    assert latest([cut_sample, cut]) is cut  # both cut short: the one on all the messages
    assert passed_over([cut_sample, cut], cut, None).endswith(") trained on 50 of the 3,612 training messages. "
                                                              "Pick it here to see it.")

def test_runs_are_paired_only_on_the_same_test_messages_in_the_same_order():
    """McNemar and the table of errors pair the two runs' predictions row by row: the same messages shuffled (another
    seed's split of the same data can hold them all) must not count as the same."""
    from types import SimpleNamespace

    from views.common import same_test_messages

    def run(*texts):
        return SimpleNamespace(metrics={"predictions": [{"text": t, "label": 0, "spam_probability": 0.1}
                                                        for t in texts]})
    assert same_test_messages(run("a", "b", "c"), run("a", "b", "c"))
    assert not same_test_messages(run("a", "b", "c"), run("c", "a", "b"))
    assert not same_test_messages(run("a", "b"), run("a", "b", "c"))
    assert not same_test_messages(run(), run())  # no predictions: nothing to pair


def test_unequal_training_is_said_of_two_runs_as_of_three():
    """A learning curve's frozen run on a sample beside a fine-tune on all the messages, with the baseline left out,
    still differs by its data: the warning must not wait for a third run."""
    from types import SimpleNamespace

    from views.common import unequal_training

    def run(rows):
        return SimpleNamespace(config={"data_info": {"splits": {"train": {"rows": rows}}}})
    assert unequal_training({"frozen": run(50), "finetune": run(3612)}) == (
        "The runs shown trained on different numbers of messages (frozen: 50; fine-tuned: 3,612), so the differences "
        "between them are not the models' alone. Pick runs trained on as many messages to compare the models.")
    assert unequal_training({"frozen": run(3612), "finetune": run(3612)}) is None
    assert unequal_training({"finetune": run(50)}) is None


def test_overview_names_its_runs_and_lets_you_pick_them(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    full = next(r for r in list_runs(runs_dir) if r.mode == "finetune")
    quick = load_run(train(_config("finetune", tmp_path, tiny_bert, sms_data, epochs=1)))  # a demo's quick run
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    picker = at.selectbox(key="overview_finetune")  # the full run stays the headline; the quick one is offered
    assert picker.value == full.id and picker.options[0].startswith(f"F1 {quick.metrics['test']['f1']:.3f} · 1 epoch · ")
    assert any(c.value.startswith("Showing an older run: the newest (") for c in at.caption)

    def headline():
        [verdict] = [_unescape(m.value) for m in at.markdown if "test messages" in m.value]
        return verdict
    def errors(run):
        (_, fp), (fn, _) = run.metrics["test"]["confusion_matrix"]
        return fp + fn
    frozen = next(r for r in list_runs(runs_dir) if r.mode == "frozen")
    assert f": {errors(full)} against {errors(frozen)}." in headline()
    picker.set_value(quick.id).run()
    assert f": {errors(quick)} against {errors(frozen)}." in headline()
    # the whole label, with the run id, on hover: a narrow column cuts the label's start time off
    assert at.selectbox(key="overview_finetune").help == f"Shown: {picker.options[0]}, run {quick.id}."
    at.selectbox(key="overview_finetune").set_value(full.id).run()
    assert f": {errors(full)} against {errors(frozen)}." in headline()
    # the baseline is counted against the fine-tuned model, with its time: it is the model a BERT has to beat
    baseline = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    gap = errors(baseline) - errors(full)
    against = "as many as" if gap == 0 else f"{abs(gap)} {'fewer' if gap < 0 else 'more'} than"
    assert (f"For scale, the TF-IDF baseline makes {errors(baseline)} error{'s' * (errors(baseline) != 1)} (" in headline()
            and f"), {against} the fine-tuned model, and its run took {baseline.metrics['total_seconds']:.1f} s."
            in headline())
    table = at.dataframe[0].value.set_index("model")
    assert table.loc["Fine-tuned BERT", "F1"] == full.metrics["test"]["f1"]
    _page(at, "views/compare.py")  # the pick is the one Compare shows
    assert at.selectbox(key="compare_finetune").value == full.id
    _page(at, "views/overview.py")
    at.selectbox(key="overview_baseline").set_value("none").run()  # the baseline can be left out
    assert at.selectbox(key="overview_baseline").format_func("none") == "not shown"  # said, not an empty box
    assert "TF-IDF baseline" not in list(at.dataframe[0].value["model"]) and "For scale" not in headline()
    # a tiny local model: no word about the bundled MiniLM
    assert "bundled all-MiniLM-L6-v2" not in _texts(at)

    # runs trained with the bundled MiniLM standing in for bert-base-uncased (their config says so): the page,
    # titled BERT, says which BERT it is; not when only one of them is (the encoder column shows which)
    for run in list_runs(runs_dir):
        if run.mode == "frozen":
            config = json.loads((run.path / "config.json").read_text())
            config["model"].update(source="bundled", requested="bert-base-uncased", fallback_reason="HF_HUB_OFFLINE is set")
            (run.path / "config.json").write_text(json.dumps(config))
    at.run()
    assert "bundled all-MiniLM-L6-v2" not in _texts(at)
    for run in list_runs(runs_dir):
        if run.mode != "baseline":
            config = json.loads((run.path / "config.json").read_text())
            config["model"].update(source="bundled", requested="bert-base-uncased", fallback_reason="HF_HUB_OFFLINE is set")
            (run.path / "config.json").write_text(json.dumps(config))
    at.run()
    assert "The BERT here is the bundled all-MiniLM-L6-v2, standing in for bert-base-uncased (HF_HUB_OFFLINE is set)" \
        in _texts(at)
    # one run asked for the MiniLM by name: the stand-in is said of the other alone
    for run in list_runs(runs_dir):
        if run.mode == "finetune":
            config = json.loads((run.path / "config.json").read_text())
            config["model"].update(requested="sentence-transformers/all-MiniLM-L6-v2", fallback_reason=None)
            (run.path / "config.json").write_text(json.dumps(config))
    at.run()
    assert "The BERT here is the bundled all-MiniLM-L6-v2, standing in for bert-base-uncased in the Frozen BERT + " \
           "MLP head run (HF_HUB_OFFLINE is set)" in _texts(at)


def test_a_baseline_tested_on_other_messages_is_not_the_default_and_is_flagged_when_picked(
        monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    same = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    other_data = write_uci(tmp_path / "other.txt", make_messages()[:90])  # an upload of the last 400 lines, say
    other = load_run(train(_config("baseline", tmp_path, tiny_bert, other_data)))  # newer, fitted in seconds
    assert other.metrics["test"]["n"] != same.metrics["test"]["n"]
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    assert at.selectbox(key="overview_baseline").value == same.id  # beside the BERTs: the one on their messages
    assert any(c.value.startswith("Showing an older run: the newest (") and "was tested on other messages than the "
               "Fine-tuned BERT run shown (other data, seed or split)" in c.value for c in at.caption)
    assert not any("other messages (" in c.value or "not comparable row by row" in c.value for c in at.caption)
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_baseline").value == same.id
    assert not [w for w in at.warning if "other messages" in w.value]
    # picked by hand: kept, and said on both pages
    at.selectbox(key="compare_baseline").set_value(other.id).run()
    [warning] = [w.value for w in at.warning if "other messages" in w.value]
    assert warning.startswith(f"The TF-IDF baseline run was tested on other messages ({other.metrics['test']['n']}, "
                              f"against {same.metrics['test']['n']}: other data, seed or split)")
    _page(at, "views/overview.py")
    assert at.selectbox(key="overview_baseline").value == other.id
    n = same.metrics["test"]["n"]
    assert any(c.value.startswith(f"Test split: {n:,} messages never seen in training (for Frozen BERT + MLP head and "
                                  f"Fine-tuned BERT; TF-IDF baseline: {other.metrics['test']['n']} other messages, "
                                  "from other data or another split: not comparable row by row).") for c in at.caption)



def test_a_baseline_on_other_messages_is_left_out_of_the_short_verdict(trained):
    """The "In short" line counts the baseline's errors against the fine-tuned model's: only fair on the same test
    messages. One tested on as many other messages (another split) at the same threshold is not counted there."""
    from views.common import finetuning_verdict
    runs = {r.mode: r for r in list_runs(trained)}
    predictions = runs["baseline"].metrics["predictions"]
    other = dataclasses.replace(runs["baseline"], metrics={**runs["baseline"].metrics, "predictions": [
        {**p, "text": f"{p['text']} (another split)"} for p in predictions]})

    def in_short(baseline) -> str:
        return finetuning_verdict(runs["frozen"], runs["finetune"], baseline).split("**In short: ")[1].split(".**")[0]
    assert "; the TF-IDF baseline, whose run took " in in_short(runs["baseline"])
    assert "baseline" not in in_short(other)
    assert "false alarms, on other test messages)" in finetuning_verdict(runs["frozen"], runs["finetune"], other)


def test_a_newer_frozen_run_on_other_test_messages_is_not_the_default_beside_the_fine_tune(
        monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    """The frozen default follows the fine-tuned run's test messages, as the baseline's does: a newer frozen run on
    another split beside it leaves no paired test, and the page would drop McNemar without a word why."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    frozen = next(r for r in list_runs(runs_dir) if r.mode == "frozen")

    def other_split(metrics):
        metrics["predictions"] = metrics["predictions"][::-1]

    def newer(config):
        config["created"] = frozen.created + 60
    other = _copied_run(frozen, runs_dir, "seed7", config=newer, metrics=other_split)
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    assert at.selectbox(key="overview_frozen").value == frozen.id
    assert f"Showing an older run: the newest ({_when(other)}) was tested on other messages than the Fine-tuned BERT " \
           "run shown (other data, seed or split). Pick it here to see it." in [c.value for c in at.caption]
    assert "McNemar p = " in _texts(at)


def test_back_after_a_pick_does_not_bring_back_the_bad_links_note(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                  trained):
    """A link naming no run is said once; a pick answers it. Back to before the pick is the default again, not the
    bad link, so the note must not come back."""
    _app(monkeypatch, tmp_path, trained, tiny_bert, sms_data)  # the settings; then a new session, from the link
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["baseline"] = "../../etc"
    at.run()
    note = "The link names no run here (../../etc): this is the default."
    assert note in [c.value for c in at.caption]
    at.selectbox(key="overview_baseline").set_value("none").run()
    assert at.query_params["baseline"] == "none" and note not in [c.value for c in at.caption]
    del at.query_params["baseline"]  # Back
    at.run()
    default = next(r for r in list_runs(trained) if r.mode == "baseline")
    assert at.selectbox(key="overview_baseline").value == default.id
    assert note not in [c.value for c in at.caption]

def test_run_picks_survive_a_reload_through_the_url(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    full = next(r for r in list_runs(runs_dir) if r.mode == "finetune")
    quick = load_run(train(_config("finetune", tmp_path, tiny_bert, sms_data, epochs=1)))
    frozen = next(r for r in list_runs(runs_dir) if r.mode == "frozen")
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/runs.py")
    # Runs overlays the curves of the runs the other pages compare, not the newest two (the quick run)
    assert set(at.multiselect(key="runs_overlay").value) == {frozen.id, full.id}
    _page(at, "views/overview.py")
    assert not {"frozen", "finetune", "baseline"} & set(at.query_params)  # nothing picked: the URL names nothing
    at.selectbox(key="overview_finetune").set_value(quick.id).run()
    at.selectbox(key="overview_baseline").set_value("none").run()
    assert at.query_params["finetune"] == quick.id and at.query_params["baseline"] == "none"
    _page(at, "views/train.py")  # a page without pickers keeps them in its URL too
    assert at.query_params["finetune"] == quick.id and at.query_params["baseline"] == "none"

    reloaded = AppTest.from_file(APP, default_timeout=90)  # a reload: a new session, with only the URL
    reloaded.query_params.update({"finetune": quick.id, "baseline": "none"})
    reloaded.run()
    assert reloaded.selectbox(key="overview_finetune").value == quick.id
    assert reloaded.selectbox(key="overview_baseline").value == "none"  # "not shown"
    assert "TF-IDF baseline" not in list(reloaded.dataframe[0].value["model"])
    _page(reloaded, "views/compare.py")
    assert reloaded.selectbox(key="compare_finetune").value == quick.id
    _page(reloaded, "views/runs.py")  # ...and the picked run's curves are the ones Runs shows
    assert set(reloaded.multiselect(key="runs_overlay").value) == {frozen.id, quick.id}

    shutil.rmtree(quick.path)  # the picked run deleted since: back to the default, and the URL forgets it
    _page(reloaded, "views/overview.py")
    assert reloaded.selectbox(key="overview_finetune").value == full.id and "finetune" not in reloaded.query_params
    gone = f"The run picked before, {quick.id}, is gone (deleted, perhaps in another tab, or a link from another " \
           "runs folder) or can no longer be loaded"
    assert any(c.value.startswith(gone) for c in reloaded.caption)  # said, until another pick
    _page(reloaded, "views/compare.py")
    assert any(c.value.startswith(gone) for c in reloaded.caption)
    _page(reloaded, "views/playground.py")
    reloaded.selectbox(key="play_finetune").set_value("none").run()  # a pick ("not used")
    assert not any(c.value.startswith(gone) for c in reloaded.caption)
    stale = AppTest.from_file(APP, default_timeout=90)  # an old link naming that run
    stale.query_params["finetune"] = quick.id
    stale.run()
    assert stale.selectbox(key="overview_finetune").value == full.id and "finetune" not in stale.query_params
    mangled = AppTest.from_file(APP, default_timeout=90)  # a link that names no run at all
    mangled.query_params["finetune"] = "../../etc"
    mangled.run()
    assert mangled.selectbox(key="overview_finetune").value == full.id and "finetune" not in mangled.query_params
    assert "The link names no run here (../../etc): this is the default." in [c.value for c in mangled.caption]


def test_back_and_forward_undo_and_redo_a_pick(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    # in the browser Back goes to the URL before the pick (each pick is a history entry) and reruns the page: the
    # pick follows the URL, or Back would seem to do nothing
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    full = next(r for r in list_runs(runs_dir) if r.mode == "finetune")
    quick = load_run(train(_config("finetune", tmp_path, tiny_bert, sms_data, epochs=1)))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    at.selectbox(key="overview_finetune").set_value(quick.id).run()
    at.selectbox(key="overview_finetune").set_value(full.id).run()
    assert at.query_params["finetune"] == full.id
    at.query_params["finetune"] = quick.id  # Back
    at.run()
    assert at.selectbox(key="overview_finetune").value == quick.id and at.query_params["finetune"] == quick.id
    del at.query_params["finetune"]  # Back again, to before the first pick: the default, which is the full run
    at.run()
    assert at.selectbox(key="overview_finetune").value == full.id and "finetune" not in at.query_params
    at.query_params["finetune"] = quick.id  # Forward
    at.run()
    assert at.selectbox(key="overview_finetune").value == quick.id
    _page(at, "views/compare.py")  # the pick is the one every page shows
    assert at.selectbox(key="compare_finetune").value == quick.id

    # Runs keeps a picked run in the URL, but not its default (another history entry on every visit)
    _page(at, "views/runs.py")
    assert "runs_pick" not in at.query_params
    at.selectbox(key="runs_one").set_value(full.id).run()
    assert at.query_params["runs_pick"] == full.id
    at.query_params["runs_pick"] = quick.id  # Back, to a URL that named another pick
    at.run()
    assert at.selectbox(key="runs_one").value == quick.id


def test_back_brings_back_a_typed_message(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    # each message is a history entry the app writes (not bind="query-params": leaving the page, Streamlit pushed an
    # entry without the message, and Back onto it showed an empty box); links to the Playground carry the message
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/playground.py")
    at.text_area(key="play_text").input("see you at 6").run()
    at.text_area(key="play_text").input("WINNER call 09061 now").run()
    assert at.query_params["play_text"] == "WINNER call 09061 now"
    at.toggle(key="play_explain").set_value(True).run()
    assert at.query_params["play_explain"] == "true"

    def link_to_playground():
        [link] = [link for link in at.sidebar.get("page_link") if link.proto.page == "playground"]
        return parse_qs(link.proto.query_string)
    assert link_to_playground() == {"play_text": ["WINNER call 09061 now"], "play_explain": ["true"]}
    _page(at, "views/train.py")
    assert link_to_playground()["play_text"] == ["WINNER call 09061 now"]  # another page's link still carries it
    _page(at, "views/playground.py")
    at.query_params.update({"play_text": "see you at 6"})  # Back, to the first message (no explanations yet)
    del at.query_params["play_explain"]
    at.run()
    assert at.text_area(key="play_text").value == "see you at 6" and not at.toggle(key="play_explain").value
    assert len(at.metric) == 3  # scored, not only shown
    del at.query_params["play_text"]  # Back, to before the first message: the empty box
    at.run()
    assert at.text_area(key="play_text").value == "" and "play_text" not in link_to_playground()
    at.query_params["play_text"] = "see you at 6"  # Forward
    at.run()
    assert at.text_area(key="play_text").value == "see you at 6"
    # a message typed just before a page switch reaches the app with an address that lags behind (the switch cut
    # the run that writes it short): not Back to before the last message, so what was typed stays
    del at.query_params["play_text"]
    at.text_area(key="play_text").input("typed just before a click on Runs").run()
    assert at.text_area(key="play_text").value == "typed just before a click on Runs"
    assert at.query_params["play_text"] == "typed just before a click on Runs"


def test_overview_and_playground_warn_when_a_model_calls_no_message_spam(monkeypatch, tmp_path, tiny_bert, sms_data):
    # threshold 0.999: no probability of a tiny model reaches it, so every message is called ham, as the seed's
    # frozen model did
    train(_config("frozen", tmp_path, tiny_bert, sms_data, epochs=2, threshold=0.999))
    [run] = list_runs(tmp_path / "runs")
    assert run.metrics["test"]["confusion_matrix"][0][1] + run.metrics["test"]["confusion_matrix"][1][1] == 0
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/overview.py")
    [warning] = [_unescape(w.value) for w in at.warning if "collapsed to 'always ham'" in w.value]
    assert warning.startswith("Frozen BERT + MLP head calls no test message spam")
    # with probabilities that still rank spam first, the page blames the threshold, not the model
    assert ("the threshold (0.999) is what fails" in warning) == (run.metrics["test"]["auroc"] >= 0.9)
    _page(at, "views/playground.py")  # where its 'ham' verdicts would otherwise look like a model's judgement
    assert [_unescape(w.value) for w in at.warning if "collapsed to 'always ham'" in w.value] == [warning]


def test_runs_table_shows_each_threshold_only_when_runs_differ(monkeypatch, tmp_path, tiny_bert, sms_data):
    for threshold in (0.5, 0.7):
        train(_config("frozen", tmp_path, tiny_bert, sms_data, epochs=1, threshold=threshold))
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/runs.py")
    assert sorted(at.dataframe[0].value["threshold"]) == [0.5, 0.7] and "probability ≥" not in _texts(at)


def test_compare_keeps_your_file_across_a_page_switch_until_you_forget_it(
        monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    def yours(at):
        return [d.value for d in at.dataframe if "Accuracy (yours)" in d.value.get("measure", pd.Series()).values]

    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/compare.py")
    own = pd.DataFrame(make_messages(30, 12, seed=9), columns=["label", "text"]).to_csv(index=False)
    at.file_uploader(key="compare_own").set_value(("mine.csv", own.encode(), "text/csv")).run()
    [before] = yours(at)
    _page(at, "views/overview.py")
    _page(at, "views/compare.py")  # the uploader is empty again; the file and its results are not gone
    [after] = yours(at)
    pd.testing.assert_frame_equal(after, before)
    assert "Scoring mine.csv, uploaded earlier in this session" in _texts(at)
    at.button(key="compare_own_forget").click().run()
    assert not yours(at) and "uploaded earlier" not in _texts(at)
    # removing the file from the uploader forgets it too
    at.file_uploader(key="compare_own").set_value(("mine.csv", own.encode(), "text/csv")).run()
    at.file_uploader(key="compare_own").set_value(None).run()
    assert not yours(at)


def test_your_file_rows_left_out_and_perfect_intervals_are_explained(
        monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    def scored(at):
        [table] = [d.value for d in at.dataframe if "Accuracy (yours)" in d.value.get("measure", pd.Series()).values]
        return set(table.set_index("measure").loc["messages"])

    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/compare.py")
    plain = [(label, text) for label, text in make_messages(30, 12, seed=4) if "," not in text]
    rows = [("ham", "Running 10 mins late, save me a seat"), ("spam", "WIN a prize, call 09061 now")] + plain
    # a label and a message: the unquoted commas are the message's own, and every row is scored
    two = "label,text\n" + "".join(f"{l},{t}\n" for l, t in rows)
    at.file_uploader(key="compare_own").set_value(("two.csv", two.encode(), "text/csv")).run()
    assert scored(at) == {f"{len(rows)}"} and "Left out of" not in _texts(at)
    # which of the messages each model gets wrong, from the evaluations saved beside the runs
    saved = {r.mode: saved_evaluation(r.path, "two.csv") for r in list_runs(trained)}
    wrong = {p["text"] for e in saved.values() for p in e["predictions"]
             if (p["spam_probability"] >= e["metrics"]["threshold"]) != p["label"]}
    yours = [d.value for d in at.dataframe if "frozen wrong" in d.value.columns][-1]
    assert wrong and set(yours["message"]) == wrong
    assert list(yours["fine-tuned wrong"]) == [  # ✗ where wrong
        "✗" if next((p["spam_probability"] >= 0.5) != p["label"] for p in saved["finetune"]["predictions"]
                    if p["text"] == t) else "" for t in yours["message"]]
    # the baseline is right on every message: its intervals have no width, and the page says what that means
    assert "1.000 [1.000, 1.000]" in str(next(d.value for d in at.dataframe if "measure" in d.value.columns).values)
    assert "does not show that the model makes none" in _texts(at)
    # with a third column they cannot be told apart from it: left out, and the page says so
    three = "label,text,source\n" + "".join(f"{l},{t},me\n" for l, t in rows) + "maybe,what label is this,me\n"
    at.file_uploader(key="compare_own").set_value(("three.csv", three.encode(), "text/csv")).run()
    assert scored(at) == {f"{len(rows) - 2}"}
    assert (f"Left out of three.csv: 1 with an unknown label, 2 that did not parse, of {len(rows) + 1} rows read. "
            "The scores are on the rest. Quote a message") in _texts(at)
    _page(at, "views/playground.py")  # a labelled batch says so too
    at.file_uploader(key="play_upload").set_value(("three.csv", three.encode(), "text/csv")).run()
    at.button(key="play_score").click().run()
    assert len(at.dataframe[0].value) == len(rows) - 2
    assert "Left out of three.csv: 1 with an unknown label, 2 that did not parse" in _texts(at)


def test_the_html_report_shows_names_as_the_page_does_not_their_markdown_escapes():
    """The page's notes escape a file's name for markdown (plain); the report is HTML, where "my\\_sms" would show
    its backslash."""
    import pandas as pd

    from views.common import comparison_report, plain
    name = "my_sms_2024*draft*.csv"
    html = comparison_report({"Fine-tuned BERT": ("20260101-000000-finetune-abcd", "org/bert_uncased_L-2")},
                             pd.DataFrame({"model": ["Fine-tuned BERT"], "F1": ["0.95"]}), [],
                             notes=[f"Left out of {plain(name)}: 1 with an unknown label."],
                             extra_tables={"Yours": (pd.DataFrame({"measure": ["F1"]}), [f"{plain(name)} <b>x</b>"])},
                             verdict=f"The model makes **2 fewer errors** on {plain(name)}: see http://x.co.")
    assert "\\" not in html.split("<script", 1)[0] and "\u2060" not in html
    assert f"<p>Left out of {name}: 1 with an unknown label.</p>" in html
    assert f"<p><b>{name} &lt;b&gt;x&lt;/b&gt;</b></p>" in html  # still inert: escaped for HTML
    assert f"The model makes <b>2 fewer errors</b> on {name}: see http://x.co." in html



def test_the_html_report_shows_links_and_asterisks_in_names_as_text():
    """plain() breaks a URL or e-mail address with an invisible U+2060 (against markdown autolinks) and escapes
    asterisks; the HTML report must undo both, or a copied address has a hidden character in it, and a name with
    asterisks must not close or open the verdict's bold."""
    import pandas as pd

    from views.common import comparison_report, plain
    url, mail = "http://evil.example/win", "claims@evil.example"
    html = comparison_report({}, pd.DataFrame({"model": ["Fine-tuned BERT"]}), [],
                             notes=[f"Left out of {plain(url)}, sent by {plain(mail)}: 1 row."],
                             verdict=f"Scored **{plain('spam*')}** and {plain('a**b.csv')}, **2 fewer errors**.")
    assert "\u2060" not in html
    assert f"<p>Left out of {url}, sent by {mail}: 1 row.</p>" in html
    # the name's own asterisks stay text, the verdict's ** around it still bold it
    assert "<p>Scored <b>spam*</b> and a**b.csv, <b>2 fewer errors</b>.</p>" in html


def test_a_rate_short_of_perfect_is_never_shown_as_perfect():
    from views.common import _fmt, with_interval
    assert with_interval({"auroc": 0.9987, "ci95": {"auroc": [0.9971, 0.99976]}}, "auroc") == "0.999 [0.997, 0.9998]"
    assert _fmt(1.0, 3) == "1.000" and _fmt(0.0, 3) == "0.000"  # the real ones stay as they are
    assert _fmt(0.0004, 3) == "0.0004" and _fmt(0.5, 3) == "0.500" and _fmt(None) == "–"
    assert _fmt(0.9999999, 3) == "1.000000"  # six digits at most
    assert _fmt(0.9999999999999999, 3) == "1.000" and _fmt(1e-17, 3) == "0.000"  # float error, not a miss

def test_only_intervals_of_no_width_are_explained_as_such():
    from views.common import flat_intervals
    ci = {"accuracy": [0.9996, 1.0], "recall": [1.0, 1.0], "f1": [0.0, 0.0], "auroc": [0.5, 0.5], "mcc": [0.0, 0.0]}
    assert flat_intervals({"ci95": ci}) == {0, 1}  # recall and F1; AUROC's flat 0.5 is no such end, MCC no headline
    assert flat_intervals({"ci95": {"accuracy": [0.9996, 1.0], "precision": None}}) == set()
    # MCC's flat 0 alone (a model that calls one class, every resample) is not a headline metric: no note on it
    assert flat_intervals({"ci95": {"mcc": [0.0, 0.0]}}) == set()
    assert flat_intervals({}) == set()


def test_a_model_that_calls_every_message_spam_is_said_to():
    """The other one-class failure than "always ham": accuracy is then only the share of spam, which a table of
    scores would not say."""
    from views.common import one_class_warning
    assert one_class_warning({"confusion_matrix": [[0, 90], [0, 40]], "auroc": 0.6}, "Fine-tuned BERT") == \
        "Fine-tuned BERT calls every test message spam: its accuracy is just the share of spam."
    assert one_class_warning({"confusion_matrix": [[0, 9], [0, 4]], "auroc": 0.95, "threshold": 0.01}, "X",
                             messages="message of yours") == (
        "X calls every message of yours spam: its accuracy is just the share of spam. Its probabilities still rank "
        "spam above ham (AUROC 0.950), so the threshold (0.01) is what fails, not the model.")
    assert one_class_warning({"confusion_matrix": [[80, 10], [5, 35]]}, "X") is None


def test_the_short_verdict_says_whether_a_gap_is_more_than_chance():
    """The take-away line a skimming reader keeps: "within chance" or "more than chance", from the McNemar p, and
    the baseline's count only where it was counted on the same messages at the same threshold (0 included)."""
    from views.common import _in_short
    assert _in_short(5, 7, 0.6, None, None) == \
        "the fine-tuned model makes 5 errors, the frozen one 7: a difference within chance"
    assert _in_short(5, 17, 0.01, 3, 0.34) == ("the fine-tuned model makes fewer errors than the frozen one (5 "
                                               "against 17), more than chance explains; the TF-IDF baseline, whose "
                                               "run took 0.3 s, makes 3")
    assert _in_short(17, 5, 0.01, None, None) == \
        "the fine-tuned model makes more errors than the frozen one (17 against 5), more than chance explains"
    assert _in_short(1, 2, 1.0, 3, 0.04) == ("the fine-tuned model makes 1 error, the frozen one 2: a difference "
                                             "within chance; the TF-IDF baseline, whose run took under 0.1 s, makes 3")
    assert _in_short(4, 4, 1.0, 0, None) == \
        "the fine-tuned and the frozen model make as many errors (4); the TF-IDF baseline makes 0"


def saved_evaluation_time(run) -> float:
    return saved_evaluation(run.path, "mine.csv")["evaluated_at"]


def test_compare_threshold_moves_both_matrices_and_reports_mcnemar(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/compare.py")
    assert "McNemar" in _texts(at) and "p = " in _texts(at)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    [reliability] = [c for c in charts if "Calibration" in json.dumps(c.get("layout", {}).get("title", ""))]
    assert sum("Brier" in t.get("name", "") for t in reliability["data"]) == 3  # one curve per model
    for curve in (t for t in reliability["data"] if "Brier" in t.get("name", "")):  # a hover names its model
        assert curve["hovertemplate"].startswith(curve["name"].split(" (Brier")[0] + ": predicted")
        assert all(re.fullmatch(r"1 message|\d[\d,]* messages", c) and c != "1 messages" for c in curve["customdata"])
    [roc] = [c for c in charts if "ROC curve" in json.dumps(c.get("layout", {}).get("title", ""))]
    assert "range" not in roc["layout"].get("xaxis", {})  # the whole curve first
    at.toggle(key="compare_roc_zoom").set_value(True).run()
    [roc] = [c for c in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
             if "ROC curve" in json.dumps(c.get("layout", {}).get("title", ""))]
    assert roc["layout"]["xaxis"]["range"] == [0, 0.1] and roc["layout"]["yaxis"]["range"][1] == 1.005
    on_axis = [max(t for f, t in zip(c["fpr"], c["tpr"]) if f == 0)  # where each curve leaves the y axis
               for c in (r.metrics["curves"]["roc"] for r in list_runs(trained))]
    assert roc["layout"]["yaxis"]["range"][0] == pytest.approx(max(0.0, min(on_axis) - 0.02))  # all of them in view
    [pr] = [c for c in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
            if "Precision-recall" in json.dumps(c.get("layout", {}).get("title", ""))]
    assert pr["layout"]["xaxis"]["range"] == [0.8, 1.005] and pr["layout"]["yaxis"]["range"] == [0.5, 1.005]
    from views.common import MODE_LABELS  # one column per model, one row per metric, each with its interval

    metrics_table = next(d.value for d in at.dataframe if "metric" in d.value.columns).set_index("metric")
    for run in list_runs(trained):
        test, column = run.metrics["test"], metrics_table[MODE_LABELS[run.mode]]
        assert column["threshold"] == "0.5"
        assert column["F1"] == f"{test['f1']:.3f} [{test['ci95']['f1'][0]:.3f}, {test['ci95']['f1'][1]:.3f}]"
        assert column["AUROC"].startswith(f"{test['auroc']:.3f} [")
    own = pd.DataFrame(make_messages(30, 12, seed=9), columns=["label", "text"]).to_csv(index=False)
    at.file_uploader(key="compare_own").set_value(("mine.csv", own.encode(), "text/csv")).run()
    assert not at.exception
    yours = next(d.value for d in at.dataframe if "measure" in d.value.columns).set_index("measure")
    assert list(yours.columns) == [MODE_LABELS[m] for m in ("frozen", "finetune", "baseline")]  # one per model
    assert list(yours.loc["messages"]) == ["42"] * 3 and list(yours.loc["spam"]) == ["12"] * 3
    for run in list_runs(trained):  # beside the run's own test scores
        assert yours.loc["F1 (UCI test)", MODE_LABELS[run.mode]] == f"{run.metrics['test']['f1']:.3f}"
        saved = saved_evaluation(run.path, "mine.csv")["metrics"]
        low, high = saved["ci95"]["accuracy"]  # with the interval saved beside the run
        assert yours.loc["Accuracy (yours)", MODE_LABELS[run.mode]] == f"{saved['accuracy']:.3f} [{low:.3f}, {high:.3f}]"
    for run in list_runs(trained):  # saved next to the run, with the same numbers the page shows
        saved = saved_evaluation(run.path, "mine.csv")
        assert saved["metrics"]["n"] == 42
    scored_at = {run.id: saved_evaluation_time(run) for run in list_runs(trained)}
    assert "at the slider's threshold" not in _texts(at)  # at the runs' own 0.5, the report and the Overview agree
    at.slider(key="compare_threshold").set_value(0.3).run()  # a rerun does not score the upload again
    assert {run.id: saved_evaluation_time(run) for run in list_runs(trained)} == scored_at
    off = ("The runs' own threshold, 0.5, set before testing, gives the fair counts (as the Overview page counts "
           "them): a threshold chosen on the test messages themselves can flatter either model.")
    assert f"counts errors at the slider's threshold, 0.3. {off}" in _texts(at)
    at.file_uploader(key="compare_own").set_value(("bad.csv", b"\x00\x01binary", "text/csv")).run()
    assert any("binary" in e for e in _errors(at))
    report = at.get("download_button")[-1]
    assert "compare_report" in str(report.proto.id) or report.proto.label.startswith("Download this comparison")
    frozen = next(r for r in list_runs(trained) if r.mode == "frozen")
    y = np.array([p["label"] for p in frozen.metrics["predictions"]])
    p = np.array([p["spam_probability"] for p in frozen.metrics["predictions"]])
    for threshold in (0.2, 0.9):
        at.slider(key="compare_threshold").set_value(threshold).run()
        assert not at.exception
        lines = [m.value for m in at.markdown if m.value.startswith("Precision **")]
        recall = float(re.search(r"Recall \*\*([0-9.]+)\*\*", lines[0]).group(1))  # the frozen model comes first
        assert recall == pytest.approx(((p >= threshold) & (y == 1)).sum() / (y == 1).sum(), abs=1e-3)
    # at a threshold no probability reaches, a model calls nothing spam: precision is undefined, and the page says so
    at.slider(key="compare_threshold").set_value(0.99).run()
    collapsed = [r.mode for r in list_runs(trained)  # one run of each kind, all three shown
                 if max(x["spam_probability"] for x in r.metrics["predictions"]) < 0.99]
    assert collapsed, "the tiny models were expected to stay below 0.99"
    assert sum("Precision **undefined**" in m.value for m in at.markdown) == len(collapsed)
    # one warning per model under its matrix, plus one under the metrics table per model that already calls
    # nothing spam at its own threshold
    at_own = [r for r in list_runs(trained) if sum(r.metrics["test"]["confusion_matrix"][i][1] for i in (0, 1)) == 0]
    assert sum("collapsed to 'always ham'" in w.value for w in at.warning) == len(collapsed) + len(at_own)
    # the HTML report, built as the download button builds it on a click, carries the matrices' warnings too
    import streamlit
    reports, download_button = [], streamlit.download_button
    def building(label, data, *args, **kwargs):
        if kwargs.get("key") == "compare_report":
            reports.append(data())
        return download_button(label, data, *args, **kwargs)
    monkeypatch.setattr(streamlit, "download_button", building)
    at.run()
    assert reports[-1].count("At the confusion matrices&#x27; threshold, 0.99: ") == len(collapsed)
    # and says in words what each metric measures, as the page's "What these measure" does
    from views.common import METRIC_MEANINGS
    assert all(f"{meaning}" in _unescape(_texts(at)) for meaning in METRIC_MEANINGS.values())
    assert "What the metrics measure: Accuracy: the share of all messages called right" in reports[-1]
    # the handout says the slider's threshold was chosen on the test messages, and which counts are the fair ones
    assert "set before testing, gives the fair counts (as the Overview page counts them): a threshold chosen on the " \
           "test messages themselves can flatter either model." in reports[-1]
    # the messages any of the three models gets wrong at the slider's threshold, the baseline's included
    wrong_by = {r.mode: {x["text"] for x in r.metrics["predictions"] if (x["spam_probability"] >= 0.99) != x["label"]}
                for r in list_runs(trained)}
    table = next(d.value for d in at.dataframe if "baseline wrong" in d.value.columns)
    assert set(table["message"]) == set.union(*wrong_by.values())
    assert set(table.loc[table["baseline wrong"] == "✗", "message"]) == wrong_by["baseline"]
    assert set(table["baseline wrong"]) <= {"✗", ""}
    at.text_input(key="compare_search").input("no such message anywhere").run()
    assert "No message that a model gets wrong at 0.99 contains “no such message anywhere”." in _texts(at)
    assert not any("baseline wrong" in d.value.columns for d in at.dataframe)  # no empty table


def test_compare_without_a_frozen_run_tests_the_fine_tune_against_the_baseline(monkeypatch, tmp_path, tiny_bert,
                                                                               sms_data, trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs", ignore=lambda _, names: [
        n for n in names if "frozen" in n]))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/compare.py")
    runs = {r.mode: r for r in list_runs(runs_dir)}
    assert set(runs) == {"baseline", "finetune"}
    y = np.array([p["label"] for p in runs["baseline"].metrics["predictions"]])
    right = {m: (np.array([p["spam_probability"] for p in r.metrics["predictions"]]) >= 0.5) == y
             for m, r in runs.items()}
    # the BERT first, as the Overview names the fine-tuned model before the frozen one
    assert f"McNemar test at threshold 0.5: only the fine-tuned model is right on " \
           f"{int((right['finetune'] & ~right['baseline']).sum())} message" in _texts(at)
    assert f"only the baseline one on {int((right['baseline'] & ~right['finetune']).sum())}; p = " in _texts(at)
    table = next(d.value for d in at.dataframe if "fine-tuned wrong" in d.value.columns)
    assert "baseline wrong" in table.columns and not any("frozen" in c for c in table.columns)
    texts = [p["text"] for p in runs["baseline"].metrics["predictions"]]
    assert set(table["message"]) == {t for t, a, b in zip(texts, right["baseline"], right["finetune"]) if not (a and b)}
    at.selectbox(key="compare_baseline").set_value("none").run()  # one model alone: nothing to pair it with
    assert "McNemar test at" not in _texts(at) and not any("fine-tuned wrong" in d.value.columns for d in at.dataframe)


def test_compare_shows_a_files_scores_that_cannot_be_kept_and_says_so(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                         trained):
    """A full disk or a read-only runs folder (a file where a run's evaluations folder goes): the scores computed are
    shown, with a word that a reload will not bring them back. Only an errno had been shown."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    frozen = next(r for r in list_runs(runs_dir) if r.mode == "frozen")
    shutil.rmtree(frozen.path / "evaluations", ignore_errors=True)
    (frozen.path / "evaluations").write_text("")
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/compare.py")
    own = pd.DataFrame(make_messages(30, 12, seed=9), columns=["label", "text"]).to_csv(index=False)
    at.file_uploader(key="compare_own").set_value(("mine.csv", own.encode(), "text/csv")).run()
    assert not at.exception and not _errors(at)
    yours = next(d.value for d in at.dataframe if "measure" in d.value.columns).set_index("measure")
    assert list(yours.loc["messages"]) == ["42"] * 3
    assert [_unescape(w.value) for w in at.warning if "could not be kept" in w.value] == [
        f"Frozen BERT + MLP head: the scores could not be kept in {frozen.path / 'evaluations'} (File exists), so a "
        "reload or a link will not bring them back."]
    (frozen.path / "evaluations").unlink()  # room again: the next rerun keeps them, without scoring the file again
    at.run()
    assert saved_evaluation(frozen.path, "mine.csv") and not [w for w in at.warning if "could not be kept" in w.value]


def test_compare_mcnemar_and_its_report_count_at_the_slider_threshold(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                      trained):
    """The McNemar line sits under the confusion matrices, which move with the slider: its counts, p and verdict
    words are at that threshold too, and so is the report's "What fine-tuning bought"."""
    from scipy.stats import binomtest
    runs = {r.mode: r for r in list_runs(trained)}
    y = np.array([p["label"] for p in runs["frozen"].metrics["predictions"]]) == 1
    probability = {m: np.array([p["spam_probability"] for p in r.metrics["predictions"]]) for m, r in runs.items()}
    import streamlit
    reports, download_button = [], streamlit.download_button

    def building(label, data, *args, **kwargs):  # the report, built as the button builds it on a click
        if kwargs.get("key") == "compare_report":
            reports.append(data())
        return download_button(label, data, *args, **kwargs)
    monkeypatch.setattr(streamlit, "download_button", building)
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/compare.py")
    counted = set()
    for threshold in (0.5, 0.2, 0.9):
        at.slider(key="compare_threshold").set_value(threshold).run()
        right = {m: (probability[m] >= threshold) == y for m in ("frozen", "finetune")}
        frozen, finetune = (int((right[a] & ~right[b]).sum()) for a, b in (("frozen", "finetune"),
                                                                            ("finetune", "frozen")))
        p = binomtest(frozen, frozen + finetune, 0.5).pvalue if frozen + finetune else 1.0
        verdict = "a real difference" if p < 0.05 else "not a significant difference"
        assert f"McNemar test at threshold {threshold:g}: only the fine-tuned model is right on " \
               f"{plural(finetune, 'message')}, only the frozen one on {frozen}; p = {p:.3g} ({verdict} at the " \
               "5 % level)." in _texts(at)
        assert f"At threshold {threshold:g}, on the same " in reports[-1]
        counted.add((frozen, finetune))
    assert len(counted) > 1, "the counts were expected to move with the threshold"


def _percent(p: float) -> str:
    """A probability as the Playground shows it: never as certainty."""
    return ">99.9%" if p >= 0.999 else "<0.1%" if p < 0.0005 else f"{p:.1%}"

def test_playground_returns_both_probabilities_and_keeps_text_as_text(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                      trained):
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/playground.py")
    message = "<script>alert('x')</script> WIN a FREE prize, call now"
    at.text_area(key="play_text").input(message).run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert set(shown) == {"Frozen BERT + MLP head", "Fine-tuned BERT", "TF-IDF baseline"}
    for run in list_runs(trained):  # the page shows exactly what the saved model predicts
        expected = Predictor.load(run.path).predict([message])[0]
        label = {"frozen": "Frozen BERT + MLP head", "finetune": "Fine-tuned BERT", "baseline": "TF-IDF baseline"}[run.mode]
        # a probability near 1 or 0, or one that saturated to it, never reads as certainty
        assert shown[label] == _percent(expected)
        assert {m.label: m.delta for m in at.metric}[label] == (  # the verdict, by the side of the threshold it is on
            "SPAM (≥ threshold 0.5)" if expected >= 0.5 else "HAM (< threshold 0.5)")
    assert [t.value for t in at.text] == [message]  # echoed as plain text...
    assert not any("<script>" in m.value for m in at.markdown)  # ...never as markdown/HTML
    at.toggle(key="play_explain").set_value(True).run()  # word-occlusion explanations, one column per model
    assert not at.exception
    explained = [m.value for m in at.markdown]
    assert {"**Frozen BERT + MLP head**", "**Fine-tuned BERT**", "**TF-IDF baseline**"} <= set(explained)
    assert any("-background[" in m for m in explained)  # at least one word moves a model's probability
    assert not any("<script>" in m for m in explained)
    # under each model, its probability without its strongest words, as the model gives it for the shorter text
    labels = {"Frozen BERT + MLP head": "frozen", "Fine-tuned BERT": "finetune", "TF-IDF baseline": "baseline"}
    without = {labels[m.value.strip("*")]: c.value for col in at.columns for m in col.markdown for c in col.caption
               if m.value.strip("*") in labels and c.value.startswith("Its spam probability without ")}
    assert without
    for mode, caption in without.items():
        run = next(r for r in list_runs(trained) if r.mode == mode)
        words = re.findall(r"“(.+?)”: ([<>]?[\d.]+%)", caption)
        assert words, caption
        for word, p_without in words:
            shorter = " ".join(w for w in message.split() if w != _unescape(word).replace("\\", ""))
            assert _percent(Predictor.load(run.path).predict([shorter])[0]) == p_without
    # a reload is a new session with only the URL (the browser keeps the bound fields there: test_browser.py):
    # the message and the toggle come back from it
    reloaded = AppTest.from_file(APP, default_timeout=90)
    reloaded.query_params.update({"play_text": message, "play_explain": "true"})
    reloaded.switch_page("views/playground.py").run()
    assert not reloaded.exception
    assert reloaded.text_area(key="play_text").value == message and reloaded.toggle(key="play_explain").value
    assert {m.label: m.value for m in reloaded.metric} == shown and [t.value for t in reloaded.text] == [message]

    examples = [b for b in at.button if b.key and b.key.startswith("example-")]
    assert len(examples) >= 4
    examples[0].click().run()
    assert at.text_area(key="play_text").value.startswith("WINNER")
    # an example says what it is, and which models miss it (counted from the verdicts shown above it)
    wrong = [m.label for m in at.metric if not m.delta.startswith("SPAM")]
    expected = "Every model gets it right." if not wrong else "Every model gets it wrong." if len(wrong) == 3 else \
        f"{' and '.join(wrong)} {'gets' if len(wrong) == 1 else 'get'} it wrong."
    assert f"This example is spam. {expected}" in [c.value for c in at.caption]
    at.text_area(key="play_text").input("WINNER!! a message of my own").run()
    assert not any(c.value.startswith("This example is") for c in at.caption)

    at.text_area(key="play_text").input("free prize " * 1000).run()  # 11,000 characters
    assert any("Truncated" in c.value for c in at.caption)
    at.text_area(key="play_text").input("x" * 1_000_000).run()
    assert any("limit here is 20,000" in e for e in _errors(at)) and not at.metric
    at.text_area(key="play_text").input("   \n ").run()
    assert any("Type a message" in i.value for i in at.info) and not at.metric
    at.text_area(key="play_text").input("مرحبا 你好 🎉 \x00\x07 end").run()
    assert not at.exception and len(at.metric) == 3

    at.text_area(key="play_lines").input("see you at 6\nWINNER call 09061 now\n\n").run()
    at.button(key="play_score").click().run()
    table = at.dataframe[0].value
    assert list(table["message"]) == ["see you at 6", "WINNER call 09061 now"]
    assert "2 messages from the pasted lines, scored by" in _texts(at)
    assert {"frozen p(spam)", "finetune p(spam)", "baseline p(spam)"} <= set(table.columns)
    assert table["finetune p(spam)"].between(0, 1).all()
    from views.common import shows_as_certain
    rounds = shows_as_certain(table.filter(like="p(spam)").to_numpy(dtype=float), decimals=3)
    assert rounds == ("1.000 means at least 0.9995" in _texts(at))  # the tiny models are not that sure: not shown
    # a file that cannot be scored replaces the last batch's table with its error, not under it
    at.file_uploader(key="play_upload").set_value(("empty.csv", b"", "text/csv")).run()
    at.button(key="play_score").click().run()
    assert _errors(at) == ["empty.csv: the file is empty"] and not at.dataframe
    at.file_uploader(key="play_upload").set_value(("mine.txt", b"Hi, how are you\nWIN a prize, call now\n",
                                                   "text/plain")).run()
    at.button(key="play_score").click().run()
    assert list(at.dataframe[0].value["message"]) == ["Hi, how are you", "WIN a prize, call now"]  # commas kept
    # the pasted lines are still there: the page says which of the two it scored
    assert "2 messages from the file mine.txt, scored by" in _texts(at)
    assert any("The file was scored, not the pasted lines" in i.value for i in at.info)
    # scores from other models are not shown under the ones now picked
    at.selectbox(key="play_baseline").set_value("none").run()
    assert not at.dataframe and any("changed since this batch was scored" in i.value for i in at.info)


def test_the_cost_sentence_says_where_the_runs_ran_and_when_their_times_do_not_compare(trained):
    """A runs folder copied from a GPU machine: the times are not "this machine's", and a GPU run's time beside a CPU
    run's is no cost of fine-tuning."""
    import copy

    from views.common import finetuning_verdict
    runs = {r.mode: r for r in list_runs(trained)}
    on_cpu = finetuning_verdict(runs["frozen"], runs["finetune"], None)
    assert " s on the CPU" in on_cpu and "this machine" not in on_cpu
    on_gpu = copy.deepcopy(runs["finetune"])
    on_gpu.config["device"] = "cuda:0"
    said = finetuning_verdict(runs["frozen"], on_gpu, None)
    assert " s (on different devices (cuda and cpu), so the times do not compare" in said and "on the CPU" not in said
    assert "times as long" not in said  # no ratio of times just said not to compare
    older = copy.deepcopy(runs["finetune"])  # made before runs recorded their device: nothing said of where
    del older.config["device"]
    said = finetuning_verdict(runs["frozen"], older, None)
    assert "different devices" not in said and "on the CPU" not in said and "this machine" not in said


def test_a_perfect_batch_of_a_few_messages_is_not_shown_as_a_perfect_model(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                           trained):
    """Every resample of a small batch right: 1.000 [1.000, 1.000] read as "this model is perfect". Said as on
    Compare, for the same kind of interval."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs", ignore=shutil.ignore_patterns(".playground")))
    baseline = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    # test messages the baseline calls right, far from its threshold: a batch it gets all right
    right = [p for p in baseline.metrics["predictions"] if abs(p["spam_probability"] - 0.5) > 0.2
             and (p["spam_probability"] >= 0.5) == bool(p["label"])][:6]
    assert len(right) == 6 and len({p["label"] for p in right}) == 2
    batch = pd.DataFrame({"label": [("ham", "spam")[p["label"]] for p in right], "text": [p["text"] for p in right]})
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/playground.py")
    at.file_uploader(key="play_upload").set_value(("few.csv", batch.to_csv(index=False).encode(), "text/csv")).run()
    at.button(key="play_score").click().run()
    assert not at.exception
    assert "TF-IDF baseline accuracy 1.000 [1.000, 1.000]" in _texts(at)
    assert any(w.value.startswith("An interval of 1.000 [1.000, 1.000] means that no resample of these messages "
                                  "held a single error of that kind.") for w in at.warning)


def test_overview_offers_the_default_runs_back_after_a_pick_and_explains_its_terms(monkeypatch, tmp_path, tiny_bert,
                                                                                  sms_data, trained):
    """A quick run picked during a demo (or by "Compare them") stays the Overview's subject for the session: one
    button brings the default runs back, on every page and in the URL. And "McNemar p" is explained on the page."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    full = next(r for r in list_runs(runs_dir) if r.mode == "finetune")
    few = _copied_run(full, runs_dir, "s40", config=_on_messages(40, full.created + 1))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    assert at.selectbox(key="overview_finetune").value == full.id and "overview_defaults" not in _keys(at.button)
    [meanings] = [e for e in at.expander if e.label == "What these measure"]
    assert "**McNemar p**: the chance of a split" in meanings.markdown[0].value
    at.selectbox(key="overview_finetune").set_value(few.id).run()
    assert at.query_params["finetune"] == few.id
    at.button(key="overview_defaults").click().run()
    assert at.selectbox(key="overview_finetune").value == full.id and "finetune" not in at.query_params
    assert "overview_defaults" not in _keys(at.button)
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_finetune").value == full.id


def test_runs_page_does_not_say_a_baselines_validation_chose_its_weights(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                        trained):
    runs = {r.mode: r for r in list_runs(trained)}
    at = _app(monkeypatch, tmp_path, trained, tiny_bert, sms_data)
    for mode, said in (("baseline", "Validation: scored for reference (the baseline is fitted once, with fixed "
                                    "settings)."),
                       ("finetune", "Validation: the messages that chose the kept weights.")):
        at.query_params["runs_pick"] = runs[mode].id
        _page(at, "views/runs.py")
        at.selectbox(key="runs_one").set_value(runs[mode].id).run()
        assert any(said in c.value for c in at.caption), mode


def test_playground_calls_spam_at_each_runs_own_threshold(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    """A run set to call spam only from a higher probability than 0.5 calls a message below that ham, alone and in a
    batch: a verdict at 0.5 would disagree with the run's own test scores and with the threshold printed beside it."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    baseline = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    message = "WINNER!! you have won a £500 prize, call 0906500 now"
    p = float(Predictor.load(baseline.path).predict([message])[0])
    assert p >= 0.5, "the baseline was expected to call this message spam at 0.5"
    threshold = p + (1 - p) / 2  # above its probability: ham at the run's own threshold

    def set_threshold(metrics):
        metrics["threshold"] = threshold
    _copied_run(baseline, runs_dir, "t", metrics=set_threshold)
    shutil.rmtree(baseline.path)
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/playground.py")
    at.text_area(key="play_text").input(message).run()
    shown = {m.label: (m.value, m.delta) for m in at.metric}
    assert shown["TF-IDF baseline"] == (_percent(p), f"HAM (< threshold {threshold:g})")
    at.text_area(key="play_lines").input(message).run()
    at.button(key="play_score").click().run()
    assert list(at.dataframe[0].value["baseline verdict"]) == ["ham"]


def test_a_scored_batch_comes_back_after_a_reload(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    # without the batches other tests scored on these runs
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs", ignore=shutil.ignore_patterns(".playground")))
    kept = runs_dir / ".playground"
    kept.mkdir()
    for i in range(20):  # twenty batches scored before: the oldest goes when a new one is saved
        (kept / f"{i:010x}.json").write_text("{}")
        os.utime(kept / f"{i:010x}.json", (1e9 + i, 1e9 + i))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/playground.py")
    at.selectbox(key="play_baseline").set_value("none").run()  # not the default picks
    at.text_area(key="play_lines").input("see you at 6\nWINNER call 09061 now\n").run()
    at.button(key="play_score").click().run()
    table, digest = at.dataframe[0].value, at.query_params["batch"]
    assert (kept / f"{digest}.json").is_file() and not (kept / f"{0:010x}.json").exists()
    assert len(list(kept.glob("*.json"))) == 20 and len(list_runs(runs_dir)) == 3  # not taken for a run
    del at.query_params["batch"]  # as a page switch clears the URL's query in the browser: every page names it again
    _page(at, "views/compare.py")
    assert at.query_params["batch"] == digest

    # a reload is a new session: the URL names the batch, on whichever page the reload happened, and it comes back
    # as it was, without scoring it again
    monkeypatch.setattr(Predictor, "predict", lambda *a, **k: pytest.fail("the batch was scored again"))
    reloaded = AppTest.from_file(APP, default_timeout=90)
    reloaded.query_params["batch"] = digest
    reloaded.run()  # the Overview
    del reloaded.query_params["batch"]
    _page(reloaded, "views/playground.py")
    pd.testing.assert_frame_equal(reloaded.dataframe[0].value, table)
    # a link naming the batch alone (no picks) shows the runs that scored it, not "the models changed"
    assert reloaded.selectbox(key="play_baseline").value == "none" and "baseline p(spam)" not in table
    assert reloaded.text_area(key="play_lines").value == "see you at 6\nWINNER call 09061 now\n"
    assert "2 messages from the pasted lines, scored by" in _texts(reloaded)
    assert reloaded.query_params["batch"] == digest
    # lines typed and not scored yet come back after a reload too (a pasted list was lost), and the kept file of
    # them is not taken for a batch
    reloaded.text_area(key="play_lines").input("lunch at 1?\nFREE entry, text WIN to 80086\n").run()
    draft = reloaded.query_params["play_draft"]  # this tab's lines, named in its URL
    reloaded.query_params.clear()  # as a page switch clears the URL's query in the browser: each page writes its own
    _page(reloaded, "views/overview.py")  # and not the lines' id: a link shared from another page carries no lines
    assert draft not in dict(reloaded.query_params).values() and reloaded.query_params["batch"]
    assert not _page(AppTest.from_file(APP, default_timeout=90).run(), "views/playground.py").text_area(
        key="play_lines").value
    again = AppTest.from_file(APP, default_timeout=90)
    again.query_params["play_draft"] = draft
    _page(again.run(), "views/playground.py")
    assert again.text_area(key="play_lines").value == "lunch at 1?\nFREE entry, text WIN to 80086\n"
    assert not again.dataframe and len(list(kept.glob("*.json"))) == 20
    # another tab (no draft in its URL) starts empty, and what it types does not replace the first tab's lines: one
    # file for all had shown a tab's pasted messages in every new tab, and a reload brought back the other tab's
    other = _page(AppTest.from_file(APP, default_timeout=90).run(), "views/playground.py")
    assert not other.text_area(key="play_lines").value
    other.text_area(key="play_lines").input("Bob's list: free ringtone txt 8007\n").run()
    assert other.query_params["play_draft"] != draft
    again = AppTest.from_file(APP, default_timeout=90)
    again.query_params["play_draft"] = draft
    _page(again.run(), "views/playground.py")
    assert again.text_area(key="play_lines").value == "lunch at 1?\nFREE entry, text WIN to 80086\n"
    for linked in ("../../x", "*"):  # not an id: no file is read
        odd = AppTest.from_file(APP, default_timeout=90)
        odd.query_params["play_draft"] = linked
        assert not _page(odd.run(), "views/playground.py").text_area(key="play_lines").value
    # a link to a batch no longer kept, or not a digest at all, shows none and is dropped from the URL
    for linked in (f"{1:010x}", "../../x", "*"):
        stale = AppTest.from_file(APP, default_timeout=90)
        stale.query_params["batch"] = linked
        _page(stale.run(), "views/playground.py")
        assert not stale.dataframe and "batch" not in stale.query_params, linked


def test_runs_page_times_a_resumed_run_by_the_stretches_it_ran(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    # a run resumed two days after it stopped showed 172,800 s while it ran, then about 90 once it completed
    import psutil
    source = next(r for r in list_runs(trained) if r.mode == "finetune")
    run_dir = Path(shutil.copytree(source.path, tmp_path / "runs" / "20261126-083844-finetune-aaaa"))
    (run_dir / "metrics.json").unlink()
    now = time.time()
    created = now - 2 * 86400
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "created": created}))
    events = [{"event": "start", "time": created + 5, "step": 0, "total_steps": 339},
              {"event": "train", "time": created + 60, "step": 100, "loss": 0.2},
              {"event": "resumed", "time": now - 30, "step": 100, "total_steps": 339, "after": "interrupted"},
              {"event": "train", "time": now - 5, "step": 120, "loss": 0.1}]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid(), "updated_at": now,
                                                     "pid_started": psutil.Process().create_time()}))
    assert load_run(run_dir).status == "running"
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/runs.py")
    table = at.dataframe[0].value.set_index("run")
    assert 90 <= table.loc[run_dir.name, "time (s)"] < 90 + (time.time() - now) + 1  # 60 + 25 + 5, and what passed


def test_runs_page_overlays_curves_downloads_and_deletes_with_confirmation(monkeypatch, tmp_path, tiny_bert,
                                                                          sms_data, trained):
    runs_dir = tmp_path / "runs"
    shutil.copytree(trained, runs_dir)
    victim = next(r for r in list_runs(runs_dir) if r.mode == "frozen")
    at = _app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data)
    at.query_params["run"] = "../../etc"
    _page(at, "views/runs.py")
    assert "invalid run id" in _texts(at)
    at.query_params["run"] = "20990101-000000-frozen-none"
    _page(at, "views/runs.py")
    assert any("is not in" in w.value and "showing the newest run" in w.value for w in at.warning)
    # no run has a note, and both BERT runs used the tiny model: those columns would only take room
    assert "model" not in at.dataframe[0].value.columns
    assert f"Every BERT run here used {Path(tiny_bert).name}." in _texts(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    traces = spec["data"]
    assert len(traces) == 4  # train and validation loss of the two neural runs
    # each mode on its own epoch axis (60 frozen epochs would squash 3 fine-tuning ones)
    axes = {t["name"].split(" · ")[1].split("-")[2]: t.get("xaxis", "x") for t in traces}
    assert axes == {"frozen": "x", "finetune": "x2"} and {t.get("yaxis", "y") for t in traces} == {"y", "y2"}
    # and its own loss axis: the frozen default's class-balanced loss is on another scale than plain cross-entropy
    assert spec["layout"]["yaxis"]["title"]["text"] == "loss (class-balanced cross-entropy)"
    assert spec["layout"]["yaxis2"]["title"]["text"] == "loss (cross-entropy)" and "matches" not in spec["layout"]["yaxis2"]
    assert "compare the curves' shapes across them, not their levels" in _texts(at)
    colours = {t["name"]: t["line"]["color"] for t in traces}
    assert len(set(colours.values())) == 2  # one per run, its train and validation curves alike
    from views.common import RUN_SHADES  # each in a shade of its mode's colour on every other page
    assert all(c in RUN_SHADES[name.split(" · ")[1].split("-")[2]] for name, c in colours.items())
    at.multiselect(key="runs_overlay").set_value([r.id for r in list_runs(runs_dir) if r.mode == "baseline"]).run()
    assert not at.get("plotly_chart") and "The TF-IDF baseline has no loss curve" in _texts(at)
    for alone in ({"frozen"}, {"finetune"}):  # the only run of its mode: its colour does not change with the other mode
        at.multiselect(key="runs_overlay").set_value([r.id for r in list_runs(runs_dir) if r.mode in alone]).run()
        shown = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
        assert {t["name"]: t["line"]["color"] for t in shown}.items() <= colours.items()

    at.selectbox(key="runs_one").set_value(victim.id).run()
    assert not at.exception and at.query_params["runs_pick"] == victim.id
    for linked, shown in ((victim.id, victim.id), ("../../etc", at.selectbox(key="runs_one").options and None)):
        reloaded = AppTest.from_file(APP, default_timeout=90)  # a reload: a new session, with only the URL
        reloaded.query_params["runs_pick"] = linked
        _page(reloaded.run(), "views/runs.py")
        if shown:  # the same run, not the newest (the default)
            assert reloaded.selectbox(key="runs_one").value == shown != list_runs(runs_dir)[0].id
        else:  # not a run: ignored, and dropped from the URL (which names no default: a history entry per visit)
            assert "runs_pick" not in reloaded.query_params and not reloaded.warning
    # its configuration and test metrics read as tables, not raw JSON: the settings of its mode, the metrics with
    # their intervals, the confusion matrix labelled
    tables = {tuple(t.value.columns): t.value for t in at.dataframe[1:]}
    settings = dict(zip(*tables[("setting", "value")].T.values))
    assert settings["epochs"] == "20" and settings["pooling"] == "mean" and settings["lr"] == "0.001"
    assert "runs dir" not in settings and "labels" not in settings  # paths and internals stay in config.json
    test = victim.metrics["test"]
    metrics = tables[("measure", "test [95 % interval]", "validation")].set_index("measure")
    low, high = test["ci95"]["f1"]
    assert metrics.loc["F1", "test [95 % interval]"] == f"{test['f1']:.3f} [{low:.3f}, {high:.3f}]"  # as other pages
    from views.common import _fmt
    assert metrics.loc["AUROC", "validation"] == _fmt(victim.metrics["validation"]["auroc"], 3)
    matrix = tables[("", "called ham", "called spam")].set_index("")
    assert [[matrix.loc[a, f"called {c}"] for c in ("ham", "spam")] for a in ("actual ham", "actual spam")] == \
        test["confusion_matrix"]
    assert f"**Model:** {tiny_bert}" in _unescape(_texts(at)) and "**Versions:** core " in _texts(at)
    baseline = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    at.selectbox(key="runs_one").set_value(baseline.id).run()  # a baseline names what it fitted instead of a model
    assert "**Fitted:** word 1-2-grams + char_wb 2-5-grams TF-IDF; LogisticRegression C=10.0, max_iter=2000" in \
        _unescape(_texts(at))
    at.selectbox(key="runs_one").set_value(victim.id).run()
    assert not at.get("json")
    at.toggle(key="runs_raw_config").set_value(True).run()  # and config.json as it is, for whoever wants it
    assert json.loads(at.get("json")[0].proto.body)["epochs"] == 20
    from views.common import zip_run  # what the download button sends when clicked (made lazily)
    with zipfile.ZipFile(io.BytesIO(zip_run(victim.id))) as zf:  # stand-alone: the encoder travels with the head
        assert {f"{victim.id}/README.md", f"{victim.id}/model/encoder/model.safetensors"} <= set(zf.namelist())
    at.button(key="runs_delete").click().run()
    assert any("for good" in w.value for w in at.warning) and victim.path.is_dir()  # asks first
    at.button(key="runs_delete_no").click().run()
    assert victim.path.is_dir()
    at.selectbox(key="runs_one").set_value(victim.id).run()
    at.button(key="runs_delete").click().run()
    at.multiselect(key="runs_overlay").set_value([victim.id]).run()  # the only run overlaid
    at.button(key="runs_delete_yes").click().run()
    assert not at.exception and not victim.path.exists()
    assert len(at.dataframe[0].value) == 2 and not at.warning  # deleted here: no word that it has gone...
    assert [t.value for t in at.toast] == [f"Deleted {victim.id}"]  # ...but a toast, which the rerun does not drop
    # the chart goes back to the runs compared, not to an empty "Choose options"
    assert at.multiselect(key="runs_overlay").value == [next(r.id for r in list_runs(runs_dir) if r.mode == "finetune")]
    shown = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]  # the fine-tune, the only other neural run
    assert shown and {t["name"]: t["line"]["color"] for t in shown}.items() <= colours.items()  # colour kept
    # a run deleted elsewhere (another tab, the command line) while this page showed it: the page says so
    other = at.selectbox(key="runs_one").value
    shutil.rmtree(runs_dir / other)
    at.run()
    assert [_unescape(w.value) for w in at.warning] == [f"Run {other} is no longer in {runs_dir}: it was deleted in another "
                                             "tab or outside the app, so nothing of it can be shown or downloaded."]
    assert at.selectbox(key="runs_one").value != other
    at.run()
    assert not at.warning  # said once


# ---------------------------------------------------------------------------- running, failed, interrupted, broken

@pytest.fixture
def troubled(tmp_path, tiny_bert, sms_data, trained, monkeypatch):
    """Completed runs plus: a failed one (disk full while saving), an interrupted one (kill -9), a broken
    one (metrics.json damaged), and a real job still running."""
    runs_dir = tmp_path / "runs"
    shutil.copytree(trained, runs_dir)
    root = tmp_path

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr("core.train.save_checkpoint", disk_full)
        with pytest.raises(OSError):
            train(_config("finetune", root, tiny_bert, sms_data, epochs=1))
    broken = runs_dir / "20000101-000000-finetune-dead"
    shutil.copytree(next(r.path for r in list_runs(runs_dir) if r.status == "completed" and r.mode == "finetune"),
                    broken)
    (broken / "metrics.json").write_text('{"test": ')

    jobs.launch([_config("finetune", root, tiny_bert, sms_data, epochs=300, batch_size=8)])
    victim = _wait(lambda: (p := jobs.current_job(runs_dir)) and p.step > 0 and p.run_id)
    os.kill(json.loads((runs_dir / victim / "status.json").read_text())["pid"], signal.SIGKILL)
    _wait(lambda: running_job(runs_dir) is None)
    jobs.launch([_config("finetune", root, tiny_bert, sms_data, epochs=300, batch_size=8)])
    live = _wait(lambda: (p := jobs.current_job(runs_dir)) and p.eta_seconds is not None and p.run_id)  # 2 logged steps
    yield runs_dir, live
    if running_job(runs_dir):
        jobs.cancel(runs_dir)
        _wait(lambda: running_job(runs_dir) is None)


def test_runs_page_takes_over_a_run_whose_machine_is_gone(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    """An interrupted run whose status names another machine (a container recreated under a new host name) had read
    like a run that kept nothing, with no way on. The page says what it kept and where it trained, and once the user
    says it trains there no more, takes it over: then it can be finished here."""
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    run = next(r for r in list_runs(runs_dir) if r.mode == "finetune")
    (run.path / "metrics.json").unlink()  # killed after moving its best weights to model/, before its metrics
    (run.path / "status.json").write_text(json.dumps({"status": "running", "pid": 2**22 + 7, "pid_started": 0.0,
                                                      "host": "trainbox-1f2e pid:[1]"}))
    at = _app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data)
    at.query_params["runs_pick"] = run.id
    _page(at, "views/runs.py")
    table = at.dataframe[0].value
    assert table.loc[table["run"] == run.id, "status"].iloc[0] == (
        "interrupted: the training process stopped without finishing; its status names another machine, "
        "trainbox-1f2e pid:[1] (see One run)")
    [said] = [w.value for w in at.warning if "another machine" in w.value]
    assert _unescape(said).startswith("Its status names another machine, trainbox-1f2e pid:[1], as the one training")
    assert said.endswith("It kept its best weights. Finish or resume it there, or, if it trains there no more, take it "
                         "over here.")
    assert "runs_finish" not in [b.key for b in at.button] and at.button(key="runs_take_over").disabled
    at.checkbox(key="runs_take_over_sure").check().run()
    at.button(key="runs_take_over").click().run()
    assert not at.exception and not [w for w in at.warning if "another machine" in w.value]
    assert at.button(key="runs_finish")  # this machine's now: finished here like any stopped run
    assert json.loads((run.path / "status.json").read_text())["taken_over_from"] == "trainbox-1f2e pid:[1]"


def test_runs_page_finishes_a_stopped_run_from_its_saved_weights(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                  trained):
    import core.train

    evaluate, calls = core.train._evaluate, []

    def disk_trouble(*args):  # the run fails mid-training, as on a full disk, after its first validation kept weights
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return evaluate(*args)
    monkeypatch.setattr(core.train, "_evaluate", disk_trouble)
    with pytest.raises(OSError):
        train(_config("finetune", tmp_path, tiny_bert, sms_data, epochs=2))
    monkeypatch.undo()
    [stopped] = list_runs(tmp_path / "runs")
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data)
    at.query_params["run"] = stopped.id
    _page(at, "views/runs.py")
    assert "It saved its best weights before it stopped" in _texts(at)
    assert _errors(at) == ["failed: No space left on device"]

    def note():  # why a run failed or how it stopped, in its status cell
        table = at.dataframe[0].value
        return table.loc[table["run"] == stopped.id, "status"].iloc[0]
    assert note() == "failed: No space left on device; its best weights are kept (finish it under One run)"
    at.button(key="runs_finish").click().run()
    assert not at.exception and not at.error  # the error it stopped with is not shown while a job completes it...
    assert "No space left on device" not in str(note())  # ...nor in the table
    _wait(lambda: running_job(tmp_path / "runs") is None and load_run(stopped.path).status == "completed")
    at.run()
    [done] = [s.value for s in at.success]  # and it says the run was cut short
    assert done.startswith(f"Fine-tuned BERT finished: {stopped.id} (stopped after step "), done
    assert at.selectbox(key="runs_one").value == stopped.id and load_run(stopped.path).usable
    assert "This run did not train to its end" in _texts(at) and "runs_finish" not in [b.key for b in at.button]
    status = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["status"]))[stopped.id]
    assert status.startswith("completed: ") and "No space left on device" in status \
        and "tested with the best weights saved by then" in status
    _page(at, "views/overview.py")  # shown as a fine-tuned run, and said to be cut short
    assert f"Fine-tuned BERT ({stopped.id}) did not train to its end" in _texts(at)
    from views.common import finetuning_verdict  # and first in the headline, in bold, beside a frozen run
    [frozen] = [r for r in list_runs(trained) if r.mode == "frozen"]
    cut = finetuning_verdict(frozen, load_run(stopped.path), None)
    assert cut.startswith("**The fine-tuned run did not train to its end**: stopped after step")
    assert "trained only" not in cut  # its few steps are said by that note, not as a recipe's too few
    _page(at, "views/compare.py")
    picker = at.selectbox(key="compare_finetune")  # its label says so too, first, where a narrow picker keeps it
    assert picker.value == stopped.id and picker.options[picker.index].startswith("stopped early · "), picker.options
    assert "epoch" not in picker.options[picker.index]  # it did not train the epochs it was set for
    # above the results of Compare and Playground too: a run finished a step in gave an untrained model's verdicts
    for page in ("views/compare.py", "views/playground.py"):
        _page(at, page)
        assert any(w.value.startswith("The Fine-tuned BERT run did not train to its end: stopped after step")
                   for w in at.warning), page

    # an older fine-tune that trained to its end is the headline and every picker's default, not the newer stopped one
    [complete] = [r for r in list_runs(trained) if r.mode == "finetune"]
    shutil.copytree(complete.path, tmp_path / "runs" / complete.id)
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/overview.py")
    assert "did not train to its end" not in _texts(at)
    for page, key in (("views/overview.py", "overview_finetune"), ("views/compare.py", "compare_finetune"),
                      ("views/playground.py", "play_finetune")):
        _page(at, page)
        picker = at.selectbox(key=key)
        assert picker.value == complete.id and any(o.startswith("stopped early · ") for o in picker.options)
        assert [c.value for c in at.caption if c.value.startswith("Showing an older run")] == [
            f"Showing an older run: the newest ({_when(stopped)}) stopped early. Pick it here to see it."]

    # nor is a newer quick run (fewer epochs than the default, as the Overview's preset trains), and its picker says so
    quick = tmp_path / "runs" / "29991231-235959-finetune-quik"
    shutil.copytree(complete.path, quick)
    config = json.loads((quick / "config.json").read_text())
    (quick / "config.json").write_text(json.dumps({**config, "epochs": 1, "created": time.time() + 60}))
    shutil.rmtree(stopped.path)
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/overview.py")
    picker = at.selectbox(key="overview_finetune")
    assert picker.value == complete.id and " · 1 epoch · " in picker.options[0]  # the quick run heads the list
    assert [c.value for c in at.caption if c.value.startswith("Showing an older run")] == [
        f"Showing an older run: the newest ({_when(load_run(quick))}) trained 1 epoch, fewer than the default 3. "
        "Pick it here to see it."]
    picker.set_value(quick.name).run()  # picked: it is shown everywhere, and the note has done its work
    assert not [c for c in at.caption if c.value.startswith("Showing an older run")]
    assert at.selectbox(key="overview_finetune").value == quick.name


def _when(run) -> str:
    return time.strftime("%d %b %H:%M", time.localtime(run.created))


def test_runs_page_resumes_a_stopped_run_from_its_training_state(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    ctrl_c_at_evaluations(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(_config("finetune", tmp_path, tiny_bert, sms_data, epochs=3, batch_size=8, save_state_every=0))
    monkeypatch.undo()
    [stopped] = list_runs(tmp_path / "runs")
    step = saved_state(stopped.path)["step"]
    for run in list_runs(trained):  # older, completed runs beside it
        shutil.copytree(run.path, tmp_path / "runs" / run.id)
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data)
    _page(at, "views/runs.py")  # opened directly, not through a link: the run that needs resuming is the one shown
    assert at.selectbox(key="runs_one").value == stopped.id and at.button(key="runs_resume")
    assert f"It saved its whole training state at step {step} of " in _texts(at)
    cell = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["status"]))[stopped.id]  # not just "cancelled"
    assert cell == "cancelled: its training state is kept (resume or finish it under One run)", cell
    resume = at.button(key="runs_resume")
    assert resume.label == f"Resume training from step {step}" and at.button(key="runs_finish")  # both offered
    resume.click().run()
    assert not at.exception and not at.error
    # the default pick, now in the URL: a reload picks it again, and with it the job's progress
    assert at.query_params["runs_pick"] == stopped.id
    _wait(lambda: running_job(tmp_path / "runs") is None and load_run(stopped.path).status == "completed")
    at.run()
    assert [s.value for s in at.success] == [f"Fine-tuned BERT finished: {stopped.id}{_scores(stopped)}"]  # no note
    assert f"resumed at step {step} after it was cancelled" in _texts(at)
    assert "runs_resume" not in [b.key for b in at.button] and "did not train to its end" not in _texts(at)
    status = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["status"]))[stopped.id]
    assert status == f"completed: resumed at step {step} after it was cancelled"
    assert load_run(stopped.path).metrics["steps"] == next(
        e["total_steps"] for e in read_history(stopped.path) if e["event"] == "start")  # trained to its end


def test_runs_page_offers_resume_alone_for_a_run_stopped_before_its_first_validation(monkeypatch, tmp_path, tiny_bert,
                                                                                     sms_data):
    import signal

    import core.train
    cancel_requested, checks = core.train.cancel_requested, []

    def sigterm_during_step_3(run_dir):  # read before the first step, then once a step: the signal is real, this
        checks.append(1)                 # only picks its moment
        if len(checks) == 1 + 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return cancel_requested(run_dir)
    monkeypatch.setattr(core.train, "cancel_requested", sigterm_during_step_3)
    train(_config("finetune", tmp_path, tiny_bert, sms_data, epochs=3, batch_size=8, evals_per_epoch=1))
    monkeypatch.undo()
    [stopped] = list_runs(tmp_path / "runs")
    assert saved_state(stopped.path)["step"] == 4 and not list(stopped.path.glob("checkpoint-*"))
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data)
    at.query_params["run"] = stopped.id
    _page(at, "views/runs.py")
    keys = [b.key for b in at.button]
    assert "runs_resume" in keys and "runs_finish" not in keys  # no weights to test yet, but training to go on with
    assert at.button(key="runs_resume").label == "Resume training from step 4"


def test_a_job_that_ended_between_two_runs_names_the_runs_it_never_started(monkeypatch, tmp_path, tiny_bert, sms_data):
    # it ended after its first run completed and before its second began (a kill there, or here a model that
    # cannot be loaded): the page said the baseline finished, and nothing of the two runs that never started
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text("{}")
    runs_dir = tmp_path / "runs"
    jobs.launch([_config("baseline", tmp_path, tiny_bert, sms_data),
                 _config("frozen", tmp_path, str(not_a_model), sms_data),
                 _config("finetune", tmp_path, tiny_bert, sms_data)])
    _wait(lambda: running_job(runs_dir) is None)
    assert [r.mode for r in list_runs(runs_dir)] == ["baseline"]
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    assert any(s.value.startswith("TF-IDF baseline finished") for s in at.success)
    assert ("The job ended before it started its Frozen BERT + MLP head and Fine-tuned BERT runs: start them again "
            "on the Train page.") in [w.value for w in at.warning]


def test_after_a_job_is_killed_the_train_page_points_to_finishing_its_run(monkeypatch, tmp_path, tiny_bert, sms_data):
    runs_dir = tmp_path / "runs"
    job = jobs.launch([_config("baseline", tmp_path, tiny_bert, sms_data),  # a plan of three, killed in its second
                       _config("finetune", tmp_path, tiny_bert, sms_data, epochs=300, batch_size=8),
                       _config("frozen", tmp_path, tiny_bert, sms_data)])
    live = _wait(lambda: (p := jobs.current_job(runs_dir)) and p.mode == "finetune" and p.run_id)
    _wait(lambda: any(e["event"] == "checkpoint" for e in read_history(runs_dir / live)))
    os.kill(job.pid, signal.SIGKILL)
    _wait(lambda: running_job(runs_dir) is None)
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    assert f"{live} ended as interrupted" in _errors(at)[0]
    assert any(s.value.startswith("TF-IDF baseline finished") for s in at.success)
    assert "The job ended before it started its Frozen BERT + MLP head run: start it again on the Train page." in \
        [w.value for w in at.warning]  # not silently dropped
    shutil.rmtree(next(r for r in list_runs(runs_dir) if r.mode == "baseline").path)
    _page(at, "views/train.py")
    assert "The job ended before it started its Frozen BERT + MLP head run: start it again on the Train page." in \
        [w.value for w in at.warning]  # counted from the run it died in, not from how many runs are left
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    [link] = at.main.get("page_link")
    assert "test them and complete the run on the Runs page" in link.proto.label
    assert link.proto.page == "runs" and link.proto.query_string == f"run={live}"
    # then a job from a terminal names the same run (a `core finish` that failed as it loaded): the lock's place is
    # that job's, not the plan's, and must not renumber the plan ("… its Fine-tuned BERT and Frozen … runs")
    from core.runs import set_lock_holder, training_lock
    with training_lock(runs_dir) as lock:
        set_lock_holder(lock, live)
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    assert f"{live} ended as interrupted" in _errors(at)[0]
    assert not any("Fine-tuned BERT" in w.value for w in at.warning if "ended before it started" in w.value)


def test_a_plan_cancelled_as_its_first_run_saved_is_not_said_to_have_ended_on_its_own(monkeypatch, tmp_path,
                                                                                      tiny_bert, sms_data):
    # a Cancel that comes while a run saves lets that run complete and stops the plan there, on purpose: the page
    # said the job "ended before it started its Frozen BERT + MLP head run"
    import psutil

    import core.train
    from core.runs import write_json_atomic
    from core.train import train_sequence
    runs_dir = tmp_path / "runs"
    finish = core.train._finish

    def cancelled_while_saving(cfg, run_dir, *args):  # the app's Cancel, clicked as the baseline writes its metrics
        jobs.cancel(runs_dir)
        return finish(cfg, run_dir, *args)
    monkeypatch.setattr(core.train, "_finish", cancelled_while_saving)
    me = psutil.Process()  # the job is this process here: last.json as the app writes it for its job
    (runs_dir / jobs.JOBS_DIR).mkdir(parents=True)
    write_json_atomic(runs_dir / jobs.JOBS_DIR / jobs.LAST_JOB, {
        "pid": me.pid, "pid_started": me.create_time(), "started": time.time(), "modes": ["baseline", "frozen"],
        "log": str(tmp_path / "log"), "plan": None, "command": "train"})
    list(train_sequence([_config("baseline", tmp_path, tiny_bert, sms_data),
                         _config("frozen", tmp_path, tiny_bert, sms_data)]))
    monkeypatch.setattr(core.train, "_finish", finish)
    assert [(r.mode, r.status) for r in list_runs(runs_dir)] == [("baseline", "completed")]
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    assert any(s.value.startswith("TF-IDF baseline finished") for s in at.success)
    assert not any("ended before it started" in w.value for w in at.warning)


def test_every_page_renders_with_running_failed_interrupted_and_broken_runs(monkeypatch, tmp_path, tiny_bert,
                                                                           sms_data, troubled):
    runs_dir, live = troubled
    statuses = sorted(r.status for r in list_runs(runs_dir))
    assert statuses == ["broken", "completed", "completed", "completed", "failed", "interrupted", "running"]
    at = _app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data)
    for page in PAGES:
        _page(at, page)

    _page(at, "views/runs.py")  # the running run's duration is the time since it started
    durations = dict(zip(at.dataframe[0].value["run"], at.dataframe[0].value["time (s)"]))
    assert durations[live] == pytest.approx(time.time() - load_run(runs_dir / live).created, abs=5)
    # the hyperparameters share one column, to fit a laptop screen; those every run shares are in the caption
    [shared] = [c.value.split("Settings every run shares (where they apply): ")[1].rstrip(".").split(" · ")
                for c in at.caption if "Settings every run shares" in c.value]
    assert "seed 42" in shared
    for run_id, mode, settings in at.dataframe[0].value[["run", "mode", "settings"]].itertuples(index=False):
        cfg = load_run(runs_dir / run_id).config
        if cfg is None:
            assert pd.isna(settings)
        else:
            epochs = f"{cfg['epochs']} epoch{'s' * (cfg['epochs'] != 1)}"
            expected = [epochs, f"lr {cfg['lr']:g}", f"batch {cfg['batch_size']}", f"max len {cfg['max_length']}"] \
                * (mode != "baseline") + [f"seed {cfg['seed']}"]
            assert ([] if pd.isna(settings) else settings.split(" · ")) == [s for s in expected if s not in shared]
    assert "threshold" not in at.dataframe[0].value.columns and "probability ≥ 0.5" in _texts(at)  # all the same
    assert len(at.sidebar.progress) == 1  # on a page without the live panel, the sidebar shows the job's progress
    _page(at, "views/train.py")
    assert any(live in c.value for c in at.caption)  # the panel names the running run
    assert at.progress[0].value < 100 and "step" in at.progress[0].text and "left" in at.progress[0].text  # ETA
    # one progress bar: a second in the sidebar, refreshed at other moments, showed another time left beside it
    assert not at.sidebar.progress and "live on this page" in _texts(at.sidebar)
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]  # the live loss curve has points
    assert curve[0]["name"].startswith("train") and len(curve[0]["x"]) > 0
    assert "train_launch" not in [b.key for b in at.button]  # the live panel is the page; the form waits...
    at.toggle(key="train_next").set_value(True).run()  # ...until asked for
    assert at.button(key="train_launch").disabled and at.number_input(key="train_shared_batch_size")
    assert any("Only one job runs at a time" in i.value for i in at.info)
    at.button(key="train-cancel").click().run()  # it asks first: nothing is cancelled yet
    assert running_job(runs_dir) == live and any("discard this run's weights?" in w.value for w in at.warning)
    at.button(key="train-cancel-no").click().run()
    assert running_job(runs_dir) == live and at.button(key="train-cancel")
    at.button(key="train-cancel").click().run()
    at.button(key="train-cancel-yes").click().run()
    assert not any("discard this run's weights?" in w.value for w in at.warning)  # the question goes with the click
    assert [t.value for t in at.toast] == ["Cancel requested: the job stops at its next step and keeps status "
                                           "'cancelled'."]  # drawn by the panel, not by the click's callback
    _wait(lambda: running_job(runs_dir) is None)
    assert load_run(runs_dir / live).status == "cancelled"

    _page(at, "views/runs.py")
    problems = {status.split(":")[0].split(" ")[0]: status for status in at.dataframe[0].value["status"]}
    assert "No space left on device" in problems["failed"]
    assert "stopped without finishing" in problems["interrupted"]
    assert "metrics.json" in problems["broken"]
    # the run cancelled above says where it stopped, and that nothing of it was kept (the app's Cancel discards)
    history = read_history(runs_dir / live)
    step = max(e["step"] for e in history if isinstance(e.get("step"), int))  # the last step any event recorded
    total = next(e["total_steps"] for e in history if e["event"] == "start")
    assert problems["cancelled"] == f"cancelled at step {step} of {total}; no weights were kept"
    at.selectbox(key="runs_one").set_value(live).run()
    assert f"This run was cancelled at step {step} of {total}; no weights were kept" in _texts(at)
    at.selectbox(key="runs_one").set_value(next(r.id for r in list_runs(runs_dir) if r.status == "broken")).run()
    assert not at.exception and any("metrics.json" in e for e in _errors(at))
    _page(at, "views/overview.py")
    assert len(at.dataframe[0].value) == 3  # broken and failed runs never reach the headline


# ---------------------------------------------------------------------------- the Train form

def test_train_form_refuses_bad_settings_before_anything_starts(monkeypatch, tmp_path, tiny_bert, sms_data):
    runs_dir = tmp_path / "runs"

    def fresh_form() -> AppTest:  # a new session starts from the form the last one left: each case starts clean
        (runs_dir / ".train-form.json").unlink(missing_ok=True)
        return _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at = fresh_form()
    assert not at.button(key="train_launch").disabled and not at.error

    fields = [  # (widget key, bad value, message): each shown under its own field
        ("train_finetune_epochs", 0, "Expected a value in [1, 1000], got 0"),
        ("train_shared_batch_size", 0, "Expected a value in [1, 4096]"),
        ("train_shared_max_length", 4096, "Expected at most 128 for "),
        ("train_shared_max_length", 100_000, "Expected at most 128 for "),  # the model's bound, not TrainConfig's 8192
        ("train_finetune_lr", "-1", "Expected a value in [1e-08, 1]"),
        ("train_frozen_lr", "fast", "Expected a number such as 5e-5"),
    ]
    # more decimals than the box shows: it read 0.000 and would have trained with 0.0004
    for key, value, decimals in [("train_shared_weight_decay", 0.0004, 3), ("train_shared_warmup_ratio", 0.125, 2)]:
        at = fresh_form()
        at.number_input(key=key).set_value(value).run()
        message = f"Expected at most {decimals} decimals (the box rounds to that many), got {value:g}"
        assert _errors_beside(at, key) == [message] and at.button(key="train_launch").disabled
    for key, value, message in fields:
        at = fresh_form()
        (at.number_input(key=key).set_value(value) if isinstance(value, int) else at.text_input(key=key).input(value)).run()
        assert [e for e in _errors_beside(at, key) if message in e] == [e for e in _errors(at)], (message, _errors(at))
        assert _errors(at) and at.button(key="train_launch").disabled
    models = [
        (str(tmp_path), "not a model directory"),
        # offline, only the default model falls back to the bundled one; a typo is not silently replaced
        ("bert-base-uncasd", "not in the local Hugging Face cache"),
        ("my model!!", "nor a valid hub id"),
    ]
    for name, message in models:
        at = fresh_form()
        at.text_input(key="train_model").input(name).run()
        assert any(message in e for e in _errors(at)), (message, _errors(at))
        assert at.button(key="train_launch").disabled
    # two wrong fields: both are named, not only the first
    at = fresh_form()
    at.number_input(key="train_shared_batch_size").set_value(0).run()
    at.number_input(key="train_finetune_epochs").set_value(0).run()
    # each under its own field: a shared one once, a mode's in that mode's column
    assert _errors_beside(at, "train_shared_batch_size") == ["Expected a value in [1, 4096], got 0"]
    assert _errors_beside(at, "train_finetune_epochs") == ["Expected a value in [1, 1000], got 0"]
    assert sorted(_errors(at)) == ["Expected a value in [1, 1000], got 0", "Expected a value in [1, 4096], got 0"]
    # a combination of valid fields is the one error left for the foot of the form
    at = fresh_form()
    at.number_input(key="train_shared_val_fraction").set_value(0.4).run()
    at.number_input(key="train_shared_test_fraction").set_value(0.4).run()
    # in the form's words, not TrainConfig's field names
    assert _errors(at) == ["Validation share + Test share: expected < 0.8 so some data is left to train on, got 0.8"]
    assert at.button(key="train_launch").disabled
    at.number_input(key="train_shared_batch_size").set_value(0).run()  # shown together, not one round at a time
    assert sorted(_errors(at)) == ["Expected a value in [1, 4096], got 0",
                                   "Validation share + Test share: expected < 0.8 so some data is left to train on, got 0.8"]
    assert not runs_dir.exists() or not list_runs(runs_dir)  # nothing started
    # no model name: one error on this page, none for the baseline (it uses no encoder), none in the sidebar
    at = fresh_form()
    at.text_input(key="train_model").input("  ").run()
    assert _errors(at) == ["Model: enter a hub id (such as bert-base-uncased) or a local model directory"]
    assert not at.sidebar.error and at.button(key="train_launch").disabled
    at.text_input(key="train_model").input("bert-base-uncasd").run()
    assert not at.sidebar.error  # the sidebar keeps showing the model a run would use


def test_unwritable_runs_folder_is_a_message_not_a_traceback(monkeypatch, tmp_path, tiny_bert, sms_data):
    runs_dir = Path("/sys/kernel/spam-runs")  # sysfs: nobody, root included, can create a folder here
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("baseline").run()
    at.button(key="train_launch").click().run()
    assert not at.exception
    assert any("cannot start training in /sys/kernel/spam-runs" in e for e in _errors(at)), _errors(at)
    _page(at, "views/runs.py")  # the other pages still work (no runs to show)


def test_train_launches_a_job_and_the_page_follows_it(monkeypatch, tmp_path, tiny_bert, sms_data):
    runs_dir = tmp_path / "runs"
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("finetune").run()
    at.checkbox(key="train_with_baseline").uncheck().run()
    at.number_input(key="train_finetune_epochs").set_value(2).run()
    at.button(key="train_launch").click().run()
    assert not at.exception and not at.error
    _wait(lambda: running_job(runs_dir) is None and list_runs(runs_dir))
    (run,) = list_runs(runs_dir)
    assert run.mode == "finetune" and run.status == "completed" and run.config["epochs"] == 2
    at.run()
    assert [s.value for s in at.success] == [f"Fine-tuned BERT finished: {run.id}{_scores(run)}"]  # its test scores
    # and where to see them against the others: the link picks the job's run, which Compare would not show
    # unpicked (2 epochs, fewer than the default's 3)
    [link] = at.main.get("page_link")
    assert link.proto.page == "compare" and parse_qs(link.proto.query_string) == {"finetune": [run.id]}
    at.query_params.update({"finetune": run.id})  # the click
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_finetune").value == run.id
    _page(at, "views/train.py")
    # a run trained since by another process (the CLI) is not reported as this job's
    other = train(_config("baseline", tmp_path, tiny_bert, sms_data))
    at.run()
    assert [s.value for s in at.success] == [f"Fine-tuned BERT finished: {run.id}{_scores(run)}"]
    assert other.name not in _texts(at)
    # the next estimate comes from that run, at the same max length
    assert any(re.search(r": (about \d+ s|under a second) for 2 epochs", c.value)
               and f"for 2 epochs (from run {run.id} on this machine)" in c.value
               for c in at.caption), [c.value for c in at.caption]


def _no_job_left(request, runs_dir: Path) -> None:
    """At the test's end, pass or fail: cancel a long job it started, which would slow every test after it."""
    from core import jobs

    def stop():
        if running_job(runs_dir) is not None:
            jobs.cancel(runs_dir)
            _wait(lambda: running_job(runs_dir) is None)
    request.addfinalizer(stop)


def test_a_start_refused_for_another_tabs_job_stays_said(monkeypatch, tmp_path, tiny_bert, sms_data, request):
    """Two tabs press Start a moment apart: the second is refused. The page redraws as the other job appears, and
    the refusal had vanished within a second, leaving the other job's outcome above this tab's form as if its own
    plan had run. It stays, until this tab starts a job."""
    from core import jobs
    runs_dir = tmp_path / "runs"
    _no_job_left(request, runs_dir)
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("baseline").run()
    launch = jobs.launch

    def another_tab_first(configs, *args, **kwargs):  # the other tab's job starts between this tab's draw and click
        launch([_config("finetune", tmp_path, tiny_bert, sms_data, epochs=300, batch_size=8)])
        return launch(configs, *args, **kwargs)  # refused: JobBusy
    monkeypatch.setattr(jobs, "launch", another_tab_first)
    at.button(key="train_launch").click().run()
    other = _wait(lambda: running_job(runs_dir) not in (None, "starting") and running_job(runs_dir))
    for _ in range(2):  # the redraws while the other job runs (the sidebar's, the panel's)
        at.run()
        assert [e.value for e in at.error] == [f"Your plan did not start, and nothing of it was trained: training job "
                                               f"{other} is running; only one job runs at a time: wait for it or "
                                               "cancel it first."]
    jobs.cancel(runs_dir)
    _wait(lambda: running_job(runs_dir) is None)
    at.run()  # after it ended: still said, until this tab starts a job
    assert [e.value for e in at.error] == ["Your plan was refused while another job ran, so nothing of it was "
                                           "trained: start it again."]
    assert not [r for r in list_runs(runs_dir) if r.mode == "baseline"]
    monkeypatch.setattr(jobs, "launch", launch)
    at.button(key="train_launch").click().run()
    _wait(lambda: running_job(runs_dir) is None and [r for r in list_runs(runs_dir) if r.mode == "baseline"])
    at.run()
    assert not at.error


def test_the_quick_preset_and_a_finish_refused_for_another_job_stay_said(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                         trained, request):
    """As on the Train page: a Start another tab's job beat stays said across the redraw that job's start causes."""
    from core import jobs
    for runs_dir in (tmp_path / "runs", tmp_path / "other"):
        _no_job_left(request, runs_dir)
    launch, launch_finish = jobs.launch, jobs.launch_finish

    def another_job_first(runs_dir):
        launch([dataclasses.replace(_config("finetune", tmp_path, tiny_bert, sms_data, epochs=300, batch_size=8),
                                    runs_dir=str(runs_dir))])
        return _wait(lambda: running_job(runs_dir) not in (None, "starting") and running_job(runs_dir))

    def ended(runs_dir):
        jobs.cancel(runs_dir)
        _wait(lambda: running_job(runs_dir) is None)
    runs_dir = tmp_path / "runs"  # no runs yet: the Overview offers the quick preset
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/overview.py")
    monkeypatch.setattr(jobs, "launch", lambda configs: (another_job_first(runs_dir), launch(configs)))
    at.button(key="overview_preset").click().run()
    at.run()  # the redraw while the other job runs
    [said] = [e.value for e in at.error]
    assert said.startswith("The quick preset did not start, and nothing of it was trained: training job ")
    ended(runs_dir)
    monkeypatch.setattr(jobs, "launch", launch)

    other = Path(shutil.copytree(trained, tmp_path / "other"))  # a run stopped after its best weights became model/
    run = next(r for r in list_runs(other) if r.mode == "finetune")
    (run.path / "metrics.json").unlink()
    status = json.loads((run.path / "status.json").read_text())
    (run.path / "status.json").write_text(json.dumps(status | {"status": "running", "pid": 2**22 + 7}))
    monkeypatch.setenv("SPAM_RUNS_DIR", str(other))
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params["runs_pick"] = run.id
    _page(at.run(), "views/runs.py")
    monkeypatch.setattr(jobs, "launch_finish", lambda root, run_id, *a: (another_job_first(other),
                                                                         launch_finish(root, run_id, *a)))
    at.button(key="runs_finish").click().run()
    at.run()
    assert [e.value for e in at.error if "did not start" in e.value][0].startswith(
        f"The finish of run {run.id} did not start, and nothing of it was trained: training job ")
    ended(other)


def test_a_learning_curve_job_trains_the_sample_first_and_links_to_the_run_on_all_messages(monkeypatch, tmp_path,
                                                                                          tiny_bert, sms_data):
    runs_dir = tmp_path / "runs"
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("finetune").run()
    at.checkbox(key="train_with_baseline").uncheck().run()
    at.number_input(key="train_finetune_epochs").set_value(2).run()
    at.multiselect(key="train_shared_curve").set_value([50]).run()
    at.button(key="train_launch").click().run()
    assert not at.exception and not at.error
    _wait(lambda: running_job(runs_dir) is None and len(list_runs(runs_dir)) == 2)
    whole, sample = list_runs(runs_dir)  # newest first: the sample trained first
    assert (sample.config["train_messages"], whole.config["train_messages"]) == (50, None)
    at.run()
    assert [s.value for s in at.success] == [f"Fine-tuned BERT on 50 messages finished: {sample.id}{_scores(sample)}"
                                             f"  \nFine-tuned BERT finished: {whole.id}{_scores(whole)}"]
    [link] = at.main.get("page_link")  # Compare opens on the run on all the messages, not the sample's
    assert parse_qs(link.proto.query_string) == {"finetune": [whole.id]}


def test_after_a_job_on_a_sample_compare_them_pairs_it_with_the_other_modes_run_on_as_many(monkeypatch, tmp_path,
                                                                                          tiny_bert, sms_data):
    # a 50-message fine-tune was compared with the frozen run on all the messages, and McNemar said nothing of it
    runs_dir = tmp_path / "runs"
    few = load_run(train(_config("frozen", tmp_path, tiny_bert, sms_data, epochs=5, train_messages=50)))
    train(_config("frozen", tmp_path, tiny_bert, sms_data, epochs=5))  # newer, on all of them
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("finetune").run()
    at.checkbox(key="train_with_baseline").uncheck().run()
    at.number_input(key="train_finetune_epochs").set_value(1).run()
    at.number_input(key="train_shared_train_messages").set_value(50).run()
    at.button(key="train_launch").click().run()
    assert not at.exception and not at.error
    _wait(lambda: running_job(runs_dir) is None and len(list_runs(runs_dir)) == 3)
    at.run()
    [finetune] = [r for r in list_runs(runs_dir) if r.mode == "finetune"]
    [link] = at.main.get("page_link")
    assert parse_qs(link.proto.query_string) == {"finetune": [finetune.id], "frozen": [few.id]}



def test_compare_them_pairs_a_sample_only_with_a_run_on_its_test_messages_and_not_after_all_of_them(
        monkeypatch, tmp_path, trained):
    """After a 50-message fine-tune, the link pairs it with a frozen run on 50 messages of the same split, not a newer
    one on another split (no paired test there). After a job on all the messages the frozen pick stays the user's."""
    from views.common import compare_link_picks
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    monkeypatch.setenv("SPAM_RUNS_DIR", str(runs_dir))
    full = {r.mode: r for r in list_runs(runs_dir)}
    created = full["finetune"].created
    job = _copied_run(full["finetune"], runs_dir, "s50", config=_on_messages(50, created + 3))
    same = _copied_run(full["frozen"], runs_dir, "s50", config=_on_messages(50, created + 1))

    def other_split(metrics):
        metrics["predictions"] = metrics["predictions"][::-1]
    _copied_run(full["frozen"], runs_dir, "seed7", config=_on_messages(50, created + 2), metrics=other_split)
    assert compare_link_picks([job]) == {"finetune": job.id, "frozen": same.id}
    assert compare_link_picks([full["finetune"]]) == {"finetune": full["finetune"].id}

def test_a_baseline_only_job_links_to_no_empty_compare_page(monkeypatch, tmp_path, tiny_bert, sms_data):
    runs_dir = tmp_path / "runs"
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("baseline").run()
    at.button(key="train_launch").click().run()
    _wait(lambda: running_job(runs_dir) is None and list_runs(runs_dir))
    at.run()
    [run] = list_runs(runs_dir)
    assert [s.value for s in at.success] == [f"TF-IDF baseline finished: {run.id}{_scores(run)}"]
    assert not at.main.get("page_link")  # Compare needs a frozen or fine-tuned run


def test_finish_now_from_the_train_page_completes_the_run_with_its_best_weights(monkeypatch, tmp_path, tiny_bert,
                                                                               sms_data):
    runs_dir = tmp_path / "runs"
    jobs.launch([_config("finetune", tmp_path, tiny_bert, sms_data, epochs=300, batch_size=8)])
    live = _wait(lambda: (p := jobs.current_job(runs_dir)) and p.step > 0 and p.run_id)
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.button(key="train-finish").click().run()
    assert not at.exception and not at.error
    _wait(lambda: running_job(runs_dir) is None)
    run = load_run(runs_dir / live)
    assert run.status == "completed" and run.usable
    assert [e["reason"] for e in read_history(run.path) if e["event"] == "early_stop"] == ["asked"]


def test_each_mode_keeps_its_own_class_weights_unless_the_user_sets_them(monkeypatch, tmp_path, tiny_bert, sms_data):
    launched = []
    monkeypatch.setattr(jobs, "launch", launched.append)  # what the page asks to train, not the training itself
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/train.py")
    at.button(key="train_launch").click().run()
    assert {c.mode: c.class_weight for c in launched[-1]} == {"baseline": "balanced", "frozen": "balanced",
                                                              "finetune": "none"}  # as the CLI's defaults
    at.selectbox(key="train_class_weight").set_value("balanced").run()
    at.button(key="train_launch").click().run()
    assert {c.class_weight for c in launched[-1]} == {"balanced"}
    at.selectbox(key="train_class_weight").set_value("none").run()  # plain cross-entropy for all, frozen head too
    at.button(key="train_launch").click().run()
    assert {c.class_weight for c in launched[-1]} == {"none"}


def test_the_train_form_trains_every_run_of_a_plan_on_the_same_sample_of_messages(monkeypatch, tmp_path, tiny_bert,
                                                                                  sms_data):
    launched = []
    monkeypatch.setattr(jobs, "launch", launched.append)  # what the page asks to train, not the training itself
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/train.py")
    n_train = next(int(m.group(1).replace(",", "")) for c in at.caption
                   if (m := re.match(r"([\d,]+) training messages\. ", c.value)))
    at.number_input(key="train_shared_train_messages").set_value(40).run()
    assert any(c.value.startswith(f"40 of the {n_train:,} training messages. ") for c in at.caption)
    assert any("Training messages 40 (default all)" in c.value for c in at.caption)
    # 40 messages at batch 32 are 2 steps a pass: 50 passes make an epoch of 100 steps
    assert [c.value for c in at.caption if "an epoch goes over" in c.value] == [
        "Fine-tuned BERT: an epoch goes over 40 messages 50 times, so that it makes at least 100 optimisation steps "
        "(Min steps per epoch)."]
    assert not [w.value for w in at.warning if "optimisation steps" in w.value]
    # one pass an epoch: 6 steps, and the page says what that did
    at.number_input(key="train_finetune_min_epoch_steps").set_value(0).run()
    assert not [c.value for c in at.caption if "an epoch goes over" in c.value]
    assert [w.value for w in at.warning if "optimisation steps" in w.value] == [
        "Fine-tuned BERT: this fine-tune is 6 optimisation steps (3 epochs): on SMS spam, fine-tunes of 30 steps or "
        "fewer collapsed to calling every message ham on 8 of 9 splits, and none of 60 or more did; more epochs or "
        "a higher Min steps per epoch give a small sample more steps (benchmarks/README.md, section 17)."]
    at.button(key="train_launch").click().run()
    assert [(c.mode, c.train_messages, c.min_epoch_steps) for c in launched[-1]] == [
        ("baseline", 40, 0), ("frozen", 40, 0), ("finetune", 40, 0)]
    at.number_input(key="train_finetune_epochs").set_value(30).run()  # 60 steps
    assert not [w.value for w in at.warning if "optimisation steps" in w.value]
    at.number_input(key="train_finetune_epochs").set_value(3).run()
    at.number_input(key="train_finetune_min_epoch_steps").set_value(100).run()
    at.number_input(key="train_shared_train_messages").set_value(5).run()  # too few for a stratified sample
    assert _errors_beside(at, "train_shared_train_messages") == ["Expected a value in [20, 1000000000], got 5"]
    assert at.button(key="train_launch").disabled
    at.number_input(key="train_shared_train_messages").set_value(0).run()  # all of them
    at.button(key="train_launch").click().run()
    assert {c.train_messages for c in launched[-1]} == {None}

    # a learning curve: each model of the plan first on fewer messages, then on them all; a size not below the runs'
    # own is left out, and said so (this file has 91 training messages)
    assert n_train == 91
    at.multiselect(key="train_shared_curve").set_value([100, 50]).run()
    assert "Learning curve first: 3 more runs on 50 training messages, " in "".join(c.value for c in at.caption)
    assert "Left out: 100, not fewer than the 91 above." in "".join(c.value for c in at.caption)
    assert "Learning curve 100, 50 (default none)" in "".join(c.value for c in at.caption)
    assert [c.value for c in at.caption if "an epoch goes over" in c.value] == [
        "Fine-tuned BERT: an epoch goes over 50 messages 50 times and 91 messages 34 times, so that it makes at least "
        "100 optimisation steps (Min steps per epoch)."]
    assert not [w.value for w in at.warning if "optimisation steps" in w.value]
    at.number_input(key="train_finetune_min_epoch_steps").set_value(0).run()
    assert [w.value for w in at.warning if "learning curve's" in w.value] == [
        "Fine-tuned BERT on the learning curve's 50 training messages: this fine-tune is 6 optimisation steps (3 "
        "epochs): on SMS spam, fine-tunes of 30 steps or fewer collapsed to calling every message ham on 8 of 9 "
        "splits, and none of 60 or more did; more epochs or a higher Min steps per epoch give a small sample more "
        "steps (benchmarks/README.md, section 17)."]
    at.button(key="train_launch").click().run()
    assert [(c.mode, c.train_messages) for c in launched[-1]] == [
        (mode, size) for size in (50, None) for mode in ("baseline", "frozen", "finetune")]
    assert [dataclasses.replace(c, train_messages=None) for c in launched[-1][:3]] == launched[-1][3:]
    # a size equal to the runs' own is no smaller point either: with 50 training messages, the curve's 50 is left out
    at.number_input(key="train_shared_train_messages").set_value(50).run()
    assert "Learning curve: 50, 100 left out, not fewer than the 50 training messages above." in [
        c.value for c in at.caption]
    at.button(key="train_launch").click().run()
    assert [c.train_messages for c in launched[-1]] == [50] * 3

def test_the_train_form_sets_clipping_validations_arithmetic_and_threshold_as_the_cli_does(monkeypatch, tmp_path,
                                                                                           tiny_bert, sms_data):
    launched = []
    monkeypatch.setattr(jobs, "launch", launched.append)  # what the page asks to train, not the training itself
    runs_dir = tmp_path / "runs"
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    assert [at.number_input(key=f"train_{m}_evals_per_epoch").value for m in ("frozen", "finetune")] == [1, 4]
    at.number_input(key="train_shared_threshold").set_value(0.3).run()
    at.number_input(key="train_finetune_evals_per_epoch").set_value(2).run()
    at.number_input(key="train_shared_max_grad_norm").set_value(0.5).run()
    at.selectbox(key="train_precision").set_value("fp32").run()
    at.button(key="train_launch").click().run()
    assert not at.exception and not at.error
    bert = {c.mode: (c.evals_per_epoch, c.max_grad_norm, c.precision) for c in launched[-1] if c.mode != "baseline"}
    assert bert == {"frozen": (1, 0.5, "fp32"), "finetune": (2, 0.5, "fp32")}
    # one verdict rule for every run of the plan
    assert {c.mode: c.threshold for c in launched[-1]} == {"baseline": 0.3, "frozen": 0.3, "finetune": 0.3}
    assert json.loads((runs_dir / ".train-form.json").read_text()) == {
        "train_shared_threshold": 0.3, "train_finetune_evals_per_epoch": 2, "train_shared_max_grad_norm": 0.5,
        "train_precision": "fp32"}

    # a reload starts from them; a baseline-only plan keeps its threshold, and shows no field it does not use
    at = _page(AppTest.from_file(APP, default_timeout=90).run(), "views/train.py")
    assert at.selectbox(key="train_precision").value == "fp32"
    assert at.number_input(key="train_finetune_evals_per_epoch").value == 2
    at.number_input(key="train_shared_seed").set_value(7).run()
    at.radio(key="train_plan").set_value("baseline").run()
    shown = {w.key for kind in ("number_input", "selectbox") for w in getattr(at, kind)}
    assert shown == {"train_shared_seed", "train_shared_val_fraction", "train_shared_test_fraction",
                     "train_shared_train_messages", "train_class_weight", "train_shared_threshold"}, shown
    at.button(key="train_launch").click().run()
    assert [(c.mode, c.seed, c.threshold) for c in launched[-1]] == [("baseline", 7, 0.3)]

    # a threshold TrainConfig refuses: its message under the field, and nothing starts
    at.number_input(key="train_shared_threshold").set_value(1.5).run()
    assert _errors_beside(at, "train_shared_threshold") == ["Expected a value in [0.001, 0.999], got 1.5"]
    # ...and, since "More settings" may be closed (a reload closes it), a line by Start says where to look
    assert _errors(at) == ["Expected a value in [0.001, 0.999], got 1.5",
                           'Start training is disabled: Spam threshold under "More settings" has a value that cannot '
                           'be used; open it to see why, or reset the form.']
    assert at.button(key="train_launch").disabled
    at.radio(key="train_plan").set_value("both").run()
    at.button(key="train_reset").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert (at.number_input(key="train_shared_threshold").value,
            at.number_input(key="train_shared_max_grad_norm").value, at.selectbox(key="train_precision").value,
            at.number_input(key="train_finetune_evals_per_epoch").value) == (0.5, 1.0, "bf16", 4)


def test_the_train_form_survives_a_reload(monkeypatch, tmp_path, tiny_bert, sms_data):
    runs_dir = tmp_path / "runs"
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("frozen").run()
    at.checkbox(key="train_with_baseline").uncheck().run()
    at.number_input(key="train_shared_batch_size").set_value(8).run()
    at.number_input(key="train_frozen_epochs").set_value(7).run()
    at.text_input(key="train_frozen_lr").input("0.002").run()
    at.number_input(key="train_frozen_dropout").set_value(0.15).run()
    at.selectbox(key="train_frozen_pooling").set_value("cls").run()
    at.selectbox(key="train_class_weight").set_value("none").run()
    at.number_input(key="train_shared_seed").set_value(42).run()  # back to its default: not kept
    kept = json.loads((runs_dir / ".train-form.json").read_text())
    assert kept == {"train_plan": "frozen", "train_with_baseline": False, "train_shared_batch_size": 8,
                    "train_frozen_epochs": 7, "train_frozen_lr": "0.002", "train_frozen_dropout": 0.15,
                    "train_frozen_pooling": "cls", "train_class_weight": "none"}, kept
    assert "query" not in str(at.query_params) and set(at.query_params) <= {"data"}  # no browser history entries

    # a reload is a new session: the form comes back as it was
    def reload() -> AppTest:
        fresh = AppTest.from_file(APP, default_timeout=90).run()
        return _page(fresh, "views/train.py")
    reloaded = reload()
    assert reloaded.radio(key="train_plan").value == "frozen"
    assert reloaded.checkbox(key="train_with_baseline").value is False
    assert reloaded.number_input(key="train_shared_batch_size").value == 8
    assert reloaded.number_input(key="train_frozen_epochs").value == 7
    assert reloaded.text_input(key="train_frozen_lr").value == "0.002"
    assert reloaded.number_input(key="train_frozen_dropout").value == 0.15
    assert reloaded.selectbox(key="train_frozen_pooling").value == "cls"
    assert reloaded.selectbox(key="train_class_weight").value == "none"
    assert reloaded.number_input(key="train_shared_seed").value == 42
    # said, as a demo in another session could take them for the recipe
    [note] = [c.value for c in reloaded.caption if c.value.startswith("Not the defaults")]
    assert "Epochs (Frozen BERT + MLP head) 7 (default 60)" in note and "Batch size 8 (default 32)" in note
    assert "What to train Frozen encoder + MLP head (default Both, one after the other)" in note
    assert "Learning rate (Frozen BERT + MLP head) 0.002 (default 0.001)" in note

    # the default typed another way is the default: 5e-5 for 5e-05
    reloaded.radio(key="train_plan").set_value("finetune").run()  # the frozen fields are not drawn now...
    reloaded.text_input(key="train_finetune_lr").input("5e-5").run()
    assert "train_finetune_lr" not in json.loads((runs_dir / ".train-form.json").read_text())
    assert json.loads((runs_dir / ".train-form.json").read_text())["train_frozen_epochs"] == 7  # ...but kept
    reloaded.button(key="train_reset").click().run()  # ...and reset too
    assert not reloaded.exception, [e.value for e in reloaded.exception]
    assert not (runs_dir / ".train-form.json").exists() and reloaded.button(key="train_reset").disabled
    assert not any(c.value.startswith("Not the defaults") for c in reloaded.caption)
    assert reloaded.radio(key="train_plan").value == "both"
    assert reloaded.number_input(key="train_shared_batch_size").value == 32
    assert reloaded.number_input(key="train_frozen_epochs").value == 60
    assert reloaded.text_input(key="train_frozen_lr").value == "0.001"
    assert reloaded.selectbox(key="train_frozen_pooling").value == "mean"
    assert reloaded.checkbox(key="train_with_baseline").value is True

    # a damaged or hand-edited file: values of the wrong type, or that Streamlit refuses, are the defaults; one that
    # is a number but not a valid setting is shown, with its error, as if typed
    (runs_dir / ".train-form.json").write_text(json.dumps({
        "train_plan": "everything", "train_shared_batch_size": "eight", "train_shared_seed": 99999999999999999999,
        "train_finetune_epochs": 0, "train_frozen_dropout": float("inf"), "train_class_weight": 3}))
    edited = reload()
    assert edited.radio(key="train_plan").value == "both" and edited.selectbox(key="train_class_weight").value == "per mode"
    assert edited.number_input(key="train_shared_batch_size").value == 32
    assert edited.number_input(key="train_frozen_dropout").value == 0.3
    assert edited.number_input(key="train_shared_seed").value == 42
    assert _errors_beside(edited, "train_finetune_epochs") == ["Expected a value in [1, 1000], got 0"]
    assert edited.button(key="train_launch").disabled
    (runs_dir / ".train-form.json").write_text("{not json")
    assert reload().radio(key="train_plan").value == "both"


def test_a_train_tab_that_reruns_does_not_write_back_what_another_tab_changed(monkeypatch, tmp_path, tiny_bert,
                                                                           sms_data):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / ".train-form.json").write_text(json.dumps({"train_shared_seed": 7}))
    first = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    second = _page(AppTest.from_file(APP, default_timeout=90).run(), "views/train.py")  # another tab, opened before
    first.number_input(key="train_finetune_epochs").set_value(2).run()
    first.number_input(key="train_shared_seed").set_value(5).run()
    second.run()  # what every open tab does when a job ends: it still shows seed 7 and epochs 3...
    assert second.number_input(key="train_shared_seed").value == 7
    second.number_input(key="train_shared_batch_size").set_value(16).run()  # ...and its own edit is kept
    assert json.loads((runs_dir / ".train-form.json").read_text()) == {
        "train_shared_seed": 5, "train_finetune_epochs": 2, "train_shared_batch_size": 16}
    second.number_input(key="train_shared_seed").set_value(42).run()  # edited back to its default: forgotten
    assert json.loads((runs_dir / ".train-form.json").read_text()) == {
        "train_finetune_epochs": 2, "train_shared_batch_size": 16}
    reloaded = _page(AppTest.from_file(APP, default_timeout=90).run(), "views/train.py")
    assert reloaded.number_input(key="train_finetune_epochs").value == 2
    assert reloaded.number_input(key="train_shared_batch_size").value == 16


def test_inputs_survive_a_page_switch(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    older = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    train(_config("baseline", tmp_path, tiny_bert, sms_data))  # a newer baseline, picked by default
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("frozen").run()
    at.number_input(key="train_frozen_epochs").set_value(7).run()
    at.text_input(key="train_frozen_lr").input("0.002").run()
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_baseline").value != older.id
    at.selectbox(key="compare_baseline").set_value(older.id).run()
    at.slider(key="compare_threshold").set_value(0.6).run()
    at.text_input(key="compare_search").input("call").run()
    _page(at, "views/playground.py")  # a run picked on Compare is the one tried here, and back
    assert at.selectbox(key="play_baseline").value == older.id
    at.text_area(key="play_text").input("see you at 6").run()
    for page in ("views/runs.py", "views/overview.py", "views/train.py"):
        _page(at, page)
    assert at.radio(key="train_plan").value == "frozen"
    assert at.number_input(key="train_frozen_epochs").value == 7
    assert at.text_input(key="train_frozen_lr").value == "0.002"
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_baseline").value == older.id
    assert at.slider(key="compare_threshold").value == 0.6 and at.text_input(key="compare_search").value == "call"
    _page(at, "views/playground.py")
    assert at.text_area(key="play_text").value == "see you at 6" and len(at.metric) == 3
    newer = next(r for r in list_runs(runs_dir) if r.mode == "baseline" and r.id != older.id)
    at.selectbox(key="play_baseline").set_value(newer.id).run()
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_baseline").value == newer.id
    _page(at, "views/playground.py")
    at.selectbox(key="play_baseline").set_value("none").run()  # "not used" here is "none" there
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_baseline").value == "none"  # shown as "not shown"
    _page(at, "views/playground.py")
    at.selectbox(key="play_frozen").set_value("none").run()  # a pick Compare's frozen picker cannot show
    at.selectbox(key="play_baseline").set_value(older.id).run()
    shutil.rmtree(runs_dir / older.id)  # deleted behind the app's back: the pick falls back to the newest run
    _page(at, "views/compare.py")
    assert at.selectbox(key="compare_frozen").value is not None and not at.exception
    assert at.selectbox(key="compare_baseline").value == newer.id
    _page(at, "views/playground.py")
    assert at.selectbox(key="play_frozen").value == "none" and at.selectbox(key="play_baseline").value == newer.id


def test_train_estimate_knows_the_max_length_and_whether_frozen_features_are_cached(monkeypatch, tmp_path, tiny_bert,
                                                                                     sms_data, trained):
    def estimate():
        return next(c.value for c in at.caption if "training messages" in c.value)

    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("frozen").run()
    assert "which used max length 32" in estimate() and "to encode the 130 messages once" in estimate()
    monkeypatch.setenv("SPAM_CACHE_DIR", str(trained.parent / "cache"))  # where the trained runs cached theirs
    at.number_input(key="train_shared_max_length").set_value(32).run()
    assert "features are cached, so nothing to encode" in estimate() and "on this machine" in estimate()


def test_train_estimate_finds_features_cached_where_bf16_fell_back_to_fp32(monkeypatch, tmp_path, tiny_bert,
                                                                          sms_data):
    # a CPU without native bf16 trains a bf16 run in fp32 and caches its features under fp32: the estimate
    # must look there, not say it will encode the messages again
    monkeypatch.setattr("core.features._bf16_native", lambda: False)
    run = train(_config("frozen", tmp_path, tiny_bert, sms_data, epochs=1))
    assert json.loads((run / "config.json").read_text())["precision"] == "fp32"
    at = _page(_app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data), "views/train.py")
    at.radio(key="train_plan").set_value("frozen").run()
    at.number_input(key="train_shared_max_length").set_value(32).run()
    estimate = next(c.value for c in at.caption if "training messages" in c.value)
    assert "features are cached, so nothing to encode" in estimate, estimate


# ---------------------------------------------------------------------------- bad uploads, settings, HTML

BAD_UPLOADS = {
    "empty.csv": (b"", "the file is empty"),
    "binary.csv": (bytes(range(256)) * 4, "binary file"),
    "columns.csv": (b"a,b\n1,2\n3,4\n", "no label column"),
    "labels.csv": (b"label,text\nmaybe,hello\nperhaps,there\n", "the label column 'label' holds 'maybe', 'perhaps'"),
    "few.csv": (b"label,text\n" + b"".join(b"%s,message %d\n" % (b"spam" if i < 3 else b"ham", i) for i in range(40)),
                "only 3 spam messages"),
}


@pytest.mark.parametrize("name", BAD_UPLOADS)
def test_a_bad_upload_is_refused_with_its_reason_and_the_page_keeps_working(monkeypatch, tmp_path, tiny_bert,
                                                                          sms_data, name):
    raw, reason = BAD_UPLOADS[name]
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data)
    at.sidebar.file_uploader[0].set_value((name, raw, "text/csv")).run()
    assert not at.exception
    assert any(reason in e for e in _errors(at.sidebar)), _errors(at.sidebar)
    assert not (tmp_path / "uploads").exists() or not list((tmp_path / "uploads").iterdir())  # nothing kept
    assert "sms.txt" in _texts(at.sidebar)  # still on the default dataset


def test_a_latin1_upload_with_a_markdown_name_is_used_and_shown_inert(monkeypatch, tmp_path, tiny_bert, sms_data):
    rows = make_messages(40, 20, seed=5) + [("ham", "café crème à 5 €")]
    raw = "".join(f"{l}\t{t}\n" for l, t in rows).replace("€", "EUR").encode("latin-1")
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, sms_data)
    at.sidebar.file_uploader[0].set_value(("[x](javascript:alert(1)).txt", raw, "text/plain")).run()
    assert not at.exception and not at.sidebar.error
    (saved,) = (tmp_path / "uploads").iterdir()
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", saved.name)  # a safe file name, whatever the upload was called
    assert "61 messages" in _texts(at.sidebar)


def test_user_text_in_messages_stays_text():
    from views.common import plain
    shown = plain("root:x:0:0:root:/root:/bin/bash **bold** :material/home: [link](http://x)")
    assert ":x:" not in shown and ":material/home:" not in shown  # no emoji, no icon
    assert "**" not in shown and "[link]" not in shown  # no markdown
    assert _unescape(shown).replace("\u200b", "").replace("\u2060", "") == "root:x:0:0:root:/root:/bin/bash **bold** :material/home: [link](http://x)"
    # a colour directive, or a bare ":red", would vanish from the page, colon and name (seen in Chromium)
    for text in (":red[x]", "say :blue-background[hi]", "a :red word", "Re:WIN"):
        shown = plain(text)
        assert not re.search(r":[A-Za-z]", shown) and _unescape(shown).replace("\u200b", "") == text
    # bare URLs, www. names and e-mail addresses would be autolinked: a phishing link one click away
    for text, live in (("http://evil.example/win", "http://"), ("HTTPS://evil.example", "HTTPS://"),
                       ("www.evil.example", "www."), ("win@evil.example", "n@"), ("visit_www.evil.example", "www.")):
        shown = plain(f"claim at {text} now")
        assert live not in shown and _unescape(shown).replace("\u2060", "") == f"claim at {text} now"


def test_a_run_picker_names_each_runs_epochs(trained):
    import dataclasses
    from views.common import run_labels  # a quick one-epoch run must not pass for the full one beside it
    runs = {r.mode: r for r in list_runs(trained)}
    labels = {mode: run_labels([run])[run.id] for mode, run in runs.items()}
    assert " · 20 epochs · " in labels["frozen"] and " · 3 epochs · " in labels["finetune"]
    assert "epoch" not in labels["baseline"]  # one solver fit
    assert not any(run.id.rsplit("-", 1)[-1] in labels[mode] for mode, run in runs.items())  # no id: nothing to tell apart
    patient = dataclasses.replace(runs["finetune"], config={**runs["finetune"].config, "patience": 2})
    assert " · up to 3 epochs · " in run_labels([patient])[patient.id]  # early stopping may have ended it sooner
    twin = dataclasses.replace(runs["finetune"], id=runs["finetune"].id[:-4] + "zzzz")  # same minute, same scores
    both = run_labels([runs["finetune"], twin])
    assert both[twin.id].endswith(" · zzzz") and both[runs["finetune"].id].endswith(runs["finetune"].id[-4:])


def test_probabilities_that_would_show_as_0_or_1_are_flagged():
    from views.common import shows_as_certain
    assert shows_as_certain([0.5, 0.9995], decimals=3) and shows_as_certain([0.0004999], decimals=3)
    assert shows_as_certain([1.0], decimals=3) and shows_as_certain([0.0], decimals=3)  # a saturated float too
    assert not shows_as_certain([0.0005, 0.9994], decimals=3)  # shown as 0.001 and 0.999
    assert shows_as_certain([[0.2, 0.99999]], decimals=4) and not shows_as_certain([0.9999], decimals=4)


@pytest.fixture
def server_address():
    """Sets streamlit's server.address for one test (the app reads it to decide what a viewer may do)."""
    from streamlit import config
    before = config.get_option("server.address")
    yield lambda address: config.set_option("server.address", address)
    config.set_option("server.address", before)


def test_a_typed_dataset_path_is_offered_only_while_the_app_listens_on_localhost(monkeypatch, tmp_path, tiny_bert,
                                                                                  sms_data, server_address):
    server_address("localhost")
    at = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, None)
    at.sidebar.text_input(key="data_path_input").input(str(sms_data)).run()
    at.sidebar.button(key="data_path_use").click().run()
    assert not at.sidebar.error and any(sms_data.name in _unescape(c.value) for c in at.sidebar.caption)
    # served to the network, a typed path would read any file the server can (and an error quotes its first line)
    server_address("0.0.0.0")
    exposed = _app(monkeypatch, tmp_path, tmp_path / "runs", tiny_bert, None)
    assert not [t for t in exposed.sidebar.text_input if t.key == "data_path_input"]
    assert any("upload the file instead" in c.value for c in exposed.sidebar.caption)
    assert exposed.sidebar.file_uploader  # the upload stays


def test_server_config_keeps_the_app_local_and_caps_uploads():
    import tomllib

    from core.data import MAX_FILE_BYTES

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert config["server"]["maxUploadSize"] * 1e6 <= MAX_FILE_BYTES  # the UI limit is never above core's
    assert config["server"]["enableXsrfProtection"] is True


def test_server_config_does_not_collect_garbage_after_every_script_run():
    # Streamlit's default gc.collect() after each run, live panel refreshes included, took most of the server's CPU
    # while a job trained on the same cores (benchmarks/README.md section 20)
    import tomllib

    from streamlit import config as streamlit_config

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
    assert "runner.postScriptGC" in streamlit_config.get_config_options()  # an unknown key would only be warned of


def test_a_dropped_model_is_freed_without_a_garbage_collection(trained):
    # with the collection after every rerun off, a model the cache evicts (or a deleted run's) must go by reference
    # counting alone: a reference cycle in it would keep hundreds of MB until Python's next full collection
    import gc
    import weakref

    for run in list_runs(trained):
        predictor = Predictor.load(run.path)
        assert predictor.predict(["WIN a prize now", "see you at 5"]).shape == (2,)
        dropped = weakref.ref(predictor)
        gc.disable()
        try:
            del predictor
            assert dropped() is None, run.mode
        finally:
            gc.enable()


def test_no_page_renders_raw_html():
    sources = [Path(APP)] + sorted((Path(APP).parent / "views").glob("*.py"))
    offenders = [p.name for p in sources if "unsafe_allow_html" in p.read_text() or "st.html(" in p.read_text()]
    assert offenders == []


def test_a_labelled_file_with_repeats_scores_the_same_on_compare_and_the_playground(
        monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    rows = make_messages(30, 10, seed=6)
    rows += [row for row in rows if row[0] == "spam"] * 3  # each spam message 4 times: 70 rows, 40 messages
    labelled = "".join(f"{label}\t{text}\n" for label, text in rows).encode()
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/compare.py")
    at.file_uploader(key="compare_own").set_value(("repeats.txt", labelled, "text/plain")).run()
    yours = next(d.value for d in at.dataframe if "measure" in d.value.columns).set_index("measure")
    on_compare = dict(zip(yours.columns, yours.loc["Accuracy (yours)"]))
    assert "30 repeated message(s) in repeats.txt were scored once." in [w.value for w in at.warning]
    _page(at, "views/playground.py")
    at.file_uploader(key="play_upload").set_value(("repeats.txt", labelled, "text/plain")).run()
    at.button(key="play_score").click().run()
    [accuracies] = [c.value for c in at.caption if " accuracy " in c.value]
    assert accuracies.endswith("(95 % intervals; each repeated message counted once, as on Compare (30 repeats))")
    for label, shown in on_compare.items():  # the same accuracy and interval on both pages
        assert f"{label} accuracy {shown}" in accuracies
    table = at.dataframe[0].value
    assert len(table) == 70  # every row is still in the table and its CSV
    per_row = {m: (table[f"{m} verdict"] == table["label"]).mean() for m in ("frozen", "finetune", "baseline")}
    assert any(f"accuracy {a:.3f} " not in accuracies for a in per_row.values())  # counting repeats would differ


def test_own_messages_warn_about_training_overlap_and_a_file_with_one_class(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                          trained):
    at = _page(_app(monkeypatch, tmp_path, trained, tiny_bert, sms_data), "views/compare.py")
    training_like = sms_data.read_bytes().splitlines(keepends=True)[:20]  # from the data the runs were trained on
    at.file_uploader(key="compare_own").set_value(("seen.txt", b"".join(training_like), "text/plain")).run()
    yours = next(d.value for d in at.dataframe if "measure" in d.value.columns).set_index("measure")
    assert (yours.loc["seen in training"].astype(int) > 0).all()
    assert any("were in a model's training or validation data" in w.value for w in at.warning)
    _page(at, "views/playground.py")  # a labelled batch on the Playground gets accuracies, and the same warning
    at.file_uploader(key="play_upload").set_value(("seen.txt", b"".join(training_like), "text/plain")).run()
    at.button(key="play_score").click().run()
    [warning] = [w.value for w in at.warning if "were in a model's training or validation data" in w.value]
    [accuracies] = [c.value for c in at.caption if " accuracy " in c.value]  # each with its interval, as on Compare
    assert len(re.findall(r"accuracy [01]\.\d{3} \[[01]\.\d{3}, [01]\.\d{3}\]", accuracies)) == 3
    assert accuracies.endswith("(95 % intervals)")
    seen = seen_in_training(list_runs(trained)[0].config, [l.decode().split("\t", 1)[1].strip() for l in training_like])
    assert seen > 0 and f"Fine-tuned BERT: {seen}" in warning
    at.file_uploader(key="play_upload").set_value(None).run()
    _page(at, "views/compare.py")
    only_ham = "".join(f"ham\tsee you at {h} tonight, bring the charger\n" for h in range(5, 11)).encode()
    at.file_uploader(key="compare_own").set_value(("only-ham.txt", only_ham, "text/plain")).run()
    assert not at.exception
    assert [w.value for w in at.warning if "Your file has no spam" in w.value] == [
        "Your file has no spam: recall, F1, AUROC and AUPRC are undefined here (– in the table), as is precision for a "
        "model that calls nothing spam; accuracy is the share of ham let through."]
    yours = next(d.value for d in at.dataframe if "measure" in d.value.columns).set_index("measure")
    assert set(yours.loc["Recall (yours)"]) == set(yours.loc["F1 (yours)"]) == {"–"}  # not 0: there was none to find

    # a run whose dataset has moved: its overlap cannot be checked, and the table says — (not nan), the others 17
    runs_dir = Path(shutil.copytree(trained, tmp_path / "moved"))
    moved = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    config = json.loads((moved.path / "config.json").read_text())
    config["data_info"]["source"] = str(tmp_path / "gone.txt")
    (moved.path / "config.json").write_text(json.dumps(config))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/compare.py")
    at.file_uploader(key="compare_own").set_value(("seen.txt", b"".join(training_like), "text/plain")).run()
    row = next(d.value for d in at.dataframe if "measure" in d.value.columns).set_index("measure").loc["seen in training"]
    assert pd.isna(row["TF-IDF baseline"]) and row["Fine-tuned BERT"] == str(seen) and row["Frozen BERT + MLP head"] == str(seen)
    assert any(w.value.startswith("Whether TF-IDF baseline trained on some of these messages cannot be checked")
               for w in at.warning)


def test_own_file_scores_come_back_after_a_reload(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/compare.py")
    mine = b"".join(sms_data.read_bytes().splitlines(keepends=True)[-30:])
    at.file_uploader(key="compare_own").set_value(("mine.txt", mine, "text/plain")).run()
    digest = hashlib.sha256(mine).hexdigest()[:10]
    assert at.query_params["own"] == digest
    scored = next(d.value for d in at.dataframe if "measure" in d.value.columns)
    del at.query_params["own"]  # as a page switch clears the URL's query in the browser: every page names it again
    _page(at, "views/playground.py")
    assert at.query_params["own"] == digest

    # a reload is a new session, with no file: the URL names it, on whichever page the reload happened, and each
    # run's saved scores are shown again on Compare
    reloaded = AppTest.from_file(APP, default_timeout=90)
    reloaded.query_params["own"] = digest
    reloaded.run()  # the Overview
    del reloaded.query_params["own"]
    _page(reloaded, "views/compare.py")
    pd.testing.assert_frame_equal(next(d.value for d in reloaded.dataframe if "measure" in d.value.columns), scored)
    assert any(c.value.startswith("The scores of mine.txt, uploaded earlier and saved with each run")
               for c in reloaded.caption)
    assert reloaded.query_params["own"] == digest
    del reloaded.query_params["own"]  # as a page switch clears it in the browser: the session still knows the file
    _page(_page(reloaded, "views/overview.py"), "views/compare.py")
    pd.testing.assert_frame_equal(next(d.value for d in reloaded.dataframe if "measure" in d.value.columns), scored)
    assert reloaded.query_params["own"] == digest
    # a run picked since that never scored the file says so, and the others still show theirs
    quick = load_run(train(_config("frozen", tmp_path, tiny_bert, sms_data, epochs=1)))
    reloaded.run().selectbox(key="compare_frozen").set_value(quick.id).run()
    assert any(i.value.startswith(f"Frozen BERT + MLP head ({quick.id}) has not scored mine.txt")
               for i in reloaded.info)
    yours = next(d.value for d in reloaded.dataframe if "measure" in d.value.columns)
    assert "Frozen BERT + MLP head" not in yours.columns and "Fine-tuned BERT" in yours.columns
    reloaded.button(key="compare_own_forget").click().run()
    assert "own" not in reloaded.query_params and not any("measure" in d.value.columns for d in reloaded.dataframe)
    # a link naming no saved scores, or not a digest at all, shows nothing and is dropped from the URL
    for linked in ("0123456789", "*"):
        stale = AppTest.from_file(APP, default_timeout=90)
        stale.query_params["own"] = linked
        _page(stale.run(), "views/compare.py")
        assert "own" not in stale.query_params and not any("measure" in d.value.columns for d in stale.dataframe)


def test_saved_scores_of_a_file_and_a_batch_can_be_deleted(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    # they hold the user's messages: deleting them from the page leaves none on disk, and no link brings them back
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs", ignore=shutil.ignore_patterns(".playground")))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/compare.py")
    mine = b"".join(sms_data.read_bytes().splitlines(keepends=True)[-20:])
    digest = hashlib.sha256(mine).hexdigest()[:10]
    at.file_uploader(key="compare_own").set_value(("mine.txt", mine, "text/plain")).run()
    other = b"ham\tsee you at 6\nspam\tWINNER call 09061 now\n"  # another file's scores stay
    evaluate_run(next(r for r in list_runs(runs_dir) if r.mode == "baseline").path, other, name="other.txt")
    saved = sorted(runs_dir.glob(f"*/evaluations/mine.txt-{digest}.json"))
    assert len(saved) == 3 and at.query_params["own"] == digest
    at.button(key="compare_own_delete").click().run()
    assert not any(f.exists() for f in saved) and len(list(runs_dir.glob("*/evaluations/other.txt-*.json"))) == 1
    assert "own" not in at.query_params and not any("measure" in d.value.columns for d in at.dataframe)
    assert any(t.value == "Deleted the file's saved scores from 3 run(s)" for t in at.toast)
    # the uploader is empty (a new one): the file is not scored and saved again, and a new upload works
    assert {u.key for u in at.get("file_uploader")} & {"compare_own", "compare_own-1"} == {"compare_own-1"}
    at.run()
    assert not any(f.exists() for f in saved)
    at.file_uploader(key="compare_own-1").set_value(("mine.txt", mine, "text/plain")).run()
    assert all(f.exists() for f in saved) and at.query_params["own"] == digest
    at.button(key="compare_own_delete").click().run()
    stale = AppTest.from_file(APP, default_timeout=90)
    stale.query_params["own"] = digest
    _page(stale.run(), "views/compare.py")
    assert not any("measure" in d.value.columns for d in stale.dataframe) and "own" not in stale.query_params

    _page(at, "views/playground.py")
    at.text_area(key="play_lines").input("see you at 6\nWINNER call 09061 now\n").run()
    at.button(key="play_score").click().run()
    batch = at.query_params["batch"]
    assert (runs_dir / ".playground" / f"{batch}.json").is_file()
    at.button(key="play_batch_delete").click().run()
    assert not (runs_dir / ".playground" / f"{batch}.json").exists() and "batch" not in at.query_params
    assert not at.dataframe and not at.exception
    stale = AppTest.from_file(APP, default_timeout=90)
    stale.query_params["batch"] = batch
    _page(stale.run(), "views/playground.py")
    assert not stale.dataframe and "batch" not in stale.query_params


def test_comparison_report_is_self_contained_and_escapes_text():
    import pandas as pd
    import plotly.graph_objects as go

    from views.common import comparison_report

    rows = [[go.Figure(go.Scatter(x=[0, 1], y=[0, 1], name="roc")), go.Figure(go.Bar(x=["a"], y=[1]))],
            [go.Figure(go.Bar(x=["b"], y=[2]))]]
    yours = pd.DataFrame({"model": ["frozen"], "n": [42]}).set_index("model").T.rename_axis("measure").reset_index()
    html = comparison_report({"Fine-tuned BERT": ("run-1", "<b>MiniLM</b>")}, pd.DataFrame({"model": ["<script>x</script>"]}),
                             rows, ["p = 0.5 <b>"], {"Your own <messages>": (yours, ["Some were seen in training"])})
    assert html.count("Plotly.newPlot") == 3
    # a row's charts side by side; a table transposed as Compare's is has no empty header cell for its columns' name
    assert html.count("<div style='display:flex'>") == 2 and html.count("<div style='width:50.000%'>") == 2
    assert "<th></th>" not in html
    assert "<h2>Your own &lt;messages&gt;</h2>" in html and "<td>42</td>" in html
    assert html.index("<td>42</td>") < html.index("Some were seen in training")  # the table's warning is under it
    assert '"automargin":true' in html.replace(" ", "")  # axis labels get room outside Streamlit's theme
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js (~4 MB) inlined: opens offline
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "p = 0.5 &lt;b&gt;" in html and "<code>run-1</code>, &lt;b&gt;MiniLM&lt;/b&gt;" in html  # with its model
    # the verdict's **bold** becomes <b>, anything else in it stays text
    html = comparison_report({}, pd.DataFrame(), [], [], verdict="It makes **2 fewer errors** <i>than</i> that.")
    assert "<h2>What fine-tuning bought</h2><p>It makes <b>2 fewer errors</b> &lt;i&gt;than&lt;/i&gt; that.</p>" in html


def test_model_used_says_when_the_bundled_model_stood_in_for_the_one_asked_for():
    from types import SimpleNamespace

    from views.common import model_used

    fallback = {"requested": "bert-base-uncased", "name": "sentence-transformers/all-MiniLM-L6-v2",
                "source": "bundled", "fallback_reason": "HF_HUB_OFFLINE is set"}
    assert model_used(SimpleNamespace(config={"model": fallback}, model=fallback["name"])) == (
        "sentence-transformers/all-MiniLM-L6-v2 (bundled fallback: bert-base-uncased was asked for, but "
        "HF_HUB_OFFLINE is set)")
    hub = {"requested": "bert-base-uncased", "name": "bert-base-uncased", "source": "hub"}
    assert model_used(SimpleNamespace(config={"model": hub}, model="bert-base-uncased")) == "bert-base-uncased"
    assert model_used(SimpleNamespace(config={"mode": "baseline"}, model="tfidf-logreg")) == "tfidf-logreg"


def test_loss_chart_names_each_loss_and_shares_an_axis_only_between_equal_losses():
    from views.common import loss_figure

    history = [{"event": "train", "epoch": 0.5, "loss": 0.4}, {"event": "eval", "epoch": 1.0, "loss": 0.3}]
    same = loss_figure({"a": history, "b": history}, modes={"a": "finetune", "b": "finetune"})
    assert same.layout.yaxis.title.text == "loss (cross-entropy)" and all("(" not in t.name for t in same.data)
    # one panel with both losses: each curve says which it is, and the axis sends the reader to the legend
    mixed = loss_figure({"a": history, "b": history}, modes={"a": "finetune", "b": "finetune"}, balanced={"b"})
    assert mixed.layout.yaxis.title.text == "loss (see legend)"
    assert sorted(t.name for t in mixed.data) == ["train · a (plain)", "train · b (class-balanced)",
                                                  "validation · a (plain)", "validation · b (class-balanced)"]
    panels = loss_figure({"a": history, "b": history}, modes={"a": "frozen", "b": "finetune"}, balanced={"a", "b"})
    assert panels.layout.yaxis2.matches == "y" and panels.layout.yaxis.title.text == \
        "loss (class-balanced cross-entropy)"  # one loss: one shared axis, named once


def test_loss_chart_shows_a_live_runs_first_logged_step():
    from views.common import loss_figure

    fig = loss_figure({"a": [{"event": "train", "epoch": 0.01, "loss": 0.7}]}, modes={"a": "finetune"})
    [train] = fig.data
    assert train.mode == "markers" and list(train.y) == [0.7]  # a line through one point drew nothing
    two = loss_figure({"a": [{"event": "train", "epoch": 0.01, "loss": 0.7}, {"event": "train", "epoch": 0.02,
                                                                           "loss": 0.6}]}, modes={"a": "finetune"})
    assert two.data[0].mode == "lines"


def test_loss_chart_gives_runs_of_one_mode_contrasting_shades_of_its_colour():
    from views.common import MODE_COLORS, loss_figure

    history = [{"event": "train", "epoch": 0.5, "loss": 0.4}, {"event": "eval", "epoch": 1.0, "loss": 0.3}]
    names = ["20261127-105132-finetune-dd6b", "20261127-110323-finetune-74cd", "20261127-110200-frozen-62b4"]
    fig = loss_figure(dict.fromkeys(names, history), modes={n: n.split("-")[2] for n in names})
    colour = {t.name.split(" · ")[1]: t.line.color for t in fig.data}
    # the first run of each mode in the mode's own colour; the second fine-tune in orange, not a second red
    assert colour == {names[0]: MODE_COLORS["finetune"], names[1]: "#FFA15A", names[2]: MODE_COLORS["frozen"]}


def test_runs_page_says_a_run_of_a_newer_version_is_not_damaged(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    # a run from a newer version of the project in a shared folder is fine: the page must not call it damaged
    # and invite its deletion
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    target = next(r for r in list_runs(runs_dir) if r.mode == "baseline")
    config = json.loads((target.path / "config.json").read_text())
    (target.path / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/runs.py")
    assert "1 run(s) were written by a newer version of this project: they are listed but not loaded. Update the " \
           "project to use them." in [c.value for c in at.caption]
    assert not any("damaged or incomplete" in c.value for c in at.caption)


def test_runs_page_offers_no_delete_for_a_run_a_job_is_loading_to_resume(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                         trained):
    from core.runs import set_lock_holder, set_status, training_lock

    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    target = next(r for r in list_runs(runs_dir) if r.mode == "frozen")
    with training_lock(runs_dir) as lock:
        set_lock_holder(lock, target.id)  # a completed run still named: a plan between two runs
        at = _app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data)
        _page(at, "views/runs.py")
        at.selectbox(key="runs_one").set_value(target.id).run()
        assert not at.button(key="runs_delete").disabled
        set_status(target.path, "cancelled")  # a stopped run named: `core resume` loading, before its status changes
        at.run()
        assert at.button(key="runs_delete").disabled
        with pytest.raises(RunError, match="in use by the running job"):
            jobs.delete(runs_dir, target.id)
    at.run()
    assert not at.button(key="runs_delete").disabled


def test_runs_page_shows_the_job_on_the_picked_run_again_after_a_reload(monkeypatch, tmp_path, tiny_bert, sms_data,
                                                                         trained):
    from core.runs import set_lock_holder, set_status, training_lock

    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    target, other = [next(r for r in list_runs(runs_dir) if r.mode == mode) for mode in ("frozen", "baseline")]
    set_status(target.path, "running")  # resumed by a job: its process holds the lock and names it
    with training_lock(runs_dir) as lock:
        set_lock_holder(lock, target.id)
        for picked, shown in ((target, True), (other, False)):  # a reload (a new session) with the run in the URL
            at = _app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data)
            at.query_params["runs_pick"] = picked.id
            _page(at, "views/runs.py")
            assert at.selectbox(key="runs_one").value == picked.id
            assert (f"Run {target.id} · the curves update every" in _texts(at)) == shown, picked.mode


def test_cancelling_a_resume_says_the_run_keeps_what_it_saved(monkeypatch, tmp_path, tiny_bert, sms_data, trained):
    # a resume's Cancel keeps the run's checkpoints and state (core.train._record): the page said it discards them
    from core.runs import set_lock_holder, set_status, training_lock

    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    target = next(r for r in list_runs(runs_dir) if r.mode == "finetune")
    with open(target.path / "history.jsonl", "a") as history:  # what `core resume` writes as it goes on
        history.write(json.dumps({"event": "resumed", "step": 3, "total_steps": 9, "after": "cancelled",
                                  "time": time.time()}) + "\n")
    set_status(target.path, "running")
    with training_lock(runs_dir) as lock:
        set_lock_holder(lock, target.id)
        at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
        assert "keeps its training state at the step it stops" in at.button(key="train-cancel").help
        at.button(key="train-cancel").click().run()
        assert ("Stop resuming this run? It keeps its training state at the step it stops and its best weights so "
                "far: resume or finish it again on the Runs page.") in [w.value for w in at.warning]


def test_a_finish_job_loading_its_run_offers_neither_finish_now_nor_a_cancel_that_discards(monkeypatch, tmp_path,
                                                                                             tiny_bert, sms_data,
                                                                                             trained):
    """While `core finish` loads, the run's status is still the stopped one: the panel offered "Finish this run
    now", which a finish job refuses, and a Cancel said to discard the run's weights, which it would not."""
    import psutil

    from core.runs import set_lock_holder, set_status, training_lock, write_json_atomic
    runs_dir = Path(shutil.copytree(trained, tmp_path / "runs"))
    target = next(r for r in list_runs(runs_dir) if r.mode == "finetune")
    set_status(target.path, "interrupted")
    me = psutil.Process()  # the job is this process here: last.json as the app writes it for a finish
    (runs_dir / jobs.JOBS_DIR).mkdir(exist_ok=True)
    write_json_atomic(runs_dir / jobs.JOBS_DIR / jobs.LAST_JOB, {
        "pid": me.pid, "pid_started": me.create_time(), "started": time.time(), "modes": ["finetune"],
        "log": str(tmp_path / "log"), "plan": None, "command": "finish"})
    with training_lock(runs_dir) as lock:
        set_lock_holder(lock, target.id)
        at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
        assert jobs.current_job(runs_dir).phase != "testing saved weights"  # the window this is about
        assert [b.proto.text for b in at.get("progress")] == ["training (preparing: loading data and model)"]
        keys = {b.key for b in at.button}
        assert "train-finish" not in keys and "train-cancel" not in keys, keys


def test_cancel_asks_only_when_clicked_also_while_a_job_is_starting(monkeypatch, tmp_path, tiny_bert, sms_data):
    from core.runs import training_lock

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    with training_lock(runs_dir):  # held and not named yet: a job importing torch and loading its data
        at = _page(_app(monkeypatch, tmp_path, runs_dir, tiny_bert, sms_data), "views/train.py")
        assert at.button(key="train-cancel") and not any("discard this run's weights?" in w.value for w in at.warning)
        at.button(key="train-cancel").click().run()
        assert any("discard this run's weights?" in w.value for w in at.warning)
        at.button(key="train-cancel-no").click().run()
        assert at.button(key="train-cancel") and not any("discard" in w.value for w in at.warning)


def test_counts_and_run_times_read_as_people_write_them():
    from views.common import _count, seconds_shown
    assert [_count(n) for n in (950, 39_039, 999_499, 999_623, 22_713_986)] == ["950", "39 k", "999 k", "1.0 M",
                                                                                 "22.7 M"]
    assert [seconds_shown(s) for s in (None, 0.2049, 9.96, 25.93, 861.4)] == [None, 0.2, 10.0, 26, 861]
