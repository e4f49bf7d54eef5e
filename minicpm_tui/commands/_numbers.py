"""Checks for numeric flags that argparse's ``type=float``/``int`` lets through (nan, inf, 0, negatives)."""

from __future__ import annotations

import math

from minicpm_tui.core.errors import UserError


def check_number(value: float | None, flag: str, *, minimum: float = 0, above: bool = False,
                 example: str = "") -> None:
    """Raise a UserError naming ``flag`` unless ``value`` (None = not given) is finite and >= (or >) ``minimum``."""
    if value is None:
        return
    ok = math.isfinite(value) and (value > minimum if above else value >= minimum)
    if not ok:
        bound = f"> {minimum:g}" if above else f">= {minimum:g}"
        raise UserError(f"must be a finite number {bound}, got {value:g}", where=flag,
                        fix=f"e.g. {flag} {example}" if example else "pass a finite number")
