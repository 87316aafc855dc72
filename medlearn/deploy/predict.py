"""Standalone inference: a DICOM series in, a mask on the source grid out, with the stored preprocessing.

Chapter 6.2. The steps are those of every deployment (and of MONAI Deploy's operator graph):
read the series into a volume with geometry -> apply exactly the bundle's preprocessing -> run the
exported network -> resample the probabilities back onto the source grid -> threshold.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Prediction:
    """A mask (X, Y, Z) on the grid of `volume`, the volume itself, and the seconds each step took."""

    mask: np.ndarray
    volume: object
    seconds: dict = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """The source files in slice order (what a SEG must reference)."""
        return self.volume.files


def fetch_series(pacs, series_uid: str, folder) -> Path:
    """Download one series from a PACS with DICOMweb (QIDO-RS + WADO-RS) into `folder`; return it.

    Chapter 6.2. `pacs` is a running `medlearn.pacs.Orthanc`.
    """
    from medlearn.dicom import DicomSeriesError

    client = pacs.dicomweb()
    found = client.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
    if not found:
        raise DicomSeriesError(f"series {series_uid} is not in the PACS at {pacs.url}")
    study = found[0]["0020000D"]["Value"][0]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # "*": as stored; Orthanc cannot transcode e.g. JPEG 2000, and the reader decodes it here anyway
    for ds in client.retrieve_series(study, series_uid, media_types=(("application/dicom", "*"),)):
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    return folder


def check_modality(volume, bundle) -> None:
    """Raise `DicomSeriesError` when the series' modality is not the one the model was trained on."""
    from medlearn.dicom import DicomSeriesError

    got, want = volume.meta.get("Modality"), bundle.modality
    if want and got != want:
        first = volume.files[0] if volume.files else "the series"
        raise DicomSeriesError(f"{first}: modality {got}, but the model {bundle.name} {bundle.version} "
                               f"expects {want}; send a {want} series")


def _check_modality_early(source, bundle) -> None:
    """Refuse a series of the wrong modality from its first header, before decoding any pixels."""
    import pydicom

    from medlearn.dicom import DicomSeriesError

    if isinstance(source, (str, Path)) and Path(source).is_dir():
        files = sorted(p for p in Path(source).rglob("*") if p.is_file() and not p.name.startswith("."))
    else:
        files = [Path(f) for f in (source if isinstance(source, (list, tuple)) else [source])]
    try:
        got = str(pydicom.dcmread(files[0], stop_before_pixels=True).get("Modality", ""))
    except Exception:  # unreadable: read_series names the file and the problem
        return
    if bundle.modality and got and got != bundle.modality:
        raise DicomSeriesError(f"{files[0]}: modality {got}, but the model {bundle.name} "
                               f"{bundle.version} expects {bundle.modality}; send a {bundle.modality} series")


def predict_volume(bundle, volume, threshold: float = 0.5) -> Prediction:
    """Return the `Prediction` of `bundle` on a `Volume` (preprocess, run, map back). Chapter 6.1."""
    t0 = time.perf_counter()
    x, affine = bundle.pre.apply(volume)
    t1 = time.perf_counter()
    prob = bundle(x)[0, 0]
    t2 = time.perf_counter()
    mask = bundle.pre.to_source(prob, affine, volume, threshold)
    t3 = time.perf_counter()
    return Prediction(mask, volume, {"preprocess": t1 - t0, "network": t2 - t1, "to_source": t3 - t2})


def predict_series(bundle, source=None, *, pacs=None, series_uid: str | None = None,
                   threshold: float = 0.5) -> Prediction:
    """Return the `Prediction` of `bundle` on a DICOM series (a folder, or `series_uid` in `pacs`).

    Chapter 6.2.

    Args:
        bundle: a `medlearn.deploy.export.Bundle` (see `load_bundle`).
        source: a folder (or list of files) holding one series.
        pacs, series_uid: alternatively, a running Orthanc and the series to fetch from it.
    Raises:
        DicomSeriesError: for every input the model must not see: unreadable/corrupt files,
            missing slices, mixed orientations (from `read_series`), or the wrong modality.
    """
    from medlearn.dicom import read_series

    t0 = time.perf_counter()
    if pacs is not None:
        if series_uid is None:
            raise ValueError("with pacs=..., pass series_uid=...")
        tmp = tempfile.mkdtemp(prefix="medlearn-series-")
        source = fetch_series(pacs, series_uid, tmp)
    _check_modality_early(source, bundle)
    volume = read_series(source, series_uid=None if pacs is not None else series_uid)
    check_modality(volume, bundle)
    read_s = time.perf_counter() - t0
    pred = predict_volume(bundle, volume, threshold)
    pred.seconds = {"read": read_s, **pred.seconds}
    return pred
