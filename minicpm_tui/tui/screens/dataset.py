"""Step 3: the dataset: a bundled demo, a file or a folder of files, validated in the background, previewed,
registered."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from minicpm_tui.tui import keys
from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.widgets.pathinput import PathSuggester
from minicpm_tui.tui.widgets.render import one_line, render_preview, render_validation

FILE = "file"


def demo_datasets() -> dict[str, dict[str, Any]]:
    """The shipped demos: name -> their dataset_info.json entry."""
    from minicpm_tui.assets import asset_path

    try:
        info = json.loads(asset_path("data", "dataset_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in info.items() if isinstance(v, dict) and v.get("file_name")}


def demo_dir() -> Path:
    from minicpm_tui.assets import asset_path

    return asset_path("data")


def suggested_name(path: str) -> str:
    """The name a data file (or folder) is offered to be registered under; none for a demo."""
    if not path or path.startswith("demo:"):
        return ""
    return Path(path).stem.replace("-", "_").replace(" ", "_")


class DatasetScreen(WizardStep):
    STEP = 2
    HELP_TITLE = "3 Dataset"
    HELP = """
Pick a bundled demo or type a data file's path (Right arrow accepts the completion; Ctrl+O opens a
file tree). A folder's path works too: LLaMA-Factory reads all its files (shards) as one dataset.
The data is validated in the background exactly the way LLaMA-Factory will read it for the chosen
stage: errors name the file, the record, the field and the fix. The preview renders a few records
through the chat template; trained parts are marked, masked parts dimmed. A file (or folder) of yours
is registered in the `dataset_info.json` beside it (merged, backed up) under the name you give.
"""
    BINDINGS = [*WizardStep.BINDINGS, *keys.DATASET]

    class Progress(Message):
        def __init__(self, fraction: float) -> None:
            super().__init__()
            self.fraction = fraction

    class Validated(Message):
        def __init__(self, key: str, report: Any, error: str | None) -> None:
            super().__init__()
            self.key = key
            self.report = report
            self.error = error

    class Previewed(Message):
        def __init__(self, key: str, preview: Any, error: str | None) -> None:
            super().__init__()
            self.key = key
            self.preview = preview
            self.error = error

    class Registered(Message):
        def __init__(self, name: str, dataset_dir: str, error: str | None) -> None:
            super().__init__()
            self.name = name
            self.dataset_dir = dataset_dir
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.demos = demo_datasets()
        self.report: Any = None
        self.error: str | None = None
        self.busy = False
        self.key = ""

    def body(self) -> ComposeResult:
        with Horizontal(classes="body"):
            with Vertical(classes="pane side", id="ds-side") as side:
                side.border_title = "Dataset"
                options = [Option(f"{name}  (demo)", id=f"demo:{name}") for name in self.demos]
                yield OptionList(*options, id="ds-demos", compact=True)
                yield Label("file or folder (^o browse):", classes="hint")  # 28 columns at most
                yield Input(placeholder="~/data/train.jsonl", id="ds-file", compact=True,
                            suggester=PathSuggester((".json", ".jsonl", ".csv", ".parquet")))
                yield Label("register as:", classes="hint")
                yield Input(placeholder="my_dataset", id="ds-name", compact=True)
            with VerticalScroll(classes="pane main", id="ds-main") as main:
                main.border_title = "Validation"
                yield ProgressBar(total=1.0, show_eta=False, id="ds-progress")
                yield Static("", id="ds-report")
                yield Static("", id="ds-preview")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#ds-progress").display = False
        demos = self.query_one("#ds-demos", OptionList)
        name = self.state.dataset_name
        if self.state.dataset_file and not self.state.dataset_file.startswith("demo:"):
            self.query_one("#ds-file", Input).value = self.state.dataset_file
            self.query_one("#ds-name", Input).value = name
            self.start(self.state.dataset_file)
            demos.highlighted = None  # no demo is the choice
        else:
            wanted = f"demo:{name}" if name in self.demos else self._default_demo()
            if wanted:
                demos.highlighted = demos.get_option_index(wanted)
                self.start(wanted)
        demos.focus()

    def _default_demo(self) -> str | None:
        for name in self.demos:
            if self.state.stage in name:
                return f"demo:{name}"
        return f"demo:{next(iter(self.demos))}" if self.demos else None

    # -- choosing -----------------------------------------------------------------
    @on(OptionList.OptionHighlighted, "#ds-demos")
    def highlighted(self, event: OptionList.OptionHighlighted) -> None:
        # The list highlights its first option by itself when it is built; with a file (or folder) taken
        # over from the state that highlight is cleared before its message arrives: ignore it.
        if event.option_list.highlighted != event.option_index:
            return
        if event.option.id and event.option.id != self.key:
            self.start(event.option.id)

    @on(OptionList.OptionSelected, "#ds-demos")
    def selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == self.key and self.ready():
            self.action_next()

    @on(Input.Submitted, "#ds-file")
    def file_given(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if path:
            # A name we filled in for the previous file follows the new one; a name typed is kept.
            name_input = self.query_one("#ds-name", Input)
            if name_input.value in ("", suggested_name(self.key)):
                name_input.value = suggested_name(path)
            self.start(str(Path(path).expanduser()))

    @on(Input.Submitted, "#ds-name")
    def name_given(self, event: Input.Submitted) -> None:
        self.action_register()

    def action_browse(self) -> None:
        from minicpm_tui.tui.screens.filepicker import FilePickerScreen

        def picked(path: Path | None) -> None:
            if path is not None:
                self.query_one("#ds-file", Input).value = str(path)
                self.query_one("#ds-name", Input).value = suggested_name(str(path))
                self.start(str(path))

        self.app.push_screen(FilePickerScreen(Path(self.state.dataset_file or ".").expanduser()), picked)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "register":
            return not self.register_refusal()
        return super().check_action(action, parameters)

    def register_refusal(self) -> str:
        """Why ^g cannot register what is chosen now ("" when it can): the core's rule (every record
        usable, the data loadable as a whole), said before the key is offered rather than after."""
        if not self.key or self.key.startswith("demo:"):
            return "a demo is registered already; type a file of yours to register it"
        if self.busy:
            return "validating…"
        if self.report is None:
            return f"cannot register it: {self.error or 'it did not validate'}"
        report = self.report
        if report.file_error is not None or not report.records or report.invalid:
            return f"cannot register it: {report.summary()}"
        return ""

    def why_not(self, action: str) -> str:
        return self.register_refusal() if action == "register" else super().why_not(action)

    # -- validation -----------------------------------------------------------------
    def start(self, key: str) -> None:
        self.key = key
        self.report = None
        self.error = None
        self.busy = True
        if key.startswith("demo:"):
            name = key.removeprefix("demo:")
            self.state.dataset_name = name
            self.state.dataset_file = key
            path = demo_dir() / self.demos[name]["file_name"]
        else:
            self.state.dataset_file = key
            self.state.dataset_name = ""
            path = Path(key)
        self.state.dataset_ok = False
        bar = self.query_one("#ds-progress", ProgressBar)
        bar.update(progress=0)
        self.query_one("#ds-report", Static).update(f"Validating {path.name} for {self.state.stage}…")
        self.query_one("#ds-preview", Static).update("")
        self.update_nav()
        self._validate(key, path, self.state.stage)

    @work(thread=True, exclusive=True, exit_on_error=False, group="dataset")
    def _validate(self, key: str, path: Path, stage: str) -> None:
        from minicpm_tui.core.datasets import validate_file

        last = [0.0]

        def progress(done: float, total: float | None = None, *_: Any) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1 and total:  # merge bursts: ten updates a second at most
                last[0] = now
                self.post_message(self.Progress(float(done) / float(total)))

        try:
            report = validate_file(path, stage=stage, progress=progress)
        except Exception as exc:
            self.post_message(self.Validated(key, None, one_line(exc)))
            return
        self.post_message(self.Validated(key, report, None))

    def on_dataset_screen_progress(self, message: Progress) -> None:
        bar = self.query_one("#ds-progress", ProgressBar)
        bar.display = True
        bar.update(progress=min(1.0, message.fraction))

    def on_dataset_screen_validated(self, message: Validated) -> None:
        if message.key != self.key:
            return
        self.busy = False
        self.query_one("#ds-progress").display = False
        self.report = message.report
        self.error = message.error
        out = self.query_one("#ds-report", Static)
        if message.error:
            out.update(f"[b]Cannot use it:[/b] {message.error}")
        else:
            data = message.report.to_json()
            out.update(render_validation(data))
            self.state.suggested_cutoff = (data.get("stats") or {}).get("suggested_cutoff_len")
            self.state.dataset_ok = bool(data.get("ok"))  # also false when the data as a whole cannot load
            if data.get("valid"):
                self.query_one("#ds-preview", Static).update("Rendering a preview through the template…")
                self._preview(message.key, message.report)
        self.changed()

    @work(thread=True, exclusive=True, exit_on_error=False, group="preview")
    def _preview(self, key: str, report: Any) -> None:
        """A few records through the chat template (LLaMA-Factory's own code, in a subprocess), tokenized by
        the tiny model of the same chat format, so no download is needed."""
        try:
            from minicpm_tui.core import writers
            from minicpm_tui.core.datasets import preview_records
            from minicpm_tui.core.lfinfo import lf_info
            from minicpm_tui.core.models import load_model
            from minicpm_tui.core.recipe import Recipe
            from minicpm_tui.core.tinymodel import tiny_model_dir

            arch = load_model(self.state.model or "MiniCPM4-0.5B")
            template, _, _ = writers.choose_template(Recipe(model=arch.name), arch.chat_format,
                                                      lf_info().templates)
            items = preview_records(report, tiny_model_dir(arch.chat_format), template, n=2, cutoff_len=256)
        except Exception as exc:
            self.post_message(self.Previewed(key, None, one_line(exc)))
            return
        self.post_message(self.Previewed(key, items, None))

    def on_dataset_screen_previewed(self, message: Previewed) -> None:
        if message.key != self.key:
            return
        target = self.query_one("#ds-preview", Static)
        target.update(f"[dim]preview: {message.error}[/dim]" if message.error else render_preview(message.preview))

    # -- registration -----------------------------------------------------------------
    def action_register(self) -> None:
        refusal = self.register_refusal()
        if refusal:
            self.notify(refusal, severity="warning")
            return
        name = self.query_one("#ds-name", Input).value.strip()
        if not name:
            self.notify("type the name to register it under", severity="warning")
            self.query_one("#ds-name", Input).focus()
            return
        self._register(Path(self.key), name, self.state.stage)

    @work(thread=True, exclusive=True, exit_on_error=False, group="register")
    def _register(self, path: Path, name: str, stage: str) -> None:
        from minicpm_tui.core.datasets import register_dataset

        try:
            register_dataset(path, name, path.parent, stage=stage)
        except Exception as exc:
            self.post_message(self.Registered(name, str(path.parent), one_line(exc)))
            return
        self.post_message(self.Registered(name, str(path.parent), None))

    def on_dataset_screen_registered(self, message: Registered) -> None:
        if message.error:
            self.notify(message.error, severity="error", timeout=8)
            return
        self.state.dataset_name = message.name
        self.notify(f"registered {message.name} in {message.dataset_dir}/dataset_info.json")
        self.changed()

    def ready(self) -> bool:
        if self.busy:
            self.blocked_reason = "validating…"
            return False
        if self.report is None:
            self.blocked_reason = "pick a dataset that validates"
            return False
        if not self.report.to_json().get("valid"):
            self.blocked_reason = "no usable record: fix the errors listed"
            return False
        if self.report.file_error is not None:  # e.g. a folder LLaMA-Factory refuses as a whole
            self.blocked_reason = "LLaMA-Factory cannot load it: fix the first error listed"
            return False
        if not self.state.dataset_name:
            # Short, beside Next at 80 columns: the first unusable record is listed in the pane.
            self.blocked_reason = (f"{self.report.invalid:,} of {self.report.records:,} records unusable: "
                                   "fix them to register" if self.report.invalid
                                   else "register it (^g) under a name")
            return False
        return True

    def palette_commands(self):
        from textual.app import SystemCommand

        yield SystemCommand("dataset: browse for a file", "A file tree", self.action_browse)
        if self.check_action("register", ()):
            yield SystemCommand("dataset: register", "In the dataset_info.json beside the file",
                                self.action_register)
