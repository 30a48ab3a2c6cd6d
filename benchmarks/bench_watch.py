"""What watching a job in the browser costs the job, on a machine where the trainer has every core.

    python benchmarks/bench_watch.py --data ../shared/data/SMSSpamCollection --repeats 2

Each job is started from the Train page in headless Chromium, as a user would: one fine-tune on a sample of the
training split. Then either the browser is closed (`none`) or the Train page stays open with its live panel, which
re-reads history.jsonl and redraws the loss curves every 2 s (`train`). The app is served once with Streamlit's
own setting `runner.postScriptGC` on (its default: a full gc.collect() after every script run, fragments included)
and once off (the project's .streamlit/config.toml). Conditions alternate, so a slow spell of the machine falls on
all of them (the order rotates each repeat). Printed, per job: the load average when training began, the training
seconds, the cores used by the app's server, this script's Chromium and the trainer from the start of training to
the end of the test (a few seconds past `train_seconds`), and how much the server's memory grew in that time. Needs
/usr/bin/chromium and Python Playwright (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)
import psutil

CHROMIUM = "/usr/bin/chromium"
CONDITIONS = {"none": ("none", True), "train, gc after each run": ("train", True),
              "train, no gc (the app's setting)": ("train", False)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _serve(env: dict, gc: bool, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    with open(log, "ab") as out:  # the child keeps its own copy of the handle
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                 "--server.port", str(port), "--runner.postScriptGC", str(gc).lower()],
                                cwd=C.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the app did not start: see {log}")


def _cpu_seconds(server_pid: int, trainer_pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds used so far, by pid: the app's server, the trainer (the job's process) and this benchmark's own
    Chromium (a descendant of this process, through Playwright's driver), with each one's group."""
    procs = [(server_pid, "app server"), (trainer_pid, "trainer")]
    procs += [(child.pid, "chromium") for child in psutil.Process().children(recursive=True)]
    out = {}
    for pid, group in procs:
        try:
            proc = psutil.Process(pid)
            if group != "chromium" or "chromium" in " ".join(proc.cmdline()):
                times = proc.cpu_times()
                out[pid] = (group, times.user + times.system)
        except psutil.Error:  # it has ended (the trainer, at the job's end)
            pass
    return out


def _cores(before: dict, after: dict, seconds: float) -> dict[str, float]:
    """Each group's cores over the window, pid by pid: a process that ended in between counts for nothing (summing
    groups would subtract its whole past), one that started in it from zero."""
    cores = {"app server": 0.0, "chromium": 0.0, "trainer": 0.0}
    for pid, (group, used) in after.items():
        cores[group] += (used - before.get(pid, (group, 0.0))[1]) / seconds
    return cores


def _wait(condition, seconds: float, what: str, log: Path) -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise SystemExit(f"{what} within {seconds:.0f} s: see {log}")
        time.sleep(0.5)


def one_job(args, watch: str, gc: bool, work: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from core import jobs
    from core.runs import list_runs

    runs_dir = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    env = {**os.environ, "SPAM_RUNS_DIR": str(runs_dir), "SPAM_CACHE_DIR": str(work / "cache"),
           "SPAM_UPLOADS_DIR": str(work / "uploads"), "SPAM_DATA": args.data, "SPAM_MODEL": args.model,
           "HF_HUB_OFFLINE": "1"}
    log = work / "server.log"
    server, url = _serve(env, gc, log)
    trainer = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url + "/train")
            page.get_by_role("button", name="Start training").wait_for(timeout=120_000)
            page.get_by_role("radiogroup").get_by_text("Fine-tune the whole encoder").click()
            page.get_by_text("Also fit the TF-IDF").click()
            page.get_by_text("More settings").click()
            box = page.get_by_label("Training messages", exact=True)
            box.fill(str(args.messages))
            box.press("Enter")
            page.wait_for_timeout(3000)  # the rerun that takes the number
            page.get_by_role("button", name="Start training").click()
            _wait(lambda: jobs.current_job(runs_dir) is not None, 60, "no job started", log)
            trainer = jobs.last_job(runs_dir)["pid"]
            if watch == "none":
                browser.close()
            _wait(lambda: getattr(jobs.current_job(runs_dir), "phase", None) == "training", 300,
                  "the job did not start training", log)
            load = os.getloadavg()[0]
            before, t0 = _cpu_seconds(server.pid, trainer), time.time()
            server_rss = psutil.Process(server.pid).memory_info().rss
            # the window ends when the run has its metrics: training and the test, not the browser's last redraw
            _wait(lambda: jobs.current_job(runs_dir) is None or any(r.metrics for r in list_runs(runs_dir)),
                  3600, "the job did not end", log)
            after, t1 = _cpu_seconds(server.pid, trainer), time.time()
            rss_growth = psutil.Process(server.pid).memory_info().rss - server_rss
            _wait(lambda: jobs.current_job(runs_dir) is None, 120, "the job did not end", log)
            if watch != "none":
                browser.close()
        runs = list_runs(runs_dir)
        if not runs or runs[0].status != "completed":
            raise SystemExit(f"the job's run did not complete: see {jobs.last_job(runs_dir)['log']}")
        return {"train_seconds": runs[0].metrics["train_seconds"], "steps": runs[0].metrics["steps"],
                "cores": _cores(before, after, t1 - t0), "server_rss_growth_mb": rss_growth / 2**20, "load": load}
    finally:
        if trainer is not None and psutil.pid_exists(trainer):  # on an error or Ctrl-C: it runs in its own session
            psutil.Process(trainer).terminate()
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=C.default_model())
    p.add_argument("--messages", type=int, default=50, help="training messages of each fine-tune")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    args.data = str(Path(args.data).resolve())
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium)")
    print(f"{C.machine()}")
    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    results = {name: [] for name in CONDITIONS}
    names = list(CONDITIONS)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # a slow spell does not always hit one
            r = one_job(args, *CONDITIONS[name], work)
            results[name].append(r)
            print(f"repeat {repeat + 1}, {name} (load {r['load']:.2f}): {r['train_seconds']:.1f} s for "
                  f"{r['steps']} steps, cores "
                  + ", ".join(f"{k} {v:.2f}" for k, v in r["cores"].items())
                  + f"; server memory grew {r['server_rss_growth_mb']:.0f} MB", flush=True)
    print("\n| page open | training seconds (each) | median | app server | chromium | trainer (cores) |")
    print("|---|---|---|---|---|---|")
    for name, rs in results.items():
        median = {k: statistics.median(r["cores"][k] for r in rs) for k in rs[0]["cores"]}
        each = ", ".join(f"{r['train_seconds']:.0f}" for r in rs)
        print(f"| {name} | {each} | "
              f"{statistics.median(r['train_seconds'] for r in rs):.0f} s | {median['app server']:.2f} | "
              f"{median['chromium']:.2f} | {median['trainer']:.2f} |")


if __name__ == "__main__":
    main()
