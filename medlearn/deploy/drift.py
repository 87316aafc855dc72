"""Dataset shift on incoming scans: two-sample tests on image statistics and on the model's outputs.

Chapter 6.3. A deployed model meets scans from a new scanner, a new protocol or a new site, and its
accuracy drops silently. Without labels one can still compare what arrives with what the model was
validated on: the images' intensity statistics and the model's own outputs (e.g. predicted volume,
confidence). `detection_rate` measures how often a test notices a shift with n incoming scans.
"""

from __future__ import annotations

import numpy as np

STAT_NAMES = ("p05", "p50", "p95", "cv")


def image_statistics(array, threshold: float | None = None) -> dict:
    """Return intensity statistics of a head scan's foreground: 5th, 50th, 95th percentile (relative
    to the 99th) and coefficient of variation. Scale-free, so a global gain change alone is ignored."""
    a = np.asarray(array, float).ravel()
    t = np.percentile(a, 60) if threshold is None else threshold
    fg = a[a > t]
    top = np.percentile(fg, 99) or 1.0
    return {"p05": np.percentile(fg, 5) / top, "p50": np.percentile(fg, 50) / top,
            "p95": np.percentile(fg, 95) / top, "cv": fg.std() / (fg.mean() or 1.0)}


def two_sample_p(reference, incoming) -> float:
    """Return the p-value of a two-sample test: Kolmogorov–Smirnov for 1D values, and for (n, k)
    feature tables the smallest of k KS p-values times k (Bonferroni)."""
    from scipy.stats import ks_2samp

    ref, new = np.asarray(reference, float), np.asarray(incoming, float)
    if ref.ndim == 1:
        return float(ks_2samp(ref, new).pvalue)
    ps = [ks_2samp(ref[:, j], new[:, j]).pvalue for j in range(ref.shape[1])]
    return float(min(1.0, min(ps) * len(ps)))


def detection_rate(reference, pool, n: int, *, trials: int = 200, alpha: float = 0.05,
                   seed: int = 0) -> float:
    """Return the fraction of `trials` in which n scans drawn (with replacement) from `pool` are
    flagged (p < alpha) against `reference`. With `pool` from the reference distribution, this is
    the false-alarm rate; with shifted scans, the power."""
    rng = np.random.default_rng(seed)
    pool = np.asarray(pool, float)
    hits = 0
    for _ in range(trials):
        idx = rng.integers(0, len(pool), size=n)
        hits += two_sample_p(reference, pool[idx]) < alpha
    return hits / trials
