"""Frozen-mode features: pooled encoder outputs, computed once per (model, max length, pooling, data) and
cached on disk, so a second frozen run with other head settings only trains the head."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .batches import LengthBucketSampler
from .modeling import pool

log = logging.getLogger(__name__)

EXTRACT_BATCH = 64  # forward-only batches can be larger than training ones


def cache_key(model_name: str, weights_digest: str, max_length: int, pooling: str, precision: str,
              data_fingerprint: str) -> str:
    # the weights' digest, not the model's name or path: a directory can be overwritten under the same name
    ident = {"model": model_name, "weights": weights_digest, "max_length": max_length,
             "pooling": pooling, "precision": precision, "data": data_fingerprint, "version": 2}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def feature_file(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / "features" / f"{key}.safetensors"


@torch.inference_mode()
def encode(encoder, tokenizer, texts: list[str], max_length: int, pooling: str, device, autocast=contextlib.nullcontext,
           on_progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """texts -> (N, H) float32 pooled features, in the order of `texts`."""
    encoder.eval()
    tokens = tokenizer(texts, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in tokens["input_ids"]]
    out = torch.empty(len(texts), encoder.config.hidden_size)
    done = 0
    for batch_idx in LengthBucketSampler(lengths, EXTRACT_BATCH, shuffle=False):
        batch = tokenizer.pad({k: [tokens[k][i] for i in batch_idx] for k in tokens.keys()}, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast():
            hidden = encoder(**batch).last_hidden_state  # (B, T, H)
        out[batch_idx] = pool(hidden.float(), batch["attention_mask"], pooling).cpu()
        done += len(batch_idx)
        if on_progress:
            on_progress(done, len(texts))
    return out


def cached_features(cache_dir: str | os.PathLike, key: str, compute: Callable[[], tuple[torch.Tensor, dict]]
                    ) -> tuple[torch.Tensor, bool, dict]:
    """Load features for `key`, or compute and store them (atomically). Returns (features, was_cached, info).

    `compute()` returns (features, info); info (str -> str) is stored in the file's metadata and returned on
    later hits, so facts learnt while computing (the encoder's size) need no model loading then.
    """
    path = feature_file(cache_dir, key)
    if path.is_file():
        try:
            with safe_open(str(path), "pt") as f:
                return f.get_tensor("features"), True, dict(f.metadata() or {})
        except Exception as exc:  # a damaged cache file is recomputed, never trusted
            log.warning("ignoring unreadable feature cache %s: %s", path, exc)
    features, info = compute()
    info = {k: str(v) for k, v in info.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({"features": features.contiguous()}, tmp, metadata=info)
        os.replace(tmp, path)
    except OSError as exc:  # a cache that cannot be written only costs time next run
        log.warning("could not cache features at %s: %s", path, exc)
    return features, False, info
