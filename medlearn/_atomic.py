"""Atomic writes: a file (or folder) appears whole under its final name, or not at all.

Every writer in medlearn that must not leave half a file behind (downloads, the data cache, executed
notebooks, generated stand-ins, DICOM files) writes to a temporary name in the same folder, unique to
this process and call, and renames it onto the final name with `os.replace` (atomic on one file
system). Two processes writing the same file never share a temporary name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator


def temporary_sibling(dest: str | os.PathLike, suffix: str = "") -> Path:
    """Return a unique hidden name next to `dest` (same folder, so the final rename is atomic).

    `suffix` keeps an extension some writers need (e.g. ".nii.gz" for nibabel, ".dcm").
    """
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.partial{suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it onto `dest`, on any error delete it.

    Example::

        with atomic_path(out) as tmp:
            tmp.write_text(text)        # or nib.save(img, tmp), ds.save_as(tmp), ...

    The parent folder of `dest` is created. A folder works too: create it at the yielded path;
    `dest` must then not exist or be an empty folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(dest, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {dest}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def atomic_write_text(dest: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Return `dest` after writing `text` to it atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(dest)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    """Return `dest` after writing `data` to it atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a small lock file, created if needed) for the block.

    Uses `fcntl.flock` (Linux, macOS); the lock is released when the block ends or the process
    dies, and the lock file is deleted. Deleting it can let a late third process run alongside a
    waiting second one: harmless for the writers here, which write unique temporary files, verify
    them and rename atomically; the lock only saves doing the work twice. Where fcntl does not
    exist (Windows) it does nothing, for the same reason.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
