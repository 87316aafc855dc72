"""The small skull-stripping recipe that chapters 6.1 and 6.2 train on real IXI heads before deploying it.

Chapter 6.1 (and 6.2, which deploys the same recipe). Part 4's recipe, shrunk to a CPU: a MONAI
3D U-Net, Dice-Focal loss, fastai's Ranger optimiser with `fit_flat_cos`, trained on volumes that
went through exactly the `Preprocessing` the bundle will store (so training and deployment cannot
drift apart).
"""

from __future__ import annotations

import warnings

import numpy as np

from medlearn.deploy.preprocessing import Preprocessing


def preprocess_cases(df, pre: Preprocessing, *, progress: bool = False):
    """Return (images, masks) as float32 tensors (N, 1, X, Y, Z) after `pre`, from `img_path`/`mask_path`."""
    import torch
    from tqdm.auto import tqdm

    from medlearn.dicom import from_nifti

    xs, ys = [], []
    rows = list(df.itertuples())
    for r in tqdm(rows, desc="preprocess", disable=not progress, leave=False):
        s = pre.subject(from_nifti(r.img_path), from_nifti(r.mask_path))
        xs.append(s.image.data.float())
        ys.append(s.mask.data.float())
    return torch.stack(xs), torch.stack(ys)


def fit_size(df, spacing, multiple: int = 8) -> tuple[int, int, int]:
    """Return the RAS size (divisible by `multiple`) that holds the largest head of `df` at `spacing`."""
    import nibabel as nib

    biggest = np.zeros(3)
    for p in df.img_path:
        img = nib.as_closest_canonical(nib.load(str(p)))
        extent = np.array(img.shape[:3]) * np.array(img.header.get_zooms()[:3])
        biggest = np.maximum(biggest, extent / np.array(spacing))
    return tuple(int(np.ceil(b / multiple) * multiple) for b in biggest)


def unet(channels=(8, 16, 32, 64)):
    """Return the 3D U-Net (MONAI) of the recipe: one input channel, one output channel (logits)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=channels,
                strides=(2,) * (len(channels) - 1), num_res_units=1)


def train_skull_stripper(x_train, y_train, x_valid, y_valid, *, epochs: int, lr: float = 1e-2,
                         bs: int = 2, channels=(8, 16, 32, 64)):
    """Return a trained fastai `Learner` (MONAI U-Net, Dice-Focal, Ranger, fit_flat_cos). Chapter 6.1."""
    warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated")  # notes from MONAI/fastai
    import fastai.callback.progress  # noqa: F401  (adds Learner.no_bar)
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_flat_cos)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.optimizer import ranger
    from monai.losses import DiceFocalLoss

    dls = DataLoaders(DataLoader(list(zip(x_train, y_train)), bs=bs, shuffle=True, drop_last=False),
                      DataLoader(list(zip(x_valid, y_valid)), bs=bs))
    learn = Learner(dls, unet(channels), loss_func=DiceFocalLoss(sigmoid=True), opt_func=ranger)
    with learn.no_bar(), learn.no_logging():
        learn.fit_flat_cos(epochs, lr=lr)
    return learn
