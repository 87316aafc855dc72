"""Segmentation evaluation the chapters of part 4 need beyond MONAI: volumes, Paper D's rater-adjusted
Dice and Hausdorff, a per-case metric table, Paper D's "keep the most confident component" rule and
Paper E's relative small-component threshold.

Dice, Jaccard and Hausdorff distances are MONAI's (`monai.metrics.compute_dice`, `compute_iou`,
`compute_hausdorff_distance`); this module only arranges them into one table per case with the
voxel spacing carried along. Dropping small components is MONAI's `RemoveSmallObjects`; keeping the
largest is MONAI's `KeepLargestConnectedComponent`. What none of them expresses is keeping the
component with the highest mean predicted probability (Paper D), so that one rule lives here.

Masks are arrays of shape (X, Y, Z) (or tensors (C, X, Y, Z) with C == 1) and `spacing` is
(sx, sy, sz) in millimetres, in the same axis order as the array.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def _as_3d(mask, name: str = "mask") -> np.ndarray:
    """Return a boolean (X, Y, Z) numpy array from a numpy array, torch tensor or TorchIO image."""
    if hasattr(mask, "data") and hasattr(mask, "spacing") and not isinstance(mask, np.ndarray):
        mask = mask.data  # TorchIO image -> (C, X, Y, Z) tensor
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"{name} has shape {arr.shape}; pass one 3D volume (X, Y, Z) or (1, X, Y, Z)")
    return arr


def volume_ml(mask, spacing: Sequence[float]) -> float:
    """Return the volume of the foreground of `mask` in millilitres (voxel count x voxel volume).

    Used in chapter 4.2 (tumour volumes) and assignment 4. `spacing` is the voxel size in mm;
    1 mL = 1000 mm^3. Any non-zero voxel counts as foreground.

    >>> volume_ml(np.ones((10, 10, 10)), spacing=(1.0, 1.0, 2.0))
    2.0
    """
    arr = _as_3d(mask)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing {spacing} must be three positive voxel sizes in mm, e.g. (1.0, 1.0, 1.0)")
    return float(np.count_nonzero(arr) * np.prod(spacing) / 1000.0)


def rater_adjusted_dice(model_dice, inter_rater_dice):
    """Return Paper D's rater-adjusted Dice: DSC(model, R) + (1 - DSC(R1, R2)).

    Used in chapter 4.2. Paper D (Methods and Table 3) adds the raters' own disagreement,
    1 - DSC(R1, R2), to the model's Dice, so that a model exactly as far from a rater as the two
    raters are from each other scores 1, the reference value of the inter-rater pair. Table 3:
    crude 0.60 (model vs R1), inter-rater 0.78, adjusted 0.81 (0.82 from the rounded medians).
    Works on scalars and on arrays (per case).

    Args:
        model_dice: Dice of the model against one rater (scalar or array, in [0, 1]).
        inter_rater_dice: Dice between the two raters (scalar or array of the same shape).

    Raises:
        ValueError: a Dice outside [0, 1].

    >>> round(rater_adjusted_dice(0.60, 0.78), 2)
    0.82
    """
    model_dice = np.asarray(model_dice, dtype=float)
    inter_rater_dice = np.asarray(inter_rater_dice, dtype=float)
    for name, d in (("model Dice", model_dice), ("inter-rater Dice", inter_rater_dice)):
        if np.any((d < 0) | (d > 1)) or np.any(np.isnan(d)):
            raise ValueError(f"{name} {d} is outside [0, 1]; pass Dice coefficients, not percentages")
    out = model_dice + (1.0 - inter_rater_dice)
    return float(out) if out.ndim == 0 else out


def rater_adjusted_hausdorff(model_hd, inter_rater_hd):
    """Return Paper D's rater-adjusted Hausdorff distance: HD(model, R) - HD(R1, R2), in mm.

    Used in chapter 4.2. The inter-rater pair becomes the reference value 0 mm. Paper D's Table 3
    reports 3.73 mm and 9.10 mm adjusted; its rounded medians (29.2 - 14.6) would give 14.6 mm, so
    the published adjusted distances cannot be recomputed from the table alone.

    Args:
        model_hd: Hausdorff distance of the model against one rater (mm, scalar or array).
        inter_rater_hd: Hausdorff distance between the two raters (mm, same shape).

    Raises:
        ValueError: a negative or NaN distance.
    """
    model_hd = np.asarray(model_hd, dtype=float)
    inter_rater_hd = np.asarray(inter_rater_hd, dtype=float)
    for name, d in (("model HD", model_hd), ("inter-rater HD", inter_rater_hd)):
        if np.any(d < 0) or np.any(np.isnan(d)):
            raise ValueError(f"{name} {d} must be a non-negative distance in mm")
    out = model_hd - inter_rater_hd
    return float(out) if out.ndim == 0 else out


def segmentation_metrics(preds: Iterable, targets: Iterable, spacings: Iterable[Sequence[float]] | Sequence[float],
                         case_ids: Iterable | None = None):
    """Return a per-case DataFrame of Dice, Jaccard, Hausdorff (max and 95th percentile, mm) and volumes (mL).

    Used in chapters 4.1-4.3. The distances and overlaps are MONAI's (`compute_dice`, `compute_iou`,
    `compute_hausdorff_distance` with the case's spacing, so distances are in mm). `spacings` is either
    one (sx, sy, sz) for all cases or one per case. An empty prediction or target gives NaN for
    Hausdorff (undefined) and Dice 0 when exactly one of the two is empty.
    """
    import pandas as pd
    import torch
    import warnings
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

    preds, targets = list(preds), list(targets)
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets; pass one of each per case")
    spacings = list(spacings)
    if len(spacings) == 3 and np.isscalar(spacings[0]):
        spacings = [tuple(spacings)] * len(preds)
    if len(spacings) != len(preds):
        raise ValueError(f"{len(spacings)} spacings for {len(preds)} cases; pass one (sx, sy, sz) or one per case")
    case_ids = list(case_ids) if case_ids is not None else list(range(len(preds)))

    rows = []
    for cid, p, t, sp in zip(case_ids, preds, targets, spacings):
        sp = [float(s) for s in sp]  # MONAI rejects numpy scalars (e.g. nibabel's float32 zooms)
        p3, t3 = _as_3d(p, "prediction") > 0, _as_3d(t, "target") > 0
        if p3.shape != t3.shape:
            raise ValueError(f"case {cid}: prediction {p3.shape} and target {t3.shape} differ; resample one onto the other")
        pt = torch.from_numpy(p3[None, None].astype(np.float32))
        tt = torch.from_numpy(t3[None, None].astype(np.float32))
        both_empty = not p3.any() and not t3.any()
        one_empty = p3.any() != t3.any()
        if both_empty:
            dice = jac = 1.0
        elif one_empty:
            dice = jac = 0.0
        else:
            dice = float(compute_dice(pt, tt, include_background=True))
            jac = float(compute_iou(pt, tt, include_background=True))
        if p3.any() and t3.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hd = float(compute_hausdorff_distance(pt, tt, include_background=True, spacing=sp))
                hd95 = float(compute_hausdorff_distance(pt, tt, include_background=True, percentile=95,
                                                        spacing=sp))
        else:
            hd = hd95 = float("nan")
        rows.append({"case": cid, "dice": dice, "jaccard": jac, "hd_mm": hd, "hd95_mm": hd95,
                     "pred_ml": volume_ml(p3, sp), "target_ml": volume_ml(t3, sp)})
    return pd.DataFrame(rows).set_index("case")


def keep_highest_mean_activation(prob, threshold: float = 0.5, connectivity: int = 1) -> np.ndarray:
    """Return a binary (X, Y, Z) mask that keeps only the connected component with the highest mean probability.

    Paper D's post-processing rule, used in chapter 4.2 and assignment 4: threshold the probability map,
    label its connected components (scipy.ndimage.label; `connectivity` 1 = faces, 3 = faces, edges and
    corners, as in MONAI), and keep the component whose voxels have the highest mean probability, which
    need not be the largest one (MONAI's `KeepLargestConnectedComponent` keeps the largest). An empty
    thresholded map gives an empty mask.
    """
    from scipy import ndimage

    p = _as_3d(prob, "probability map").astype(float)
    fg = p > threshold
    structure = ndimage.generate_binary_structure(3, connectivity)
    labels, n = ndimage.label(fg, structure=structure)
    if n == 0:
        return np.zeros(p.shape, dtype=np.uint8)
    means = ndimage.mean(p, labels=labels, index=np.arange(1, n + 1))
    return (labels == int(np.argmax(means)) + 1).astype(np.uint8)


def relative_size_threshold(reference_masks: Iterable, spacings: Iterable[Sequence[float]] | Sequence[float],
                            fraction: float = 0.2, connectivity: int = 1) -> float:
    """Return Paper E's small-component threshold in mm^3: `fraction` x the mean structure volume.

    Used in chapter 4.2 and assignment 4. Paper E removed predicted components of at most 20 % of
    the average vertebral-body volume in its data set, a threshold relative to the anatomy rather
    than a fixed number of voxels. Here every connected component of every reference mask (each
    label value separately, so touching vertebrae with different labels count apart) is one
    structure; pass the training labels, never the test labels. Feed the result to MONAI's
    `RemoveSmallObjects(min_size=..., by_measure=True, pixdim=spacing)`.

    Args:
        reference_masks: label volumes (X, Y, Z), binary or multi-label (0 = background).
        spacings: one (sx, sy, sz) in mm for all masks, or one per mask.
        fraction: share of the mean structure volume below which a component is dropped (0.2).
        connectivity: 1 = faces, 3 = faces, edges and corners (as in MONAI).

    Raises:
        ValueError: no structure in any mask, or a fraction outside (0, 1).

    >>> m = np.zeros((20, 20, 20)); m[2:12, 2:12, 2:12] = 1
    >>> relative_size_threshold([m], (1.0, 1.0, 2.0))
    400.0
    """
    from scipy import ndimage

    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} must lie in (0, 1); Paper E used 0.2")
    masks = list(reference_masks)
    spacings = list(spacings)
    if len(spacings) == 3 and np.isscalar(spacings[0]):
        spacings = [tuple(spacings)] * len(masks)
    if len(spacings) != len(masks):
        raise ValueError(f"{len(spacings)} spacings for {len(masks)} masks; pass one (sx, sy, sz) or one per mask")
    structure = ndimage.generate_binary_structure(3, connectivity)
    volumes = []
    for mask, sp in zip(masks, spacings):
        arr = np.asarray(_as_3d(mask, "reference mask"))
        voxel_mm3 = float(np.prod([float(s) for s in sp]))
        for value in np.unique(arr[arr > 0]):
            labels, n = ndimage.label(arr == value, structure=structure)
            volumes.extend(np.bincount(labels.ravel())[1:] * voxel_mm3)
    if not volumes:
        raise ValueError("the reference masks contain no foreground: no structure to take the mean of")
    return float(fraction * np.mean(volumes))
