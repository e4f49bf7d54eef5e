"""Step 3: the dataset: a bundled demo, a file or a folder of files, or an entry of an existing
dataset_info.json, validated in the background, previewed, registered (a file; an entry is used as it is)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from minicpm_tui.tui import keys
from minicpm_tui.tui.build import ENTRY
from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.widgets.field import Field
from minicpm_tui.tui.widgets.pathinput import PathSuggester
from minicpm_tui.tui.widgets.render import one_line, render_preview, render_validation

FILE = "file"
LIST_WIDTH = 26  # the side pane's list at 80 columns, less its scrollbar


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


def clip_left(text: str, width: int) -> str:
    """The end of ``text`` in ``width`` columns (a path's file name matters most)."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def remote_key(entry: Any) -> str:
    """The key (hf_hub_url, ...) of an entry whose data LLaMA-Factory fetches, "" for a local one."""
    from minicpm_tui.core.datasets.entry import REMOTE_KEYS

    return next((k for k in REMOTE_KEYS if k in entry), "") if isinstance(entry, dict) else ""


def entry_kind(entry: Any) -> str:
    """Its formatting, and "ranking" for preference data: what LLaMA-Factory reads it as."""
    if not isinstance(entry, dict):
        return "not an object"
    return f"{entry.get('formatting', 'alpaca')}{' ranking' if entry.get('ranking') is True else ''}"


def entry_verdict(report: Any, error: str | None) -> tuple[str, str]:
    """A short verdict on a validated entry for its line in the list, and its style."""
    if error or report is None:
        return "✗ refused", "bold red"
    if report.file_error is not None:
        return "✗ won't load", "bold red"
    if not report.valid:
        return "✗ no usable", "bold red"
    if report.invalid:
        return f"! {report.invalid:,} bad", "bold yellow"
    return f"✓ {report.valid:,} ok", "bold green"


def entry_prompt(name: str, entry: Any, verdict: tuple[str, str] | None = None) -> Text:
    """Two lines: the name and formatting, then the file (or remote source) and the verdict."""
    kind = entry_kind(entry)
    text = Text(clip_left(name, LIST_WIDTH - len(kind) - 1), style="bold")
    text.append(" " * max(1, LIST_WIDTH - len(text.plain) - len(kind)) + kind, style="dim")
    remote = remote_key(entry)
    if remote:
        verdict = ("remote: not checked", "italic")
        source = f"{remote.split('_', 1)[0]} {entry[remote]}"
    else:
        file_name = entry.get("file_name") if isinstance(entry, dict) else None
        source = file_name if isinstance(file_name, str) else "no file_name"
    label, style = verdict or ("", "")
    text.append("\n " + clip_left(source, LIST_WIDTH - 1 - (len(label) + 1 if label else 0)))
    if label:
        text.append(" " * max(1, LIST_WIDTH - len(text.plain.split("\n")[1]) - len(label)) + label, style=style)
    return text


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
Already registered in a `dataset_info.json` (an existing LLaMA-Factory setup)? Ctrl+T picks it (or the
folder holding it; typing or browsing to either works too) and lists its entries: name, formatting, file and, once
validated, a verdict. Each is checked through its entry (columns, tags, openai formatting, media as the
chosen model's template reads them; by the LLaMA-Factory chosen at step 1, so by another machine's release
when you write for one) and used as registered: nothing is written. Remote entries
(hf_hub_url...) are listed but not checked here; LLaMA-Factory fetches them when training starts.
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

    class RegistryLoaded(Message):
        def __init__(self, path: str, info: dict[str, Any], error: str | None, wanted: str, why: str = "") -> None:
            super().__init__()
            self.path = path
            self.info = info
            self.error = error
            self.wanted = wanted
            self.why = why  # the line said above the report when a typed path was taken as this registry

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
        self.registry: Path | None = None  # the dataset_info.json whose entries are listed
        self.entries: dict[str, Any] = {}
        self.verdicts: dict[str, tuple[str, str]] = {}

    def body(self) -> ComposeResult:
        with Horizontal(classes="body"):
            with Vertical(classes="pane side", id="ds-side") as side:
                side.border_title = "Dataset"
                options = [Option(f"{name}  (demo)", id=f"demo:{name}") for name in self.demos]
                yield OptionList(*options, id="ds-demos", compact=True)
                yield Label("registered: ^t dataset_info", classes="hint")  # its entries go in the list
                yield Label("file or folder (^o browse):", classes="hint")  # 28 columns at most
                yield Field(placeholder="~/data/train.jsonl", id="ds-file", compact=True,
                            suggester=PathSuggester((".json", ".jsonl", ".csv", ".parquet")))
                yield Label("register as:", classes="hint")
                yield Field(placeholder="my_dataset", id="ds-name", compact=True)
            with VerticalScroll(classes="pane main", id="ds-main") as main:
                main.border_title = "Validation"
                yield Static("", id="ds-note")
                yield ProgressBar(total=1.0, show_eta=False, id="ds-progress")
                yield Static("", id="ds-report")
                yield Static("", id="ds-preview")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#ds-progress").display = False
        self.query_one("#ds-note").display = False
        demos = self.query_one("#ds-demos", OptionList)
        name = self.state.dataset_name
        if self.state.dataset_info:  # its entries are listed again (and the one chosen validated)
            wanted = self.state.dataset_file if self.state.dataset_file.startswith(ENTRY) else ""
            self._load_registry(self.state.dataset_info, wanted)
        if self.state.dataset_file.startswith(ENTRY):
            self.key, self.busy = self.state.dataset_file, True  # validated once its registry is read
            demos.highlighted = None
            self.query_one("#ds-report", Static).update(Text(f"Reading {self.state.dataset_info}…"))
            self.update_nav()
        elif self.state.dataset_file and not self.state.dataset_file.startswith("demo:"):
            self.query_one("#ds-file", Input).value = self.state.dataset_file
            self.query_one("#ds-name", Input).value = name
            if not self.take_registry(self.state.dataset_file):  # a draft's dataset folder: its entries instead
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
        if path and self.take_registry(path):
            return
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
            if path is not None and not self.take_registry(str(path)):
                self.query_one("#ds-file", Input).value = str(path)
                self.query_one("#ds-name", Input).value = suggested_name(str(path))
                self.start(str(path))

        self.app.push_screen(FilePickerScreen(Path(self.state.dataset_file or ".").expanduser()), picked)

    # -- a registered dataset -----------------------------------------------------------
    def take_registry(self, path: str) -> bool:
        """A dataset_info.json, or a folder holding one, is LLaMA-Factory's dataset_dir, not data (as shards
        its dataset_info.json would be read as a data file): list its entries, as ^t does, saying why."""
        from minicpm_tui.core.datasets.entry import registry_at

        info = registry_at(path)
        if info is None:
            return False
        why = (f"{path} is a dataset_info.json, not data." if info == Path(path).expanduser() else
               f"{path} holds a dataset_info.json: a LLaMA-Factory dataset folder, not data shards.")
        self._load_registry(str(info), "", f"{why} Its registered datasets are listed instead (as ^t does).")
        return True

    def action_pick_registered(self) -> None:
        from minicpm_tui.tui.screens.filepicker import FilePickerScreen

        def picked(path: Path | None) -> None:
            if path is not None:
                self._load_registry(str(path), "")

        start = self.registry or Path(self.state.dataset_file if not self.state.dataset_file.startswith(
            ("demo:", ENTRY)) else ".")
        self.app.push_screen(FilePickerScreen(start.expanduser(), registry=True), picked)

    @work(thread=True, exclusive=True, exit_on_error=False, group="registry")
    def _load_registry(self, path: str, wanted: str, why: str = "") -> None:
        from minicpm_tui.core.datasets.entry import load_dataset_info

        try:
            info_path, info = load_dataset_info(path)
        except Exception as exc:
            self.post_message(self.RegistryLoaded(path, {}, one_line(exc), wanted))
            return
        self.post_message(self.RegistryLoaded(str(info_path.absolute()), info, None, wanted, why))

    def on_dataset_screen_registry_loaded(self, message: RegistryLoaded) -> None:
        if message.error:
            self.notify(message.error, severity="error", timeout=8)
            if message.wanted and message.wanted == self.key:  # the entry chosen before cannot be read now
                self.busy = False
                self.error = message.error
                self.query_one("#ds-report", Static).update(f"[b]Cannot use it:[/b] {message.error}")
                self.update_nav()
            return
        if not message.info:
            self.notify(f"{message.path} registers no dataset", severity="warning")
            return
        self.registry, self.entries, self.verdicts = Path(message.path), message.info, {}
        self.say_note(message.why)
        self.state.dataset_info = message.path
        demos = self.query_one("#ds-demos", OptionList)
        options = [Option(f"{name}  (demo)", id=f"demo:{name}") for name in self.demos]
        options.append(Option(clip_left(f"─ {self.registry.parent.name or self.registry.parent}/"
                                        f"{self.registry.name}", LIST_WIDTH), disabled=True))
        options += [Option(entry_prompt(name, entry), id=f"{ENTRY}{name}") for name, entry in self.entries.items()]
        demos.set_options(options)
        wanted = message.wanted if message.wanted.removeprefix(ENTRY) in self.entries else \
            f"{ENTRY}{next(iter(self.entries))}"
        self.start(wanted)
        demos.highlighted = demos.get_option_index(wanted)
        demos.focus()

    def say_note(self, text: str) -> None:
        note = self.query_one("#ds-note", Static)
        note.update(Text(f"{text}\n", style="italic"))  # a blank line before the report
        note.display = bool(text)

    def _set_verdict(self, key: str, verdict: tuple[str, str]) -> None:
        name = key.removeprefix(ENTRY)
        if name not in self.entries:
            return
        self.verdicts[name] = verdict
        with contextlib.suppress(Exception):  # the list was rebuilt for another registry meanwhile
            self.query_one("#ds-demos", OptionList).replace_option_prompt(
                key, entry_prompt(name, self.entries[name], verdict))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "register":
            return not self.register_refusal()
        return super().check_action(action, parameters)

    def register_refusal(self) -> str:
        """Why ^g cannot register what is chosen now ("" when it can): the core's rule (every record
        usable, the data loadable as a whole), said before the key is offered rather than after."""
        if not self.key or self.key.startswith("demo:"):
            return "a demo is registered already; type a file of yours to register it"
        if self.key.startswith(ENTRY):
            return "it is registered already; Next uses it as it is"
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
        if key.startswith(ENTRY):
            self._start_entry(key)
            return
        self.say_note("")  # a demo or a file of the person's: the registry's note no longer applies
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

    def _start_entry(self, key: str) -> None:
        """An entry of the listed dataset_info.json: checked through it, as LLaMA-Factory reads it."""
        name = key.removeprefix(ENTRY)
        entry = self.entries[name]
        self.state.dataset_file, self.state.dataset_name = key, name
        self.state.dataset_info = str(self.registry)
        self.state.dataset_ok = False
        self.query_one("#ds-preview", Static).update("")
        remote = remote_key(entry)
        if remote:  # LLaMA-Factory fetches it when training starts: nothing here to read
            self.busy = False
            said = Text.assemble((name, "bold"), f" ({entry_kind(entry)}): its data comes from {remote} "
                                 f"{entry[remote]!r}. ", ("Not checked locally:", "italic"), " LLaMA-Factory "
                                 "fetches it when training starts, so the machine that trains must reach it.")
            self.query_one("#ds-report", Static).update(said)
            self.changed()
            return
        self.query_one("#ds-progress", ProgressBar).update(progress=0)
        self.query_one("#ds-report", Static).update(Text(f"Validating {name} through its entry for "
                                                         f"{self.state.stage}…"))
        self.update_nav()
        self._validate(key, None, self.state.stage, (name, entry, self.registry.parent))

    @work(thread=True, exclusive=True, exit_on_error=False, group="dataset")
    def _validate(self, key: str, path: Path | None, stage: str,
                  registered: tuple[str, Any, Path] | None = None) -> None:
        """``path`` (a file or folder), or ``registered``: (name, entry, dataset_dir) of a dataset_info.json
        entry, read through the core function `minicpm-tui validate --dataset-info` uses, with the media
        rules of the chosen model's template in the LLaMA-Factory written for (step 1)."""
        from minicpm_tui.core.datasets import validate_file

        last = [0.0]

        def progress(done: float, total: float | None = None, *_: Any) -> None:
            now = time.monotonic()
            if now - last[0] > 0.1 and total:  # merge bursts: ten updates a second at most
                last[0] = now
                self.post_message(self.Progress(float(done) / float(total)))

        try:
            if registered is None:
                report = validate_file(path, stage=stage, progress=progress)
            else:
                from minicpm_tui.core.datasets.entry import validate_registered
                from minicpm_tui.core.datasets.media import entry_maps_media, may_count
                from minicpm_tui.tui.build import target_facts

                name, entry, dataset_dir = registered
                template = model = None
                chosen = self.state.hparams.get("template")
                # only then does the template matter: media to read, or a chosen one that counts placeholders
                if entry_maps_media(entry) or may_count(chosen if isinstance(chosen, str) else None):
                    template, model = self.model_template()
                # Written for another machine's LLaMA-Factory (step 1): read as that release reads it, with its
                # templates' media, as the preflight against it will (not as the one installed here would).
                report = validate_registered(name, entry, dataset_dir, stage=stage, template=template,
                                             model=model, target=target_facts(self.state), progress=progress)
        except Exception as exc:
            self.post_message(self.Validated(key, None, one_line(exc)))
            return
        self.post_message(self.Validated(key, report, None))

    def model_template(self) -> tuple[str, str]:
        """(the template the chosen model trains with, the model's name); a worker's call (it may ask
        the training Python's LLaMA-Factory which templates it has)."""
        from minicpm_tui.core import writers
        from minicpm_tui.core.models import load_model
        from minicpm_tui.core.recipe import Recipe
        from minicpm_tui.tui.build import target_templates

        arch = load_model(self.state.model or "MiniCPM4-0.5B")
        chosen = self.state.hparams.get("template")
        recipe = Recipe(model=arch.name, **({"template": chosen} if isinstance(chosen, str) and chosen else {}))
        try:  # the LLaMA-Factory the run is written for (step 1), by default the installed one
            templates = target_templates(self.state)
        except Exception:  # its report cannot be read (said at step 1): our own templates
            templates = []
        return writers.choose_template(recipe, arch.chat_format, templates)[0], arch.name

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
        if message.key.startswith(ENTRY):
            self._set_verdict(message.key, entry_verdict(message.report, message.error))
        if message.error:
            out.update(f"[b]Cannot use it:[/b] {message.error}")
        else:
            data = message.report.to_json()
            out.update(render_validation(data, loads=message.report.file_error is None))
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
            from minicpm_tui.core.datasets import preview_records
            from minicpm_tui.core.models import load_model
            from minicpm_tui.core.tinymodel import tiny_model_dir

            template, _ = self.model_template()
            chat_format = load_model(self.state.model or "MiniCPM4-0.5B").chat_format
            items = preview_records(report, tiny_model_dir(chat_format), template, n=2, cutoff_len=256)
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
        if self.key.startswith(ENTRY) and not self.busy and self.error is None and \
                remote_key(self.entries.get(self.key.removeprefix(ENTRY))):
            return True  # fetched by LLaMA-Factory at start: nothing here to check
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
        if self.report.invalid:
            # Short, beside Next at 80 columns: the first unusable record is listed in the pane. A registered
            # entry stops here too: the write's preflight refuses any unusable record (and a placeholder
            # count that does not match its media stops LLaMA-Factory itself), so going on only delays that.
            self.blocked_reason = (f"{self.report.invalid:,} of {self.report.records:,} records unusable: fix "
                                   + ("them to register" if not self.state.dataset_name else "them first"))
            return False
        if not self.state.dataset_name:
            self.blocked_reason = "register it (^g) under a name"
            return False
        return True

    def palette_commands(self):
        from textual.app import SystemCommand

        yield SystemCommand("dataset: browse for a file", "A file tree", self.action_browse)
        yield SystemCommand("dataset: pick a registered dataset", "An entry of an existing dataset_info.json, "
                            "used as it is registered", self.action_pick_registered)
        if self.check_action("register", ()):
            yield SystemCommand("dataset: register", "In the dataset_info.json beside the file",
                                self.action_register)
