"""XDG locations for config, state (the runs registry) and cache (tiny smoke models, LF introspection).

MINICPM_TUI_HOME overrides all three (tests point it at a temporary folder). As the XDG spec asks, a
relative XDG_*_HOME is ignored: it would name another folder from every working directory.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from minicpm_tui.core.errors import UserError


def _xdg(var: str, default: str, leaf: str) -> Path:
    override = os.environ.get("MINICPM_TUI_HOME")
    if override:
        return Path(override).expanduser() / leaf
    base = os.environ.get(var, "")
    if not os.path.isabs(base):
        try:
            base = str(Path.home() / default)
        except (RuntimeError, KeyError) as exc:  # no HOME and no passwd entry (some containers)
            raise UserError("cannot tell where minicpm-tui keeps its files: no home directory", where=var,
                            fix=f"set HOME, or {var} (MINICPM_TUI_HOME overrides all of them)") from exc
    return Path(base) / "minicpm-tui"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config", "config")


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state", "state")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache", "cache")


def absolute_path(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute and normal (``~`` expanded, ``.`` and ``..`` folded, as ``os.path.abspath``
    does), without resolving the symlinks the user chose: ``proj/../runs/p1`` is ``$PWD/runs/p1``."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def symlink_loop(path: str | os.PathLike[str]) -> Path | None:
    """The symlink in ``path`` that leads back to itself (``path`` itself or a folder on its way), or None.

    ``Path.exists()`` and ``is_file()`` read a loop as missing, and ``Path.resolve()`` raises RuntimeError on
    one (Python 3.11/3.12): without this a loop reads as "no such file"."""
    try:
        os.stat(os.path.expanduser(os.fspath(path)))
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            return None
    full = absolute_path(path)
    for part in [*reversed(full.parents), full]:
        try:
            os.stat(part)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return part
            return None
    return full


def missing(path: str | os.PathLike[str], what: str = "file or folder", fix: str = "check the path",
            where: str | None = None) -> UserError:
    """The error for a path that is not there: ``no such WHAT``, or a symlink loop named as one. Every check of
    a path the person gave ends here when the path is not found."""
    where = os.fspath(path) if where is None else where
    loop = symlink_loop(path)
    if loop is None:
        return UserError(f"no such {what}", where=where, fix=fix)
    shown = "it" if loop == absolute_path(path) else str(loop)
    return UserError(f"is a symlink loop ({shown} leads back to itself), not a {what}", where=where,
                     fix=f"point {loop} at the real {what} (`ls -l {loop}` shows where it leads), or pass the "
                         "real path")


def resolved(path: str | os.PathLike[str], what: str = "file or folder") -> Path:
    """``path`` with ``~`` expanded and symlinks resolved; a symlink loop is a UserError naming it, not a
    RuntimeError."""
    if symlink_loop(path) is not None:
        raise missing(path, what)
    return Path(path).expanduser().resolve()
