"""Step 6: the run directory's files (tree + highlighted contents), preflight, and Write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.syntax import Syntax
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Static, Tree

from minicpm_tui.tui import keys
from minicpm_tui.tui.build import build_recipe, default_out_dir, recipe_digest
from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.widgets.field import Field
from minicpm_tui.tui.widgets.render import one_line, render_preflight

LEXERS = {".yaml": "yaml", ".json": "json", ".sh": "bash", ".sbatch": "bash", ".py": "python", ".md": "markdown"}


def by_hand_commands(run_dir: str, target: str = "", bundled: bool = False) -> str:
    """The commands to run it later; ``target``: written for another machine's LLaMA-Factory (lf_target),
    whose checks and training happen there; ``bundled``: the data travel in its data/."""
    from shlex import quote

    d = quote(run_dir)
    if target:
        what = "its data in data/, the model" if bundled else "data and model"
        return (f"# written for {target}: copy it to the machine that trains ({what}\n"
                "# at the same paths), then there: the checks left, a detached launch, the monitor\n"
                f"minicpm-tui run --check {d}\nminicpm-tui run {d}\nminicpm-tui monitor {d}\n"
                f"TRAIN_PYTHON=/path/to/python bash {d}/single_node.sh\n")
    return ("# later, by hand: a CPU proof (~1 min), a detached launch,\n"
            "# reattaching the monitor, and the same without minicpm-tui\n"
            f"minicpm-tui smoke {d}\nminicpm-tui run {d}\nminicpm-tui monitor {d}\nbash {d}/single_node.sh\n")


def overwrite_question(target: Path, names: list[str]) -> tuple[str, str]:
    """What to ask before writing into a folder that is not empty, and the answer that writes."""
    if (target / "generated.json").is_file():
        return (f"{target} already exists. Rewrite its generated files? (output/ and logs are kept; "
                "one you edited by hand is backed up first)",
                "Rewrite")
    # Not a run directory: a project folder, say; its README.md would be replaced without a copy.
    replaced = sorted(name for name in names if (target / name).exists())
    shown = ", ".join(replaced[:4]) + (f" and {len(replaced) - 4} more" if len(replaced) > 4 else "")
    what = f"replaces your {shown} (a copy of each is kept beside it)" if replaced else "puts its files among yours"
    return (f"{target} is not a minicpm-tui run directory (no generated.json). Writing the run there {what}. "
            "Write there anyway?", "Write there")


class ReviewScreen(WizardStep):
    STEP = 5
    HELP_TITLE = "6 Review and write"
    HELP = """
What will be written, file by file (pick one in the tree to read it), rendered by the same code as
`minicpm-tui generate`. Ctrl+W writes the run directory; an existing one is only rewritten after you
confirm. Then the preflight runs: the YAML through LLaMA-Factory's own parser, the datasets through
the validator, the DeepSpeed config through DeepSpeed's model. Written for another machine's
LLaMA-Factory (step 1), train.yaml's keys and template are checked against that one, and the preflight
says what is left to `minicpm-tui run --check` there. Ctrl+L carries the datasets' files in the run
directory (data/, hard links where possible) instead of naming them by their paths here, so the folder
can be copied to the machine that trains as it is. A model given by its path on this machine is not
carried: it is read at that same path there, which the line "model" then says (copy it there, or name
it by its hub id at step 2). The commands to run it by hand later are shown too.
"""
    BINDINGS = [*WizardStep.BINDINGS, *keys.REVIEW]

    class Rendered(Message):
        def __init__(self, files: dict[str, str] | None, resolved: Any, error: str | None) -> None:
            super().__init__()
            self.files = files
            self.resolved = resolved
            self.error = error

    class Written(Message):
        def __init__(self, run_dir: str, digest: str, report: Any, error: str | None,
                     backups: list[str] | None = None) -> None:
            super().__init__()
            self.run_dir = run_dir
            self.backups = backups or []  # copies of the user's files it replaced (edited, or of a folder that was no run)
            self.digest = digest
            self.report = report  # core.preflight's, when generate() got that far
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, str] = {}
        self.error: str | None = None
        self.busy = True
        self.written = self.stale = False  # check_written() on mount, once the run directory's field exists

    def body(self) -> ComposeResult:
        with Vertical(classes="body"):
            with Horizontal(classes="field"):
                yield Label("run directory")
                yield Field(self.state.out_dir or default_out_dir(self.state), id="out-dir", compact=True)
                yield Static("^w writes it", classes="fhint", id="write-hint")
            with Horizontal(classes="field"):
                yield Label("data files")
                yield Static(self.bundle_text(), classes="fhint", id="bundle-hint")
            with Horizontal(classes="field", id="model-row") as row:  # shown for a model path going elsewhere
                row.display = False
                yield Label("model")
                yield Static("", classes="fhint", id="model-hint")
            with Horizontal():
                with Vertical(classes="pane", id="files") as files:
                    files.border_title = "Files"
                    yield Tree("run dir", id="file-tree")
                with VerticalScroll(classes="pane", id="file-view") as view:
                    view.border_title = "Rendering…"
                    yield Static("", id="file-text")

    def on_mount(self) -> None:
        self.check_written()
        if self.stale:
            self.query_one("#write-hint", Static).update("changed since written")
        super().on_mount()
        self.query_one("#file-tree", Tree).focus()
        self._render_files()

    @work(thread=True, exclusive=True, exit_on_error=False, group="render")
    def _render_files(self) -> None:
        try:
            from minicpm_tui.core.writers import render

            files, resolved = render(build_recipe(self.state))
        except Exception as exc:
            self.post_message(self.Rendered(None, None, one_line(exc)))
            return
        self.post_message(self.Rendered(files, resolved, None))

    def say_model(self, resolved: Any) -> None:
        """A model named by its path here, in a run directory that goes to another machine (written for its
        LLaMA-Factory, or its data carried): that path must hold it there too. Said, not refused."""
        from minicpm_tui.core.writers import model_path_note

        note = model_path_note(resolved.model_name_or_path, resolved.elsewhere, self.state.bundle_data, tui=True) \
            if resolved is not None else None
        self.query_one("#model-row").display = bool(note)
        self.query_one("#model-hint", Static).update(note or "")

    def on_review_screen_rendered(self, message: Rendered) -> None:
        self.busy = False
        self.error = message.error
        view = self.query_one("#file-view")
        text = self.query_one("#file-text", Static)
        if message.error:
            self.say_model(None)
            view.border_title = "Cannot write this recipe"
            text.update(f"[b]{message.error}[/b]\n\nGo back (Esc) and change the step it names.")
        else:
            self.files = message.files or {}
            self.say_model(message.resolved)
            tree = self.query_one("#file-tree", Tree)
            tree.clear()
            tree.root.expand()
            for name in self.files:
                tree.root.add_leaf(name, data=name)
            tree.root.add_leaf("commands", data="#commands")
            self.show("train.yaml" if "train.yaml" in self.files else next(iter(self.files), "#commands"))
        self.update_nav()

    @on(Tree.NodeHighlighted, "#file-tree")
    def file_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data:
            self.show(str(event.node.data))

    def show(self, name: str) -> None:
        view = self.query_one("#file-view")
        text = self.query_one("#file-text", Static)
        if name == "#commands":
            view.border_title = "Run it by hand"
            commands = by_hand_commands(self.out_dir(), self.target_name(), self.state.bundle_data)
            text.update(Syntax(commands, "bash", theme="ansi_dark", word_wrap=True))
            return
        view.border_title = name
        body = self.files.get(name, "")
        text.update(Syntax(body, LEXERS.get(Path(name).suffix, "text"), theme="ansi_dark", word_wrap=True,
                           line_numbers=False))

    def target_name(self) -> str:
        """The LLaMA-Factory chosen at step 1 to write for, in a few words ("" for this machine's)."""
        from minicpm_tui.core.lftarget import looks_like_release

        value = self.state.lf_target
        if not value:
            return ""
        return f"LLaMA-Factory {value}" if looks_like_release(value) else f"the LLaMA-Factory saved in {Path(value).name}"

    def out_dir(self) -> str:
        return self.query_one("#out-dir", Input).value.strip() or default_out_dir(self.state)

    # -- the data files: named by their paths here, or carried in data/ (the recipe's bundle_data) ----------
    def bundle_text(self) -> str:
        if self.state.bundle_data:
            return "carried in the run directory's data/ (hard links): it can be moved; ^l names them by path"
        where = "; writing for another machine, ^l carries them" if self.state.lf_target else \
            "; ^l carries them in data/ to move the run"
        return f"named by their paths on this machine{where}"

    def action_bundle(self) -> None:
        self.state.bundle_data = not self.state.bundle_data
        self.query_one("#bundle-hint", Static).update(self.bundle_text())
        self.check_written()
        self.busy = True
        self._render_files()
        self.changed()

    def check_written(self) -> None:
        """Is the run directory named here written, from the choices as they are now (else stale)?"""
        state = self.state
        here = bool(state.run_dir) and Path(state.run_dir) == Path(self.out_dir()).expanduser().absolute()
        same = here and state.run_digest == recipe_digest(state)
        self.written, self.stale = same, here and not same

    @on(Input.Changed, "#out-dir")
    def out_changed(self, event: Input.Changed) -> None:
        # The default is not kept: it follows the run name when the model, method or stage change.
        value = event.value.strip()
        self.state.out_dir = "" if value == default_out_dir(self.state) else value
        self.check_written()
        self.changed()

    # -- write ------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "write":
            return bool(self.files) and not self.busy
        return super().check_action(action, parameters)

    def action_write(self) -> None:
        if not self.check_action("write", ()):
            return
        target = Path(self.out_dir()).expanduser().absolute()
        if target.is_dir() and any(target.iterdir()):
            from minicpm_tui.tui.screens.confirm import ConfirmScreen

            def answer(yes: bool | None) -> None:
                if yes:
                    self.write(target, force=True)

            question, yes = overwrite_question(target, list(self.files))
            self.app.push_screen(ConfirmScreen(question, yes=yes, no="Cancel", danger=True), answer)
            return
        self.write(target, force=False)

    def write(self, target: Path, force: bool) -> None:
        self.busy = True
        self.query_one("#write-hint", Static).update("writing; preflight running…")
        self.update_nav()
        self._write(target, force, recipe_digest(self.state))

    @work(thread=True, exclusive=True, exit_on_error=False, group="write")
    def _write(self, target: Path, force: bool, digest: str) -> None:
        # generate() runs the preflight itself, on the files before they are moved into place: its
        # report is the one shown (a second preflight would double the ~20 s this takes).
        reports: list[Any] = []
        backups: list[Any] = []
        try:
            from minicpm_tui.core.writers import generate

            generate(build_recipe(self.state), target, force=force, reports=reports, backups=backups)
        except Exception as exc:
            self.post_message(self.Written(str(target), digest, reports[0] if reports else None, one_line(exc)))
            return
        self.post_message(self.Written(str(target), digest, reports[0] if reports else None, None,
                                       [copy.name for _, copy in backups]))

    def on_review_screen_written(self, message: Written) -> None:
        self.busy = False
        hint = self.query_one("#write-hint", Static)
        report = message.report
        if report is not None:
            self.query_one("#file-view").border_title = "Preflight"
            self.query_one("#file-text", Static).update(
                render_preflight(report, by_hand_commands(message.run_dir, self.target_name(),
                                                          self.state.bundle_data)))
        if message.error:
            hint.update("not written: preflight found problems" if report is not None and not report.ok
                        else "not written")
            self.notify(message.error, severity="error", timeout=10)
        else:
            self.written, self.stale = True, False
            self.state.run_dir = message.run_dir
            self.state.run_digest = message.digest
            hint.update("written; preflight passed" + (" here" if self.state.lf_target else ""))
            kept = f"; your replaced files were kept as {', '.join(message.backups)}" if message.backups else ""
            self.notify(f"wrote {message.run_dir}{kept}")
        self.changed()

    def ready(self) -> bool:
        if self.busy:
            self.blocked_reason = "working…"
            return False
        if not self.written:
            self.blocked_reason = ("changed since written: ^w rewrites it" if self.stale
                                   else "^w writes the run directory")
            return False
        return True

    def palette_commands(self):
        from textual.app import SystemCommand

        if self.check_action("write", ()):
            yield SystemCommand("review: write the run directory", "Asks before overwriting", self.action_write)
        yield SystemCommand("review: " + ("name the data files by path" if self.state.bundle_data else
                                          "carry the data files in the run directory"),
                            "data/ in the run directory, so it can be moved to the machine that trains",
                            self.action_bundle)
