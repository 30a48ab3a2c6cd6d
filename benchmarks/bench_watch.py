"""What watching a job in the browser costs the job, on a machine where the trainer has every core.

    python benchmarks/bench_watch.py --data ../shared/data/SMSSpamCollection --repeats 2

Each job is started from the Train page in headless Chromium, as a user would: one fine-tune on a sample of the
training split. Then either the browser is closed (`none`) or the Train page stays open with its live panel, which
re-reads history.jsonl and redraws the loss curves every 2 s (`train`). The app is served once with Streamlit's
own setting `runner.postScriptGC` on (its default: a full gc.collect() after every script run, fragments included)
and once off (the project's .streamlit/config.toml). Conditions alternate, so a slow spell of the machine falls on
all of them. Printed: the job's training seconds, the cores each process group used from 20 s after the start to
the end of the job, and how much the server's memory grew in that time. Needs /usr/bin/chromium and Python
Playwright (requirements-dev.txt).
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
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--runner.postScriptGC", str(gc).lower()],
                            cwd=C.ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"the app did not start: see {log}")


def _cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the app's server, Chromium and the trainer (`python -m core`)."""
    out = {"app server": 0.0, "chromium": 0.0, "trainer": 0.0}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        group = ("app server" if proc.info["pid"] == server_pid else "chromium" if "chromium" in cmd
                 else "trainer" if " -m core " in f"{cmd} " else None)
        if group and proc.info["cpu_times"]:
            out[group] += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return out


def one_job(args, watch: str, gc: bool, work: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from core import jobs
    from core.runs import list_runs

    runs_dir = Path(tempfile.mkdtemp(prefix="runs-", dir=work))
    env = {**os.environ, "SPAM_RUNS_DIR": str(runs_dir), "SPAM_CACHE_DIR": str(work / "cache"),
           "SPAM_UPLOADS_DIR": str(work / "uploads"), "SPAM_DATA": args.data, "SPAM_MODEL": args.model,
           "HF_HUB_OFFLINE": "1"}
    server, url = _serve(env, gc, work / "server.log")
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
            while jobs.current_job(runs_dir) is None:
                time.sleep(0.2)
            started = time.time()
            if watch == "none":
                browser.close()
            while time.time() - started < 20:  # past loading the data and the model
                time.sleep(0.5)
            before, t0 = _cpu_seconds(server.pid), time.time()
            server_rss = psutil.Process(server.pid).memory_info().rss
            while jobs.current_job(runs_dir) is not None:
                time.sleep(0.5)
            after, t1 = _cpu_seconds(server.pid), time.time()
            rss_growth = psutil.Process(server.pid).memory_info().rss - server_rss
            if watch != "none":
                browser.close()
        run = list_runs(runs_dir)[0]
        if run.status != "completed":
            raise SystemExit(f"the job's run ended {run.status}: see {run.path}")
        cores = {k: (after[k] - before[k]) / (t1 - t0) for k in before}
        return {"train_seconds": run.metrics["train_seconds"], "steps": run.metrics["steps"], "cores": cores,
                "server_rss_growth_mb": rss_growth / 2**20}
    finally:
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
    for repeat in range(args.repeats):
        for name, (watch, gc) in CONDITIONS.items():
            r = one_job(args, watch, gc, work)
            results[name].append(r)
            print(f"repeat {repeat + 1}, {name}: {r['train_seconds']:.1f} s for {r['steps']} steps, cores "
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
