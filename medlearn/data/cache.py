"""Where data sets live on disk: `$MEDLEARN_DATA`, else `~/.cache/medlearn`.

Every file in the cache got there through an md5-verified, atomic write (a download or
`seed_cache`), so a file that is present is a file that is whole.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Return the data cache folder (created if needed): `override`, `$MEDLEARN_DATA` or `~/.cache/medlearn`.

    Used by every chapter through `medlearn.data.load`; the book page "Data in this book" explains it.
    """
    if override is not None:
        root = Path(override)
    elif os.environ.get("MEDLEARN_DATA"):
        root = Path(os.environ["MEDLEARN_DATA"])
    else:
        root = Path.home() / ".cache" / "medlearn"
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Return the hex md5 digest of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def offline() -> bool:
    """Return True when `MEDLEARN_OFFLINE` is set to a true value (1, true, yes): never touch the network."""
    return os.environ.get("MEDLEARN_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def derived_dir(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Return where derived files for `path` (a folder inside the cache) go: `path` itself, or its
    twin under `$TMPDIR/medlearn-derived` when the cache cannot be written.

    Derived files (one NIfTI/PNG per MedMNIST case, generated stand-ins, IXI brain masks) are
    written once next to the real files. A read-only cache (the grading sandbox, a cache shared
    on a JupyterHub) still serves the real files; what is derived from them is written to a
    private temporary folder instead, with the same relative path. (A derived folder that exists in
    a read-only cache may be incomplete, e.g. only a `fast` subset's cases: it is not used.)
    """
    import tempfile

    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return path
    base = cache_dir(root)
    try:
        rel = path.resolve().relative_to(base)
    except ValueError:
        rel = Path(path.name)
    return Path(tempfile.gettempdir()) / "medlearn-derived" / rel
