"""The research PACS's one click against a real Orthanc with its Python plugin: store a series, get a
SEG back in the same study; every bad input answered where the user looks; the PACS survives."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("highdicom")

from medlearn import dicom, pacs  # noqa: E402
from medlearn.deploy.export import export_bundle, load_bundle  # noqa: E402
from medlearn.deploy.oneclick import oneclick_config, wait_for_result  # noqa: E402
from medlearn.deploy.oneclick import series_id as series_id_of  # noqa: E402
from medlearn.deploy.predict import predict_series  # noqa: E402
from medlearn.deploy.preprocessing import Preprocessing  # noqa: E402
from medlearn.deploy.seg import read_seg  # noqa: E402
from test_deploy import DIRECTION, asymmetric_head, threshold_net  # noqa: E402

pytestmark = pytest.mark.pacs

if not pacs.orthanc_available():
    pytest.skip(pacs.INSTALL_HELP, allow_module_level=True)
try:
    from medlearn.deploy.oneclick import find_python_plugin

    find_python_plugin()
except pacs.OrthancNotFound as e:
    pytest.skip(str(e), allow_module_level=True)


def _series(folder: Path, modality: str = "MR", seed: int = 0) -> list[Path]:
    vol = dicom.Volume(asymmetric_head(), (2.0, 2.0, 2.5), (30.0, -40.0, 12.0), DIRECTION)
    return dicom.volume_to_dicom(vol, folder, modality=modality, patient_id=f"ONECLICK-{seed}",
                                 uid_seed=f"oneclick-{seed}-{modality}")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("oneclick")
    vol = dicom.read_series(_series(root / "probe"))
    import torch
    import torchio as tio

    canonical = tio.ToCanonical()(tio.ScalarImage(tensor=torch.from_numpy(vol.array[None].astype("f4")),
                                                   affine=vol.affine_ras))
    pre = Preprocessing(canonical.spacing, canonical.spatial_shape)
    return export_bundle(threshold_net(), pre, root / "bundle", name="threshold", version="1.2.3",
                         labels={"1": "brain"})


@pytest.fixture(scope="module")
def server(bundle):
    with pacs.Orthanc(extra_config=oneclick_config(bundle)) as p:
        yield p
        workdir, process = p.workdir, p.process
    assert process.poll() is not None, "Orthanc still runs after the with block"
    assert not workdir.exists(), f"{workdir} left behind"


def _upload(p, files) -> list[str]:
    """Store files through the REST API (what dragging files into Orthanc Explorer does)."""
    s = p.session()
    ids = []
    for f in files:
        r = s.post(f"{p.url}/instances", data=Path(f).read_bytes(), timeout=30)
        r.raise_for_status()
        ids.append(r.json()["ParentSeries"])
    return sorted(set(ids))


def _modalities_in_study(p, series_id) -> list[str]:
    study = p.rest(f"/series/{series_id}")["ParentStudy"]
    return sorted(p.rest(f"/series/{s}")["MainDicomTags"].get("Modality", "")
                  for s in p.rest(f"/studies/{study}")["Series"])


def test_storing_a_series_brings_back_a_seg_in_the_same_study(server, bundle, tmp_path):
    files = _series(tmp_path / "good", seed=1)
    start = time.monotonic()
    assert server.store(files) == len(files)  # C-STORE, as a scanner or a viewer sends it
    uid = dicom.read_series(files).meta["SeriesInstanceUID"]
    result = wait_for_result(server, uid)  # by SeriesInstanceUID
    series_id = series_id_of(server, uid)
    print(f"\none-click: store -> SEG in the PACS in {time.monotonic() - start:.1f} s "
          f"(model process {result.get('process_seconds')} s)")
    assert result["status"] == "done", result
    assert _modalities_in_study(server, series_id) == ["MR", "SEG"]
    # read the SEG back from the PACS with WADO-RS and compare voxel for voxel
    client = server.dicomweb()
    seg_uid = server.rest(f"/series/{result['seg_series']}")["MainDicomTags"]["SeriesInstanceUID"]
    study_uid = server.rest(f"/series/{series_id}/study")["MainDicomTags"]["StudyInstanceUID"]
    seg = client.retrieve_series(study_uid, seg_uid)[0]
    local = predict_series(load_bundle(bundle), files)
    np.testing.assert_array_equal(read_seg(seg, local.files), local.mask)
    # idempotent: the stable event, the REST call and the button do not make a second SEG
    again = server.session().post(f"{server.url}/medlearn/segment/{series_id}").json()
    assert again["status"] == "done" and "already segmented" in again["note"]
    assert _modalities_in_study(server, series_id) == ["MR", "SEG"]


def _bad(tmp_path, problem) -> list[Path]:
    import pydicom

    files = _series(tmp_path / problem.replace(" ", "_"), modality="CT" if problem == "wrong modality" else "MR",
                    seed=hash(problem) % 1000)
    if problem == "missing slice":
        files = files[:5] + files[6:]
    elif problem == "corrupt file":  # header fine, pixel data cut short: the PACS accepts it
        ds = pydicom.dcmread(files[3])
        ds.PixelData = ds.PixelData[:-200]
        ds.save_as(files[3])
    elif problem == "two orientations":
        ds = pydicom.dcmread(files[2])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.save_as(files[2])
    return files


@pytest.mark.parametrize("problem, message", [
    ("wrong modality", r"modality CT, but the model threshold 1\.2\.3 expects MR"),
    ("missing slice", r"non-uniform slice gaps.*A slice is missing"),
    ("corrupt file", r"truncated|corrupt"),
    ("two orientations", r"not parallel"),
])
def test_bad_input_is_answered_in_the_pacs_and_nothing_is_stored(server, tmp_path, problem, message):
    series_id = _upload(server, _bad(tmp_path, problem))[0]
    result = wait_for_result(server, series_id)
    assert result["status"] == "error"
    assert re.search(message, result["message"], flags=re.S), result["message"]
    meta = server.session().get(f"{server.url}/series/{series_id}/metadata/MedlearnResult").json()
    assert meta["status"] == "error"  # where the user sees it: series metadata (and the REST route)
    assert "SEG" not in _modalities_in_study(server, series_id)
    assert server.running and server.rest("/system")["Name"] == "medlearn-course-pacs"
