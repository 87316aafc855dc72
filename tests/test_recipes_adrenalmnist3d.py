"""medlearn.recipes.adrenalmnist3d: batched augmentation, flip TTA, one epoch on real data."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("monai")

from medlearn.recipes import adrenalmnist3d as recipe  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blob(b=3, n=12):
    """An off-centre cuboid per volume, so rotations and flips visibly move it."""
    x = torch.zeros(b, 1, n, n, n)
    x[:, :, 2:6, 3:9, 1:5] = 1.0
    return x


def test_random_affine_keeps_shape_and_dtype_and_is_random_but_seeded():
    x = _blob()
    a = recipe.random_affine(x, generator=torch.Generator().manual_seed(0))
    b = recipe.random_affine(x, generator=torch.Generator().manual_seed(0))
    c = recipe.random_affine(x, generator=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    assert not torch.allclose(a, x, atol=1e-3)
    # each volume of the batch gets its own transform
    assert not torch.allclose(a[0], a[1], atol=1e-3)


def test_random_affine_without_rotation_scale_or_flip_is_the_identity():
    x = torch.rand(2, 1, 10, 11, 12)
    y = recipe.random_affine(x, degrees=0, scale=0, flip=False)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_random_affine_keeps_a_mask_a_mask_by_default():
    # trilinear resampling would blur the thin glands into larger, softer shapes than the
    # unaugmented test volumes show
    x = _blob(b=4) * 5.0 - 0.2
    y = recipe.random_affine(x, generator=torch.Generator().manual_seed(0))
    assert set(torch.unique(y).tolist()) <= set(torch.unique(x).tolist())
    blurred = recipe.random_affine(x, mode="bilinear", generator=torch.Generator().manual_seed(0))
    assert len(torch.unique(blurred)) > 2


def test_random_affine_flips_only_mirror_the_volume():
    x = _blob(b=16)
    y = recipe.random_affine(x, degrees=0, scale=0, flip=True,
                             generator=torch.Generator().manual_seed(0))
    mirrors = [x[0].flip(d) for r in range(4) for d in _subsets(r)]
    for v in y:
        assert any(torch.allclose(v, m, atol=1e-5) for m in mirrors)
    assert len({tuple(v.flatten().round().tolist()) for v in y}) > 1


def _subsets(r):
    import itertools

    return [list(c) for c in itertools.combinations((1, 2, 3), r)]


def test_bad_shapes_raise_a_clear_value_error():
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        recipe.random_affine(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 1, D, H, W\)"):
        recipe.predict(recipe.make_model(), torch.zeros(2, 8, 8, 8))


def test_flip_tta_is_deterministic_and_invariant_to_a_flipped_input():
    model = recipe.make_model()
    x = torch.randn(3, 1, 28, 28, 28)
    p = recipe.predict(model, x, tta=True)
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p, recipe.predict(model, x, tta=True))
    # averaging over all 8 flips makes the prediction the same for a mirrored volume
    np.testing.assert_allclose(p, recipe.predict(model, x.flip(2), tta=True), atol=1e-5)


def test_one_epoch_on_a_real_subset_gives_test_probabilities(data_cache, shared_data):
    from medlearn.data import load

    ds = load("adrenalmnist3d", source="real", size=28, n=40, verbose=False)
    out = recipe.fit_predict(ds, epochs=1, members=1, seed=0, bs=8)
    y, prob = out["test"]
    assert len(prob) == len(y) == ds.counts()["test"]
    assert ((prob >= 0) & (prob <= 1)).all() and set(np.unique(y)) <= {0, 1}
    assert out["val"][1].shape == (ds.counts()["val"],)
