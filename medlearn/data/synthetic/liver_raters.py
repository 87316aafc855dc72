"""Synthetic stand-in for `multirater_liver`: one CT-like volume, a liver tumour, three raters.

Chapter 5.2 (majority vote vs STAPLE) when the real SimpleITK-Notebooks case is not at hand.
SYNTHETIC: nothing here comes from a patient. The volume is uint8 like the real file (rescaled, not
Hounsfield units) at 1.734 mm isotropic; a bright liver holds a darker, lobulated tumour. The three
raters differ as real ones do: rater 1 traces the boundary closely (unbiased jitter), rater 2 draws
generously (dilated: biased large), rater 3 draws tightly and misses a lobe (eroded plus a missed
part: biased small).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (48, 64, 64)        # (Z, Y, X) as SimpleITK stores it
SHAPE_FAST = (32, 40, 40)
SPACING = 1.734             # mm, isotropic, like the real case


def _tumour(rng, shape) -> np.ndarray:
    """A lobulated tumour: the union of three overlapping balls near the centre, (Z, Y, X)."""
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    centre = np.array(shape) / 2 + rng.normal(0, 1.5, 3)
    base = min(shape) / 6
    mask = np.zeros(shape, bool)
    for k in range(3):
        c = centre + (rng.normal(0, base / 2, 3) if k else 0)
        r = base * rng.uniform(0.6, 1.0)
        mask |= sum((g - ci) ** 2 for g, ci in zip(grid, c)) <= r ** 2
    return mask


def generate(root: Path, *, n: int | None = None, seed: int = 0, fast: bool = False):
    """Return the DataFrame of `multirater_liver`'s layout after writing `n` synthetic cases (MetaImage).

    Columns: img_path, rater1_path, rater2_path, rater3_path, labels ("tumour"), split ("test"),
    is_val, patient_id. `n` defaults to 1 case, as in the real set.
    """
    import pandas as pd
    import SimpleITK as sitk
    from scipy import ndimage

    from medlearn.noise import corrupt_mask

    root = Path(root)
    n = int(n if n is not None else 1)
    if n < 1:
        raise ValueError(f"liver_raters.generate: n={n}; ask for at least one case")
    rng = np.random.default_rng(seed)
    shape = SHAPE_FAST if fast else SHAPE
    rows = []
    for i in range(n):
        pid = f"Synthetic{i + 1:02d}"
        grid = np.ogrid[tuple(slice(0, s) for s in shape)]
        liver = sum(((g - s / 2) / (0.42 * s)) ** 2 for g, s in zip(grid, shape)) <= 1
        tumour = _tumour(rng, shape)
        ct = 40 + 90 * liver - 45 * tumour + rng.normal(0, 8, shape)
        ct = np.clip(ndimage.gaussian_filter(ct, 0.8), 0, 255).astype(np.uint8)
        raters = [corrupt_mask(tumour, "jitter", amount=1, seed=seed * 100 + i),
                  corrupt_mask(tumour, "dilate", amount=2),
                  corrupt_mask(corrupt_mask(tumour, "erode", amount=1), "missed", amount=0.25,
                               seed=seed * 100 + i)]
        paths = {"img_path": root / f"{pid}.mha"}
        paths.update({f"rater{k}_path": root / f"{pid}_Rad0{k}.mha" for k in (1, 2, 3)})
        for key, arr in [("img_path", ct)] + [(f"rater{k}_path", r.astype(np.uint8)) for k, r in
                                               zip((1, 2, 3), raters)]:
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((SPACING,) * 3)
            sitk.WriteImage(img, str(paths[key]), True)
        rows.append({**{k: str(v) for k, v in paths.items()}, "labels": "tumour", "split": "test",
                     "is_val": False, "patient_id": pid})
    return pd.DataFrame(rows)
