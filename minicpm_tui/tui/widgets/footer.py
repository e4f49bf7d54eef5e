"""Textual's footer, with the keys on the first frame and one rebuild per burst of changes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    """Textual's Footer starts empty and rebuilds itself once per bindings change, even when a
    screen mounting changes them several times in a row; at startup that put the keys on screen
    a fifth of a second after everything else. This one composes its keys at once, folds the
    changes made before the next refresh into one rebuild, and skips a rebuild that would draw
    the same keys again."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.set_reactive(Footer._bindings_ready, True)
        self._rebuild_pending = False
        self._shown: tuple[object, ...] | None = None

    def shown_keys(self) -> tuple[object, ...]:
        """What the footer draws: each shown binding's key, label, tooltip and whether it works now."""
        return tuple((binding.key, binding.key_display, binding.description, enabled, tooltip)
                     for _, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show)

    def compose(self) -> ComposeResult:
        self._shown = self.shown_keys()
        yield from super().compose()

    def bindings_changed(self, screen: Screen) -> None:
        if not screen.app.app_focus:
            return  # as Textual's: nothing to redraw while the terminal has no focus
        if self.is_attached and screen is self.screen and not self._rebuild_pending:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_pending = False
        if self.is_attached and self.shown_keys() != self._shown:
            await self.recompose()
