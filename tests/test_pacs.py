"""medlearn.pacs against a real Orthanc: round trips, exact counts, DICOMweb, authentication, clean stop."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")
requests = pytest.importorskip("requests")

from medlearn import dicom, pacs  # noqa: E402
from medlearn.data.synthetic import ct_series  # noqa: E402

pytestmark = pytest.mark.pacs

if not pacs.orthanc_available():  # `make test` installs it (system-deps); say how when it is missing
    pytest.skip(pacs.INSTALL_HELP, allow_module_level=True)


def _orthanc_pids(workdir: Path | None = None) -> set[int]:
    """Orthanc processes alive now; with `workdir`, only those started with a config inside it
    (other tests, run in parallel by pytest-xdist, start Orthancs of their own)."""
    pids = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() != "Orthanc":
                    continue
                if workdir is None or str(workdir) in (p / "cmdline").read_text():
                    pids.add(int(p.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("pacs_series")
    df = ct_series.generate(root, fast=True, seed=7)  # 2 patients, 3 studies, 4 series, 12 slices each
    return root, df


@pytest.fixture(scope="module")
def server(series):
    with pacs.Orthanc() as p:
        t0 = time.perf_counter()
        n = p.store(series[0])
        print(f"\nC-STORE {n} instances in {time.perf_counter() - t0:.2f} s")
        yield p
        workdir = p.workdir
    assert not workdir.exists(), "the storage folder outlived the server"
    assert not _orthanc_pids(workdir), "an Orthanc process outlived the context manager"


def _hashes(paths_or_datasets) -> dict[str, str]:
    out = {}
    for x in paths_or_datasets:
        ds = x if isinstance(x, pydicom.Dataset) else pydicom.dcmread(x)
        out[str(ds.SOPInstanceUID)] = dicom.pixel_hash(ds)
    return out


def test_echo(server):
    assert server.echo() == 0x0000


def test_unauthenticated_requests_are_refused(server):
    assert requests.get(f"{server.url}/system", timeout=5).status_code == 401
    assert requests.get(f"{server.dicomweb_url}/studies", timeout=5).status_code == 401
    assert requests.get(f"{server.url}/system", auth=(server.username, "wrong"), timeout=5).status_code == 401
    assert requests.get(f"{server.url}/system", auth=(server.username, server.password), timeout=5).status_code == 200


def test_own_ports_and_storage(server):
    assert {server.http_port, server.dicom_port}.isdisjoint({4242, 8042})
    assert server.storage.is_dir() and any(server.storage.rglob("*"))  # Orthanc writes into our temp folder
    assert server.rest("/system")["DicomAet"] == server.aet


def test_c_find_counts(server, series):
    _, df = series
    assert len(server.find("PATIENT")) == df.patient_id.nunique() == 2
    assert len(server.find("STUDY")) == df.study_uid.nunique() == 3
    assert len(server.find("SERIES")) == len(df) == 4
    study = df.study_uid[0]
    in_study = server.find("SERIES", StudyInstanceUID=study)
    assert sorted(s.SeriesInstanceUID for s in in_study) == sorted(df[df.study_uid == study].series_uid)
    images = server.find("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=df.series_uid[0])
    assert len(images) == df.n_slices[0]
    assert server.find("STUDY", PatientID="NOBODY") == []


def test_c_move_round_trip_identical_pixels(server, series, tmp_path):
    _, df = series
    t0 = time.perf_counter()
    got = server.move(tmp_path / "moved", series_uid=df.series_uid[1])
    print(f"\nC-MOVE {len(got)} instances in {time.perf_counter() - t0:.2f} s")
    sent = _hashes(sorted(Path(df.img_path[1]).glob("*.dcm")))
    assert _hashes(got) == sent
    vol_a, vol_b = dicom.read_series(df.img_path[1]), dicom.read_series(got)
    assert (vol_a.array == vol_b.array).all() and vol_a.spacing == vol_b.spacing


def test_dicomweb_qido_wado_stow(server, series, tmp_path):
    _, df = series
    client = server.dicomweb()
    assert len(client.search_for_studies()) == df.study_uid.nunique()
    qido = client.search_for_series(search_filters={"StudyInstanceUID": df.study_uid[0]})
    assert sorted(s["0020000E"]["Value"][0] for s in qido) == sorted(df[df.study_uid == df.study_uid[0]].series_uid)
    # WADO-RS returns the very instances C-STORE sent
    wado = client.retrieve_series(df.study_uid[2], df.series_uid[2])
    assert _hashes(wado) == _hashes(sorted(Path(df.img_path[2]).glob("*.dcm")))
    # STOW-RS a new (de-identified) series, then find it by QIDO and by C-FIND
    clean = [dicom.deidentify(pydicom.dcmread(f), salt="stow") for f in sorted(Path(df.img_path[3]).glob("*.dcm"))]
    client.store_instances(clean)
    uid = clean[0].SeriesInstanceUID
    qido = client.search_for_instances(study_instance_uid=clean[0].StudyInstanceUID, series_instance_uid=uid)
    assert sorted(i["00080018"]["Value"][0] for i in qido) == sorted(d.SOPInstanceUID for d in clean)
    dimse = server.find("IMAGE", StudyInstanceUID=clean[0].StudyInstanceUID, SeriesInstanceUID=uid)
    assert sorted(d.SOPInstanceUID for d in dimse) == sorted(d.SOPInstanceUID for d in clean)
    assert _hashes(client.retrieve_series(clean[0].StudyInstanceUID, uid)) == _hashes(clean)


def test_stop_cleans_up_after_error():
    with pytest.raises(ZeroDivisionError):
        with pacs.Orthanc() as p:
            workdir, pid = p.workdir, p.process.pid
            assert p.running and workdir.exists()
            1 / 0
    assert not workdir.exists()
    assert pid not in _orthanc_pids() and not _orthanc_pids(workdir)


def test_stop_cleans_up_after_keyboard_interrupt():
    # A process started in the background (CI, `make test &`) inherits SIGINT as ignored, and then
    # Python raises no KeyboardInterrupt: install the handler Jupyter kernels and terminals have.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_inside_orthanc()
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_inside_orthanc():
    with pytest.raises(KeyboardInterrupt):
        with pacs.Orthanc() as p:
            workdir, pid = p.workdir, p.process.pid
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C / Jupyter's "interrupt kernel" sends
            time.sleep(5)
    assert not workdir.exists() and pid not in _orthanc_pids()


def test_missing_orthanc_says_how_to_install(monkeypatch):
    monkeypatch.setenv("ORTHANC_EXECUTABLE", "/nonexistent/Orthanc")
    with pytest.raises(pacs.OrthancNotFound, match="apt-get install -y orthanc orthanc-dicomweb") as e:
        pacs.Orthanc().start()
    assert "orthancteam/orthanc" in str(e.value) and "orthanc-server.com" in str(e.value)


# ----------------------------------------------------------------------------- only its owner can write

def _store_as(server, dataset, aet: str, host: str) -> int | None:
    """Return the C-STORE status from `aet` calling from `host`, or None when the association is refused."""
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, server.dicom_port, ae_title=server.aet)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(dataset)
        return int(status.Status) if status else None
    finally:
        assoc.release()


def _non_loopback_address() -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing address
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def _fresh_instance(series) -> pydicom.Dataset:
    import pydicom.uid

    ds = pydicom.dcmread(sorted(Path(series[1].img_path[0]).glob("*.dcm"))[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def test_c_store_from_an_unregistered_ae_title_is_refused(server, series):
    ds = _fresh_instance(series)
    count = len(server.rest("/instances"))
    assert server.rest("/system")["DicomAet"] == server.aet
    status = _store_as(server, ds, "INTRUDER", "127.0.0.1")
    assert status != 0x0000, "an unregistered AE title stored into the PACS"
    assert len(server.rest("/instances")) == count
    # the owner, with the registered AE title on loopback, may store the very same instance
    assert _store_as(server, ds, server.client_aet, "127.0.0.1") == 0x0000
    assert len(server.rest("/instances")) == count + 1


def test_c_store_with_the_right_ae_title_from_another_host_is_refused(server, series):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to call from")
    ds = _fresh_instance(series)
    count = len(server.rest("/instances"))
    status = _store_as(server, ds, server.client_aet, address)  # Orthanc sees `address` as the caller
    assert status != 0x0000, f"a C-STORE from {address} with the owner's AE title was accepted"
    assert len(server.rest("/instances")) == count
    # HTTP from that address is refused too (RemoteAccessAllowed: false), even with the password
    r = requests.get(f"http://{address}:{server.http_port}/system", auth=(server.username, server.password),
                     timeout=5)
    assert r.status_code in (401, 403)


def test_orthanc_dies_with_a_killed_parent(tmp_path, port_free):
    import json
    import subprocess
    import sys

    script = ("import json, sys, time\nfrom medlearn.pacs import Orthanc\np = Orthanc().start()\n"
              "print(json.dumps({'pid': p.process.pid, 'dir': str(p.workdir), 'ports': [p.http_port, p.dicom_port]}),"
              " flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    info = json.loads(parent.stdout.readline())
    assert info["pid"] in _orthanc_pids() and Path(info["dir"]).is_dir()
    parent.kill()  # SIGKILL: no atexit, no finalizer, no __exit__
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (info["pid"] in _orthanc_pids() or Path(info["dir"]).exists()):
        time.sleep(0.2)
    assert info["pid"] not in _orthanc_pids(), "Orthanc outlived the Python process that started it"
    assert not Path(info["dir"]).exists(), "its temporary folder outlived it"
    assert all(port_free(port) for port in info["ports"])
