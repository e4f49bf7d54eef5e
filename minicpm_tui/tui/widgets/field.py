"""The wizard's text field: Textual's Input, with the keys of a burst applied in the order they were sent.

Textual's Input inserts a printable key as soon as the key reaches it, but its own bound keys
(Ctrl+U, Ctrl+K, Home, Backspace, Enter...) only run once the key has bubbled up to the app, through
one message queue per ancestor. Keys sent at once (a paste, a fast typist, tmux send-keys) are all
in the field's queue already, so the characters after a bound key were typed before it ran:
``C-u "bad.json" Enter`` typed the name, then cleared it, then submitted an empty field (Textual
issue 6605). And a key bound above the field (Esc, Tab, Ctrl+W, Ctrl+N...) reached the screen ahead
of the field's own Changed messages for the characters typed before it.

Here the field runs its own bindings where it handles its characters, in turn. A key it does not
take is passed on behind the messages it has already posted (:class:`InTurn`), so whatever the
screen or the app does with it sees the value as typed; the app hands its priority keys (Ctrl+N,
Ctrl+Q) to a focused field for the same reason (``MiniCPMApp._check_bindings``).
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class InTurn(events.Key):
    """A key a :class:`Field` did not take, on its way up behind the field's earlier messages. The app
    runs its bindings, priority ones first, when it arrives (``MiniCPMApp.on_key``), then lets the
    field go on with the keys sent after it (``Field.replay``)."""

    field: Field


# Handled as a key by every widget and the app on its way up (Textual names handlers by class).
InTurn.handler_name = events.Key.handler_name


class Field(Input):
    """An Input whose keys take effect in the order they were sent, however fast they come."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # A key passed on is on its way up: the keys after it wait here until the app has handled it
        # (it can move the focus, Tab, or the step, Ctrl+N), then go where the focus is (replay).
        self._waiting: list[tuple[str, str | None]] | None = None

    async def _on_key(self, event: events.Key) -> None:
        if isinstance(event, InTurn):
            event.prevent_default()  # not the field's: on up to the app, untouched
            return
        event.prevent_default()
        event.stop()
        if self._waiting is not None:
            self._waiting.append((event.key, event.character))
        elif self.app.focused not in (self, None) and self.screen is self.app.screen:
            # Sent to this field before a key ahead of it moved the focus on: it follows the focus.
            self.resend(event.key, event.character)
        else:
            await self.take(event.key, event.character)

    async def take(self, key: str, character: str | None) -> None:
        """Handle one key now: type it, run the field's binding for it, or pass it on up."""
        active = self.screen.active_bindings.get(key)
        if active is not None and active.binding.priority:  # the app's (Ctrl+N, Ctrl+Q, Ctrl+C): on up
            self.pass_on(key, character)
        elif character is not None and character.isprintable():
            await Input._on_key(self, events.Key(key, character))
        elif not await self.run_own_binding(key):
            self.pass_on(key, character)

    async def run_own_binding(self, key: str) -> bool:
        """Run the field's binding for ``key`` now, as the app would on its way up; True when one ran."""
        for binding in self._bindings.key_to_bindings.get(key, ()):
            if not binding.priority and await self.app.run_action(binding.action, self):
                return True
        return False

    def pass_on(self, key: str, character: str | None) -> None:
        """Send the key up after the messages this field has posted so far (Changed, Submitted)."""
        passed = InTurn(key, character)
        passed.field = self
        passed._set_forwarded()  # the app treats it as a key on its way up, not one from the terminal
        self._waiting = []
        self.post_message(passed)

    async def replay(self) -> None:
        """The key passed on has been handled (``MiniCPMApp.on_key``): the keys after it, in order."""
        waiting, self._waiting = self._waiting or [], None
        while waiting:
            key, character = waiting.pop(0)
            # The screen's focus, not has_focus: that one follows a Focus message still on its way.
            if self.app.focused is self and self.screen is self.app.screen:
                await self.take(key, character)
                if self._waiting is not None:  # passed on again: the rest wait behind that one
                    self._waiting[:0] = waiting
                    return
            else:
                self.resend(key, character)

    def resend(self, key: str, character: str | None) -> None:
        """A key for wherever the focus is now: to the app as a key from the terminal, so that its priority
        bindings (Ctrl+W on the Review step) still come first."""
        self.app.post_message(events.Key(key, character))
