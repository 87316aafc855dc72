"""Synthetic stand-in for `tcia_hn_oar_2raters`: organs of very different sizes, two raters.

Chapter 5.2 (inter-rater Dice against structure size) when the real DeepMind/TCIA masks are not at
hand. SYNTHETIC: every "organ" is an ellipsoid named after a head-and-neck organ at risk, sized
roughly like it (brain ~ 1400 mL down to a lens ~ 0.2 mL) on a coarse 2.5 mm grid. The radiographer
traces each boundary with the same unbiased jitter of about one voxel as the oncologist's outline,
so the small organs get a low Dice for the same boundary error: the lesson of the real set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# organ: semi-axes in mm (x, y, z); sizes roughly those of adult anatomy
ORGANS = {
    "Brain": (70, 85, 60), "Brainstem": (14, 15, 25), "Mandible": (45, 40, 18),
    "Parotid-Lt": (15, 20, 22), "Submandibular-Lt": (12, 13, 12), "Spinal-Cord": (5, 5, 45),
    "Orbit-Lt": (12, 12, 12), "Optic-Nerve-Lt": (3, 12, 3), "Cochlea-Lt": (3.5, 3.5, 3),
    "Lens-Lt": (4.5, 4.5, 2.5),
}
ORGANS_FAST = ("Brain", "Parotid-Lt", "Orbit-Lt", "Cochlea-Lt", "Lens-Lt")
SPACING = 2.5  # mm, isotropic (the real set is 0.98 x 0.98 x 2.5 mm)


def generate(root: Path, *, n: int | None = None, seed: int = 0, fast: bool = False):
    """Return the DataFrame of `tcia_hn_oar_2raters`'s layout after writing the masks (NRRD).

    One row per patient x organ: patient_id, organ, oncologist_path, radiographer_path. `n` is the
    number of patients (default 2, as in the real set); `fast` keeps five organs of the ten.
    """
    import pandas as pd
    import SimpleITK as sitk

    from medlearn.noise import corrupt_mask

    root = Path(root)
    n = int(n if n is not None else 2)
    if n < 1:
        raise ValueError(f"organ_raters.generate: n={n}; ask for at least one patient")
    rng = np.random.default_rng(seed)
    organs = ORGANS_FAST if fast else tuple(ORGANS)
    rows = []
    for p in range(n):
        pid = f"synthetic{p:02d}"
        for rater in ("oncologist", "radiographer"):
            (root / pid / rater).mkdir(parents=True, exist_ok=True)
        for k, organ in enumerate(organs):
            axes = np.array(ORGANS[organ]) * rng.uniform(0.9, 1.1) / SPACING  # voxels
            shape = tuple(int(np.ceil(2 * a + 8)) for a in axes[::-1])       # (Z, Y, X), margin 4 voxels
            grid = np.ogrid[tuple(slice(0, s) for s in shape)]
            truth = sum(((g - s / 2) / a) ** 2 for g, s, a in zip(grid, shape, axes[::-1])) <= 1
            oncologist = corrupt_mask(truth, "jitter", amount=1, seed=seed * 1000 + 2 * k + p * 100)
            radiographer = corrupt_mask(truth, "jitter", amount=1, seed=seed * 1000 + 2 * k + 1 + p * 100)
            paths = {}
            for rater, mask in (("oncologist", oncologist), ("radiographer", radiographer)):
                img = sitk.GetImageFromArray(mask.astype(np.uint8))
                img.SetSpacing((SPACING,) * 3)
                paths[rater] = root / pid / rater / f"{organ}.nrrd"
                sitk.WriteImage(img, str(paths[rater]), True)
            rows.append({"patient_id": pid, "organ": organ, "oncologist_path": str(paths["oncologist"]),
                         "radiographer_path": str(paths["radiographer"])})
    return pd.DataFrame(rows)
