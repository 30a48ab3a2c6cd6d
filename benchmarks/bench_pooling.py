"""Fine-tuning through a mean-pooled head instead of the [CLS] pooler, over the same splits as the defaults.

    python benchmarks/bench_pooling.py --data ../shared/data/SMSSpamCollection --seeds 42,1,2,3,4,5

all-MiniLM-L6-v2 was trained as a sentence encoder through mean pooling; AutoModelForSequenceClassification
classifies from [CLS] through a pooler that objective never trained. The candidate replaces that with the
mean of the token vectors, dropout 0.1 and Linear(hidden, 2), the size of BERT's classifier; everything
else is the default recipe. Both sweeps go through bench_seeds, so runs are reused when rerun. The
mean-pooled runs keep their weights only for this comparison: `core` cannot load them for prediction.

The comparison is paired by seed. Validation comes first and decides (written down before the first run):
the candidate must be lower by more than 2 standard errors on both the best validation loss and the last
one (which no checkpoint was chosen on). The test rows are for reporting.
"""
from __future__ import annotations

import argparse
import contextlib
import math
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

        return T.Setup(model, loaders, save, *count_parameters(model))

    T._setup_finetune = setup
    try:
        yield
    finally:
        T._setup_finetune = default_setup


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup)")
    p.add_argument("--model", default="bert-base-uncased", help="as `python -m core train --model`")
    p.add_argument("--seeds", default="42,1,2,3,4,5")
    p.add_argument("--default-runs-dir", default="data/seed-sweep", help="bench_seeds' runs of the defaults")
    p.add_argument("--runs-dir", default="data/seed-sweep-meanpool", help="where the mean-pooled runs go")
    args = p.parse_args(argv)
    import bench_seeds
    from core.runs import read_history

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
        from sklearn.metrics import log_loss
        losses = [e["loss"] for e in read_history(run.path) if e.get("event") == "eval"]
        predictions = run.metrics["predictions"]
        return {"val best loss": min(losses), "val last loss": losses[-1],
                "val accuracy": run.metrics["validation"]["accuracy"], "val f1": run.metrics["validation"]["f1"],
                "test accuracy": run.metrics["test"]["accuracy"], "test f1": run.metrics["test"]["f1"],
                "test auroc": run.metrics["test"]["auroc"],
                "test log loss": log_loss([x["label"] for x in predictions],
                                          [x["spam_probability"] for x in predictions], labels=[0, 1])}

    cls = {s: measures(r) for s, r in sweep(args.default_runs_dir).items()}
    print("mean-pooled head: every hyperparameter is the default (the tables say so), only the head differs")
    with mean_pooling():
        mean = {s: measures(r) for s, r in sweep(args.runs_dir).items()}
    rows = []
    for name in cls[seeds[0]]:
        diffs = [mean[s][name] - cls[s][name] for s in seeds]
        se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
        in_se = f"{statistics.mean(diffs) / se:+.1f} se" if se > 0 else "-"
        rows.append([name, f"{statistics.mean(cls[s][name] for s in seeds):.4f}",
                     f"{statistics.mean(mean[s][name] for s in seeds):.4f}", f"{statistics.mean(diffs):+.4f}", in_se])
    print(f"[CLS] pooler (default) vs mean pooling, paired over seeds {args.seeds}")
    print(C.table(["measure", "[CLS] pooler", "mean pooling", "mean difference", "in se"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
