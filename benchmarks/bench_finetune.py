"""Fine-tuning throughput: `core`'s loop vs `transformers.Trainer` with default arguments.

    python benchmarks/bench_finetune.py --data ../shared/data/SMSSpamCollection --limit 1500 --epochs 1 --repeats 3

Same model, same train/test split (core.data.split_messages), batch 32, max length 128, same epochs. Trainer
gets the standard recipe: tokenise once with truncation, `processing_class=tokenizer` (so its default collator
pads each batch dynamically), every TrainingArguments field at its default except output_dir, batch size,
epochs, seed and save_strategy="no" (no checkpoint writes; that only helps Trainer). Timed: Trainer's
`train_runtime`; core's `train_seconds` from metrics.json (the loop, including its periodic validation and
keeping the best weights, which Trainer's defaults do not do). Runs alternate Trainer / core fp32 / core bf16
within each repeat; the table gives medians and the ratio to Trainer.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)


def trainer_run(data_path: Path, model: str, epochs: int, batch_size: int, max_length: int, seed: int,
                out_dir: Path, bf16: bool = False) -> dict:
    """Fine-tune with transformers.Trainer on core's train split; test F1 on core's test split."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from core.config import TrainConfig
    from core.data import load_messages, split_messages
    from core.metrics import classification_metrics

    cfg = TrainConfig(mode="finetune")  # the split fractions core uses
    splits = split_messages(load_messages(data_path).frame, cfg.val_fraction, cfg.test_fraction, seed)
    tokenizer = AutoTokenizer.from_pretrained(model)

    def dataset(part):
        enc = tokenizer(part["text"].tolist(), truncation=True, max_length=max_length)
        return Dataset.from_dict({**enc, "labels": part["label"].tolist()})

    train_ds, test_ds = dataset(splits["train"]), dataset(splits["test"])
    torch.manual_seed(seed)
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2, use_safetensors=True)
    args = TrainingArguments(output_dir=str(out_dir), per_device_train_batch_size=batch_size,
                             per_device_eval_batch_size=batch_size, num_train_epochs=epochs, seed=seed,
                             save_strategy="no", disable_tqdm=True, bf16=bf16,
                             # transformers 5 refuses bf16 without a GPU unless the CPU is asked for by name
                             use_cpu=bf16 and not torch.cuda.is_available())
    trainer = Trainer(model=net, args=args, train_dataset=train_ds, processing_class=tokenizer)
    result = trainer.train()
    logits = trainer.predict(test_ds).predictions
    p = torch.softmax(torch.as_tensor(logits).float(), -1)[:, 1].numpy()
    f1 = classification_metrics(np.asarray(splits["test"]["label"].tolist()), p)["f1"]
    seconds = result.metrics["train_runtime"]
    return {"seconds": seconds, "messages_per_second": len(train_ds) * epochs / seconds, "f1": f1,
            "n_train": len(train_ds)}


def core_run(data_path: Path, model: str, epochs: int, batch_size: int, max_length: int, seed: int,
             runs_dir: Path, precision: str, **settings) -> dict:
    from core.config import TrainConfig
    from core.train import train

    # one pass an epoch, as Trainer makes: on a --limit subset min_epoch_steps would train more steps than it does
    cfg = TrainConfig(mode="finetune", data=str(data_path), model=model, epochs=epochs, batch_size=batch_size,
                      max_length=max_length, seed=seed, precision=precision, runs_dir=str(runs_dir),
                      **{"min_epoch_steps": 0, **settings})
    run = train(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    n_train = json.loads((run / "config.json").read_text())["data_info"]["splits"]["train"]["rows"]
    seconds = metrics["train_seconds"]
    return {"seconds": seconds, "messages_per_second": n_train * epochs / seconds, "f1": metrics["test"]["f1"],
            "n_train": n_train, "run": str(run)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup: $SPAM_DATA, data/SMSSpamCollection)")
    p.add_argument("--model", help="model directory (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--limit", type=int, default=1500, help="random subset of messages, to keep runs short (0: all)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds; medians are reported")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--variants", default="trainer,core-fp32,core-bf16",
                   help="comma list of trainer, trainer-bf16, core-fp32, core-bf16")
    p.add_argument("--json", help="also write the raw measurements here")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    C.quiet()
    model = args.model or C.default_model()
    variants = args.variants.split(",")
    print(C.machine())
    raw = {v: [] for v in variants}
    loads = []
    with C.tmpdir("finetune") as tmp:
        tmp = Path(tmp)
        data_path, n = C.subset_file(args.data, args.limit or None, tmp, seed=args.seed)
        print(f"{n} messages ({'random subset, --limit ' + str(args.limit) if args.limit else 'all'}), "
              f"epochs {args.epochs}, batch {args.batch_size}, max length {args.max_length}, model {Path(model).name}")
        common = dict(data_path=data_path, model=model, epochs=args.epochs, batch_size=args.batch_size,
                      max_length=args.max_length, seed=args.seed)
        for r in range(args.repeats):
            order = variants if r % 2 == 0 else variants[::-1]  # ABBA: drift in load hits both sides alike
            for v in order:
                loads.append(C.load_average())
                t0 = time.time()
                if v.startswith("trainer"):
                    res = trainer_run(**common, out_dir=tmp / f"trainer-{r}", bf16=v.endswith("bf16"))
                else:
                    res = core_run(**common, runs_dir=tmp / "runs", precision=v.split("-")[1])
                res["wall"] = time.time() - t0
                raw[v].append(res)
                print(f"  round {r + 1} {v:12s} {res['messages_per_second']:7.1f} msg/s  F1 {res['f1']:.3f}  "
                      f"(load {loads[-1]:.2f})", flush=True)
    base = C.median(r["messages_per_second"] for r in raw[variants[0]])
    rows = []
    for v in variants:
        mps = C.median(r["messages_per_second"] for r in raw[v])
        rows.append([v, len(raw[v]), raw[v][0]["n_train"], C.median(r["seconds"] for r in raw[v]), mps,
                     f"{mps / base:.2f}x", C.median(r["f1"] for r in raw[v])])
    print()
    print(C.table(["variant", "runs", "train msgs", "median train s", "median msg/s", f"vs {variants[0]}",
                   "median test F1"], rows))
    print(f"load average during the runs: min {min(loads):.2f}, median {C.median(loads):.2f}, max {max(loads):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
