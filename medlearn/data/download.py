"""Checksummed, atomic downloads: a file lands in the cache whole and verified, or not at all.

The bytes stream into a temporary file unique to this process and call (`medlearn._atomic`) while
their md5 is computed; only when the md5 matches is it renamed onto the final name with `os.replace`
(atomic on one file system). Any interruption, timeout or mismatch removes it. Two processes that
want the same file take turns on a lock file (`.<file>.lock`, `fcntl.flock`): the second finds the
verified file the first wrote and does not download it again. Network errors are retried with
exponential backoff; a checksum mismatch is not retried (the server gave a different file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from medlearn._atomic import file_lock, temporary_sibling
from medlearn.data.cache import md5sum

USER_AGENT = "medlearn (https://github.com/medlearn-course/medlearn)"


class DownloadError(RuntimeError):
    """The file could not be fetched; the message names the URL, the expected path and md5, and how to seed."""


class ChecksumError(RuntimeError):
    """A file's md5 is not one we accept; nothing was written to the cache."""


def seed_hint(url: str, dest: Path, md5: str) -> str:
    """Return the instructions for putting a file into the cache by hand."""
    return (
        f"  URL:           {url}\n"
        f"  expected file: {dest}\n"
        f"  expected md5:  {md5}\n"
        "Fix: connect to the network and retry; or download the file elsewhere and copy it to the expected "
        "path (it is md5-checked on use); or, with a folder of the course's sample data, run "
        "`medlearn seed-cache DIR` (Python: medlearn.data.seed_cache(DIR)). "
        "Set MEDLEARN_DATA to use another cache folder."
    )


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def download(url: str, dest: str | os.PathLike, md5: str, *, accepted: dict[str, str] | None = None,
             size: int | None = None, retries: int = 3, backoff: float = 1.0, timeout: float = 30.0,
             progress: bool = True) -> Path:
    """Return `dest` after downloading `url` to it, md5-verified and atomically renamed.

    `accepted` maps further md5s we accept to a note (documented mirrors). Raises `ChecksumError`
    on a mismatch and `DownloadError` once `retries` attempts failed; in both cases no file and
    no temporary file is left behind. Another process downloading the same `dest` at the same time
    is waited for, and its verified file is used. Used by `medlearn.data.load` (book page "Data in
    this book").
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ok = {md5.lower(): "official file", **{k.lower(): v for k, v in (accepted or {}).items()}}
    with file_lock(dest.with_name(f".{dest.name}.lock")):
        if dest.is_file() and md5sum(dest) in ok:
            return dest  # another process finished it while this one waited
        return _download(url, dest, md5, ok, size=size, retries=retries, backoff=backoff,
                         timeout=timeout, progress=progress)


def _download(url: str, dest: Path, md5: str, ok: dict, *, size, retries, backoff, timeout,
              progress) -> Path:
    from tqdm.auto import tqdm

    part = temporary_sibling(dest)
    last_error: BaseException | None = None
    for attempt in range(1, max(1, retries) + 1):
        digest = hashlib.md5()
        received = 0
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else size
                with open(part, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                                   desc=dest.name, disable=not progress, leave=False) as bar:
                    while True:
                        block = response.read(1 << 16)
                        if not block:
                            break
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
                if length and length.isdigit() and received != int(length):
                    raise urllib.error.ContentTooShortError(
                        f"got {received} of {length} bytes from {url}", None)
            got = digest.hexdigest()
            if got not in ok:
                _remove(part)
                raise ChecksumError(
                    f"md5 mismatch for {url}: got {got} ({received} bytes), expected {md5}"
                    + (f" or one of {sorted(set(ok) - {md5.lower()})}" if len(ok) > 1 else "")
                    + f". Nothing was written to {dest}. The server sent a different file; check the URL "
                      "or report it to the course maintainers.")
            os.replace(part, dest)
            return dest
        except ChecksumError:
            raise
        except (urllib.error.URLError, OSError, socket.timeout, ConnectionError, ValueError) as err:
            # http.client.IncompleteRead is an HTTPException, not an OSError: caught below.
            last_error = err
        except Exception as err:  # noqa: BLE001  (http.client.HTTPException and friends)
            import http.client

            if not isinstance(err, http.client.HTTPException):
                _remove(part)
                raise
            last_error = err
        except BaseException:  # KeyboardInterrupt: leave nothing behind, then stop
            _remove(part)
            raise
        _remove(part)
        if isinstance(last_error, urllib.error.HTTPError) and 400 <= last_error.code < 500 and last_error.code != 429:
            break  # 404 and friends will not heal with a retry
        if attempt < retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    _remove(part)
    raise DownloadError(f"could not download {dest.name} after {retries} attempt(s): {last_error}\n"
                        + seed_hint(url, dest, md5)) from last_error


def install_file(src: str | os.PathLike, dest: str | os.PathLike, accepted: dict[str, str]) -> str:
    """Return the md5 after copying `src` to `dest` atomically, refusing a file whose md5 is not accepted.

    Used by `seed_cache`; raises `ChecksumError` naming the file and the md5s it would accept.
    """
    src, dest = Path(src), Path(dest)
    got = md5sum(src)
    if got not in accepted:
        raise ChecksumError(
            f"{src} has md5 {got}, which is not an accepted copy of {dest.name} "
            f"(accepted: {', '.join(f'{k} ({v})' for k, v in accepted.items())}). "
            "Nothing was copied. Replace it with the official file or a documented mirror.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = temporary_sibling(dest)
    try:
        shutil.copyfile(src, part)
        if md5sum(part) != got:  # the copy itself went wrong (disk full, file changed under us)
            raise ChecksumError(f"copy of {src} to {part} changed its md5; nothing was installed at {dest}")
        os.replace(part, dest)
    finally:
        _remove(part)
    return got
