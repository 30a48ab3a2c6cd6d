"""Training configuration: one dataclass whose field help is the single source of truth.

The CLI builds its flags from these fields, the UI builds its form from the same defaults, and the
resolved config is written into every run folder, so a run can always be reproduced.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

MODES = ("frozen", "finetune", "baseline")
DEFAULT_MODEL = "bert-base-uncased"  # the seed's model; the only name that falls back to the bundled one

# Defaults that differ by mode. None in TrainConfig means "take the mode's default".
MODE_DEFAULTS = {
    # BERT paper range 2e-5..5e-5; the small bundled MiniLM prefers the top of it. 3 epochs is the paper's
    # recipe, and enough here: in the six-seed sweep the lowest validation loss came at epoch 1.2-2.5.
    # an epoch of 100 steps at least: about one of the whole SMS training split (113 at batch 32), so a small sample
    # trains about as long as the whole split would; with 6 to 30 steps a sample's fine-tune collapsed (section 17)
    "finetune": {"epochs": 3, "lr": 5e-5, "evals_per_epoch": 4, "class_weight": "none", "min_epoch_steps": 100},
    # Only a small MLP on cached features trains, so many cheap epochs and a larger learning rate.
    "frozen": {"epochs": 60, "lr": 1e-3, "evals_per_epoch": 1, "class_weight": "balanced", "min_epoch_steps": 0},
    # The linear baseline is fitted by a solver to convergence: epochs and learning rate do not apply.
    "baseline": {"epochs": 1, "lr": 1.0, "evals_per_epoch": 1, "class_weight": "balanced", "min_epoch_steps": 0},
}

# what a baseline run uses; every other setting (epochs, lr, model, …) is a BERT's
BASELINE_SETTINGS = frozenset({"mode", "data", "seed", "val_fraction", "test_fraction", "train_messages",
                               "class_weight", "threshold", "runs_dir"})
MIN_TRAIN_MESSAGES = 20  # a stratified sample of fewer holds one or two spam messages at SMS's 13 %

# on SMS spam, fine-tunes of 6 to 30 steps (3 epochs, one pass each, of 50 to 300 messages) collapsed to calling every
# message ham on 8 of 9 splits, and none of 60 steps or more did (benchmarks/README.md, section 17)
FEW_FINETUNE_STEPS = 60


def passes_per_epoch(cfg: "TrainConfig", n_train: int, processes: int = 1) -> int:
    """How often an epoch goes over the n_train training messages: once, or for a fine-tune on a sample so small
    that one pass makes fewer than min_epoch_steps optimisation steps, as often as that takes. processes: each of
    that many takes every n-th batch of the epoch (core.batches.Shard), so each makes that share of the steps."""
    if cfg.mode != "finetune":
        return 1
    return max(1, -(-cfg.min_epoch_steps * processes // -(-n_train // cfg.batch_size)))


def steps_per_epoch(cfg: "TrainConfig", n_train: int) -> int:
    """Optimisation steps in one epoch of n_train messages (in one process)."""
    return -(-n_train // cfg.batch_size) * passes_per_epoch(cfg, n_train)


def eval_interval(steps_per_epoch: int, evals_per_epoch: int) -> int:
    """Steps between validations: the whole number whose validations per epoch come closest to those asked for.
    Rounding down alone gave 37.7 per epoch for 30 asked at 113 steps an epoch, and 113 for 60."""
    fewer_steps = max(1, steps_per_epoch // evals_per_epoch)
    return min((fewer_steps, fewer_steps + 1), key=lambda every: abs(steps_per_epoch / every - evals_per_epoch))


def validation_due(step: int, eval_every: int, total_steps: int) -> bool:
    """Whether training validates after this step. The last step always does, so one due a few steps before it
    would only cost a pass (~7 s for MiniLM on 516 messages) on weights that barely changed: 112 and 113 of a
    113-step run."""
    return step == total_steps or (step % eval_every == 0 and total_steps - step >= eval_every // 2)


def validations_planned(steps_per_epoch: int, epochs: int, evals_per_epoch: int) -> int:
    """How many validations a run of these steps makes if it trains to its end."""
    every, total = eval_interval(steps_per_epoch, evals_per_epoch), steps_per_epoch * epochs
    return sum(validation_due(step, every, total) for step in range(1, total + 1))


def few_steps_warning(steps: int | list[int], epochs: int) -> str | None:
    """What to say before a fine-tune of so few optimisation steps that it may learn nothing; None for enough.
    A list: the steps of several fine-tunes (a learning curve's), said together."""
    few = [n for n in ([steps] if isinstance(steps, int) else steps) if n < FEW_FINETUNE_STEPS]
    if not few:
        return None
    counts = few[0] if len(few) == 1 else f"{', '.join(map(str, few[:-1]))} and {few[-1]}"
    return (f"{'this fine-tune is' if len(few) == 1 else 'these fine-tunes are'} {counts} optimisation steps "
            f"({epochs} epoch{'s' * (epochs != 1)}): on SMS spam, fine-tunes of 30 steps or fewer collapsed to calling "
            f"every message ham on 8 of 9 splits, and none of {FEW_FINETUNE_STEPS} or more did; more epochs or a "
            "higher min_epoch_steps give a small sample more steps (benchmarks/README.md, section 17)")


def _opt(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    mode: str = _opt("finetune", "frozen: train an MLP head on frozen encoder features; finetune: train "
                     "the whole encoder and its classification layer; baseline: TF-IDF + logistic regression",
                     choices=MODES)
    data: str | None = _opt(None, "dataset file (UCI label<TAB>text, or CSV/TSV with a header); default: "
                            "$SPAM_DATA, then data/SMSSpamCollection, then the Hugging Face hub")
    model: str = _opt(DEFAULT_MODEL, f"hub id or local model directory; offline, {DEFAULT_MODEL} falls back to "
                      "the bundled all-MiniLM-L6-v2, and any other name that is not cached is refused")
    epochs: int | None = _opt(None, "passes over the training split (finetune 3, frozen 60)")
    lr: float | None = _opt(None, "peak learning rate (finetune 5e-5, frozen 1e-3)")
    batch_size: int = _opt(32, "messages per optimisation step")
    max_length: int = _opt(128, "tokens kept per message; SMS rarely exceed 100")
    seed: int = _opt(42, "seeds the split, the initialisation and the batch order")
    val_fraction: float = _opt(0.1, "share of de-duplicated messages held out for validation")
    test_fraction: float = _opt(0.2, "share of de-duplicated messages held out for the final test")
    train_messages: int | None = _opt(None, "train on only this many of the training split's messages (a "
                                            "stratified sample, nested: a smaller one is part of a larger one for the "
                                            "same seed; validation and test unchanged), to see how fine-tuning's gain "
                                            "changes with fewer labels; default: all of them")
    warmup_ratio: float = _opt(0.1, "share of steps with linear learning-rate warmup (BERT paper)")
    weight_decay: float = _opt(0.01, "AdamW weight decay, not applied to biases and LayerNorm")
    max_grad_norm: float = _opt(1.0, "gradient clipping norm (0: no clipping)")
    patience: int = _opt(0, "stop after this many validations without a lower validation loss (0: off)")
    evals_per_epoch: int | None = _opt(None, "validations per epoch (finetune 4, frozen 1)")
    min_epoch_steps: int | None = _opt(None, "finetune: optimisation steps an epoch makes at least, going over a "
                                       "sample too small for them several times (default 100, about one pass over "
                                       "the whole SMS training split; 0: once)")
    pooling: str = _opt("mean", "frozen: how token vectors become one feature vector; mean beats [CLS] "
                        "for encoders not trained on a [CLS] objective", choices=("mean", "cls"))
    head_hidden: int = _opt(512, "frozen: hidden units of the MLP head")
    dropout: float = _opt(0.3, "frozen: dropout in the MLP head (with 128 or 512 units and dropout 0.1 or 0.3, "
                          "validation F1 was within noise over six splits; benchmarks/README.md, section 8)")
    class_weight: str | None = _opt(None, "balanced: weight the loss by inverse class frequency so 12 % spam "
                                    "is not ignored (the seed's frozen model collapsed to 'always ham'); frozen "
                                    "default balanced, finetune none (over six splits, weighting cost 2.1 points of "
                                    "validation precision for 1.3 of recall; benchmarks/README.md, section 8)",
                                    choices=("balanced", "none"))
    precision: str = _opt("bf16", "bf16 autocast for the encoder where the device has native bf16 (falls back to "
                          "fp32 elsewhere); on the full data it moved each BERT's test errors by one message against "
                          "fp32 on an AMX CPU and an H200, by none on an earlier CPU (the README's results)",
                          choices=("fp32", "bf16"))
    threshold: float = _opt(0.5, "spam probability at or above which a message is called spam (0.001 to 0.999: "
                            "at 0 or 1 the verdict would hinge on float rounding, as probabilities saturate)")
    save_state_every: float = _opt(60.0, "seconds between saves of the whole training state (weights, optimiser, "
                                   "random state) that `python -m core resume` goes on from after a crash; a save "
                                   "waits at least 20 times what the last one took, and comes after a validation "
                                   "(0: after every validation that cost allows)")
    runs_dir: str = _opt("checkpoints", "where run folders are written")
    cache_dir: str = _opt("data/cache", "where frozen-mode features are cached")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        for name, value in MODE_DEFAULTS[self.mode].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name, low, high, kind in (("epochs", 1, 1000, int), ("lr", 1e-8, 1.0, float), ("batch_size", 1, 4096, int),
                                      ("max_length", 8, 8192, int), ("evals_per_epoch", 1, 100, int),
                                      ("head_hidden", 1, 65536, int), ("patience", 0, 1000, int),
                                      ("min_epoch_steps", 0, 10**6, int),
                                      ("seed", 0, 2**32 - 1, int),  # numpy's seed range
                                      ("dropout", 0.0, 0.99, float), ("warmup_ratio", 0.0, 0.99, float),
                                      ("weight_decay", 0.0, 0.99, float), ("val_fraction", 0.01, 0.5, float),
                                      ("test_fraction", 0.01, 0.5, float), ("threshold", 0.001, 0.999, float),
                                      ("max_grad_norm", 0.0, 1e6, float), ("save_state_every", 0.0, 1e6, float)):
            # stored as its kind: a --config file's 2.0 for an integer passed the check, then failed in range()
            setattr(self, name, kind(self._check(name, getattr(self, name), low, high, kind)))
        if self.train_messages is not None:
            self.train_messages = int(self._check("train_messages", self.train_messages, MIN_TRAIN_MESSAGES, 10**9,
                                                  int))
        for name in ("model", "data", "runs_dir", "cache_dir"):  # a --config file's value may be a number or a list
            if not isinstance(getattr(self, name), str) and (name != "data" or self.data is not None):
                raise ValueError(f"{name}: expected a name or path in quotes, got {getattr(self, name)!r}")
            if name != "model" and isinstance(getattr(self, name), str) and not getattr(self, name).strip():
                # "" would quietly mean the current folder (runs) or the next data source along
                raise ValueError(f"{name}: expected a path, got an empty one")
        if self.val_fraction + self.test_fraction >= 0.8:
            raise ValueError("val_fraction + test_fraction: expected < 0.8 so some data is left to train on, "
                             f"got {self.val_fraction + self.test_fraction:g}")
        for name in ("pooling", "class_weight", "precision"):
            choices = self.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if not self.model or not str(self.model).strip():
            raise ValueError("model: expected a hub id or a model directory, got an empty name")

    @staticmethod
    def _check(name, value, low, high, kind):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
            raise ValueError(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if not math.isfinite(value) or value < low or value > high:
            bounds = f"{low}, {high}" if kind is int else f"{low:g}, {high:g}"
            raise ValueError(f"{name}: expected a value in [{bounds}], got {value!r}")
        return value

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
