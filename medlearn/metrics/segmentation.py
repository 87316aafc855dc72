"""Segmentation evaluation the chapters of part 4 need beyond MONAI: volumes, rater-adjusted Dice,
a per-case metric table, and Paper D's "keep the most confident component" rule.

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
    """Return the rater-adjusted Dice of Paper D: model Dice divided by the inter-rater Dice.

    Used in chapter 4.2. A value near 1 means the model agrees with a rater about as well as two
    raters agree with each other; above 1, better. Works on scalars and on arrays (per case).
    """
    model_dice = np.asarray(model_dice, dtype=float)
    inter_rater_dice = np.asarray(inter_rater_dice, dtype=float)
    if np.any(inter_rater_dice <= 0):
        raise ValueError("inter-rater Dice must be positive; a case where the raters do not overlap "
                         "cannot serve as the reference (drop it or report it separately)")
    out = model_dice / inter_rater_dice
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
