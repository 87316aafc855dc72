"""Synthetic stand-in for the TCGA-GBM case: a T1 post-contrast-like head with an enhancing tumour.

SYNTHETIC, not patient data. Used by `medlearn.data.load("tcga_gbm_brain")` only when the real case
is neither cached nor downloadable. It keeps what the chapters rely on: a full-size head on an
anisotropic grid (thick slices, as in the real 0.78 x 0.78 x 6.5 mm scan), a ring-enhancing lesion
with a dark necrotic core, and a label of two components (the main tumour and a small satellite),
so that volume in mL, overlays and connected-component rules (part 4) have something to act on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (128, 128, 25)
SPACING = (1.56, 1.56, 6.5)  # mm: the real case's field of view at half its in-plane resolution
SHAPE_FAST = (96, 96, 20)
SPACING_FAST = (2.08, 2.08, 8.1)


def _lesion(rng, x, y, z, centre, radius):
    """Return (tumour mask, normalised radius) of a lobulated ellipsoid at `centre` (mm)."""
    from medlearn.data.synthetic.heads import _smooth

    r = np.sqrt(((x - centre[0]) / radius[0]) ** 2 + ((y - centre[1]) / radius[1]) ** 2
                + ((z - centre[2]) / radius[2]) ** 2)
    r = r * (1 + 0.18 * np.clip(_smooth(rng, x.shape, 2.0), -2, 2))  # lobulated margin
    return r < 1, r


def generate(root: Path, *, n: int | None = None, seed: int = 0, fast: bool = False):
    """Return a DataFrame (img_path, mask_path, labels, split, is_val, patient_id) after writing
    `n` (default 1) synthetic T1 post-contrast heads with tumour labels as NIfTI under `root`.

    Stands in for `tcga_gbm_brain` (parts 1, 2 and 4) when the real case cannot be had.
    """
    import pandas as pd

    from medlearn.data.synthetic.heads import _head, _save

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape, spacing = (SHAPE_FAST, SPACING_FAST) if fast else (SHAPE, SPACING)
    spacing = np.asarray(spacing, dtype=np.float32)
    rows = []
    for i in range(int(n or 1)):
        t1, brain, _ = _head(rng, shape, spacing, "A", size=2.6)
        axes = [(np.arange(k, dtype=np.float32) - (k - 1) / 2) * s for k, s in zip(shape, spacing)]
        x, y, z = np.meshgrid(*axes, indexing="ij")
        side = rng.choice([-1.0, 1.0])
        centre = np.array([side * rng.uniform(25, 35), rng.uniform(-15, 25), rng.uniform(5, 25)])
        tumour, r = _lesion(rng, x, y, z, centre, rng.uniform(14, 20, 3))
        satellite, _ = _lesion(rng, x, y, z, centre + np.array([-side * 8, rng.uniform(-30, -25), -10]),
                               np.array([5.0, 5.0, 6.0]))
        tumour &= brain
        satellite &= brain & ~tumour
        wm = float(np.median(t1[brain]))
        oedema = brain & (r < 1.5) & ~tumour
        t1[oedema] *= 0.8  # oedema: darker on T1
        t1[tumour & (r < 0.6)] = 0.35 * wm  # necrotic core
        t1[tumour & (r >= 0.6)] = 1.7 * wm  # enhancing rim (gadolinium)
        t1[satellite] = 1.5 * wm
        label = (tumour | satellite).astype(np.uint8)
        affine = np.diag([*spacing.tolist(), 1.0])
        affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing
        img_path, mask_path = root / "images" / f"GBM{i:03d}.nii.gz", root / "labels" / f"GBM{i:03d}.nii.gz"
        _save(np.clip(t1, 0, None), affine, "RAS", img_path, np.float32)
        _save(label, affine, "RAS", mask_path, np.uint8)
        rows.append({"img_path": str(img_path), "mask_path": str(mask_path), "labels": "tumour",
                     "split": "test", "is_val": False, "patient_id": f"SYNTH-GBM-{i:03d}"})
    return pd.DataFrame(rows)
