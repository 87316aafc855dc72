"""`load(name, source=...)`: the one call every chapter makes to get data, real or stand-in, and says which."""

from __future__ import annotations

import importlib
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from medlearn._atomic import atomic_path
from medlearn.data import medmnist as mm
from medlearn.data.cache import cache_dir, derived_dir, md5sum, offline
from medlearn.data.dataset import Dataset
from medlearn.data.download import ChecksumError, DownloadError, download, seed_hint
from medlearn.data.registry import Entry, RemoteFile, entry

SOURCES = ("auto", "real", "synthetic")


# ---------------------------------------------------------------- real files: cache, fetch
def cached_path(f: RemoteFile, root: Path) -> Path:
    """Return where `f` lives in the cache at `root`."""
    return root / f.path


def is_cached(f: RemoteFile, root: Path, *, verify: bool = True) -> bool:
    """Return True when `f` is in the cache (and, with `verify`, its md5 is one we accept)."""
    path = cached_path(f, root)
    return path.is_file() and (not verify or md5sum(path) in f.accepted())


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Return True when the host of `url` accepts a TCP connection within `timeout` s (False if MEDLEARN_OFFLINE)."""
    if offline():
        return False
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    key = (parsed.hostname, port)
    if _REACHABLE.get(key) is False:  # probed unreachable earlier in this process: do not wait again
        return False
    result = []

    def probe():
        try:
            with socket.create_connection((parsed.hostname, port), timeout=timeout):
                result.append(True)
        except OSError:
            pass

    # a thread, because name resolution ignores socket timeouts on a machine with no DNS
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    _REACHABLE[key] = bool(result)
    return bool(result)


_REACHABLE: dict = {}


def fetch(info: Entry, size=None, *, root: Path | None = None, progress: bool = True) -> list[Path]:
    """Return the cached paths of a real data set's files, downloading (md5-verified) what is missing.

    Raises `DownloadError` (naming the URL, the expected path and md5, and how to seed the cache)
    or `ChecksumError`. A cached file with a wrong md5 is an error too: it names the file to delete.
    """
    root = cache_dir(root)
    paths = []
    for f in info.files_for(size):
        path = cached_path(f, root)
        if path.is_file():
            got = md5sum(path)
            if got in f.accepted():
                paths.append(path)
                continue
            raise ChecksumError(f"{path} is in the cache but its md5 is {got}, not {f.md5} "
                                f"(or a documented mirror). Delete it and load again, or reseed:\n"
                                + seed_hint(f.url, path, f.md5))
        if offline():
            raise DownloadError(f"{path.name} is not cached and MEDLEARN_OFFLINE is set.\n"
                                + seed_hint(f.url, path, f.md5))
        urls = [(f.url, f.md5)] + [(m.url, m.md5) for m in f.mirrors if m.url and m.url != f.url]
        error = None
        for url, _md5 in urls:
            try:
                paths.append(download(url, path, f.md5, accepted=f.accepted(), size=f.size, progress=progress))
                error = None
                break
            except (DownloadError, ChecksumError) as err:
                error = err
        if error is not None:
            raise error
    return paths


# ---------------------------------------------------------------- provenance
def _size_text(info: Entry, size) -> str:
    if size is None:
        return ""
    return f" {size}³" if info.kind == "medmnist3d" else f" {size}×{size}"


def _counts_text(counts: dict) -> str:
    return "/".join(str(counts.get(s, 0)) for s in ("train", "val", "test")) + " train/val/test"


# ---------------------------------------------------------------- MedMNIST
def _medmnist(info: Entry, size, *, source: str, how: str, npz: Path, seed: int, fast: bool, n,
              root: Path, out_dir: Path) -> Dataset:
    is3d = info.kind == "medmnist3d"
    full = mm.read_npz(npz)
    want = mm.counts_for({s: len(full[s][1]) for s in mm.SPLITS}, fast=fast, n=n)
    arrays, indices = {}, {}
    for s_i, split in enumerate(mm.SPLITS):
        x, y = full[split]
        idx = mm.subset_indices(y, want[split], seed + s_i) if source == "real" else range(len(y))
        idx = list(idx)
        arrays[split], indices[split] = (x[idx], y[idx]), idx
    spacing = mm.spacing_for(info.name, size) if is3d else None
    counts = {s: len(arrays[s][1]) for s in mm.SPLITS}
    full_counts = {s: len(full[s][1]) for s in mm.SPLITS}
    counts_text = _counts_text(counts)
    if source == "real" and counts != full_counts:
        counts_text += f" (a stratified subset of {_counts_text(full_counts)}, seed {seed})"
    if source == "real":
        line = f"{info.title}{_size_text(info, size)} — real data ({info.short}), {counts_text}, {how}"
    else:
        what = ("nodule patches from the 'nodules' generator (benign smooth, malignant spiculated)"
                if info.name == "nodulemnist3d" and (npz.parent / "from-nodules").exists() else
                f"lesion-like {'volumes' if is3d else 'images'} labelled by margin irregularity"
                + (" and elongation" if len(info.labels) > 2 else ""))
        line = (f"{info.title}{_size_text(info, size)} — SYNTHETIC STAND-IN ({how}): {what}, in MedMNIST "
                f"format, {counts_text}; not patient data")
    label_names = info.labels

    def build():
        return mm.write_cases(arrays, indices, out_dir, is3d=is3d, spacing=spacing, label_names=label_names)

    return Dataset(info.name, info, source, out_dir, line, arrays=arrays,
                   df_builder=build, size=size, spacing=spacing)


def _medmnist_standin(info: Entry, size, *, seed, fast, n, root: Path, why: str) -> Dataset:
    import numpy as np

    from medlearn.data.synthetic.medmnist_like import generate_arrays, nodule_arrays

    if info.task == "multi-label, binary-class":
        raise NotImplementedError(f"no synthetic stand-in for the multi-label set {info.name}; "
                                  "use source='real' with a network or a seeded cache")
    counts = mm.counts_for(info.n_samples, fast=fast, n=n)
    tag = f"n{n}" if n is not None else ("fast" if fast else "full")
    folder = derived_dir(root / "synthetic" / f"{info.name}_{size}_seed{seed}_{tag}", root)
    npz = folder / "arrays.npz"
    if not npz.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        arrays = None
        if info.name == "nodulemnist3d":  # the richer nodule stand-in (HU patches, margins) when it is there
            arrays = nodule_arrays(size=size, counts=counts, seed=seed, workdir=folder / "nodules-work")
            if arrays is not None:
                (folder / "from-nodules").touch()
        if arrays is None:
            arrays = generate_arrays(info.name, size=size, counts=counts, n_classes=max(2, len(info.labels)),
                                     is3d=info.kind == "medmnist3d", n_channels=info.channels, seed=seed)
        mm._atomic_save(lambda p: np.savez_compressed(p, **arrays), npz)
    return _medmnist(info, size, source="synthetic", how=why, npz=npz, seed=seed, fast=False, n=None,
                     root=root, out_dir=folder / "cases")


# ---------------------------------------------------------------- file sets
def _files_dataset(info: Entry, root: Path, how: str) -> Dataset:
    import pandas as pd

    base = root / info.name
    if info.name == "dcmqi_ct_liver":
        df = pd.DataFrame([{
            "img_path": str(base / "ct"), "seg_path": str(base / "seg" / "liver_seg.dcm"),
            "mask_path": str(base / "nrrd" / "liver_seg.nrrd"), "spine_path": str(base / "nrrd" / "spine_seg.nrrd"),
            "heart_path": str(base / "nrrd" / "heart_seg.nrrd"), "labels": "liver", "split": "test", "is_val": False,
        }])
        what = "3-slice CT series (DICOM) + liver DICOM SEG + NRRD label maps"
    elif info.name == "tcga_gbm_brain":
        df = pd.DataFrame([{"img_path": str(base / "brain1_image.nrrd"), "mask_path": str(base / "brain1_label.nrrd"),
                            "labels": "tumour", "split": "test", "is_val": False, "patient_id": "TCGA-02-0003"}])
        what = "1 T1 post-contrast MRI with tumour label"
    elif info.name == "ixi_t1_nichart":
        df = _ixi_frame(base)
        what = (f"{len(df)} T1 heads with skull + brain masks (DLMUSE label > 0), age and sex; split by subject "
                f"{_counts_text(df.split.value_counts().to_dict())} (seed 0)")
    elif info.name == "multirater_liver":
        df = pd.DataFrame([{
            "img_path": str(base / "Patient01Homo.mha"),
            **{f"rater{k}_path": str(base / f"Patient01Homo_Rad0{k}.mha") for k in (1, 2, 3)},
            "labels": "tumour", "split": "test", "is_val": False, "patient_id": "Patient01",
        }])
        what = "1 CT (uint8, not HU) with a liver tumour outlined by 3 radiologists"
    elif info.name == "tcia_hn_oar_2raters":
        rows = []
        for f in info.files_for(None):
            _, patient, rater, organ = Path(f.path).parts
            if rater == "oncologist":
                rows.append({"patient_id": patient, "organ": organ.removesuffix(".nrrd"),
                             "oncologist_path": str(root / f.path),
                             "radiographer_path": str(base / patient / "radiographer" / organ)})
        df = pd.DataFrame(rows)
        what = f"{df.organ.nunique()} organs at risk x {df.patient_id.nunique()} patients, 2 raters (masks only)"
    elif info.name == "ct_dicom_totalseg":
        df = pd.DataFrame([{"img_path": str(base / "example_ct_dicom"),
                            "label_path": str(base / "example_seg_dicom.nii.gz"),
                            "labels": "organs (TotalSegmentator 'total' task)", "split": "test", "is_val": False}])
        what = "20-slice CT series (DICOM, JPEG 2000 lossless) + a 31-label organ map on its grid"
    else:
        raise KeyError(info.name)
    line = f"{info.title} — real data ({info.short}), {what}, {how}"
    return Dataset(info.name, info, "real", base, line, df=df)


def _ixi_frame(base: Path):
    """One row per IXI subject: T1, DLMUSE label map, a binary brain mask (written once), age, sex, split.

    The brain mask (DLMUSE label > 0, uint8, the T1's affine) is derived data: written next to the
    real files on first load with an atomic rename, so fastMONAI reads a binary `MedMask` directly.
    Split by subject, seeded (seed 0): 42 train / 6 val / 12 test of the 60 subjects.
    """
    import numpy as np
    import pandas as pd

    people = pd.read_csv(base / "participants.csv").set_index("MRID")
    masks = derived_dir(base / "brain_mask", base.parent)
    masks.mkdir(parents=True, exist_ok=True)
    rows = []
    for img in sorted((base / "t1").glob("*_T1.nii.gz")):
        subject = img.name.removesuffix("_T1.nii.gz")
        label = base / "dlmuse_seg" / f"{subject}_T1_DLMUSE.nii.gz"
        mask = masks / f"{subject}_brain.nii.gz"
        if not mask.is_file():
            _write_brain_mask(label, mask)
        rows.append({"img_path": str(img), "mask_path": str(mask), "label_path": str(label),
                     "subject": subject, "age": float(people.loc[subject, "Age"]),
                     "sex": str(people.loc[subject, "Sex"]), "labels": "brain"})
    df = pd.DataFrame(rows)
    order = np.random.default_rng(0).permutation(len(df))
    n_test, n_val = round(0.2 * len(df)), round(0.1 * len(df))
    split = np.array(["train"] * len(df), dtype=object)
    split[order[:n_test]], split[order[n_test:n_test + n_val]] = "test", "val"
    df["split"], df["is_val"] = split, split == "val"
    return df


def _write_brain_mask(label: Path, dest: Path) -> None:
    """Write `label > 0` as a uint8 NIfTI with the label map's affine, atomically."""
    import nibabel as nib
    import numpy as np

    img = nib.load(str(label))
    mask = nib.Nifti1Image((np.asanyarray(img.dataobj) > 0).astype(np.uint8), img.affine)
    mask.set_qform(img.affine, code=1)
    mask.set_sform(img.affine, code=1)
    with atomic_path(dest, suffix=".nii.gz") as tmp:
        nib.save(mask, str(tmp))


def _archive_dataset(info: Entry, root: Path, how: str) -> Dataset:
    """IXI Tiny (zip) and MSD Task04 (tar): extracted once next to the archive."""
    import pandas as pd

    from medlearn.data.archive import safe_extract

    archive = root / info.files_for(None)[0].path
    out = archive.parent / "extracted"
    if not (out / ".complete").is_file():
        # members checked before anything is written; all or nothing (medlearn/data/archive.py)
        safe_extract(archive, out, marker=".complete")
    rows = []
    if info.name == "ixi_tiny":
        for img in sorted(out.rglob("image/*.nii.gz")):
            mask = img.parent.parent / "label" / img.name.replace("_image", "_label")
            rows.append({"img_path": str(img), "mask_path": str(mask), "subject": img.name.split("_")[0]})
    else:
        for img in sorted(out.rglob("imagesTr/*.nii.gz")):
            if img.name.startswith("._"):
                continue
            rows.append({"img_path": str(img), "mask_path": str(img.parent.parent / "labelsTr" / img.name),
                         "subject": img.name.split(".")[0]})
    df = pd.DataFrame(rows)
    if len(df):
        import numpy as np

        rng = np.random.default_rng(0)
        split = rng.choice(["train", "val", "test"], size=len(df), p=[0.7, 0.1, 0.2])
        df["labels"] = "brain" if info.name == "ixi_tiny" else "hippocampus"
        df["split"], df["is_val"] = split, split == "val"
    line = f"{info.title} — real data ({info.short}), {len(df)} subjects (random 70/10/20 split, seed 0), {how}"
    return Dataset(info.name, info, "real", out, line, df=df)


# ---------------------------------------------------------------- synthetic generators (other owners' modules)
def _generator(name: str):
    """Return `medlearn.data.synthetic.<name>.generate`, or None when that module is not there."""
    try:
        module = importlib.import_module(f"medlearn.data.synthetic.{name}")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("medlearn.data.synthetic"):
            return None
        raise
    return getattr(module, "generate", None)


def _generated(info: Entry, generator_name: str, *, seed, fast, n, root: Path, why: str, title: str) -> Dataset:
    import pandas as pd

    generate = _generator(generator_name)
    if generate is None:
        raise NotImplementedError(f"the stand-in generator medlearn/data/synthetic/{generator_name}.py is not "
                                  f"available, so {info.name} has no synthetic version here")
    tag = f"n{n}" if n is not None else ("fast" if fast else "full")
    folder = derived_dir(root / "synthetic" / f"{generator_name}_seed{seed}_{tag}", root)
    index = folder / "index.csv"
    if not index.is_file():
        import shutil

        # generate into a private folder and rename it into place: an interrupted run leaves no
        # half-written set, and two notebooks generating the same set at once do not collide
        tmp = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            df = generate(tmp, n=n, seed=seed, fast=fast)
            for col in df.columns:  # the generator wrote paths under tmp; they will live under folder
                if df[col].map(lambda v: isinstance(v, str)).any():
                    df[col] = df[col].map(lambda v: v.replace(str(tmp), str(folder)) if isinstance(v, str) else v)
            df.to_csv(tmp / "index.csv", index=False)
            if folder.exists() and not index.is_file():
                shutil.rmtree(folder, ignore_errors=True)  # left over from an interrupted older version
            try:
                os.replace(tmp, folder)
            except OSError:  # another process finished first: use its copy
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    df = pd.read_csv(index)
    counts = {}
    if "split" in df:
        counts = df["split"].value_counts().to_dict()
    what = _counts_text(counts) if len(counts) > 1 else f"{len(df)} case(s)"
    if why:  # standing in for a real set: say what it is made of
        made_of = {"nodules": "nodule patches in HU", "heads": "T1-like heads with brain masks",
                   "liver_raters": "a CT-like volume with a tumour outlined by 3 simulated raters",
                   "organ_raters": "organ-like masks of many sizes outlined by 2 simulated raters",
                   "ct_series": "CT series written as DICOM"}.get(generator_name, "generated cases")
        what = f"{made_of} from medlearn's '{generator_name}' generator (seed {seed}), {what}"
    line = f"{title} — SYNTHETIC{' STAND-IN' if why else ''} ({why or f'generated by medlearn, seed {seed}'}): {what}; not patient data"
    return Dataset(info.name, info, "synthetic", folder, line, df=df)


# ---------------------------------------------------------------- load
def _standin(info: Entry, size, *, seed, fast, n, root, why: str) -> Dataset:
    if info.kind.startswith("medmnist"):
        return _medmnist_standin(info, size, seed=seed, fast=fast, n=n, root=root, why=why)
    if info.standin is None:
        raise NotImplementedError(f"{info.name} has no synthetic stand-in ({why}); use source='real' with a "
                                  "network, or seed the cache (`medlearn seed-cache DIR`)")
    return _generated(info, info.standin, seed=seed, fast=fast, n=n, root=root, why=why, title=info.title)


def _real(info: Entry, size, *, seed, fast, n, root, how: str) -> Dataset:
    files = info.files_for(size)
    if info.kind.startswith("medmnist"):
        return _medmnist(info, size, source="real", how=how, npz=root / files[0].path, seed=seed, fast=fast, n=n,
                         root=root, out_dir=derived_dir(root / "medmnist" / Path(files[0].path).stem, root))
    if info.kind == "archive":
        return _archive_dataset(info, root, how)
    return _files_dataset(info, root, how)


def load(name: str, source: str = "auto", *, size: int | None = None, seed: int = 0, fast: bool = False,
         n: int | None = None, cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> Dataset:
    """Return a `Dataset` (files on disk, `.df`, `.arrays()`), real or a synthetic stand-in, and print which.

    source: "auto" uses the real set when it is cached or downloadable (a 3 s reachability check;
    `MEDLEARN_OFFLINE=1` skips it) and otherwise the stand-in; "real" never falls back (it raises
    `DownloadError` with the URL and how to seed the cache); "synthetic" always generates.
    size: 28 or 64 for MedMNIST 3D (28, 64, 128, 224 for 2D); default the smallest.
    fast / n: a small subset (stratified, `seed`) of a real set, or a small stand-in; every chapter
    passes `fast=FAST`. Exactly one provenance line is printed (unless `verbose=False`).
    Introduced on the book page "Data in this book"; used by every part.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    info = entry(name)
    root = _cache(cache_dir)
    if info.kind.startswith("medmnist") and size is None:
        size = info.sizes[0]
    if info.real:
        info.files_for(size)  # validates size with a clear KeyError
    if not info.real:  # synthetic-only sets: nodules, heads
        ds = _generated(info, info.standin, seed=seed, fast=fast, n=n, root=root, why="", title=info.title)
    elif source == "synthetic":
        ds = _standin(info, size, seed=seed, fast=fast, n=n, root=root, why="requested with source='synthetic'")
    else:
        files = info.files_for(size)
        cached = all(is_cached(f, root) for f in files)
        if cached:
            ds = _real(info, size, seed=seed, fast=fast, n=n, root=root, how="from cache")
        elif source == "real":
            fetch(info, size, root=root)
            ds = _real(info, size, seed=seed, fast=fast, n=n, root=root, how="downloaded and md5-verified")
        else:
            missing = [f for f in files if not is_cached(f, root)]
            why = None
            if offline():
                why = "no cached copy and MEDLEARN_OFFLINE is set"
            elif not reachable(missing[0].url):
                why = "no cached copy and no network"
            else:
                try:
                    fetch(info, size, root=root)
                except (DownloadError, ChecksumError) as err:
                    why = f"download failed: {str(err).splitlines()[0]}"
            if why is None:
                ds = _real(info, size, seed=seed, fast=fast, n=n, root=root, how="downloaded and md5-verified")
            else:
                ds = _standin(info, size, seed=seed, fast=fast, n=n, root=root, why=why)
    if verbose:
        print(ds.provenance)
    return ds


def _cache(override):
    """`cache_dir` under another name: `load`'s keyword argument `cache_dir` shadows the function."""
    return cache_dir(override)
