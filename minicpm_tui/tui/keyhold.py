"""Keys that arrive while the screen they are for is still being set up.

A step change (Ctrl+N, Enter on Next) or a dialog pushes its screen at once, but the screen mounts later, and
its first focus later still (``Widget.focus`` is a callback queued behind the keys already waiting): a key sent
with the one that changed the screen went to whatever Textual focused first, or nowhere (`^n 9` sent together
left the Hyper-params field without the 9). So the first key for a screen not seen before waits, with any keys
behind it, until the screen is mounted and what it queued has run; then they are sent again one by one, each
after the one before has been handled (a key among them that changes the screen again makes the rest wait for
that one). Ctrl+Q and Ctrl+C never wait, and nothing waits longer than HOLD_LIMIT_S for a screen to mount.
"""

from __future__ import annotations

import time
from typing import Any

from textual import events

HOLD_LIMIT_S = 1.0
NEVER_HELD = frozenset({"ctrl+q", "ctrl+c"})


class Released(events.Key):
    """A held key sent again, when the screen is ready for it."""


Released.handler_name = events.Key.handler_name


class KeyHold:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.held: list[tuple[str, str | None]] = []
        self.seen: Any = None  # the screen the last key went to
        self.since = 0.0

    def _screen(self) -> Any:
        try:
            return self.app.screen
        except Exception:  # no screen (starting or closing): nothing to wait for
            return None

    def take(self, event: events.Key) -> bool:
        """True when ``event`` waits, to be sent again (as :class:`Released`) once its screen is ready."""
        if isinstance(event, Released) or event.key in NEVER_HELD:
            return False
        if self.held:
            self.held.append((event.key, event.character))
            return True
        screen = self._screen()
        if screen is None or screen is self.seen:
            return False
        self.held.append((event.key, event.character))
        self._wait_for(screen)
        return True

    def _wait_for(self, screen: Any) -> None:
        self.seen, self.since = screen, time.monotonic()
        self._when_ready()

    def _when_ready(self) -> None:
        screen = self.seen
        if screen is not None and not screen.is_mounted and time.monotonic() - self.since < HOLD_LIMIT_S:
            self.app.set_timer(0.01, self._when_ready)
            return
        self.app.call_later(self._send_next)  # behind what the screen's mount queued (its focus)

    def _send_next(self) -> None:
        if not self.held:
            return
        screen = self._screen()
        if screen is not None and screen is not self.seen:  # the key before changed the screen: wait again
            self._wait_for(screen)
            return
        self.app.post_message(Released(*self.held.pop(0)))
        if self.held:
            self.app.call_later(self._send_next)
