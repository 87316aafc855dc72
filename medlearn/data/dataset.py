"""`Dataset`: what `load()` returns — files on disk, a DataFrame, arrays, and where they came from."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from medlearn.data.registry import Entry


class Dataset:
    """A loaded data set: `.source` ("real"/"synthetic"), `.name`, `.info`, `.root`, `.df`, `.arrays(split)`.

    `.df` has one row per case (img_path, labels, split, is_val, …; mask_path for segmentation) in
    the layout `fastMONAI.vision_all.MedImageDataLoaders.from_df` reads; it holds the test split
    too, so train on `ds.df[ds.df.split != "test"]`. Introduced on the book page "Data in this book".
    """

    def __init__(self, name: str, info: Entry, source: str, root: Path, provenance: str, *,
                 arrays: dict | None = None, df=None, df_builder: Callable | None = None,
                 size: int | None = None, spacing: tuple | None = None):
        self.name, self.info, self.source, self.root = name, info, source, Path(root)
        self.provenance, self.size, self.spacing = provenance, size, spacing
        self._arrays, self._df, self._df_builder = arrays, df, df_builder

    @property
    def df(self):
        """Return the DataFrame of cases (files are written on first access for array sets)."""
        if self._df is None and self._df_builder is not None:
            self._df = self._df_builder()
        return self._df

    @property
    def is_real(self) -> bool:
        """True for real (patient or phantom) data, False for a synthetic stand-in."""
        return self.source == "real"

    def arrays(self, split: str = "train"):
        """Return `(images, labels)` numpy arrays of a split: 2D (N, H, W), 3D (N, D, H, W); labels (N,)."""
        if self._arrays is None:
            raise TypeError(f"{self.name} is a file-based data set with no arrays; use `.df` (paths) instead")
        if split not in self._arrays:
            raise KeyError(f"no split {split!r} in {self.name}; choose one of {list(self._arrays)}")
        return self._arrays[split]

    def counts(self) -> dict:
        """Return {split: number of cases}."""
        if self._arrays is not None:
            return {s: len(a[1]) for s, a in self._arrays.items()}
        df = self.df
        if df is None or "split" not in df:
            return {}
        return df["split"].value_counts().reindex(["train", "val", "test"], fill_value=0).to_dict()

    def show(self, n: int = 8, split: str = "train", **kwargs):
        """Return the matplotlib figure of `n` cases of a split (via `medlearn.viz.show_grid` when present)."""
        title = kwargs.pop("title", f"{self.info.title} ({'real' if self.is_real else 'SYNTHETIC stand-in'})")
        if self._arrays is not None:
            import numpy as np

            images, labels = self.arrays(split)
            names = np.array([self.info.labels.get(int(v), str(v)) if np.ndim(v) == 0 else str(v) for v in labels])
            data = (images, names)
        else:
            data = self.df[self.df.split == split] if "split" in self.df else self.df
        try:
            from medlearn import viz
        except ImportError:
            viz = None
        if viz is not None and hasattr(viz, "show_grid"):
            return viz.show_grid(data, n=n, title=title, **kwargs)
        return _grid(data, n, title, self.info.labels)

    def __repr__(self) -> str:
        c = self.counts()
        counts = "/".join(str(c.get(s, 0)) for s in ("train", "val", "test")) if c else "?"
        size = f" {self.size}" if self.size else ""
        return f"<Dataset {self.name}{size} {self.source}: {counts} train/val/test at {self.root}>"


def _grid(data, n, title, label_names):
    """A plain matplotlib grid (used only when medlearn.viz is not installed)."""
    import matplotlib.pyplot as plt
    import numpy as np

    images, labels = data if isinstance(data, tuple) else (None, None)
    if images is None:
        raise TypeError("showing a file-based data set needs medlearn.viz")
    n = min(n, len(images))
    fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 1.9), squeeze=False)
    for ax, img, lab in zip(axes[0], images[:n], labels[:n]):
        if img.ndim == 3 and img.shape[-1] != 3:
            img = img[img.shape[0] // 2]
        ax.imshow(img, cmap="gray")
        ax.set_title(label_names.get(int(np.ravel(lab)[0]), str(lab)), fontsize=8)
        ax.set_axis_off()
    fig.suptitle(title)
    return fig
