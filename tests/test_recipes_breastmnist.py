"""The BreastMNIST recipe: trains on real data, gives valid and reproducible probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from medlearn.recipes.breastmnist import make_cnn, predict_malignant, train_breastmnist

TINY = dict(epochs=1, members=1, width=4, bs=16)


@pytest.fixture(scope="module")
def breast(data_cache, shared_data):
    """A small stratified subset of the real BreastMNIST: 64 train, 32 val, 40 test images."""
    from medlearn.data import load

    ds = load("breastmnist", source="real", verbose=False)
    rng = np.random.default_rng(0)
    subset = {}
    for split, n in (("train", 64), ("val", 32), ("test", 40)):
        x, y = ds.arrays(split)
        keep = np.concatenate([rng.choice(np.flatnonzero(y == c), n // 2, replace=False)
                               for c in (0, 1)])
        subset[split] = (x[keep], y[keep])
    return subset


def _train(breast, seed):
    (xt, yt), (xv, yv) = breast["train"], breast["val"]
    return train_breastmnist(xt, yt, xv, yv, seed=seed, **TINY)


def test_recipe_trains_and_returns_one_probability_per_image(breast):
    models = _train(breast, seed=0)
    x_test = breast["test"][0]
    for tta in (True, False):
        prob = predict_malignant(models, x_test, tta=tta)
        assert prob.shape == (len(x_test),)
        assert np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()
    assert prob.std() > 0  # one image's probability differs from another's


def test_predictions_are_reproducible_for_a_seed_and_change_with_it(breast):
    x_test = breast["test"][0]
    a = predict_malignant(_train(breast, seed=3), x_test)
    b = predict_malignant(_train(breast, seed=3), x_test)
    c = predict_malignant(_train(breast, seed=4), x_test)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_ensemble_averages_its_members_and_tta_averages_the_flip():
    import torch

    torch.manual_seed(0)
    models = [make_cnn(width=4, mean=0.3, std=0.2).eval() for _ in range(2)]
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    both = predict_malignant(models, x, tta=False)
    each = [predict_malignant([m], x, tta=False) for m in models]
    np.testing.assert_allclose(both, np.mean(each, axis=0), rtol=1e-6)
    flipped = predict_malignant(models, x[:, :, ::-1], tta=False)
    np.testing.assert_allclose(predict_malignant(models, x, tta=True), (both + flipped) / 2,
                               rtol=1e-5)


def test_bad_inputs_are_clear_errors(breast):
    (xt, yt), (xv, yv) = breast["train"], breast["val"]
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        train_breastmnist(xt[:, :20], yt, xv, yv, **TINY)
    with pytest.raises(ValueError, match="0 \\(malignant\\) or 1"):
        train_breastmnist(xt, yt + 1, xv, yv, **TINY)
    with pytest.raises(ValueError, match="64 images but 63 labels"):
        train_breastmnist(xt, yt[:-1], xv, yv, **TINY)
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        predict_malignant([make_cnn(4)], xt[0])
