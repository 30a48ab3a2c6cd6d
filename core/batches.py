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
    permutation each epoch, deterministic for the seed. `passes`: an epoch goes over the messages that many times,
    each pass in a fresh order (a message is in one batch a pass). Evaluation: all indices sorted by length.
    """

    def __init__(self, lengths, batch_size: int, shuffle: bool, seed: int = 0, passes: int = 1):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.passes = passes if shuffle else 1
        self.epoch = 0

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from (order[i:i + bs].tolist() for i in range(0, n, bs))
            return
        rng = np.random.default_rng(self.seed + self.epoch)  # one generator for the epoch's passes: one pass, as before
        self.epoch += 1
        for _ in range(self.passes):
            order = rng.permutation(n)
            batches = []
            for start in range(0, n, bs * WINDOW_BATCHES):
                window = order[start:start + bs * WINDOW_BATCHES]
                window = window[np.argsort(self.lengths[window], kind="stable")]
                batches += [window[i:i + bs].tolist() for i in range(0, len(window), bs)]
            for i in rng.permutation(len(batches)):
                yield batches[i]

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size) * self.passes


def token_loader(encodings: list[dict], labels, tokenizer, batch_size: int, shuffle: bool, seed: int = 0,
                 passes: int = 1) -> DataLoader:
    """Tokenised messages -> padded batches {input_ids, attention_mask, ..., labels}; `passes` over them an epoch."""
    items = [{**enc, "labels": int(y)} for enc, y in zip(encodings, labels)]
    sampler = LengthBucketSampler([len(e["input_ids"]) for e in encodings], batch_size, shuffle, seed, passes)
    # a generator of its own: each pass over a DataLoader seeds its iterator with a draw from the loader's generator,
    # else from the global random state, and that draw shifted every later dropout mask. So how often a run validated
    # changed the model it trained (the order comes from the sampler, so nothing else uses the draw)
    return DataLoader(items, batch_sampler=sampler, collate_fn=DataCollatorWithPadding(tokenizer),
                      generator=torch.Generator())


class _Rows(torch.utils.data.Dataset):
    """Feature rows and labels. A batch is fetched with one tensor index (`__getitems__`), not 32 Python items
    stacked one by one: the head's steps are so small that per-item collation was a large share of them."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, idx: list[int]) -> dict:
        return {"features": self.features[idx], "labels": self.labels[idx]}  # (B, H), (B,)


def feature_loader(features: torch.Tensor, labels, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Cached feature vectors -> batches {features, labels}."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(_Rows(features, labels), batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=_as_is)


def _as_is(batch: dict) -> dict:
    return batch


def eval_order(loader: DataLoader) -> np.ndarray:
    """The order in which an evaluation loader visits examples (to put predictions back in place)."""
    if isinstance(loader.batch_sampler, LengthBucketSampler):
        return np.concatenate([np.asarray(b, dtype=int) for b in loader.batch_sampler])
    return np.arange(len(loader.dataset))


class Shard(Sampler[list[int]]):
    """One process's share of a batch sampler in data-parallel training: every n-th batch, wrapping around at
    the end so that all processes take the same number of steps (their all-reduces must pair up)."""

    def __init__(self, batches: Sampler, num_shards: int, index: int):
        self.batches, self.num_shards, self.index = batches, num_shards, index

    def __iter__(self):
        every = list(self.batches)  # the same order in every process: same seed
        per_shard = -(-len(every) // self.num_shards)
        # cycled, not doubled: with fewer than half as many batches as processes, a doubled list left some with none
        padded = [every[i % len(every)] for i in range(per_shard * self.num_shards)]
        yield from padded[self.index::self.num_shards]

    def __len__(self) -> int:
        return -(-len(self.batches) // self.num_shards)


def shard_loader(loader: DataLoader, num_shards: int, index: int) -> DataLoader:
    if num_shards == 1:
        return loader
    return DataLoader(loader.dataset, batch_sampler=Shard(loader.batch_sampler, num_shards, index),
                      collate_fn=loader.collate_fn, generator=torch.Generator())  # as token_loader's
