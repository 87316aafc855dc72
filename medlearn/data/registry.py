"""The registry: every data set the course uses, where it comes from, and how to cite it.

One `Entry` per data set. Real sets list their files (`RemoteFile`: cache path, URL, md5, size,
and where a copy sits in a folder laid out like `../shared/data`, for `seed_cache`). All MedMNIST
sets are built from the installed `medmnist` package's own metadata (`medmnist.info.INFO`), so
their URLs and MD5s are the official ones and no network is needed to read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MEDMNIST_CITATION = (
    "Yang J, Shi R, Wei D, Liu Z, Zhao L, Ke B, Pfister H, Ni B. MedMNIST v2 - A large-scale lightweight "
    "benchmark for 2D and 3D biomedical image classification. Scientific Data 10, 41 (2023). "
    "https://doi.org/10.1038/s41597-022-01721-8"
)
MEDMNIST_HOMEPAGE = "https://medmnist.com (Zenodo record 10519652)"

# The source data set behind each MedMNIST set we use in a chapter (cite both).
_MEDMNIST_SOURCES = {
    "breastmnist": "Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound images. Data in Brief 28, 104863 (2020).",
    "pneumoniamnist": "Kermany DS, Goldbaum M, Cai W, et al. Identifying medical diagnoses and treatable diseases by image-based deep learning. Cell 172(5), 1122-1131 (2018).",
    "nodulemnist3d": "Armato SG III, McLennan G, Bidaut L, et al. The Lung Image Database Consortium (LIDC) and Image Database Resource Initiative (IDRI). Medical Physics 38(2), 915-931 (2011).",
    "organmnist3d": "Bilic P, Christ P, Li HB, et al. The Liver Tumor Segmentation Benchmark (LiTS). Medical Image Analysis 84, 102680 (2023).",
    "adrenalmnist3d": "New in MedMNIST v2: adrenal-gland shape masks from abdominal CT, Zhongshan Hospital, Fudan University.",
}
_CHAPTERS = {
    "breastmnist": ("1.1 Learning from images", "1.2 Convolutions and baselines", "Data in this book"),
    "pneumoniamnist": (),  # registered, used by no chapter yet
    "adrenalmnist3d": ("Part 3 (classification)", "Data in this book"),
    "nodulemnist3d": ("3.1 Classification (full tier, DATA='real')", "Data in this book"),
    "organmnist3d": ("Data in this book",),
}
_SHARED_COMMITS = {
    "adrenal28": "github.com/yohann1146/cg-marching-cubes@e3f7b962baf3755622139a7414eef28df44f5a45",
    "adrenal64": "github.com/yohann1146/cg-marching-cubes@342971a6f0136b3c806cfa397e10bb0086dfc5bd",
}


@dataclass(frozen=True)
class Mirror:
    """Another copy of a file that we accept, with its own md5 and a note saying why it differs."""

    md5: str
    note: str
    url: str | None = None


@dataclass(frozen=True)
class RemoteFile:
    """One file of a real data set: its place in the cache, its official URL and md5, its size in bytes."""

    path: str  # relative to the cache root, POSIX separators
    url: str
    md5: str
    size: int | None = None
    seed_from: str | None = None  # relative to a folder laid out like ../shared/data
    mirrors: tuple[Mirror, ...] = ()

    def accepted(self) -> dict[str, str]:
        """Return {md5: note} for every md5 we accept for this file (the official one first)."""
        out = {self.md5: "official file"}
        out.update({m.md5: m.note for m in self.mirrors})
        return out


@dataclass(frozen=True)
class Entry:
    """A registry entry: what a data set is, where its files come from, its license and citation."""

    name: str
    title: str
    kind: str  # "medmnist2d" | "medmnist3d" | "archive" | "files" | "synthetic"
    task: str
    license: str
    citation: str
    description: str = ""
    homepage: str = ""
    chapters: tuple[str, ...] = ()
    files: dict = field(default_factory=dict)  # size (or None) -> tuple[RemoteFile, ...]
    standin: str | None = None  # name of the synthetic generator used when the real set is unavailable
    labels: dict = field(default_factory=dict)  # int -> class name
    n_samples: dict = field(default_factory=dict)  # split -> count
    channels: int = 1  # image channels (3 for colour MedMNIST sets)
    short: str = ""  # short provenance, e.g. "MedMNIST v2, CC BY 4.0, Yang et al. 2023"

    @property
    def real(self) -> bool:
        """True when the entry names real files (False for synthetic-only sets)."""
        return bool(self.files)

    @property
    def sizes(self) -> tuple:
        """The image sizes available (e.g. (28, 64) for a MedMNIST 3D set; (None,) otherwise)."""
        return tuple(self.files) or (None,)

    def files_for(self, size=None) -> tuple[RemoteFile, ...]:
        """Return the files of this data set at `size` (default: the smallest); KeyError names the choices."""
        if not self.files:
            return ()
        if size is None:
            size = self.sizes[0]
        if size not in self.files:
            raise KeyError(f"{self.name} has no size {size!r}; choose one of {list(self.files)}")
        return self.files[size]

    def nbytes(self, size=None) -> int | None:
        """Return the total size in bytes of the files at `size`, or None when a size is unknown."""
        sizes = [f.size for f in self.files_for(size)]
        return None if not sizes or None in sizes else sum(sizes)


def _medmnist_info() -> dict:
    """Return `medmnist.info.INFO` read from the installed package's info.py.

    `import medmnist.info` would first run `medmnist/__init__`, which imports torch (seconds);
    the metadata module itself is plain Python, so we execute just that file.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `medmnist` package is not installed; `pip install medmnist` (its metadata "
                          "holds the official MedMNIST URLs and MD5s)")
    path = Path(list(spec.submodule_search_locations)[0]) / "info.py"
    mspec = importlib.util.spec_from_file_location("_medlearn_medmnist_info", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    return module.INFO


def _medmnist_entries() -> dict[str, Entry]:
    INFO = _medmnist_info()

    known_sizes = {  # bytes, where we have measured a copy
        ("adrenalmnist3d", 28): 276833,
        ("adrenalmnist3d", 64): 1880591,
    }
    out = {}
    for flag, info in INFO.items():
        is3d = flag.endswith("3d")
        files = {}
        for size in (28, 64) if is3d else (28, 64, 128, 224):
            suffix = "" if size == 28 else f"_{size}"
            url, md5 = info.get(f"url{suffix}"), info.get(f"MD5{suffix}")
            if not url or not md5:
                continue
            fname = f"{flag}{suffix}.npz"
            seed_from, mirrors = None, ()
            if flag == "adrenalmnist3d" and size in (28, 64):
                seed_from = f"medmnist_adrenal3d/{fname}"
                repo = _SHARED_COMMITS[f"adrenal{size}"]
                gh, commit = repo.split("@")
                mirrors = (Mirror(md5, f"byte-identical copy in {repo}",
                                  f"https://raw.githubusercontent.com/{gh.split('/', 1)[1]}/{commit}/{fname}"),)
            if flag == "breastmnist" and size == 28:
                seed_from = "medmnist_breast/breastmnist.npz"
                mirrors = (Mirror(
                    "098de56cd2d92ef2f7170e6153c02849",
                    "re-saved copy of the official file (same images and 546/78/156 splits; labels flattened "
                    "from (N, 1) to (N,)); from github.com/KamalJain777/AMLS_25_26_SN24205421 at commit "
                    "b7f638d33cc9e6dc1a0de213b243598105837d5f, Datasets/BreastMNIST.npz",
                    "https://raw.githubusercontent.com/KamalJain777/AMLS_25_26_SN24205421/"
                    "b7f638d33cc9e6dc1a0de213b243598105837d5f/Datasets/BreastMNIST.npz",
                ),)
            files[size] = (RemoteFile(f"medmnist/{fname}", url, md5, known_sizes.get((flag, size)),
                                      seed_from, mirrors),)
        source = _MEDMNIST_SOURCES.get(flag)
        out[flag] = Entry(
            name=flag,
            title=info["python_class"],
            kind="medmnist3d" if is3d else "medmnist2d",
            task=info["task"],
            license=info["license"],
            citation=MEDMNIST_CITATION + (f" Source data: {source}" if source else ""),
            description=info["description"],
            homepage=MEDMNIST_HOMEPAGE,
            chapters=_CHAPTERS.get(flag, ()),
            files=files,
            standin=f"medmnist:{flag}",
            labels={int(k): v for k, v in info["label"].items()},
            n_samples=dict(info["n_samples"]),
            channels=int(info.get("n_channels", 1)),
            short=f"MedMNIST v2, {info['license']}, Yang et al. 2023",
        )
    return out


def _raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_DCMQI = ("QIICR/dcmqi", "b6137d9ee8cf6cd6c074fe27d1af26a30b578753")
_NICHART = ("CBICA/NiChart_Project", "db8c8e1524df6031ac1e9c4825b3aceddad466d9")
_EMBC = ("zivy/EMBC2019_WORKSHOP_DATA", "558d213d3d0023a03d49de52a62dfbdbf7ffd718")
_DEEPMIND_HN = ("deepmind/tcia-ct-scan-dataset", "2edb50947e50ef26e60b72dec89d36d71efe5549")
_TOTALSEG = ("wasserth/TotalSegmentator", "0e65a448d557382b1e925276212b3bec7f5aff83")


def _manifest(name: str, repo: tuple[str, str]) -> tuple[RemoteFile, ...]:
    """Return the files of a many-file set from `manifests/<name>.tsv` (cache path, upstream path, md5, bytes).

    The manifests were written from the byte copies in `../shared/data` (md5 equal to the upstream
    blobs at the pinned commit), so the same md5 verifies a download and a seeded copy.
    """
    from pathlib import Path

    rows = (Path(__file__).parent / "manifests" / f"{name}.tsv").read_text().splitlines()
    out = []
    for line in rows:
        if line.startswith("#") or line.startswith("cache_path"):
            continue
        cache_path, upstream, seed_from, md5, nbytes = line.split("\t")
        out.append(RemoteFile(cache_path, _raw(*repo, upstream), md5, int(nbytes), seed_from))
    return tuple(out)
_PYRAD = ("AIM-Harvard/pyradiomics", "8ed579383b44806651c463d5e691f3b2b57522ab")


def _other_entries() -> dict[str, Entry]:
    dcm = [
        RemoteFile("dcmqi_ct_liver/ct/01.dcm", _raw(*_DCMQI, "data/segmentations/ct-3slice/01.dcm"),
                   "79530391773766eb19b546cb3e2f7257", 526474, "dicom_ct_liver_seg/ct/01.dcm"),
        RemoteFile("dcmqi_ct_liver/ct/02.dcm", _raw(*_DCMQI, "data/segmentations/ct-3slice/02.dcm"),
                   "0446c8e54fa9a100864bf571fab7d57e", 526474, "dicom_ct_liver_seg/ct/02.dcm"),
        RemoteFile("dcmqi_ct_liver/ct/03.dcm", _raw(*_DCMQI, "data/segmentations/ct-3slice/03.dcm"),
                   "10732118b26200c2ac99bfb861414171", 526474, "dicom_ct_liver_seg/ct/03.dcm"),
        RemoteFile("dcmqi_ct_liver/seg/liver_seg.dcm", _raw(*_DCMQI, "data/segmentations/liver.dcm"),
                   "a362ac685eca8dd134ca3cba2dcd510a", 102630, "dicom_ct_liver_seg/seg/liver_seg.dcm"),
        RemoteFile("dcmqi_ct_liver/nrrd/liver_seg.nrrd", _raw(*_DCMQI, "data/segmentations/liver_seg.nrrd"),
                   "c48acacd5ee8c245d64d2c756bd329fd", 5235, "dicom_ct_liver_seg/nrrd/liver_seg.nrrd"),
        RemoteFile("dcmqi_ct_liver/nrrd/spine_seg.nrrd", _raw(*_DCMQI, "data/segmentations/spine_seg.nrrd"),
                   "a6dde7b1b44146e69c049649d6ac0467", 2936, "dicom_ct_liver_seg/nrrd/spine_seg.nrrd"),
        RemoteFile("dcmqi_ct_liver/nrrd/heart_seg.nrrd", _raw(*_DCMQI, "data/segmentations/heart_seg.nrrd"),
                   "ca999d3b18a0a735bc8f8cdb71b5064a", 3501, "dicom_ct_liver_seg/nrrd/heart_seg.nrrd"),
    ]
    brain = [
        RemoteFile("tcga_gbm_brain/brain1_image.nrrd", _raw(*_PYRAD, "data/brain1_image.nrrd"),
                   "62436453f589f2618fb175723b668445", 2023786, "pyradiomics_brain1_gbm/brain1_image.nrrd"),
        RemoteFile("tcga_gbm_brain/brain1_label.nrrd", _raw(*_PYRAD, "data/brain1_label.nrrd"),
                   "79150bebec401404ccde64c1b8f49e5c", 7517, "pyradiomics_brain1_gbm/brain1_label.nrrd"),
    ]
    return {
        # URL and md5 as in TorchIO's torchio.datasets.ixi.IXITiny
        "ixi_tiny": Entry(
            name="ixi_tiny", title="IXI Tiny", kind="archive", task="segmentation (brain)",
            license="CC BY-SA 3.0 (IXI data set)",
            citation="IXI data set, Information eXtraction from Images, https://brain-development.org/ixi-dataset/ ; "
                     "tiny version from Perez-Garcia F, Sparks R, Ourselin S. TorchIO: a Python library for efficient "
                     "loading, preprocessing, augmentation and patch-based sampling of medical images in deep learning. "
                     "Computer Methods and Programs in Biomedicine 208, 106236 (2021).",
            description="566 T1-weighted brain MR images (83x44x55 after TorchIO's preprocessing) with brain masks.",
            homepage="https://torchio.readthedocs.io/datasets.html#ixitiny",
            chapters=("Part 4 (segmentation)",),
            files={None: (RemoteFile("ixi_tiny/ixi_tiny.zip", "https://www.dropbox.com/s/ogxjwjxdv5mieah/ixi_tiny.zip?dl=1",
                                     "bfb60f4074283d78622760230bfa1f98"),)},
            standin="heads", short="IXI, CC BY-SA 3.0, via TorchIO",
        ),
        # URL and md5 as in MONAI's monai.apps.datasets.DecathlonDataset
        "msd_hippocampus": Entry(
            name="msd_hippocampus", title="MSD Task04 Hippocampus", kind="archive", task="segmentation (hippocampus)",
            license="CC BY-SA 4.0",
            citation="Antonelli M, Reinke A, Bakas S, et al. The Medical Segmentation Decathlon. Nature Communications 13, "
                     "4128 (2022). https://doi.org/10.1038/s41467-022-30695-9",
            description="394 T1-weighted MR crops around the hippocampus (260 labelled for training), anterior and posterior labels.",
            homepage="http://medicaldecathlon.com",
            chapters=(),  # registered, used by no chapter yet
            files={None: (RemoteFile("msd_hippocampus/Task04_Hippocampus.tar",
                                     "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar",
                                     "9d24dba78a72977dbd1d2e110310f31b"),)},
            standin=None, short="Medical Segmentation Decathlon, CC BY-SA 4.0, Antonelli et al. 2022",
        ),
        "dcmqi_ct_liver": Entry(
            name="dcmqi_ct_liver", title="dcmqi CT series + liver DICOM SEG", kind="files", task="DICOM, segmentation",
            license="BSD-3-Clause (dcmqi test data)",
            citation="Herz C, Fillion-Robin JC, Onken M, et al. dcmqi: An open source library for standardized "
                     "communication of quantitative image analysis results using DICOM. Cancer Research 77(21), "
                     "e87-e90 (2017). Files from github.com/QIICR/dcmqi at commit " + _DCMQI[1] + ".",
            description="A real, anonymized 3-slice CT series (GE, 512x512, 0.81 mm pixels, 1 mm slices), a DICOM SEG "
                        "of the liver that references it, and NRRD label maps (liver, spine, heart) on the same grid.",
            homepage="https://github.com/QIICR/dcmqi",
            chapters=("2.2 DICOM", "2.3 PACS", "Part 6 (deployment)"),
            files={None: tuple(dcm)},
            standin="ct_series", short="dcmqi test data, BSD-3-Clause, Herz et al. 2017",
        ),
        "tcga_gbm_brain": Entry(
            name="tcga_gbm_brain", title="TCGA-GBM brain MRI with tumour label", kind="files",
            task="segmentation (tumour)", license="CC BY 3.0 (TCIA TCGA-GBM); BSD-3-Clause (pyradiomics repository)",
            citation="Clark K, Vendt B, Smith K, et al. The Cancer Imaging Archive (TCIA). J Digit Imaging 26(6), "
                     "1045-1057 (2013); TCGA-GBM collection, https://doi.org/10.7937/K9/TCIA.2016.RNYFUYE9 ; "
                     "patient TCGA-02-0003 as shipped in pyradiomics' test data (github.com/AIM-Harvard/pyradiomics "
                     "at commit " + _PYRAD[1] + ").",
            description="One T1 post-contrast brain MRI, 256x256x25 at 0.78x0.78x6.5 mm, with a tumour label.",
            homepage="https://www.cancerimagingarchive.net/collection/tcga-gbm/",
            chapters=("2.1 Modalities", "Part 4 (segmentation)"),
            files={None: tuple(brain)},
            standin="brain_tumour", short="TCIA TCGA-GBM, CC BY 3.0, Clark et al. 2013",
        ),
        "ixi_t1_nichart": Entry(
            name="ixi_t1_nichart", title="IXI T1 heads with DLMUSE brain labels", kind="files",
            task="segmentation (brain extraction); brain volume vs age and sex",
            license="CC BY-SA 3.0 (IXI data set); SBIA Software License (NiChart repository)",
            citation="IXI data set, Information eXtraction from Images, https://brain-development.org/ixi-dataset/ ; "
                     "labels by DLMUSE: Doshi J, Erus G, Ou Y, et al. MUSE: MUlti-atlas region Segmentation "
                     "utilizing Ensembles of registration algorithms and parameters, and locally optimal atlas "
                     "selection. NeuroImage 127, 186-195 (2016); files from the NiChart project "
                     "(github.com/CBICA/NiChart_Project at commit " + _NICHART[1] + ").",
            description="60 real T1-weighted head MRIs with skull (Hammersmith Hospital, Philips 3T), 120x120x90 at "
                        "2 mm, each with a DLMUSE label map (149 labels; brain = label > 0: a tool's output, not "
                        "hand-drawn), and the age and sex of every subject.",
            homepage="https://brain-development.org/ixi-dataset/",
            chapters=("4.1 Skull stripping", "5.3 The data filter", "6.1 Model card", "6.2 DICOM SEG"),
            files={None: _manifest("ixi_t1_nichart", _NICHART)},
            standin="heads", short="IXI, CC BY-SA 3.0; DLMUSE labels via NiChart",
        ),
        "multirater_liver": Entry(
            name="multirater_liver", title="Liver tumour CT, three radiologists", kind="files",
            task="segmentation (tumour), inter-rater variability",
            license="Apache-2.0 (SimpleITK-Notebooks data)",
            citation="Popa T, Ibanez L, Levy E, White A, Bruno J, Cleary K. Tumor volume measurement and volume "
                     "measurement comparison plug-ins for VolView using ITK. SPIE Medical Imaging 6141 (2006); "
                     "files as used by the SimpleITK notebook 'Segmentation Evaluation' (github.com/zivy/"
                     "EMBC2019_WORKSHOP_DATA at commit " + _EMBC[1] + ").",
            description="One abdominal CT (uint8 0-255: rescaled, not Hounsfield units), 177x177x98 at 1.734 mm, "
                        "with a liver tumour outlined by three radiologists.",
            homepage="https://github.com/InsightSoftwareConsortium/SimpleITK-Notebooks",
            chapters=("5.2 Raters and consensus", "A5"),
            files={None: _manifest("multirater_liver", _EMBC)},
            standin="liver_raters", short="SimpleITK-Notebooks data, Apache-2.0, Popa et al. 2006",
        ),
        "tcia_hn_oar_2raters": Entry(
            name="tcia_hn_oar_2raters", title="Head-and-neck organs at risk, two raters", kind="files",
            task="segmentation (21 organs), inter-rater variability",
            license="CC BY 4.0",
            citation="Nikolov S, Blackwell S, Zverovitch A, et al. Clinically applicable segmentation of head and "
                     "neck anatomy for radiotherapy: deep learning algorithm development and validation study. "
                     "J Med Internet Res 23(7), e26151 (2021); files from github.com/deepmind/tcia-ct-scan-dataset "
                     "at commit " + _DEEPMIND_HN[1] + " (masks only; the CT scans are TCIA's and not included).",
            description="21 organs at risk outlined by an oncologist and a radiographer on 2 patients' CT scans "
                        "(512x512x156 and 512x512x145 at 0.98x0.98x2.5 mm); masks only.",
            homepage="https://github.com/deepmind/tcia-ct-scan-dataset",
            chapters=("5.2 Raters and consensus",),
            files={None: _manifest("tcia_hn_oar_2raters", _DEEPMIND_HN)},
            standin="organ_raters", short="DeepMind/TCIA H&N, CC BY 4.0, Nikolov et al. 2021",
        ),
        "ct_dicom_totalseg": Entry(
            name="ct_dicom_totalseg", title="CT series (JPEG 2000) with TotalSegmentator labels", kind="files",
            task="DICOM, segmentation (organs), deployment",
            license="Apache-2.0 (TotalSegmentator repository)",
            citation="Wasserthal J, Breit HC, Meyer MT, et al. TotalSegmentator: robust segmentation of 104 "
                     "anatomic structures in CT images. Radiology: Artificial Intelligence 5(5), e230024 (2023); "
                     "files from github.com/wasserth/TotalSegmentator at commit " + _TOTALSEG[1] + ".",
            description="A real 20-slice CT DICOM series (SIEMENS Biograph40 mCT, 512x512 at 0.977 mm, 2 mm "
                        "slices, JPEG 2000 lossless) and TotalSegmentator's 31-label organ map on its grid "
                        "(a model's output, not a manual reference).",
            homepage="https://github.com/wasserth/TotalSegmentator",
            chapters=("2.2 DICOM", "6.2 DICOM in, DICOM SEG out"),
            files={None: _manifest("ct_dicom_totalseg", _TOTALSEG)},
            standin="ct_series", short="TotalSegmentator test data, Apache-2.0, Wasserthal et al. 2023",
        ),
        "nodules": Entry(
            name="nodules", title="Lung nodules (synthetic stand-in)", kind="synthetic",
            task="classification (benign/malignant), inter-rater agreement",
            license="Apache-2.0 (generated by medlearn)",
            citation="Synthetic stand-in generated by medlearn.data.synthetic.nodules (not patient data).",
            description="Nodule-like 3D CT patches in HU, smooth/round benign vs spiculated/lobulated malignant, "
                        "several nodules per patient, 3-4 raters' 1-5 malignancy scores.",
            chapters=("Part 3 (classification)", "Part 5 (raters)"),
            standin="nodules", short="synthetic, medlearn",
        ),
        "heads": Entry(
            name="heads", title="T1-like heads (synthetic stand-in)", kind="synthetic",
            task="segmentation (brain extraction), raters, sites",
            license="Apache-2.0 (generated by medlearn)",
            citation="Synthetic stand-in generated by medlearn.data.synthetic.heads (not patient data).",
            description="T1-like heads (scalp, skull, CSF, brain), brain masks from two raters, an automatic tool's "
                        "masks with injected failures, two acquisition sites.",
            chapters=("Part 4 (segmentation)", "Part 5 (label noise)"),
            standin="heads", short="synthetic, medlearn",
        ),
    }


def _build() -> dict[str, Entry]:
    reg = _medmnist_entries()
    reg.update(_other_entries())
    return reg


REGISTRY: dict[str, Entry] = _build()


def entry(name: str) -> Entry:
    """Return the registry entry for `name`; KeyError lists the known names."""
    key = name.lower().strip()
    if key not in REGISTRY:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]
