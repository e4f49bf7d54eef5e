"""Step 1: the hardware to plan for: this machine's probe, a shipped preset, or a saved probe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from minicpm_tui.assets import asset_files
from minicpm_tui.tui import keys
from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.widgets.field import Field
from minicpm_tui.tui.widgets.pathinput import LfTargetSuggester, PathSuggester
from minicpm_tui.tui.widgets.render import one_line, render_hardware

PROBE = "probe"


def hardware_presets() -> list[str]:
    # A directory listing, not core.probe: the first screen must not wait for a YAML parser.
    return list(asset_files("presets", "hardware"))


def _releases() -> list[str]:
    from minicpm_tui.core.lftarget import known_releases

    return known_releases()


class HardwareScreen(WizardStep):
    STEP = 0
    HELP_TITLE = "1 Hardware"
    HELP = """
Pick what to plan for. **This machine** probes the GPUs through NVML (memory, compute capability,
busy processes, P2P/NVLink topology, InfiniBand, host RAM). With no NVIDIA GPU here, pick a
**preset** of a common machine or load a **saved probe** from the remote box
(`minicpm-tui probe --save box.json` there): that is planning mode. The CPU smoke run works either way.

**LLaMA-Factory to write for**: empty is this machine's; a release (`0.9.3`) or a report saved with
`minicpm-tui doctor --save FILE` where it trains writes the run directory for that one (no LLaMA-Factory
needed here; `run --check` there does the checks left).
"""
    BINDINGS = [*WizardStep.BINDINGS, *keys.HARDWARE]

    class LfChecked(Message):
        def __init__(self, value: str, described: str, error: str | None) -> None:
            super().__init__()
            self.value = value
            self.described = described
            self.error = error

    class Loaded(Message):
        def __init__(self, source: str, profile: Any, error: str | None) -> None:
            super().__init__()
            self.source = source
            self.profile = profile
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.profile: Any = None
        self.loaded_source: str | None = None
        self.loads_started = 0
        self.error: str | None = None
        self.busy = False
        self.lf_checking = False
        self.lf_error: str | None = None
        self.lf_started = ""  # the lf_target last checked (or being checked)

    def body(self) -> ComposeResult:
        presets = hardware_presets()
        with Horizontal(classes="body"):
            with Vertical(classes="pane side", id="hw-side") as side:
                side.border_title = "Plan for"
                options = [Option("This machine (probe)", id=PROBE)]
                options += [Option(name, id=f"preset:{name}") for name in presets]
                yield OptionList(*options, id="hw-source", compact=True)
                yield Label("or a saved probe file:", classes="hint")
                yield Field(placeholder="box.json", id="hw-file", suggester=PathSuggester(), compact=True)
                yield Label("LLaMA-Factory to write for:", classes="hint")
                # Checked by a worker (on_hardware_screen_lf_checked sets -invalid), not Input's validators.
                yield Field(self.state.lf_target, placeholder="installed", id="hw-lf", compact=True,
                            suggester=LfTargetSuggester(_releases), validate_on=[])
            with VerticalScroll(classes="pane main", id="hw-main") as main:
                main.border_title = "Hardware"
                yield Static("Probing this machine…", id="hw-details")
                yield Static("", id="hw-lf-details")

    def on_mount(self) -> None:
        self.sync_from_state()
        if self.state.lf_target:  # from a draft: read it again (after the first frame)
            self.call_after_refresh(self.check_lf_target, self.state.lf_target)

    def sync_from_state(self) -> None:
        source = self.state.hardware or PROBE
        first_load = self.loaded_source is None or source != self.loaded_source
        if first_load:
            # Loaded once below, after the first frame; not again by the highlight this causes.
            self.state.hardware = source
            self.busy = True
        source_list = self.query_one("#hw-source", OptionList)
        if source.startswith("preset:") or source == PROBE:
            try:
                source_list.highlighted = source_list.get_option_index(source)
            except Exception:
                source_list.highlighted = 0
        else:
            self.query_one("#hw-file", Input).value = source
        source_list.focus()
        if first_load:
            # Probing (NVML, in a thread) starts once the first frame is on the terminal, unless
            # a choice made by then (a key pressed at once) has started a load of its own.
            self.call_after_refresh(self._load_unless_superseded, source, self.loads_started)
        self.update_nav()

    # -- choosing ----------------------------------------------------------------
    @on(OptionList.OptionHighlighted, "#hw-source")
    def highlighted(self, event: OptionList.OptionHighlighted) -> None:
        source = event.option.id or PROBE
        if source != self.state.hardware:
            self.load(source)

    @on(OptionList.OptionSelected, "#hw-source")
    def selected(self, event: OptionList.OptionSelected) -> None:
        # Enter on the loaded choice moves on: arrows + Enter walk the wizard.
        source = event.option.id or PROBE
        if source == self.state.hardware and self.ready():
            self.action_next()
        elif source != self.state.hardware or self.error:
            self.load(source)

    @on(Input.Submitted, "#hw-file")
    def file_given(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.load(str(Path(event.value.strip()).expanduser()))

    # -- the LLaMA-Factory to write for (the recipe's lf_target) ----------------------
    @on(Input.Changed, "#hw-lf")
    def lf_typed(self, event: Input.Changed) -> None:
        from minicpm_tui.tui.build import lf_target_value

        value = lf_target_value(event.value)
        if value == self.state.lf_target == self.lf_started:
            return  # the same choice (the value it was composed with): checked already, or being checked
        self.state.lf_target = value
        self.check_lf_target(value)

    def check_lf_target(self, value: str) -> None:
        self.lf_error = None
        self.lf_started = value
        if not value:
            self.lf_checking = False
            self.query_one("#hw-lf-details", Static).update("")
            self.query_one("#hw-lf", Input).remove_class("-invalid")
            self.changed()
            return
        self.lf_checking = True
        self.update_nav()
        self._check_lf(value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="lf-target")
    def _check_lf(self, value: str) -> None:
        try:
            from minicpm_tui.tui.build import target_facts
            from minicpm_tui.tui.state import WizardState

            facts = target_facts(WizardState(lf_target=value))
            described = (f"Writing for {facts.describe()}: its {len(facts.templates)} templates and "
                         f"{len(facts.all_keys)} argument keys, not this machine's LLaMA-Factory; the preflight "
                         "leaves LLaMA-Factory's own parser to `run --check` there.")
            self.post_message(self.LfChecked(value, described, None))
        except Exception as exc:  # UserError naming the file, or a core bug: shown in the form, never a crash
            self.post_message(self.LfChecked(value, "", one_line(exc)))

    def on_hardware_screen_lf_checked(self, message: LfChecked) -> None:
        if message.value != self.state.lf_target:
            return  # typed on since
        self.lf_checking = False
        self.lf_error = message.error
        details = self.query_one("#hw-lf-details", Static)
        details.set_class(bool(message.error), "bad")
        details.update(f"LLaMA-Factory to write for: {message.error}" if message.error else message.described)
        self.query_one("#hw-lf", Input).set_class(bool(message.error), "-invalid")
        self.changed()

    def action_reprobe(self) -> None:
        self.load(PROBE)

    def _load_unless_superseded(self, source: str, loads_started: int) -> None:
        if self.loads_started == loads_started:
            self.load(source)

    def load(self, source: str) -> None:
        self.loads_started += 1
        self.busy = True
        self.state.hardware = source
        self.query_one("#hw-details", Static).update(
            "Probing this machine…" if source == PROBE else f"Loading {source.removeprefix('preset:')}…")
        self.update_nav()
        self._load(source)

    @work(thread=True, exclusive=True, exit_on_error=False, group="hardware")
    def _load(self, source: str) -> None:
        try:
            from minicpm_tui.core import probe as probe_core

            if source == PROBE:
                profile = probe_core.probe()
            else:
                profile = probe_core.load_hardware(source.removeprefix("preset:"))
            self.post_message(self.Loaded(source, profile, None))
        except Exception as exc:  # UserError or a core bug: shown, never a crash
            self.post_message(self.Loaded(source, None, one_line(exc)))

    def on_hardware_screen_loaded(self, message: Loaded) -> None:
        if message.source != self.state.hardware:
            return  # a later choice superseded this one
        self.busy = False
        self.loaded_source = message.source
        self.profile = message.profile
        self.error = message.error
        details = self.query_one("#hw-details", Static)
        if message.error:
            details.update(f"[b]Could not load it:[/b] {message.error}")
            details.set_class(True, "bad")
        else:
            details.set_class(False, "bad")
            details.update(render_hardware(message.profile))
            gpus = list(getattr(message.profile, "gpus", []) or [])
            nodes = getattr(message.profile, "nodes", 1) or 1
            self.state.gpus = len(gpus)
            self.state.nodes = int(nodes) if isinstance(nodes, int) else 1
        self.changed()

    def ready(self) -> bool:
        if self.busy:
            self.blocked_reason = "loading the hardware…"
            return False
        if self.profile is None:
            self.blocked_reason = "pick a machine that loads"
            return False
        if self.lf_checking:
            self.blocked_reason = "reading the LLaMA-Factory to write for…"
            return False
        if self.lf_error:
            self.blocked_reason = "fix the LLaMA-Factory to write for"
            return False
        return True

    def palette_commands(self):
        from textual.app import SystemCommand

        yield SystemCommand("hardware: probe this machine", "Probe the GPUs through NVML again",
                            self.action_reprobe)
        for name in hardware_presets():
            yield SystemCommand(f"hardware: preset {name}", "Plan for this machine",
                                lambda n=name: self.load(f"preset:{n}"), discover=False)
