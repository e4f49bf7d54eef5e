"""Per-GPU memory as horizontal bars, one per estimator term, against the GPU's capacity."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static

# Label, bar and value fit the 42 columns the plan's pane has at 80x24 (its scrollbar aside):
# 17 + 1 + 12 + " 123.4G/141G" (12).
BAR = 12
NAME = 17


def _label(name: str) -> str:
    return f"{name:<{NAME}}" if len(name) <= NAME else name[:NAME - 1] + "…"


class MemoryBar(Static):
    def show(self, terms: dict[str, float], capacity_gib: float | None, peak_gib: float | None) -> None:
        self.update(memory_bars(terms, capacity_gib, peak_gib))


def memory_bars(terms: dict[str, float], capacity_gib: float | None, peak_gib: float | None) -> RenderableType:
    total = float(peak_gib if peak_gib is not None else sum(terms.values()))
    scale = max(total, float(capacity_gib or 0), 1e-9)
    rows: list[RenderableType] = []
    for name, value in sorted(terms.items(), key=lambda kv: -kv[1]):
        if value < 0.05:
            continue
        width = max(1, round(BAR * value / scale))
        row = Text(f"{_label(name)} ")
        row.append("█" * width, style="bold")
        row.append(" " * (BAR - width))
        row.append(f" {value:5.1f}G")
        rows.append(row)
    fits = capacity_gib is None or total <= capacity_gib
    # "NO FIT" goes in the label column: after the value it wrapped onto a line of its own at 80x24.
    line = Text("peak", style="bold")
    if not fits:
        line.append(" ")
        line.append("NO FIT", style="bold red reverse")
    line.append(" " * (NAME + 1 - line.cell_len))
    used = min(BAR, max(1, round(BAR * total / scale)))
    line.append("█" * used, style="bold green" if fits else "bold red")
    line.append("░" * (BAR - used))
    cap = f"/{capacity_gib:.0f}G" if capacity_gib else ""
    line.append(f" {total:5.1f}G{cap}", style="bold")
    rows.append(line)
    return Group(*rows)
