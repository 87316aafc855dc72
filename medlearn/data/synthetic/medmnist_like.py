"""MedMNIST-format stand-ins: labelled 2D images or 3D volumes with the shapes, dtypes and keys of the real npz.

The class signal is the *margin* of a lesion-like blob, as in radiology: in a two-class set the
positive class has a more irregular (lobulated, spiculated) boundary; in a multi-class set the
class sets both the margin (label // 3) and which axis the blob is stretched along (label % 3). Size, position, contrast and noise
are drawn from the same distributions for every class, so no single global feature (mean
intensity, volume) separates the classes; a CNN has to look at the shape of the boundary.
For mask data sets (AdrenalMNIST3D, VesselMNIST3D) the volumes are binary 0/255 shapes.
"""

from __future__ import annotations

import numpy as np

MASK_SETS = {"adrenalmnist3d", "vesselmnist3d"}


def _irregularity(n_classes: int, rng: np.random.Generator, label: int) -> float:
    if n_classes > 2:  # multi-class sets: the margin encodes label // 3 (the elongation encodes label % 3)
        levels = np.linspace(0.0, 1.0, (n_classes + 2) // 3)
        return float(np.clip(levels[label // 3] + rng.normal(0, 0.06), 0, 1.2))
    levels = np.linspace(0.0, 1.0, 2)
    # the classes overlap: the margin is a noisy cue (some benign lesions look irregular and some
    # malignant ones smooth), so even a perfect reader of margins stays below AUC 1
    return float(np.clip(levels[label] + rng.normal(0, 0.3), 0, 1.5))


def _elongation(n_classes: int, label: int, rng: np.random.Generator) -> np.ndarray:
    """Return per-axis stretch factors: for multi-class sets the stretched axis is label % 3."""
    stretch = np.ones(3, np.float32)
    if n_classes > 2:
        stretch[label % 3] = rng.uniform(1.5, 1.8)
    return stretch


def _blob_2d(size: int, rng: np.random.Generator, irr: float, stretch=None) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = rng.uniform(0.35, 0.65, 2)
    r0 = rng.uniform(0.18, 0.30)
    sy, sx = (1.0, 1.0) if stretch is None else (stretch[0] * stretch[2], stretch[1] * stretch[2])
    dy, dx = (yy - cy) / sy, (xx - cx) / sx
    theta = np.arctan2(dy, dx)
    rad = np.hypot(dy, dx)
    # low-frequency lobulation for every class (a distractor), high-frequency spiculation by class
    amps = np.r_[0.12 * rng.uniform(), irr * rng.uniform(0.08, 0.16, 3)]
    freqs = np.r_[2, rng.integers(4, 8, 3)]
    boundary = 1 + sum(a * np.cos(k * theta + rng.uniform(0, 6.3)) for a, k in zip(amps, freqs))
    boundary = boundary / np.sqrt(1 + (amps ** 2).sum() / 2)  # same expected area whatever the margin
    signed = (r0 * boundary - rad) / (0.7 / size)  # positive inside, in pixels
    return 1.0 / (1.0 + np.exp(-np.clip(signed, -30, 30)))


_GRIDS: dict = {}


def _grid_3d(size: int) -> np.ndarray:
    if size not in _GRIDS:
        g = np.linspace(0, 1, size, dtype=np.float32)
        _GRIDS[size] = np.stack(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1)
    return _GRIDS[size]


def _blob_3d(size: int, rng: np.random.Generator, irr: float, stretch=None) -> np.ndarray:
    grid = _grid_3d(size)
    c = rng.uniform(0.4, 0.6, 3).astype(np.float32)
    axes = rng.uniform(0.2, 0.3, 3).astype(np.float32)
    if stretch is not None:
        axes = axes * stretch / stretch.mean()
    d = grid - c[:, None]
    norm = np.sqrt((d * d).sum(0)) + np.float32(1e-6)
    rad = np.sqrt(((d / axes[:, None]) ** 2).sum(0)) + np.float32(1e-6)
    directions = rng.normal(size=(4, 3)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    proj = (directions @ d) / norm  # cosine between each voxel's direction and 4 random axes
    freq = np.r_[rng.uniform(1, 2), rng.uniform(3, 6, 3)].astype(np.float32)
    amp = np.r_[0.10 * rng.uniform(), irr * rng.uniform(0.06, 0.13, 3)].astype(np.float32)
    phase = rng.uniform(0, 6.3, 4).astype(np.float32)
    boundary = 1 + (amp[:, None] * np.cos(freq[:, None] * np.float32(np.pi) * proj + phase[:, None])).sum(0)
    boundary = boundary / np.float32((1 + 1.5 * (amp ** 2).sum()) ** (1 / 3))  # same expected volume
    signed = (boundary - rad) * (axes.mean() * size / np.float32(0.7))
    return (1.0 / (1.0 + np.exp(-np.clip(signed, -30, 30)))).reshape(size, size, size)


def generate_arrays(flag: str, *, size: int, counts: dict, n_classes: int, is3d: bool, n_channels: int = 1,
                    seed: int = 0) -> dict:
    """Return a dict shaped like a MedMNIST npz: `{split}_images` uint8 and `{split}_labels` (N, 1) uint8.

    2D: (N, size, size) or (N, size, size, 3); 3D: (N, size, size, size). Deterministic for a seed.
    Used by `medlearn.data.load(flag, source="synthetic")` for every MedMNIST name.
    """
    out = {}
    for s_index, split in enumerate(("train", "val", "test")):
        rng = np.random.default_rng([seed, s_index, sum(map(ord, flag)), size])
        n = int(counts[split])
        labels = rng.integers(0, n_classes, n)
        if n_classes == 2:  # a realistic imbalance (about 3:1), like most medical benchmarks
            labels = (rng.uniform(size=n) < 0.27).astype(int)
        shape = (n,) + ((size,) * 3 if is3d else (size, size))
        images = np.empty(shape, np.uint8)
        for i in range(n):
            irr = _irregularity(n_classes, rng, int(labels[i]))
            stretch = _elongation(n_classes, int(labels[i]), rng) if n_classes > 2 else None
            blob = _blob_3d(size, rng, irr, stretch) if is3d else _blob_2d(size, rng, irr, stretch)
            if flag in MASK_SETS:
                images[i] = np.where(blob > 0.5, 255, 0).astype(np.uint8)
                continue
            background = rng.uniform(40, 110)
            contrast = rng.uniform(40, 110)
            noise = rng.standard_normal(blob.shape, dtype=np.float32) * np.float32(rng.uniform(6, 16))
            img = background + contrast * blob + noise
            images[i] = np.clip(img, 0, 255).astype(np.uint8)
        if n_channels == 3 and not is3d:
            tint = np.array([1.0, 0.85, 0.95])
            images = np.clip(images[..., None] * tint, 0, 255).astype(np.uint8)
        out[f"{split}_images"] = images
        out[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    return out


def nodule_arrays(*, size: int, counts: dict, seed: int = 0, workdir) -> dict | None:
    """Return NoduleMNIST3D-format arrays made from the "nodules" stand-in, or None when it is not installed.

    Each 32³ HU patch from `medlearn.data.synthetic.nodules.generate` is centre-cropped to 28³
    (or upsampled ×2 to 64³), windowed to [-1000, 400] HU and scaled to uint8 as MedMNIST does;
    labels 0 benign, 1 malignant. The nodules generator's patient-level split is kept.
    """
    import shutil
    from pathlib import Path

    try:
        from medlearn.data.synthetic.nodules import generate
    except ImportError:
        return None
    import nibabel as nib
    from scipy import ndimage

    workdir = Path(workdir)
    df = generate(workdir, n=int(sum(counts.values())), seed=seed)
    out = {}
    for split in ("train", "val", "test"):
        part = df[df.split == split]
        vols = []
        for path in part.img_path:
            hu = np.asarray(nib.load(path).dataobj, dtype=np.float32)
            if size <= min(hu.shape):
                starts = [(s - size) // 2 for s in hu.shape]
                hu = hu[tuple(slice(a, a + size) for a in starts)]
            else:
                hu = ndimage.zoom(hu, [size / s for s in hu.shape], order=1)
            vols.append(np.clip((hu + 1000) / 1400 * 255, 0, 255).astype(np.uint8))
        out[f"{split}_images"] = np.stack(vols) if vols else np.zeros((0,) + (size,) * 3, np.uint8)
        out[f"{split}_labels"] = (part.labels.to_numpy() == "malignant").astype(np.uint8).reshape(-1, 1)
    shutil.rmtree(workdir, ignore_errors=True)
    return out
