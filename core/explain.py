"""Why this verdict: word occlusion. Each word is removed in turn and the change in the model's log-odds of spam
is its weight, which works the same for all three models (no gradients needed, so the TF-IDF baseline is covered).
Log-odds, not probability: a near-certain model's probability barely moves (0.9999 to 0.9990 is a drop of 0.001),
while its odds of spam fall tenfold, which is what the word did.

>>> explain_words(predictor, "WIN a free prize now").weights  # doctest: +SKIP
[("WIN", 2.3), ("a", 0.0), ("free", 0.9), ("prize", 1.6), ("now", 0.1)]
"""
from __future__ import annotations

from typing import NamedTuple

from scipy.special import expit

MAX_WORDS = 60  # one forward pass per word; an SMS has ~15, and longer texts get their first 60 explained


class Explanation(NamedTuple):
    log_odds: float | None  # of spam, for the whole text (None: no words)
    weights: list[tuple[str, float]]  # (word, log-odds(text) - log-odds(text without the word))

    def probability_without(self, weight: float) -> float:
        """The spam probability of the text without a word of this weight: at near-certainty a large factor can
        leave it where it was, and that is what a reader of "×59" needs to see."""
        return float(expit(self.log_odds - weight))


def explain_words(predictor, text: str, max_words: int = MAX_WORDS) -> Explanation:
    """Each word's weight, log-odds(text) - log-odds(text without the word): positive pushes toward spam, and
    exp(weight) is the factor by which the word multiplies the odds of spam."""
    words = text.split()
    shown = words[:max_words]
    if not shown:
        return Explanation(None, [])
    # each word left out of the whole text, not of its first max_words: the weights explain the verdict shown
    variants = [" ".join(words)] + [" ".join(words[:i] + words[i + 1:]) for i in range(len(shown))]
    odds = predictor.predict(variants, log_odds=True)
    return Explanation(float(odds[0]), [(word, float(odds[0] - odds[i + 1])) for i, word in enumerate(shown)])
