"""Textual's footer, with the keys on the first frame and one rebuild per burst of changes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widgets import Footer

# The one private Textual name minicpm-tui touches. Textual's Footer (checked on 8.2) composes nothing until
# its reactive ``_bindings_ready`` is set by the first ``bindings_changed``, and no public API sets it (nor
# says the bindings are ready). Setting it before the first compose is what puts the keys on the first
# frame. Were Textual to rename or drop it, the footer would only show its keys a little later (after the
# first bindings change), never crash: ``tests/test_tui.py::test_keys_footer_private_textual_gate`` fails
# loudly then, so that this is looked at again.
BINDINGS_READY: Reactive[bool] | None = (
    Footer.__dict__["_bindings_ready"] if isinstance(Footer.__dict__.get("_bindings_ready"), Reactive) else None)


class KeysFooter(Footer):
    """Textual's Footer starts empty and rebuilds itself once per bindings change, even when a
    screen mounting changes them several times in a row; at startup that put the keys on screen
    a fifth of a second after everything else. This one composes its keys at once, folds the
    changes made before the next refresh into one rebuild, and skips a rebuild that would draw
    the same keys again."""

    def __init__(self, **kwargs: object) -> None:
        # Compact (one column between keys, none inside them): the fullest step's keys, f1 Help last, fit
        # beside the palette's at 80 columns (tests/test_tui.py checks each step at 80x24).
        kwargs.setdefault("compact", True)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if BINDINGS_READY is not None:
            self.set_reactive(BINDINGS_READY, True)
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
        if BINDINGS_READY is None:  # a Textual without the gate: its own footer's behaviour
            super().bindings_changed(screen)
            return
        if not screen.app.app_focus:
            return  # as Textual's: nothing to redraw while the terminal has no focus
        if self.is_attached and screen is self.screen and not self._rebuild_pending:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_pending = False
        if self.is_attached and self.shown_keys() != self._shown:
            await self.recompose()
