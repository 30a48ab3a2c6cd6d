"""Evaluate a finished run on another labelled file (today's smishing is not 2011's SMS spam).

    python -m core evaluate --run checkpoints/<run> --data my_messages.csv
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import numpy as np

from .data import deduplicate, load_messages, normalise, read_messages, source_bytes, split_messages
from .metrics import bootstrap_intervals, classification_metrics, curves
from .predict import Predictor
from .runs import EVALUATIONS, read_json, write_json_atomic


def evaluate_run(run_dir: Path, source: str | Path | bytes, name: str | None = None,
                 predictor: Predictor | None = None, save: bool = True) -> dict:
    """Score a labelled file with a run's model; saved (save_evaluation, unless save is False) and returned."""
    run_dir = Path(run_dir)
    name = name or (Path(source).name if not isinstance(source, (bytes, bytearray)) else "upload")
    # read once, so the digest names the very bytes scored even if the file changes meanwhile
    raw, shown = source_bytes(source, name)
    frame, counts = read_messages(raw, name=shown)
    frame, dedup = deduplicate(frame)
    predictor = predictor or Predictor.load(run_dir)
    config = read_json(run_dir / "config.json")
    threshold = config.get("threshold", 0.5)
    y = np.asarray(frame["label"].tolist())
    p = predictor.predict(frame["text"].tolist())
    digest = hashlib.sha256(raw).hexdigest()
    result = {"name": name, "sha256": digest, "evaluated_at": time.time(), **counts, **dedup,
              "seen_in_training": seen_in_training(config, frame["text"].tolist()),
              "metrics": classification_metrics(y, p, threshold), "curves": curves(y, p),
              "predictions": [{"text": t, "label": int(l), "spam_probability": float(q)}
                              for t, l, q in zip(frame["text"].tolist(), y, p)]}
    if len(np.unique(y)) == 2:
        result["metrics"]["ci95"] = bootstrap_intervals(y, p, threshold)
    if save and (problem := save_evaluation(run_dir, result)):
        result["not_saved"] = problem
    return result


def save_evaluation(run_dir: Path, result: dict) -> str | None:
    """Keep evaluate_run's result as <run>/evaluations/<name>-<content digest>.json (two files of one name, from two
    folders say, do not overwrite each other's scores). None, or why it could not be kept: a full disk or a read-only
    runs folder loses no scores computed, which are given anyway."""
    out_dir = Path(run_dir) / EVALUATIONS
    try:
        out_dir.mkdir(exist_ok=True)
        write_json_atomic(out_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', result['name'])[:80]}-{result['sha256'][:10]}"
                                    ".json", result)
    except OSError as exc:
        return f"the scores could not be kept in {out_dir} ({exc.strerror or exc})"
    return None


def saved_evaluation(run_dir: Path, digest: str) -> dict | None:
    """The newest scores a run saved for a file with this content digest (its sha256, or the first 10 or more hex
    digits of it), or None: Compare reopens them after a reload, which forgets the uploaded file itself."""
    if not re.fullmatch(r"[0-9a-f]{10,64}", digest or ""):  # it comes from a URL: never a glob pattern
        return None
    found = []
    for file in (Path(run_dir) / EVALUATIONS).glob(f"*-{digest[:10]}.json"):
        try:
            evaluation = read_json(file)
        except (OSError, ValueError):  # damaged, or deleted since the listing
            continue
        if isinstance(evaluation, dict) and str(evaluation.get("sha256", "")).startswith(digest):
            found.append(evaluation)
    return max(found, key=lambda e: e.get("evaluated_at", 0), default=None)


def delete_evaluations(run_dirs, digest: str) -> int:
    """Delete every saved score of the file with this content digest from these runs; how many files went.
    An uploaded file's messages are kept in its scores, so the user must be able to remove them."""
    if not re.fullmatch(r"[0-9a-f]{10,64}", digest or ""):
        return 0
    deleted = 0
    for run_dir in run_dirs:
        for file in (Path(run_dir) / EVALUATIONS).glob(f"*-{digest[:10]}.json"):
            try:
                saved = read_json(file)
            except ValueError:  # damaged, but named after this file: it may still hold its messages
                saved = {"sha256": digest}
            except OSError:  # deleted meanwhile
                continue
            if isinstance(saved, dict) and str(saved.get("sha256", "")).startswith(digest):
                file.unlink(missing_ok=True)
                deleted += 1
    return deleted


def seen_in_training(config: dict, texts: list[str]) -> int | None:
    """How many of `texts` the run trained or validated on: those score better than new messages would.
    None when the run's dataset is no longer where it was, or has changed since."""
    info = config.get("data_info") or {}
    try:
        messages = load_messages(info["source"])
    except (KeyError, TypeError, ValueError, OSError):
        return None
    if messages.fingerprint != info.get("fingerprint"):
        return None
    splits = split_messages(messages.frame, config["val_fraction"], config["test_fraction"], config["seed"],
                            config.get("train_messages"))  # the training messages it left out it never saw
    learnt = set(splits["train"]["text"].tolist()) | set(splits["validation"]["text"].tolist())
    return sum(normalise(t) in learnt for t in texts)
