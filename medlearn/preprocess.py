"""Preprocess volumes once, with fastMONAI's own reader, so training does not resample every epoch.

Chapter 4.1 and `benchmarks/skull_stripping.py`: Paper B resampled every head once before training;
here the same is done with `fastMONAI.vision_core.med_img_reader`, the function `MedDataBlock` and
`inference` call, so the files written are exactly what those would compute on the fly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from medlearn._atomic import atomic_path

__all__ = ["preprocess_once"]


def preprocess_once(df, folder: str | os.PathLike, target_spacing: Sequence[float], *,
                    apply_reorder: bool = True, image_col: str = "img_path",
                    mask_col: str | None = "mask_path", id_col: str = "subject"):
    """Return a copy of `df` whose image (and mask) paths point to reoriented, resampled copies.

    Each image is read with fastMONAI's `med_img_reader(path, apply_reorder, target_spacing)`
    (linear interpolation) and each mask as a `MedMask` (nearest neighbour), then written as
    NIfTI under `folder` (atomically: a file is complete or absent). Train on the returned table
    with `apply_reorder=False, target_spacing=None`; predict on original files with fastMONAI's
    `inference(..., apply_reorder, target_spacing)`, which repeats the same preprocessing.

    Args:
        df: a table with one row per case (e.g. `medlearn.data.load("ixi_t1_nichart").df`).
        folder: where the preprocessed files go (created if needed).
        target_spacing: voxel size in mm, (sx, sy, sz).
        apply_reorder: reorient to the closest canonical (RAS+) orientation first.
        image_col, mask_col: the path columns (`mask_col=None` for images only).
        id_col: a column naming each case, used in the file names.

    Returns:
        a pandas DataFrame: `df`'s rows and columns, with the path columns replaced.

    Raises:
        FileNotFoundError: a listed file does not exist (the message names it).
        ValueError: `target_spacing` is not three positive numbers.
    """
    import torch
    from fastMONAI.vision_core import MedImage, MedMask, med_img_reader

    spacing = [float(s) for s in target_spacing]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"target_spacing must be three positive voxel sizes in mm, got {target_spacing}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns = [(image_col, MedImage)] + ([(mask_col, MedMask)] if mask_col else [])
    out = df.copy()
    for i, row in df.iterrows():
        for col, kind in columns:
            src = Path(row[col])
            if not src.is_file():
                raise FileNotFoundError(f"{src} (column {col!r}, case {row[id_col]!r}) does not exist")
            _, vol, _ = med_img_reader(str(src), apply_reorder=apply_reorder, target_spacing=spacing,
                                       only_tensor=False, dtype=kind)
            if kind is MedMask:  # nearest-neighbour labels, stored compactly
                vol.set_data(vol.data.to(torch.uint8))
            dest = folder / f"{row[id_col]}_{col}.nii.gz"
            with atomic_path(dest, suffix=".nii.gz") as tmp:
                vol.save(tmp)
            out.at[i, col] = str(dest)
    return out
