"""Shared by subcommands that are not built yet: say so and exit 2, never pretend."""

from __future__ import annotations

import argparse

from minicpm_tui.core.errors import UserError


def not_built(name: str, issue: int) -> UserError:
    return UserError(f"`{name}` is not built yet", fix=f"it arrives with issue #{issue}", exit_code=2)


def placeholder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
