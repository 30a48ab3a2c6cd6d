"""Frozen-mode features: pooled encoder outputs, computed once per (model, max length, pooling, data) and
cached on disk, so a second frozen run with other head settings only trains the head."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .batches import LengthBucketSampler
from .modeling import pool

log = logging.getLogger(__name__)

EXTRACT_BATCH = 64  # forward-only batches can be larger than training ones


# every file a tokenizer may be loaded from: WordPiece (BERT), BPE (RoBERTa, GPT-2), SentencePiece, added tokens
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def effective_precision(requested: str) -> str:
    """The precision a run asking for `requested` trains in here: bf16 only where the device has it natively.
    Runs record it, and frozen features are cached under it."""
    return requested if requested == "fp32" or _bf16_native() else "fp32"


def _bf16_native() -> bool:
    """bf16 autocast pays off on CUDA with bf16 and on CPUs with bf16 instructions (AVX512-BF16, AMX, Arm BF16)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:  # on x86 Linux require the native instructions; oneDNN's check also accepts slow emulation
        flags = next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith(("flags", "Features")))
        if "avx512f" in flags.split() or "avx2" in flags.split():
            return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
    except (OSError, StopIteration):
        pass
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cache_key(model_name: str, weights_digest: str, tokenizer: str, max_length: int, pooling: str, precision: str,
              data_fingerprint: str) -> str:
    # digests, not the model's name or path: a directory can be overwritten under the same name
    ident = {"model": model_name, "weights": weights_digest, "tokenizer": tokenizer, "max_length": max_length,
             "pooling": pooling, "precision": precision, "data": data_fingerprint, "version": 3}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def tokenizer_digest(model_dir: str | os.PathLike) -> str:
    """sha256 of a model directory's tokenizer files: the same weights with another tokenizer are other features."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            with open(path, "rb") as f:
                digest.update(name.encode() + hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def feature_file(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / "features" / f"{key}.safetensors"


def partial_file(cache_dir: str | os.PathLike, key: str) -> Path:
    """Where an encoding in progress keeps what it has done, so a killed or cancelled one resumes there."""
    return Path(cache_dir) / "features" / f"{key}.partial.safetensors"


@torch.inference_mode()
def encode(encoder, tokenizer, texts: list[str], max_length: int, pooling: str, device, autocast=contextlib.nullcontext,
           on_progress: Callable[[int, int, int, int], None] | None = None, resume: Path | None = None,
           save_every: float = 10.0) -> torch.Tensor:
    """texts -> (N, H) float32 pooled features, in the order of `texts`.

    on_progress(messages done, messages, tokens done, tokens) after each batch. Tokens count the padded batches the
    encoder runs: the batches go from the shortest messages to the longest, so the messages done are a poor clock
    (a time left reckoned from them was a third of the truth on the SMS data), the tokens a far better one.

    With `resume`, the rows done so far are saved there every `save_every` seconds (longer if saving is slow) and
    when the encoding is stopped, and rows found there are not encoded again: the batches are the same every time
    (length-sorted, not shuffled), so the result is too. A file from other tokens or batches is ignored."""
    encoder.eval()
    tokens = tokenizer(texts, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in tokens["input_ids"]]
    out = torch.empty(len(texts), encoder.config.hidden_size)
    finished = torch.zeros(len(texts), dtype=torch.bool)
    # the work itself: a tokenizer changed under the same model name gives other tokens, hence another layout
    layout = hashlib.sha256(json.dumps([EXTRACT_BATCH, tokens["input_ids"]]).encode()).hexdigest()
    if resume is not None and resume.is_file():
        try:
            with safe_open(str(resume), "pt") as f:
                if (f.metadata() or {}).get("layout") == layout:
                    saved, saved_done = f.get_tensor("features"), f.get_tensor("done")
                    if saved.shape == out.shape and saved_done.shape == finished.shape:
                        out, finished = saved, saved_done
        except Exception as exc:  # a damaged partial file only costs the rows it held
            log.warning("ignoring unreadable partial features %s: %s", resume, exc)
    batches = list(LengthBucketSampler(lengths, EXTRACT_BATCH, shuffle=False))
    work = [len(idx) * max(lengths[i] for i in idx) for idx in batches]  # padded tokens per batch
    tokens_total = sum(work)
    done, last_save, interval = int(finished.sum()), time.monotonic(), save_every
    tokens_done = sum(w for idx, w in zip(batches, work) if finished[idx].all())

    def save():
        nonlocal last_save, interval, resume
        started = time.monotonic()
        try:
            _save_atomic({"features": out, "done": finished}, resume, metadata={"layout": layout})
        except (OSError, SafetensorError) as exc:
            # an unwritable cache folder or a full disk (safetensors' own error as it writes) costs the resume
            # point, not the run
            log.warning("could not save partial features at %s, and will not try again: %s", resume, exc)
            resume = None
            return
        last_save = time.monotonic()
        interval = max(save_every, 20 * (last_save - started))  # saving takes at most about 5 % of the time

    for batch_idx, batch_work in zip(batches, work):
        if finished[batch_idx].all():
            continue
        batch = tokenizer.pad({k: [tokens[k][i] for i in batch_idx] for k in tokens.keys()}, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast():
            hidden = encoder(**batch).last_hidden_state  # (B, T, H)
        out[batch_idx] = pool(hidden.float(), batch["attention_mask"], pooling).cpu()
        finished[batch_idx] = True
        done += len(batch_idx)
        tokens_done += batch_work
        if resume is not None and time.monotonic() - last_save >= interval:
            save()
        if on_progress:
            try:
                on_progress(done, len(texts), tokens_done, tokens_total)
            except BaseException:  # a cancel or Ctrl-C stops the encoding here: keep everything done so far
                if resume is not None:
                    save()
                raise
    return out


def _save_atomic(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STALE_TEMP_S = 3600  # a save takes seconds: a temp file untouched this long was left by a killed process


def _drop_stale_temp_files(folder: Path) -> None:
    """Temp files of saves cut short by kill -9 (nothing else can remove them). Only old ones: the cache folder may
    be shared with a training job of another runs folder that is saving right now."""
    for tmp in folder.glob("*.tmp") if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()


def cached_features(cache_dir: str | os.PathLike, key: str, compute: Callable[[], tuple[torch.Tensor, dict]]
                    ) -> tuple[torch.Tensor, bool, dict]:
    """Load features for `key`, or compute and store them (atomically). Returns (features, was_cached, info).

    `compute()` returns (features, info); info (str -> str) is stored in the file's metadata and returned on
    later hits, so facts learnt while computing (the encoder's size) need no model loading then.
    """
    path = feature_file(cache_dir, key)
    _drop_stale_temp_files(path.parent)
    if path.is_file():
        with contextlib.suppress(OSError):  # e.g. left by a second process that encoded too
            partial_file(cache_dir, key).unlink(missing_ok=True)
        try:
            with safe_open(str(path), "pt") as f:
                return f.get_tensor("features"), True, dict(f.metadata() or {})
        except Exception as exc:  # a damaged cache file is recomputed, never trusted
            log.warning("ignoring unreadable feature cache %s: %s", path, exc)
    features, info = compute()
    info = {k: str(v) for k, v in info.items()}
    try:
        _save_atomic({"features": features}, path, metadata=info)
        partial_file(cache_dir, key).unlink(missing_ok=True)  # superseded
    except (OSError, SafetensorError) as exc:  # a cache that cannot be written (full disk) only costs time next run
        log.warning("could not cache features at %s: %s", path, exc)
    return features, False, info
