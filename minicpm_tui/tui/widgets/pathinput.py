"""Filesystem completion for path inputs (Right arrow or End accepts the suggestion)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from textual.suggester import Suggester


class PathSuggester(Suggester):
    def __init__(self, suffixes: tuple[str, ...] = ()) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        folder, _, stem = expanded.rpartition(os.sep)
        base = Path(folder or ".") if expanded.rfind(os.sep) != 0 else Path(os.sep)
        try:
            names = sorted(entry.name for entry in os.scandir(base) if entry.name.startswith(stem)
                           and not (entry.name.startswith(".") and not stem.startswith("."))
                           and (entry.is_dir() or not self.suffixes or entry.name.endswith(self.suffixes)))
        except OSError:
            return None
        if not names:
            return None
        choice = names[0]
        if (base / choice).is_dir():
            choice += os.sep
        # Keep what the person typed (``~`` included) and append the rest.
        return value + choice[len(stem):]


class LfTargetSuggester(PathSuggester):
    """The LLaMA-Factory to write for: ``installed``, a shipped release, else a saved report's path."""

    def __init__(self, releases: Callable[[], list[str]]) -> None:
        super().__init__(suffixes=(".json",))
        self.releases = releases

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        for word in ("installed", *self.releases()):
            if word.startswith(value) and word != value:
                return word
        return await super().get_suggestion(value)
