"""medlearn.noise: injection with a recorded truth, out-of-fold probabilities, detection, consensus,
active learning. Each test checks a behaviour a broken implementation gets wrong."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medlearn import noise


def _blobs(n=400, seed=0, sep=3.0):
    """Two well-separated Gaussian classes in 2D (70/30): a model can find the true class."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    x = rng.standard_normal((n, 2)) + sep * y[:, None]
    return x, y


def _ball(shape=(40, 40, 40), centre=(20, 20, 20), radius=10):
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


# ----------------------------------------------------------------------------- injection
def test_symmetric_flips_are_exact_recorded_and_seeded():
    y = np.repeat([0, 1, 2], 100)
    noisy, flipped = noise.flip_labels(y, 0.2, seed=3)
    assert flipped.sum() == 60 and np.array_equal(flipped, noisy != y)
    again, _ = noise.flip_labels(y, 0.2, seed=3)
    other, _ = noise.flip_labels(y, 0.2, seed=4)
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)
    assert set(np.unique(noisy)) == {0, 1, 2}
    assert np.array_equal(noise.flip_labels(y, 0.0)[0], y)


def test_class_conditional_flips_follow_the_transition_matrix():
    y = np.repeat([0, 1], 5000)
    t = np.array([[0.9, 0.1], [0.4, 0.6]])  # class 1 is mislabelled far more often
    noisy, flipped = noise.flip_labels(y, transition=t, seed=0)
    assert abs(flipped[y == 0].mean() - 0.1) < 0.02
    assert abs(flipped[y == 1].mean() - 0.4) < 0.02
    with pytest.raises(ValueError):
        noise.flip_labels(y, 0.1, transition=t)
    with pytest.raises(ValueError):
        noise.flip_labels(y, transition=[[0.5, 0.4], [0, 1]])


def test_mask_corruptions_do_what_they_say():
    m = _ball()
    volume = m.sum()
    assert noise.corrupt_mask(m, "dilate").sum() > volume * 1.2      # biased outwards
    assert noise.corrupt_mask(m, "erode").sum() < volume * 0.8       # biased inwards
    jitter = noise.corrupt_mask(m, "jitter", seed=1)
    assert abs(jitter.sum() / volume - 1) < 0.15 and noise.dice(jitter, m) < 0.97  # unbiased, but wrong
    missed = noise.corrupt_mask(m, "missed", seed=0)
    assert missed.sum() < volume * 0.9 and not (missed & ~m).any()
    spurious = noise.corrupt_mask(m, "spurious", seed=0)
    assert ndimage.label(spurious)[1] == 2 and (spurious & m).sum() == volume
    shifted = noise.corrupt_mask(m, "shift", seed=0)
    assert shifted.sum() == volume and noise.dice(shifted, m) < 0.8
    with pytest.raises(ValueError, match="unknown corruption"):
        noise.corrupt_mask(m, "blur")
    with pytest.raises(ValueError, match="empty"):
        noise.corrupt_mask(np.zeros((5, 5, 5)), "dilate")


# ----------------------------------------------------------------------------- out-of-fold
def test_out_of_fold_probs_never_score_a_sample_with_a_model_that_saw_it():
    x = np.arange(200)[:, None]  # the input is the sample's index: leakage is visible
    y = np.tile([0, 1], 100)
    seen = []

    def fit_predict(x_train, y_train, x_eval):
        assert not set(x_train[:, 0]) & set(x_eval[:, 0]), "a held-out sample was in the training fold"
        seen.append(set(x_eval[:, 0]))
        return np.tile([0.5, 0.5], (len(x_eval), 1))

    noise.out_of_fold_probs(fit_predict, x, y, folds=4)
    assert len(seen) == 4 and set().union(*seen) == set(range(200))
    assert sum(len(s) for s in seen) == 200  # every sample scored exactly once


def test_out_of_fold_probs_do_not_memorise_random_labels():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((300, 5)), rng.integers(0, 2, 300)
    one_nn = KNeighborsClassifier(n_neighbors=1)  # in-sample it would be 100 % right
    probs = noise.out_of_fold_probs(one_nn, x, y, folds=5)
    assert probs.shape == (300, 2)
    assert 0.35 < (probs.argmax(1) == y).mean() < 0.65
    with pytest.raises(ValueError):
        noise.out_of_fold_probs(one_nn, x, y, folds=1)


# ----------------------------------------------------------------------------- detection
@pytest.mark.parametrize("rate", [0.1, 0.2])
def test_confident_learning_finds_the_injected_flips(rate):
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(600, seed=1)
    noisy, flipped = noise.flip_labels(y, rate, seed=2)
    probs = noise.out_of_fold_probs(LogisticRegression(), x, noisy, folds=5)
    for method in ("confident_learning", "loss"):
        s = noise.detection_scores(noise.label_issues(noisy, probs, method=method), flipped)
        assert s["precision"] > 0.8 and s["recall"] > 0.75, (method, s)
    assert abs(noise.estimated_noise_rate(noisy, probs) - rate) < 0.05


def test_loss_ranking_flags_the_n_least_likely_labels():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    labels = np.array([0, 0, 1, 0])  # loss order: 3 (p=0.05), 1 (0.2), 2 (0.4), 0 (0.9)
    assert noise.label_issues(labels, probs, method="loss", n=2).tolist() == [False, True, False, True]
    with pytest.raises(ValueError):
        noise.label_issues(labels, probs, method="vibes")


def test_detection_scores():
    s = noise.detection_scores([1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert np.isnan(noise.detection_scores([0, 0], [1, 0])["precision"])


def test_annotator_quality_ranks_the_careless_annotator_last():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(300, seed=4)
    raters = np.stack([noise.flip_labels(y, r, seed=i)[0] for i, r in enumerate((0.05, 0.1, 0.35))], 1)
    probs = noise.out_of_fold_probs(LogisticRegression(), x, raters[:, 0], folds=5)
    stats = noise.annotator_quality(raters, probs)
    assert stats.annotator_quality.idxmin() == 2


# ----------------------------------------------------------------------------- Paper B's filter
def test_dice_matches_monai_and_the_filter_flags_the_bad_labels():
    import torch
    from monai.metrics import compute_dice

    m = _ball()
    shifted = noise.corrupt_mask(m, "shift", seed=0)
    ref = float(compute_dice(torch.tensor(shifted[None, None] * 1.0), torch.tensor(m[None, None] * 1.0)))
    assert noise.dice(shifted, m) == pytest.approx(ref)
    labels = [m, noise.corrupt_mask(m, "missed", amount=0.6), noise.corrupt_mask(m, "dilate", amount=1), shifted]
    table = noise.dice_filter(labels, [m] * 4, threshold=0.8, case_ids=["a", "b", "c", "d"])
    assert table.flagged.tolist() == [False, True, False, True]
    assert table.loc["a", "dice"] == 1.0
    assert noise.dice_filter(labels, [m] * 4, threshold=0.95).flagged.sum() == 3  # stricter threshold
    with pytest.raises(ValueError):
        noise.dice_filter(labels, [m] * 3)


# ----------------------------------------------------------------------------- consensus
def test_majority_vote_reports_and_decides_ties():
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([1, 0, 1, 0], bool)
    consensus, ties = noise.majority_vote([a, b])
    assert ties.tolist() == [False, True, True, False]
    assert consensus.tolist() == [True, False, False, False]
    assert noise.majority_vote([a, b], tie="foreground")[0].tolist() == [True, True, True, False]
    three, ties3 = noise.majority_vote([a, b, b])
    assert three.tolist() == [True, False, True, False] and not ties3.any()


def _liver_raters():
    import SimpleITK as sitk
    from medlearn.data import load

    row = load("multirater_liver", source="real", verbose=False).df.iloc[0]
    return [sitk.ReadImage(row[f"rater{k}_path"]) for k in (1, 2, 3)]


def test_majority_vote_matches_simpleitk_label_voting_on_the_real_liver_raters(shared_data):
    import SimpleITK as sitk

    images = _liver_raters()
    arrays = [sitk.GetArrayFromImage(i) > 0 for i in images]
    consensus, ties = noise.majority_vote(arrays)
    voted = sitk.GetArrayFromImage(sitk.LabelVoting([sitk.Cast(i > 0, sitk.sitkUInt8) for i in images], 255))
    assert not ties.any() and np.array_equal(consensus, voted == 1)


def test_staple_matches_simpleitk_on_the_real_liver_raters(shared_data):
    import SimpleITK as sitk

    images = _liver_raters()
    result = noise.staple([sitk.GetArrayFromImage(i) for i in images])
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1)
    expected = sitk.GetArrayFromImage(f.Execute([sitk.Cast(i > 0, sitk.sitkUInt8) for i in images]))
    assert result.probability.shape == expected.shape
    np.testing.assert_allclose(result.probability, expected, atol=1e-6)
    np.testing.assert_allclose(result.sensitivity, f.GetSensitivity(), atol=1e-9)
    np.testing.assert_allclose(result.specificity, f.GetSpecificity(), atol=1e-9)
    # not the voxel-wise mean of the raters: STAPLE weights raters by their estimated quality
    mean = np.mean([sitk.GetArrayFromImage(i) > 0 for i in images], axis=0)
    assert np.abs(result.probability - mean).max() > 0.05


def test_staple_trusts_the_careful_rater_more():
    m = _ball((30, 30, 30), (15, 15, 15), 8)
    careless = noise.corrupt_mask(m, "dilate", amount=3)
    result = noise.staple([m, noise.corrupt_mask(m, "jitter", amount=1, seed=1), careless])
    assert np.argmin(result.specificity) == 2  # the dilating rater calls background foreground
    assert noise.dice(result.mask(), m) > noise.dice(careless, m)


# ----------------------------------------------------------------------------- active learning
def test_active_learning_is_seeded_and_uncertainty_asks_near_the_boundary():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x_pool = rng.uniform(-5, 5, (300, 1))
    y_pool = (x_pool[:, 0] > 0).astype(int)
    x_test = np.linspace(-5, 5, 101)[:, None]
    y_test = (x_test[:, 0] > 0).astype(int)
    asked = {}

    def recorder(strategy):
        def fit_predict(x_train, y_train, x_eval):
            asked.setdefault(strategy, []).append(x_train[:, 0].copy())
            return LogisticRegression(C=100).fit(x_train, y_train).predict_proba(x_eval)
        return fit_predict

    curves = {s: noise.active_learning_curve(recorder(s), x_pool, y_pool, x_test, y_test, strategy=s,
                                             start=10, step=10, budget=50, seed=1)
              for s in ("uncertainty", "random")}
    assert curves["uncertainty"].n_labels.tolist() == [10, 20, 30, 40, 50]
    # same seed, same start: the first 10 labels agree; then uncertainty asks near x = 0
    assert np.array_equal(asked["uncertainty"][0], asked["random"][0])
    new_u = np.abs(asked["uncertainty"][-1][10:]).mean()
    new_r = np.abs(asked["random"][-1][10:]).mean()
    assert new_u < 0.5 * new_r
    again = noise.active_learning_curve(LogisticRegression(), x_pool, y_pool, x_test, y_test, start=10, step=10,
                                        budget=30, seed=1)
    assert again.equals(noise.active_learning_curve(LogisticRegression(), x_pool, y_pool, x_test, y_test,
                                                    start=10, step=10, budget=30, seed=1))
    assert noise.labels_to_reach(curves["uncertainty"], 2.0) != noise.labels_to_reach(curves["uncertainty"], 2.0)
    assert noise.labels_to_reach(curves["uncertainty"], 0.0) == 10


def test_small_cnn_learns_and_clones():
    from sklearn.base import clone

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = rng.normal(0, 1, (120, 28, 28)) + 1.5 * y[:, None, None] * (np.arange(28) < 14)[None, :, None]
    for loss in ("ce", "gce"):
        model = noise.SmallCNN(epochs=8, loss=loss, seed=0).fit(x[:80], y[:80])
        assert (model.predict(x[80:]) == y[80:]).mean() > 0.9, loss
    copy = clone(noise.SmallCNN(loss="gce", q=0.5))
    assert copy.get_params()["q"] == 0.5 and not hasattr(copy, "net_")
