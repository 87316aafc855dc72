"""Benchmark: the skull-stripping recipe of chapter 4.1 (fastMONAI 3D U-Net, Dice-Focal, Ranger, fit_flat_cos).

Trains on the synthetic head stand-in, and on IXI Tiny when it is in the data cache (it is never downloaded
here: seed or download it first with `python -c "from medlearn.data import load; load('ixi_tiny', 'real')"`).
Reports validation Dice, HD95 and wall time per data set, and compares the real-data run with the thesis:
Paper A (fastMONAI, IXI Tiny: Dice 0.959 after 2 epochs) and Paper B (skull stripping: Dice 0.978).

    python benchmarks/skull_stripping.py [--epochs 10] [--quick]

Run by `make bench`; not part of the tests. Writes _build/reports/bench_skull_stripping.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

PAPER_A_DICE, PAPER_B_DICE = 0.959, 0.978


def run(name: str, ds, epochs: int, quick: bool) -> dict:
    """Train and evaluate the recipe on one data set; return a result row."""
    import numpy as np
    import pandas as pd
    import torch
    from fastMONAI.vision_all import (ColReader, ColSplitter, CustomLoss, ImageBlock, Learner, MedDataBlock,
                                      MedDataset, MedImage, MedMaskBlock, PadOrCrop, RandomAffine, ZNormalization,
                                      ranger)
    from monai.losses import DiceFocalLoss
    from monai.networks.nets import UNet

    from medlearn.metrics.segmentation import segmentation_metrics

    df = ds.df[ds.df.split != "test"].reset_index(drop=True) if "split" in ds.df else ds.df.copy()
    if "is_val" not in df:
        df["is_val"] = np.arange(len(df)) % 5 == 0
    med = MedDataset(img_list=df.img_path.tolist(), dtype=MedImage, max_workers=1, use_cache=False)
    spacing = med.get_suggestion()["target_spacing"]
    largest = med.get_size_statistics(spacing)["max"]
    if quick:  # coarser voxels: a CPU smoke run of the benchmark itself
        spacing = [s * max(largest) / 32 for s in spacing]
        largest = med.get_size_statistics(spacing)["max"]
    size = [int(np.ceil(s / 16) * 16) for s in largest]
    dblock = MedDataBlock(blocks=(ImageBlock(cls=MedImage), MedMaskBlock), splitter=ColSplitter("is_val"),
                          get_x=ColReader("img_path"), get_y=ColReader("mask_path"),
                          item_tfms=[ZNormalization(), PadOrCrop(size), RandomAffine(scales=0.1, degrees=10, p=0.5)],
                          apply_reorder=True, target_spacing=spacing)
    dls = dblock.dataloaders(df, bs=4 if torch.cuda.is_available() else 2)
    model = UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=(16, 32, 64, 128, 256),
                 strides=(2, 2, 2, 2), num_res_units=2)
    learn = Learner(dls, model, loss_func=CustomLoss(loss_func=DiceFocalLoss(sigmoid=True)), opt_func=ranger)
    if torch.cuda.is_available():
        learn.dls.cuda()
        learn.model.cuda()
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_flat_cos(epochs, 3e-3)
    train_s = time.perf_counter() - start
    with learn.no_bar():
        logits, targets = learn.get_preds()
    table = segmentation_metrics((torch.sigmoid(logits) > 0.5).cpu(), targets.cpu(), spacing)
    return {"data": name, "source": ds.source, "cases_train": int((~df.is_val).sum()),
            "cases_val": int(df.is_val.sum()), "epochs": epochs, "spacing_mm": [round(s, 3) for s in spacing],
            "size": size, "dice": round(float(table.dice.mean()), 4), "dice_sd": round(float(table.dice.std()), 4),
            "hd95_mm": round(float(table.hd95_mm.mean()), 2), "train_s": round(train_s, 1),
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="coarse voxels and the small stand-in (a CPU check)")
    p.add_argument("--report", default="_build/reports/bench_skull_stripping.json")
    args = p.parse_args(argv)

    import medlearn
    from medlearn.data import load

    medlearn.set_seed(42)
    rows, notes = [], []
    rows.append(run("heads (stand-in)", load("heads", source="synthetic", fast=args.quick), args.epochs, args.quick))
    os.environ["MEDLEARN_OFFLINE"] = "1"  # use IXI Tiny only when cached; never download in a benchmark
    try:
        ixi = load("ixi_tiny", source="real", fast=args.quick)
    except Exception as err:  # noqa: BLE001  (any reason it is unavailable is reported, not fatal)
        notes.append(f"IXI Tiny: could not run ({type(err).__name__}: {str(err).splitlines()[0][:160]})")
    else:
        rows.append(run("ixi_tiny (real)", ixi, args.epochs, args.quick))

    print(f"{'data':<18} {'device':<6} {'epochs':>6} {'train':>6} {'val':>4} {'Dice':>13} {'HD95 mm':>8} {'time s':>7}")
    for r in rows:
        print(f"{r['data']:<18} {r['device']:<6} {r['epochs']:>6} {r['cases_train']:>6} {r['cases_val']:>4} "
              f"{r['dice']:.3f} ± {r['dice_sd']:.3f} {r['hd95_mm']:>8.1f} {r['train_s']:>7.0f}")
    real = [r for r in rows if r["source"] == "real"]
    if real:
        r = real[0]
        notes.append(f"IXI Tiny Dice {r['dice']:.3f} after {r['epochs']} epochs vs Paper A {PAPER_A_DICE} "
                     f"(2 epochs) and Paper B {PAPER_B_DICE}")
    else:
        notes.append(f"no real-data run, so no comparison with Paper A ({PAPER_A_DICE}) or Paper B ({PAPER_B_DICE}); "
                     "the stand-in's Dice is not comparable with the papers")
    for n in notes:
        print(n)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"results": rows, "notes": notes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
