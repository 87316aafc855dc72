"""Synthetic stand-in for T1-weighted head MRI with brain masks: two raters, a flawed tool, two sites.

Used by part 4 (skull stripping: MedDataset summary, resampling, reorientation, Dice, ICC, external
validation across sites) and part 5 (finding bad labels: Paper B's Dice < 0.8 filter) when the real
IXI/NFBS-style data is not at hand. SYNTHETIC: nothing here comes from a person; the heads are
about a third of real size so that they fit a 64×64×48 grid at 1–1.5 mm voxels.

What each head has:
* scalp (bright fat), skull (dark), CSF, a folded grey-matter ribbon around white matter, ventricles
  and a cerebellum; a smooth multiplicative bias field and Rician noise;
* voxel spacing that varies (site A ≈ 1.0–1.2 mm isotropic; site B ≈ 1.3–1.5 mm in-plane with thicker
  slices) and an orientation that varies (RAS, LAS, LPS, PSR, ASL), stored in the NIfTI affine, so
  fastMONAI's ``MedDataset(...).summary()`` shows the variation a real multi-scanner set has;
* site A and site B differ in contrast (grey/white/CSF levels), intensity scale and resolution;
* ``mask_path`` — rater 1's brain mask (brain tissue, sulcal CSF and ventricles, cerebellum);
* ``mask_rater2_path`` — rater 2, who disagrees at the boundary in patches (Dice ≈ 0.93–0.96 with rater 1);
* ``auto_mask_path`` — an automatic tool: close to rater 1 (Dice ≈ 0.90–0.95) except for known injected
  failures, named in ``auto_failure``: "includes_skull", "misses_inferior" (cerebellum and the
  inferior brain left out), "empty", "shifted". Every failure has Dice < 0.8 with rater 1, so
  Paper B's filter finds exactly these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHAPE = (64, 64, 48)
SHAPE_FAST = (48, 48, 32)
N_DEFAULT = 40
N_FAST = 12
FAILURES = ("includes_skull", "misses_inferior", "empty", "shifted")
ORIENTATIONS = ("RAS", "LAS", "LPS", "PSR", "ASL")
# T1-like levels per tissue (scalp, skull, csf, grey, white) and the scanner's intensity scale
_SITE_CONTRAST = {"A": dict(scalp=0.78, skull=0.07, csf=0.12, gm=0.52, wm=0.86, scale=1000.0),
                  "B": dict(scalp=0.88, skull=0.16, csf=0.26, gm=0.62, wm=0.80, scale=420.0)}


def _smooth(rng, shape, sigma):
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, truncate=2.5)
    return f / (f.std() + 1e-8)


def _spacing(rng, site: str, fast: bool) -> np.ndarray:
    if site == "A":
        s = rng.uniform(1.0, 1.2)
        sp = np.array([s, s, s * rng.uniform(1.0, 1.1)])
    else:
        s = rng.uniform(1.3, 1.5)
        sp = np.array([s, s, rng.uniform(1.5, 1.9)])
    return sp.astype(np.float32)


def _head(rng, shape, spacing, site: str, size: float = 1.0):
    """Return (t1, brain, parts) on a RAS grid: t1 float32, brain mask bool, dict of tissue masks.

    `size` scales every length of the head (the fast grid holds a smaller head at the same spacing).
    """
    from scipy.ndimage import gaussian_filter

    c = _SITE_CONTRAST[site]
    axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    x, y, z = x / size, y / size, z / size  # lengths below are those of the size-1 head
    z = z + 2.0  # the head sits a little low in the field of view: the neck leaves it at the bottom
    scale = rng.uniform(0.92, 1.06)
    semi = np.array([24.0, 29.0, 24.0]) * scale  # mm: a third of a real head

    def r(offsets):  # normalised ellipsoidal radius for the layer `offsets` mm inside the scalp surface
        return np.sqrt((x / (semi[0] - offsets)) ** 2 + (y / (semi[1] - offsets)) ** 2
                       + (z / (semi[2] - offsets)) ** 2)

    head = r(0) < 1
    skull_outer = r(2.5) < 1
    csf_outer = r(5.5) < 1
    inner = r(7.0) < 1  # the brain's envelope
    folds = _smooth(rng, shape, 1.6 * size / float(np.mean(spacing)))
    envelope = r(7.0 + 0.8 * np.clip(folds, -1.5, 1.5)) < 1
    # cerebellum: inferior and posterior, below the cerebrum, inside the skull
    cb = np.sqrt((x / (0.55 * semi[0])) ** 2 + ((y + 0.45 * semi[1]) / (0.32 * semi[1])) ** 2
                 + ((z + 0.5 * semi[2]) / (0.3 * semi[2])) ** 2) < 1
    cerebellum = cb & csf_outer
    brain = (envelope | cerebellum) & csf_outer
    # grey ribbon: within ~2.5 mm of the brain surface, deeper where the cortex folds in
    depth = (1 - r(7.0)) * float(np.min(semi - 7.0))
    gm = brain & (depth < 3.0 + 2.5 * np.clip(folds, 0, None))
    sulci = brain & (folds > 0.9) & (depth < 1.5 + 3.0 * np.clip(folds - 0.9, 0, None))
    vent = (np.sqrt(((np.abs(x) - 0.18 * semi[0]) / (0.12 * semi[0])) ** 2
                    + ((y - 0.05 * semi[1]) / (0.3 * semi[1])) ** 2
                    + ((z - 0.05 * semi[2]) / (0.18 * semi[2])) ** 2) < 1) & brain
    foliation = cerebellum & (np.sin(z * 2.2 + 0.7 * folds) > 0.3)

    t1 = np.zeros(shape, dtype=np.float32)
    t1[head] = c["scalp"]
    t1[skull_outer] = c["skull"]
    t1[csf_outer] = c["csf"]
    t1[brain] = c["wm"]
    t1[gm | foliation] = c["gm"]
    t1[sulci | vent] = c["csf"]
    t1 += 0.03 * _smooth(rng, shape, 1.0) * (t1 > 0.3)  # tissue texture
    blur = 0.5 if site == "A" else 0.9  # site B: softer images (lower effective resolution)
    t1 = gaussian_filter(t1, blur, truncate=2.5)
    # bias field: a smooth multiplicative field across the head
    coeff = rng.normal(0, 0.12, 6)
    nx, ny, nz = (x / semi[0], y / semi[1], z / semi[2])
    bias = np.exp(coeff[0] * nx + coeff[1] * ny + coeff[2] * nz + coeff[3] * nx * ny + coeff[4] * nz**2
                  + coeff[5] * nx**2)
    t1 = t1 * bias
    sigma = 0.025 * c["wm"]  # Rician noise: magnitude of a complex signal with Gaussian noise
    t1 = np.sqrt((t1 + sigma * rng.standard_normal(shape, dtype=np.float32)) ** 2
                 + (sigma * rng.standard_normal(shape, dtype=np.float32)) ** 2)
    t1 = (t1 * c["scale"]).astype(np.float32)
    parts = {"head": head, "skull_and_scalp": head & ~csf_outer, "cerebellum": cerebellum, "z": z}
    return t1, brain, parts


def _boundary_patches(rng, mask: np.ndarray, target: float) -> np.ndarray:
    """Return a copy of `mask` grown or shrunk by one voxel in random surface patches until Dice ≈ target."""
    from scipy.ndimage import binary_dilation, binary_erosion

    dil, ero = binary_dilation(mask), binary_erosion(mask)
    shell = np.argwhere(dil ^ ero)
    out = mask.copy()
    shape = np.array(mask.shape)
    n_mask = int(mask.sum())
    n_out, n_both = n_mask, n_mask  # |out| and |out ∩ mask|, updated patch by patch
    for _ in range(400):
        if n_mask + n_out == 0 or 2.0 * n_both / (n_mask + n_out) <= target:
            break
        centre = shell[rng.integers(len(shell))]
        radius = rng.uniform(3, 7)
        lo = np.maximum(centre - int(radius) - 1, 0)
        hi = np.minimum(centre + int(radius) + 2, shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        g = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"))
        ball = ((g - centre[:, None, None, None]) ** 2).sum(0) <= radius**2
        src = dil if rng.random() < 0.5 else ero
        before = out[sl]
        after = np.where(ball, src[sl], before)
        n_out += int(after.sum()) - int(before.sum())
        n_both += int((after & mask[sl]).sum()) - int((before & mask[sl]).sum())
        out[sl] = after
    return out


def _auto_mask(rng, brain: np.ndarray, parts: dict, failure: str | None, spacing) -> np.ndarray:
    """Return the automatic tool's mask: a smoothed rater-1 mask, or one with the injected failure."""
    from scipy.ndimage import binary_closing, binary_opening

    # a tool that smooths the boundary and disagrees with the rater in patches, a little more than rater 2
    auto = binary_closing(binary_opening(brain, iterations=1), iterations=1)
    auto = _boundary_patches(rng, auto, rng.uniform(0.91, 0.95))
    if failure is None:
        return auto
    if failure == "empty":
        return np.zeros_like(brain)
    if failure == "includes_skull":
        return auto | parts["skull_and_scalp"]
    if failure == "misses_inferior":
        zb = parts["z"][brain]
        cut = np.quantile(zb, 0.5)  # the cerebellum and everything below mid-brain height
        return auto & (parts["z"] > cut) & ~parts["cerebellum"]
    if failure == "shifted":
        extent = np.ptp(np.argwhere(brain), axis=0)
        axis = int(rng.integers(3))
        shift = int(np.ceil(0.3 * extent[axis])) * (1 if rng.random() < 0.5 else -1)
        return np.roll(auto, shift, axis=axis)
    raise ValueError(f"unknown failure {failure!r}; choose from {FAILURES}")


def _save(arr, affine_ras, orientation: str, path: Path, dtype):

    import nibabel as nib
    import nibabel.orientations as nio

    from medlearn._atomic import atomic_path

    img = nib.Nifti1Image(arr.astype(dtype), affine_ras)
    if orientation != "RAS":
        img = img.as_reoriented(nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")),
                                                   nio.axcodes2ornt(tuple(orientation))))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(img, str(tmp))
    return img


def generate(root: Path, *, n: int | None = None, seed: int = 0, fast: bool = False):
    """Return the heads DataFrame after writing `n` T1-like heads and their masks (NIfTI) under `root`.

    Part 4 (skull stripping, sites) and part 5 (label errors). Columns: img_path, mask_path (rater 1),
    mask_rater2_path, auto_mask_path, auto_failure (None or one of `FAILURES`), site ("A"/"B"),
    split ("train"/"val"/"test"), is_val, plus subject_id, orientation and spacing (mm, as stored).
    Grids are 64×64×48 voxels (48×48×32 and a smaller head with `fast=True`), `n` defaults to 40 (12 with `fast`).
    About a quarter of the automatic masks carry a failure, every kind at least once when n ≥ 8.
    """
    import pandas as pd

    root = Path(root)
    n = int(n if n is not None else (N_FAST if fast else N_DEFAULT))
    if n < 2:
        raise ValueError(f"heads.generate: n={n} is too small; ask for at least 2 heads (one per site)")
    rng = np.random.default_rng(seed)
    shape = SHAPE_FAST if fast else SHAPE
    dirs = {k: root / k for k in ("images", "masks_rater1", "masks_rater2", "masks_auto")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    sites = np.array(["A", "B"] * (n // 2 + 1))[:n]
    rng.shuffle(sites)
    n_fail = max(1, int(round(0.25 * n))) if n >= 4 else 0
    failure_of = [None] * n
    for k, i in enumerate(rng.permutation(n)[:n_fail]):
        failure_of[i] = FAILURES[k % len(FAILURES)]
    splits = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    n_test = max(1, int(round(0.2 * n)))
    n_val = max(1, int(round(0.2 * n)))
    splits[order[:n_test]] = "test"
    splits[order[n_test:n_test + n_val]] = "val"

    rows = []
    for i in range(n):
        site = str(sites[i])
        spacing = _spacing(rng, site, fast)
        t1, brain, parts = _head(rng, shape, spacing, site, size=0.7 if fast else 1.0)
        rater2 = _boundary_patches(rng, brain, rng.uniform(0.935, 0.965))
        auto = _auto_mask(rng, brain, parts, failure_of[i], spacing)
        orientation = str(rng.choice(ORIENTATIONS))
        centre = (np.array(shape) - 1) / 2 * spacing
        affine = np.diag([*spacing.tolist(), 1.0])
        affine[:3, 3] = -centre + rng.normal(0, 3, 3)
        sid = f"S{i:03d}"
        paths = {k: d / f"{sid}.nii.gz" for k, d in dirs.items()}
        img = _save(t1, affine, orientation, paths["images"], np.float32)
        _save(brain, affine, orientation, paths["masks_rater1"], np.uint8)
        _save(rater2, affine, orientation, paths["masks_rater2"], np.uint8)
        _save(auto, affine, orientation, paths["masks_auto"], np.uint8)
        stored_spacing = img.header.get_zooms()[:3]
        rows.append({"img_path": str(paths["images"]), "mask_path": str(paths["masks_rater1"]),
                     "mask_rater2_path": str(paths["masks_rater2"]), "auto_mask_path": str(paths["masks_auto"]),
                     "auto_failure": failure_of[i], "site": site, "split": splits[i],
                     "is_val": splits[i] == "val", "subject_id": sid, "orientation": orientation,
                     "spacing": tuple(round(float(s), 3) for s in stored_spacing)})
    df = pd.DataFrame(rows)
    df["auto_failure"] = pd.Series(failure_of, dtype=object)  # None (not NaN) where the tool did fine
    return df
