"""Synthetic stand-in for lung-nodule CT patches: benign vs malignant, patients, disagreeing raters.

Used by part 3 (classification, patient-level aggregation, inter-rater agreement) when the real
NoduleMNIST3D/LIDC-style data is not at hand. SYNTHETIC: nothing here comes from a patient.

What it models (and why, for the chapter):
* 32³ patches in Hounsfield units, NIfTI (X, Y, Z), 0.7–1.0 mm voxels (in the affine, RAS+):
  lung parenchyma (≈ −850 HU) with correlated noise and vessels, one nodule near the centre.
* Benign nodules are smooth and round (sometimes calcified); malignant ones are lobulated,
  irregular and spiculated. About 3 benign : 1 malignant. Sizes, densities (solid or ground-glass)
  and vessels overlap between the classes, and some nodules look like the other class, so no single
  hand-made feature (volume, mean/max HU, std, a thresholded-voxel count) separates them: the margin
  shape does, which is what a 3D CNN can learn.
* 1–4 nodules per patient (a patient is malignant if any nodule is); splits are by patient.
* Four raters score malignancy 1–5 from what they see (the true class and the size) with their own
  bias and noise; rater 3 and rater 4 did not read every nodule (NaN). Krippendorff's α (ordinal)
  comes out around 0.6, as in LIDC-IDRI's reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 32
N_DEFAULT = 320
N_FAST = 48
RATERS = ("rater_1", "rater_2", "rater_3", "rater_4")
# (bias on the latent 1–5 scale, noise sd, fraction of nodules read)
_RATER_MODEL = {"rater_1": (0.0, 0.6, 1.0), "rater_2": (0.4, 0.65, 1.0),
                "rater_3": (-0.35, 0.6, 0.85), "rater_4": (0.15, 0.8, 0.6)}


def _smooth_noise(rng, shape, sigma):
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, truncate=2.5)
    return field / (field.std() + 1e-8)


def _draw_segment(arr, p0, p1, sigma, value):
    """arr = max(arr, base + value·exp(-d²/2σ²)) near the segment p0–p1 (voxel units), in place.

    Only the segment's bounding box is computed (thin strands: vessels and spicules).
    """
    pad = 3.0 * sigma + 1
    lo = np.maximum(np.floor(np.minimum(p0, p1) - pad), 0).astype(int)
    hi = np.minimum(np.ceil(np.maximum(p0, p1) + pad) + 1, arr.shape).astype(int)
    if np.any(hi <= lo):
        return
    axes = [np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"))
    d = (p1 - p0).astype(np.float32)
    rel = g - p0.astype(np.float32)[:, None, None, None]
    t = np.clip((rel * d[:, None, None, None]).sum(0) / (d @ d + 1e-8), 0.0, 1.0)
    dist2 = ((rel - t * d[:, None, None, None]) ** 2).sum(0)
    box = arr[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    np.maximum(box, value(np.exp(-0.5 * dist2 / sigma**2)), out=box)


def _nodule_patch(rng, malignant: bool, spacing: np.ndarray) -> tuple[np.ndarray, dict]:
    """Return one (X, Y, Z) float32 patch in HU and a dict of the generating parameters."""
    from scipy.ndimage import gaussian_filter

    shape = (SIZE, SIZE, SIZE)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    mm = grid * spacing[:, None, None, None]

    # lung background: parenchyma with correlated texture, then vessels (both classes alike)
    hu = (-850.0 + 35.0 * _smooth_noise(rng, shape, 1.5)).astype(np.float32)
    for _ in range(rng.integers(1, 5)):
        p0 = rng.uniform(-4, SIZE + 4, 3)
        p1 = rng.uniform(-4, SIZE + 4, 3)
        radius = rng.uniform(0.6, 1.8)
        peak = rng.uniform(-350, 120)
        _draw_segment(hu, p0, p1, radius, lambda g, peak=peak: -850 + (peak + 850) * g)

    # the nodule: radius overlaps between classes (malignant a little larger on average, as in LIDC)
    radius_mm = float(np.clip(rng.lognormal(np.log(4.9 if malignant else 4.5), 0.3), 2.5, 10.0))
    centre = np.array(shape) / 2 + rng.uniform(-2, 2, 3)
    cmm = centre * spacing
    rel = mm - cmm[:, None, None, None]
    # a malignant-looking benign nodule or a smooth malignant one now and then: labels are not pure looks
    atypical = rng.random() < (0.10 if malignant else 0.06)
    looks_malignant = malignant != atypical

    if looks_malignant:
        # lobulated: a union of 2–4 overlapping lobes, each with an irregular, noisy surface
        inside = np.zeros(shape, dtype=np.float32)
        surface = 0.28 * _smooth_noise(rng, shape, 1.2)
        for k in range(rng.integers(2, 5)):
            offset = rng.normal(0, 0.45 * radius_mm, 3) if k else np.zeros(3)
            r_lobe = radius_mm * rng.uniform(0.55, 0.85) if k else radius_mm * rng.uniform(0.75, 0.95)
            d = np.sqrt(((rel - offset[:, None, None, None]) ** 2).sum(0)) / r_lobe
            inside = np.maximum(inside, (d < 1 + surface).astype(np.float32))
        # spicules: thin strands radiating from the surface
        n_spic = rng.integers(6, 15)
        for _ in range(n_spic):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            start = centre + direction * (0.7 * radius_mm / spacing)
            end = centre + direction * ((radius_mm + rng.uniform(3, 9)) / spacing)
            strength = rng.uniform(0.6, 1.0)
            _draw_segment(inside, start, end, rng.uniform(0.45, 0.75), lambda g, s=strength: s * g)
        kind = "spiculated"
    else:
        axes = radius_mm * rng.uniform(0.85, 1.0, 3)
        d = np.sqrt(((rel / axes[:, None, None, None]) ** 2).sum(0))
        inside = (d < 1 + 0.03 * _smooth_noise(rng, shape, 2.0)).astype(np.float32)
        kind = "smooth"
    inside = np.clip(gaussian_filter(inside, 0.6, truncate=2.5), 0, 1)  # partial volume at the margin

    ground_glass = rng.random() < 0.15
    density = rng.uniform(-550, -300) if ground_glass else rng.uniform(-60, 60)
    texture = density + 30.0 * _smooth_noise(rng, shape, 1.0)
    hu = hu * (1 - inside) + texture * inside

    calcified = (not malignant and rng.random() < 0.2) or (malignant and rng.random() < 0.03)
    if calcified:
        r_c = radius_mm * rng.uniform(0.25, 0.55)
        off = rng.normal(0, 0.2 * radius_mm, 3)
        dc = np.sqrt(((rel - off[:, None, None, None]) ** 2).sum(0)) / r_c
        calc = np.clip(gaussian_filter((dc < 1).astype(np.float32), 0.6), 0, 1)
        hu = hu * (1 - calc) + rng.uniform(150, 450) * calc
    hu = hu + rng.uniform(15, 35) * rng.standard_normal(shape, dtype=np.float32)  # quantum noise
    return hu.astype(np.float32), {"diameter_mm": 2 * radius_mm, "margin": kind, "calcified": calcified}


def _ratings(rng, labels: np.ndarray, diameters: np.ndarray) -> dict[str, np.ndarray]:
    """Return 1–5 malignancy scores per rater (NaN where the rater did not read the nodule)."""
    malignant = labels == "malignant"
    # what the nodule looks like to a radiologist: class, size and how typical it looks
    latent = np.where(malignant, 3.7, 2.2) + 0.18 * (diameters - 9.0) + rng.normal(0, 0.55, len(labels))
    scores = {}
    for name, (bias, sd, read) in _RATER_MODEL.items():
        s = np.clip(np.rint(latent + bias + rng.normal(0, sd, len(labels))), 1, 5)
        s[rng.random(len(labels)) >= read] = np.nan
        scores[name] = s
    return scores


def generate(root: Path, *, n: int | None = None, seed: int = 0, fast: bool = False):
    """Return the nodules DataFrame after writing `n` NIfTI patches (HU, (X, Y, Z)) under `root`.

    Part 3 (classification, patient-level aggregation, Krippendorff's α). Columns: img_path,
    labels ("benign"/"malignant"), patient_id, nodule_id, rater_1..rater_4 (1–5, NaN = not read),
    split ("train"/"val"/"test", by patient), is_val, plus diameter_mm. `n` defaults to 320
    (48 with `fast=True`). Same `seed`, same files and table. Files are written to a temporary
    name and renamed, so an interrupted run leaves no half-written patch.
    """

    import nibabel as nib

    from medlearn._atomic import atomic_path
    import pandas as pd

    root = Path(root)
    n = int(n if n is not None else (N_FAST if fast else N_DEFAULT))
    if n < 4:
        raise ValueError(f"nodules.generate: n={n} is too small; ask for at least 4 nodules")
    rng = np.random.default_rng(seed)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)

    # patients with 1–4 nodules, until n nodules; exactly round(n/4) malignant nodules, placed so that
    # malignant nodules cluster a little within patients (a patient with one is likelier to have another)
    counts = []
    while sum(counts) < n:
        counts.append(int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15])))
    counts[-1] -= sum(counts) - n
    patient_of = np.repeat(np.arange(len(counts)), counts)
    risk = rng.beta(0.8, 2.4, len(counts))[patient_of] + rng.uniform(0, 0.05, n)
    n_malignant = int(round(n / 4))
    malignant = np.zeros(n, dtype=bool)
    malignant[np.argsort(-(risk + rng.gumbel(0, 0.15, n)))[:n_malignant]] = True
    labels = np.where(malignant, "malignant", "benign")

    rows = []
    for i in range(n):
        spacing = np.array([rng.uniform(0.7, 1.0)] * 2 + [rng.uniform(0.7, 1.0)], dtype=np.float32)
        hu, params = _nodule_patch(rng, bool(malignant[i]), spacing)
        nodule_id = f"N{i:04d}"
        path = img_dir / f"{nodule_id}.nii.gz"
        affine = np.diag([*spacing.tolist(), 1.0])
        with atomic_path(path, suffix=".nii.gz") as tmp:
            nib.save(nib.Nifti1Image(hu, affine), str(tmp))
        rows.append({"img_path": str(path), "labels": labels[i], "patient_id": f"P{patient_of[i]:03d}",
                     "nodule_id": nodule_id, "diameter_mm": round(params["diameter_mm"], 1)})
    df = pd.DataFrame(rows)
    for name, s in _ratings(rng, labels, df["diameter_mm"].to_numpy()).items():
        df[name] = s
    # split by patient (60/20/20) so that no patient is on both sides
    patients = np.array(sorted(df["patient_id"].unique()))
    order = rng.permutation(len(patients))
    n_test = max(1, int(round(0.2 * len(patients))))
    n_val = max(1, int(round(0.2 * len(patients))))
    split_of = {}
    for k, idx in enumerate(order):
        split_of[patients[idx]] = "test" if k < n_test else ("val" if k < n_test + n_val else "train")
    df["split"] = df["patient_id"].map(split_of)
    df["is_val"] = df["split"] == "val"
    cols = ["img_path", "labels", "patient_id", "nodule_id", *RATERS, "split", "is_val", "diameter_mm"]
    return df[cols]
