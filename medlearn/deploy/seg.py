"""DICOM SEG: a mask written as a Segmentation object that points at every slice it was made from.

Chapter 6.2 and assignment 6. highdicom does the encoding; this module adds the mapping between
medlearn's (X, Y, Z) mask on a `read_series` volume and SEG frames (one per source slice, rows x
columns), the segment description (coded anatomy, algorithm identification), and the checks a
receiver should make when reading one back (references, geometry, segment metadata).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Coded anatomy (SNOMED CT) for the structures the book segments
ANATOMY = {
    "brain": ("Brain", "AnatomicalStructure"),
    "body": ("EntireBody", "AnatomicalStructure"),
    "bone": ("Bone", "Tissue"),
    "lung": ("Lung", "AnatomicalStructure"),
}


class SegError(ValueError):
    """A SEG cannot be written or does not fit its source series; the message says which check failed."""


def _sources(source_files):
    import pydicom

    return [pydicom.dcmread(f) for f in source_files]


def segment_description(label: str, *, algorithm: str, version: str, number: int = 1):
    """Return a highdicom `SegmentDescription` with coded anatomy and the algorithm's identity."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if label not in ANATOMY:
        raise SegError(f"no code for {label!r}; known structures: {sorted(ANATOMY)} (add one to ANATOMY)")
    prop, cat = ANATOMY[label]
    algo = hd.AlgorithmIdentificationSequence(name=algorithm, version=version,
                                              family=codes.DCM.ArtificialIntelligence)
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label,
        segmented_property_category=getattr(codes.SCT, cat), segmented_property_type=getattr(codes.SCT, prop),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algo)


def write_seg(mask, source_files, path, *, label: str = "brain", algorithm: str = "medlearn model",
              version: str = "0.1.0", series_number: int = 900) -> Path:
    """Write `mask` as a binary DICOM SEG that references every file in `source_files`; return the path.

    Chapter 6.2. `mask` is (X, Y, Z) on the grid of `read_series(source_files)`, and `source_files`
    are in that volume's slice order (`Volume.files`): frame k is slice k, transposed to rows x
    columns. The SEG joins the source study (same StudyInstanceUID and FrameOfReferenceUID) as a
    new series whose description names the algorithm and version. Written to a temporary name
    and renamed, so an error leaves no partial file.

    Raises:
        SegError: if the mask's shape does not match the source slices.
    """
    import highdicom as hd

    sources = _sources(source_files)
    mask = np.asarray(mask)
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if mask.shape != (cols, rows, len(sources)):
        raise SegError(f"mask shape {mask.shape} (X, Y, Z) does not match the source series "
                       f"({cols} columns, {rows} rows, {len(sources)} slices); pass the mask on the grid "
                       f"of read_series(source_files) and its Volume.files")
    frames = np.ascontiguousarray(np.transpose(mask > 0, (2, 1, 0))).astype(np.uint8)  # (Z, Y, X)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(label, algorithm=algorithm, version=version)],
        series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medlearn", manufacturer_model_name=algorithm, software_versions=version,
        device_serial_number="medlearn-0", series_description=f"SEG {algorithm} {version}",
        omit_empty_frames=False)
    from medlearn._atomic import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(tmp)
    return path


def check_seg(seg, source_files) -> list[str]:
    """Return the problems of a SEG against its source series (empty list: it fits).

    Chapter 6.2 and assignment 6. Checks: every source instance is referenced; one frame per
    source slice at that slice's ImagePositionPatient (no flip, no shift); same orientation and
    frame of reference; segment metadata (label, coded property type, algorithm identification).
    """
    import pydicom

    seg = pydicom.dcmread(seg) if isinstance(seg, (str, Path)) else seg
    sources = _sources(source_files)
    problems = []
    referenced = {str(i.ReferencedSOPInstanceUID) for s in seg.get("ReferencedSeriesSequence", [])
                  for i in s.get("ReferencedInstanceSequence", [])}
    missing = [str(d.SOPInstanceUID) for d in sources if str(d.SOPInstanceUID) not in referenced]
    if missing:
        problems.append(f"{len(missing)} of {len(sources)} source instances are not referenced "
                        f"(ReferencedSeriesSequence), e.g. {missing[0]}")
    if str(seg.get("FrameOfReferenceUID", "")) != str(sources[0].FrameOfReferenceUID):
        problems.append("FrameOfReferenceUID differs from the source series")
    if str(seg.get("StudyInstanceUID", "")) != str(sources[0].StudyInstanceUID):
        problems.append("StudyInstanceUID differs: the SEG does not belong to the source study")
    pos = {str(d.SOPInstanceUID): np.array(d.ImagePositionPatient, float) for d in sources}
    iop = np.array(sources[0].ImageOrientationPatient, float)
    frames = seg.get("PerFrameFunctionalGroupsSequence", [])
    shared = seg.get("SharedFunctionalGroupsSequence", [{}])[0]
    seg_iop = (np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
               if "PlaneOrientationSequence" in shared else None)
    if seg_iop is None or not np.allclose(seg_iop, iop, atol=1e-4):
        problems.append("ImageOrientationPatient of the SEG differs from the source slices (flipped or rotated)")
    shifted = 0
    for f in frames:
        src = [str(r.ReferencedSOPInstanceUID) for d in f.get("DerivationImageSequence", [])
               for r in d.get("SourceImageSequence", [])]
        p = np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
        if not src or src[0] not in pos or not np.allclose(p, pos[src[0]], atol=1e-3):
            shifted += 1
    if len(frames) != len(sources):
        problems.append(f"{len(frames)} frames for {len(sources)} source slices")
    if shifted:
        problems.append(f"{shifted} frames lie elsewhere than the slice they derive from (shifted or flipped)")
    for s in seg.get("SegmentSequence", []):
        if not s.get("SegmentLabel"):
            problems.append(f"segment {s.SegmentNumber} has no SegmentLabel")
        if "SegmentedPropertyTypeCodeSequence" not in s:
            problems.append(f"segment {s.SegmentNumber} has no coded anatomy (SegmentedPropertyTypeCodeSequence)")
        if s.get("SegmentAlgorithmType") != "MANUAL" and "SegmentationAlgorithmIdentificationSequence" not in s:
            problems.append(f"segment {s.SegmentNumber} is automatic but names no algorithm")
    return problems


def read_seg(seg, source_files, segment: int = 1) -> np.ndarray:
    """Return the mask (X, Y, Z), uint8, that a SEG holds for `source_files` (in volume slice order).

    Chapter 6.2. Frames are matched to the source slices by SOPInstanceUID (not by frame order),
    so the result lies on the grid of `read_series(source_files)` whatever order the SEG stores.

    Raises:
        SegError: listing the problems `check_seg` finds (the SEG does not fit these slices).
    """
    import highdicom as hd
    import pydicom

    ds = pydicom.dcmread(seg) if isinstance(seg, (str, Path)) else seg
    problems = check_seg(ds, source_files)
    if problems:
        raise SegError(f"the SEG {getattr(ds, 'SOPInstanceUID', '?')} does not fit the source series: "
                       + "; ".join(problems))
    uids = [str(d.SOPInstanceUID) for d in _sources(source_files)]
    px = hd.seg.Segmentation.from_dataset(ds).get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[segment], combine_segments=True)
    return np.ascontiguousarray(np.transpose(np.asarray(px), (2, 1, 0))).astype(np.uint8)
