"""Why this verdict: word occlusion. Each word is removed in turn and the change in spam probability is its
weight, which works the same for all three models (no gradients needed, so the TF-IDF baseline is covered).

>>> explain_words(predictor, "WIN a free prize now")  # doctest: +SKIP
[("WIN", 0.31), ("a", 0.0), ("free", 0.12), ("prize", 0.2), ("now", 0.03)]
"""
from __future__ import annotations

MAX_WORDS = 60  # one forward pass per word; an SMS has ~15, and longer texts get their first 60 explained


def explain_words(predictor, text: str, max_words: int = MAX_WORDS) -> list[tuple[str, float]]:
    """(word, p(text) - p(text without the word)) for each word: positive pushes toward spam."""
    words = text.split()[:max_words]
    if not words:
        return []
    variants = [" ".join(words)] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]
    p = predictor.predict(variants)
    return [(word, float(p[0] - p[i + 1])) for i, word in enumerate(words)]
