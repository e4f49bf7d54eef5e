"""A radio button whose choice shows without colour."""

from __future__ import annotations

from textual.widgets import RadioButton


class MarkedRadioButton(RadioButton):
    """Textual draws a chosen and an unchosen radio button with the same dot in two colours; under
    NO_COLOR, on a monochrome terminal or in a copied screen they look alike. This one leaves the
    unchosen button empty."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - Textual's attribute name
        return "●" if self.value else " "
