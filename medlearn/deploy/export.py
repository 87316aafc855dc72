"""A trained model as an artefact: a MONAI bundle folder with TorchScript, ONNX and its preprocessing.

Chapter 6.1. The folder follows MONAI's bundle layout, so MONAI's tools (and a colleague) know
where everything is:

    <bundle>/configs/metadata.json       MONAI metadata (network_data_format, versions, task)
    <bundle>/configs/preprocessing.json  the exact preprocessing (medlearn.deploy.preprocessing)
    <bundle>/models/model.pt             state dict (PyTorch)
    <bundle>/models/model.ts             TorchScript (runs without the Python class)
    <bundle>/models/model.onnx           ONNX (runs with onnxruntime, without PyTorch)
    <bundle>/docs/README.md              the model card (medlearn.deploy.card)
    <bundle>/docs/reproducibility.json   seeds, versions, platform, file hashes
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from medlearn.deploy.preprocessing import Preprocessing

# The URL MONAI's own bundles name; the file is cached offline in medlearn/deploy/schema/.
SCHEMA_URL = ("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
              "0.8.1/meta_schema_20220324.json")


class BundleError(ValueError):
    """A bundle folder is incomplete or its metadata does not validate; the message names the file."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "monai", "numpy", "torchio", "fastai", "fastMONAI", "onnx", "onnxruntime",
                 "highdicom", "pydicom", "medlearn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def metadata(pre: Preprocessing, *, name: str, version: str, task: str, modality: str,
             labels: dict, description: str = "", authors: str = "medlearn course",
             data_source: str = "", references: list | None = None) -> dict:
    """Return MONAI bundle metadata (a dict) for a one-channel segmentation model with `pre`."""
    v = _versions()
    return {
        "schema": SCHEMA_URL,
        "name": name,
        "version": version,
        "changelog": {version: "exported by medlearn.deploy.export_bundle"},
        "monai_version": v["monai"], "pytorch_version": v["torch"], "numpy_version": v["numpy"],
        "optional_packages_version": {k: v[k] for k in ("torchio", "fastai", "fastMONAI", "onnxruntime")
                                      if v[k]},
        "task": task,
        "description": description or task,
        "authors": authors,
        "copyright": "CC BY-SA 4.0 (course material); see the data licences in docs/README.md",
        "data_source": data_source,
        "data_type": "dicom or nifti",
        "intended_use": "teaching and research only; not a medical device",
        "references": list(references or []),
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": modality, "num_channels": 1,
                "spatial_shape": list(pre.size), "dtype": "float32", "value_range": [],
                "is_patch_data": False, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {
                "type": "probabilities", "format": "segmentation", "num_channels": 1,
                "spatial_shape": list(pre.size), "dtype": "float32", "value_range": [0, 1],
                "is_patch_data": False, "channel_def": {str(k): v for k, v in labels.items()}}},
            "preprocessing": pre.to_dict(),
        },
    }


def export_bundle(model, pre: Preprocessing, folder, *, name: str, version: str = "0.1.0",
                  task: str = "segmentation", modality: str = "MR", labels: dict | None = None,
                  description: str = "", data_source: str = "", references: list | None = None,
                  card: str | None = None, seed: int | None = None, extra_record: dict | None = None,
                  opset: int = 17) -> Path:
    """Export `model` (logits, one channel) with its preprocessing as a MONAI bundle; return the folder.

    Chapter 6.1. The exported networks end in a sigmoid, so they return probabilities. The folder
    is written under a temporary name and renamed when complete, so a failure leaves nothing half-written.

    Args:
        model: a `torch.nn.Module` (e.g. `learn.model` of a fastai/fastMONAI Learner).
        pre: the `Preprocessing` the model was trained with.
        folder: the bundle folder to create (must not exist).
        name, version: the model's identity; the version goes into every SEG it writes.
        labels: channel definition, e.g. {"1": "brain"}.
        card: the model card (markdown) for docs/README.md.
        seed, extra_record: written to docs/reproducibility.json.
    Returns:
        the bundle folder.
    Raises:
        BundleError: if `folder` exists.
    """
    import torch

    from medlearn._atomic import atomic_path

    folder = Path(folder)
    if folder.exists():
        raise BundleError(f"{folder} exists; choose a new folder or delete it first (bundles are immutable)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder) as tmp:  # the bundle appears whole or not at all
        tmp.mkdir()
        for sub in ("configs", "models", "docs"):
            (tmp / sub).mkdir()
        net = torch.nn.Sequential(model, torch.nn.Sigmoid()).eval().cpu()
        example = torch.zeros((1, 1, *pre.size), dtype=torch.float32)
        torch.save(model.state_dict(), tmp / "models" / "model.pt")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notes of torch.jit/torch.onnx; checked by parity
            torch.jit.trace(net, example).save(str(tmp / "models" / "model.ts"))
            torch.onnx.export(net, (example,), str(tmp / "models" / "model.onnx"), dynamo=False,
                              input_names=["image"], output_names=["pred"], opset_version=opset,
                              dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}})
        meta = metadata(pre, name=name, version=version, task=task, modality=modality,
                        labels=labels or {"0": "foreground"}, description=description,
                        data_source=data_source, references=references)
        (tmp / "configs" / "metadata.json").write_text(json.dumps(meta, indent=2))
        pre.save(tmp / "configs" / "preprocessing.json")
        (tmp / "docs" / "README.md").write_text(card or f"# {name} {version}\n\n(model card to come)\n")
        record = {"seed": seed, "versions": _versions(), "python": sys.version.split()[0],
                  "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                  "torch_threads": torch.get_num_threads(),
                  "files_sha256": {f"models/{p.name}": _sha256(p) for p in sorted((tmp / "models").iterdir())}}
        record.update(extra_record or {})
        (tmp / "docs" / "reproducibility.json").write_text(json.dumps(record, indent=2, default=str))
    return folder


def write_card(folder, card: str) -> Path:
    """Write (or replace) the model card `docs/README.md` of a bundle; return its path."""
    path = Path(folder) / "docs" / "README.md"
    path.write_text(card)
    return path


def verify_bundle(folder) -> dict:
    """Check a bundle with MONAI's own `verify_metadata`, offline; return its metadata.

    Chapter 6.1. MONAI downloads the JSON schema named in `schema`; offline, medlearn places its
    copy of the schema's required part (medlearn/deploy/schema/meta_schema.json) where MONAI looks,
    so `monai.bundle.verify_metadata` skips the download and validates with jsonschema.

    Raises:
        BundleError: naming the missing file or the metadata field that fails.
    """
    import shutil
    import tempfile

    from monai.bundle import verify_metadata

    folder = Path(folder)
    for rel in ("configs/metadata.json", "configs/preprocessing.json", "models/model.ts",
                "models/model.onnx", "docs/README.md"):
        if not (folder / rel).is_file():
            raise BundleError(f"{folder} has no {rel}; export the bundle again with export_bundle")
    schema = resources.files("medlearn.deploy") / "schema" / "meta_schema.json"
    with tempfile.TemporaryDirectory() as d:
        local = Path(d) / "schema.json"
        shutil.copyfile(str(schema), local)
        logging.disable(logging.INFO)  # MONAI logs its input summary and the download at INFO
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no hash value provided": the schema is our local copy
                verify_metadata(meta_file=str(folder / "configs" / "metadata.json"), filepath=str(local))
        except ValueError as e:
            raise BundleError(f"{folder / 'configs' / 'metadata.json'} does not validate: {e}") from e
        finally:
            logging.disable(logging.NOTSET)
    return json.loads((folder / "configs" / "metadata.json").read_text())


@dataclass
class Bundle:
    """A loaded bundle: metadata, preprocessing and a runtime ("onnx" or "torchscript").

    Chapter 6.1. `bundle(x)` maps a preprocessed input (1, 1, X, Y, Z) to probabilities of the same shape.
    """

    folder: Path
    meta: dict
    pre: Preprocessing
    runtime: str
    _run: object = field(repr=False, default=None)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def modality(self) -> str:
        return self.meta["network_data_format"]["inputs"]["image"].get("modality", "")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(x, dtype=np.float32))


def load_bundle(folder, runtime: str = "onnx", threads: int | None = None) -> Bundle:
    """Return a `Bundle` that runs the exported model with onnxruntime ("onnx") or TorchScript.

    Chapter 6.1. Neither runtime needs the Python class of the network.
    """
    folder = Path(folder)
    meta = json.loads((folder / "configs" / "metadata.json").read_text())
    pre = Preprocessing.load(folder / "configs" / "preprocessing.json")
    if runtime == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(folder / "models" / "model.onnx"), opts,
                                    providers=["CPUExecutionProvider"])
        run = lambda x: sess.run(None, {"image": x})[0]  # noqa: E731
    elif runtime == "torchscript":
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation note
            ts = torch.jit.load(str(folder / "models" / "model.ts"), map_location="cpu").eval()

        def run(x):
            with torch.inference_mode():
                return ts(torch.from_numpy(x)).numpy()
    else:
        raise ValueError(f"runtime {runtime!r}: choose 'onnx' or 'torchscript'")
    return Bundle(folder, meta, pre, runtime, run)
