"""Benchmark: chapter 1.2's BreastMNIST recipe on the real data, beside the MedMNIST v2 table.

Run by `make bench` (which seeds the data cache first), not by the tests:

    python benchmarks/breastmnist.py [--epochs E] [--members K] [--seeds N] [--ablate]

The recipe (medlearn/recipes/breastmnist.py) trains on the official training split only; the
validation split is used only where a choice is made on it, and the official test split is
predicted once per run, for the reported numbers. `--seeds N` repeats the run with seeds
seed, seed + 100, ... to show the seed spread; `--ablate` adds the ablation table (one change at
a time against chapter 1.2's CNN), each row with its validation and test AUC / ACC. The JSON
record (AUC and ACC with stratified bootstrap 95% CIs, wall and CPU time, thread and CPU count,
library versions, the per-seed rows and the ablation rows) goes to _build/benchmarks/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from inspect import signature

import numpy as np

from medlearn.recipes.report import auc_acc

# one change at a time against chapter 1.2's CNN (the "baseline" row)
BASELINE = dict(width=16, epochs=30, members=1, augment=False, tta=False)
ABLATION = {
    "baseline: chapter 1.2 CNN (w16, 30 ep)": {},
    "+ augmentation (flip, rotate, zoom, light)": dict(augment=True),
    "width 32": dict(width=32),
    "60 epochs": dict(epochs=60),
    "weight decay 0.1 (AdamW; base 0.01)": dict(wd=0.1),
    "label smoothing 0.1": dict(label_smoothing=0.1),
    "mixup": dict(mixup=True),
    "TTA: left-right flip": dict(tta=True),
    "ensemble of 5 seeds": dict(members=5),
    "balanced class weights": dict(class_weights=True),
    "threshold chosen on val (max ACC)": dict(val_threshold=True),
}


def run(data, *, seed: int, tta: bool = True, val_threshold: bool = False, **options) -> dict:
    """Train the recipe with `options`, predict val and test; return the probabilities and times.

    With `val_threshold`, the ACC threshold is the one of best validation accuracy (else 0.5).
    """
    from medlearn.recipes.breastmnist import predict_malignant, train_breastmnist

    (x_train, y_train), (x_val, y_val), (x_test, _) = data
    wall, cpu = time.perf_counter(), time.process_time()
    models = train_breastmnist(x_train, y_train, x_val, y_val, seed=seed, **options)
    p_val = predict_malignant(models, x_val, tta=tta)
    p_test = predict_malignant(models, x_test, tta=tta)
    threshold = 0.5
    if val_threshold:  # the candidates are the validation probabilities; ties: nearest 0.5
        malignant = y_val == 0
        accuracy = [((p_val >= t) == malignant).mean() for t in p_val]
        best = np.flatnonzero(np.isclose(accuracy, max(accuracy)))
        threshold = float(p_val[best[np.argmin(np.abs(p_val[best] - 0.5))]])
    return {"p_val": p_val, "p_test": p_test, "threshold": threshold,
            "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def scores(y, prob, threshold: float = 0.5) -> dict:
    """AUC and ACC of malignancy probabilities; MedMNIST's BreastMNIST labels 0 as malignant."""
    return auc_acc(np.asarray(y) == 0, prob, threshold)


def main(argv=None) -> int:
    from medlearn.recipes.report import add_run_options

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, help="default: the recipe's")
    p.add_argument("--members", type=int, help="networks in the ensemble (default: the recipe's)")
    p.add_argument("--width", type=int, help="channels of the first block (default: the recipe's)")
    # members use seeds seed..seed+4, so the repeated runs step by 100
    args = add_run_options(p, "_build/benchmarks/breastmnist.json", seed_step=100).parse_args(argv)
    t0 = time.perf_counter()

    import torch

    from medlearn.data import load
    from medlearn.recipes.breastmnist import train_breastmnist
    from medlearn.recipes.report import (benchmark_record, comparison_table, rows_table,
                                         write_record)

    torch.set_num_threads(args.threads)
    ds = load("breastmnist", source="real")
    data = [ds.arrays(split) for split in ("train", "val", "test")]
    y_val, y_test = data[1][1], data[2][1]
    # the recipe's own defaults, overridden by the options given
    recipe = {name: par.default for name, par in signature(train_breastmnist).parameters.items()
              if par.default is not par.empty}
    recipe.update({k: v for k, v in vars(args).items() if k in recipe and v is not None},
                  tta=True)
    del recipe["seed"]

    per_seed = []
    for k in range(args.seeds):
        seed = args.seed + 100 * k
        out = run(data, seed=seed, **recipe)
        per_seed.append({"seed": seed, **scores(y_test, out["p_test"]),
                         "val": scores(y_val, out["p_val"]),
                         "wall_s": round(out["wall_s"], 1), "cpu_s": round(out["cpu_s"], 1)})
        if k == 0:
            first = out

    ablation = []
    if args.ablate:
        for name, change in ABLATION.items():
            out = run(data, seed=args.seed, **{**BASELINE, **change})
            ablation.append({"row": name, "change": change, "seed": args.seed,
                             "val": scores(y_val, out["p_val"]),
                             "threshold": round(out["threshold"], 4),
                             "test": scores(y_test, out["p_test"], out["threshold"]),
                             "wall_s": round(out["wall_s"], 1),
                             "cpu_s": round(out["cpu_s"], 1)})

    wall = time.perf_counter() - t0
    record = benchmark_record(
        "breastmnist", y_test == 0, first["p_test"], wall_s=first["wall_s"],
        recipe={**recipe, "seed": args.seed, "trained_on": "official train split (546)"},
        n_boot=args.n_boot, seed=args.seed, threads=args.threads,
        cpu_s=round(first["cpu_s"], 1), per_seed=per_seed, ablation=ablation,
        total_wall_s=round(wall, 1))
    print(f"\n{ds.provenance if hasattr(ds, 'provenance') else ds}")
    print(f"recipe: {recipe}; trained on the official train split only")
    print(f"{os.cpu_count()} CPU(s), {args.threads} torch thread(s); "
          f"seed {args.seed}: {first['wall_s']:.0f} s wall, {first['cpu_s']:.0f} s CPU\n")
    print(comparison_table(record, name=f"this recipe, seed {args.seed}"))
    print("\n" + rows_table(per_seed, [("seed", "seed", "d"), ("test AUC", "AUC", ".3f"),
                                       ("test ACC", "ACC", ".3f"), ("val AUC", "val.AUC", ".3f"),
                                       ("wall s", "wall_s", ".0f"), ("CPU s", "cpu_s", ".0f")]))
    if ablation:
        print(f"\nablation (seed {args.seed}; one change at a time against the baseline)")
        print(rows_table(ablation, [("row", "row", "s"), ("val AUC", "val.AUC", ".3f"),
                                    ("val ACC", "val.ACC", ".3f"), ("test AUC", "test.AUC", ".3f"),
                                    ("test ACC", "test.ACC", ".3f"), ("CPU s", "cpu_s", ".0f")]))
    print(f"\ntotal wall {wall:.0f} s; record: {write_record(record, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
