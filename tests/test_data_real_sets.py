"""The four many-file real sets (IXI heads, liver raters, H&N organ raters, the JPEG 2000 CT) are
registered like the others: pinned upstream URLs, md5s that match the shared copies, seeding through
the md5 check, and a DataFrame in the layout the chapters read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medlearn.data import REGISTRY, load, seed_cache
from medlearn.data.cache import md5sum

NEW_SETS = {  # name -> (number of files, pinned commit in every URL)
    "ixi_t1_nichart": (121, "db8c8e1524df6031ac1e9c4825b3aceddad466d9"),
    "multirater_liver": (4, "558d213d3d0023a03d49de52a62dfbdbf7ffd718"),
    "tcia_hn_oar_2raters": (84, "2edb50947e50ef26e60b72dec89d36d71efe5549"),
    "ct_dicom_totalseg": (21, "0e65a448d557382b1e925276212b3bec7f5aff83"),
}


@pytest.mark.parametrize("name", sorted(NEW_SETS))
def test_entry_pins_every_file_to_a_commit_with_an_md5(name):
    n_files, commit = NEW_SETS[name]
    info = REGISTRY[name]
    assert info.real and info.license and info.citation and info.standin
    files = info.files_for(None)
    assert len(files) == n_files
    assert len({f.path for f in files}) == n_files
    for f in files:
        assert f.url.startswith("https://raw.githubusercontent.com/") and f"/{commit}/" in f.url, f.url
        assert re.fullmatch(r"[0-9a-f]{32}", f.md5) and f.size and f.size > 0
        assert f.path.startswith(f"{name}/") and f.seed_from


@pytest.mark.parametrize("name", sorted(NEW_SETS))
def test_manifest_md5s_and_sizes_match_the_shared_copies(name, shared_data):
    for f in REGISTRY[name].files_for(None):
        src = shared_data / f.seed_from
        assert src.is_file(), src
        assert src.stat().st_size == f.size, src
        assert md5sum(src) == f.md5, src


def test_upstream_names_follow_each_repository_layout():
    ixi = {Path(f.path).name: f.url for f in REGISTRY["ixi_t1_nichart"].files_for(None)}
    assert ixi["participants.csv"].endswith("test_data/processed/IXI/participants/participants.csv")
    assert ixi["IXI012-HH-1211_T1_DLMUSE.nii.gz"].endswith("/DLMUSE_seg/IXI012-HH-1211_T1_DLMUSE.nii.gz")
    hn = [f.url for f in REGISTRY["tcia_hn_oar_2raters"].files_for(None)]
    assert all(re.search(r"/nrrds/test/(oncologist|radiographer)/0522c00(17|57)/segmentations/[^/]+\.nrrd$", u)
               for u in hn)
    ct = [f for f in REGISTRY["ct_dicom_totalseg"].files_for(None) if f.path.endswith(".dcm")]
    # upstream DICOM files have no extension; the cache adds .dcm
    assert all(not f.url.endswith(".dcm") and Path(f.path).stem == f.url.rsplit("/", 1)[1] for f in ct)


def test_ixi_heads_load_with_binary_brain_masks_age_sex_and_subject_split(data_cache, shared_data):
    import nibabel as nib

    df = load("ixi_t1_nichart", verbose=False).df
    assert len(df) == 60 and df.subject.is_unique
    assert df.split.value_counts().to_dict() == {"train": 42, "test": 12, "val": 6}
    assert set(df.sex) == {"M", "F"} and df.age.between(18, 95).all()
    row = df.iloc[0]
    t1, mask, label = (nib.load(row[k]) for k in ("img_path", "mask_path", "label_path"))
    m = np.asanyarray(mask.dataobj)
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1}
    np.testing.assert_array_equal(m, np.asanyarray(label.dataobj) > 0)
    np.testing.assert_allclose(mask.affine, t1.affine)
    brain_ml = m.sum() * np.prod(mask.header.get_zooms()[:3]) / 1000
    assert 900 < brain_ml < 2200, brain_ml  # an adult brain (DLMUSE labels include the ventricles)
    # the split is by subject and reproducible
    assert load("ixi_t1_nichart", verbose=False).df.split.tolist() == df.split.tolist()


def test_rater_sets_and_ct_series_load_real(data_cache, shared_data):
    liver = load("multirater_liver", verbose=False)
    row = liver.df.iloc[0]
    assert liver.is_real and all(Path(row[f"rater{k}_path"]).is_file() for k in (1, 2, 3))
    organs = load("tcia_hn_oar_2raters", verbose=False).df
    assert len(organs) == 42 and organs.organ.nunique() == 21
    assert organs.oncologist_path.map(lambda p: Path(p).is_file()).all()
    assert organs.radiographer_path.map(lambda p: Path(p).is_file()).all()
    ct = load("ct_dicom_totalseg", verbose=False).df.iloc[0]
    assert len(list(Path(ct.img_path).glob("*.dcm"))) == 20 and Path(ct.label_path).is_file()


def test_a_tampered_shared_copy_is_refused_by_seeding(tmp_path, shared_data):
    import shutil

    from medlearn.data import ChecksumError

    src = tmp_path / "shared"
    (src / "multirater_liver").mkdir(parents=True)
    for f in (shared_data / "multirater_liver").glob("*.mha"):
        shutil.copy2(f, src / "multirater_liver" / f.name)
    with open(src / "multirater_liver" / "Patient01Homo_Rad02.mha", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ChecksumError):
        seed_cache(src, cache=tmp_path / "cache", verbose=False)
    assert not (tmp_path / "cache" / "multirater_liver" / "Patient01Homo_Rad02.mha").exists()


def test_a_read_only_cache_serves_real_data_and_writes_derived_files_elsewhere(tmp_path, shared_data,
                                                                               monkeypatch):
    """In the grading sandbox the cache is read-only: real data still load (never a stand-in), and
    the files derived from them (one NIfTI per MedMNIST case, generated stand-ins) go to a private
    temporary folder."""
    import os
    import subprocess
    import sys

    from medlearn.course import sandbox

    if not sandbox.bwrap_mode():
        pytest.skip("bubblewrap cannot run here (make system-deps installs it)")
    cache = tmp_path / "cache"
    seed_cache(shared_data, cache=cache, verbose=False)
    monkeypatch.setenv("MEDLEARN_DATA", str(cache))
    # an earlier `fast` load left a partial case folder behind: the sandbox must not rely on it
    from medlearn.data import load

    load("adrenalmnist3d", fast=True, n=8, verbose=False).df
    code = ("from medlearn.data import load\n"
            "ds = load('adrenalmnist3d', verbose=False)\n"
            "nod = load('nodules', fast=True, verbose=False)\n"
            "print(ds.source, ds.df.img_path.iloc[0], nod.df.img_path.iloc[0])\n")
    work = tmp_path / "work"
    work.mkdir()
    cmd = sandbox.sandbox_command(work) + [sys.executable, "-c", code]
    env = {"PATH": os.environ["PATH"], "MEDLEARN_DATA": str(cache), "MEDLEARN_OFFLINE": "1", "HOME": "/tmp"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    source, case, generated = done.stdout.split()[-3:]
    assert source == "real"
    assert case.startswith("/tmp/medlearn-derived/medmnist/adrenalmnist3d/"), case
    assert generated.startswith("/tmp/medlearn-derived/synthetic/"), generated
    assert not (cache / "synthetic").exists()
