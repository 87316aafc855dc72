"""Bootstrap CIs, patient-level aggregation (medlearn.metrics.classification) and Krippendorff's alpha
(medlearn.metrics.agreement), as used by part 3 and assignment 3."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from medlearn.metrics.agreement import (binary_malignancy, krippendorff_alpha, krippendorff_alpha_ci,
                                        model_as_rater, scores_on_rater_scale)
from medlearn.metrics.classification import (CI, bootstrap_ci, confusion_table, metrics_table,
                                             patient_level)


def _accuracy(y, p):
    return float((y == p).mean())


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_true_accuracy_in_simulation():
    """A 95% interval should contain the population value in roughly 95% of repeated studies."""
    rng = np.random.default_rng(1)
    true_acc, n, reps = 0.8, 150, 120
    covered = 0
    widths = []
    for r in range(reps):
        y = rng.integers(0, 2, n)
        correct = rng.random(n) < true_acc
        pred = np.where(correct, y, 1 - y)
        ci = bootstrap_ci(y, pred, _accuracy, n_boot=300, seed=r)
        covered += ci.contains(true_acc)
        widths.append(ci.high - ci.low)
    assert 0.88 <= covered / reps <= 0.99
    # the binomial standard error sets the width: 2 * 1.96 * sqrt(.8 * .2 / 150) = 0.128
    assert np.mean(widths) == pytest.approx(0.128, abs=0.02)


def test_bootstrap_ci_of_auc_contains_binormal_auc():
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    d = 1.0  # binormal separation: AUC = Phi(d / sqrt(2))
    y = np.r_[np.zeros(300), np.ones(300)].astype(int)
    score = np.r_[rng.normal(0, 1, 300), rng.normal(d, 1, 300)]
    ci = bootstrap_ci(y, score, roc_auc_score, n_boot=200)
    assert ci.low < ci.estimate < ci.high
    assert ci.contains(norm.cdf(d / np.sqrt(2)))  # 0.760
    assert ci.high - ci.low < 0.1


def test_stratified_bootstrap_keeps_class_counts():
    seen = []

    def spy(y, s):
        seen.append(int(y.sum()))
        return 0.5

    y = np.array([0] * 45 + [1] * 5)
    bootstrap_ci(y, np.zeros(50), spy, n_boot=50)
    assert set(seen) == {5}  # every resample (and the full set) has exactly the 5 positives
    seen.clear()
    bootstrap_ci(y, np.zeros(50), spy, n_boot=200, stratified=False)
    assert len(set(seen)) > 1


def test_bootstrap_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(3)
    y, s = rng.integers(0, 2, 80), rng.random(80)
    assert bootstrap_ci(y, s, _accuracy_of_scores, n_boot=100, seed=5) == \
        bootstrap_ci(y, s, _accuracy_of_scores, n_boot=100, seed=5)
    assert bootstrap_ci(y, s, _accuracy_of_scores, n_boot=100, seed=5) != \
        bootstrap_ci(y, s, _accuracy_of_scores, n_boot=100, seed=6)


def _accuracy_of_scores(y, s):
    return float((y == (s >= 0.5)).mean())


def test_bootstrap_degenerate_inputs_raise_clear_errors():
    from sklearn.metrics import roc_auc_score

    with pytest.raises(ValueError, match="only one class"):
        bootstrap_ci(np.ones(20), np.random.rand(20), roc_auc_score)
    with pytest.raises(ValueError, match="one score per case"):
        bootstrap_ci([0, 1, 0], [0.1, 0.2], roc_auc_score)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([], [], roc_auc_score)
    with pytest.raises(ValueError, match="map text labels"):
        bootstrap_ci(["benign", "malignant"], [0.1, 0.9], roc_auc_score)


def test_ci_str_and_unpacking():
    ci = CI(0.8, 0.7, 0.9)
    est, lo, hi = ci
    assert (est, lo, hi) == (0.8, 0.7, 0.9)
    assert str(ci) == "0.800 (95% CI 0.700-0.900)"


def test_metrics_table_values_at_threshold():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    prob = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7])
    t = metrics_table(y, prob, n_boot=100)
    assert t.loc["accuracy", "estimate"] == pytest.approx(6 / 8)
    assert t.loc["sensitivity", "estimate"] == pytest.approx(3 / 4)
    assert t.loc["specificity", "estimate"] == pytest.approx(3 / 4)
    assert t.loc["AUC", "estimate"] == pytest.approx(15 / 16)  # only the pair (0.6, 0.4) is misordered
    assert t.loc["balanced accuracy", "estimate"] == pytest.approx(3 / 4)


def test_metrics_table_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    prob = np.round(rng.random(200) * 0.5 + 0.4 * y, 1)  # many ties
    t = metrics_table(y, prob, n_boot=50)
    assert t.loc["AUC", "estimate"] == pytest.approx(roc_auc_score(y, prob))
    assert (t["low"] <= t["estimate"]).all() and (t["estimate"] <= t["high"]).all()
    t2 = metrics_table(y, prob, threshold=0.35, n_boot=100)
    assert t2.loc["sensitivity", "estimate"] == 1.0  # 0.4 now counts as positive


# ----------------------------------------------------------------------------- patients


def _nodules():
    return pd.DataFrame({
        "patient_id": ["p1", "p1", "p1", "p2", "p2", "p3"],
        "prob": [0.1, 0.7, 0.2, 0.3, 0.4, 0.9],
        "label": [0, 1, 0, 0, 0, 1],
    })


def test_patient_level_any_rule():
    pts = patient_level(_nodules())
    assert list(pts.index) == ["p1", "p2", "p3"]
    assert pts["n_lesions"].tolist() == [3, 2, 1]
    assert pts["label"].tolist() == [1, 0, 1]  # malignant if any nodule is
    assert pts["prob"].tolist() == [0.7, 0.4, 0.9]  # the most suspicious nodule
    assert pts["pred"].tolist() == [1, 0, 1]


def test_patient_level_mean_rule_dilutes_a_single_malignant_nodule():
    pts = patient_level(_nodules(), rule="mean")
    assert pts.loc["p1", "prob"] == pytest.approx(1 / 3)
    assert pts.loc["p1", "pred"] == 0  # missed: two benign nodules outvote one malignant


def test_patient_level_errors():
    with pytest.raises(KeyError, match="patient_col"):
        patient_level(_nodules().rename(columns={"patient_id": "pid"}))
    with pytest.raises(ValueError, match="rule"):
        patient_level(_nodules(), rule="majority")
    bad = _nodules()
    bad.loc[0, "prob"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        patient_level(bad)


def test_confusion_table_layout():
    t = confusion_table([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert t.loc["actual benign", "predicted benign"] == 1
    assert t.loc["actual benign", "predicted malignant"] == 1
    assert t.loc["actual malignant", "predicted malignant"] == 2
    assert t.loc["actual malignant", "predicted benign"] == 1
    # a class that never occurs still gets its row and column
    assert confusion_table([0, 0], [0, 0]).to_numpy().tolist() == [[2, 0], [0, 0]]


# ----------------------------------------------------------------------------- Krippendorff


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the worked example: four
# observers, twelve units, missing values. Published: nominal 0.743, ordinal 0.815, interval 0.849.
_K2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
    [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
]).T  # -> (units, raters)


@pytest.mark.parametrize("level,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_matches_krippendorffs_worked_example(level, published):
    assert krippendorff_alpha(_K2011, level) == pytest.approx(published, abs=5e-4)


def _nominal_alpha_by_hand(table):
    """Coincidence-matrix formula: alpha = 1 - (n - 1) * D_o / D_e, written out independently."""
    values = np.unique(table[~np.isnan(table)])
    o = pd.DataFrame(0.0, index=values, columns=values)
    for row in table:
        r = row[~np.isnan(row)]
        m = len(r)
        if m < 2:
            continue
        for a, b in itertools.permutations(range(m), 2):
            o.loc[r[a], r[b]] += 1 / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    observed = o.to_numpy()[~np.eye(len(values), dtype=bool)].sum()
    expected = (np.outer(n_c, n_c)[~np.eye(len(values), dtype=bool)]).sum() / (n - 1)
    return 1 - observed / expected


def test_nominal_alpha_equals_hand_computation_on_random_tables():
    rng = np.random.default_rng(7)
    for _ in range(5):
        t = rng.integers(1, 4, (30, 3)).astype(float)
        t[rng.random(t.shape) < 0.15] = np.nan
        assert krippendorff_alpha(t, "nominal") == pytest.approx(_nominal_alpha_by_hand(t), abs=1e-9)


def test_alpha_perfect_and_dataframe_input():
    df = pd.DataFrame({"rater_1": [1, 2, 3, 4, 5], "rater_2": [1, 2, 3, 4, 5], "rater_3": [1, 2, 3, 4, np.nan]})
    assert krippendorff_alpha(df) == pytest.approx(1.0)


def test_alpha_degenerate_inputs_raise():
    with pytest.raises(ValueError, match="two raters"):
        krippendorff_alpha(np.array([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="same value"):
        krippendorff_alpha(np.full((5, 3), 2.0))
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(_K2011, "fuzzy")
    with pytest.raises(ValueError, match="two or more raters"):
        krippendorff_alpha(np.array([[1, np.nan], [np.nan, 2.0], [3, np.nan]]))


def test_alpha_ci_contains_estimate_and_shrinks_with_more_units():
    rng = np.random.default_rng(0)

    def table(n):
        truth = rng.integers(1, 6, n)
        return np.clip(truth[:, None] + rng.integers(-1, 2, (n, 4)), 1, 5).astype(float)

    small = krippendorff_alpha_ci(table(30), n_boot=200)
    large = krippendorff_alpha_ci(table(400), n_boot=200)
    assert small.low <= small.estimate <= small.high
    assert (large.high - large.low) < (small.high - small.low)


def test_scores_on_rater_scale_matches_rater_distribution_and_order():
    ratings = np.tile(np.repeat([1.0, 2, 3, 4, 5], 20)[:, None], (1, 3))  # each score used 20%
    prob = np.linspace(0, 1, 100)
    scores = scores_on_rater_scale(prob, ratings)
    assert np.all(np.diff(scores) >= 0)  # monotone in the probability
    assert np.bincount(scores.astype(int))[1:].tolist() == [20, 20, 20, 20, 20]


def test_model_as_rater_rewards_a_model_that_agrees():
    rng = np.random.default_rng(1)
    truth = rng.integers(1, 6, 200)
    ratings = np.clip(truth[:, None] + rng.integers(-1, 2, (200, 3)), 1, 5).astype(float)
    good = model_as_rater(ratings, truth + rng.normal(0, 0.1, 200), n_boot=100)
    bad = model_as_rater(ratings, rng.random(200), n_boot=100)
    assert good.loc["raters + model", "estimate"] > good.loc["raters", "estimate"]
    assert bad.loc["raters + model", "estimate"] < bad.loc["raters", "estimate"]
    assert good.loc["raters", "estimate"] == pytest.approx(krippendorff_alpha(ratings))


# ----------------------------------------------------------------------------- binary vs ordinal (Paper C)


def test_binary_malignancy_follows_paper_c_cut():
    r = np.array([[1, 2, 3, 4, 5, np.nan]], dtype=float)
    np.testing.assert_array_equal(binary_malignancy(r), [[0, 0, np.nan, 1, 1, np.nan]])
    df = pd.DataFrame({"rater_1": [1.0, 4.0], "rater_2": [3.0, 5.0]})
    out = binary_malignancy(df)
    assert list(out.columns) == ["rater_1", "rater_2"] and np.isnan(out.iloc[0, 1])


def test_binary_and_ordinal_alpha_are_different_quantities():
    """Paper C's 0.58 -> 0.68 is alpha of binary reads; its 1-5 (ordinal) alpha is 0.49. Pin both levels."""
    # raters disagree only by one step on the same side of 3: ordinal alpha < 1, binary alpha exactly 1
    same_side = np.array([[1, 2, 1], [2, 1, 2], [4, 5, 4], [5, 4, 5], [1, 1, 2], [5, 5, 4]], dtype=float)
    assert krippendorff_alpha(same_side, "ordinal") < 0.9
    assert krippendorff_alpha(binary_malignancy(same_side), "nominal") == pytest.approx(1.0)
    # disagreements across the cut (2 vs 4): one step less ordinal agreement, and binary alpha drops a lot
    across = np.array([[2, 4, 2], [4, 2, 4], [1, 1, 1], [5, 5, 5], [2, 2, 4], [4, 4, 4]], dtype=float)
    binary = binary_malignancy(across)
    assert krippendorff_alpha(binary, "nominal") == pytest.approx(_nominal_alpha_by_hand(binary), abs=1e-9)
    assert krippendorff_alpha(binary, "nominal") < krippendorff_alpha(across, "ordinal")
    # the 3s are indeterminate and drop out of the binary table rather than counting as benign
    with_threes = np.array([[3, 4, 4], [1, 3, 1], [5, 5, 3], [2, 2, 2]], dtype=float)
    assert krippendorff_alpha(binary_malignancy(with_threes), "nominal") == pytest.approx(1.0)


def test_model_as_rater_binary_uses_the_models_decision():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 300).astype(float)
    flips = rng.random((300, 3)) < 0.15
    ratings = np.where(flips, 1 - truth[:, None], truth[:, None])
    prob = np.where(truth == 1, 0.9, 0.1)  # a model that always agrees with the truth
    out = model_as_rater(ratings, prob, level="nominal", threshold=0.5, n_boot=50)
    assert out.loc["raters", "estimate"] == pytest.approx(krippendorff_alpha(ratings, "nominal"))
    assert out.loc["raters + model", "estimate"] > out.loc["raters", "estimate"]
    with pytest.raises(ValueError, match="binary_malignancy"):
        model_as_rater(ratings * 4 + 1, prob, threshold=0.5, n_boot=50)
