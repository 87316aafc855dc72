"""The rater stand-ins (liver_raters, organ_raters) load through `medlearn.data.load` in the real
sets' column layout, say they are synthetic, and carry the chapter's lesson (raters that disagree)."""

from __future__ import annotations

import numpy as np
import pytest

from medlearn.data import load

sitk = pytest.importorskip("SimpleITK")


def _mask(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0


def test_liver_raters_standin_has_the_real_layout_and_three_different_raters(shared_data):
    real = load("multirater_liver", source="real", verbose=False)
    ds = load("multirater_liver", source="synthetic", fast=True, verbose=False)
    assert ds.source == "synthetic" and "SYNTHETIC" in ds.provenance
    assert list(ds.df.columns) == list(real.df.columns)
    row = ds.df.iloc[0]
    r1, r2, r3 = (_mask(row[f"rater{k}_path"]) for k in (1, 2, 3))
    assert r1.shape == sitk.GetArrayFromImage(sitk.ReadImage(row.img_path)).shape
    assert r2.sum() > r1.sum() > r3.sum() > 0   # generous, close, tight
    from medlearn.noise import dice
    assert 0.5 < dice(r1, r3) < 0.95 and 0.5 < dice(r1, r2) < 0.95


def test_organ_raters_standin_has_the_real_layout_and_dice_falls_with_size(shared_data):
    real = load("tcia_hn_oar_2raters", source="real", verbose=False)
    ds = load("tcia_hn_oar_2raters", source="synthetic", fast=True, verbose=False)
    assert ds.source == "synthetic"
    assert list(ds.df.columns) == list(real.df.columns)
    assert ds.df.patient_id.nunique() == 2
    from medlearn.noise import dice
    rows = ds.df[ds.df.patient_id == ds.df.patient_id.iloc[0]]
    sizes = [_mask(p).sum() for p in rows.oncologist_path]
    dices = [dice(_mask(a), _mask(b)) for a, b in zip(rows.oncologist_path, rows.radiographer_path)]
    assert dices[int(np.argmax(sizes))] > 0.9 > dices[int(np.argmin(sizes))]
