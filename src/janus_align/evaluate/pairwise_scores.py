"""Scores from pairwise games: win rates, AlpacaEval's length-controlled win rate, Bradley-Terry.

Pure arithmetic over `pairwise_judge.Game` rows (numpy and scipy). Every interval is a
percentile bootstrap over items (an item's games are resampled together, as
`scoring.cluster_bootstrap_ci` does for rubric scores), seeded.

- `win_rate`: mean preference of the candidate, a tie 0.5 (AlpacaEval's raw win rate).
- `length_controlled`: AlpacaEval 2.0's GLM in its minimal form (`length_controlled_minimal`,
  the form for a custom instruction set: no per-instruction difficulty terms): a logistic
  regression of the preference on a model term and `tanh(length difference / its std)`, and the
  win rate predicted with the length term at zero.
- `bradley_terry`: Arena-Hard-Auto's model, the log-odds of beating the baseline from every
  battle (`[[A>>B]]` weighs 3, a tie is half a win and half a loss), with style control
  (`style=True`): the normalized differences in length, headers, list items and bold spans
  as covariates, so the model term is what remains once style is accounted for.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from janus_align.evaluate.pairwise_judge import Game

# The candidate's preference per outcome label (the candidate as A).
PREFERENCE = {"A>>B": 1.0, "A>B": 1.0, "A=B": 0.5, "B>A": 0.0, "B>>A": 0.0, "BOTH GOOD": 0.5, "BOTH BAD": 0.5}
# Arena-Hard-Auto counts a decisive verdict as this many battles.
STRONG_WEIGHT = 3.0
# A weak ridge (AlpacaEval fits with C=100) keeps a perfect record's coefficients finite.
RIDGE = 0.01
STYLE_FEATURES = ("length", "headers", "lists", "bold")
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Coefficients of a weighted logistic regression without intercept; `y` may be a soft label in [0, 1].

    Minimizes the weighted log-loss plus `ridge/2 * |w|^2` (L-BFGS, exact gradient).
    """
    from scipy.optimize import minimize

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        # log(1 + e^z) - y z, computed stably.
        value = float(np.sum(weights * (np.logaddexp(0.0, z) - y * z))) + 0.5 * ridge * float(w @ w)
        gradient = x.T @ (weights * (1.0 / (1.0 + np.exp(-z)) - y)) + ridge * w
        return value, gradient

    return np.asarray(minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x)


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def scored(games: Sequence[Game]) -> list[Game]:
    return [game for game in games if game.outcome is not None]


def _by_item(games: Sequence[Game]) -> list[list[Game]]:
    groups: dict[str, list[Game]] = defaultdict(list)
    for game in games:
        groups[game.id].append(game)
    return list(groups.values())


def bootstrap(
    games: Sequence[Game],
    statistic: Callable[[Sequence[Game]], float | None],
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of `statistic`, resampling items (each with all its games)."""
    items = _by_item(scored(games))
    if not items:
        return None, None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        drawn = rng.integers(0, len(items), size=len(items))
        value = statistic([game for index in drawn for game in items[index]])
        if value is not None:
            values.append(value)
    if not values:
        return None, None
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def win_rate(games: Sequence[Game]) -> float | None:
    """Mean preference of the candidate over the scored games, in percent (a tie counts half)."""
    kept = scored(games)
    return 100.0 * float(np.mean([PREFERENCE[game.outcome or ""] for game in kept])) if kept else None


def _length_design(games: Sequence[Game]) -> tuple[np.ndarray, np.ndarray]:
    delta = np.asarray([game.candidate_chars - game.opponent_chars for game in games], dtype=float)
    spread = delta.std(ddof=1) if len(delta) > 1 else 0.0
    length = np.tanh(delta / spread) if spread > 0 else np.zeros_like(delta)
    preference = np.asarray([PREFERENCE[game.outcome or ""] for game in games])
    return np.column_stack([np.ones_like(delta), length]), preference


def length_fit(games: Sequence[Game]) -> tuple[float, float] | None:
    """(model term, length term) of AlpacaEval's minimal GLM over the scored games."""
    kept = scored(games)
    if not kept:
        return None
    x, preference = _length_design(kept)
    model_term, length_term = fit_logistic(x, preference, np.ones(len(kept)))
    return float(model_term), float(length_term)


def length_controlled(games: Sequence[Game]) -> float | None:
    """The win rate (percent) the GLM predicts with the length difference set to zero."""
    fit = length_fit(games)
    return 100.0 * _sigmoid(fit[0]) if fit else None


def style_features(text: str) -> dict[str, float]:
    """What style control accounts for in one answer: characters, markdown headers, list items, bold spans."""
    return {
        "length": float(len(text)),
        "headers": float(len(_HEADER.findall(text))),
        "lists": float(len(_LIST.findall(text))),
        "bold": float(len(_BOLD.findall(text))),
    }


def _battles(games: Sequence[Game], styles: Mapping[str, tuple[Mapping[str, float], Mapping[str, float]]] | None):
    """Rows (style differences, candidate won, weight): a strong verdict weighs 3, a tie is a win and a loss."""
    rows = []
    for game in scored(games):
        label = game.outcome or ""
        weight = STRONG_WEIGHT if label in ("A>>B", "B>>A") else 1.0
        diff: list[float] = []
        if styles is not None:
            mine, theirs = styles[game.id]
            # Arena-Hard's normalized difference: (a - b) / (a + b), 0 when both are 0.
            diff = [
                (mine[f] - theirs[f]) / (mine[f] + theirs[f]) if mine[f] + theirs[f] else 0.0 for f in STYLE_FEATURES
            ]
        preference = PREFERENCE[label]
        if preference == 0.5:
            rows += [(diff, 1.0, 1.0), (diff, 0.0, 1.0)]
        else:
            rows.append((diff, preference, weight))
    return rows


def bradley_terry(
    games: Sequence[Game], styles: Mapping[str, tuple[Mapping[str, float], Mapping[str, float]]] | None = None
) -> dict[str, float] | None:
    """The candidate's Bradley-Terry strength against the baseline (log-odds), its Arena-Hard score
    (the predicted win rate in percent) and Elo (baseline 1000); with `styles` ({item: (candidate's,
    baseline's) `style_features`}), style-controlled, the style coefficients included."""
    rows = _battles(games, styles)
    if not rows:
        return None
    style = np.asarray([diff for diff, _, _ in rows], dtype=float).reshape(len(rows), -1)
    if style.shape[1]:
        spread = style.std(axis=0)
        style = (style - style.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    x = np.column_stack([np.ones(len(rows)), style])
    y = np.asarray([won for _, won, _ in rows])
    w = np.asarray([weight for _, _, weight in rows])
    coef = fit_logistic(x, y, w)
    strength = float(coef[0])
    out = {"strength": strength, "score": 100.0 * _sigmoid(strength), "elo": 1000.0 + 400.0 / math.log(10) * strength}
    out.update({f"style_{name}": float(c) for name, c in zip(STYLE_FEATURES, coef[1:])})
    return out


def interval(value: tuple[float | None, float | None]) -> dict[str, float | None]:
    return {"ci_low": value[0], "ci_high": value[1]}


def outcome_shares(games: Sequence[Game], labels: Sequence[str]) -> dict[str, Any]:
    """Share (percent) of the scored games per outcome label."""
    kept = scored(games)
    return {
        label: (100.0 * sum(1 for g in kept if g.outcome == label) / len(kept) if kept else None) for label in labels
    }
