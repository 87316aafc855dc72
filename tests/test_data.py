"""medlearn.data: registry, checksummed atomic download, cache seeding, load() real vs stand-in."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import medlearn.data as data
from medlearn.data import ChecksumError, DownloadError, download, load, seed_cache
from medlearn.data.registry import REGISTRY, Entry, RemoteFile

PAYLOAD = bytes(range(256)) * 2048  # 512 KiB
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


def _tiny_npz() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1), dtype=np.uint8)
    np.savez(buf, **arrays)
    return buf.getvalue()


NPZ = _tiny_npz()


class _Handler(http.server.BaseHTTPRequestHandler):
    extra = b""  # served at /ixi.zip (set by a test)

    def log_message(self, *args):  # keep pytest output clean
        pass

    requests: list = []  # paths asked for, in order (the concurrency test counts them)

    def do_GET(self):
        _Handler.requests.append(self.path)
        if self.path == "/slow.npz":  # about 1.5 s for the whole file: two loaders overlap
            self.send_response(200)
            self.send_header("Content-Length", str(len(NPZ)))
            self.end_headers()
            step = len(NPZ) // 10 + 1
            for i in range(0, len(NPZ), step):
                self.wfile.write(NPZ[i:i + step])
                self.wfile.flush()
                time.sleep(0.15)
            return
        body = {"/good": PAYLOAD, "/half": PAYLOAD, "/other": PAYLOAD[::-1], "/tiny.npz": NPZ,
                "/ixi.zip": self.extra}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/half":  # the connection drops half-way through the file
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- registry
def test_registry_entries_are_complete_for_every_real_set():
    real = [e for e in REGISTRY.values() if e.real]
    for name in ("breastmnist", "pneumoniamnist", "adrenalmnist3d", "nodulemnist3d", "organmnist3d",
                 "ixi_tiny", "msd_hippocampus", "dcmqi_ct_liver", "tcga_gbm_brain"):
        assert REGISTRY[name].real, name
    for e in real:
        assert e.license and e.citation and e.title and e.task, e.name
        for size in e.sizes:
            for f in e.files_for(size):
                assert f.url.startswith("https://"), (e.name, f.url)
                assert re.fullmatch(r"[0-9a-f]{32}", f.md5), (e.name, f.md5)
    for e in (REGISTRY["nodulemnist3d"], REGISTRY["organmnist3d"], REGISTRY["adrenalmnist3d"]):
        assert set(e.sizes) == {28, 64}
    assert {"nodules", "heads"} <= set(REGISTRY) and not REGISTRY["nodules"].real


def test_medmnist_urls_and_md5s_are_the_packages_own():
    from medlearn.data.registry import _medmnist_info

    info = _medmnist_info()
    assert REGISTRY["adrenalmnist3d"].files_for(64)[0].md5 == info["adrenalmnist3d"]["MD5_64"]
    assert REGISTRY["breastmnist"].files_for(28)[0].url == info["breastmnist"]["url"]
    breast = REGISTRY["breastmnist"].files_for(28)[0]
    # the official md5 is the primary one; the re-saved shared copy is accepted only as a documented mirror
    assert breast.md5 == info["breastmnist"]["MD5"] != "098de56cd2d92ef2f7170e6153c02849"
    assert "re-saved" in breast.accepted()["098de56cd2d92ef2f7170e6153c02849"]


# ---------------------------------------------------------------- download
def test_good_download_shows_progress_and_verifies_md5(server, tmp_path, capsys):
    dest = download(f"{server}/good", tmp_path / "f.bin", PAYLOAD_MD5, retries=1)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["f.bin"]
    assert "f.bin" in capsys.readouterr().err  # tqdm's bar, labelled with the file name


def test_md5_mismatch_raises_and_leaves_no_file(server, tmp_path):
    with pytest.raises(ChecksumError, match="md5 mismatch"):
        download(f"{server}/other", tmp_path / "f.bin", PAYLOAD_MD5, retries=2, backoff=0)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_leaves_no_partial_file(server, tmp_path):
    with pytest.raises(DownloadError):
        download(f"{server}/half", tmp_path / "f.bin", PAYLOAD_MD5, retries=2, backoff=0)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_does_not_replace_a_good_file(server, tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(DownloadError):
        download(f"{server}/half", dest, PAYLOAD_MD5, retries=1, backoff=0)
    assert dest.read_bytes() == b"old" and _leftovers(tmp_path) == ["f.bin"]


def test_offline_error_names_url_path_md5_and_how_to_seed(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/adrenalmnist3d.npz"
    dest = tmp_path / "medmnist" / "adrenalmnist3d.npz"
    with pytest.raises(DownloadError) as err:
        download(url, dest, "bbd3c5a5576322bc4cdfea780653b1ce", retries=2, backoff=0, timeout=2)
    msg = str(err.value)
    assert url in msg and str(dest) in msg and "bbd3c5a5576322bc4cdfea780653b1ce" in msg
    assert "medlearn seed-cache" in msg
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- load(): real, stand-in, auto
@pytest.fixture()
def tiny_entry(server, monkeypatch):
    """A registry entry served by the local server, so the real download path of load() runs offline."""
    e = Entry(name="tinymnist", title="TinyMNIST", kind="medmnist2d", task="binary-class", license="CC0",
              citation="test fixture", files={28: (RemoteFile("medmnist/tinymnist.npz", f"{server}/tiny.npz",
                                                               hashlib.md5(NPZ).hexdigest(), len(NPZ)),)},
              standin="medmnist:tinymnist", labels={0: "no", 1: "yes"},
              n_samples={"train": 12, "val": 4, "test": 4}, short="test fixture")
    monkeypatch.setitem(REGISTRY, "tinymnist", e)
    monkeypatch.delenv("MEDLEARN_OFFLINE", raising=False)
    return e


def test_auto_downloads_when_reachable_then_uses_the_cache(tiny_entry, tmp_path, capsys):
    ds = load("tinymnist", cache_dir=tmp_path)
    line = capsys.readouterr().out.strip().splitlines()
    assert len(line) == 1 and "real data" in line[0] and "downloaded" in line[0]
    assert ds.source == "real" and (tmp_path / "medmnist" / "tinymnist.npz").is_file()
    with np.load(io.BytesIO(NPZ)) as z:
        np.testing.assert_array_equal(ds.arrays("val")[0], z["val_images"])
        np.testing.assert_array_equal(ds.arrays("val")[1], z["val_labels"][:, 0])
    load("tinymnist", cache_dir=tmp_path)
    assert "from cache" in capsys.readouterr().out


def test_auto_falls_back_to_a_labelled_standin_when_offline_and_uncached(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDLEARN_OFFLINE", "1")
    ds = load("adrenalmnist3d", fast=True, cache_dir=tmp_path)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "SYNTHETIC STAND-IN" in out[0] and "real data" not in out[0]
    assert ds.source == "synthetic" and not ds.is_real
    x, y = ds.arrays("train")
    assert x.shape[1:] == (28, 28, 28) and x.dtype == np.uint8 and set(np.unique(x)) <= {0, 255}
    assert set(np.unique(y)) == {0, 1}  # both classes present
    assert not (tmp_path / "medmnist" / "adrenalmnist3d.npz").exists()


def test_source_real_never_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDLEARN_OFFLINE", "1")
    with pytest.raises(DownloadError, match="seed-cache"):
        load("breastmnist", source="real", cache_dir=tmp_path)


def test_auto_uses_the_seeded_real_file(data_cache, shared_data, capsys):
    ds = load("adrenalmnist3d", fast=True)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "real data" in out[0] and "from cache" in out[0] and "STAND-IN" not in out[0]
    assert ds.source == "real" and ds.info.name == "adrenalmnist3d"
    assert "adrenalmnist3d" in repr(ds) and "real" in repr(ds)


def test_standins_are_identical_for_a_seed_and_differ_for_another(tmp_path):
    a = load("breastmnist", source="synthetic", fast=True, seed=3, cache_dir=tmp_path / "a", verbose=False)
    b = load("breastmnist", source="synthetic", fast=True, seed=3, cache_dir=tmp_path / "b", verbose=False)
    c = load("breastmnist", source="synthetic", fast=True, seed=4, cache_dir=tmp_path / "c", verbose=False)
    np.testing.assert_array_equal(a.arrays("train")[0], b.arrays("train")[0])
    np.testing.assert_array_equal(a.arrays("test")[1], b.arrays("test")[1])
    assert not np.array_equal(a.arrays("train")[0], c.arrays("train")[0])
    assert a.arrays("train")[0].shape[1:] == (28, 28)


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """Mann-Whitney AUC: the probability that a positive case scores above a negative one."""
    pos, neg = score[y == 1], score[y == 0]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@pytest.mark.parametrize("name", ["breastmnist", "adrenalmnist3d"])
def test_standin_is_not_solved_by_one_global_feature(tmp_path, name):
    ds = load(name, source="synthetic", n=300, cache_dir=tmp_path, verbose=False)
    x, y = ds.arrays("train")
    flat = x.reshape(len(x), -1).astype(float)
    for feature in (flat.mean(1), flat.std(1), (flat > 127).sum(1)):  # intensity, contrast, volume
        assert 0.3 < _auc(feature, y) < 0.7


def test_adrenal_real_arrays_match_the_npz_and_nifti_files(data_cache, shared_data):
    import nibabel as nib

    ds = load("adrenalmnist3d", fast=True, verbose=False)
    with np.load(shared_data / "medmnist_adrenal3d" / "adrenalmnist3d.npz") as z:
        for split in ("train", "val", "test"):
            x, y = ds.arrays(split)
            idx = ds.df[ds.df.split == split]["index"].to_numpy()
            np.testing.assert_array_equal(x, z[f"{split}_images"][idx])
            np.testing.assert_array_equal(y, z[f"{split}_labels"][idx, 0])
    df = ds.df
    assert {"img_path", "labels", "split", "is_val"} <= set(df.columns)
    assert df.is_val.sum() == (df.split == "val").sum() > 0
    assert set(df.labels) == {"normal", "hyperplasia"}
    for row in df.groupby("split").head(2).itertuples():
        img = nib.load(row.img_path)
        np.testing.assert_array_equal(np.asarray(img.dataobj), ds.arrays(row.split)[0][list(
            df[df.split == row.split]["index"]).index(row.index)])
        assert np.allclose(img.header.get_zooms(), 64 / 28)


def test_breastmnist_mirror_copy_loads_as_real(data_cache, shared_data):
    ds = load("breastmnist", verbose=False)
    assert ds.source == "real"
    assert {s: len(ds.arrays(s)[1]) for s in ("train", "val", "test")} == {"train": 546, "val": 78, "test": 156}
    assert ds.arrays("train")[1].ndim == 1


def test_file_sets_load_real_from_the_seeded_cache(data_cache, shared_data):
    ct = load("dcmqi_ct_liver", verbose=False)
    row = ct.df.iloc[0]
    assert len(list(Path(row.img_path).glob("*.dcm"))) == 3 and Path(row.seg_path).is_file()
    brain = load("tcga_gbm_brain", verbose=False)
    assert Path(brain.df.iloc[0].img_path).is_file() and Path(brain.df.iloc[0].mask_path).is_file()


def test_a_corrupted_cached_file_is_an_error_for_source_real(tmp_path, shared_data):
    seed_cache(shared_data, cache=tmp_path, verbose=False)
    (tmp_path / "medmnist" / "breastmnist.npz").write_bytes(b"garbage")
    with pytest.raises(ChecksumError, match="Delete it"):
        load("breastmnist", source="real", cache_dir=tmp_path)


# ---------------------------------------------------------------- seed_cache
def test_seed_cache_refuses_a_corrupted_file(tmp_path, shared_data):
    src = tmp_path / "src" / "medmnist_adrenal3d"
    src.mkdir(parents=True)
    good = (shared_data / "medmnist_adrenal3d" / "adrenalmnist3d.npz").read_bytes()
    (src / "adrenalmnist3d.npz").write_bytes(good[:-10] + b"0123456789")
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="not an accepted copy"):
        seed_cache(tmp_path / "src", cache=cache, verbose=False)
    assert _leftovers(cache) == []


def test_seed_cache_is_idempotent_and_reports(tmp_path, shared_data, capsys):
    n = sum(1 for e in REGISTRY.values() for files in e.files.values() for f in files
            if f.seed_from and (shared_data / f.seed_from).is_file())
    assert n >= 242  # 12 single files + the IXI, liver, H&N and TotalSegmentator manifests
    first = seed_cache(shared_data, cache=tmp_path)
    assert f"seeded {n} file(s)" in capsys.readouterr().out
    second = seed_cache(shared_data, cache=tmp_path)
    assert f"seeded 0 file(s), {n} already cached" in capsys.readouterr().out
    assert first == second and all(p.is_file() for p in first)
    assert not list(tmp_path.rglob("*.part"))


def test_print_datasets_lists_cached_sets(tmp_path, shared_data, capsys):
    seed_cache(shared_data, cache=tmp_path, verbose=False)
    data.print_datasets(tmp_path)
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("adrenalmnist3d") and " 64 " in line)
    assert "yes" in row and "CC BY 4.0" in row
    assert re.search(r"msd_hippocampus .* no ", out)


# ---------------------------------------------------------------- packaged samples
def test_packaged_samples():
    import pydicom

    ct = pydicom.dcmread(data.sample("pydicom_ct"))
    assert ct.Modality == "CT" and ct.pixel_array.shape == (128, 128)
    phantom, spacing = data.sample("shepp_logan")
    assert phantom.shape == (400, 400) and spacing == (1.0, 1.0)
    with pytest.raises(KeyError, match="choose one of"):
        data.sample("nope")


def test_mni152_brain_mask_is_a_plausible_brain(data_cache):
    import nibabel as nib

    paths = data.sample("mni152")
    mask = nib.load(paths["mask"])
    t1 = nib.load(paths["t1"])
    assert mask.shape == t1.shape and np.allclose(mask.affine, t1.affine)
    volume_ml = np.asarray(mask.dataobj).astype(bool).sum() * np.prod(mask.header.get_zooms()) / 1000
    assert 1000 < volume_ml < 1900, volume_ml


def test_archive_sets_are_unpacked_once_into_a_segmentation_table(server, tmp_path, monkeypatch):
    """IXI Tiny's zip layout (image/, label/) becomes img_path/mask_path rows; served locally, md5-checked."""
    import zipfile

    import nibabel as nib

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for subject in ("IXI002", "IXI012", "IXI013"):
            for kind in ("image", "label"):
                img = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4))
                path = tmp_path / f"{subject}_{kind}.nii.gz"
                nib.save(img, str(path))
                z.write(path, f"ixi_tiny/{kind}/{subject}_{kind}.nii.gz")
    archive = buf.getvalue()
    _Handler.extra = archive
    real = REGISTRY["ixi_tiny"]
    f = real.files_for(None)[0]
    served = RemoteFile(f.path, f"{server}/ixi.zip", hashlib.md5(archive).hexdigest(), len(archive))
    monkeypatch.setitem(REGISTRY, "ixi_tiny", Entry(**{**real.__dict__, "files": {None: (served,)}}))
    cache = tmp_path / "cache"
    ds = load("ixi_tiny", source="real", cache_dir=cache, verbose=False)
    assert ds.source == "real" and len(ds.df) == 3
    for row in ds.df.itertuples():
        assert Path(row.img_path).is_file() and Path(row.mask_path).is_file() and "_label" in row.mask_path
    assert set(ds.df.columns) >= {"img_path", "mask_path", "labels", "split", "is_val"}
    assert not list(cache.rglob(".extracting-*"))


def test_synthetic_only_sets_are_generated_once_with_valid_paths(tmp_path, monkeypatch, capsys):
    pytest.importorskip("medlearn.data.synthetic.heads")
    monkeypatch.setenv("MEDLEARN_OFFLINE", "1")
    ds = load("ixi_tiny", fast=True, cache_dir=tmp_path)  # IXI Tiny falls back to the heads stand-in
    line = capsys.readouterr().out.strip()
    assert ds.source == "synthetic" and line.startswith("IXI Tiny — SYNTHETIC STAND-IN") and "heads" in line
    for col in ("img_path", "mask_path"):
        assert all(Path(p).is_file() and ".tmp" not in p for p in ds.df[col])
    again = load("ixi_tiny", fast=True, cache_dir=tmp_path, verbose=False)
    assert again.df.equals(ds.df) and len(list((tmp_path / "synthetic").iterdir())) == 1


# ---------------------------------------------------------------- concurrent loaders, safe archives
_LOADER = """
import hashlib, json, sys
from medlearn.data import load
from medlearn.data.registry import REGISTRY, Entry, RemoteFile
url, md5, size, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
REGISTRY["slowmnist"] = Entry(name="slowmnist", title="SlowMNIST", kind="medmnist2d", task="binary-class",
    license="CC0", citation="test fixture", files={28: (RemoteFile("medmnist/slowmnist.npz", url, md5, size),)},
    standin="medmnist:slowmnist", labels={0: "no", 1: "yes"}, n_samples={"train": 12, "val": 4, "test": 4},
    short="test fixture")
ds = load("slowmnist", cache_dir=cache, verbose=False)
print(json.dumps({"source": ds.source, "provenance": ds.provenance}))
"""


def test_two_processes_loading_the_same_file_both_get_the_verified_real_file(server, tmp_path, monkeypatch):
    import json
    import os
    import subprocess
    import sys

    monkeypatch.delenv("MEDLEARN_OFFLINE", raising=False)
    cache = tmp_path / "cache"
    _Handler.requests.clear()
    args = [sys.executable, "-c", _LOADER, f"{server}/slow.npz", hashlib.md5(NPZ).hexdigest(), str(len(NPZ)),
            str(cache)]
    env = {k: v for k, v in os.environ.items() if k != "MEDLEARN_OFFLINE"}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["source"] == "real", result["provenance"]  # no silent stand-in
    assert (cache / "medmnist" / "slowmnist.npz").read_bytes() == NPZ
    assert _Handler.requests.count("/slow.npz") == 1, "the second loader should wait and reuse the file"
    assert _leftovers(cache / "medmnist") == ["slowmnist.npz"]


def test_download_uses_a_unique_temporary_name_per_call(server, tmp_path, monkeypatch):
    import sys

    from medlearn import _atomic

    names = []
    real = _atomic.temporary_sibling
    module = sys.modules["medlearn.data.download"]  # `medlearn.data.download` is also the function
    monkeypatch.setattr(module, "temporary_sibling", lambda d, *a: names.append(real(d, *a)) or names[-1])
    for _ in range(2):
        (tmp_path / "f.bin").unlink(missing_ok=True)
        download(f"{server}/good", tmp_path / "f.bin", PAYLOAD_MD5, retries=1, progress=False)
    assert len(set(names)) == 2 and all(n.parent == tmp_path and n.name.startswith(".f.bin.") for n in names)
    assert _leftovers(tmp_path) == ["f.bin"]


def _tar(path: Path, members: list) -> Path:
    """Write a tar of (name, kind, payload_or_link) members: kind 'file', 'sym', 'hard' or 'fifo'."""
    import tarfile

    with tarfile.open(path, "w") as t:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                t.addfile(info, io.BytesIO(value))
            else:
                info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = value or ""
                t.addfile(info)
    return path


def _zip(path: Path, members: list) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


_BAD_TARS = {
    "absolute": [("ok.txt", "file", b"a"), ("/tmp/evil.txt", "file", b"x")],
    "dotdot": [("ok.txt", "file", b"a"), ("sub/../../evil.txt", "file", b"x")],
    "symlink_out": [("ok.txt", "file", b"a"), ("link", "sym", "../../evil")],
    "symlink_absolute": [("link", "sym", "/etc/passwd")],
    "hardlink_out": [("ok.txt", "file", b"a"), ("hard", "hard", "../evil.txt")],
    "through_a_link": [("d", "sym", "."), ("d/x.txt", "file", b"x")],
    "fifo": [("pipe", "fifo", None)],
    "too_big": [("big.bin", "file", b"x" * 5000)],
}


@pytest.mark.parametrize("case", sorted(_BAD_TARS))
def test_unsafe_tar_is_refused_before_anything_is_written(tmp_path, case):
    from medlearn.data.archive import UnsafeArchiveError, safe_extract

    archive = _tar(tmp_path / f"{case}.tar", _BAD_TARS[case])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchiveError, match=f"{case}.tar"):
        safe_extract(archive, work / "out", max_bytes=4096)
    assert list(work.iterdir()) == [], "a refused archive left files behind"
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


@pytest.mark.parametrize("name", ["/abs.txt", "../evil.txt", "a/../../evil.txt", "C:/evil.txt"])
def test_unsafe_zip_is_refused_before_anything_is_written(tmp_path, name):
    from medlearn.data.archive import UnsafeArchiveError, safe_extract

    archive = _zip(tmp_path / "bad.zip", [("ok.txt", b"a"), (name, b"x")])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchiveError, match="bad.zip"):
        safe_extract(archive, work / "out")
    assert list(work.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_zip_bomb_is_refused_by_its_total_size(tmp_path):
    from medlearn.data.archive import UnsafeArchiveError, safe_extract

    archive = _zip(tmp_path / "bomb.zip", [(f"f{i}.bin", bytes(2**20)) for i in range(8)])  # 8 MiB, tiny zip
    assert archive.stat().st_size < 2**20
    with pytest.raises(UnsafeArchiveError, match="more than the cap"):
        safe_extract(archive, tmp_path / "out", max_bytes=4 * 2**20)
    assert not (tmp_path / "out").exists()


def test_a_failure_half_way_leaves_nothing_behind(tmp_path, monkeypatch):
    from medlearn.data import archive as archive_mod

    archive = _tar(tmp_path / "good.tar", [(f"d/f{i}.txt", "file", b"data") for i in range(5)])
    calls = []

    def failing_copy(src, dst, budget, arch):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        dst.write_bytes(src.read())

    monkeypatch.setattr(archive_mod, "_copy_capped", failing_copy)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(OSError, match="No space"):
        archive_mod.safe_extract(archive, work / "out")
    assert len(calls) == 3 and list(work.iterdir()) == []


def test_safe_tar_and_zip_extract_completely_with_inside_links(tmp_path):
    from medlearn.data.archive import safe_extract

    tar = _tar(tmp_path / "ok.tar", [("a/x.txt", "file", b"x"), ("a/link", "sym", "x.txt"),
                                      ("a/hard", "hard", "a/x.txt")])
    out = safe_extract(tar, tmp_path / "t", marker=".complete")
    assert (out / "a" / "link").read_bytes() == b"x" and (out / "a" / "hard").read_bytes() == b"x"
    assert (out / ".complete").is_file()
    z = _zip(tmp_path / "ok.zip", [("img/a.txt", b"a"), ("img/b.txt", b"bb")])
    out = safe_extract(z, tmp_path / "z")
    assert sorted(p.name for p in out.rglob("*.txt")) == ["a.txt", "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_atomic_path_writes_whole_or_nothing(tmp_path):
    from medlearn._atomic import atomic_path, atomic_write_text

    dest = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(ZeroDivisionError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            1 / 0
    assert dest.read_text() == "old" and _leftovers(tmp_path) == ["a.txt"]
    with atomic_path(tmp_path / "sub" / "b.nii.gz", suffix=".nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path / "sub"
        tmp.write_bytes(b"x")
    assert _leftovers(tmp_path) == ["a.txt", "b.nii.gz"]
