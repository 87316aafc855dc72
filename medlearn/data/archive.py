"""Safe extraction of downloaded archives (tar, tar.gz, zip): checked first, written all or nothing.

Before a single byte is written, every member is checked: no absolute path, no `..`, no member
inside a symbolic link, no link (symbolic or hard) pointing out of the target folder, no device or
FIFO, and a total size under a cap (a "zip bomb" is refused; the bytes actually written are counted
too, in case the archive lies about sizes). Members are written one by one by this module, so the
checks hold on every supported Python, with or without tarfile's extraction filters. Extraction goes
into a hidden temporary folder that is renamed onto the target only when complete; any failure
deletes it, so a failed extraction leaves nothing behind. Used by `medlearn.data.load` for the
archived sets (IXI Tiny, MSD Task04).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from medlearn._atomic import temporary_sibling


class UnsafeArchiveError(ValueError):
    """An archive member could write outside the target folder, or the archive is too large."""


def _inside(name: str) -> str:
    """Return the normalised relative path of member `name`, or raise when it could leave the folder."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"absolute path {name!r}")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"path with '..' {name!r}")
    norm = posixpath.normpath(name.replace("\\", "/"))
    if norm in (".", ""):
        return "."
    return norm


def _link_target_inside(member: str, target: str, hard: bool) -> None:
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise UnsafeArchiveError(f"link {member!r} points to the absolute path {target!r}")
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"link {member!r} -> {target!r} points out of the target folder")


def check_members(archive: str | os.PathLike, max_bytes: int) -> int:
    """Return the total uncompressed size after checking every member of `archive` (see the module).

    Raises `UnsafeArchiveError` naming the archive and the first bad member.
    """
    archive = Path(archive)
    total, links = 0, []
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    name = _inside(info.filename)
                    mode = info.external_attr >> 16
                    if stat.S_ISLNK(mode):
                        raise UnsafeArchiveError(f"symbolic link {info.filename!r} (not allowed in a zip)")
                    if any(name == link or name.startswith(link + "/") for link in links):
                        raise UnsafeArchiveError(f"member {name!r} lies inside a link")
                    total += info.file_size
        else:
            with tarfile.open(archive) as t:
                for m in t.getmembers():
                    name = _inside(m.name)
                    if any(name.startswith(link + "/") for link in links):
                        raise UnsafeArchiveError(f"member {name!r} lies inside the link {name.split('/')[0]!r}")
                    if m.issym() or m.islnk():
                        _link_target_inside(name, m.linkname, hard=m.islnk())
                        links.append(name)
                    elif m.isdev() or m.isfifo():
                        raise UnsafeArchiveError(f"device or FIFO member {name!r}")
                    elif not (m.isfile() or m.isdir()):
                        raise UnsafeArchiveError(f"member {name!r} of unsupported type {m.type!r}")
                    total += max(0, m.size)
    except UnsafeArchiveError as err:
        raise UnsafeArchiveError(f"{archive}: refused to extract: {err}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise UnsafeArchiveError(f"{archive} is not a readable tar or zip archive: {err}") from err
    if total > max_bytes:
        raise UnsafeArchiveError(f"{archive}: refused to extract: {total} bytes uncompressed, more "
                                 f"than the cap of {max_bytes} bytes")
    return total


def _copy_capped(src, dst_path: Path, budget: list[int], archive: Path) -> None:
    with open(dst_path, "wb") as out:
        while True:
            block = src.read(1 << 20)
            if not block:
                break
            budget[0] -= len(block)
            if budget[0] < 0:
                raise UnsafeArchiveError(f"{archive}: more bytes than its members declare; extraction stopped")
            out.write(block)


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, *, max_bytes: int | None = None,
                 marker: str | None = None) -> Path:
    """Return `dest` after extracting `archive` into it, all or nothing (see the module docstring).

    max_bytes: cap on the uncompressed size (default: 20 x the archive's size + 1 GiB).
    marker: the name of an empty file written into the folder when it is complete; when `dest`
    already holds it (another process finished first), the existing folder is kept.
    Raises `UnsafeArchiveError` and leaves no file of its own behind.
    """
    archive, dest = Path(archive), Path(dest)
    if max_bytes is None:
        max_bytes = 20 * archive.stat().st_size + 2**30
    check_members(archive, max_bytes)
    budget = [max_bytes]
    tmp = temporary_sibling(dest)
    try:
        tmp.mkdir(parents=True)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    target = tmp / _inside(info.filename)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(info) as src:
                        _copy_capped(src, target, budget, archive)
        else:
            with tarfile.open(archive) as t:
                members = t.getmembers()
                for m in members:
                    if m.isfile():
                        target = tmp / _inside(m.name)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        _copy_capped(t.extractfile(m), target, budget, archive)
                        os.chmod(target, 0o644 | (0o111 if m.mode & 0o100 else 0))
                    elif m.isdir():
                        (tmp / _inside(m.name)).mkdir(parents=True, exist_ok=True)
                for m in members:  # links last, once every regular file exists
                    target = tmp / _inside(m.name)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if m.issym():
                        os.symlink(m.linkname, target)
                    elif m.islnk():
                        os.link(tmp / _inside(m.linkname), target)
        if marker:
            (tmp / marker).touch()
        if dest.exists() and marker and (dest / marker).is_file():
            return dest  # another process completed it first
        if dest.exists():
            shutil.rmtree(dest)  # an incomplete folder from an interrupted older run
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (marker and (dest / marker).is_file()):
                raise
        return dest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
