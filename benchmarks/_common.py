"""Shared helpers for the benchmark scripts: machine description, data subsets, timing tables.

Every benchmark measures the standard tool and `core` in the same process, alternating, and reports
medians and ratios: the machines these run on are shared and noisy, so a lone absolute time means little.
"""
from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks never wait on the hub
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from the repository root
    sys.path.insert(0, str(ROOT))


def quiet() -> None:
    """Silence the load reports and progress bars that would drown the tables."""
    import logging
    import warnings

    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("core").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TQDM_DISABLE", "1")


def default_model() -> str:
    from core.modeling import bundled_model_dir
    return str(bundled_model_dir())


def machine() -> str:
    """One paragraph saying where the numbers came from, including how busy the machine was."""
    import torch
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags"))
        isa = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    except (OSError, StopIteration):
        isa = []
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} logical CPUs ({' '.join(isa) or 'no avx512'}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {load}")


def load_average() -> float:
    return os.getloadavg()[0]


def subset_file(data: str | None, limit: int | None, directory: str | os.PathLike, seed: int = 0,
                repeat: int = 1) -> tuple[Path, int]:
    """A UCI-format copy of `limit` de-duplicated messages (random, fixed by seed), optionally repeated.

    Repeated copies get a " #k" suffix: `core` de-duplicates messages, so exact copies would vanish.
    Written under `directory` (a temporary folder), never into the repository.
    """
    from core.data import LABELS, load_messages
    frame = load_messages(data).frame
    rows = list(zip(frame["label"].tolist(), frame["text"].tolist()))
    if limit and limit < len(rows):
        rows = random.Random(seed).sample(rows, limit)
    out = []
    for k in range(repeat):
        out += [(y, t if k == 0 else f"{t} #{k}") for y, t in rows]
    path = Path(directory) / f"sms-{limit or 'all'}-x{repeat}.txt"
    path.write_text("".join(f"{LABELS[y]}\t{' '.join(t.split())}\n" for y, t in out), encoding="utf-8")
    return path, len(out)


def texts_of(path: Path) -> list[str]:
    return [line.split("\t", 1)[1] for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]


def abba(variants: dict, repeats: int, sync=lambda: None) -> tuple[dict, dict, list]:
    """Time each callable `repeats` times, alternating the order each round (ABBA) so that a drift in load
    hits every variant alike. Returns (seconds per variant, last output per variant, load averages seen).
    `sync` waits for queued device work (torch.cuda.synchronize on a GPU)."""
    times, outputs, loads = {v: [] for v in variants}, {}, []
    for r in range(repeats):
        for v in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            loads.append(load_average())
            sync()
            t0 = time.perf_counter()
            outputs[v] = variants[v]()
            sync()
            times[v].append(time.perf_counter() - t0)
    return times, outputs, loads


def median(values) -> float:
    return float(statistics.median(values))


def table(header: list[str], rows: list[list]) -> str:
    """A GitHub-markdown table (readable in a terminal, pasteable into the README)."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def tmpdir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-")
