"""A benchmark run as a record: test AUC and ACC with 95% CIs beside the published MedMNIST v2 table.

The published numbers are point estimates on the official test split (Yang et al. 2023, MedMNIST
v2, Scientific Data 10:41; the 2D and 3D benchmark tables). They carry no interval, so a recipe's
row shows its own 95% stratified bootstrap interval: a difference smaller than that interval is
not evidence of a better method. ACC is at the stated operating point (MedMNIST's own is the
argmax, i.e. threshold 0.5).
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["MEDMNIST_V2", "CITATION", "add_run_options", "auc_acc", "benchmark_record", "comparison_table",
           "rows_table", "write_record"]

CITATION = ("Yang J. et al. MedMNIST v2 - a large-scale lightweight benchmark for 2D and 3D "
            "biomedical image classification. Scientific Data 10, 41 (2023); test AUC / ACC")

# method -> (test AUC, test ACC) as published
MEDMNIST_V2: dict[str, dict[str, tuple[float, float]]] = {
    "breastmnist": {
        "ResNet-18 (28)": (0.901, 0.863), "ResNet-18 (224)": (0.891, 0.833),
        "ResNet-50 (28)": (0.857, 0.812), "ResNet-50 (224)": (0.866, 0.842),
        "auto-sklearn": (0.836, 0.803), "AutoKeras": (0.871, 0.831),
        "Google AutoML Vision": (0.919, 0.861),
    },
    "adrenalmnist3d": {
        "ResNet-18 + 2.5D": (0.718, 0.772), "ResNet-18 + 3D": (0.827, 0.721),
        "ResNet-18 + ACS": (0.839, 0.754), "ResNet-50 + 2.5D": (0.735, 0.770),
        "ResNet-50 + 3D": (0.828, 0.745), "ResNet-50 + ACS": (0.839, 0.758),
        "auto-sklearn": (0.828, 0.802), "AutoKeras": (0.804, 0.705),
    },
}

_LIBRARIES = ("torch", "numpy", "scikit-learn", "fastai", "monai", "torchio", "fastMONAI")


def add_run_options(parser, out: str, seed_step: int = 1):
    """Add the options every benchmark script shares to an argparse `parser` and return it:
    --seed, --seeds (runs with seed, seed + seed_step, ...), --ablate, --threads, --n-boot, --out."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1,
                        help=f"repeat with N seeds: seed, seed+{seed_step}, ... (the spread)")
    parser.add_argument("--ablate", action="store_true",
                        help="also run the ablation table (one change at a time, seed --seed)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (the measured runs used 1)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the CIs")
    parser.add_argument("--out", default=out, help="the JSON record")
    return parser


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def benchmark_record(dataset: str, y_true, prob, *, threshold: float = 0.5, wall_s: float,
                     recipe: dict, n_boot: int = 2000, seed: int = 0, **extra) -> dict:
    """Return the JSON-ready record of one run: AUC and ACC with 95% CIs, and the context.

    `y_true` holds 0/1 labels of the positive class, `prob` its predicted probability; a case is
    called positive when `prob >= threshold`. `recipe` names every choice of the run.
    """
    from medlearn.metrics.classification import metrics_table

    if dataset not in MEDMNIST_V2:
        raise ValueError(f"no published MedMNIST v2 table for {dataset!r}; "
                         f"known: {sorted(MEDMNIST_V2)}")
    y = np.asarray(y_true).astype(int).reshape(-1)
    p = np.asarray(prob, dtype=float).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    table = metrics_table(y, p, threshold=threshold, n_boot=n_boot, seed=seed)
    metrics = {name: {k: round(float(v), 4) for k, v in row.items()}
               for name, row in table.iterrows()}
    published = MEDMNIST_V2[dataset]
    best_auc = max(a for a, _ in published.values())
    best_acc = max(c for _, c in published.values())
    return {
        "dataset": dataset, "test_n": int(len(y)), "test_positive": int(y.sum()),
        "threshold": float(threshold), "metrics": metrics, "recipe": recipe,
        "wall_s": round(float(wall_s), 1), "cpus": os.cpu_count(), "versions": _versions(),
        "published": {"citation": CITATION, "results": published,
                      "best_auc": best_auc, "best_acc": best_acc},
        "above_best_published": {"AUC": metrics["AUC"]["estimate"] > best_auc,
                                 "ACC": metrics["accuracy"]["estimate"] > best_acc},
        **extra,
    }


def comparison_table(record: dict, name: str = "this recipe (95% CI)") -> str:
    """The published table with this run's row (estimate and interval) below it, as text."""
    rows = [f"{'method':<30}{'AUC':>22}{'ACC':>22}"]
    for method, (auc, acc) in record["published"]["results"].items():
        rows.append(f"{method:<30}{auc:>22.3f}{acc:>22.3f}")
    m = record["metrics"]
    cell = {k: f"{m[k]['estimate']:.3f} ({m[k]['low']:.3f}-{m[k]['high']:.3f})"
            for k in ("AUC", "accuracy")}
    rows.append(f"{name:<30}{cell['AUC']:>22}{cell['accuracy']:>22}")
    above = record["above_best_published"]
    pub = record["published"]
    rows.append(f"\nabove the best published AUC ({pub['best_auc']:.3f}): {above['AUC']}; "
                f"above the best published ACC ({pub['best_acc']:.3f}): {above['ACC']}")
    rows.append(f"published: {pub['citation']}")
    return "\n".join(rows)


def auc_acc(positive, prob, threshold: float = 0.5) -> dict[str, float]:
    """AUC and ACC (a case is positive when prob >= `threshold`), as MedMNIST reports them; plain floats."""
    from sklearn.metrics import roc_auc_score

    positive, prob = np.asarray(positive, dtype=bool), np.asarray(prob, dtype=float)
    return {"AUC": round(float(roc_auc_score(positive, prob)), 4),
            "ACC": round(float(((prob >= threshold) == positive).mean()), 4)}


def rows_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A text table of a record's `per_seed` or `ablation` rows, one (header, key, format) per column.

    A dotted key reads a nested value ("val.AUC" is row["val"]["AUC"]); text columns are aligned left,
    numbers right.
    """
    def value(row, key):
        for part in key.split("."):
            row = row[part]
        return row

    cells = [[format(value(r, key), fmt) for _, key, fmt in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _, _) in enumerate(columns)]
    left = [bool(rows) and isinstance(value(rows[0], key), str) for _, key, _ in columns]
    lines = [[h for h, _, _ in columns]] + cells
    return "\n".join("  ".join(c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(line, widths, left))
                     .rstrip() for line in lines)


def write_record(record: dict, path: str | os.PathLike) -> Path:
    """Write `record` as JSON, atomically (no half-written file on a crash)."""
    from medlearn._atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(record, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")

