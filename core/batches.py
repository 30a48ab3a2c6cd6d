"""Length-bucketed batches with dynamic padding: SMS lengths vary 5-200 tokens, so padding every batch to
max_length would waste most of the compute."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding

WINDOW_BATCHES = 50  # sort within windows of 50 batches: batches stay similar in length yet vary epoch to epoch


class LengthBucketSampler(Sampler[list[int]]):
    """Yields batches of indices of similar length.

    Training: shuffle, cut into windows, sort each window by length, shuffle the batch order; a new
    permutation each epoch, deterministic for the seed. Evaluation: all indices sorted by length.
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool, seed: int = 0):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from (order[i:i + bs].tolist() for i in range(0, n, bs))
            return
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(n)
        batches = []
        for start in range(0, n, bs * WINDOW_BATCHES):
            window = order[start:start + bs * WINDOW_BATCHES]
            window = window[np.argsort(self.lengths[window], kind="stable")]
            batches += [window[i:i + bs].tolist() for i in range(0, len(window), bs)]
        for i in rng.permutation(len(batches)):
            yield batches[i]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def token_loader(encodings: list[dict], labels, tokenizer, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Tokenised messages -> padded batches {input_ids, attention_mask, ..., labels}."""
    items = [{**enc, "labels": int(y)} for enc, y in zip(encodings, labels)]
    sampler = LengthBucketSampler([len(e["input_ids"]) for e in encodings], batch_size, shuffle, seed)
    return DataLoader(items, batch_sampler=sampler, collate_fn=DataCollatorWithPadding(tokenizer))


def feature_loader(features: torch.Tensor, labels, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Cached feature vectors -> batches {features, labels}."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    items = list(zip(features, labels))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=lambda b: {"features": torch.stack([x for x, _ in b]),
                                            "labels": torch.stack([y for _, y in b])})


def eval_order(loader: DataLoader) -> np.ndarray:
    """The order in which an evaluation loader visits examples (to put predictions back in place)."""
    if isinstance(loader.batch_sampler, LengthBucketSampler):
        return np.concatenate([np.asarray(b, dtype=int) for b in loader.batch_sampler])
    return np.arange(len(loader.dataset))
