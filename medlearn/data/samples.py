"""Samples shipped inside installed packages: no download, no network, always there."""

from __future__ import annotations

from pathlib import Path

from medlearn.data.cache import cache_dir

SAMPLES = {
    "pydicom_ct": "pydicom's CT_small.dcm: one 128×128 CT slice (pydicom test data, MIT-style license)",
    "pydicom_mr": "pydicom's MR_small.dcm: one 64×64 MR slice (pydicom test data)",
    "mni152": "nilearn's MNI152 2009 T1 template (1 mm) with grey/white-matter maps and a derived brain mask",
    "shepp_logan": "scikit-image's Shepp–Logan phantom (400×400), the classic CT test object",
}


def sample(name: str):
    """Return a packaged sample: a Path (DICOM), a dict of Paths (MNI152 NIfTI) or (array, spacing) (phantom).

    - "pydicom_ct", "pydicom_mr": Path to a DICOM file bundled with pydicom (part 2, DICOM).
    - "mni152": {"t1", "gm", "wm", "mask"} -> Paths of NIfTI files, (X, Y, Z) at 1 mm with the MNI
      affine; "mask" is derived here (GM + WM > 0.5, closed, largest component, holes filled) and cached
      (parts 2 and 4: MRI contrast, skull stripping).
    - "shepp_logan": (array (X, Y) float64 in [0, 1], spacing (1.0, 1.0) mm) (part 2, CT reconstruction).
    """
    key = name.lower()
    if key in ("pydicom_ct", "pydicom_mr"):
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm" if key == "pydicom_ct" else "MR_small.dcm")
        if path is None:
            raise FileNotFoundError(f"pydicom's test file for {name} is missing; reinstall pydicom (`pip install -U pydicom`)")
        return Path(path)
    if key == "mni152":
        return _mni152()
    if key == "shepp_logan":
        from skimage.data import shepp_logan_phantom

        return shepp_logan_phantom().T, (1.0, 1.0)
    raise KeyError(f"unknown sample {name!r}; choose one of {', '.join(SAMPLES)}")


def _mni152() -> dict:
    import nibabel as nib
    import numpy as np
    from nilearn import datasets as nd
    from scipy import ndimage

    paths = {"t1": Path(nd.MNI152_FILE_PATH), "gm": Path(nd.GM_MNI152_FILE_PATH), "wm": Path(nd.WM_MNI152_FILE_PATH)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"nilearn's bundled MNI152 files are missing ({missing}); reinstall nilearn")
    mask_path = cache_dir() / "samples" / "mni152_brain_mask.nii.gz"
    if not mask_path.is_file():
        gm, wm = nib.load(paths["gm"]), nib.load(paths["wm"])
        scale = 255.0 if gm.get_fdata().max() > 1.5 else 1.0
        tissue = (gm.get_fdata() + wm.get_fdata()) / scale
        # closing bridges the thin CSF of the midline fissure and the sulci, as a brain mask should
        brain = ndimage.binary_closing(tissue > 0.5, structure=ndimage.generate_binary_structure(3, 1), iterations=3)
        labels, n = ndimage.label(brain)
        mask = labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1) if n > 1 else labels > 0
        # fill holes (ventricles, CSF spaces): background not connected to the volume's border
        outside, _ = ndimage.label(~mask)
        border = np.unique(np.concatenate([outside[[0, -1]].ravel(), outside[:, [0, -1]].ravel(),
                                           outside[:, :, [0, -1]].ravel()]))
        mask = ~np.isin(outside, border[border > 0])
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = mask_path.with_name(f".mask-{id(mask)}.nii.gz")
        nib.save(nib.Nifti1Image(mask.astype(np.uint8), gm.affine), str(tmp))
        tmp.replace(mask_path)
    paths["mask"] = mask_path
    return paths
