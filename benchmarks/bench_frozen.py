"""Frozen mode: feature extraction vs `transformers.pipeline("feature-extraction")`, and a second run on cached
features.

    python benchmarks/bench_frozen.py --data ../shared/data/SMSSpamCollection --limit 1000 --repeats 3

Part 1 (throughput, on a random subset of --limit messages): the pipeline, called on the texts with
truncation at max length 128 and batch_size 32 (its default is 1, which is slower still, so batch 32 is the
stronger baseline), then mean-pooled over each message's real tokens; against core.features.encode
(length-sorted batches of 64, bf16 autocast where the run's precision says so). Alternating, medians, ratio.
A cosine check confirms both compute the same features.

Part 2 (cache): two frozen runs on --run-limit messages (default all): the first computes and caches the
features, the second uses other head hyperparameters and must find them cached. Reported: the second run's
total seconds (data, cached features, head training, evaluation, saving), target <= 10 s.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _common as C  # noqa: E402  (sets sys.path and HF_HUB_OFFLINE)


def pipeline_features(pipe, tokenizer, texts, max_length: int, batch_size: int):
    import numpy as np
    import torch
    counts = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    out = pipe(texts, batch_size=batch_size, tokenize_kwargs={"truncation": True, "max_length": max_length})
    # each output is [1, T, H] as nested lists, T padded to its batch; mean over the message's own tokens
    return torch.from_numpy(np.stack([np.asarray(o[0][:n], dtype=np.float32).mean(0) for o, n in zip(out, counts)]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="dataset file (default: core's lookup)")
    p.add_argument("--model", help="encoder directory (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--limit", type=int, default=1000, help="messages for the throughput part (0: all)")
    p.add_argument("--run-limit", type=int, default=0, help="messages for the two frozen runs (0: all)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pipeline-batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    C.quiet()
    import torch
    from transformers import AutoModel, AutoTokenizer, pipeline

    from core.config import TrainConfig
    from core.features import encode
    from core.train import train

    model = args.model or C.default_model()
    print(C.machine())
    with C.tmpdir("frozen") as tmp:
        tmp = Path(tmp)
        # ------------------------------------------------------------ part 1: extraction throughput
        path, n = C.subset_file(args.data, args.limit or None, tmp, seed=args.seed)
        texts = C.texts_of(path)
        print(f"part 1: {n} messages ({'random subset, --limit ' + str(args.limit) if args.limit else 'all'}), "
              f"max length {args.max_length}, model {Path(model).name}")
        tokenizer = AutoTokenizer.from_pretrained(model)
        encoder = AutoModel.from_pretrained(model, use_safetensors=True).eval()
        pipe = pipeline("feature-extraction", model=encoder, tokenizer=tokenizer, device="cpu")
        bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731  what precision=bf16 uses
        variants = {
            f"pipeline (batch {args.pipeline_batch})":
                lambda: pipeline_features(pipe, tokenizer, texts, args.max_length, args.pipeline_batch),
            "core encode fp32": lambda: encode(encoder, tokenizer, texts, args.max_length, "mean", "cpu"),
            "core encode bf16": lambda: encode(encoder, tokenizer, texts, args.max_length, "mean", "cpu", bf16),
        }
        times, feats, loads = C.abba(variants, args.repeats)
        ref = feats[next(iter(variants))]
        base = n / C.median(times[next(iter(variants))])
        rows = []
        for v in variants:
            mps = n / C.median(times[v])
            cos = torch.nn.functional.cosine_similarity(feats[v], ref, dim=1).min().item()
            rows.append([v, len(times[v]), C.median(times[v]), mps, f"{mps / base:.2f}x", f"{cos:.4f}"])
        print(C.table(["variant", "runs", "median s", "median msg/s", "vs pipeline", "min cosine vs pipeline"], rows))
        print(f"load average: min {min(loads):.2f}, median {C.median(loads):.2f}, max {max(loads):.2f}")

        # ------------------------------------------------------------ part 2: a second run on cached features
        path, n = C.subset_file(args.data, args.run_limit or None, tmp, seed=args.seed)
        print(f"\npart 2: two frozen runs on {n} messages "
              f"({'random subset, --run-limit ' + str(args.run_limit) if args.run_limit else 'all'})")
        common = dict(mode="frozen", data=str(path), model=model, max_length=args.max_length,
                      runs_dir=str(tmp / "runs"), cache_dir=str(tmp / "cache"))
        rows = []
        for label, head in (("first (computes features)", {}),
                            ("second (other head)", {"head_hidden": 128, "dropout": 0.1, "lr": 3e-3})):
            load = C.load_average()
            t0 = time.perf_counter()
            run = train(TrainConfig(**common, **head))
            wall = time.perf_counter() - t0
            metrics = json.loads((run / "metrics.json").read_text())
            cached = any(e.get("event") == "features_ready" and e.get("cached")
                         for e in map(json.loads, (run / "history.jsonl").read_text().splitlines()))
            rows.append([label, cached, metrics["total_seconds"], wall, metrics["train_seconds"],
                         metrics["test"]["f1"], f"{load:.2f}"])
        print(C.table(["run", "features cached", "total s (metrics.json)", "wall s (train() call)",
                       "head training s", "test F1", "load"], rows))
        second = rows[1][3]
        print(f"second run: {second:.1f} s wall, target <= 10 s: {'met' if second <= 10 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
