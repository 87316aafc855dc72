"""Every MedMNIST set (2D and 3D, any size) through one code path: npz → arrays → files + DataFrame.

Arrays keep MedMNIST's layout: 2D images (N, H, W) (or (N, H, W, 3) for colour sets), 3D volumes
(N, D, H, W) as stored in the npz; labels (N,) for single-label tasks. For fastai/fastMONAI the
cases are also written once, lazily, as files: PNG for 2D, NIfTI for 3D (the stored array as
(X, Y, Z) = (D, H, W), the spacing in the affine), one file per case.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
# AdrenalMNIST3D: 64 mm cubes resized to size³ (MedMNIST v2 paper); other 3D sets have no single spacing.
MM_FIELD_OF_VIEW = {"adrenalmnist3d": 64.0}
FAST_COUNTS = {"train": 96, "val": 32, "test": 32}


def read_npz(path: str | os.PathLike) -> dict:
    """Return {split: (images, labels)} from a MedMNIST npz; single-label labels flattened to (N,)."""
    with np.load(path) as z:
        out = {}
        for split in SPLITS:
            x, y = z[f"{split}_images"], z[f"{split}_labels"]
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            out[split] = (x, y.astype(np.int64))
    return out


def counts_for(n_samples: dict, *, fast: bool = False, n: int | None = None) -> dict:
    """Return per-split counts: all of them, FAST_COUNTS when `fast`, or `n` in all split like the original."""
    full = {s: int(n_samples[s]) for s in SPLITS}
    if n is not None:
        total = sum(full.values())
        return {s: max(4, min(full[s], round(n * full[s] / total))) for s in SPLITS}
    if fast:
        return {s: min(full[s], FAST_COUNTS[s]) for s in SPLITS}
    return full


def subset_indices(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Return `k` sorted indices drawn without replacement, stratified by label (all of them if k >= N)."""
    n = len(labels)
    if k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    keys = labels if labels.ndim == 1 else labels[:, 0]
    chosen = []
    classes, inverse = np.unique(keys, return_inverse=True)
    for c in range(len(classes)):
        idx = np.flatnonzero(inverse == c)
        take = max(1, round(k * len(idx) / n))
        chosen.extend(rng.choice(idx, size=min(take, len(idx)), replace=False))
    chosen = np.array(sorted(chosen))
    if len(chosen) > k:
        chosen = np.sort(rng.choice(chosen, k, replace=False))
    return chosen


def spacing_for(flag: str, size: int) -> tuple:
    """Return the voxel spacing in mm of a MedMNIST 3D set at `size` (1 mm nominal where unknown)."""
    fov = MM_FIELD_OF_VIEW.get(flag)
    s = fov / size if fov else 1.0
    return (s, s, s)


def _atomic_save(write, dest: Path) -> None:
    from medlearn._atomic import atomic_path

    with atomic_path(dest, suffix="".join(dest.suffixes)) as tmp:
        write(tmp)


def write_cases(arrays: dict, indices: dict, out_dir: Path, *, is3d: bool, spacing=None,
                label_names: dict | None = None) -> "pandas.DataFrame":
    """Return the DataFrame (img_path, labels, label_id, split, is_val, index) after writing one file per case.

    Files already present are kept (written once). 3D: NIfTI with `spacing` on the affine diagonal;
    2D: PNG. `labels` holds the class names from the registry (fastai shows them), `label_id` the integers.
    """
    import pandas as pd

    rows = []
    for split in SPLITS:
        x, y = arrays[split]
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        for i, original in enumerate(indices[split]):
            path = folder / (f"{int(original):05d}.nii.gz" if is3d else f"{int(original):05d}.png")
            if not path.exists():
                if is3d:
                    import nibabel as nib

                    affine = np.diag(list(spacing or (1.0, 1.0, 1.0)) + [1.0])
                    img = nib.Nifti1Image(np.ascontiguousarray(x[i]), affine)
                    img.header.set_xyzt_units("mm")
                    _atomic_save(lambda p, img=img: nib.save(img, str(p)), path)
                else:
                    from PIL import Image

                    _atomic_save(lambda p, a=x[i]: Image.fromarray(a).save(p, format="PNG"), path)
            label = y[i]
            if np.ndim(label) == 0:
                lid = int(label)
                name = (label_names or {}).get(lid, str(lid))
            else:  # multi-label: the names of the positive labels, joined
                lid = -1
                name = ";".join((label_names or {}).get(j, str(j)) for j in np.flatnonzero(label))
            rows.append({"img_path": str(path), "labels": name, "label_id": lid, "split": split,
                         "is_val": split == "val", "index": int(original)})
    return pd.DataFrame(rows)
