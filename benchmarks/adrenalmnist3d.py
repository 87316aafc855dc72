"""Benchmark: part 3's recipe on the real AdrenalMNIST3D, beside the MedMNIST v2 table.

Run by `make bench` (which seeds the data cache first), not by the tests:

    python benchmarks/adrenalmnist3d.py                 # the final recipe, one seed
    python benchmarks/adrenalmnist3d.py --seeds 3       # the same for seeds 0, 1, 2
    python benchmarks/adrenalmnist3d.py --ablate        # plus one-change-at-a-time variants

The recipe is `medlearn.recipes.adrenalmnist3d` (its docstring has the measured numbers): trained
on the official train split only, the val split watched, the test split predicted once at the
end. Printed: the published table with this run's row (95% stratified bootstrap CIs), each
seed's AUC/ACC, the augmentation's cost in ms per volume (measured in the run, beside TorchIO's
per-volume RandomAffine), wall and CPU time, threads and CPU count. `--ablate` adds one row per
variant (val and test AUC/ACC). The JSON record goes to --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from medlearn.recipes.adrenalmnist3d import RECIPE
from medlearn.recipes.report import auc_acc

# name -> the one change against the run's settings (overrides of fit_predict, or a function of
# the settings that returns them)
ABLATIONS = {
    "trilinear resampling": {"augment": {"mode": "bilinear"}},
    "no augmentation": {"augment": False},
    "affine without flips": {"augment": {"flip": False}},
    "no flip TTA": {"tta": False},
    "class weights": {"class_weights": not RECIPE["class_weights"]},
    "half the epochs": lambda kw: {"epochs": max(1, kw["epochs"] // 2)},
    "one member": {"members": 1},
}


def torchio_ms_per_volume(x, n: int = 64) -> float:
    """Process CPU ms per volume of TorchIO's RandomAffine (the old per-volume augmentation)."""
    import torchio as tio

    tfm = tio.RandomAffine(scales=0.1, degrees=35, isotropic=True)
    t = time.process_time()
    for v in x[:n]:
        tfm(v)
    return 1000 * (time.process_time() - t) / min(n, len(x))


def run_once(ds, seed: int, **kwargs) -> dict:
    """One run of the recipe: val/test labels and probabilities, wall and CPU seconds."""
    from medlearn.recipes.adrenalmnist3d import fit_predict

    t, c = time.time(), time.process_time()
    out = fit_predict(ds, seed=seed, **kwargs)
    out.update(wall_s=time.time() - t, cpu_s=time.process_time() - c)
    val = auc_acc(*out["val"])
    print(f"run seed={seed} {kwargs}: val AUC/ACC {val['AUC']:.3f}/"
          f"{val['ACC']:.3f}, wall {out['wall_s']:.0f} s, CPU {out['cpu_s']:.0f} s",
          flush=True)
    return out


def main(argv=None) -> int:
    from medlearn.recipes.report import add_run_options

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    p.add_argument("--members", type=int, default=RECIPE["members"],
                   help="networks trained and averaged in one run (an ensemble)")
    p.add_argument("--size", type=int, default=28, choices=[28, 64])
    args = add_run_options(p, "_build/benchmarks/adrenalmnist3d.json").parse_args(argv)
    t0 = time.time()

    import torch

    from medlearn.data import load
    from medlearn.recipes.adrenalmnist3d import augmentation_ms_per_volume, volumes
    from medlearn.recipes.report import (benchmark_record, comparison_table, rows_table,
                                         write_record)

    torch.set_num_threads(args.threads)
    ds = load("adrenalmnist3d", source="real", size=args.size)
    x_train = volumes(ds, "train")[0]
    aug_ms = augmentation_ms_per_volume(x_train)
    tio_ms = torchio_ms_per_volume(x_train)
    recipe = {**RECIPE, "epochs": args.epochs, "members": args.members, "size": args.size,
              "threads": args.threads, "trained_on": "official train split only"}
    kwargs = {"epochs": args.epochs, "members": args.members}

    runs = {s: run_once(ds, s, **kwargs) for s in range(args.seed, args.seed + args.seeds)}
    main_run = runs[args.seed]
    per_seed = [{"seed": s, **auc_acc(*r["test"]),
                 "wall_s": round(r["wall_s"], 1), "cpu_s": round(r["cpu_s"], 1)}
                for s, r in runs.items()]

    ablation = []
    if args.ablate:
        for name, change in {"final recipe": {}, **ABLATIONS}.items():
            change = change(kwargs) if callable(change) else change
            if change and all(kwargs.get(k, RECIPE.get(k)) == v for k, v in change.items()):
                continue  # not a change for these settings
            r = run_once(ds, args.seed, **{**kwargs, **change}) if change else main_run
            ablation.append({"variant": name, "change": change,
                             **{f"val_{k}": v for k, v in auc_acc(*r["val"]).items()},
                             **auc_acc(*r["test"]),
                             "wall_s": round(r["wall_s"], 1), "cpu_s": round(r["cpu_s"], 1)})

    record = benchmark_record(
        "adrenalmnist3d", *main_run["test"], wall_s=main_run["wall_s"], recipe=recipe,
        n_boot=args.n_boot, seed=args.seed, size=args.size, cpu_s=round(main_run["cpu_s"], 1),
        augmentation_ms_per_volume={"batched affine (this recipe)": round(aug_ms, 2),
                                    "TorchIO RandomAffine, per volume": round(tio_ms, 2)},
        per_seed=per_seed, ablation=ablation, total_wall_s=round(time.time() - t0, 1))
    print(f"\n{ds.provenance}")
    print("recipe:", ", ".join(f"{k}={v}" for k, v in recipe.items()))
    print(f"augmentation, CPU ms per volume: batched affine {aug_ms:.2f} · "
          f"TorchIO RandomAffine {tio_ms:.2f}")
    print(f"seed {args.seed}: wall {main_run['wall_s']:.0f} s, CPU {main_run['cpu_s']:.0f} s, "
          f"{args.threads} torch thread(s), {os.cpu_count()} CPU(s)\n")
    print(comparison_table(record))
    print("\n" + rows_table(per_seed, [("seed", "seed", "d"), ("AUC", "AUC", ".4f"),
                                       ("ACC", "ACC", ".4f"), ("wall s", "wall_s", ".0f"),
                                       ("CPU s", "cpu_s", ".0f")]))
    if ablation:
        print("\n" + rows_table(ablation, [("variant (one change)", "variant", "s"),
                                           ("val AUC", "val_AUC", ".3f"), ("val ACC", "val_ACC", ".3f"),
                                           ("AUC", "AUC", ".3f"), ("ACC", "ACC", ".3f"),
                                           ("CPU s", "cpu_s", ".0f")]))
    print(f"\ntotal wall {time.time() - t0:.0f} s; record: {write_record(record, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
