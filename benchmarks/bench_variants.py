"""One change to the fine-tuning recipe against the defaults, over the same splits, paired by seed.

    python benchmarks/bench_variants.py --variant mean-pooling   --data ../shared/data/SMSSpamCollection
    python benchmarks/bench_variants.py --variant random-batches --data ../shared/data/SMSSpamCollection
    python benchmarks/bench_variants.py --variant layer-lr-decay --data ../shared/data/SMSSpamCollection

Variants (each a context manager that patches core while the candidate's runs train, and always undoes it):
- mean-pooling: all-MiniLM-L6-v2 was trained as a sentence encoder through mean pooling, but
  AutoModelForSequenceClassification classifies from [CLS] through a pooler that objective never trained. The
  candidate classifies the mean of the token vectors through dropout 0.1 and Linear(hidden, 2), the size of
  BERT's classifier. `core` cannot load these runs for prediction: their weights serve this comparison only.
- random-batches: length-bucketed batches are label-skewed here, because spam is longer than ham (median 45
  tokens against 17), so many training batches hold no spam at all. The candidate draws training batches at
  random (dynamic padding kept), at the price of more padding.
- layer-lr-decay: lower layers hold the general language knowledge and the top the task, so each layer below the
  top learns at 0.9 times the rate of the one above it (Sun et al. 2019, "How to Fine-Tune BERT for Text
  Classification"; the ELECTRA recipe). The classifier and pooler keep the peak rate, layer i of L at
  0.9^(L - i) of it and the embeddings at 0.9^(L + 1): for MiniLM's 6 layers, 0.48 of the peak. Only the factor
  0.9 was tried; it was fixed before the first run.

Everything else is the default recipe. Both sweeps go through bench_seeds, so runs are reused when rerun.
Validation comes first and decides (written down before the first run of each variant): the candidate must be
lower by more than 2 standard errors of the paired difference on both the best validation loss and the last one
(which no checkpoint was chosen on). The test rows are for reporting.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import re
import statistics

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)
import torch
from torch import nn


class MeanPoolClassifier(nn.Module):
    """Encoder -> mean of the token vectors (padding excluded) -> dropout -> Linear(hidden, 2)."""

    def __init__(self, encoder, dropout: float = 0.1):
        super().__init__()
        self.encoder, self.dropout = encoder, nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, 2)
        nn.init.normal_(self.classifier.weight, std=encoder.config.initializer_range)  # as BERT initialises it
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        from core.modeling import pool
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        return self.classifier(self.dropout(pool(hidden.float(), attention_mask, "mean")))


@contextlib.contextmanager
def mean_pooling():
    """While open, core.train builds MeanPoolClassifier for finetune runs (same data, loaders, loop, evaluation)."""
    import core.train as T
    from core.modeling import count_parameters
    from safetensors.torch import save_file
    from transformers import AutoModel

    default_setup = T._setup_finetune

    def setup(cfg, model_info, *rest):
        loaders = default_setup(cfg, model_info, *rest).loaders
        torch.manual_seed(cfg.seed)
        model = MeanPoolClassifier(AutoModel.from_pretrained(model_info.path, use_safetensors=True,
                                                             add_pooling_layer=False))

        def save(m, directory):
            save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f"{directory}/model.safetensors")

        return T.Setup(model, loaders, save, "model.safetensors", *count_parameters(model))

    T._setup_finetune = setup
    try:
        yield
    finally:
        T._setup_finetune = default_setup


@contextlib.contextmanager
def random_batches():
    """While open, training batches are random: each sorting window is a single batch, so nothing is sorted."""
    import core.batches as B

    default_window = B.WINDOW_BATCHES
    B.WINDOW_BATCHES = 1
    try:
        yield
    finally:
        B.WINDOW_BATCHES = default_window


LAYER_LR_DECAY = 0.9


def layer_depth(name: str, layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, layers + 1 for what sits on top (pooler, classifier)."""
    if ".embeddings." in f".{name}":
        return 0
    if match := re.search(r"\.layer\.(\d+)\.", name):
        return int(match.group(1)) + 1
    return layers + 1


@contextlib.contextmanager
def layer_lr_decay():
    """While open, core.train's AdamW gets one parameter group per depth, each at its share of the peak rate.

    The linear warmup and decay scale every group's rate alike (LambdaLR keeps each group's own base rate)."""
    import core.train as T

    default_setup, default_adamw = T._setup_finetune, torch.optim.AdamW
    names = {}

    def setup(cfg, model_info, *rest):
        built = default_setup(cfg, model_info, *rest)
        names.clear()
        names.update({id(p): n for n, p in built.model.named_parameters()})
        names["layers"] = built.model.config.num_hidden_layers
        return built

    def adamw(groups, lr, **kw):
        split = []
        for group in groups:
            by_depth = {}
            for param in group["params"]:
                by_depth.setdefault(layer_depth(names[id(param)], names["layers"]), []).append(param)
            for depth, params in sorted(by_depth.items()):
                scale = LAYER_LR_DECAY ** (names["layers"] + 1 - depth)
                split.append({**group, "params": params, "lr": lr * scale})
        return default_adamw(split, lr=lr, **kw)

    T._setup_finetune, torch.optim.AdamW = setup, adamw
    try:
        yield
    finally:
        T._setup_finetune, torch.optim.AdamW = default_setup, default_adamw


VARIANTS = {"mean-pooling": mean_pooling, "random-batches": random_batches, "layer-lr-decay": layer_lr_decay}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup)")
    p.add_argument("--model", default="bert-base-uncased", help="as `python -m core train --model`")
    p.add_argument("--seeds", default="42,1,2,3,4,5")
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--default-runs-dir", default="data/seed-sweep", help="bench_seeds' runs of the defaults")
    p.add_argument("--runs-dir", help="where the candidate's runs go (default data/seed-sweep-VARIANT)")
    args = p.parse_args(argv)
    runs_dir = args.runs_dir or f"data/seed-sweep-{args.variant}"
    import bench_seeds

    C.quiet()
    print(C.machine())

    common = ["--model", args.model, "--seeds", args.seeds, "--modes", "finetune", *(["--data", args.data] if args.data else [])]
    seeds = [int(s) for s in args.seeds.split(",")]

    def sweep(runs_dir):  # trains what runs_dir lacks, prints bench_seeds' tables, returns the run of each seed
        sweep_args = bench_seeds.build_parser().parse_args([*common, "--runs-dir", runs_dir])
        done, overrides = bench_seeds.sweep(sweep_args)
        bench_seeds.report(sweep_args, done, overrides)
        return {s: done[("finetune", s)] for s in seeds}

    def measures(run):
        return {"val best loss": bench_seeds.best_validation_loss(run),
                "val last loss": bench_seeds.validation_losses(run)[-1],
                "val accuracy": run.metrics["validation"]["accuracy"], "val f1": run.metrics["validation"]["f1"],
                "test accuracy": run.metrics["test"]["accuracy"], "test f1": run.metrics["test"]["f1"],
                "test auroc": run.metrics["test"]["auroc"], "test log loss": bench_seeds.test_log_loss(run)}

    default = {s: measures(r) for s, r in sweep(args.default_runs_dir).items()}
    print(f"{args.variant}: every hyperparameter is the default (the tables say so), only the variant differs")
    with VARIANTS[args.variant]():
        candidate = {s: measures(r) for s, r in sweep(runs_dir).items()}
    rows = []
    for name in default[seeds[0]]:
        diffs = [candidate[s][name] - default[s][name] for s in seeds]
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        in_se = f"{statistics.mean(diffs) / se:+.1f} se" if se > 0 else "-"
        rows.append([name, f"{statistics.mean(default[s][name] for s in seeds):.4f}",
                     f"{statistics.mean(candidate[s][name] for s in seeds):.4f}", f"{statistics.mean(diffs):+.4f}", in_se])
    print(f"defaults vs {args.variant}, paired over seeds {args.seeds}")
    print(C.table(["measure", "defaults", args.variant, "mean difference", "in se"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
