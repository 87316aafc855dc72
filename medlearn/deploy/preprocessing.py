"""The preprocessing a model was trained with, stored beside it and applied identically at inference.

Chapter 6.1 ("the model is the network *and* its preprocessing"); used by `medlearn.deploy.predict`.
The steps are TorchIO's (as fastMONAI's are): reorient to RAS+ (`ToCanonical`), resample to a voxel
spacing (`Resample`), z-normalise intensities (`ZNormalization`), crop or pad to a fixed size
(`CropOrPad`). The prediction is mapped back to the source grid by resampling through the affines,
so no flip or shift can creep in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Preprocessing:
    """Spacing (mm), size (voxels, RAS order), intensity normalisation and orientation of a model's input.

    Chapter 6.1. `apply(volume)` gives the network input (1, 1, X, Y, Z) and its affine;
    `to_source(prob, affine, volume)` resamples a probability map back onto `volume`'s grid.
    """

    spacing: tuple[float, float, float]
    size: tuple[int, int, int]
    orientation: str = "RAS"
    intensity: str = "znorm"

    def __post_init__(self):
        self.spacing = tuple(float(s) for s in self.spacing)
        self.size = tuple(int(s) for s in self.size)
        if self.orientation != "RAS" or self.intensity not in ("znorm", "none"):
            raise ValueError(f"unsupported preprocessing {self.orientation}/{self.intensity}: "
                             f"orientation 'RAS' and intensity 'znorm' or 'none' are implemented")

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """Return the JSON-ready dictionary stored as `configs/preprocessing.json`."""
        d = asdict(self)
        d["steps"] = ["ToCanonical", f"Resample({list(self.spacing)})",
                      "ZNormalization" if self.intensity == "znorm" else "identity",
                      f"CropOrPad({list(self.size)})"]
        return d

    def save(self, path) -> Path:
        """Write the JSON file and return its path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path) -> "Preprocessing":
        """Read a `preprocessing.json` written by `save`."""
        d = json.loads(Path(path).read_text())
        return cls(d["spacing"], d["size"], d.get("orientation", "RAS"), d.get("intensity", "znorm"))

    # ------------------------------------------------------------------ applying it
    def transform(self):
        """Return the TorchIO `Compose` (also applied to label maps, which skip the intensity step)."""
        import torchio as tio

        steps = [tio.ToCanonical(), tio.Resample(self.spacing)]
        if self.intensity == "znorm":
            steps.append(tio.ZNormalization())
        steps.append(tio.CropOrPad(self.size))
        return tio.Compose(steps)

    def subject(self, volume, mask=None):
        """Return a preprocessed `tio.Subject` (image, and `mask` when given) from `Volume`s."""
        import torch
        import torchio as tio

        kw = {"image": tio.ScalarImage(tensor=torch.from_numpy(np.asarray(volume.array, np.float32)[None]),
                                       affine=volume.affine_ras)}
        if mask is not None:
            arr = mask.array if hasattr(mask, "array") else mask
            kw["mask"] = tio.LabelMap(tensor=torch.from_numpy(np.asarray(arr > 0, np.uint8)[None]),
                                      affine=volume.affine_ras)
        return self.transform()(tio.Subject(**kw))

    def apply(self, volume) -> tuple[np.ndarray, np.ndarray]:
        """Return the network input, float32 (1, 1, X, Y, Z) in RAS, and its 4x4 RAS affine."""
        s = self.subject(volume)
        return s.image.data.numpy()[None].astype(np.float32), s.image.affine

    def to_source(self, prob, affine, volume, threshold: float = 0.5) -> np.ndarray:
        """Return a uint8 mask on `volume`'s grid (X, Y, Z) from a probability map on the model grid.

        The probabilities are resampled linearly through the two affines (model grid -> source grid)
        and thresholded there, so the mask lands exactly where the anatomy is in the source series.
        """
        import torch
        import torchio as tio

        prob = np.asarray(prob, np.float32).reshape(self.size)
        img = tio.ScalarImage(tensor=torch.from_numpy(prob[None]), affine=affine)
        back = tio.Resample((tuple(volume.shape), volume.affine_ras), image_interpolation="linear")(img)
        return (back.data[0].numpy() > threshold).astype(np.uint8)
