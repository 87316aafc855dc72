"""medlearn.deploy: bundle export and parity, the predictor's geometry, DICOM SEG round trip, bad
inputs of the one-click runner, the model card and the drift tests (no PACS here; see test_oneclick)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("highdicom")

from medlearn import dicom  # noqa: E402
from medlearn.deploy import card, drift  # noqa: E402
from medlearn.deploy.export import BundleError, export_bundle, load_bundle, verify_bundle  # noqa: E402
from medlearn.deploy.oneclick import run_model  # noqa: E402
from medlearn.deploy.predict import predict_series  # noqa: E402
from medlearn.deploy.preprocessing import Preprocessing  # noqa: E402
from medlearn.deploy.seg import check_seg, read_seg, write_seg  # noqa: E402

# An MR head stored like IXI: sagittal slices, a left-handed direction (P, S, R axes)
DIRECTION = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) @ np.diag([1, 1, -1])


def threshold_net() -> torch.nn.Module:
    """A 'network' whose answer is known: logits 20 (x - 0.5), i.e. mask = z-normalised image > 0.5."""
    net = torch.nn.Conv3d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(20.0)
        net.bias.fill_(-10.0)
    return net


def asymmetric_head(shape=(20, 16, 12)) -> np.ndarray:
    """An image with no symmetry: a bright block in one corner, a gradient, noise (X, Y, Z)."""
    rng = np.random.default_rng(1)
    arr = rng.normal(100, 20, shape) + np.linspace(0, 200, shape[0])[:, None, None]
    arr[2:7, 3:6, 1:4] += 900
    return np.clip(arr, 0, None).astype(np.float32)


@pytest.fixture(scope="module")
def mr_series(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy_mr")
    vol = dicom.Volume(asymmetric_head(), (2.0, 2.0, 2.5), (30.0, -40.0, 12.0), DIRECTION)
    dicom.volume_to_dicom(vol, root / "mr", modality="MR", patient_id="TEST-MR")
    return root / "mr"


@pytest.fixture(scope="module")
def threshold_bundle(tmp_path_factory, mr_series):
    vol = dicom.read_series(mr_series)
    import torchio as tio

    canonical = tio.ToCanonical()(tio.ScalarImage(tensor=torch.from_numpy(vol.array[None].astype("f4")),
                                                   affine=vol.affine_ras))  # RAS shape and spacing
    pre = Preprocessing(canonical.spacing, canonical.spatial_shape)
    folder = tmp_path_factory.mktemp("bundles") / "threshold"
    return export_bundle(threshold_net(), pre, folder, name="threshold", version="1.2.3",
                         labels={"1": "brain"}, seed=0)


def test_export_writes_a_bundle_monai_accepts_and_runtimes_agree(tmp_path):
    torch.manual_seed(0)
    from medlearn.deploy.recipe import unet

    model = unet((4, 8, 16)).eval()
    pre = Preprocessing((4.0, 4.0, 4.0), (16, 16, 16))
    folder = export_bundle(model, pre, tmp_path / "b", name="tiny", version="0.0.1", labels={"1": "brain"})
    meta = verify_bundle(folder)
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [16, 16, 16]
    assert Preprocessing.load(folder / "configs" / "preprocessing.json") == pre
    record = json.loads((folder / "docs" / "reproducibility.json").read_text())
    assert set(record["files_sha256"]) >= {"models/model.onnx", "models/model.ts"}
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = torch.sigmoid(model(x)).numpy()
    for runtime in ("onnx", "torchscript"):
        out = load_bundle(folder, runtime)(x.numpy())
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() < 1e-4, runtime
    # an existing folder is never overwritten, and no partial folder is left behind
    with pytest.raises(BundleError, match="exists"):
        export_bundle(model, pre, folder, name="tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_verify_bundle_rejects_metadata_without_network_data_format(tmp_path):
    pre = Preprocessing((4.0, 4.0, 4.0), (8, 8, 8))
    folder = export_bundle(threshold_net(), pre, tmp_path / "b", name="t")
    meta_file = folder / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    del meta["network_data_format"]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="network_data_format"):
        verify_bundle(folder)
    (folder / "models" / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx"):
        verify_bundle(folder)


def test_predictor_maps_the_mask_back_to_the_source_grid_without_flip(threshold_bundle, mr_series):
    vol = dicom.read_series(mr_series)
    pred = predict_series(load_bundle(threshold_bundle), mr_series)
    z = (vol.array - vol.array.mean()) / vol.array.std()
    expected = (z > 0.5).astype(np.uint8)
    assert pred.mask.shape == vol.shape
    assert expected.sum() > 50 and (expected == 0).sum() > 50
    np.testing.assert_array_equal(pred.mask, expected)
    assert not np.array_equal(pred.mask, expected[::-1])  # a flip would be caught
    assert pred.files == vol.files


def test_seg_round_trip_is_voxel_exact_and_checks_catch_flips_and_missing_references(
        threshold_bundle, mr_series, tmp_path):
    import pydicom

    pred = predict_series(load_bundle(threshold_bundle), mr_series)
    path = write_seg(pred.mask, pred.files, tmp_path / "seg.dcm", algorithm="threshold", version="1.2.3")
    assert check_seg(path, pred.files) == []
    np.testing.assert_array_equal(read_seg(path, pred.files), pred.mask)
    seg = pydicom.dcmread(path)
    assert seg.StudyInstanceUID == pydicom.dcmread(pred.files[0]).StudyInstanceUID
    s = seg.SegmentSequence[0]
    assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == "12738006"  # SNOMED CT: brain
    assert s.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "1.2.3"
    # frames stored in reverse slice order but positions kept: read_seg still puts them right
    flipped = pydicom.dcmread(path)
    for f in flipped.PerFrameFunctionalGroupsSequence:  # a writer that forgot to follow the slices
        f.PlanePositionSequence[0].ImagePositionPatient[2] += 2.5
    assert any("shifted" in p for p in check_seg(flipped, pred.files))
    lost = pydicom.dcmread(path)
    del lost.ReferencedSeriesSequence
    assert any("not referenced" in p for p in check_seg(lost, pred.files))
    with pytest.raises(Exception, match="does not match the source series"):
        write_seg(pred.mask[::2], pred.files, tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("problem, message", [
    ("wrong modality", "modality CT, but the model threshold 1.2.3 expects MR"),
    ("missing slice", "non-uniform slice gaps"),
    ("corrupt file", "truncated|corrupt"),
    ("two orientations", "not parallel"),
])
def test_run_model_answers_every_bad_input_clearly_and_writes_no_seg(
        threshold_bundle, mr_series, tmp_path, problem, message):
    import pydicom

    series = _copy(mr_series, tmp_path / "series")
    files = sorted(series.iterdir())
    if problem == "wrong modality":
        for f in files:
            ds = pydicom.dcmread(f)
            ds.Modality = "CT"
            ds.save_as(f)
    elif problem == "missing slice":
        files[len(files) // 2].unlink()
    elif problem == "corrupt file":
        data = files[3].read_bytes()
        files[3].write_bytes(data[: len(data) - 200])
    else:
        ds = pydicom.dcmread(files[2])
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.save_as(files[2])
    out, report = tmp_path / "seg.dcm", tmp_path / "report.json"
    result = run_model(threshold_bundle, series, out, report)
    assert result["status"] == "error"
    assert __import__("re").search(message, result["message"]), result["message"]
    assert json.loads(report.read_text())["status"] == "error"
    assert not out.exists()


def test_run_model_writes_a_seg_for_a_good_series(threshold_bundle, mr_series, tmp_path):
    result = run_model(threshold_bundle, mr_series, tmp_path / "seg.dcm", tmp_path / "r.json")
    assert result["status"] == "done" and result["voxels"] > 0
    assert check_seg(tmp_path / "seg.dcm", dicom.read_series(mr_series).files) == []


def test_disaggregated_card_has_every_group_with_a_ci_and_all_sections():
    import pandas as pd

    df = pd.DataFrame({"dice": [0.9, 0.8, 0.95, 0.7, 0.85, 0.9], "sex": list("MFMFMF"),
                       "age_group": card.age_group([22, 40, 60, 25, 45, 70])})
    table = card.disaggregate(df, n_boot=500)
    assert list(table.group) == ["all", "F", "M", "20-34", "35-49", "50-79"]
    assert list(table.n) == [6, 3, 3, 2, 2, 2]
    row = table.set_index("group").loc["F"]
    assert row["mean"] == pytest.approx(0.8) and row.ci_low <= 0.8 <= row.ci_high and row.ci_low > 0.69
    text = card.model_card({"name": "m", "version": "1.0.0"}, {"Intended use": "teaching"}, table)
    for section in card.SECTIONS:
        assert f"## {section}" in text
    assert "| sex | F | 3 | 0.800 |" in text
    assert "*Not documented.*" in text  # sections left empty show as gaps


def test_drift_tests_detect_a_shift_more_often_with_more_scans_and_rarely_raise_false_alarms():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 60)
    same = rng.normal(0, 1, 300)
    shifted = rng.normal(0.8, 1, 300)
    rates = [drift.detection_rate(reference, shifted, n, trials=100) for n in (10, 40)]
    assert rates[1] > rates[0] and rates[1] > 0.6
    assert drift.detection_rate(reference, same, 40, trials=100) < 0.15
    table = rng.normal(0, 1, (60, 3))
    assert drift.two_sample_p(table, table + np.array([0, 0, 1.0])) < 0.01
    stats = drift.image_statistics(asymmetric_head())
    assert set(stats) == set(drift.STAT_NAMES)
    assert drift.image_statistics(asymmetric_head() * 3)["p50"] == pytest.approx(stats["p50"])
