"""Load a finished run and score messages.

    predictor = Predictor.load("checkpoints/20261126-101500-finetune-ab12")
    predictor.predict(["WINNER!! Claim your prize now", "see you at 6"])
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .batches import LengthBucketSampler
from .features import encode
from .modeling import MLPHead, reresolve
from .runs import saved_run_config

PREDICT_BATCH = 64
MAX_MESSAGE_CHARS = 5000  # longer input is cut here before tokenising; the model sees max_length tokens anyway


class Predictor:
    """A read-only model for one run. Thread-safe: one instance serves every browser session."""

    def __init__(self, run_dir: Path, mode: str, max_length: int, tokenizer=None, model=None, head=None,
                 pooling=None, baseline=None, precision: str = "fp32"):
        self.run_dir, self.mode, self.max_length = Path(run_dir), mode, max_length
        self.tokenizer, self.model, self.head, self.pooling, self.baseline = tokenizer, model, head, pooling, baseline
        self.precision = precision  # the run's: a bf16 run was validated and tested under bf16 autocast
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads during forward

    @classmethod
    def load(cls, run_dir: str | Path) -> "Predictor":
        run_dir = Path(run_dir)
        config = saved_run_config(run_dir)
        mode = config["mode"]
        weights = run_dir / "model"
        precision = config.get("precision", "fp32")
        if mode == "baseline":
            from .baseline import Baseline
            return cls(run_dir, mode, 0, baseline=Baseline.load(weights))
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
        if mode == "finetune":
            model = AutoModelForSequenceClassification.from_pretrained(weights, use_safetensors=True).eval()
            return cls(run_dir, mode, config["max_length"], AutoTokenizer.from_pretrained(weights), model,
                       precision=precision)
        from safetensors.torch import load_file
        head_config = json.loads((weights / "head_config.json").read_text())
        encoder_info = reresolve(head_config["encoder"])
        encoder = AutoModel.from_pretrained(encoder_info.path, use_safetensors=True).eval()
        head = MLPHead(head_config["in_features"], head_config["hidden"], head_config["dropout"])
        head.load_state_dict(load_file(str(weights / "head.safetensors")))
        return cls(run_dir, mode, head_config["max_length"], AutoTokenizer.from_pretrained(encoder_info.path),
                   encoder, head.eval(), head_config["pooling"], precision=precision)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per message before truncation (for telling the user a message was cut)."""
        if self.tokenizer is None:
            return [len(t.split()) for t in texts]
        # verbose=False: counting past the model's limit is the point here, not the error it warns about
        return [len(ids) for ids in self.tokenizer([t[:MAX_MESSAGE_CHARS] for t in texts], verbose=False)["input_ids"]]

    @torch.inference_mode()
    def predict(self, texts: list[str], on_progress: Callable[[int, int, int, int], None] | None = None,
                log_odds: bool = False) -> np.ndarray:
        """Spam probability for each text, in order. on_progress(messages done, messages, tokens done, tokens) after
        each batch: a page scoring 2,000 messages shows how far it is (the batches are the same either way, so are
        the scores). Tokens count the padded batches, shortest messages first: they are the clock for a time left,
        as in `features.encode`.
        log_odds: ln(p / (1 - p)) instead, from the logits: it still moves where a near-certain model's float
        probability has saturated at 0 or 1 (word weights for such a model)."""
        texts = [str(t)[:MAX_MESSAGE_CHARS] for t in texts]
        if not texts:
            return np.empty(0)
        if self.baseline is not None:
            return self.baseline.log_odds(texts) if log_odds else self.baseline.predict_proba(texts)
        with self._lock:
            if self.mode == "frozen":
                features = encode(self.model, self.tokenizer, texts, self.max_length, self.pooling, "cpu",
                                  self._autocast, on_progress=on_progress)
                return _spam(self.head(features), log_odds)
            if len(texts) == 1:  # a typed message: no sorting or padding to do
                batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_tensors="pt")
                with self._autocast():
                    return _spam(self.model(**batch).logits.float(), log_odds).astype(float)
            tokens = self.tokenizer(texts, truncation=True, max_length=self.max_length)
            out = np.empty(len(texts))
            # length-sorted batches: similar lengths pad little (SMS run 5-128 tokens, most under 30)
            lengths = [len(i) for i in tokens["input_ids"]]
            batches = list(LengthBucketSampler(lengths, PREDICT_BATCH, shuffle=False))
            work = [len(idx) * max(lengths[i] for i in idx) for idx in batches]  # padded tokens per batch
            done, tokens_done, tokens_total = 0, 0, sum(work)
            for idx, batch_work in zip(batches, work):
                batch = self.tokenizer.pad({k: [tokens[k][i] for i in idx] for k in tokens.keys()}, return_tensors="pt")
                with self._autocast():
                    out[idx] = _spam(self.model(**batch).logits.float(), log_odds)
                done, tokens_done = done + len(idx), tokens_done + batch_work
                if on_progress:
                    on_progress(done, len(texts), tokens_done, tokens_total)
            return out

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")


def _spam(logits: torch.Tensor, log_odds: bool) -> np.ndarray:
    """The spam column of a two-class softmax, or its log-odds: the difference of the two logits."""
    return (logits[:, 1] - logits[:, 0] if log_odds else torch.softmax(logits, -1)[:, 1]).numpy()
