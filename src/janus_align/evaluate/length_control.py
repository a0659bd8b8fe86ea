"""Length control for the Multifaceted Bench: is a model's score just its verbosity?

LLM judges favour longer answers, and the paper's reviewers asked whether Janus is simply more
verbose. The report fits one OLS over every candidate's scored items,

    item score = a_model + b * z,   z = standardized log(1 + response length in characters)

(z standardized over all candidates' answers together; one intercept per model, one common
slope), and reports `a_model`, the score predicted at the pooled mean log length (z = 0), as the
length-controlled score beside the raw mean. `b` is the points one standard deviation of log
length adds; with one candidate the LC score equals its raw mean (its mean z is 0). When every
answer has the same length there is no slope to fit and the LC score is the raw mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def length_controlled(per_model: Mapping[str, Sequence[tuple[float, int]]]) -> dict[str, Any]:
    """{"scores": {model: LC score or None}, "slope": b or None, "n": items fitted} from {model: [(score, length)]}."""
    rows = [(name, score, length) for name, pairs in per_model.items() for score, length in pairs]
    names = [name for name in per_model if per_model[name]]
    out: dict[str, Any] = {"scores": {name: None for name in per_model}, "slope": None, "n": len(rows)}
    if not rows:
        return out
    log_length = np.log1p(np.asarray([length for _, _, length in rows], dtype=float))
    scores = np.asarray([score for _, score, _ in rows], dtype=float)
    std = float(log_length.std())
    if std == 0.0 or not math.isfinite(std):
        for name in names:
            out["scores"][name] = float(np.mean([s for s, _ in per_model[name]]))
        return out
    z = (log_length - log_length.mean()) / std
    design = np.zeros((len(rows), len(names) + 1))
    column = {name: i for i, name in enumerate(names)}
    for row, (name, _, _) in enumerate(rows):
        design[row, column[name]] = 1.0
    design[:, -1] = z
    coef, *_ = np.linalg.lstsq(design, scores, rcond=None)
    out["slope"] = float(coef[-1])
    for name in names:
        out["scores"][name] = float(coef[column[name]])
    return out


def length_summary(lengths: Sequence[int]) -> dict[str, float | int | None]:
    """n, min, quartiles, mean and max of one model's response lengths (characters)."""
    if not lengths:
        return {"n": 0, "min": None, "p25": None, "median": None, "p75": None, "mean": None, "max": None}
    values = np.asarray(lengths, dtype=float)
    p25, median, p75 = np.quantile(values, [0.25, 0.5, 0.75])
    return {
        "n": len(lengths),
        "min": int(values.min()),
        "p25": float(p25),
        "median": float(median),
        "p75": float(p75),
        "mean": float(values.mean()),
        "max": int(values.max()),
    }
