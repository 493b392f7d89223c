"""The statistics behind every release rule: an estimate with its confidence interval, the rule's
verdict read from the interval, and the smallest effect the set can resolve.

Two models on the same items are compared by scipy's paired bootstrap over items (percentile, seeded);
one model's rate against a bar uses the Wilson score interval (scipy's binomtest) when every item is a
plain pass/fail, else the bootstrap. Power is the normal approximation of a one-sided test at the
interval's bound: it needs a planning guess of the per-item spread, which for a paired pass/fail
difference is the share of items on which the two models disagree (the discordance), so it can be
computed before any model has run.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

KINDS = ("superiority", "non_inferiority", "equivalence", "at_least")


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int
    method: str


def _z(confidence: float) -> float:
    """The normal quantile of the interval's one-sided bound (a 95% interval: 1.96)."""
    return float(stats.norm.ppf(1 - (1 - confidence) / 2))


def level(values: list[float], weights: list[float] | None, confidence: float, resamples: int, seed: int,
          bounds: tuple[float, float] = (0.0, 1.0)) -> Interval | None:
    """One model's (weighted) mean over items with its interval; None with no items."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=float)
    estimate = float(np.sum(w * v) / np.sum(w))
    if np.isin(v, (0.0, 1.0)).all() and np.allclose(w, w[0]):
        ci = stats.binomtest(int(v.sum()), int(v.size)).proportion_ci(confidence, method="wilson")
        return Interval(estimate, float(ci.low), float(ci.high), int(v.size), "wilson")
    low, high = _bootstrap((v, w), lambda a, b, axis: np.sum(a * b, axis=axis) / np.sum(b, axis=axis),
                           confidence, resamples, seed, bounds)
    return Interval(estimate, low, high, int(v.size), "bootstrap")


def difference(candidate: list[float], reference: list[float], weights: list[float] | None, confidence: float,
               resamples: int, seed: int, bounds: tuple[float, float] = (-1.0, 1.0)) -> Interval | None:
    """The (weighted) mean of candidate - reference over the same items, with a paired bootstrap interval.
    For plain pass/fail items the interval is also widened to McNemar's: the Wilson interval of the share of
    discordant items the candidate won, scaled by the discordant share (exact-like where the bootstrap
    collapses: 3 of 3 won gives a bootstrap of [1, 1], this [-0.12, 1])."""
    c, r = np.asarray(candidate, dtype=float), np.asarray(reference, dtype=float)
    if c.shape != r.shape:
        raise ValueError(f"paired comparison needs the same items: {c.size} vs {r.size}")
    if c.size == 0:
        return None
    w = np.ones_like(c) if weights is None else np.asarray(weights, dtype=float)
    estimate = float(np.sum(w * (c - r)) / np.sum(w))
    low, high = _bootstrap((c - r, w), lambda a, b, axis: np.sum(a * b, axis=axis) / np.sum(b, axis=axis),
                           confidence, resamples, seed, bounds)
    if not (np.isin(c, (0.0, 1.0)).all() and np.isin(r, (0.0, 1.0)).all() and np.allclose(w, w[0])):
        return Interval(estimate, low, high, int(c.size), "paired bootstrap")
    won, lost = int(((c == 1) & (r == 0)).sum()), int(((c == 0) & (r == 1)).sum())
    if won + lost:
        ci = stats.binomtest(won, won + lost).proportion_ci(confidence, method="wilson")
        share = (won + lost) / c.size
        low, high = min(low, share * (2 * float(ci.low) - 1)), max(high, share * (2 * float(ci.high) - 1))
    return Interval(estimate, low, high, int(c.size), "paired bootstrap and McNemar-Wilson")


def _bootstrap(data: tuple, statistic, confidence: float, resamples: int, seed: int,
               bounds: tuple[float, float]) -> tuple[float, float]:
    """Percentile bootstrap over items (the arrays resampled together); one item says nothing, so its
    interval is the whole range."""
    if data[0].size < 2:
        return bounds
    with warnings.catch_warnings():  # identical values give a zero-width interval, which is the honest answer
        warnings.simplefilter("ignore")
        ci = stats.bootstrap(data, statistic, paired=True, vectorized=True, confidence_level=confidence,
                             n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed)
                             ).confidence_interval
    return float(ci.low), float(ci.high)


def passes(kind: str, interval: Interval, margin: float, strict: bool = False) -> bool:
    """Superiority: the whole interval at or above the margin (`strict`: above it, for "beats").
    Non-inferiority: the whole interval at or below the margin (how much worse it may be).
    Equivalence: the whole interval within +-margin. At least: the whole interval at or above the bar."""
    if kind == "superiority":
        return interval.low > margin if strict else interval.low >= margin
    if kind == "non_inferiority":
        return interval.high <= margin
    if kind == "equivalence":
        return -margin <= interval.low and interval.high <= margin
    if kind == "at_least":
        return interval.low >= margin
    raise ValueError(f"unknown rule kind {kind!r} (known: {', '.join(KINDS)})")


@dataclass(frozen=True)
class Power:
    mde: float | None  # smallest true effect the set detects at this power (rule units)
    items_needed: int | None  # items for the margin to be resolvable (None: already is, or not defined)
    underpowered: bool
    why: str


def power(kind: str, n: int, margin: float, confidence: float, power_: float, spread: float,
          scale: float = 1.0) -> Power:
    """Whether a set of `n` items can resolve the rule's margin. `spread` is the planning per-item
    standard deviation before `scale` (sqrt(discordance) for a paired pass/fail difference); for an
    at-least bar it is unused: the bar's own sqrt(p(1-p)) is the spread, and the set is too small when
    even a model passing every item could not clear the bar."""
    z, zb = _z(confidence), float(stats.norm.ppf(power_))
    if kind == "at_least":
        bar = margin / scale
        mde = (z + zb) * math.sqrt(bar * (1 - bar) / n) * scale if n else None
        perfect_low = n / (n + z * z) if n else 0.0  # Wilson's lower bound when every item passes
        if perfect_low >= bar:
            return Power(mde, None, False, "")
        needed = math.ceil(bar * z * z / (1 - bar)) if bar < 1 else None
        return Power(mde, needed, True, f"even {n}/{n} passing gives a lower bound of {perfect_low:.3f} < bar {bar}"
                     + (f"; needs {needed} items" if needed else "; a bar of 1 can never be shown"))
    if not n:
        return Power(None, None, True, "no items")
    if kind == "equivalence":  # both bounds inside +-margin when the true gap is 0: power split over two sides
        zb = float(stats.norm.ppf((1 + power_) / 2))
    mde = (z + zb) * spread / math.sqrt(n) * scale
    if margin == 0:
        if kind == "superiority":  # any true gain counts; the set resolves gains of mde or more
            return Power(mde, None, False, "")
        return Power(mde, None, True, f"a {kind.replace('_', '-')} margin of 0 passes only when no item differs "
                                      f"(minimum detectable effect {mde:.3g} at n={n})")
    needed = math.ceil(((z + zb) * spread * scale / margin) ** 2)
    if mde <= margin:
        return Power(mde, None, False, "")
    return Power(mde, needed, True, f"margin {margin:g} < minimum detectable effect {mde:.3g} at n={n}; "
                                    f"needs {needed} items")


def review_size(margin: float, confidence: float, power_: float, spread: float = 0.5) -> int:
    """Pairs a blind review needs to detect a win rate `margin` above its bar (spread 0.5: the worst case)."""
    z, zb = _z(confidence), float(stats.norm.ppf(power_))
    return math.ceil(((z + zb) * spread / margin) ** 2)


def agreement(first: list[str], second: list[str], confidence: float, resamples: int, seed: int) -> dict:
    """Cohen's kappa (scikit-learn) and raw agreement of two raters on the same items, each with its
    interval: kappa by a bootstrap over items (a resample where kappa is undefined, one label only, counts
    as 0: no evidence of agreement beyond chance), raw agreement by Wilson's."""
    from sklearn.metrics import cohen_kappa_score

    n = len(first)
    if n != len(second):
        raise ValueError(f"agreement needs the same items: {n} vs {len(second)}")
    if n == 0:
        return {"n": 0, "kappa": None, "kappa_interval": None, "agreement": None, "agreement_interval": None}
    labels = sorted(set(first) | set(second))
    a = np.array([labels.index(x) for x in first])
    b = np.array([labels.index(x) for x in second])

    def kappa(x, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = cohen_kappa_score(x, y, labels=list(range(len(labels))))
        return 0.0 if np.isnan(value) else float(value)

    estimate = kappa(a, b)
    if n < 2:
        low, high = -1.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((a, b), kappa, paired=True, vectorized=False, confidence_level=confidence,
                                 n_resamples=resamples, method="percentile", rng=np.random.default_rng(seed)
                                 ).confidence_interval
        low, high = float(ci.low), float(ci.high)
    same = int((a == b).sum())
    raw = stats.binomtest(same, n).proportion_ci(confidence, method="wilson")
    return {"n": n, "kappa": round(estimate, 4), "kappa_interval": [round(low, 4), round(high, 4)],
            "agreement": round(same / n, 4), "agreement_interval": [round(float(raw.low), 4), round(float(raw.high), 4)]}
