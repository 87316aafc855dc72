"""medlearn.dicom and the synthetic CT series writer: geometry, NIfTI round trip, clear errors, de-identification."""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

from medlearn import dicom  # noqa: E402
from medlearn.data.synthetic import ct_series  # noqa: E402


def _sitk_volume(folder: Path):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    return img, np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))


def _assert_same_geometry(vol, img, arr):
    assert vol.shape == arr.shape
    np.testing.assert_allclose(vol.spacing, img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(vol.direction.ravel(), img.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(vol.array, arr, atol=1e-3)


@pytest.fixture(scope="module")
def series_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct_series")
    df = ct_series.generate(root, fast=True, seed=3)
    return root, df


def _copy_series(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- geometry
def test_real_ct_series_matches_simpleitk(shared_data, tmp_path):
    src = shared_data / "dicom_ct_liver_seg" / "ct"
    # shuffle the files under uninformative names: sorting must come from geometry, not names
    files = sorted(src.glob("*.dcm"))
    random.Random(0).shuffle(files)
    for i, f in enumerate(files):
        shutil.copy(f, tmp_path / f"x{i}.dcm")
    vol = dicom.read_series(tmp_path)
    img, arr = _sitk_volume(src)
    _assert_same_geometry(vol, img, arr)
    assert vol.meta["Modality"] == "CT"
    assert -1100 < float(np.median(vol.array)) < 200  # rescaled to HU, not raw stored values


@pytest.mark.parametrize("angle", [0.0, 25.0])
def test_written_series_matches_simpleitk_and_input(tmp_path, angle):
    hu = ct_series.phantom_hu((40, 32, 10), seed=1)
    direction = ct_series.oblique_direction(angle, "x") @ ct_series.oblique_direction(angle / 2, "z")
    spacing, origin = (0.7, 0.9, 2.5), (-20.0, 12.5, -300.0)
    paths = ct_series.write_ct_series(tmp_path / "s", hu, spacing, origin=origin, direction=direction,
                                      slice_thickness=5.0)  # thickness != step: must not be used
    random.Random(1).shuffle(paths)
    vol = dicom.read_series(paths)
    img, arr = _sitk_volume(tmp_path / "s")
    _assert_same_geometry(vol, img, arr)
    np.testing.assert_allclose(vol.spacing, spacing, atol=1e-4)
    np.testing.assert_allclose(vol.origin, origin, atol=1e-4)
    np.testing.assert_allclose(vol.direction, direction, atol=1e-6)
    np.testing.assert_allclose(vol.array, np.round(hu), atol=1e-3)


def test_generate_counts_and_identity(series_root):
    root, df = series_root
    table = dicom.list_series(root)
    assert len(table) == len(df) == 4
    assert table.PatientID.nunique() == 2 and table.StudyInstanceUID.nunique() == 3
    assert df.oblique.any() and (~df.oblique).any()
    ds = pydicom.dcmread(next(Path(df.img_path[0]).glob("*.dcm")))
    assert ds.SOPClassUID == ct_series.CT_IMAGE_STORAGE and ds.PatientName and ds.PatientBirthDate


def test_nifti_round_trip_keeps_geometry_and_voxels(series_root, tmp_path):
    _, df = series_root
    vol = dicom.read_series(df.img_path[1])  # oblique
    path = dicom.to_nifti(vol, tmp_path / "ct.nii.gz")
    back = dicom.from_nifti(path)
    _assert_same_geometry(back, vol.to_sitk(), vol.array)
    import nibabel as nib

    np.testing.assert_allclose(nib.load(path).affine, vol.affine_ras, atol=1e-3)  # NIfTI is RAS
    files = dicom.volume_to_dicom(back, tmp_path / "dcm", patient_id="NEW")
    again = dicom.read_series(files)
    np.testing.assert_allclose(again.array, vol.array, atol=1e-3)
    assert again.meta["SeriesInstanceUID"] != vol.meta["SeriesInstanceUID"]  # identity is lost in NIfTI


# ---------------------------------------------------------------- clear errors
def test_mixed_series_error(series_root, tmp_path):
    _, df = series_root
    for i in (0, 1):
        for f in Path(df.img_path[i]).glob("*.dcm"):
            shutil.copy(f, tmp_path / f"{i}_{f.name}")
    with pytest.raises(dicom.DicomSeriesError, match="mixes 2 series.*series_uid"):
        dicom.read_series(tmp_path)
    vol = dicom.read_series(tmp_path, series_uid=df.series_uid[0])
    assert vol.shape[2] == df.n_slices[0]


@pytest.mark.parametrize("attribute, index", [("ImagePositionPatient", 3), ("ImageOrientationPatient", 0)])
def test_missing_geometry_error(series_root, tmp_path, attribute, index):
    folder = _copy_series(Path(series_root[1].img_path[0]), tmp_path / "s")
    f = sorted(folder.glob("*.dcm"))[index]
    ds = pydicom.dcmread(f)
    delattr(ds, attribute)
    ds.save_as(f)
    with pytest.raises(dicom.DicomSeriesError, match=rf"{f.name} has no {attribute}"):
        dicom.read_series(folder)


def test_nonuniform_gap_error_and_opt_in(series_root, tmp_path):
    folder = _copy_series(Path(series_root[1].img_path[0]), tmp_path / "s")
    missing = sorted(folder.glob("*.dcm"))[5]
    missing.unlink()
    with pytest.raises(dicom.DicomSeriesError, match="non-uniform slice gaps.*allow_nonuniform=True"):
        dicom.read_series(folder)
    vol = dicom.read_series(folder, allow_nonuniform=True)
    assert len(vol.meta["slice_gaps"]) == vol.shape[2] - 1


def test_inconsistent_shape_error(series_root, tmp_path):
    folder = _copy_series(Path(series_root[1].img_path[0]), tmp_path / "s")
    f = sorted(folder.glob("*.dcm"))[2]
    ds = pydicom.dcmread(f)
    arr = ds.pixel_array[:-4, :]
    ds.Rows = arr.shape[0]
    ds.PixelData = arr.tobytes()
    ds.save_as(f)
    with pytest.raises(dicom.DicomSeriesError, match=rf"{f.name} is {arr.shape[0]}x48 pixels.*inconsistent"):
        dicom.read_series(folder)


@pytest.mark.parametrize("cut", [60, 5000])
def test_truncated_file_error(series_root, tmp_path, cut):
    folder = _copy_series(Path(series_root[1].img_path[0]), tmp_path / "s")
    f = sorted(folder.glob("*.dcm"))[1]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - cut] if cut > 100 else data[:cut])
    with pytest.raises(dicom.DicomSeriesError, match=rf"{f.name}.*(truncated|not a DICOM file)"):
        dicom.read_series(folder)


def test_not_dicom_error(series_root, tmp_path):
    folder = _copy_series(Path(series_root[1].img_path[0]), tmp_path / "s")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(dicom.DicomSeriesError, match="notes.txt is not a DICOM file"):
        dicom.read_series(folder)


def test_compressed_without_decoder_error(series_root, tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import MPEG4HP41

    folder = _copy_series(Path(series_root[1].img_path[0]), tmp_path / "s")
    f = sorted(folder.glob("*.dcm"))[0]
    ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41  # H.264 video: pydicom has no decoder for it
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01" + bytes(200)])
    ds["PixelData"].VR = "OB"
    ds.save_as(f, enforce_file_format=True)
    with pytest.raises(dicom.DicomSeriesError, match=rf"{f.name} is compressed with transfer syntax .*pip install"):
        dicom.read_series(folder)


def test_compressed_with_decoder_reads():
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    assert ds.file_meta.TransferSyntaxUID.is_compressed
    assert dicom.pixels(ds).shape == (ds.Rows, ds.Columns)


# ---------------------------------------------------------------- de-identification
def _pydicom_test_files():
    import pydicom.data

    root = Path(pydicom.data.__file__).parent
    return sorted(f for f in root.rglob("*") if f.is_file() and f.suffix not in (".py", ".pyc"))


def _read_any(f):
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(f)
    except InvalidDicomError:
        ds = pydicom.dcmread(f, force=True)  # DICOM without preamble/meta is still DICOM
        return ds if len(ds) >= 5 and "SOPClassUID" in ds else None
    except Exception:
        return None


def test_deidentify_every_readable_pydicom_test_file():
    files = _pydicom_test_files()
    exact, masked = dicom._actions()
    readable, unreadable, acted, phi_before = 0, [], 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            ds = _read_any(f)
            if ds is None:
                unreadable.append(f.name)
                continue
            readable += 1
            before = dicom.phi_audit(ds, ds)
            phi_before += len(before)
            out = dicom.deidentify(ds, salt="test-salt")
            problems = dicom.phi_audit(out, ds)
            assert problems == [], f"{f}: {problems[:5]}"
            acted += sum(1 for el in dicom._all_elements(ds) if dicom._action_for(el.tag, exact, masked)
                         or el.tag.is_private)
            if "PixelData" in ds:
                assert dicom.pixel_hash(out) == dicom.pixel_hash(ds), f"{f}: pixel data changed"
            assert out.PatientIdentityRemoved == "YES"
            assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    print(f"\nde-identification audit: {len(files)} files tried, {readable} readable, "
          f"{acted} profile/private attributes acted on, PHI left 0; unreadable ({len(unreadable)}): "
          f"{', '.join(sorted(unreadable))}")
    assert readable >= 150 and phi_before > 0 and acted > 1000
    # what pydicom cannot read is reported above; nearly all of it is not DICOM (json, text, icc, gzip)
    assert sum(n.endswith(".dcm") for n in unreadable) <= 2, unreadable


def test_deidentify_synthetic_series_consistently(series_root, tmp_path):
    root, df = series_root
    table = dicom.deidentify_files(root, tmp_path / "out", salt="proj-1")
    originals = dicom.list_series(root)
    cleaned = dicom.list_series(tmp_path / "out")
    # the same structure: patients, studies and series map one to one; no original UID or ID survives
    assert len(cleaned) == len(originals)
    assert cleaned.PatientID.nunique() == originals.PatientID.nunique()
    assert cleaned.StudyInstanceUID.nunique() == originals.StudyInstanceUID.nunique()
    assert not set(cleaned.SeriesInstanceUID) & set(originals.SeriesInstanceUID)
    assert not set(cleaned.PatientID) & set(originals.PatientID)
    assert table.research_id.str.startswith("RID-").all()
    # geometry survives de-identification: the same volume, still readable with FrameOfReference intact
    uid_map = dict(zip(originals.SeriesInstanceUID, cleaned.SeriesInstanceUID))
    vol_a = dicom.read_series(df.img_path[1])
    vol_b = dicom.read_series(tmp_path / "out", series_uid=uid_map[df.series_uid[1]])
    np.testing.assert_array_equal(vol_a.array, vol_b.array)
    np.testing.assert_allclose(vol_a.affine, vol_b.affine)
    ds = pydicom.dcmread(next((tmp_path / "out").glob("*.dcm")))
    assert "PatientBirthDate" not in ds or not ds.PatientBirthDate
    assert not any(el.tag.is_private for el in ds)
    # deterministic pseudonyms: same salt, same research ID; another salt, another
    assert dicom.research_id("PAT-1", "a") == dicom.research_id("PAT-1", "a") != dicom.research_id("PAT-1", "b")


def test_audit_catches_leftovers(series_root):
    ds = pydicom.dcmread(next(Path(series_root[1].img_path[0]).glob("*.dcm")))
    out = dicom.deidentify(ds, salt="x")
    out.InstitutionName = ds.InstitutionName
    out.StudyInstanceUID = ds.StudyInstanceUID
    problems = dicom.phi_audit(out, ds)
    assert any("InstitutionName" in p for p in problems)
    assert any("StudyInstanceUID" in p for p in problems)
    assert dicom.phi_audit(ds, ds)  # the original fails


def test_header_table_fig_3_5():
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    t = dicom.header_table(ds)
    assert list(t.columns) == ["tag", "VR", "name", "value"]
    row = t[t.name == "PatientName"].iloc[0]
    assert row.tag == "(0010,0010)" and row.VR == "PN" and row.value == str(ds.PatientName)
    assert t[t.name == "PixelData"].value.iloc[0].endswith("bytes>")


def test_volume_to_dicom_mr_keeps_world_positions_of_a_sagittal_head(tmp_path):
    """Chapter 6.2 writes an IXI head (stored PSR, sagittal slices) as an MR series: every voxel must
    land at the same LPS point after the round trip, whatever order read_series chooses."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 3000, size=(12, 10, 8)).astype(np.float32)
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) @ np.diag([1, 1, -1])
    vol = dicom.Volume(arr, (2.0, 1.5, 3.0), (10.0, -20.0, 5.0), direction)
    files = dicom.volume_to_dicom(vol, tmp_path / "mr", modality="MR")
    back = dicom.read_series(files)
    assert back.meta["Modality"] == "MR"
    import pydicom

    assert pydicom.dcmread(files[0]).SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    # same image in world space: map every voxel of `back` to the index of `vol`
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in back.shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ back.affine[:3, :3].T + back.affine[:3, 3]
    src = np.rint((world - vol.affine[:3, 3]) @ np.linalg.inv(vol.affine[:3, :3]).T).astype(int)
    np.testing.assert_array_equal(back.array[tuple(ijk.T)], arr[tuple(src.T)])
    with pytest.raises(dicom.DicomSeriesError, match="CT or MR"):
        dicom.volume_to_dicom(vol, tmp_path / "us", modality="US")
