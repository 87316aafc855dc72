"""Synthetic CT series written as real DICOM files (CT Image Storage), with a fake patient identity.

A stand-in, not a scan: a torso-like phantom in Hounsfield units (air, fat, soft tissue, lungs, spine,
a nodule), written slice by slice with UIDs, ImagePositionPatient/ImageOrientationPatient (axial or
oblique), PixelSpacing, SliceThickness and RescaleSlope/Intercept, plus an invented identity (name,
birth date, accession number, institution, a private tag) for chapter 2.2 to de-identify.
Used by chapters 2.2 and 2.3, assignment 2, and tests/test_dicom.py, tests/test_pacs.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
STANDIN_NOTE = "synthetic stand-in: a CT phantom written as DICOM by medlearn, not a patient scan"

_FIRST = ["ANNA", "OLAV", "INGRID", "LARS", "SIGRID", "NILS", "KARI", "ERIK"]
_LAST = ["HANSEN", "JOHANSEN", "OLSEN", "LARSEN", "ANDERSEN", "PEDERSEN", "NILSEN", "BERG"]


def oblique_direction(angle_deg: float = 20.0, axis: str = "x") -> np.ndarray:
    """Return a 3x3 direction matrix (columns: X, Y, Z voxel axes in LPS) tilted by `angle_deg` about `axis`."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    rot = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]], "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
           "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    return np.asarray(rot, dtype=float)


def phantom_hu(shape=(96, 96, 24), seed: int = 0) -> np.ndarray:
    """Return a torso-like CT phantom in HU, float32, axes (X, Y, Z): body, fat, lungs, spine, a nodule."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x = np.linspace(-1, 1, nx)[:, None, None]
    y = np.linspace(-1, 1, ny)[None, :, None]
    z = np.linspace(-1, 1, nz)[None, None, :]
    vol = np.full(shape, -1000.0, dtype=np.float32)  # air
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 <= 1
    vol[np.broadcast_to(body, shape)] = -100.0  # fat
    inner = (x / 0.82) ** 2 + (y / 0.62) ** 2 <= 1
    vol[np.broadcast_to(inner, shape)] = 40.0  # soft tissue
    for cx in (-0.4, 0.4):
        lung = ((x - cx) / 0.3) ** 2 + ((y + 0.05) / 0.45) ** 2 + (z / 1.3) ** 2 <= 1
        vol[lung] = -850.0
    spine = (x / 0.12) ** 2 + ((y - 0.45) / 0.12) ** 2 <= 1
    vol[np.broadcast_to(spine, shape)] = 700.0
    cx, cy, cz = rng.uniform(-0.5, -0.3), rng.uniform(-0.2, 0.1), rng.uniform(-0.3, 0.3)
    nodule = ((x - cx) ** 2 + (y - cy) ** 2 + ((z - cz) * nz / nx) ** 2) <= rng.uniform(0.06, 0.1) ** 2
    vol[nodule] = 30.0
    vol += rng.normal(0, 12, size=shape).astype(np.float32)  # quantum noise
    return vol


def write_ct_series(folder, volume_hu, spacing, *, origin=(0.0, 0.0, 0.0), direction=None,
                    patient_name: str = "NORDMANN^KARI", patient_id: str = "PAT-0001",
                    patient_birth_date: str = "19640412", patient_sex: str = "F",
                    study_uid: str | None = None, series_uid: str | None = None,
                    frame_of_reference_uid: str | None = None, series_number: int = 1,
                    study_description: str = "CT THORAX", series_description: str = "AXIAL 1mm",
                    accession_number: str = "ACC0001", study_date: str = "20240115",
                    institution: str = "Haukeland Fake Hospital", slice_thickness: float | None = None,
                    rescale_intercept: float = -1024.0, rescale_slope: float = 1.0, uid_seed=None) -> list[Path]:
    """Write a CT Image Storage series (one file per slice) and return the file paths, in slice order.

    Chapter 2.2 (and `medlearn.dicom.volume_to_dicom`). `volume_hu` is (X, Y, Z) in HU; `spacing` is
    (sx, sy, sz) mm; `origin` is the LPS position of voxel (0, 0, 0); `direction` holds the X, Y, Z voxel
    axes as columns in LPS (identity = axial; see `oblique_direction`). Stored values are
    (HU - intercept) / slope as 16-bit signed integers. The identity defaults are invented; files are
    written to temporary names and renamed, so an error leaves no partial file.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    from medlearn._atomic import atomic_path

    folder = Path(folder)
    vol = np.asarray(volume_hu, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"write_ct_series needs a 3D (X, Y, Z) volume, got shape {vol.shape}")
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    sx, sy, sz = (float(s) for s in spacing)
    origin = np.asarray(origin, dtype=float)
    entropy = None if uid_seed is None else [str(uid_seed)]

    def uid(tag):
        return generate_uid(entropy_srcs=None if entropy is None else entropy + [tag])

    study_uid = study_uid or uid("study")
    series_uid = series_uid or uid(f"series{series_number}")
    for_uid = frame_of_reference_uid or uid("for")
    stored = np.round((vol - rescale_intercept) / rescale_slope)
    if stored.min() < -32768 or stored.max() > 32767:
        raise ValueError("HU values do not fit 16 bits with this rescale slope/intercept; clip the volume first")
    stored = stored.astype(np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    paths = []
    for k in range(vol.shape[2]):
        sop_uid = uid(f"{series_uid}-{k}") if entropy else generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
        ds.AccessionNumber = accession_number
        ds.Modality = "CT"
        ds.Manufacturer = "medlearn synthetic"
        ds.InstitutionName = institution
        ds.InstitutionAddress = "Jonas Lies vei 65, Bergen"
        ds.ReferringPhysicianName = "LEGE^PER"
        ds.StationName = "CT01"
        ds.StudyDescription, ds.SeriesDescription = study_description, series_description
        ds.OperatorsName = "RADIOGRAF^EVA"
        ds.PatientName, ds.PatientID = patient_name, patient_id
        ds.PatientBirthDate, ds.PatientSex = patient_birth_date, patient_sex
        ds.PatientAge = f"{max(0, int(study_date[:4]) - int(patient_birth_date[:4])):03d}Y"
        ds.OtherPatientIDs = patient_id.replace("PAT", "NO")
        ds.PatientAddress = "Storgata 1, 5003 Bergen"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = f"{slice_thickness if slice_thickness is not None else sz:.6g}"
        ds.KVP = "120"
        ds.DeviceSerialNumber = "SN-4242"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = "1", series_number, k + 1, 1
        pos = origin + k * sz * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([row_dir, col_dir])]
        ds.FrameOfReferenceUID = for_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{float(pos @ normal):.6f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.PixelSpacing = [f"{sy:.6g}", f"{sx:.6g}"]  # (between rows, between columns)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{rescale_intercept:g}", f"{rescale_slope:g}", "HU"
        block = ds.private_block(0x0009, "MEDLEARN FAKE", create=True)
        block.add_new(0x01, "LO", f"{patient_name} (private copy)")  # PHI hiding in a private tag
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # (X, Y) -> rows x columns
        path = folder / f"slice_{k:04d}.dcm"
        with atomic_path(path, suffix=".dcm") as tmp:
            pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def generate(root: Path, *, n: int | None = None, seed: int = 0, fast: bool = False) -> "pandas.DataFrame":
    """Write `n` synthetic CT series (patients with one or two studies, some oblique); return their table.

    Chapters 2.2-2.3 and assignment 2. One row per series: img_path (the series folder), patient_id,
    patient_name, study_uid, series_uid, n_slices, spacing (sx, sy, sz), oblique, split, is_val.
    Series i belongs to patient i // 3; a patient's first two series share a study, the third opens a
    second study. Default n: 6 (2 patients, 4 studies) of 128x128x40; fast: 4 (2 patients, 3 studies) of 48x48x12.
    """
    import pandas as pd
    from pydicom.uid import generate_uid

    root = Path(root)
    n = n if n is not None else (4 if fast else 6)
    shape = (48, 48, 12) if fast else (128, 128, 40)
    rng = np.random.default_rng(seed)
    rows = []
    studies: dict[int, str] = {}
    for i in range(n):
        p = i // 3
        study = i % 3 == 2  # a patient's first two series share a study; the third is a later study
        key = p * 10 + int(study)
        studies.setdefault(key, generate_uid(entropy_srcs=[str(seed), "study", str(key)]))
        sx = float(rng.choice([0.7, 0.8, 0.9]))
        sz = float(rng.choice([1.0, 1.25, 2.5]))
        oblique = i % 2 == 1
        direction = oblique_direction(15.0 + 5 * i, "x") if oblique else np.eye(3)
        origin = (-shape[0] * sx / 2, -shape[1] * sx / 2, -100.0 + 10 * i)
        pid = f"PAT-{seed:02d}{p:03d}"
        name = f"{_LAST[p % len(_LAST)]}^{_FIRST[(p + seed) % len(_FIRST)]}"
        series_uid = generate_uid(entropy_srcs=[str(seed), "series", str(i)])
        folder = root / pid / f"study{int(study) + 1}" / f"series{i:02d}"
        if (folder / "slice_0000.dcm").exists():  # regenerate cleanly: no stale slices from a larger run
            for old in folder.glob("*.dcm"):
                old.unlink()
        write_ct_series(folder, phantom_hu(shape, seed=seed * 100 + i), (sx, sx, sz), origin=origin,
                        direction=direction, patient_name=name, patient_id=pid, study_uid=studies[key],
                        series_uid=series_uid, series_number=i + 1,
                        series_description=("OBLIQUE" if oblique else "AXIAL") + f" {sz:g}mm",
                        accession_number=f"ACC{seed:02d}{key:04d}", uid_seed=f"{seed}-{i}")
        rows.append({"img_path": str(folder), "patient_id": pid, "patient_name": name,
                     "study_uid": studies[key], "series_uid": series_uid, "n_slices": shape[2],
                     "spacing": (sx, sx, sz), "oblique": oblique})
    df = pd.DataFrame(rows)
    df["split"] = ["train" if i % 3 else "test" for i in range(len(df))]
    df["is_val"] = False
    return df
