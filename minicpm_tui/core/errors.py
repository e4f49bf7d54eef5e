"""The one error type a person sees: a single line that names the thing and says how to fix it."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a missing piece. Rendered as one line, never as a traceback.

    ``where`` names the file, record, field or flag; ``fix`` says what would make it work.
    """

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None, exit_code: int = 2):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix
        self.exit_code = exit_code

    def one_line(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text = f"{text}; {self.fix}"
        return " ".join(text.split())

    def __str__(self) -> str:
        return self.one_line()
