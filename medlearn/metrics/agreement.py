"""Agreement between raters (book parts 3, 4 and 5).

Krippendorff's alpha (computed by the `krippendorff` package) with a bootstrap confidence interval
over the rated units, and the "model as one more rater" comparison of Paper C. Part 4 adds ICC and
Bland-Altman below.

Layout used throughout: `ratings` is (n_units, n_raters) - one row per rated case (a nodule), one
column per rater, NaN where a rater did not rate that case. A DataFrame with columns
`rater_1..rater_4` (the "nodules" stand-in) can be passed as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["krippendorff_alpha", "krippendorff_alpha_ci", "binary_malignancy", "scores_on_rater_scale",
           "model_as_rater"]

_LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _ratings_array(ratings) -> np.ndarray:
    if isinstance(ratings, pd.DataFrame):
        ratings = ratings.to_numpy(dtype=float)
    r = np.asarray(ratings, dtype=float)
    if r.ndim != 2:
        raise ValueError(f"ratings must be 2-D (n_units, n_raters); got shape {r.shape}")
    if r.shape[1] < 2:
        raise ValueError(f"ratings has {r.shape[1]} rater column(s): agreement needs at least two raters")
    pairable = (~np.isnan(r)).sum(axis=1) >= 2
    if pairable.sum() < 2:
        raise ValueError("fewer than two units were rated by two or more raters: alpha is undefined")
    return r


def krippendorff_alpha(ratings, level: str = "ordinal") -> float:
    """Return Krippendorff's alpha for a (n_units, n_raters) table of ratings (NaN = not rated).

    Introduced in part 3, "Patients and raters"; used by assignment 3 and part 5.
    `level` is the level of measurement: "nominal" (categories), "ordinal" (1-5 malignancy
    scores), "interval" or "ratio". alpha = 1 is perfect agreement, 0 is chance agreement.
    """
    import krippendorff

    if level not in _LEVELS:
        raise ValueError(f"level={level!r} is not one of {_LEVELS}")
    r = _ratings_array(ratings)
    values = np.unique(r[~np.isnan(r)])
    if len(values) < 2:
        raise ValueError(f"every rating has the same value ({values[0]:g}): alpha is undefined when "
                         "there is no variation to agree about")
    return float(krippendorff.alpha(reliability_data=r.T, level_of_measurement=level))


def krippendorff_alpha_ci(ratings, level: str = "ordinal", *, n_boot: int = 1000, ci: float = 0.95,
                          seed: int = 0):
    """Return Krippendorff's alpha with a bootstrap CI over units, as a `classification.CI`.

    Introduced in part 3, "Patients and raters". The units (rows) are resampled with replacement;
    the raters stay fixed, so the interval answers "how different could alpha be on another sample
    of cases read by these raters?".
    """
    from medlearn.metrics.classification import CI

    if n_boot < 10:
        raise ValueError(f"n_boot={n_boot} is too few resamples; use at least 200 (1000 is usual)")
    r = _ratings_array(ratings)
    estimate = krippendorff_alpha(r, level)
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        sample = r[rng.integers(0, len(r), len(r))]
        try:
            stats.append(krippendorff_alpha(sample, level))
        except ValueError:  # a resample without variation: alpha undefined there
            continue
    stats = np.asarray(stats)
    stats = stats[np.isfinite(stats)]
    if len(stats) < n_boot // 2:
        raise ValueError("alpha was undefined in most resamples; rate more units")
    tail = (1 - ci) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return CI(estimate, float(low), float(high), ci, n_boot)


def binary_malignancy(ratings, indeterminate: float = 3):
    """Return the 1-5 malignancy scores as binary reads: 1 above 3, 0 below 3, NaN for a 3.

    Introduced in part 3, "Patients and raters". Paper C labels a nodule benign when its median
    score is below 3 and malignant above 3, and drops the indeterminate 3s; applied to each rater's
    own score this gives the *binary* assessments whose alpha Paper C reports (0.58 among the
    radiologists, 0.68 with the model). Its ordinal alpha on the 1-5 scores is another number
    (0.49). Missing reads stay missing. Same shape as `ratings` (a DataFrame keeps its labels).
    """
    if isinstance(ratings, pd.DataFrame):
        return ratings.apply(lambda col: binary_malignancy(col.to_numpy(dtype=float), indeterminate))
    if isinstance(ratings, pd.Series):
        return pd.Series(binary_malignancy(ratings.to_numpy(dtype=float), indeterminate),
                         index=ratings.index, name=ratings.name)
    r = np.asarray(ratings, dtype=float)
    out = np.where(r > indeterminate, 1.0, 0.0)
    out[(r == indeterminate) | np.isnan(r)] = np.nan
    return out


def scores_on_rater_scale(prob, ratings) -> np.ndarray:
    """Return model probabilities mapped to the raters' score scale by matching their distribution.

    Introduced in part 3, "Patients and raters". A probability is not a 1-5 score; to add the model
    as a rater, its probabilities are ranked and cut at the quantiles of the pooled human scores, so
    the model uses each score as often as the raters do on average. Ties in `prob` get one score.
    """
    p = np.asarray(prob, dtype=float).reshape(-1)
    if np.isnan(p).any():
        raise ValueError("prob contains NaN: every unit needs a model probability")
    pooled = _ratings_array(ratings)
    pooled = pooled[~np.isnan(pooled)]
    levels = np.unique(pooled)
    # cumulative share of each score among the human ratings -> cut points on the model's ranks
    cum = np.cumsum([np.mean(pooled == v) for v in levels])[:-1]
    cuts = np.quantile(p, cum)
    return levels[np.searchsorted(cuts, p, side="left")]


def model_as_rater(ratings, prob, level: str = "ordinal", *, threshold: float | None = None,
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Return alpha (with CI) for the human raters alone and with the model added as one more rater.

    Introduced in part 3, "Patients and raters" (Paper C: binary alpha 0.58 among radiologists,
    0.68 with the model). `prob` holds the model's probability of malignancy per unit. With
    `threshold=None` it is put on the raters' scale with `scores_on_rater_scale` (for 1-5 scores);
    with a threshold the model's read is its decision, 1 if prob >= threshold else 0 (for binary
    reads from `binary_malignancy`). Rows: "raters", "raters + model"; columns: estimate, low, high.
    """
    r = _ratings_array(ratings)
    if len(np.asarray(prob).reshape(-1)) != len(r):
        raise ValueError(f"prob has {len(np.asarray(prob).reshape(-1))} values but ratings has {len(r)} units")
    if threshold is None:
        model = scores_on_rater_scale(prob, r)
    else:
        if not set(np.unique(r[~np.isnan(r)])) <= {0.0, 1.0}:
            raise ValueError("threshold= gives the model a 0/1 read; the raters' reads must be 0/1 too "
                             "(use binary_malignancy) or leave threshold=None for 1-5 scores")
        model = (np.asarray(prob, dtype=float).reshape(-1) >= threshold).astype(float)
    rows = {}
    for name, table in (("raters", r), ("raters + model", np.column_stack([r, model]))):
        ci = krippendorff_alpha_ci(table, level, n_boot=n_boot, seed=seed)
        rows[name] = {"estimate": ci.estimate, "low": ci.low, "high": ci.high}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = f"Krippendorff's alpha ({level})"
    return out


# ---------------------------------------------------------------------------------------------
# ICC and Bland-Altman (part 4: chapter 4.2 and assignment 4; tests in tests/test_metrics_segmentation.py)
# ---------------------------------------------------------------------------------------------

# our names -> pingouin's row labels (Shrout-Fleiss / McGraw-Wong)
_ICC_TYPES = {"ICC1": "ICC(1,1)", "ICC2": "ICC(A,1)", "ICC3": "ICC(C,1)",
              "ICC1k": "ICC(1,k)", "ICC2k": "ICC(A,k)", "ICC3k": "ICC(C,k)"}


def icc(measurements, kind: str = "ICC2") -> dict:
    """Return `{"icc", "ci95", "kind", "pingouin_type", "pval", "n"}` for (n_cases, n_raters) measurements.

    Introduced in part 4 (volumes measured by two raters or a rater and a model). Computed by
    pingouin: "ICC2" is two-way random effects, absolute agreement (a constant offset lowers it);
    "ICC3" is two-way mixed, consistency (a constant offset does not).
    """
    import pingouin as pg

    if kind not in _ICC_TYPES:
        raise ValueError(f"kind={kind!r} is not one of {tuple(_ICC_TYPES)}")
    m = np.asarray(measurements, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2 or m.shape[0] < 2:
        raise ValueError(f"measurements must be (n_cases >= 2, n_raters >= 2); got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("measurements contain NaN: ICC needs every case measured by every rater")
    long = pd.DataFrame({"case": np.repeat(np.arange(m.shape[0]), m.shape[1]),
                         "rater": np.tile(np.arange(m.shape[1]), m.shape[0]),
                         "value": m.reshape(-1)})
    table = pg.intraclass_corr(data=long, targets="case", raters="rater", ratings="value").set_index("Type")
    row = table.loc[_ICC_TYPES[kind]]
    ci_col = "CI95%" if "CI95%" in table.columns else "CI95"
    return {"icc": float(row["ICC"]), "ci95": tuple(float(v) for v in row[ci_col]), "kind": kind,
            "pingouin_type": _ICC_TYPES[kind], "pval": float(row["pval"]), "n": int(m.shape[0])}


def bland_altman(a, b) -> dict:
    """Return the Bland-Altman statistics `{"bias", "sd", "lower", "upper", "mean", "diff"}` of a - b.

    Introduced in part 4. `bias` is the mean difference a - b, `lower`/`upper` the 95% limits of
    agreement (bias -/+ 1.96 SD, SD with ddof=1); `mean` and `diff` are per case, for the plot.
    """
    a = np.asarray(a, dtype=float).reshape(-1)
    b = np.asarray(b, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a has {a.size} values but b has {b.size}: Bland-Altman needs paired measurements")
    if a.size < 2:
        raise ValueError("Bland-Altman needs at least two paired measurements")
    diff = a - b
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1))
    return {"bias": bias, "sd": sd, "lower": bias - 1.96 * sd, "upper": bias + 1.96 * sd,
            "n": int(a.size), "mean": (a + b) / 2, "diff": diff}
