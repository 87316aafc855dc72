"""Look at medical images: three planes, montages, overlays, CT windows, grids and a slice viewer.

Introduced in part 2 (CT windows, anatomical planes) and used in every later chapter.

Conventions
-----------
* Volumes are ``(X, Y, Z)`` arrays (the TorchIO/NIfTI voxel order) with ``spacing=(sx, sy, sz)`` in mm.
  Every function also takes a torch tensor ``(C, X, Y, Z)`` (channel 0 is shown), a TorchIO
  ``ScalarImage``/``LabelMap``, a nibabel image, or a path to a NIfTI file; the last three carry
  their own spacing and orientation.
* Planes: *axial* = a slice at fixed Z (X across, Y up), *coronal* = fixed Y (X across, Z up),
  *sagittal* = fixed X (Y across, Z up). When the orientation is known (TorchIO image, nibabel
  image, NIfTI path) the volume is first reoriented to RAS+ so that these names are anatomical and
  the axes are labelled with the direction they point to (neurological display: the patient's right
  on the right of the screen; pass ``radiological=True`` to flip). A bare array is shown as stored
  and the figure says that its orientation is unknown.
* Pixels are drawn in millimetres (``extent``), so every plane has the aspect its voxel spacing gives.
* No pyplot state: every function builds a `matplotlib.figure.Figure` of its own, shows it once in a
  notebook (also when it is not the last line of a cell) and returns it, so ``fig.savefig(...)``
  works and nothing accumulates in ``pyplot``'s figure list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "WINDOWS",
    "apply_window",
    "show_planes",
    "montage",
    "overlay",
    "show_grid",
    "view",
    "widgets_available",
    "Viewer",
]

#: CT window presets, name -> (level, width) in Hounsfield units (part 2, "Hounsfield units and windows").
WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}

_MASK_COLORS = ["#e41a1c", "#377eb8", "#4daf4a", "#ff7f00", "#984ea3", "#ffff33", "#a65628", "#f781bf"]


# --------------------------------------------------------------------------------------------
# display once, without pyplot
# --------------------------------------------------------------------------------------------
_CELL = {"count": 0, "hooked": False}


def _ipython():
    """The running IPython shell or None (never imports IPython when it is not already loaded)."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    return get_ipython()


def _cell_id() -> int:
    """A counter that changes with every executed cell (so a figure shows once per cell)."""
    ip = _ipython()
    if ip is not None and not _CELL["hooked"]:
        def _next_cell(*_args, **_kwargs):
            _CELL["count"] += 1

        ip.events.register("pre_run_cell", _next_cell)
        _CELL["hooked"] = True
    return _CELL["count"]


def _figure_class():
    from matplotlib.figure import Figure

    class VizFigure(Figure):
        """A matplotlib Figure that shows itself once per notebook cell, as a PNG."""

        _medlearn_shown_in: int | None = None

        def _ipython_display_(self):
            cell = _cell_id()
            if self._medlearn_shown_in == cell:
                return  # already shown by the function that made it, in this cell
            self._medlearn_shown_in = cell
            import io

            from IPython.display import display

            buf = io.BytesIO()
            self.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
            display({"image/png": buf.getvalue(), "text/plain": repr(self)}, raw=True)

    return VizFigure


_FIG_CLASS = None


def _new_figure(figsize):
    global _FIG_CLASS
    if _FIG_CLASS is None:
        _FIG_CLASS = _figure_class()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _FIG_CLASS(figsize=figsize, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # a canvas of its own: draws and saves without pyplot
    return fig


def _show(fig):
    """Show `fig` in a running IPython shell (once); do nothing in plain Python. Return it."""
    if _ipython() is not None and hasattr(fig, "_ipython_display_"):
        fig._ipython_display_()
    return fig


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
class _Volume:
    """A 3D numpy array (X, Y, Z) with spacing (mm) and orientation (None when unknown).

    `source_orientation` is the orientation as stored, before any reorientation for display: a bare
    mask array that belongs to this volume is taken to be stored the same way.
    """

    def __init__(self, array: np.ndarray, spacing, orientation: str | None, note: str = "",
                 source_orientation: str | None = None):
        self.array = array
        self.spacing = tuple(float(s) for s in spacing)
        self.orientation = orientation
        self.note = note
        self.source_orientation = source_orientation


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor (also fastMONAI MedImage)
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _load(x: Any) -> tuple[np.ndarray, tuple | None, str | None]:
    """Return (array, spacing or None, orientation or None) from any supported input."""
    if isinstance(x, (str, Path)):
        p = Path(x)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such image file; pass an existing NIfTI path or an array")
        import nibabel as nib

        x = nib.load(str(p))
    # TorchIO Image: .data (C, X, Y, Z), .spacing, .orientation
    if hasattr(x, "data") and hasattr(x, "spacing") and hasattr(x, "orientation") and hasattr(x, "affine"):
        return _as_numpy(x.data), tuple(x.spacing), "".join(x.orientation)
    # nibabel image
    if hasattr(x, "get_fdata") and hasattr(x, "affine"):
        import nibabel as nib

        arr = np.asanyarray(x.dataobj)
        zooms = x.header.get_zooms()[:3]
        return arr, tuple(zooms), "".join(nib.aff2axcodes(x.affine))
    return _as_numpy(x), None, None


def _squeeze_channels(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 4:
        if arr.shape[0] > 8 and arr.shape[-1] <= 8:  # (X, Y, Z, C) as nibabel stores 4D
            arr = arr[..., 0]
        else:  # (C, X, Y, Z) as TorchIO/MONAI/fastMONAI store it: show channel 0
            arr = arr[0]
    if arr.ndim == 5 and arr.shape[0] == 1:
        arr = arr[0, 0]
    if arr.ndim != 3:
        raise ValueError(
            f"{what}: expected a 3D volume (X, Y, Z) or (C, X, Y, Z), got shape {arr.shape}; "
            "for a 2D image use viz.overlay(img2d) or viz.show_grid"
        )
    return arr


def _to_ras(arr: np.ndarray, spacing, orientation: str) -> tuple[np.ndarray, tuple]:
    import nibabel.orientations as nio

    src = nio.axcodes2ornt(tuple(orientation))
    dst = nio.axcodes2ornt(("R", "A", "S"))
    tr = nio.ornt_transform(src, dst)
    out = nio.apply_orientation(arr, tr)
    new_spacing = [0.0, 0.0, 0.0]
    for i, (axis, _flip) in enumerate(tr):
        new_spacing[int(axis)] = spacing[i]
    return out, tuple(new_spacing)


def _volume(x: Any, spacing=None, what: str = "vol", reorient: bool = True, orientation: str | None = None) -> _Volume:
    if isinstance(x, _Volume):
        return x if spacing is None else _Volume(x.array, spacing, x.orientation, x.note, x.source_orientation)
    arr, sp, orient = _load(x)
    if orientation is not None:
        orientation = "".join(orientation).upper()
        # one letter from each pair, in any order: RAS, LPS, ASL, ...
        if len(orientation) != 3 or any(sum(c in pair for c in orientation) != 1 for pair in ("RL", "AP", "SI")):
            raise ValueError(f"{what}: orientation {orientation!r} is not an axis code like 'RAS' or 'LPS'")
        orient = orientation
    source = orient
    arr = _squeeze_channels(np.asarray(arr), what)
    if spacing is None:
        spacing = sp if sp is not None else (1.0, 1.0, 1.0)
    if len(spacing) != 3:
        raise ValueError(f"{what}: spacing must have three values (sx, sy, sz) in mm, got {spacing}")
    note = ""
    if orient is not None and reorient and orient != "RAS":
        arr, spacing = _to_ras(arr, spacing, orient)
        note = f"reoriented {orient} → RAS for display"
        orient = "RAS"
    return _Volume(arr, spacing, orient, note, source)


def _companion(x: Any, vol: _Volume, what: str) -> np.ndarray | None:
    """A mask/probability volume aligned with `vol` (reoriented the same way when needed)."""
    if x is None:
        return None
    arr, _sp, orient = _load(x)
    arr = _squeeze_channels(np.asarray(arr), what)
    # a mask with its own affine is reoriented from its own orientation; a bare array is taken to be
    # stored like the image it belongs to
    orient = orient or vol.source_orientation
    if vol.orientation == "RAS" and orient is not None and orient != "RAS":
        arr, _ = _to_ras(arr, (1, 1, 1), orient)
    if arr.shape != vol.array.shape:
        raise ValueError(f"{what}: shape {arr.shape} differs from the image's {vol.array.shape}; "
                         "resample the mask onto the image grid first (e.g. torchio.Resample)")
    return arr


def _is_mask_dict(mask) -> bool:
    """A dict of named masks (a TorchIO image is a dict too, but carries an affine)."""
    return isinstance(mask, Mapping) and not hasattr(mask, "affine")


def _masks(mask: Any, vol: _Volume) -> dict[str, np.ndarray]:
    if mask is None:
        return {}
    if _is_mask_dict(mask):
        return {str(k): _companion(v, vol, f"mask {k!r}") for k, v in mask.items()}
    return {"mask": _companion(mask, vol, "mask")}


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------
def _resolve_window(window, data: np.ndarray | None = None) -> tuple[float, float]:
    if window is None:
        if data is None or data.size == 0:
            return 0.5, 1.0
        lo, hi = np.percentile(data[np.isfinite(data)], [0.5, 99.5])
        if hi <= lo:
            hi = lo + 1.0
        return (lo + hi) / 2.0, hi - lo
    if isinstance(window, str):
        key = window.lower().replace(" ", "_").replace("-", "_")
        if key not in WINDOWS:
            raise KeyError(f"unknown window {window!r}; choose one of {sorted(WINDOWS)} or pass (level, width)")
        return WINDOWS[key]
    level, width = window
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return float(level), float(width)


def apply_window(hu, window) -> np.ndarray:
    """Return `hu` mapped to floats in [0, 1]: level − width/2 → 0, level + width/2 → 1, clipped.

    Part 2 ("Hounsfield units and windows"). `window` is a name from `WINDOWS` ("lung",
    "mediastinum", "soft_tissue", "bone", "brain") or a ``(level, width)`` pair in HU.

    >>> apply_window(np.array([-1000., 40., 1000.]), "brain")
    array([0. , 0.5, 1. ])
    """
    level, width = _resolve_window(window)
    arr = _as_numpy(hu).astype(np.float64)
    return np.clip((arr - (level - width / 2.0)) / width, 0.0, 1.0)


def _window_label(window) -> str:
    if window is None:
        return "auto window (0.5–99.5 percentile)"
    level, width = _resolve_window(window)
    name = f"{window} " if isinstance(window, str) else ""
    return f"{name}window L={level:g} W={width:g}"


# --------------------------------------------------------------------------------------------
# overlays
# --------------------------------------------------------------------------------------------
def _draw_masks(ax, masks: dict[str, np.ndarray], extent, alpha: float, legend: bool = True):
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    handles = []
    ci = 0
    if len(masks) > 1:  # several raters on one slice: mostly contours, a faint fill
        alpha = alpha / 2
    for name, m in masks.items():
        m = np.asarray(m)
        labels = [v for v in np.unique(m) if v != 0 and np.isfinite(v)]
        if m.dtype.kind == "f" and len(labels) > 8:  # a soft mask: treat > 0.5 as inside
            m = (m > 0.5).astype(np.uint8)
            labels = [1] if m.any() else []
        for v in labels:
            color = _MASK_COLORS[ci % len(_MASK_COLORS)]
            ci += 1
            inside = (m == v)
            if not inside.any():
                continue
            fill = np.ma.masked_where(~inside.T, np.ones(inside.T.shape))
            ax.imshow(fill, cmap=ListedColormap([color]), alpha=alpha, origin="lower", extent=extent,
                      interpolation="nearest", vmin=0, vmax=1)
            if inside.shape[0] > 1 and inside.shape[1] > 1:
                ax.contour(inside.T.astype(float), levels=[0.5], colors=[color], linewidths=1.0,
                           origin="lower", extent=extent)
            label = name if len(labels) == 1 else f"{name} = {v:g}"
            handles.append(Patch(facecolor=color, edgecolor=color, alpha=max(alpha, 0.6), label=label))
    if legend and handles:
        ax.legend(handles=handles, loc="upper right", fontsize="x-small", framealpha=0.7)
    return handles


def _draw_prob(ax, prob2d, extent, alpha: float, threshold: float = 0.05):
    shown = np.ma.masked_where(prob2d.T < threshold, prob2d.T)
    return ax.imshow(shown, cmap="inferno", alpha=alpha, origin="lower", extent=extent, vmin=0.0, vmax=1.0,
                     interpolation="nearest")


def overlay(img2d, mask=None, prob=None, alpha: float = 0.4, ax=None, window=None, spacing=(1.0, 1.0),
            title: str | None = None, legend: bool = True, prob_label: str = "probability"):
    """Return the Figure with a 2D image and its mask (fill + contour, legend) and/or probability map.

    Parts 3–5 (Grad-CAM heat maps, predicted vs reference masks, raters compared). `img2d` is
    (X, Y) (drawn with X across, Y up) or any 2D array/tensor; `mask` is a label image of the same
    shape, or a dict ``{"rater 1": m1, "auto": m2}`` drawn in different colours; `prob` is a map in
    [0, 1] drawn with a colour bar labelled `prob_label` (e.g. "Grad-CAM (normalised)"). Pass `ax` to
    draw into your own axes (nothing is shown then).
    """
    img = np.squeeze(_as_numpy(img2d)).astype(np.float64)
    if img.ndim != 2:
        raise ValueError(f"overlay: expected a 2D image, got shape {img.shape}; take a slice first, "
                         "e.g. vol[:, :, vol.shape[2] // 2], or use viz.show_planes for a volume")
    own = ax is None
    if own:
        fig = _new_figure((4.5, 4.5))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    extent = (0, img.shape[0] * spacing[0], 0, img.shape[1] * spacing[1])
    level, width = _resolve_window(window, img)
    ax.imshow(img.T, cmap="gray", origin="lower", extent=extent, vmin=level - width / 2, vmax=level + width / 2,
              interpolation="nearest")
    if mask is not None:
        masks = mask if _is_mask_dict(mask) else {"mask": mask}
        masks = {k: np.squeeze(_as_numpy(v)) for k, v in masks.items()}
        for k, v in masks.items():
            if v.shape != img.shape:
                raise ValueError(f"overlay: mask {k!r} has shape {v.shape}, image {img.shape}; they must match")
        _draw_masks(ax, masks, extent, alpha, legend=legend)
    if prob is not None:
        p = np.squeeze(_as_numpy(prob)).astype(np.float64)
        if p.shape != img.shape:
            raise ValueError(f"overlay: prob has shape {p.shape}, image {img.shape}; they must match")
        im = _draw_prob(ax, p, extent, alpha)
        fig.colorbar(im, ax=ax, shrink=0.7, label=prob_label)
    ax.set_xlabel("x (mm)" if tuple(spacing) != (1.0, 1.0) else "x (pixels)")
    ax.set_ylabel("y (mm)" if tuple(spacing) != (1.0, 1.0) else "y (pixels)")
    if title:
        ax.set_title(title)
    return _show(fig) if own else fig


# --------------------------------------------------------------------------------------------
# planes and montages
# --------------------------------------------------------------------------------------------
_PLANES = {
    # name: (array axis sliced, (across axis, up axis))
    "axial": (2, (0, 1)),
    "coronal": (1, (0, 2)),
    "sagittal": (0, (1, 2)),
}
_RAS_NAMES = ("R", "A", "S")


def _plane(arr: np.ndarray, plane: str, index: int) -> np.ndarray:
    axis = _PLANES[plane][0]
    return np.take(arr, index, axis=axis)


def _axis_label(axis: int, orientation: str | None) -> str:
    name = "XYZ"[axis]
    if orientation:
        return f"{name} (mm) → {orientation[axis]}"
    return f"{name} (mm)"


def _draw_plane(ax, vol: _Volume, plane: str, index: int, level: float, width: float, masks, prob, alpha,
                radiological: bool, legend: bool):
    sliced_axis, (a0, a1) = _PLANES[plane]
    img = _plane(vol.array, plane, index)
    sp = vol.spacing
    extent = (0, img.shape[0] * sp[a0], 0, img.shape[1] * sp[a1])
    ax.imshow(img.T.astype(np.float64), cmap="gray", origin="lower", extent=extent,
              vmin=level - width / 2, vmax=level + width / 2, interpolation="nearest", aspect="equal")
    if masks:
        _draw_masks(ax, {k: _plane(m, plane, index) for k, m in masks.items()}, extent, alpha, legend=legend)
    im = None
    if prob is not None:
        im = _draw_prob(ax, _plane(prob, plane, index), extent, alpha)
    where = "XYZ"[sliced_axis]
    ax.set_title(f"{plane} ({where} = {index})" if vol.orientation else f"{plane}? ({where} = {index})",
                 fontsize="medium")
    ax.set_xlabel(_axis_label(a0, vol.orientation))
    ax.set_ylabel(_axis_label(a1, vol.orientation))
    if radiological and plane in ("axial", "coronal"):
        ax.invert_xaxis()
    return im


def _orientation_line(vol: _Volume, radiological: bool) -> str:
    sp = "×".join(f"{s:.2g}" for s in vol.spacing)
    shape = "×".join(str(s) for s in vol.array.shape)
    if vol.orientation:
        how = ("radiological (patient's right on screen left)" if radiological
               else "neurological (patient's right on screen right)")
        extra = f"; {vol.note}" if vol.note else ""
        return f"{shape} voxels, spacing {sp} mm\nRAS+ axes, {how}{extra}"
    return f"{shape} voxels, spacing {sp} mm\norientation unknown: array axes (X, Y, Z) shown as stored"


def show_planes(vol, spacing=None, mask=None, prob=None, window=None, title: str | None = None,
                slices: Sequence[int] | None = None, alpha: float = 0.4, radiological: bool = False,
                orientation: str | None = None, prob_label: str = "probability"):
    """Return the Figure with axial, coronal and sagittal slices of `vol`, each with its true aspect.

    Part 2 (anatomical planes, voxel spacing) and parts 3–4 (a nodule, a head and its mask).
    `vol`: (X, Y, Z) array, (C, X, Y, Z) tensor, TorchIO image, nibabel image or NIfTI path;
    `spacing` (sx, sy, sz) in mm overrides what the input carries; `mask`: a label volume or a dict
    of them (``{"rater 1": m1, "rater 2": m2}``); `prob`: a map in [0, 1] (a probability, or a
    normalised heat map) with a colour bar labelled `prob_label`;
    `window`: a `WINDOWS` name or (level, width), default the 0.5–99.5 percentile range;
    `slices`: (i, j, k) voxel indices (default the centre, or the mask's centre of mass);
    `orientation`: the axis codes of a bare array (e.g. "LPS" for a DICOM-built volume), so that it is
    reoriented and labelled; inputs with an affine carry their own. `slices` index the displayed (RAS) grid.
    """
    v = _volume(vol, spacing, "vol", orientation=orientation)
    masks = _masks(mask, v)
    p = _companion(prob, v, "prob")
    level, width = _resolve_window(window, v.array)
    idx = _default_slices(v.array, masks, slices)
    fig = _new_figure((11.5, 4.2))
    axes = fig.subplots(1, 3)
    im = None
    for ax, plane, i in zip(axes, ("axial", "coronal", "sagittal"), (idx[2], idx[1], idx[0])):
        im = _draw_plane(ax, v, plane, int(i), level, width, masks, p, alpha, radiological,
                         legend=(plane == "sagittal")) or im
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label=prob_label)
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}{_orientation_line(v, radiological)} · {_window_label(window)}", fontsize="medium")
    return _show(fig)


def _default_slices(arr: np.ndarray, masks: dict, slices) -> tuple[int, int, int]:
    if slices is not None:
        if len(slices) != 3:
            raise ValueError(f"slices must be three voxel indices (i, j, k), got {slices}")
        return tuple(int(np.clip(s, 0, n - 1)) for s, n in zip(slices, arr.shape))
    for m in masks.values():
        nz = np.argwhere(np.asarray(m) > 0)
        if len(nz):
            return tuple(int(c) for c in np.round(nz.mean(axis=0)))
    return tuple(n // 2 for n in arr.shape)


def montage(vol, axis: int = 2, n: int = 12, mask=None, spacing=None, window=None, ncols: int | None = None,
            title: str | None = None, alpha: float = 0.4, prob=None, orientation: str | None = None):
    """Return the Figure with `n` evenly spaced slices of `vol` along `axis` (2: axial), true aspect.

    Part 2 (scrolling through a series) and part 4 (a mask checked slice by slice).
    Inputs as for `show_planes`; `mask` may be a dict of masks drawn in different colours.
    """
    v = _volume(vol, spacing, "vol", orientation=orientation)
    masks = _masks(mask, v)
    p = _companion(prob, v, "prob")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis}")
    plane = {2: "axial", 1: "coronal", 0: "sagittal"}[axis]
    size = v.array.shape[axis]
    n = max(1, min(int(n), size))
    idx = np.unique(np.linspace(0, size - 1, n + 2)[1:-1].round().astype(int)) if n < size else np.arange(size)
    ncols = ncols or min(len(idx), 6)
    nrows = int(np.ceil(len(idx) / ncols))
    level, width = _resolve_window(window, v.array)
    fig = _new_figure((2.2 * ncols, 2.3 * nrows + 0.5))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for k, ax in enumerate(axes):
        if k >= len(idx):
            ax.set_axis_off()
            continue
        _draw_plane(ax, v, plane, int(idx[k]), level, width, masks, p, alpha, False, legend=(k == 0))
        ax.set_title(f"{'XYZ'[axis]} = {idx[k]}", fontsize="small")
        if k % ncols:
            ax.set_ylabel("")
        if k < len(idx) - ncols:
            ax.set_xlabel("")
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}{plane} montage · {_orientation_line(v, False)} · {_window_label(window)}",
                 fontsize="medium")
    return _show(fig)


# --------------------------------------------------------------------------------------------
# grids
# --------------------------------------------------------------------------------------------
def _read_any(path) -> tuple[np.ndarray, tuple | None]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: image listed in the DataFrame does not exist; regenerate or reload the data set")
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz", ".mha", ".mhd", ".nrrd")):
        if name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            img = nib.load(str(p))
            vol = _volume(img, None, str(p))
            return vol.array, vol.spacing
        import SimpleITK as sitk

        img = sitk.ReadImage(str(p))
        return np.transpose(sitk.GetArrayFromImage(img)), tuple(img.GetSpacing())
    if name.endswith(".npy"):
        return np.load(p), None
    if name.endswith(".npz"):
        with np.load(p) as z:
            return z[list(z.keys())[0]], None
    import matplotlib.image as mpimg

    arr = mpimg.imread(str(p))
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1)
    return np.asarray(arr).T, None  # image rows are Y (down); (X, Y) after transpose


def _middle(arr: np.ndarray) -> np.ndarray:
    arr = np.squeeze(arr)
    if arr.ndim == 3:
        return arr[:, :, arr.shape[2] // 2]
    if arr.ndim != 2:
        raise ValueError(f"show_grid: cannot show an item of shape {arr.shape}; expected 2D or 3D")
    return arr


def show_grid(df_or_arrays, n: int = 8, ncols: int = 4, label_col: str = "labels", window=None,
              title: str | None = None, images_are_yx: bool = True, seed: int | None = None,
              mask_col: str | None = None):
    """Return the Figure with a grid of `n` images and their labels, like fastai's ``show_batch``.

    Part 1 (first look at MedMNIST) and parts 3–4 (the nodules and heads DataFrames).
    `df_or_arrays`: a DataFrame with ``img_path`` (NIfTI, PNG, NPY) and a `label_col`; or a pair
    ``(images, labels)``; or an array of images (N, H, W) / (N, D, H, W) / (N, C, ...). 3D items show
    their middle slice along the last axis. MedMNIST arrays are (N, H, W) in image order (rows down),
    kept as such when `images_are_yx` (default); NIfTI files are (X, Y, Z). `seed`: draw a random sample.
    """
    items: list[tuple[np.ndarray, str, np.ndarray | None, tuple]] = []
    if hasattr(df_or_arrays, "iloc") and hasattr(df_or_arrays, "columns"):
        df = df_or_arrays
        if "img_path" not in df.columns:
            raise KeyError(f"show_grid: the DataFrame has no 'img_path' column (columns: {list(df.columns)})")
        rows = df.sample(min(n, len(df)), random_state=seed) if seed is not None else df.head(n)
        for _, row in rows.iterrows():
            arr, sp = _read_any(row["img_path"])
            img = _middle(arr)
            sp = tuple(sp[:2]) if sp is not None else (1.0, 1.0)
            m = None
            if mask_col and isinstance(row.get(mask_col), (str, Path)):
                m = _middle(_read_any(row[mask_col])[0])
            label = str(row[label_col]) if label_col in df.columns else Path(row["img_path"]).name
            items.append((img, label, m, sp))
    else:
        labels = None
        images = df_or_arrays
        if isinstance(df_or_arrays, tuple) and len(df_or_arrays) == 2:
            images, labels = df_or_arrays
        images = _as_numpy(images) if not isinstance(images, list) else [_as_numpy(i) for i in images]
        count = len(images)
        order = np.arange(count)
        if seed is not None:
            order = np.random.default_rng(seed).permutation(count)
        for i in order[:n]:
            img = np.squeeze(np.asarray(images[i]))
            if img.ndim == 3 and img.shape[0] <= 4 and img.shape[-1] > 4:  # (C, H, W): channel 0
                img = img[0]
            img = _middle(img)
            if images_are_yx:
                img = img[::-1].T  # rows down → (X, Y) with Y up, so it looks as in the file
            lab = "" if labels is None else str(np.squeeze(_as_numpy(labels[i])))
            items.append((img, lab, None, (1.0, 1.0)))
    if not items:
        raise ValueError("show_grid: nothing to show (empty DataFrame or array)")
    ncols = max(1, min(ncols, len(items)))
    nrows = int(np.ceil(len(items) / ncols))
    fig = _new_figure((2.4 * ncols, 2.5 * nrows + 0.4))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (img, lab, m, sp) in zip(axes, items):
        overlay(img, mask=m, ax=ax, window=window, legend=False, spacing=sp)
        ax.set_title(lab, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    for ax in axes[len(items):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _show(fig)


# --------------------------------------------------------------------------------------------
# interactive viewer
# --------------------------------------------------------------------------------------------
def widgets_available() -> tuple[bool, str]:
    """Return (True/False, why): whether `view` builds ipywidgets here or draws a static figure.

    Decided without guessing at the front end, in this order:
    1. ``MEDLEARN_WIDGETS=1`` / ``0`` in the environment forces it on / off;
    2. no IPython kernel (plain Python, terminal IPython) → static;
    3. Google Colab → widgets (ipywidgets 7 front end);
    4. a kernel started by a Jupyter server (jupyter_server ≥ 2, i.e. JupyterLab 4 / Notebook 7, sets
       ``JPY_SESSION_NAME``) or by VS Code (``VSCODE_PID`` or ``__vsc_ipynb_file__``) → widgets;
    5. anything else (papermill, nbclient, the Jupyter Book build, nbgrader) → static, because no
       one is there to move a slider and an unrendered widget would leave an empty output.

    Asking the kernel whether a front end is connected is unreliable (papermill's kernel has a client
    too), so this looks only at who started the kernel. A runner started from inside a Jupyter kernel
    inherits ``JPY_SESSION_NAME``: such runners should set ``MEDLEARN_WIDGETS=0``.
    """
    env = os.environ.get("MEDLEARN_WIDGETS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True, "MEDLEARN_WIDGETS=1"
    if env in ("0", "false", "no", "off"):
        return False, "MEDLEARN_WIDGETS=0"
    ip = _ipython()
    if ip is None or not hasattr(ip, "kernel"):
        return False, "no Jupyter kernel"
    if "google.colab" in sys.modules:
        return True, "Google Colab"
    if os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID") or "__vsc_ipynb_file__" in getattr(
            ip, "user_ns", {}):
        return True, "kernel started by a Jupyter front end"
    return False, "kernel without an interactive front end (papermill, book build)"


class Viewer:
    """What `view` returns: ``.widget`` (an ipywidgets box, or None) and ``.figure`` (the static view).

    ``.state`` holds the widget controls and the last rendered figure (for tests and the curious).
    """

    def __init__(self, widget=None, figure=None, reason: str = ""):
        self.state: dict = {}
        self.widget = widget
        self.figure = figure
        self.reason = reason
        self._shown_in: int | None = None

    def _ipython_display_(self):
        cell = _cell_id()
        if self._shown_in == cell:
            return
        self._shown_in = cell
        from IPython.display import display

        if self.widget is not None:
            display(self.widget)
        elif self.figure is not None:
            self.figure._medlearn_shown_in = None
            self.figure._ipython_display_()

    def __repr__(self):
        kind = "widgets" if self.widget is not None else "static figure"
        return f"<medlearn Viewer: {kind} ({self.reason})>"


def view(vol, spacing=None, mask=None, window=None, backend: str = "widgets", title: str | None = None,
         orientation: str | None = None):
    """Return a `Viewer`: sliders for plane, slice, window/level and overlay opacity, or a static figure.

    Part 2 (scroll through a CT) and part 5 (review a mask). Works with ipywidgets 7.7 (Colab) and
    8.x (JupyterLab 4): it uses only ``interactive_output``, ``Dropdown``, ``IntSlider``,
    ``FloatSlider``, ``Output``, ``HBox`` and ``VBox``. Where no widget front end exists (see
    `widgets_available`) it shows three planes at the centre slices and says so in one line.
    ``backend="itk"`` returns an itkwidgets viewer when itkwidgets is installed (never in executed
    notebooks: it needs a browser).
    """
    if backend == "itk":
        try:
            import itkwidgets
        except ImportError as err:
            raise ImportError('backend="itk" needs itkwidgets: pip install "medlearn[viewer]" '
                              '(or use the default backend="widgets")') from err
        v = _volume(vol, spacing, "vol", reorient=False)
        kw = {"image": v.array.T.copy()}  # itk expects (Z, Y, X)
        if mask is not None:
            kw["label_image"] = np.asarray(_companion(mask, v, "mask")).T.copy()
        return itkwidgets.view(**kw)
    if backend != "widgets":
        raise ValueError(f'backend must be "widgets" or "itk", got {backend!r}')

    v = _volume(vol, spacing, "vol", orientation=orientation)
    masks = _masks(mask, v)
    on, reason = widgets_available()
    if not on:
        print(f"medlearn.viz.view: static figure ({reason}); open the notebook in Jupyter or Colab "
              "for the interactive viewer (or set MEDLEARN_WIDGETS=1)")
        fig = show_planes(v, mask=masks or None, window=window,
                          title=(title or "") + (" · static view" if title else "static view"))
        viewer = Viewer(figure=fig, reason=reason)
        viewer._shown_in = _cell_id() if _ipython() is not None else None
        return viewer

    widget, state = _build_widget(v, masks, window, title)
    viewer = Viewer(widget=widget, reason=reason)
    viewer.state = state
    if _ipython() is not None:
        viewer._ipython_display_()
    return viewer


def _build_widget(v: _Volume, masks: dict, window, title):
    import ipywidgets as w
    from IPython.display import display

    level0, width0 = _resolve_window(window, v.array)
    lo, hi = float(np.nanmin(v.array)), float(np.nanmax(v.array))
    span = max(hi - lo, 1e-6)
    plane = w.Dropdown(options=["axial", "coronal", "sagittal"], value="axial", description="plane")
    index = w.IntSlider(value=v.array.shape[2] // 2, min=0, max=v.array.shape[2] - 1, description="slice",
                        continuous_update=False)
    level = w.FloatSlider(value=level0, min=lo - span, max=hi + span, step=span / 200, description="level",
                          continuous_update=False)
    width = w.FloatSlider(value=width0, min=span / 200, max=3 * span, step=span / 200, description="width",
                          continuous_update=False)
    opacity = w.FloatSlider(value=0.4, min=0.0, max=1.0, step=0.05, description="opacity",
                            continuous_update=False, disabled=not masks)
    presets = w.Dropdown(options=["(custom)"] + list(WINDOWS), value="(custom)", description="CT window")

    def _on_plane(change):
        axis = _PLANES[change["new"]][0]
        index.max = v.array.shape[axis] - 1
        index.value = v.array.shape[axis] // 2

    def _on_preset(change):
        if change["new"] in WINDOWS:
            lv, wd = WINDOWS[change["new"]]
            width.max = max(width.max, wd)
            level.min, level.max = min(level.min, lv), max(level.max, lv)
            level.value, width.value = lv, wd

    plane.observe(_on_plane, names="value")
    presets.observe(_on_preset, names="value")

    state = {"figure": None, "renders": 0, "controls": {"plane": plane, "index": index, "level": level,
                                                        "width": width, "opacity": opacity, "preset": presets}}

    def _render(plane, index, level, width, opacity):
        fig = _new_figure((5, 5))
        ax = fig.add_subplot(1, 1, 1)
        idx = min(index, v.array.shape[_PLANES[plane][0]] - 1)
        _draw_plane(ax, v, plane, idx, level, width, masks, None, opacity, False, legend=True)
        if title:
            fig.suptitle(title)
        state["figure"], state["renders"] = fig, state["renders"] + 1
        if _ipython() is None:
            return  # no shell to display into (forced on in plain Python, e.g. tests)
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        display({"image/png": buf.getvalue(), "text/plain": f"{plane} slice {idx}"}, raw=True)

    out = w.interactive_output(_render, {"plane": plane, "index": index, "level": level, "width": width,
                                         "opacity": opacity})
    controls = w.VBox([plane, index, presets, level, width, opacity])
    return w.HBox([controls, out]), state
