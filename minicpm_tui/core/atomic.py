"""Writes that never leave a half-written file and never clobber silently."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename.

    ``mode`` sets the permission bits (e.g. 0o600 for files that may hold private paths).
    An existing file keeps its permissions unless ``mode`` is given.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = temp_beside(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        elif target.exists():
            os.chmod(tmp_name, target.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):  # name the file asked for, not our temp file
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    return target


def temp_beside(target: Path) -> tuple[int, str]:
    """A new temp file in ``target``'s folder (for a rename onto it); an OSError names ``target``."""
    try:
        return tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the file asked for, not our temp file
        raise OSError(exc.errno, exc.strerror, str(target)) from exc


def backup(path: str | os.PathLike[str]) -> Path | None:
    """Copy an existing file to ``<name>.bak-<timestamp>`` beside it; return the copy's path."""
    source = Path(path)
    if not source.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = source.with_name(f"{source.name}.bak-{stamp}")
    n = 1
    while candidate.exists():
        candidate = source.with_name(f"{source.name}.bak-{stamp}-{n}")
        n += 1
    shutil.copy2(source, candidate)
    return candidate
