"""Label noise: inject it with a recorded truth, find it, and build consensus from several raters.

Part 5 of the book (chapters 5.1-5.3) uses this module; it is thin over the field's libraries:
cleanlab finds label issues (confident learning, multi-annotator quality, active-learning scores),
SimpleITK runs STAPLE, scikit-learn splits folds, MONAI computes Dice. What none of them has lives
here: noise injection that records which labels it changed (so detection can be scored), the mask
corruptions Paper B met in automatic brain masks, out-of-fold probabilities for any model, Paper B's
Dice filter, a majority vote that reports its ties, and a seeded active-learning loop.

Classification labels are integer arrays of shape (N,); predicted probabilities are (N, K).
Masks are numpy arrays of any dimension (axis order as stored, e.g. (X, Y, Z) from nibabel or
(Z, Y, X) from SimpleITK); nothing here depends on the order, and spacing is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

MASK_CORRUPTIONS = ("jitter", "dilate", "erode", "missed", "spurious", "shift")
"""Kinds of mask error `corrupt_mask` injects: unbiased (jitter), biased (dilate, erode), a missed
part, a spurious component, a shifted mask."""


# ----------------------------------------------------------------------------- classification noise
def flip_labels(labels, rate: float | None = None, *, transition=None, n_classes: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (noisy_labels, is_flipped): labels with known flips, and which ones were flipped.

    Chapter 5.1. Symmetric noise (`rate`): exactly round(rate * N) labels, chosen at random, are moved
    to another class chosen uniformly. Class-conditional noise (`transition`): a (K, K) matrix whose
    row i gives P(noisy label = j | true label = i); each label is redrawn from its row.

    Args:
        labels: true integer labels, shape (N,).
        rate: share of labels to flip (0 <= rate < 1), for symmetric noise.
        transition: (K, K) row-stochastic matrix, for class-conditional noise (instead of `rate`).
        n_classes: number of classes K (default: max label + 1).
        seed: seed of the random generator; the same seed flips the same labels.
    Returns:
        noisy labels (N,) and a boolean array (N,) that is True where noisy != true.
    Raises:
        ValueError: when neither or both of `rate` and `transition` are given, or they are invalid.

    >>> noisy, flipped = flip_labels(np.array([0, 1, 1, 0]), 0.5, seed=0); int(flipped.sum())
    2
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if (rate is None) == (transition is None):
        raise ValueError("pass exactly one of `rate` (symmetric noise) or `transition` (class-conditional)")
    k = int(n_classes or labels.max() + 1)
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    if rate is not None:
        if not 0 <= rate < 1:
            raise ValueError(f"rate {rate} must be in [0, 1)")
        idx = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
        noisy[idx] = (labels[idx] + rng.integers(1, k, size=len(idx))) % k  # any other class
    else:
        t = np.asarray(transition, dtype=float)
        if t.shape != (k, k) or np.any(t < 0) or not np.allclose(t.sum(1), 1):
            raise ValueError(f"transition must be a ({k}, {k}) matrix of probabilities whose rows sum to 1")
        cum = t.cumsum(1)
        u = rng.random(len(labels))
        noisy = (u[:, None] > cum[labels]).sum(1).clip(max=k - 1).astype(labels.dtype)
    return noisy, noisy != labels


# ----------------------------------------------------------------------------- mask noise
def corrupt_mask(mask, kind: str, *, amount: float | None = None, seed: int = 0) -> np.ndarray:
    """Return a corrupted copy of a binary mask (bool array of the same shape).

    Chapter 5.3. The kinds (`MASK_CORRUPTIONS`) are the errors raters and tools make:
    "jitter" moves the boundary in and out by a smooth random field with SD `amount` voxels (default
    1.5; unbiased: the volume hardly changes, and the average of many jittered copies is the mask);
    "dilate"/"erode" move the whole boundary out/in by `amount` voxels (biased: always too big/small);
    "missed" leaves out the part beyond a plane at `amount` (share of the extent, default 0.35) from
    one end (like a tool that misses the cerebellum); "spurious" adds a ball of radius `amount` x the
    mask's extent (default 0.2) elsewhere; "shift" rolls the mask by `amount` (default 0.2) of its extent.

    Args:
        mask: binary array (any non-zero value is foreground), 2D or 3D.
        kind: one of `MASK_CORRUPTIONS`.
        amount: strength of the corruption (see above); None takes the default.
        seed: the random generator's seed (axis, direction, patch pattern).
    Raises:
        ValueError: for an unknown kind or an empty mask.
    """
    from scipy import ndimage

    m = np.asarray(mask) > 0
    if kind not in MASK_CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; choose one of {MASK_CORRUPTIONS}")
    if not m.any():
        raise ValueError("the mask is empty: there is no boundary to corrupt")
    rng = np.random.default_rng(seed)
    coords = np.argwhere(m)
    lo, hi = coords.min(0), coords.max(0) + 1
    extent = hi - lo
    if kind in ("dilate", "erode"):
        steps = int(amount or 2)
        op = ndimage.binary_dilation if kind == "dilate" else ndimage.binary_erosion
        return op(m, iterations=steps)
    if kind == "jitter":
        # move the boundary by a smooth random displacement field of zero mean and SD `amount` voxels:
        # a voxel d voxels inside the boundary stays in more often than not, so averaging many jittered
        # copies recovers the mask (the error is unbiased)
        field = ndimage.gaussian_filter(rng.standard_normal(m.shape), max(1.0, extent.mean() / 10))
        field *= (amount or 1.5) / (field.std() + 1e-12)
        depth = ndimage.distance_transform_edt(m) - ndimage.distance_transform_edt(~m)  # > 0 inside
        return depth - 0.5 * np.sign(depth) + field > 0
    axis = int(rng.integers(m.ndim))
    sign = 1 if rng.random() < 0.5 else -1
    if kind == "shift":
        shift = int(np.ceil((amount or 0.2) * extent[axis])) * sign
        return np.roll(m, shift, axis=axis)
    if kind == "missed":
        cut = int(round((amount or 0.35) * extent[axis]))
        out = m.copy()
        index = [slice(None)] * m.ndim
        index[axis] = slice(lo[axis], lo[axis] + cut) if sign > 0 else slice(hi[axis] - cut, hi[axis])
        out[tuple(index)] = False
        return out
    # spurious: a ball outside the mask, as far from it as the grid allows
    radius = max(1.0, (amount or 0.2) * extent.mean())
    distance = ndimage.distance_transform_edt(~m)
    candidates = np.argwhere(distance > radius + 1)
    if len(candidates) == 0:
        raise ValueError("the mask fills the grid: no room for a spurious component")
    centre = candidates[rng.integers(len(candidates))]
    grid = np.ogrid[tuple(slice(0, n) for n in m.shape)]
    ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2
    return m | ball


# ----------------------------------------------------------------------------- out-of-fold probabilities
def _fit_predict(model, x_train, y_train, x_eval) -> np.ndarray:
    """Fit a fresh copy of `model` and return its probabilities on x_eval.

    `model` is a scikit-learn style estimator (cloned, so the caller's object is never fitted) or a
    callable fit_predict(x_train, y_train, x_eval) -> (M, K) probabilities.
    """
    if hasattr(model, "fit") and hasattr(model, "predict_proba"):
        from sklearn.base import clone

        return np.asarray(clone(model).fit(x_train, y_train).predict_proba(x_eval))
    if callable(model):
        return np.asarray(model(x_train, y_train, x_eval))
    raise TypeError("model must have fit/predict_proba (scikit-learn API) or be a function "
                    "fit_predict(x_train, y_train, x_eval) -> probabilities")


def out_of_fold_probs(model, x, labels, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Return (N, K) predicted probabilities where each sample is scored by a model that never saw it.

    Chapter 5.1; confident learning needs them (in-sample probabilities have memorised the noisy
    labels). Stratified k-fold (scikit-learn's `StratifiedKFold`, shuffled with `seed`): k models,
    each trained on k - 1 folds and scoring the held-out fold.

    Args:
        model: scikit-learn style estimator (fit/predict_proba; cloned for every fold) or a function
            fit_predict(x_train, y_train, x_eval) -> probabilities.
        x: inputs, indexable by an integer array (numpy array, e.g. (N, H, W) images or (N, F) features).
        labels: (N,) integer labels (the possibly noisy ones you want to check).
        folds: k, at least 2.
        seed: shuffles the folds.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"folds={folds}: out-of-fold probabilities need at least 2 folds")
    k = int(labels.max() + 1)
    probs = np.full((len(labels), k), np.nan)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held_out in splitter.split(np.zeros(len(labels)), labels):
        p = _fit_predict(model, x[train], labels[train], x[held_out])
        probs[held_out, : p.shape[1]] = p
    return np.nan_to_num(probs, nan=0.0)


# ----------------------------------------------------------------------------- detection
def label_issues(labels, pred_probs, *, method: str = "confident_learning", n: int | None = None) -> np.ndarray:
    """Return a boolean (N,) array: True for labels flagged as likely wrong.

    Chapter 5.1. "confident_learning" is cleanlab's `find_label_issues` (prune by noise rate, from
    the confident joint). "loss" ranks by cross-entropy of the given label (fastai's "top losses")
    and flags the `n` largest; without `n` it flags as many as cleanlab estimates are wrong, so the two
    rankings can be compared at the same budget.
    """
    from cleanlab.filter import find_label_issues

    labels, pred_probs = np.asarray(labels), np.asarray(pred_probs, dtype=float)
    if method == "confident_learning":
        return find_label_issues(labels, pred_probs)
    if method != "loss":
        raise ValueError(f"method {method!r}: use 'confident_learning' or 'loss'")
    if n is None:
        n = int(find_label_issues(labels, pred_probs).sum())
    loss = -np.log(np.clip(pred_probs[np.arange(len(labels)), labels], 1e-12, 1))
    flagged = np.zeros(len(labels), bool)
    flagged[np.argsort(-loss, kind="stable")[:n]] = True
    return flagged


def estimated_noise_rate(labels, pred_probs) -> float:
    """Return cleanlab's estimate of the share of wrong labels (off-diagonal mass of the joint).

    Chapter 5.1: compare it with the rate you injected.
    """
    from cleanlab.count import estimate_joint

    joint = estimate_joint(np.asarray(labels), np.asarray(pred_probs, dtype=float))
    return float(1 - np.trace(joint))


def detection_scores(flagged, truth) -> dict:
    """Return precision, recall and F1 of the flagged samples against the known wrong ones.

    Chapters 5.1 and 5.3. precision = share of flags that are real errors; recall = share of real
    errors flagged. With nothing flagged, precision is NaN (undefined), not 0.
    """
    flagged, truth = np.asarray(flagged, bool), np.asarray(truth, bool)
    if flagged.shape != truth.shape:
        raise ValueError(f"flagged {flagged.shape} and truth {truth.shape} differ in shape")
    hits = int((flagged & truth).sum())
    precision = hits / flagged.sum() if flagged.any() else float("nan")
    recall = hits / truth.sum() if truth.any() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "flagged": int(flagged.sum()), "errors": int(truth.sum())}


def annotator_quality(labels_multiannotator, pred_probs):
    """Return cleanlab's per-annotator table (quality score, agreement with consensus, worst class).

    Chapter 5.1. `labels_multiannotator` is (N, M): one column per annotator, NaN where an annotator
    did not label a sample. Wraps `cleanlab.multiannotator.get_label_quality_multiannotator` (CROWDLAB).
    """
    import pandas as pd
    from cleanlab.multiannotator import get_label_quality_multiannotator

    table = pd.DataFrame(np.asarray(labels_multiannotator, dtype=float))
    out = get_label_quality_multiannotator(table, np.asarray(pred_probs, dtype=float), verbose=False)
    return out["annotator_stats"].sort_index()


# ----------------------------------------------------------------------------- Paper B's filter
def dice(a, b) -> float:
    """Return MONAI's Dice of two binary masks (1.0 when both are empty)."""
    import torch
    from monai.metrics import compute_dice

    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks of shapes {a.shape} and {b.shape}: resample one onto the other first")
    if not a.any() and not b.any():
        return 1.0
    to = lambda m: torch.from_numpy(m[None, None].astype(np.float32))  # noqa: E731
    return float(compute_dice(to(a), to(b), include_background=True))


def dice_filter(labels: Sequence, references: Sequence, *, threshold: float = 0.8, case_ids=None):
    """Return a DataFrame (dice, flagged) per case: Paper B's filter of suspicious training labels.

    Chapter 5.3. Each training label is compared with a reference for the same case (in Paper B, the
    prediction of a model trained for a few epochs on all the data); labels with Dice below
    `threshold` (Paper B: 0.8) are flagged for a human to look at. Masks are arrays of any shape,
    one pair per case.
    """
    import pandas as pd

    labels, references = list(labels), list(references)
    if len(labels) != len(references):
        raise ValueError(f"{len(labels)} labels but {len(references)} references; pass one of each per case")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold {threshold} must be in (0, 1]")
    ids = list(case_ids) if case_ids is not None else list(range(len(labels)))
    scores = [dice(a, b) for a, b in zip(labels, references)]
    return pd.DataFrame({"dice": scores, "flagged": np.asarray(scores) < threshold},
                        index=pd.Index(ids, name="case"))


# ----------------------------------------------------------------------------- consensus
def majority_vote(masks: Sequence, *, tie: str = "background") -> tuple[np.ndarray, np.ndarray]:
    """Return (consensus, ties): the voxel-wise majority of several raters' binary masks.

    Chapter 5.2 and assignment 5. A voxel is foreground when more than half of the raters say so.
    With an even number of raters a voxel can have exactly half the votes: a tie. `tie` decides it
    ("background" or "foreground"), and `ties` (bool, same shape) says where that happened, so it can
    be reported instead of hidden.
    """
    stack = np.stack([np.asarray(m) > 0 for m in masks])
    if len(stack) < 2:
        raise ValueError("a vote needs at least two raters' masks")
    if tie not in ("background", "foreground"):
        raise ValueError(f"tie={tie!r}: use 'background' or 'foreground'")
    votes, n = stack.sum(0), len(stack)
    ties = 2 * votes == n
    consensus = 2 * votes > n
    if tie == "foreground":
        consensus |= ties
    return consensus, ties


@dataclass
class StapleResult:
    """STAPLE's output: the probability of foreground per voxel, and each rater's estimated quality."""

    probability: np.ndarray
    sensitivity: list
    specificity: list

    def mask(self, threshold: float = 0.5) -> np.ndarray:
        """Return the consensus mask: probability >= threshold (Warfield et al. use 0.5)."""
        return self.probability >= threshold


def staple(masks: Sequence, *, max_iterations: int = 1000) -> StapleResult:
    """Return STAPLE's consensus of several raters' binary masks, via SimpleITK.

    Chapter 5.2 and assignment 5. STAPLE (Warfield et al. 2004) estimates the hidden true mask and,
    at the same time, each rater's sensitivity and specificity by expectation-maximisation: a rater
    who often disagrees with the others counts less. Masks are numpy arrays (any axis order, the same
    for all) or SimpleITK images on the same grid; the probability map has the masks' shape.
    """
    import SimpleITK as sitk

    images = []
    for i, m in enumerate(masks):
        img = m if isinstance(m, sitk.Image) else sitk.GetImageFromArray((np.asarray(m) > 0).astype(np.uint8))
        images.append(sitk.Cast(img > 0, sitk.sitkUInt8))
    if len(images) < 2:
        raise ValueError("STAPLE needs at least two raters' masks")
    if len({img.GetSize() for img in images}) != 1:
        raise ValueError(f"masks have different sizes {[img.GetSize() for img in images]}; resample first")
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1)
    f.SetMaximumIterations(max_iterations)
    prob = sitk.GetArrayFromImage(f.Execute(images))
    if not isinstance(masks[0], sitk.Image):
        prob = prob.reshape(np.asarray(masks[0]).shape)
    return StapleResult(prob, list(f.GetSensitivity()), list(f.GetSpecificity()))


# ----------------------------------------------------------------------------- active learning
def active_learning_curve(model, x_pool, y_pool, x_test, y_test, *, strategy: str = "uncertainty",
                          start: int = 20, step: int = 20, budget: int | None = None, seed: int = 0):
    """Return a DataFrame (n_labels, accuracy) of one seeded active-learning run.

    Chapter 5.3. Start from `start` random labelled samples of the pool; repeatedly train, score the
    unlabelled rest, and "ask the expert" for the labels of the next `step` samples: the least
    confident ones (strategy "uncertainty": smallest top-class probability), those cleanlab's
    `get_active_learning_scores` ranks lowest ("cleanlab"), or random ones ("random"). `y_pool`
    holds the answers the expert would give; the loop only reads the labels it has asked for.

    Args:
        model: scikit-learn style estimator or fit_predict function (as in `out_of_fold_probs`).
        x_pool, y_pool: the unlabelled pool and its (hidden) labels.
        x_test, y_test: a fixed test set; accuracy is measured on it after each round.
        budget: stop at this many labels (default: the whole pool).
    """
    import pandas as pd

    if strategy not in ("uncertainty", "cleanlab", "random"):
        raise ValueError(f"strategy {strategy!r}: use 'uncertainty', 'cleanlab' or 'random'")
    y_pool, y_test = np.asarray(y_pool), np.asarray(y_test)
    budget = min(budget or len(y_pool), len(y_pool))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_pool))
    labelled, rest = list(order[:start]), order[start:]
    rows = []
    while True:
        x_eval = np.concatenate([x_test, x_pool[rest]]) if len(rest) else x_test
        probs = _fit_predict(model, x_pool[labelled], y_pool[labelled], x_eval)
        accuracy = float((probs[: len(y_test)].argmax(1) == y_test).mean())
        rows.append({"n_labels": len(labelled), "accuracy": accuracy})
        if len(labelled) >= budget or not len(rest):
            break
        take = min(step, budget - len(labelled), len(rest))
        p_rest = probs[len(y_test):]
        if strategy == "uncertainty":
            pick = np.argsort(p_rest.max(1), kind="stable")[:take]
        elif strategy == "cleanlab":
            from cleanlab.multiannotator import get_active_learning_scores

            _, scores = get_active_learning_scores(pred_probs_unlabeled=p_rest)
            pick = np.argsort(scores, kind="stable")[:take]
        else:
            pick = rng.choice(len(rest), size=take, replace=False)
        labelled += list(rest[pick])
        rest = np.delete(rest, pick)
    return pd.DataFrame(rows)


def labels_to_reach(curve, target: float) -> float:
    """Return the fewest labels at which a learning curve reaches `target` accuracy (NaN if never)."""
    hit = curve[curve.accuracy >= target]
    return float(hit.n_labels.min()) if len(hit) else float("nan")


# ----------------------------------------------------------------------------- a small image classifier
class SmallCNN:
    """A tiny 2D CNN for 28x28 images with a scikit-learn interface (fit / predict_proba), seeded.

    Chapters 5.1 and 5.3: fast enough on a CPU to be trained dozens of times (k folds, noise rates,
    seeds, active-learning rounds). `loss="gce"` trains with the generalized cross-entropy of
    Zhang & Sabuncu (2018), L = (1 - p_y^q) / q, a noise-robust loss: a sample the model finds very
    unlikely (p_y near 0) costs at most 1/q instead of an unbounded -log p_y, so a wrong label cannot
    dominate the gradient. Inputs are (N, H, W) arrays (any scale; standardised with the training
    mean and SD) and integer labels.
    """

    def __init__(self, *, epochs: int = 20, loss: str = "ce", q: float = 0.7, lr: float = 3e-3,
                 batch_size: int = 64, seed: int = 0):
        if loss not in ("ce", "gce"):
            raise ValueError(f"loss {loss!r}: use 'ce' (cross-entropy) or 'gce' (generalized cross-entropy)")
        self.epochs, self.loss, self.q, self.lr, self.batch_size, self.seed = epochs, loss, q, lr, batch_size, seed

    def get_params(self, deep: bool = True) -> dict:  # lets scikit-learn's `clone` copy it
        return {k: getattr(self, k) for k in ("epochs", "loss", "q", "lr", "batch_size", "seed")}

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def _tensor(self, x):
        import torch

        x = (np.asarray(x, dtype=np.float32) - self.mean_) / self.sd_
        return torch.from_numpy(x[:, None])

    def fit(self, x, y):
        import torch
        from torch import nn

        y = np.asarray(y)
        self.classes_ = np.arange(int(y.max()) + 1)
        self.mean_, self.sd_ = float(np.mean(x)), float(np.std(x)) + 1e-8
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        k = max(2, len(self.classes_))
        self.net_ = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.LazyLinear(k))
        xt, yt = self._tensor(x), torch.from_numpy(y.astype(np.int64))
        self.net_(xt[:1])  # materialise the lazy layer before the optimiser sees the parameters
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=1e-3)
        self.net_.train()
        for _ in range(self.epochs):
            for idx in torch.randperm(len(yt), generator=gen).split(self.batch_size):
                logits = self.net_(xt[idx])
                if self.loss == "ce":
                    loss = nn.functional.cross_entropy(logits, yt[idx])
                else:
                    p_y = logits.softmax(1).gather(1, yt[idx, None]).clamp_min(1e-7)
                    loss = ((1 - p_y ** self.q) / self.q).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    def predict_proba(self, x) -> np.ndarray:
        import torch

        self.net_.eval()
        with torch.inference_mode():
            return self.net_(self._tensor(x)).softmax(1).numpy()

    def predict(self, x) -> np.ndarray:
        return self.predict_proba(x).argmax(1)
