"""Segmentation metrics (medlearn.metrics.segmentation) and the ICC / Bland-Altman part of agreement."""

from __future__ import annotations

import numpy as np
import pytest

from medlearn.metrics.agreement import bland_altman, icc
from medlearn.metrics.segmentation import (keep_highest_mean_activation, rater_adjusted_dice,
                                           rater_adjusted_hausdorff, relative_size_threshold,
                                           segmentation_metrics, volume_ml)


def _cube(shape=(20, 20, 20), lo=5, hi=15):
    m = np.zeros(shape, dtype=np.uint8)
    m[lo:hi, lo:hi, lo:hi] = 1
    return m


def test_volume_ml_known_volumes():
    # 10^3 voxels of 1 x 1 x 2 mm = 2000 mm^3 = 2 mL
    assert volume_ml(_cube(), (1.0, 1.0, 2.0)) == pytest.approx(2.0)
    # anisotropic spacing enters as a product, not only the first axis
    assert volume_ml(_cube(), (0.5, 2.0, 3.0)) == pytest.approx(3.0)
    # torch (1, X, Y, Z) input and label values > 1 count as foreground
    import torch
    assert volume_ml(torch.from_numpy(_cube() * 2)[None], (1, 1, 1)) == pytest.approx(1.0)
    assert volume_ml(np.zeros((4, 4, 4)), (1, 1, 1)) == 0.0


def test_volume_ml_rejects_bad_spacing():
    with pytest.raises(ValueError, match="spacing"):
        volume_ml(_cube(), (1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        volume_ml(_cube(), (1.0, 0.0, 1.0))


def test_metrics_match_monai_and_known_values():
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance

    target = _cube()
    pred = np.zeros_like(target)
    pred[5:15, 5:15, 7:17] = 1  # shifted by 2 voxels along Z: overlap 8/10
    table = segmentation_metrics([pred], [target], (1.0, 1.0, 3.0), case_ids=["c1"])
    row = table.loc["c1"]
    # 2 * 800 / (1000 + 1000)
    assert row.dice == pytest.approx(0.8)
    assert row.jaccard == pytest.approx(800 / 1200)
    ref = float(compute_dice(torch.tensor(pred)[None, None].float(), torch.tensor(target)[None, None].float()))
    assert row.dice == pytest.approx(ref)
    # a 2-voxel shift along Z at 3 mm spacing is 6 mm, not 2 voxels
    assert row.hd_mm == pytest.approx(6.0)
    ref_hd = float(compute_hausdorff_distance(torch.tensor(pred)[None, None].float(),
                                              torch.tensor(target)[None, None].float(),
                                              include_background=True, spacing=[1.0, 1.0, 3.0]))
    assert row.hd_mm == pytest.approx(ref_hd)
    assert row.pred_ml == pytest.approx(3.0) and row.target_ml == pytest.approx(3.0)


def test_metrics_empty_cases_and_mismatch():
    target = _cube()
    table = segmentation_metrics([np.zeros_like(target), target], [target, target], [(1, 1, 1), (1, 1, 1)])
    assert table.dice.tolist() == [0.0, 1.0]
    assert np.isnan(table.hd_mm.iloc[0]) and table.hd_mm.iloc[1] == 0.0
    with pytest.raises(ValueError, match="differ"):
        segmentation_metrics([np.zeros((5, 5, 5))], [target], (1, 1, 1))


def test_rater_adjusted_dice_reproduces_paper_d_table_3():
    """Paper D, Table 3: crude median DSC 0.60 (DL-R1) / 0.58 (DL-R2), R1-R2 0.78, adjusted 0.81 / 0.79.

    The additive rule DSC + (1 - DSC(R1, R2)) gives 0.82 / 0.80 from the rounded medians: within the
    table's rounding of its inputs. A ratio DSC / DSC(R1, R2) would give 0.77 / 0.74 and fails.
    """
    assert rater_adjusted_dice(0.60, 0.78) == pytest.approx(0.81, abs=0.011)
    assert rater_adjusted_dice(0.58, 0.78) == pytest.approx(0.79, abs=0.011)
    assert rater_adjusted_dice(0.78, 0.78) == pytest.approx(1.0)  # as good as the second rater: 1 (ref.)
    np.testing.assert_allclose(rater_adjusted_dice([0.6, 0.9], [0.8, 0.75]), [0.8, 1.15])
    with pytest.raises(ValueError, match="outside"):
        rater_adjusted_dice(60, 78)


def test_rater_adjusted_hausdorff_subtracts_inter_rater_distance():
    # Paper D's formula: HD(DL, R) - HD(R1, R2); the inter-rater pair becomes the 0 mm reference
    assert rater_adjusted_hausdorff(29.2, 14.6) == pytest.approx(14.6)
    assert rater_adjusted_hausdorff(14.6, 14.6) == 0.0
    np.testing.assert_allclose(rater_adjusted_hausdorff([10.0, 5.0], [4.0, 6.0]), [6.0, -1.0])
    with pytest.raises(ValueError):
        rater_adjusted_hausdorff(-1.0, 2.0)


def test_relative_size_threshold_is_a_share_of_the_mean_structure():
    """Paper E: drop components of at most 20 % of the average vertebral-body volume."""
    a = np.zeros((40, 40, 40), dtype=np.uint8)
    a[2:12, 2:12, 2:12] = 1        # 1000 voxels
    a[20:30, 20:30, 20:25] = 2     # 500 voxels, another label
    b = np.zeros((40, 40, 40), dtype=np.uint8)
    b[5:15, 5:15, 5:20] = 1        # 1500 voxels
    # mean structure volume (1000 + 500 + 1500) / 3 voxels of 2 mm^3 = 2000 mm^3; 20 % = 400 mm^3
    assert relative_size_threshold([a, b], (1.0, 1.0, 2.0)) == pytest.approx(400.0)
    assert relative_size_threshold([a, b], [(1, 1, 2), (1, 1, 1)], fraction=0.5) == pytest.approx(
        0.5 * (2000 + 1000 + 1500) / 3)
    # touching structures with different labels count separately; the same label counts once
    touching = np.zeros((20, 20, 20), dtype=np.uint8)
    touching[0:5, 0:5, 0:5] = 1
    touching[5:10, 0:5, 0:5] = 2
    assert relative_size_threshold([touching], (1, 1, 1)) == pytest.approx(0.2 * 125)
    # the threshold drives MONAI's RemoveSmallObjects in mm^3: a 300 mm^3 speck goes, a 500 mm^3 stays
    import torch
    from monai.transforms import RemoveSmallObjects
    pred = np.zeros((40, 40, 40), dtype=np.uint8)
    pred[2:12, 2:12, 2:12] = 1
    pred[30:35, 30:35, 30:36] = 1   # 150 voxels = 300 mm^3
    pred[20:30, 20:25, 30:35] = 1   # 250 voxels = 500 mm^3
    thr = relative_size_threshold([a, b], (1.0, 1.0, 2.0))
    out = RemoveSmallObjects(min_size=thr, by_measure=True, pixdim=(1.0, 1.0, 2.0))(
        torch.from_numpy(pred)[None])[0].numpy()
    assert out.sum() == 1000 + 250
    with pytest.raises(ValueError, match="no foreground"):
        relative_size_threshold([np.zeros((4, 4, 4))], (1, 1, 1))
    with pytest.raises(ValueError, match="fraction"):
        relative_size_threshold([a], (1, 1, 1), fraction=20)


def test_keep_highest_mean_activation_is_not_largest():
    prob = np.zeros((30, 30, 30))
    prob[2:14, 2:14, 2:14] = 0.6  # large, unsure
    prob[20:24, 20:24, 20:24] = 0.95  # small, confident
    kept = keep_highest_mean_activation(prob, threshold=0.5)
    assert kept.sum() == 4 ** 3 and kept[21, 21, 21] == 1 and kept[5, 5, 5] == 0

    # MONAI's rule keeps the largest one instead: the two rules differ on this map
    import torch
    from monai.transforms import KeepLargestConnectedComponent
    largest = KeepLargestConnectedComponent()(torch.from_numpy(prob > 0.5)[None]).numpy()[0]
    assert largest[5, 5, 5] == 1 and largest[21, 21, 21] == 0

    assert keep_highest_mean_activation(np.zeros((5, 5, 5))).sum() == 0


def test_keep_highest_mean_activation_connectivity():
    prob = np.zeros((10, 10, 10))
    prob[2, 2, 2] = 0.9
    prob[3, 3, 3] = 0.9  # touches (2,2,2) only at a corner
    prob[7, 7, 7] = 0.7
    assert keep_highest_mean_activation(prob, connectivity=1).sum() == 1
    assert keep_highest_mean_activation(prob, connectivity=3).sum() == 2


def test_remove_small_objects_rule_from_monai():
    """Paper E's rule (drop small components) is MONAI's RemoveSmallObjects; check what chapter 4.2 relies on."""
    import torch
    from monai.transforms import RemoveSmallObjects

    mask = _cube((30, 30, 30), 2, 12)
    mask[25, 25, 25] = 1
    out = RemoveSmallObjects(min_size=10)(torch.from_numpy(mask)[None]).numpy()[0]
    assert out.sum() == 1000 and out[25, 25, 25] == 0


def test_bland_altman_constructed_example():
    a = np.array([10.0, 20.0, 30.0, 40.0])
    b = a - np.array([1.0, 3.0, 1.0, 3.0])  # differences 1, 3, 1, 3: bias 2, SD sqrt(4/3)
    ba = bland_altman(a, b)
    sd = np.sqrt(4 / 3)
    assert ba["bias"] == pytest.approx(2.0)
    assert ba["sd"] == pytest.approx(sd)
    assert ba["lower"] == pytest.approx(2 - 1.96 * sd) and ba["upper"] == pytest.approx(2 + 1.96 * sd)
    np.testing.assert_allclose(ba["mean"], (a + b) / 2)
    assert bland_altman(b, a)["bias"] == pytest.approx(-2.0)  # the sign follows a - b
    with pytest.raises(ValueError, match="paired"):
        bland_altman([1, 2, 3], [1, 2])


def test_icc_agreement_vs_consistency():
    truth = np.arange(10, dtype=float) * 10
    rng = np.random.default_rng(0)
    close = np.column_stack([truth + rng.normal(0, 1, 10), truth + rng.normal(0, 1, 10)])
    assert icc(close)["icc"] > 0.99
    # a constant offset of 30 keeps consistency (ICC3) high but lowers absolute agreement (ICC2)
    shifted = np.column_stack([truth, truth + 30 + rng.normal(0, 1, 10)])
    assert icc(shifted, "ICC3")["icc"] > 0.99
    assert icc(shifted, "ICC2")["icc"] < 0.9
    noise = rng.normal(0, 1, (10, 2))
    assert icc(noise)["icc"] < 0.6
    with pytest.raises(ValueError):
        icc(close, "ICC9")
