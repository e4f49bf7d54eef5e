"""Radio buttons whose choice shows without colour, in a set whose cursor starts on the choice."""

from __future__ import annotations

from textual import events
from textual.widgets import RadioButton, RadioSet


class MarkedRadioButton(RadioButton):
    """Textual draws a chosen and an unchosen radio button with the same dot in two colours; under
    NO_COLOR, on a monochrome terminal or in a copied screen they look alike. This one leaves the
    unchosen button empty."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's attribute name
        return "●" if self.value else " "


class ChoiceSet(RadioSet):
    """Textual's RadioSet puts its cursor on the first button, whatever is chosen: Tab into the method
    (full chosen) and Enter switched it to lora, and Up from full went to qlora. Here the cursor is on
    the chosen button whenever the set gets the focus."""

    def on_focus(self, event: events.Focus) -> None:
        if self.pressed_index >= 0:
            self._selected = self.pressed_index
