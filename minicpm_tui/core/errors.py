"""The one error type a person sees: a single line that names the thing and says how to fix it."""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """Bad input or a missing piece. Rendered as one line, never as a traceback.

    ``where`` names the file, record, field or flag; ``fix`` says what would make it work, in the
    CLI's words (its flags and commands). ``fix_tui`` is the same advice in the wizard's words (its
    fields and keys), given where the CLI's would mean nothing there; the TUI shows it instead.
    """

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None, exit_code: int = 2,
                 fix_tui: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix
        self.fix_tui = fix_tui
        self.exit_code = exit_code

    def one_line(self, where: str | None = None, fix: str | None = None) -> str:
        """``where: message; fix`` on one line; a ``where``/``fix`` given replaces the error's own (the TUI's
        words; ``""`` drops it)."""
        where = self.where if where is None else where
        fix = self.fix if fix is None else fix
        text = f"{where}: {self.message}" if where else self.message
        if fix:
            text = f"{text}; {fix}"
        return " ".join(text.split())

    def __str__(self) -> str:
        return self.one_line()


# errno -> (what is wrong with the path, how to fix it)
_OS_REASONS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "choose a place you may write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a place you may write to, or fix its permissions"),
    errno.EROFS: ("is on a read-only file system", "choose a writable place"),
    errno.ENOSPC: ("no space left on the device", "free some space, or choose another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or choose another disk"),
    errno.EISDIR: ("is a folder where a file is needed", "name a file, not a folder"),
    errno.ENOTDIR: ("part of the path is a file where a folder is needed", "check the path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ELOOP: ("is a symlink loop (a link on its way leads back to itself)",
                  "point the link at the real file or folder (`ls -l` shows where it leads), or pass the real path"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter name"),
}


def os_error(exc: OSError) -> UserError:
    """An OSError about a named path (no permission, a file in a folder's place, a full disk) as a UserError."""
    path = exc.filename2 if exc.errno == errno.EISDIR and exc.filename2 else exc.filename
    where = os.fsdecode(path) if path is not None else None
    if exc.errno == errno.EEXIST and where and not os.path.isdir(where):
        return UserError("is a file where a folder is needed", where=where, fix="check the path, or move the file")
    reason, fix = _OS_REASONS.get(exc.errno or 0, ((exc.strerror or str(exc)).lower(), "check the path"))
    return UserError(reason, where=where, fix=fix)
