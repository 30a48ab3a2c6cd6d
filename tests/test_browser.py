"""End to end in a real browser: `streamlit run app.py` driven by headless Debian Chromium via Playwright.

Launch a short training from Train, watch the live loss chart gain points, wait for completion, see the
ROC chart on Compare, type a message on Playground and read both probabilities (and see that <script>
stays text). Screenshots of every page go to artifacts/ (look at them).
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import make_messages, write_uci
from core.runs import list_runs, load_run, read_history, running_job

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
TRAINING_FINETUNE = re.compile(r"^Fine-tuned BERT \((run \d of \d, )?(preparing|training|evaluating)")  # job progress
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_chromium():
    if not Path(CHROMIUM).is_file():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: a missing browser is a broken setup, not a skip
        pytest.skip(message)


def _app_env(tmp_path, tiny_bert) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "SPAM_RUNS_DIR": str(tmp_path / "runs"), "SPAM_MODEL": tiny_bert,
            "SPAM_DATA": str(write_uci(tmp_path / "sms.txt", make_messages())),
            "SPAM_CACHE_DIR": str(tmp_path / "cache"), "SPAM_UPLOADS_DIR": str(tmp_path / "uploads")}


def _start_streamlit(env: dict, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port; returns once /_stcore/health answers."""
    port = _free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("streamlit did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.3)


def _stop(proc: subprocess.Popen, runs_dir: Path) -> None:
    proc.terminate()
    proc.wait(timeout=20)
    if running_job(runs_dir):  # a job outlives the server by design; stop it for the test
        from core.jobs import cancel
        cancel(runs_dir)


@pytest.fixture
def server(tmp_path, tiny_bert):
    _need_chromium()
    env = _app_env(tmp_path, tiny_bert)
    proc, url = _start_streamlit(env, tmp_path / "streamlit.log")
    yield url, Path(env["SPAM_RUNS_DIR"])
    _stop(proc, Path(env["SPAM_RUNS_DIR"]))


def _chart_points(page, title_part: str | None = None) -> list[int]:
    """Points per trace of the first plotly chart (optionally: whose title contains title_part)."""
    return page.evaluate("""(part) => {
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
            const title = (gd.layout && gd.layout.title && gd.layout.title.text) || '';
            if (!part || title.includes(part)) return (gd.data || []).map(t => (t.x || []).length);
        }
        return [];
    }""", title_part)


def _goto(page, label: str):
    title = label if label != "Overview" else "Frozen vs fine-tuned BERT for SMS spam"
    heading = page.get_by_test_id("stMainBlockContainer").get_by_role("heading", name=title, exact=True)
    for attempt in range(3):  # a click that lands while the page reruns itself (a job just ended) can be lost
        page.get_by_test_id("stSidebar").get_by_role("link", name=label, exact=True).click()
        try:
            heading.wait_for(timeout=20_000)
            return
        except Exception:
            if attempt == 2:
                raise


def _settle(page):
    """Wait until Streamlit has finished rerunning (its status widget disappears)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)


def test_train_watch_compare_and_play_in_a_real_browser(server):
    from playwright.sync_api import expect, sync_playwright

    url, runs_dir = server
    ARTIFACTS.mkdir(exist_ok=True)
    def shot(page, name):  # the app scrolls inside its own container: a tall viewport shows a whole page
        page.set_viewport_size({"width": 1400, "height": 2400})
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / f"browser-{name}.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.get_by_role("button", name="Train all three with the quick preset").wait_for(timeout=60_000)
        shot(page, "1-overview-empty")

        # ---------------------------------------------------------------- Train: both modes, live curve
        _goto(page, "Train")
        page.get_by_role("spinbutton", name="Batch size").fill("8")
        page.get_by_role("spinbutton", name="Batch size").press("Enter")
        _settle(page)
        # a number entered just before a page switch is the one shown, and trained, back on the form. The switch
        # waits until the page has the number (its note on changed fields says it): on a click on the link straight
        # from the field, Streamlit 1.67's browser side sends the page switch first and the field's value after it,
        # and either ignores the switch (the page stays, with the number) or, when it has cleared the page's fields
        # first, sends no value at all (the number is lost). Measured here under CPU load: lost in 5 of 175 real
        # clicks, 18 of 155 with that order forced; Tab first still lost it once in a full test run. Not this app's
        # to fix, and a test of it fails at random.
        seed = page.get_by_label("Seed", exact=True)
        seed.fill("7")
        seed.press("Enter")
        _settle(page)
        seed.fill("8")
        seed.press("Tab")
        page.get_by_test_id("stMainBlockContainer").get_by_text("Seed 8 (default 42)").wait_for(timeout=30_000)
        page.get_by_test_id("stSidebar").get_by_role("link", name="Runs", exact=True).click()
        page.get_by_test_id("stMainBlockContainer").get_by_role("heading", name="Runs", exact=True).wait_for(
            timeout=20_000)
        _settle(page)
        _goto(page, "Train")
        _settle(page)
        expect(page.get_by_label("Seed", exact=True)).to_have_value("8")
        page.get_by_label("Seed", exact=True).fill("42")  # back to the default: nothing below depends on a seed
        page.get_by_label("Seed", exact=True).press("Enter")
        _settle(page)
        # the fine-tune column: 2,400 tiny steps, more than any CPU trains while the checks below run; the run ends
        # when the test clicks "Finish this run now"
        page.get_by_role("spinbutton", name="Epochs").nth(1).fill("200")
        page.get_by_role("spinbutton", name="Epochs").nth(1).press("Enter")
        _settle(page)
        page.get_by_role("button", name="Start training").click()
        # while the process starts (seconds), the sidebar says so, not the last rerun's "No job running"
        expect(page.get_by_test_id("stSidebar")).to_contain_text("Starting a training job…", timeout=5_000)
        page.get_by_text(TRAINING_FINETUNE).first.wait_for(timeout=120_000)  # baseline and frozen come first
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.data && g.data.length && g.data[0].x.length > 0)",
                               timeout=60_000)
        samples = []  # the chart may still show the frozen run for a moment: sample, then look for growth
        for _ in range(12):
            samples.append(_chart_points(page))
            if len(samples) > 1 and samples[-2] and samples[-1] and samples[-1][0] > samples[-2][0]:
                break
            page.wait_for_timeout(1_000)  # the live fragment refreshes every couple of seconds
        shot(page, "2-train-live")
        grew = [(a, b) for a, b in zip(samples, samples[1:]) if a and b and b[0] > a[0]]
        assert grew, samples  # the live loss curve gained points between two reads
        other = browser.new_page(viewport={"width": 1400, "height": 1000})  # a second tab sees the same job
        other.goto(f"{url}/train")
        other.get_by_text(TRAINING_FINETUNE).first.wait_for(timeout=60_000)
        # its live panel is the page, not a form pushed below it; the form is one click away, Start disabled
        assert other.get_by_role("button", name="Start training").count() == 0
        other.get_by_text("Set up the next run while this one trains").click()
        other.get_by_role("button", name="Start training").wait_for(timeout=30_000)
        assert other.get_by_role("button", name="Start training").is_disabled()
        other.get_by_label("Learning rate", exact=True).first.fill("0.0005")  # typed, no Enter, as the job ends
        page.get_by_role("button", name="Finish this run now").click()  # keep the best weights so far, and test them
        page.get_by_text("Fine-tuned BERT finished").wait_for(timeout=240_000)
        # the other tab redraws its page without the toggle: the field being typed in keeps what was typed
        other.get_by_text("Set up the next run while this one trains").wait_for(state="hidden", timeout=60_000)
        _settle(other)
        expect(other.get_by_label("Learning rate", exact=True).first).to_have_value("0.0005")
        other.close()
        assert running_job(runs_dir) is None
        assert sorted(r.mode for r in list_runs(runs_dir) if r.usable) == ["baseline", "finetune", "frozen"]
        stopped = next(r for r in list_runs(runs_dir) if r.mode == "finetune").metrics["stopped"]
        assert stopped["reason"] == "finished early on request" and stopped["after_step"] < 200 * 12
        shot(page, "3-train-done")

        # ---------------------------------------------------------------- Overview, Compare
        _goto(page, "Overview")
        page.get_by_text("Test-set results").wait_for(timeout=30_000)
        # the headline a stakeholder reads first, counted from the runs' own test errors
        runs = {r.mode: r for r in list_runs(runs_dir)}
        errors = {m: runs[m].metrics["test"]["confusion_matrix"][0][1] + runs[m].metrics["test"]["confusion_matrix"][1][0]
                  for m in ("frozen", "finetune")}
        headline = page.get_by_text(re.compile(r"test messages, the fine-tuned model makes .* the frozen one")).first
        assert f": {errors['finetune']} against {errors['frozen']}." in headline.inner_text(), headline.inner_text()
        # above it, its take-away in one line
        assert page.get_by_text(re.compile(r"^In short: ")).first.is_visible()
        _settle(page)
        shot(page, "4-overview")
        _goto(page, "Compare")
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.layout && g.layout.title && g.layout.title.text.includes('ROC curve'))",
                               timeout=60_000)
        roc = _chart_points(page, "ROC")
        assert len(roc) == 4 and all(n >= 2 for n in roc)  # three models and the chance line
        _settle(page)
        shot(page, "5-compare")
        slider = page.get_by_role("slider")  # the threshold is kept in the URL, with no history entry: a reload keeps it
        slider.focus()
        slider.press("ArrowLeft")
        page.wait_for_url(re.compile(r"compare_threshold=0\.49"), timeout=30_000)
        visited = page.evaluate("history.length")
        slider.press("ArrowLeft")
        page.wait_for_url(re.compile(r"compare_threshold=0\.48"), timeout=30_000)
        assert page.evaluate("history.length") == visited
        page.reload()
        expect(page.get_by_test_id("stSliderThumbValue")).to_have_text("0.48", timeout=60_000)
        caption = page.get_by_text(re.compile(r"✗ where it is wrong at 0\.48"))
        caption.wait_for(timeout=60_000)  # used, not just shown
        # the table shows some 25 characters of a message: a picked row is shown whole, as text
        assert int(re.match(r"(\d+) message", caption.inner_text()).group(1)) > 0
        table = page.locator('[data-testid="stDataFrame"]').last
        table.scroll_into_view_if_needed()
        box = table.bounding_box()
        page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the first row's selection cell, under the header
        tested = {p["text"] for p in next(r for r in list_runs(runs_dir) if r.mode == "frozen").metrics["predictions"]}
        shown = page.get_by_test_id("stText").first
        shown.wait_for(timeout=30_000)
        assert shown.inner_text() in tested
        # the report a stakeholder takes away: built when clicked, it opens with the same headline. Clicked once the
        # row's rerun is over: under CI's load a click during it was lost (no download in 60 s, 1 run of 3)
        _settle(page)
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download this comparison as a self-contained HTML report").click()
        report = Path(download.value.path()).read_text()
        assert "<h2>What fine-tuning bought</h2>" in report and "<script src=" not in report
        # at the slider's threshold (0.48), as the report says: the fine-tune ends where "Finish this run now" caught
        # it, so a probability between 0.48 and 0.5 can move a count from the Overview's
        at_048 = {m: sum((p["spam_probability"] >= 0.48) != bool(p["label"]) for p in runs[m].metrics["predictions"])
                  for m in ("frozen", "finetune")}
        assert f": {at_048['finetune']} against {at_048['frozen']}." in report

        # ---------------------------------------------------------------- Playground: two probabilities, text stays text
        _goto(page, "Playground")
        message = ("<script>window.__pwned = 1; alert('x')</script> <b>WIN</b> a FREE prize, call 09061 now "
                   "http://evil.example/claim or www.evil.example or win@evil.example")
        box = page.get_by_role("textbox", name="Message")
        box.fill(message)
        box.press("Control+Enter")
        metrics = page.locator('[data-testid="stMetric"]')
        metrics.nth(2).wait_for(timeout=60_000)
        _settle(page)
        values = [metrics.nth(i).inner_text() for i in range(metrics.count())]
        shown = {m.split("\n")[0]: m for m in values}
        for label in ("Frozen BERT + MLP head", "Fine-tuned BERT"):
            assert label in shown and re.search(r"\n[<>]?[\d.]+%\n", shown[label]), values
            probability = float(re.search(r"([\d.]+)%", shown[label]).group(1))
            assert 0.0 <= probability <= 100.0
        assert page.get_by_test_id("stText").get_by_text(message, exact=True).is_visible()  # shown as text, tags and all
        assert page.evaluate("() => window.__pwned") is None and not dialogs  # never run
        assert page.locator("b", has_text="WIN").count() == 0  # never rendered as HTML
        page.get_by_text("Why this verdict").click()  # each word of the message shown, coloured, in markdown
        page.get_by_text("Each word is left out in turn").wait_for(timeout=60_000)
        page.get_by_text("Fine-tuned BERT", exact=True).last.wait_for(timeout=60_000)
        _settle(page)
        assert page.locator("main").get_by_text("evil.example/claim").count() > 0  # the words are shown...
        # ...but no URL, www. name or address is a live link (the sidebar's link back here carries the message)
        assert page.locator("main").locator('a[href*="evil"]').count() == 0
        shot(page, "6-playground")
        # a batch's CSV names, on its own, the run behind each score and the threshold behind each verdict
        page.get_by_role("tab", name="Batch").click()
        winner = "WINNER claim your prize now by calling 09061701461 before midnight tonight to collect your reward"
        page.get_by_role("textbox", name="Messages, one per line").fill(f"see you at 6\n{winner}")
        page.get_by_role("button", name="Score").click()
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download CSV").click()
        rows = Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()
        assert len(rows) == 3 and rows[1].startswith("see you at 6,")
        for mode in ("frozen", "finetune", "baseline"):
            assert f"{mode} p(spam) [run {runs[mode].id}]" in rows[0] and f"{mode} verdict (spam at p >= 0.5)" in rows[0]
        # the table shows some 40 characters of a message: a picked row is shown whole, as text
        _settle(page)
        table = page.locator('[data-testid="stDataFrame"]').last
        table.scroll_into_view_if_needed()
        box = table.bounding_box()
        page.mouse.click(box["x"] + 12, box["y"] + 35 + 35 + 17)  # the second row's selection cell
        expect(page.get_by_test_id("stText").filter(has_text=winner)).to_have_text(winner, timeout=30_000)

        _goto(page, "Runs")
        _settle(page)
        shot(page, "7-runs")
        assert "runs_pick" not in page.url  # the default run: the URL would need a second history entry
        _goto(page, "Playground")  # back to a scored batch: its tab is the one open
        expect(page.get_by_role("tab", name="Batch")).to_have_attribute("aria-selected", "true", timeout=30_000)
        page.get_by_role("tab", name="One message").click()
        _settle(page)  # the switch reruns the page, which keeps it for the session

        # ---------------------------------------------------------------- what was typed survives page switches
        _goto(page, "Train")
        _settle(page)
        expect(page.get_by_role("spinbutton", name="Batch size")).to_have_value("8", timeout=30_000)
        page.go_back()  # Back too: leaving the page once pushed a history entry without the message, an empty box
        _settle(page)
        expect(page.get_by_role("textbox", name="Message")).to_have_value(message, timeout=30_000)
        page.go_forward()
        _settle(page)
        _goto(page, "Playground")
        _settle(page)
        expect(page.get_by_role("textbox", name="Message")).to_have_value(message, timeout=30_000)
        # ...and a reload, a new session: the message comes back from the URL, shown as text again, never run
        assert "play_text=" in page.url
        page.reload()
        expect(page.get_by_role("textbox", name="Message")).to_have_value(message, timeout=60_000)
        page.get_by_test_id("stText").get_by_text(message, exact=True).wait_for(timeout=60_000)
        assert page.evaluate("() => window.__pwned") is None and not dialogs
        # ...and the Train form survives a reload too (a new session), kept in the runs folder, not the URL
        _goto(page, "Train")
        _settle(page)
        page.reload()
        page.get_by_role("spinbutton", name="Batch size").wait_for(timeout=60_000)
        _settle(page)
        expect(page.get_by_role("spinbutton", name="Batch size")).to_have_value("8", timeout=30_000)
        expect(page.get_by_role("spinbutton", name="Epochs").nth(1)).to_have_value("200", timeout=30_000)
        assert "train_" not in page.url  # the form's fields are not in it: no browser history entry per edit
        page.get_by_role("button", name="Reset the form to its defaults").click()  # the fields show their defaults
        _settle(page)
        expect(page.get_by_role("spinbutton", name="Batch size")).to_have_value("32", timeout=30_000)
        expect(page.get_by_role("spinbutton", name="Epochs").nth(1)).to_have_value("3", timeout=30_000)
        assert not (runs_dir / ".train-form.json").exists()

        # last, as a reload starts a new session: the runs overlaid on Runs are kept in the URL
        _goto(page, "Runs")
        _settle(page)

        def overlaid():
            return sorted(re.findall(r"\d{8}-\d{6}-[a-z]+-[0-9a-f]{4}", page.get_by_test_id("stMultiSelect").inner_text()))
        before = overlaid()
        page.get_by_test_id("stMultiSelect").locator("input").focus()
        page.keyboard.press("Backspace")  # one run fewer
        page.wait_for_url(re.compile(r"runs_overlay="), timeout=30_000)
        _settle(page)
        kept = overlaid()
        assert len(kept) == len(before) - 1 >= 1
        page.reload()
        expect(page.get_by_role("button", name=f"Remove {kept[0]}")).to_be_visible(timeout=60_000)
        assert overlaid() == kept

        # Back goes one page back in one press: the links carry what the URL keeps, so a page switch is one
        # history entry (pages with no widget bound to the URL; Streamlit adds one when it strips those)
        _goto(page, "Overview")
        _settle(page)
        page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("TF-IDF baseline", exact=True)).click()
        page.get_by_role("option", name="not shown").click()  # a pick, which the URL keeps on every page
        page.wait_for_url(re.compile(r"baseline=none"), timeout=30_000)
        _settle(page)
        _goto(page, "Train")
        assert "baseline=none" in page.url
        page.go_back()
        page.get_by_test_id("stMainBlockContainer").get_by_role(
            "heading", name="Frozen vs fine-tuned BERT for SMS spam", exact=True).wait_for(timeout=30_000)
        _settle(page)
        page.go_back()  # and Back undoes the pick
        page.wait_for_function("() => !location.search.includes('baseline=none')", timeout=30_000)
        expect(page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("TF-IDF baseline", exact=True))
               ).not_to_contain_text("not shown", timeout=30_000)
        page.go_forward()
        page.go_forward()
        page.get_by_test_id("stMainBlockContainer").get_by_role("heading", name="Train", exact=True).wait_for(
            timeout=30_000)
        browser.close()


def test_server_restart_keeps_runs_and_the_job_and_refuses_big_uploads(tmp_path, tiny_bert):
    """Completed runs and a running job survive a Streamlit restart; a job killed with it reads as interrupted."""
    from playwright.sync_api import sync_playwright

    from core import jobs
    from core.config import TrainConfig
    from core.train import train

    _need_chromium()
    env = _app_env(tmp_path, tiny_bert)
    runs_dir = Path(env["SPAM_RUNS_DIR"])
    common = dict(data=env["SPAM_DATA"], model=tiny_bert, runs_dir=str(runs_dir), cache_dir=env["SPAM_CACHE_DIR"],
                  max_length=32, batch_size=8)
    completed = [train(TrainConfig(mode="baseline", **common)).name,
                 train(TrainConfig(mode="frozen", epochs=2, **common)).name]
    proc, url = _start_streamlit(env, tmp_path / "streamlit.log")
    # what the Train button does, saving the training state each second rather than each minute
    job = jobs.launch([TrainConfig(mode="finetune", epochs=500, save_state_every=1, **common)])
    try:
        deadline = time.time() + 60
        while running_job(runs_dir) in (None, "starting") and time.time() < deadline:
            time.sleep(0.2)
        running = running_job(runs_dir)
        assert running and "-finetune-" in running, running

        proc.terminate()  # the server goes down (Ctrl-C) and comes back; the job is its own process group
        proc.wait(timeout=20)
        assert running_job(runs_dir) == running
        proc, url = _start_streamlit(env, tmp_path / "streamlit.log")

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/train")
            page.get_by_text(TRAINING_FINETUNE).first.wait_for(timeout=60_000)  # the restarted app follows the job
            page.get_by_text(f"Run {running}").wait_for(timeout=30_000)

            # the completed runs are listed and load: the Playground scores with both
            _goto(page, "Playground")
            box = page.get_by_role("textbox", name="Message")
            box.fill("WINNER!! claim your free prize now")
            box.press("Control+Enter")
            metrics = page.locator('[data-testid="stMetric"]')
            metrics.nth(1).wait_for(timeout=60_000)
            _settle(page)
            shown = " ".join(metrics.nth(i).inner_text() for i in range(metrics.count()))
            assert "Frozen BERT + MLP head" in shown and "TF-IDF" in shown and shown.count("%") >= 2, shown

            # the machine goes down with the job: after kill -9 the run reads as interrupted, never "running"
            deadline = time.time() + 60  # once it has saved its training state, to resume it from below
            while not any(e["event"] == "state_saved" for e in read_history(runs_dir / running)):
                assert time.time() < deadline, "no training state saved"
                time.sleep(0.2)
            os.kill(job.pid, signal.SIGKILL)
            deadline = time.time() + 30
            while running_job(runs_dir) and time.time() < deadline:
                time.sleep(0.2)
            assert running_job(runs_dir) is None
            _goto(page, "Train")
            page.get_by_text(f"{running} ended as interrupted").wait_for(timeout=30_000)
            assert page.get_by_role("button", name="Start training").is_enabled()  # a new job can start
            _goto(page, "Runs")
            _settle(page)
            options = page.get_by_role("option")
            for attempt in range(3):  # as in _goto: a click that lands while the page still renders can be lost
                page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Run", exact=True)).first.click()
                try:
                    options.first.wait_for(timeout=10_000)
                    break
                except Exception:
                    if attempt == 2:
                        raise
            listed = " ".join(options.nth(i).inner_text() for i in range(options.count()))
            assert f"{running} · interrupted" in listed
            assert all(f"{run_id} · completed" in listed for run_id in completed), listed
            # it kept its training state and its best weights: resume it, watch it train on, then finish it now
            options.filter(has_text=f"{running} · interrupted").click()
            resume = page.get_by_role("button", name=re.compile(r"^Resume training from step \d+$"))
            step = int(resume.inner_text(timeout=30_000).rsplit(" ", 1)[1])
            # drawn just after Resume, in the next column: waited for, not read at once
            page.get_by_role("button", name="Test the saved weights and complete the run").wait_for(timeout=30_000)
            resume.click()
            live = page.get_by_test_id("stMain").get_by_text(re.compile(r"Fine-tuned BERT \(training: step \d+/"))
            live.wait_for(timeout=120_000)  # the Runs page follows the job it started
            # and the picker's label follows the run's status: it kept reading "interrupted" while the run trained
            picker = page.get_by_role("combobox", name="Run", exact=True)
            deadline = time.time() + 30
            while picker.input_value() != f"{running} · running":
                assert time.time() < deadline, picker.input_value()
                page.wait_for_timeout(200)
            live.scroll_into_view_if_needed()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser-8-resumed.png"))
            page.get_by_role("button", name="Finish this run now").click()
            page.get_by_text(f"Fine-tuned BERT finished: {running}").wait_for(timeout=120_000)
            # in the run's box: the table's note cell (a hidden copy in the grid's markup) says it too. While the
            # page reruns, the box drawn before can be on screen beside the new one for a moment: until one is left
            note = page.get_by_test_id("stAlert").filter(has_text=f"resumed at step {step} after it was interrupted")
            note.first.wait_for(timeout=30_000)
            deadline = time.time() + 30
            while note.count() != 1:
                assert time.time() < deadline, f"the note is shown {note.count()} times"
                page.wait_for_timeout(200)
            page.get_by_text("This run did not train to its end").wait_for(timeout=30_000)  # finished on request
            page.screenshot(path=str(ARTIFACTS / "browser-8b-resumed-then-finished.png"))
            run = load_run(runs_dir / running)
            assert run.usable and run.metrics["resumed"] == [{"from_step": step, "after": "interrupted"}]
            assert run.metrics["stopped"]["after_step"] > step

            # an upload above server.maxUploadSize (50 MB) is refused by the uploader with the limit named
            page.get_by_text("Use another dataset").click()
            upload = page.locator('[data-testid="stSidebar"] input[type="file"]')
            huge = tmp_path / "huge.csv"
            with open(huge, "wb") as f:
                f.write(b"label,text\n")
                f.truncate(51 << 20)  # 51 MB (sparse: nothing to write)
            upload.set_input_files(huge)
            chip = page.get_by_test_id("stFileChip").filter(has_text="huge.csv")
            chip.wait_for(timeout=30_000)
            assert chip.get_attribute("aria-invalid") == "true"
            chip.hover()  # the reason shows on hover (and is read out as an alert)
            page.get_by_text("File must be 50.0MB or smaller").first.wait_for(timeout=10_000)
            assert page.get_by_test_id("stSidebar").get_by_text("up to 50 MB").is_visible()  # said before uploading
            page.screenshot(path=str(ARTIFACTS / "browser-9-restart-upload.png"))
            assert not list(Path(env["SPAM_UPLOADS_DIR"]).glob("huge*"))  # nothing reached the server's disk
            browser.close()
    finally:
        _stop(proc, runs_dir)
        if job.pid and running_job(runs_dir):
            os.kill(job.pid, signal.SIGKILL)
