"""DICOM for deep learning: a series becomes a volume with its geometry; NIfTI both ways; de-identification.

Introduced in part 2 ("2.2 DICOM"); used again in part 6 (deployment: DICOM in, DICOM SEG out).

Axis order and coordinates, stated once for the whole module:

* `Volume.array` is indexed **(X, Y, Z)** = (column, row, slice), the order of NIfTI, TorchIO and
  `medlearn.viz`. `Volume.spacing` is `(sx, sy, sz)` in mm in the same order. (SimpleITK's
  `GetArrayFromImage` and a stack of `pydicom` pixel arrays are (Z, Y, X); `to_sitk` handles that.)
* Coordinates are DICOM's patient system **LPS** (x grows to the patient's Left, y to Posterior,
  z to Superior), in mm. `Volume.origin` is the centre of voxel (0, 0, 0); the columns of
  `Volume.direction` are the unit vectors of the X, Y and Z voxel axes in LPS, exactly as
  SimpleITK stores them. NIfTI files are RAS: `affine_ras` (and SimpleITK's NIfTI writer) flips x and y.

Errors raised here are `DicomSeriesError` (a `ValueError`); each names the file and says how to fix it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = [
    "DicomSeriesError",
    "Volume",
    "read_series",
    "list_series",
    "to_nifti",
    "from_nifti",
    "volume_to_dicom",
    "header_table",
    "deidentify",
    "deidentify_files",
    "phi_audit",
    "basic_profile",
    "pixel_hash",
]

# Relative tolerance for "uniform" slice spacing: gaps may differ from the median by this fraction.
SLICE_GAP_TOLERANCE = 0.01


class DicomSeriesError(ValueError):
    """A DICOM file or series cannot become a volume; the message names the file and the fix."""


# --------------------------------------------------------------------------------------------
# The noun: a volume with geometry
# --------------------------------------------------------------------------------------------
@dataclass
class Volume:
    """A 3D image with its geometry: array (X, Y, Z), spacing (mm), origin and direction (LPS).

    Built by `read_series` and `from_nifti` (chapter 2.2). `to_sitk()` gives a SimpleITK image,
    `to_nifti(path)` writes a NIfTI file, `affine` / `affine_ras` give the 4x4 voxel-to-world maps.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def __post_init__(self):
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The array's shape, (X, Y, Z)."""
        return tuple(self.array.shape)

    @property
    def affine(self) -> np.ndarray:
        """Return the 4x4 map from voxel index (i, j, k) to LPS mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction @ np.diag(self.spacing)
        a[:3, 3] = self.origin
        return a

    @property
    def affine_ras(self) -> np.ndarray:
        """Return the 4x4 map from voxel index to RAS mm (what a NIfTI header stores)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.affine

    @property
    def orientation(self) -> str:
        """Return the three-letter LPS orientation code of the axes, e.g. 'LPS' for axial DICOM."""
        import nibabel as nib

        # nibabel speaks RAS: convert the code of the RAS affine back to the letters DICOM uses
        return "".join(nib.aff2axcodes(self.affine_ras))

    def to_sitk(self):
        """Return a SimpleITK image with the same voxels and geometry (its array is (Z, Y, X))."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(self.array, (2, 1, 0))))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(tuple(self.direction.ravel()))
        return img

    @classmethod
    def from_sitk(cls, img, meta: dict | None = None) -> "Volume":
        """Return a Volume from a SimpleITK image (array transposed from (Z, Y, X) to (X, Y, Z))."""
        import SimpleITK as sitk

        arr = np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))
        return cls(arr, img.GetSpacing(), img.GetOrigin(), np.array(img.GetDirection()).reshape(3, 3),
                   meta=dict(meta or {}))

    def to_nifti(self, path) -> Path:
        """Write the volume as NIfTI (RAS in the header) and return the path; see `to_nifti`."""
        return to_nifti(self, path)

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (f"Volume(shape (X,Y,Z)={self.shape}, spacing=({sp}) mm, "
                f"origin LPS={tuple(round(o, 2) for o in self.origin)}, orientation={self.orientation}, "
                f"dtype={self.array.dtype})")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def _files(source) -> list[Path]:
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            if not files:
                raise DicomSeriesError(f"folder {p} holds no files; point read_series at the folder of "
                                       f"the .dcm files of one series")
            return files
        if p.is_file():
            return [p]
        raise DicomSeriesError(f"{p} does not exist; check the path")
    files = [Path(f) for f in source]
    if not files:
        raise DicomSeriesError("no files were given; pass a folder or a non-empty list of .dcm paths")
    return files


def _read(path: Path, stop_before_pixels: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as e:
        raise DicomSeriesError(
            f"{path} is not a DICOM file ({e}); remove it from the series folder, or, if it is DICOM "
            f"without the 128-byte preamble, read it with pydicom.dcmread(path, force=True)") from e
    except Exception as e:  # truncated or corrupt: pydicom raises EOFError, OSError, struct.error ...
        raise DicomSeriesError(
            f"{path} cannot be read ({type(e).__name__}: {e}); the file is truncated or corrupt - "
            f"copy or export it again from the source (PACS, scanner, archive)") from e


def _sop_name(ds) -> str:
    from pydicom.uid import UID

    return UID(str(ds.get("SOPClassUID", ""))).name


def _is_image(ds) -> bool:
    # Without PixelData an image-storage object (or one whose header still has Rows) was cut short
    return "Rows" in ds or "Image Storage" in _sop_name(ds)


def pixels(ds, path: Path | str = "<dataset>") -> np.ndarray:
    """Return the stored pixel array of one dataset (rows, columns), with clear errors.

    Chapter 2.2 (pixel data and transfer syntaxes).
    """
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds and _is_image(ds):
        raise DicomSeriesError(f"{path} is an image ({_sop_name(ds)}) but has no complete PixelData: the file is truncated - "
                               f"copy or export it again")
    if "PixelData" not in ds:
        raise DicomSeriesError(f"{path} has no PixelData (it is a {getattr(ds, 'SOPClassUID', None)!r} "
                               f"object, not an image); leave it out of the series")
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as e:
        if ts is not None and ts.is_compressed:
            raise DicomSeriesError(
                f"{path} is compressed with transfer syntax {ts.name} ({ts}) and no installed decoder "
                f"can read it ({e}). Fix: `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` "
                f"(JPEG, JPEG-LS, JPEG 2000) or `pip install python-gdcm`; or decompress the file first "
                f"with `gdcmconv --raw in.dcm out.dcm` or DCMTK's `dcmdjpeg`") from e
        raise DicomSeriesError(f"{path}: pixel data cannot be decoded ({e}); the file is truncated or "
                               f"corrupt - export it again") from e
    except ValueError as e:  # pydicom: "The length of the pixel data ... doesn't match the expected length"
        raise DicomSeriesError(f"{path}: pixel data is truncated or inconsistent with Rows/Columns/Bits "
                               f"({e}); export the file again") from e


def list_series(source) -> "pandas.DataFrame":
    """Return one row per series in a folder: patient, study, series UIDs, modality, file count.

    Chapter 2.2 (the patient/study/series/instance model) and assignment 2. Headers only; pixel data
    are not read. Unreadable files raise `DicomSeriesError` naming the file.
    """
    import pandas as pd

    rows = []
    for f in _files(source):
        ds = _read(f, stop_before_pixels=True)
        rows.append({"PatientID": str(ds.get("PatientID", "")), "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
                     "SeriesInstanceUID": str(ds.get("SeriesInstanceUID", "")), "Modality": str(ds.get("Modality", "")),
                     "SeriesDescription": str(ds.get("SeriesDescription", "")), "file": str(f)})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    keys = ["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription"]
    return df.groupby(keys, sort=True).size().rename("n_files").reset_index()


def read_series(source, series_uid: str | None = None, *, allow_nonuniform: bool = False,
                rescale: bool = True) -> Volume:
    """Return a `Volume` (array (X, Y, Z), spacing, LPS origin and direction) from one DICOM series.

    Chapter 2.2. `source` is a folder or a list of files. Slices are sorted by their position along
    the slice normal (the cross product of the two ImageOrientationPatient vectors), never by
    InstanceNumber or file name; the slice spacing comes from those positions, not SliceThickness
    (which is the thickness of the reconstructed slab and may differ from the step between slices).
    With `rescale=True`, stored values become RescaleSlope * value + RescaleIntercept (HU for CT), as float32.

    Raises `DicomSeriesError` for: unreadable or truncated files, several series in `source` without
    `series_uid`, missing ImagePositionPatient/ImageOrientationPatient/PixelSpacing, slices with different
    orientations or shapes, duplicate slice positions, gaps that differ by more than 1 %
    (unless `allow_nonuniform=True`: then the mean step is used and `meta["slice_gaps"]` lists the gaps),
    and compressed transfer syntaxes without an installed decoder.
    """
    files = _files(source)
    where = str(source) if isinstance(source, (str, Path)) else f"the {len(files)} files given (first {files[0]})"
    headers = [(f, _read(f)) for f in files]
    by_series: dict[str, list] = {}
    for f, ds in headers:
        by_series.setdefault(str(ds.get("SeriesInstanceUID", "<no SeriesInstanceUID>")), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in by_series:
            raise DicomSeriesError(f"series {series_uid} is not in {where}; the series there are: "
                                   f"{sorted(by_series)}")
        chosen = by_series[series_uid]
    elif len(by_series) > 1:
        desc = "; ".join(f"{uid} ({len(v)} files, e.g. {v[0][0].name})" for uid, v in by_series.items())
        raise DicomSeriesError(f"{where} mixes {len(by_series)} series: {desc}. Pass "
                               f"series_uid=... (see medlearn.dicom.list_series) or put each series in its own folder")
    else:
        chosen = next(iter(by_series.values()))

    for f, ds in chosen:
        if "PixelData" not in ds:
            if _is_image(ds):
                raise DicomSeriesError(f"{f} is an image ({_sop_name(ds)}) but has no complete PixelData: the "
                                       f"file is truncated - copy or export it again from the source")
            raise DicomSeriesError(f"{f} has no PixelData (SOP class {ds.get('SOPClassUID', '?')}); it is not "
                                   f"an image slice - leave it out or pass series_uid=...")
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if kw not in ds or ds.data_element(kw).value in (None, ""):
                raise DicomSeriesError(
                    f"{f} has no {kw}, so its place in 3D space is unknown. Fix: read the slices as separate "
                    f"2D images with pydicom (no volume geometry), or repair the export so every slice carries "
                    f"ImagePositionPatient, ImageOrientationPatient and PixelSpacing")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DicomSeriesError(f"{f} is a multi-frame object ({ds.NumberOfFrames} frames); read it with "
                                   f"highdicom (hd.imread) instead of as a series of single-frame slices")

    f0, ds0 = chosen[0]
    iop0 = np.array(ds0.ImageOrientationPatient, dtype=float)
    shape0 = (int(ds0.Rows), int(ds0.Columns))
    for f, ds in chosen[1:]:
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        if not np.allclose(iop, iop0, atol=1e-4):
            raise DicomSeriesError(f"{f} has ImageOrientationPatient {list(iop)} but {f0.name} has {list(iop0)}: "
                                   f"the slices are not parallel. Split the series by orientation (e.g. a scout "
                                   f"or a localizer mixed in) and read each part separately")
        if (int(ds.Rows), int(ds.Columns)) != shape0:
            raise DicomSeriesError(f"{f} is {ds.Rows}x{ds.Columns} pixels but {f0.name} is {shape0[0]}x{shape0[1]}: "
                                   f"inconsistent pixel shapes in one series. Remove the odd file (often a "
                                   f"localizer or a secondary capture) or pass series_uid=...")
    row_dir, col_dir = iop0[:3], iop0[3:]
    normal = np.cross(row_dir, col_dir)
    pos = np.array([np.array(ds.ImagePositionPatient, dtype=float) for _, ds in chosen])
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    chosen = [chosen[i] for i in order]
    dist, pos = dist[order], pos[order]
    gaps = np.diff(dist)
    meta: dict = {}
    if len(chosen) == 1:
        sz = float(ds0.get("SpacingBetweenSlices", ds0.get("SliceThickness", 1.0)) or 1.0)
    else:
        if np.any(np.abs(gaps) < 1e-3):
            i = int(np.argmin(np.abs(gaps)))
            raise DicomSeriesError(f"{chosen[i][0]} and {chosen[i + 1][0]} lie at the same position along the "
                                   f"slice normal ({dist[i]:.3f} mm): duplicate slices, or two acquisitions in one "
                                   f"series. Remove the duplicates, or split by AcquisitionNumber / EchoNumbers")
        median = float(np.median(gaps))
        worst = int(np.argmax(np.abs(gaps - median)))
        if abs(gaps[worst] - median) > SLICE_GAP_TOLERANCE * median:
            if not allow_nonuniform:
                raise DicomSeriesError(
                    f"non-uniform slice gaps in {where}: between {chosen[worst][0].name} and "
                    f"{chosen[worst + 1][0].name} the step is {gaps[worst]:.3f} mm, elsewhere {median:.3f} mm "
                    f"(gaps: {sorted({float(g) for g in np.round(gaps, 3)})} mm). A slice is missing or the series mixes "
                    f"stacks. Fix: find the missing file, split the series, or pass allow_nonuniform=True to "
                    f"use the mean step (geometry is then approximate; resample before measuring)")
            meta["slice_gaps"] = [float(g) for g in gaps]
        sz = float(np.mean(gaps))
        # positions must lie on the normal through the first slice; a tilted gantry breaks this
        lateral = np.linalg.norm((pos - pos[0]) - np.outer(dist - dist[0], normal), axis=1).max()
        if lateral > 0.01 * max(sz, 1e-6) * len(chosen) and lateral > 0.05:
            meta["gantry_tilt_shift_mm"] = float(lateral)

    slices = []
    for f, ds in chosen:
        px = pixels(ds, f)
        if px.shape != shape0:
            raise DicomSeriesError(f"{f}: pixel data has shape {px.shape}, header says {shape0}; export it again")
        if rescale and ("RescaleSlope" in ds or "RescaleIntercept" in ds):
            px = px.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        slices.append(px.T)  # (rows, cols) = (Y, X)  ->  (X, Y)
    array = np.stack(slices, axis=-1)
    sy, sx = (float(v) for v in ds0.PixelSpacing)  # PixelSpacing = (between rows, between columns)
    keep = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription",
            "SliceThickness", "Manufacturer", "FrameOfReferenceUID")
    meta.update({k: (str(ds0.get(k)) if k in ds0 else None) for k in keep})
    meta["slice_positions_mm"] = [float(d) for d in dist]
    direction = np.stack([row_dir, col_dir, normal], axis=1)
    return Volume(array, (sx, sy, sz), tuple(pos[0]), direction, meta=meta, files=[f for f, _ in chosen])


# --------------------------------------------------------------------------------------------
# NIfTI both ways
# --------------------------------------------------------------------------------------------
def to_nifti(volume: Volume, path) -> Path:
    """Write `volume` as NIfTI (via SimpleITK, which turns LPS into the header's RAS); return the path.

    Chapter 2.2. What is lost: everything but voxels, spacing, origin and direction - patient, study and
    series identity and UIDs, acquisition parameters, per-slice rescale, window presets, private tags.
    The file is written to a temporary name and renamed, so a failure leaves no partial file.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise DicomSeriesError(f"{path}: a NIfTI file name ends in .nii or .nii.gz; rename it")
    path.parent.mkdir(parents=True, exist_ok=True)
    from medlearn._atomic import atomic_path

    with atomic_path(path, suffix=".nii.gz" if path.name.endswith(".gz") else ".nii") as tmp:
        sitk.WriteImage(volume.to_sitk(), str(tmp))
    return path


def from_nifti(path) -> Volume:
    """Return a `Volume` (array (X, Y, Z), LPS geometry) read from a NIfTI (or NRRD, MHA) file. Chapter 2.2."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise DicomSeriesError(f"{path} does not exist; check the path")
    return Volume.from_sitk(sitk.ReadImage(str(path)), meta={"source": str(path)})


def volume_to_dicom(volume: Volume, folder, modality: str = "CT", **kw) -> list[Path]:
    """Write `volume` as a CT (values in HU) or MR Image Storage series into `folder`; return the paths.

    Chapter 2.2 (NIfTI -> DICOM and back); chapter 6.2 writes a held-out IXI head as an MR series.
    Identity and UIDs are new (NIfTI does not carry them); keyword arguments go to
    `medlearn.data.synthetic.ct_series.write_ct_series` (patient_id, ...). With `modality="MR"` the
    stored values are the volume's, rounded (no rescale), and the SOP class is MR Image Storage.
    """
    from medlearn.data.synthetic.ct_series import write_ct_series

    if modality not in ("CT", "MR"):
        raise DicomSeriesError(f"volume_to_dicom writes CT or MR series, not {modality!r}")
    if modality == "MR":
        kw = {"rescale_intercept": 0.0, "study_description": "MR HEAD", "series_description": "T1",
              **kw}
    paths = write_ct_series(folder, volume.array, volume.spacing, origin=volume.origin,
                            direction=volume.direction, **kw)
    if modality == "MR":
        import pydicom

        mr = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
        for p in paths:
            ds = pydicom.dcmread(p)
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = mr
            ds.Modality, ds.BodyPartExamined = "MR", "HEAD"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
            for kw_ in ("KVP", "RescaleType", "RescaleIntercept", "RescaleSlope"):
                if kw_ in ds:
                    delattr(ds, kw_)
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "SP", ""
            ds.MRAcquisitionType = "3D"
            ds.WindowCenter = f"{float(np.percentile(volume.array, 99)) / 2:.0f}"
            ds.WindowWidth = f"{float(np.percentile(volume.array, 99)):.0f}"
            ds.save_as(p, enforce_file_format=True)
    return paths


# --------------------------------------------------------------------------------------------
# Looking at a header: thesis Fig. 3.5
# --------------------------------------------------------------------------------------------
def header_table(ds, max_value_len: int = 40, keywords: Iterable[str] | None = None) -> "pandas.DataFrame":
    """Return a DataFrame of a dataset's top-level elements: tag, VR, keyword (name), value.

    Chapter 2.2 (thesis Fig. 3.5: the header as a table beside the image). Pixel data and long
    values are abbreviated; pass `keywords` to keep only those attributes.
    """
    import pandas as pd

    rows = []
    for el in ds:
        if keywords is not None and el.keyword not in keywords:
            continue
        if el.VR == "SQ":
            value = f"<sequence of {len(el.value)} item(s)>"
        elif el.tag == 0x7FE00010:
            value = f"<{len(el.value)} bytes>"
        else:
            value = str(el.value)
        if len(value) > max_value_len:
            value = value[: max_value_len - 1] + "…"
        rows.append({"tag": f"({el.tag.group:04X},{el.tag.element:04X})", "VR": el.VR,
                     "name": el.keyword or el.name, "value": value})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# De-identification: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile
# --------------------------------------------------------------------------------------------
_PROFILE_VERSION = "dicomfields_2026c"


def basic_profile() -> dict[str, list[tuple]]:
    """Return the Basic Profile table (PS3.15 Table E.1-1) as {action code: [tags]}.

    Chapter 2.2. The table is the one the `dicom-anonymizer` package transcribes from the standard
    (edition 2026c); action codes: D (replace with a dummy), Z (empty), X (remove), U (new UID) and
    the combined codes. Tags are (group, element) or, for repeating groups, (group, element, group_mask,
    element_mask).
    """
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    table = dicom_anonymization_database_selector(_PROFILE_VERSION)
    return {k.removesuffix("_TAGS"): list(v) for k, v in table.items() if k != "ALL_TAGS"}


def _actions() -> tuple[dict[tuple[int, int], str], list[tuple[tuple, str]]]:
    exact, masked = {}, []
    for code, tags in basic_profile().items():
        for t in tags:
            if len(t) == 2:
                exact[(t[0], t[1])] = code
            else:
                masked.append((t, code))
    return exact, masked


def _action_for(tag, exact, masked) -> str | None:
    key = (tag.group, tag.element)
    if key in exact:
        return exact[key]
    for (g, e, gm, em), code in masked:
        if tag.group & gm == g & gm and tag.element & em == e & em:
            return code
    return None


_DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS", "LO": "ANONYMOUS",
          "SH": "ANONYMOUS", "LT": "ANONYMOUS", "ST": "ANONYMOUS", "UT": "ANONYMOUS", "CS": "ANONYMOUS",
          "AE": "ANONYMOUS", "UC": "ANONYMOUS", "AS": "000Y", "DS": "0", "IS": "0", "UI": None,
          "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0, "FD": 0.0}


def _new_uid(old: str, salt: str) -> str:
    import uuid

    # deterministic: the same UID and salt always give the same new UID, so references across the
    # files of a study (series, frame of reference, referenced SOP instances) stay consistent.
    # A name-based UUID (RFC 4122, SHA-1) under the 2.25 root (PS3.5 B.2): unique without a registered root.
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{salt}|{old}').int}"


def research_id(patient_id: str, salt: str, prefix: str = "RID") -> str:
    """Return a pseudonymous research ID for a patient: a salted SHA-256 of the original ID.

    Chapter 2.2. The same patient and salt always give the same ID, so a patient's studies stay linked;
    without the salt (keep it with the project's key holder, not with the data) the ID cannot be reversed.
    """
    digest = hashlib.sha256(f"{salt}|{patient_id}".encode()).hexdigest()[:10].upper()
    return f"{prefix}-{digest}"


def deidentify(ds, *, salt: str, patient_id: str | None = None, method: str | None = None):
    """Return a de-identified copy of a pydicom Dataset (PS3.15 Basic Application Level Confidentiality Profile).

    Chapter 2.2 and assignment 2. Every attribute of Table E.1-1 gets its action, in sequences too:
    X removed, Z emptied, D replaced by a dummy, U replaced by a new UID derived from the old one and
    `salt` (consistent across all files of a study). Private tags are removed. PatientName and PatientID
    become the pseudonymous research ID (`research_id`, or `patient_id` when given). Group 0012 records
    what was done: PatientIdentityRemoved = YES, DeidentificationMethod, and
    DeidentificationMethodCodeSequence (DCM 113100 "Basic Application Confidentiality Profile").
    Pixel data are not touched: burned-in text (BurnedInAnnotation = YES) needs a separate clean-pixel step.
    """
    import copy

    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if not salt:
        raise ValueError("deidentify needs a non-empty salt (a project secret) so research IDs and UIDs "
                         "cannot be recomputed from the originals; e.g. salt='my-project-2024'")
    out = copy.deepcopy(ds)
    rid = patient_id or research_id(str(ds.get("PatientID", "")), salt)
    exact, masked = _actions()

    def walk(d):
        for el in list(d):
            code = _action_for(el.tag, exact, masked)
            if el.VR == "SQ" and code is None:
                for item in el.value:
                    walk(item)
                continue
            if code is None:
                continue
            if code == "U" or (code == "X_Z_U_STAR" and el.VR == "UI"):
                if el.value:
                    vals = el.value if el.VM > 1 else [el.value]
                    new = [_new_uid(v, salt) for v in vals]
                    el.value = new if el.VM > 1 else new[0]
            elif code.startswith("X"):
                del d[el.tag]
            elif code.startswith("Z"):
                el.value = Sequence() if el.VR == "SQ" else None
            elif code == "D":
                if el.VR == "SQ":
                    el.value = Sequence()
                elif el.VR == "UI":
                    el.value = _new_uid(el.value, salt) if el.value else el.value
                elif el.VR in _DUMMY:
                    el.value = _DUMMY[el.VR]
                else:
                    el.value = None

    walk(out)
    out.remove_private_tags()  # recursive in pydicom 3
    out.PatientName = rid
    out.PatientID = rid
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = method or "PS3.15 E.1 Basic Profile (medlearn.dicom.deidentify)"  # LO: <= 64
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = Sequence([code])
    if getattr(out, "file_meta", None) is not None and "SOPInstanceUID" in out:
        out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    return out


def deidentify_files(source, out_dir, *, salt: str) -> "pandas.DataFrame":
    """De-identify every DICOM file under `source` into `out_dir`; return a table of what was written.

    Chapter 2.2. Output files are named by their new SOPInstanceUID; the table (columns: source, file,
    research_id) is the re-identification key: store it apart from the data, or drop it.
    Files that are not readable DICOM raise `DicomSeriesError` naming the file; nothing half-written is left.
    """
    import pandas as pd

    from medlearn._atomic import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in _files(source):
        ds = _read(f)
        clean = deidentify(ds, salt=salt)
        name = f"{clean.get('SOPInstanceUID', hashlib.sha1(str(f).encode()).hexdigest())}.dcm"
        target = out_dir / name
        with atomic_path(target) as tmp:
            clean.save_as(tmp, enforce_file_format=False)
        rows.append({"source": str(f), "file": str(target), "research_id": str(clean.PatientID)})
    return pd.DataFrame(rows)


def phi_audit(deidentified, original=None) -> list[str]:
    """Return the problems left in a de-identified dataset (an empty list means it passes).

    Chapter 2.2 and assignment 2. A problem is: an attribute the Basic Profile removes (X) that is still
    present, one it empties (Z) that still has a value, one it replaces (D, U) that still carries a value
    found in `original` at that tag, a private tag, or a missing PatientIdentityRemoved = YES.
    Sequences are searched too.
    """
    exact, masked = _actions()
    orig_values: dict[tuple[int, int], set] = {}
    if original is not None:
        for el in _all_elements(original):
            if el.VR != "SQ" and el.value not in (None, "", b""):
                orig_values.setdefault((el.tag.group, el.tag.element), set()).add(str(el.value))
    problems = []
    for el in _all_elements(deidentified):
        where = f"({el.tag.group:04X},{el.tag.element:04X}) {el.keyword or el.name}"
        if el.tag.is_private:
            problems.append(f"{where}: private tag present")
            continue
        code = _action_for(el.tag, exact, masked)
        if code is None or el.tag in (0x00100010, 0x00100020):
            continue
        empty = el.value in (None, "", b"") or (el.VR == "SQ" and len(el.value) == 0)
        kept_original = (el.VR != "SQ" and not empty
                         and str(el.value) in orig_values.get((el.tag.group, el.tag.element), set()))
        if code == "X":
            problems.append(f"{where}: should be removed (Basic Profile action X)")
        elif code == "Z" and not empty:
            problems.append(f"{where}: should be empty, holds {str(el.value)[:30]!r}")
        elif code.startswith("X") and original is None and not empty and code != "X_Z_U_STAR":
            problems.append(f"{where}: should be removed or replaced (action {code}); pass original= to compare")
        elif kept_original:
            problems.append(f"{where}: still holds the original value {str(el.value)[:30]!r} (action {code})")
    if str(deidentified.get("PatientIdentityRemoved", "")).upper() != "YES":
        problems.append("(0012,0062) PatientIdentityRemoved: missing or not YES")
    if original is not None:
        for kw in ("PatientName", "PatientID"):
            if str(original.get(kw, "")) and str(deidentified.get(kw, "")) == str(original.get(kw, "")):
                problems.append(f"{kw}: still the original value")
    return problems


def _all_elements(ds):
    for el in ds:
        yield el
        if el.VR == "SQ":
            for item in el.value:
                yield from _all_elements(item)


def pixel_hash(ds) -> str:
    """Return the SHA-256 of a dataset's PixelData bytes (to prove pixels are unchanged). Chapters 2.2, 2.3."""
    return hashlib.sha256(bytes(ds.PixelData)).hexdigest()
