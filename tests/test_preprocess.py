"""medlearn.preprocess: files written once equal what fastMONAI computes on the fly (chapter 4.1)."""

import nibabel as nib
import numpy as np
import pytest

from medlearn.data import load
from medlearn.preprocess import preprocess_once

SPACING = [6.0, 6.0, 6.0]


@pytest.fixture(scope="module")
def heads():
    return load("ixi_t1_nichart", source="real").df.iloc[:2].reset_index(drop=True)


def test_written_files_equal_fastmonai_on_the_fly(heads, tmp_path):
    from fastMONAI.vision_core import MedImage, MedMask, med_img_reader

    out = preprocess_once(heads, tmp_path, SPACING)
    assert list(out.columns) == list(heads.columns)
    for (_, before), (_, after) in zip(heads.iterrows(), out.iterrows()):
        assert after.img_path != before.img_path and after.subject == before.subject
        on_the_fly = med_img_reader(before.img_path, apply_reorder=True, target_spacing=SPACING)
        stored = nib.load(after.img_path)
        np.testing.assert_allclose(np.asanyarray(stored.dataobj), on_the_fly[0].numpy(), rtol=1e-5,
                                   atol=1e-3)
        assert nib.aff2axcodes(stored.affine) == ("R", "A", "S")  # stored PSR, reoriented
        np.testing.assert_allclose(stored.header.get_zooms()[:3], SPACING, rtol=1e-4)
        mask_fly = med_img_reader(before.mask_path, apply_reorder=True, target_spacing=SPACING,
                                  dtype=MedMask)
        mask = np.asanyarray(nib.load(after.mask_path).dataobj)
        assert set(np.unique(mask)) == {0, 1}  # nearest neighbour: still binary
        np.testing.assert_array_equal(mask, mask_fly[0].numpy())
        # the brain keeps its volume (within a few %) at the coarser voxels
        ml_before = np.asanyarray(nib.load(before.mask_path).dataobj).sum() * 8 / 1000
        assert abs(mask.sum() * 216 / 1000 - ml_before) < 0.05 * ml_before
    assert MedImage  # imported for the reader's dtype; keeps the import honest


def test_missing_file_is_named_and_leaves_nothing(heads, tmp_path):
    broken = heads.copy()
    broken.loc[1, "mask_path"] = str(tmp_path / "nowhere_brain.nii.gz")
    with pytest.raises(FileNotFoundError, match="nowhere_brain"):
        preprocess_once(broken, tmp_path / "out", SPACING)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("spacing", [[2.0, 2.0], [2.0, 0.0, 2.0]])
def test_bad_spacing_is_refused(heads, tmp_path, spacing):
    with pytest.raises(ValueError, match="three positive"):
        preprocess_once(heads, tmp_path, spacing)
