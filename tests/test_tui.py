"""Pilot tests of the TUI: the whole wizard to a written run directory, drafts, keys, the monitor."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tui_util import at_step, demo_state, settle

from minicpm_tui.tui import keys
from minicpm_tui.tui.app import STEPS, MiniCPMApp
from minicpm_tui.tui.state import WizardState, load_draft, save_draft

SIZE = (80, 24)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def pane_text(app, selector: str) -> str:
    """All that a Static holds (also what its pane scrolls out of view), as plain text on one line."""
    import io

    from rich.console import Console

    console = Console(width=400, file=io.StringIO(), color_system=None)
    with console.capture() as captured:
        console.print(app.screen.query_one(selector).content)
    return " ".join(captured.get().split())


def screen_name(app) -> str:
    return type(app.screen).__name__


async def until_polled(app, pilot) -> None:
    """Wait until the monitor screen has read the run's losses (a few polls at most)."""
    for _ in range(20):
        await settle(app, pilot)
        if app.screen.snap is not None and app.screen.snap.losses:
            return
        await pilot.pause(0.2)


async def type_in(app, pilot, selector: str, value: str) -> None:
    """Type a value into an input box and press Enter, then wait for what it starts."""
    box = app.screen.query_one(selector)
    box.focus()
    box.value = value
    await pilot.press("enter")
    await settle(app, pilot)


def test_every_binding_has_an_id_and_description():
    ids = [b.id for group in keys.ALL.values() for b in group]
    assert all(ids) and all(b.description and b.tooltip for g in keys.ALL.values() for b in g)
    assert "ctrl+b" not in {b.key for g in keys.ALL.values() for b in g}  # the tmux prefix


def test_draft_round_trip(no_draft):
    state = WizardState(step=3, model="MiniCPM3-4B", hparams={"learning_rate": 2e-5})
    path = save_draft(state)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded, when = load_draft()
    assert loaded == state and when > 0


def test_tui_process_never_imports_the_training_stack():
    code = ("import sys; import minicpm_tui.tui.app as a; from minicpm_tui.tui.app import screen_class, STEPS\n"
            "[screen_class(s) for _, _, s in STEPS]\n"
            "import minicpm_tui.tui.screens.monitor, minicpm_tui.tui.screens.runs\n"
            "bad = [m for m in ('torch','transformers','deepspeed','llamafactory','datasets','peft','trl') "
            "if m in sys.modules]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_first_screen_needs_no_yaml_parser():
    # Startup: the first screen lists the hardware presets from the folder; YAML is read later,
    # in the probe worker, after the first frame.
    code = ("import sys; from minicpm_tui.tui.screens.hardware import HardwareScreen, hardware_presets\n"
            "assert '1x-rtx4090' in hardware_presets()\n"
            "print([m for m in ('yaml', 'minicpm_tui.core.probe', 'pynvml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_gc_is_back_on_after_the_first_frame(no_draft):
    import gc

    from minicpm_tui.tui import gc_paused_for_startup

    assert gc.isenabled()
    with gc_paused_for_startup():
        assert not gc.isenabled()
        app = MiniCPMApp(use_draft=False)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert gc.isenabled()  # the app resumed it once its first frame was drawn
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused_for_startup():
        raise RuntimeError("a start that fails")
    assert gc.isenabled()


async def test_next_is_hidden_until_the_step_is_ready(no_draft):
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert screen_name(app) == "HardwareScreen"
        assert app.screen.check_action("next", ()) is True
        assert app.screen.check_action("back", ()) is False  # first step: no Back in the footer
        assert "1x Tesla T4" in screen_text(app)


async def test_a_key_pressed_at_once_is_not_undone_by_the_first_probe(no_draft):
    # The probe starts after the first frame; a preset chosen before then must win.
    app = MiniCPMApp(use_draft=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down")
        await settle(app, pilot)
        assert app.state.hardware == "preset:1x-a10-24gb"
        assert "1x NVIDIA A10" in screen_text(app) and "No NVIDIA GPU" not in screen_text(app)
        assert app.screen.check_action("next", ()) is True


def shown_in(app, widget) -> str:
    """What the terminal shows of a widget's text now: its rows' columns, joined (a cut one lacks words)."""
    lines, r = screen_text(app).splitlines(), widget.region
    return " ".join(" ".join(lines[y][r.x:r.x + r.width].split()) for y in range(r.y, r.y + r.height)).strip()


async def test_hparams_show_the_focused_fields_whole_hint(no_draft):
    from minicpm_tui.core.recipe import OPTIONS_BY_NAME

    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb", model="MiniCPM4-0.5B"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto_step(4)
        await settle(app, pilot)
        assert screen_name(app) == "HparamsScreen"
        app.screen.query_one("#hp-cutoff_len").focus()
        await pilot.pause()
        hint = app.screen.query_one("#hint-cutoff_len")
        assert shown_in(app, hint) == OPTIONS_BY_NAME["cutoff_len"].help
        await pilot.press("end", "x")  # a refused value: the reason replaces the hint, whole
        await pilot.pause()
        assert "cutoff_len" in app.screen.problems
        assert shown_in(app, hint) == " ".join(app.screen.problems["cutoff_len"].split())
        # Focused and refused, the value stays readable in its one row (no box drawn over it).
        row = next(line for line in screen_text(app).splitlines() if "cutoff_len " in line)
        assert "x" in row[:34] and "▔" not in row, row


@pytest.mark.parametrize("answer", ["continue", "escape"])  # Esc, closing the question, must not delete it
async def test_draft_is_offered_again(no_draft, answer):
    save_draft(WizardState(step=1, hardware="preset:1x-t4-16gb", model="MiniCPM-2B"))
    app = MiniCPMApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert screen_name(app) == "ConfirmScreen"
        await (pilot.click("#yes") if answer == "continue" else pilot.press("escape"))
        await settle(app, pilot)
        assert screen_name(app) == "ModelScreen"
        assert app.state.model == "MiniCPM-2B"
        # Back to step 1, the app's first screen (kept under the others): it shows the draft's
        # hardware, not what it probed before the draft was taken up.
        await pilot.press("escape")
        await settle(app, pilot)
        assert screen_name(app) == "HardwareScreen" and len(app.screen_stack) == 1
        assert app.state.hardware == "preset:1x-t4-16gb" and app.state.model == "MiniCPM-2B"
        assert "1x Tesla T4" in screen_text(app)
        assert app.screen.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert screen_name(app) == "ModelScreen" and len(app.screen_stack) == 2


async def test_f1_help_lists_the_screen_keys(no_draft):
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("f1")
        await pilot.pause()
        assert screen_name(app) == "HelpScreen"
        assert "Re-probe" in app.screen.text or "Probe this machine" in app.screen.text
        await pilot.press("escape")
        assert screen_name(app) == "HardwareScreen"


async def test_f1_help_shows_remapped_keys_and_agrees_with_textuals_active_bindings(no_draft):
    """F1 reads the screen's and app's declared BINDINGS (public API), the keymap applied: each key that works
    now is the one Textual's own Screen.active_bindings has for it, and a remapped key is shown remapped."""
    from minicpm_tui.core.paths import config_dir
    from minicpm_tui.tui.screens.help import help_keys, help_markdown

    keymap = config_dir() / keys.KEYMAP_NAME
    keymap.parent.mkdir(parents=True, exist_ok=True)
    keymap.write_text(json.dumps({"wizard.next": "f8,ctrl+right", "app.help": "f2"}), encoding="utf-8")
    try:
        app = MiniCPMApp(use_draft=False, state=demo_state())
        async with app.run_test(size=SIZE) as pilot:
            await at_step(app, pilot, 2)  # the Dataset step: its own keys, some not available yet
            rows = {does: (shown, why) for shown, does, why in help_keys(app.screen)}
            assert rows["Go to the next step (when this one is complete)"][0] == "f8 / ^→"
            assert rows["Help for this screen and its keys"][0] == "f2"
            active = {(app.get_key_display(b.binding), b.binding.tooltip) for b in app.screen.active_bindings.values()
                      if b.enabled and b.binding.id in keys.IDS}
            assert active, app.screen.active_bindings
            for shown, tooltip in active:
                listed = next((row for does, row in rows.items() if does == tooltip), None)
                assert listed is not None and shown in listed[0].split(" / ") and listed[1] is None, (shown, rows)
            assert rows[keys.DATASET[0].tooltip] == ("^o", None)  # Browse: its own key, available
            text = help_markdown(app.screen)
            assert text.startswith("# 3 Dataset") and "| `f2` | Help for this screen and its keys |" in text
            assert '| `^p` | Command palette: every action as "area: action" |' in text
            await pilot.press("f2")
            await pilot.pause()
            assert screen_name(app) == "HelpScreen" and "`f8 / ^→`" in app.screen.text
    finally:
        keymap.unlink()


def _demo_sft() -> str | None:
    from minicpm_tui.tui.screens.dataset import demo_datasets

    names = [n for n in demo_datasets() if "sft" in n]
    return names[0] if names else None


async def test_wizard_walk_to_a_written_run_directory(no_draft, tmp_path):
    """Keyboard only: preset hardware, the default model, the demo SFT set, the plan, defaults, write."""
    if _demo_sft() is None:
        pytest.skip("the demo datasets (issue 4) are not in data/ yet")
    app = MiniCPMApp()  # fresh home: no draft to offer, and this walk's draft is saved
    out = tmp_path / "run one"
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        # 1 Hardware: walk the list to a preset with the arrow keys; Enter on it moves on.
        from minicpm_tui.tui.screens.hardware import hardware_presets

        for _ in range(hardware_presets().index("1x-rtx4090") + 1):
            await pilot.press("down")
        await settle(app, pilot)
        assert app.state.hardware == "preset:1x-rtx4090"
        await pilot.press("enter")
        await settle(app, pilot)
        # 2 Model: the catalogue's first model is highlighted; LoRA SFT by default.
        assert screen_name(app) == "ModelScreen"
        assert app.screen.arch is not None
        await pilot.press("ctrl+n")
        await settle(app, pilot, 6)
        # 3 Dataset: the demo for the stage is validated in the background.
        assert screen_name(app) == "DatasetScreen"
        assert app.state.dataset_name == _demo_sft()
        assert app.screen.report is not None and app.screen.report.to_json()["valid"] > 0
        await pilot.press("ctrl+n")
        await settle(app, pilot, 6)
        # 4 Plan: the recommendation and its memory terms.
        assert screen_name(app) == "PlanScreen"
        assert app.screen.error is None, app.screen.error
        assert app.state.plan["micro_batch"] >= 1
        # An override that cannot be coerced never reaches the recipe.
        app.screen.override("ov-micro_batch", "zero")
        assert "micro_batch" not in app.state.plan_overrides
        assert app.screen.check_action("next", ()) is False  # until it is fixed
        app.screen.override("ov-micro_batch", "auto")
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        # 5 Hyper-parameters: a bad value blocks Next with the registry's reason.
        assert screen_name(app) == "HparamsScreen"
        app.screen.set_value("hp-learning_rate", "fast")
        assert app.screen.check_action("next", ()) is False
        app.screen.set_value("hp-learning_rate", "2e-4")
        assert app.state.hparams["learning_rate"] == 2e-4
        await pilot.press("ctrl+n")
        await settle(app, pilot, 6)
        # 6 Review: the files as they will be written; then write.
        assert screen_name(app) == "ReviewScreen"
        assert "train.yaml" in app.screen.files, app.screen.error
        app.screen.query_one("#out-dir").value = str(out)
        await pilot.press("ctrl+w")
        await settle(app, pilot, 8)
        assert (out / "train.yaml").is_file() and (out / "single_node.sh").is_file()
        assert app.state.run_dir == str(out.absolute())
        assert "learning_rate: 0.0002" in (out / "train.yaml").read_text()
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert screen_name(app) == "RunScreen"
        assert app.screen.check_action("smoke", ()) is True
        # Esc goes back without losing anything.
        await pilot.press("escape")
        await settle(app, pilot)
        assert screen_name(app) == "ReviewScreen" and app.state.run_dir == str(out.absolute())
    saved, _ = load_draft()
    assert saved.run_dir == str(out.absolute()) and saved.hparams["learning_rate"] == 2e-4


async def test_dataset_step_validates_a_typed_folder(tmp_path):
    """A folder typed in the dataset step is validated by the core as one dataset (LLaMA-Factory's rule)."""
    rec = json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.jsonl").write_text(rec, encoding="utf-8")
    (mixed / "b.csv").write_text("instruction,output\nq,a\n", encoding="utf-8")
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in (1, 2):
        (shards / f"train-{k}.jsonl").write_text(rec * k, encoding="utf-8")
    (shards / ".DS_Store").write_bytes(b"\x00")
    # Neither folder is usable, so no preview (a tokenizer subprocess) starts.
    state = WizardState(hardware="preset:1x-rtx4090", model="MiniCPM4-0.5B", dataset_file=str(mixed))
    app = MiniCPMApp(use_draft=False, state=state)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto_step(2)
        await settle(app, pilot)
        assert screen_name(app) == "DatasetScreen"
        assert app.screen.report.file_error.file == "b.csv"
        box = app.screen.query_one("#ds-file")
        box.focus()
        box.value = str(shards)
        await pilot.press("enter")
        await settle(app, pilot)
        report = app.screen.report
        assert report is not None and app.screen.error is None and report.file == str(shards)
        assert (report.records, len(report.files)) == (3, 2) and report.file_error.file == ".DS_Store"
        assert app.screen.query_one("#ds-name").value == "shards" and not app.state.dataset_ok
        assert ".DS_Store" in screen_text(app) and not app.screen.ready()
        assert "cannot load" in app.screen.blocked_reason


async def test_dataset_step_names_a_misspelt_conversations_key(tmp_path):
    """The wizard validates with the same core as `validate`: the key, the one LLaMA-Factory reads, the fix."""
    conv = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    data = tmp_path / "chats.jsonl"
    data.write_text(json.dumps({"conversation": conv}) + "\n", encoding="utf-8")
    app = MiniCPMApp(use_draft=False, state=demo_state(dataset_name="", dataset_file=str(data)))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        report = app.screen.report
        assert report is not None and report.file_error.field == "conversation"
        assert "did you mean 'conversations'?" in app.screen.register_refusal()
        assert "rename 'conversation' to 'conversations'" in screen_text(app).replace("\n", " ")


async def test_quit_asks_while_a_run_is_live(no_draft, tmp_path):
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.live_run_dir = lambda: tmp_path  # a launched run is still training
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert screen_name(app) == "QuitScreen"
        await pilot.click("#stay")
        await pilot.pause()
        assert screen_name(app) == "HardwareScreen" and app.is_running


@pytest.mark.integration
async def test_monitor_on_a_real_smoke_run(no_draft, tmp_path):
    """The wizard's smoke path (core.smoke + core.runner), then the monitor screen on the finished run."""
    if _demo_sft() is None:
        pytest.skip("the demo datasets (issue 4) are not in data/ yet")
    from minicpm_tui.core.runner import run_status
    from minicpm_tui.core.writers import generate
    from minicpm_tui.tui.build import build_recipe
    from minicpm_tui.tui.screens.run import start_smoke

    state = WizardState(hardware="preset:1x-rtx4090", model="MiniCPM4-0.5B", dataset_name=_demo_sft(),
                        dataset_file=f"demo:{_demo_sft()}")
    run_dir = tmp_path / "smoke-run"
    generate(build_recipe(state), run_dir)
    start_smoke(run_dir)
    deadline = time.time() + 600
    while run_status(run_dir).status in ("starting", "running") and time.time() < deadline:
        time.sleep(1)
    assert run_status(run_dir).status == "finished"
    app = MiniCPMApp(monitor_dir=run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await until_polled(app, pilot)
        snap = app.screen.snap
        assert snap.status == "finished" and snap.losses
        assert f"loss {snap.loss:.4f}" in screen_text(app)
        assert "elapsed 0:00:00" not in screen_text(app)  # the run's duration, not the trainer's few steps
        assert app.screen.check_action("stop", ()) is False  # nothing to stop
        await pilot.press("d")
    assert app.return_code == 0


def test_wizard_refuses_without_a_terminal():
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "interactive terminal" in proc.stderr


def test_steps_are_seven():
    assert [s for s, _, _ in STEPS] == ["hardware", "model", "dataset", "plan", "hparams", "review", "run"]
    json.dumps(WizardState().to_dict())


def _fake_generate(monkeypatch, problems=()):
    """writers.generate with a made-up preflight report (passed, or with these problems): at once."""
    from minicpm_tui.core import preflight, writers

    def generate(recipe, out_dir, force=False, reports=None, **_):
        out = Path(out_dir).expanduser().absolute()
        if out.is_dir() and any(out.iterdir()) and not force:
            raise AssertionError("the wizard rewrote a run directory without asking")
        report = preflight.PreflightReport(out, problems=list(problems), checked=["scripts: bash -n"],
                                           notes=["bf16 is checked on the GPU at launch"])
        if reports is not None:
            reports.append(report)
        report.raise_for_problems()
        out.mkdir(parents=True, exist_ok=True)
        (out / "train.yaml").write_text(f"stage: {recipe.stage}\nlearning_rate: {recipe.learning_rate}\n")
        (out / "generated.json").write_text("{}\n")
        return [out / "train.yaml", out / "generated.json"]

    def no_second_preflight(*_, **__):
        raise AssertionError("generate() ran the preflight already")

    monkeypatch.setattr(writers, "generate", generate)
    monkeypatch.setattr(preflight, "preflight", no_second_preflight)


async def test_a_choice_changed_after_writing_asks_for_a_rewrite(no_draft, tmp_path, monkeypatch):
    """Next from Review (to the Run step, which runs the directory) only while it holds the choices shown."""
    _fake_generate(monkeypatch)
    state = demo_state(out_dir=str(tmp_path / "run"))
    app = MiniCPMApp(use_draft=False, state=state)
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 5)
        await pilot.press("ctrl+w")
        await settle(app, pilot)
        assert app.state.run_dir == str(tmp_path / "run") and app.screen.check_action("next", ()) is True
        await pilot.press("escape")  # 5 Hyper-parameters: a new learning rate
        await settle(app, pilot)
        app.screen.set_value("hp-learning_rate", "3e-5")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert screen_name(app) == "ReviewScreen"
        assert app.screen.check_action("next", ()) is False  # the directory holds the old rate
        assert "changed since written" in screen_text(app)
        await pilot.press("ctrl+w")  # asks before rewriting; the safe answer has the focus
        await pilot.pause()
        assert screen_name(app) == "ConfirmScreen"
        await pilot.click("#yes")
        await settle(app, pilot)
        assert "learning_rate: 3e-05" in (tmp_path / "run" / "train.yaml").read_text()
        assert app.screen.check_action("next", ()) is True


async def test_the_default_run_directory_follows_the_run_name(no_draft):
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 5)
        assert app.screen.out_dir().endswith("minicpm4-0.5b-sft-lora")
        await at_step(app, pilot, 1)
        app.state.method = "full"
        await at_step(app, pilot, 5)
        assert app.screen.out_dir().endswith("minicpm4-0.5b-sft-full")


async def test_a_refused_plan_override_holds_next_without_a_toast_per_key(no_draft):
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 3)
        app.screen.query_one("#ov-micro_batch").focus()
        await pilot.press("ctrl+u", "4")
        await settle(app, pilot)
        assert app.state.plan_overrides["micro_batch"] == 4 and app.state.plan["micro_batch"] == 4
        await pilot.press("x")  # "4x": refused; the plan must not go on with the 4 typed before
        await settle(app, pilot)
        assert app.screen.check_action("next", ()) is False
        assert "micro_batch must be" in screen_text(app) and not list(app._notifications)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert screen_name(app) == "PlanScreen"
        await pilot.press("backspace", "backspace")  # cleared: back to the planner's choice
        await settle(app, pilot)
        assert "micro_batch" not in app.state.plan_overrides and app.screen.check_action("next", ()) is True
        # A plan that cannot be written shows no memory bars (the last good plan's would mislead).
        app.screen.query_one("#ov-gpus").value = "8"  # the preset has one GPU
        await settle(app, pilot)
        assert "Cannot plan this" in screen_text(app) and "peak " not in screen_text(app)


async def test_cutoff_len_set_in_the_plan_or_the_hyper_parameters_is_the_one_shown(no_draft):
    from minicpm_tui.tui.build import recipe_values

    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 3)
        app.screen.query_one("#ov-cutoff_len").focus()
        await pilot.press("ctrl+u", *"4096")
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert screen_name(app) == "HparamsScreen"
        field = app.screen.query_one("#hp-cutoff_len")
        assert field.value == "4096"  # what the plan step set, not the default
        field.focus()
        await pilot.press("ctrl+u", *"2048")
        await pilot.pause()
        assert recipe_values(app.state)["cutoff_len"] == 2048  # the value typed last wins
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.screen.query_one("#ov-cutoff_len").value == "2048"
        assert recipe_values(app.state)["cutoff_len"] == 2048


async def test_hyper_parameters_start_from_the_method_and_stage(no_draft):
    """Full fine-tuning starts at the full-SFT presets' learning rate, not LoRA's ten times higher one."""
    app = MiniCPMApp(use_draft=False, state=demo_state(method="full"))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 4)
        assert app.screen.query_one("#hp-learning_rate").value == "1e-05"
        await at_step(app, pilot, 1)
        app.state.method, app.state.stage = "lora", "dpo"
        await at_step(app, pilot, 4)
        assert app.screen.query_one("#hp-learning_rate").value == "5e-05"
        assert app.screen.query_one("#hp-num_train_epochs").value == "2.0"
        await at_step(app, pilot, 1)
        app.state.method = "full"  # full DPO: no preset; a preference learning rate, not full SFT's
        await at_step(app, pilot, 4)
        assert app.screen.query_one("#hp-learning_rate").value == "5e-07"


async def test_review_shows_the_preflight_of_the_write(no_draft, tmp_path, monkeypatch):
    """The report of generate()'s own preflight, problems and all; the preflight is not run twice."""
    from minicpm_tui.core.preflight import Problem

    _fake_generate(monkeypatch, [Problem("train.yaml", "unknown key", key="lora_rnk", fix="remove it")])
    app = MiniCPMApp(use_draft=False, state=demo_state(out_dir=str(tmp_path / "run")))
    async with app.run_test(size=(120, 40)) as pilot:
        await at_step(app, pilot, 5)
        await pilot.press("ctrl+w")
        await settle(app, pilot)
        text = screen_text(app)
        assert "train.yaml: lora_rnk: unknown key; remove it" in text and "not written" in text
        assert not (tmp_path / "run").exists() and app.screen.check_action("next", ()) is False
        _fake_generate(monkeypatch)
        await pilot.press("ctrl+w")
        await settle(app, pilot)
        text = screen_text(app)
        assert "Preflight passed" in text and "ok scripts: bash -n" in text and "note: bf16" in text
        assert "preflight passed" in text and app.screen.check_action("next", ()) is True


async def test_writing_into_a_folder_that_is_not_a_run_directory_names_what_it_replaces(no_draft, tmp_path,
                                                                                     monkeypatch):
    _fake_generate(monkeypatch)
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    app = MiniCPMApp(use_draft=False, state=demo_state(out_dir=str(project)))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 5)
        await pilot.press("ctrl+w")
        await pilot.pause()
        assert screen_name(app) == "ConfirmScreen"
        assert "not a minicpm-tui run directory" in app.screen.question and "README.md" in app.screen.question
        assert "a copy of each is kept beside it" in app.screen.question  # core.writers.generate backs them up
        assert app.screen.query_one("#yes").label.plain == "Write there"
        await pilot.press("enter")  # the focused answer is Cancel
        await settle(app, pilot)
        assert screen_name(app) == "ReviewScreen" and (project / "README.md").read_text() == "my project\n"


async def test_dataset_step_at_80x24_with_an_empty_folder(no_draft, tmp_path):
    (tmp_path / "empty").mkdir()
    app = MiniCPMApp(use_draft=False, state=demo_state(dataset_file=str(tmp_path / "empty"),
                                                        dataset_name=""))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        text = screen_text(app)
        assert "is an empty folder" in text
        assert "(^o browse):" in text  # the side pane's labels are not cut
        assert not [line for line in text.splitlines() if line.rstrip(" │").endswith(("turns:", "chars:"))]


async def test_the_gpu_table_fits_the_hardware_pane_at_80x24(no_draft):
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:8x-a100-80gb-nvlink"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        text = screen_text(app)
        assert "0 A100-SXM4-80GB 80.0G 79.6G 8.0" in text and "7 A100-SXM4-80GB" in text
        assert "G0 X    NV12 NV12 NV12 NV12 NV12 NV12 NV12" in text and "…" not in text  # nor the link matrix


def _one_run(monkeypatch, run_dir: Path) -> None:
    """The runs registry as holding one finished run."""
    from types import SimpleNamespace

    from minicpm_tui.core import runner

    run = SimpleNamespace(status="finished", progress="3/3 (100%)", started_at=time.time() - 60, age="1m",
                          exit_code=0, run_dir=run_dir)
    monkeypatch.setattr(runner, "list_runs", lambda *a, **k: [run])


async def test_the_runs_list_shows_its_enter_key(no_draft, tmp_path, monkeypatch):
    _one_run(monkeypatch, tmp_path / "run")
    app = MiniCPMApp(use_draft=False, open_runs=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert screen_name(app) == "RunsScreen"
        footer = screen_text(app).splitlines()[-1]
        assert "Monitor" in footer, footer  # not hidden behind the table's own Enter
        assert "finished" in screen_text(app) and " 1m " in screen_text(app)  # the runner's age, as it gives it
        await pilot.press("enter")
        await settle(app, pilot)
        assert screen_name(app) == "MonitorScreen" and app.screen.run_dir == (tmp_path / "run").absolute()
        await pilot.press("escape")  # as everywhere else: back (the run keeps running)
        await pilot.pause()
        assert screen_name(app) == "RunsScreen"


async def test_the_runs_list_forgets_an_ended_run_and_refuses_a_live_one(state_home, tmp_path):
    """x on a finished run drops it from the list (and the registry), every file of it left; on a run still
    working it is refused in one line, and the run stays listed."""
    from _runner_util import kill_run, wait_status, write_script

    from minicpm_tui.core import runner

    done, live = tmp_path / "done", tmp_path / "live"
    write_script(done, "true\n")
    write_script(live, "sleep 60\n")
    try:
        runner.launch(done)
        wait_status(done, ("finished",), 30)
        runner.launch(live)  # the newest: first in the list
        wait_status(live, ("running",), 30)
        files = sorted(p.relative_to(done) for p in done.rglob("*"))
        app = MiniCPMApp(use_draft=False, open_runs=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            assert screen_name(app) == "RunsScreen" and app.screen.row_count() == 2
            assert "x Forget" in screen_text(app).splitlines()[-1]
            assert app.screen.selected() == str(live.resolve())
            await pilot.press("x")
            await settle(app, pilot)
            said = [n.message for n in app._notifications]
            assert len(said) == 1 and said[0].startswith(f"{live.resolve()}: its run is running; stop it first"), said
            assert app.screen.row_count() == 2
            await pilot.press("down", "x")
            await settle(app, pilot)
            said = [n.message for n in app._notifications]
            assert said[-1] == f"forgot {done.resolve()}: no longer listed (its files stay)", said
            assert app.screen.row_count() == 1 and app.screen.selected() == str(live.resolve())
            assert str(done) not in screen_text(app)
        assert sorted(p.relative_to(done) for p in done.rglob("*")) == files
        assert [r.run_dir for r in runner.list_runs(include_missing=True)] == [live.resolve()]
    finally:
        kill_run(done)
        kill_run(live)


async def test_the_runs_list_and_the_monitor_show_a_damaged_manifests_advice(no_draft, tmp_path, monkeypatch):
    """A run whose run_manifest.json is damaged while its processes live is `running` with a note (what is
    wrong, how to stop it, what to do with the manifest): the runs table has no note column, so the note
    never showed there, and the monitor's status line cut it at 80 columns. A * marks the row, the selected
    run's note is wrapped under the table, the monitor wraps it too, in the TUI's words (its x key)."""
    from types import SimpleNamespace

    from _runner_util import kill_run, wait_for, write_script

    from minicpm_tui.core import runner

    run_dir = tmp_path / "damaged"
    write_script(run_dir, "sleep 120\n")
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    try:
        runner.launch(run_dir)
        wait_for(lambda: runner.run_status(run_dir).pid is not None, 15, "launched")
        (run_dir / runner.MANIFEST).write_text('{"attempts": [')
        wait_for(lambda: runner.run_status(run_dir).status == "running", 15, "seen through its processes")
        quiet = SimpleNamespace(status="finished", progress="3/3 (100%)", age="1m", exit_code=0,
                                run_dir=tmp_path / "quiet", note="")
        monkeypatch.setattr(runner, "list_runs", lambda *a, **k: [runner.run_status(run_dir), quiet])
        app = MiniCPMApp(use_draft=False, open_runs=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            text = screen_text(app)
            assert all(len(line.rstrip()) <= 80 for line in text.splitlines())
            joined = " ".join(text.split())
            assert "running *" in text and "finished *" not in text
            assert f"* {runner.MANIFEST}: cannot read the run manifest" in joined, text
            assert "x (Stop run) in the monitor still stops it" in joined and "restore it from a backup" in joined
            assert "minicpm-tui stop" not in joined  # the CLI's words are the CLI's
            await pilot.press("down")  # the other run has no note: its line is empty
            await pilot.pause()
            assert "cannot read the run manifest" not in screen_text(app)
            await pilot.press("up", "enter")
            await settle(app, pilot)
            assert screen_name(app) == "MonitorScreen"
            for _ in range(20):
                if app.screen.snap is not None:
                    break
                await pilot.pause(0.2)
            await settle(app, pilot)
            joined = " ".join(screen_text(app).split())
            assert "x (Stop run) in the monitor still stops it" in joined and "(the run's history is lost)" in joined
            # Stopped (as x does), nothing of it is left: the damage itself, wrapped, where the note was.
            runner.stop(run_dir, grace=0, term_timeout=5)
            app.screen.follower = None  # read the status again now
            app.screen.poll()
            await settle(app, pilot)
            text = screen_text(app)
            joined = " ".join(text.split())
            assert "cannot read the run:" in text and "still stops it" not in joined
            assert "restore it from a backup or delete it" in joined, text
    finally:
        kill_run(run_dir)


async def test_the_runs_list_and_the_monitor_show_a_run_by_hand_that_nobody_watched(no_draft, tmp_path, monkeypatch):
    """A run started by hand that ended unseen, without final results: `ended` (its outcome is not known), with
    the step it reached and a note saying what is known."""
    import os

    from _runner_util import write_fake_trainer, write_script

    from minicpm_tui.core import runner

    run_dir = tmp_path / "hand"
    run_dir.mkdir()
    write_script(run_dir, write_fake_trainer(run_dir))
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    done = subprocess.run(["bash", "single_node.sh"], cwd=run_dir, env={**os.environ, "STEPS": "3", "TOTAL": "5",
                                                                       "CODE": "1"}, capture_output=True, timeout=60)
    assert done.returncode == 1
    monkeypatch.setattr(runner, "list_runs", lambda *a, **k: [runner.run_status(run_dir)])
    app = MiniCPMApp(use_draft=False, open_runs=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        text = screen_text(app)
        joined = " ".join(text.split())
        assert "ended *" in text and "3/5 (60%)" in text, text
        assert "* started by hand and not watched; its last trace in" in joined, text
        await pilot.press("enter")
        await settle(app, pilot)
        assert screen_name(app) == "MonitorScreen"
        await until_polled(app, pilot)
        assert (app.screen.snap.status, app.screen.snap.phase, app.screen.snap.step) == ("ended", "ended", 3)
        assert "how it ended (an error, Ctrl+C, a kill) is not known" in " ".join(screen_text(app).split())
        assert "resumed from step" not in screen_text(app)
        import dataclasses

        app.screen.show_snapshot(dataclasses.replace(app.screen.snap, resumed_from=2))  # as the core tells it
        await pilot.pause()
        assert "ended  ended  resumed from step 2" in screen_text(app)


async def test_the_model_step_does_not_wait_for_the_template_lookup(no_draft, monkeypatch):
    """The first lookup of LLaMA-Factory's templates takes seconds (a subprocess); Next needs only the model."""
    import threading

    from minicpm_tui.core import lfinfo

    release = threading.Event()
    real = lfinfo.lf_info

    def slow_lf_info(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(lfinfo, "lf_info", slow_lf_info)
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb", model="MiniCPM4-0.5B"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.goto_step(1)
        for _ in range(100):
            await pilot.pause(0.05)
            if app.screen.arch is not None:
                break
        try:
            assert app.screen.arch is not None and app.screen.check_action("next", ()) is True
        finally:
            release.set()
        await settle(app, pilot)
        assert "template" in screen_text(app) and app.screen.check_action("next", ()) is True


async def test_the_register_name_follows_the_file_until_one_is_typed(no_draft, tmp_path):
    # Files that do not exist: validated at once, and no preview (a tokenizer subprocess) starts.
    app = MiniCPMApp(use_draft=False, state=demo_state(dataset_file=str(tmp_path / "none.json"), dataset_name=""))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        box, name = app.screen.query_one("#ds-file"), app.screen.query_one("#ds-name")

        async def give(path) -> None:
            box.focus()
            box.value = str(path)
            await pilot.press("enter")
            await settle(app, pilot)

        await give(tmp_path / "first-try.jsonl")
        assert name.value == "first_try"
        await give(tmp_path / "train.jsonl")  # the wrong file was typed first: its name goes with it
        assert name.value == "train"
        name.value = "my_set"
        await give(tmp_path / "other.jsonl")
        assert name.value == "my_set"


async def test_a_draft_that_cannot_be_saved_is_said_once(no_draft, monkeypatch):
    from minicpm_tui.tui import app as app_module

    def cannot(state):
        raise NotADirectoryError(20, "Not a directory", "home/config")

    monkeypatch.setattr(app_module, "save_draft", cannot)
    app = MiniCPMApp(state=WizardState(hardware="preset:1x-t4-16gb"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for _ in range(4):  # each choice saves the draft
            await pilot.press("down")
            await settle(app, pilot)
        assert [n.message for n in app._notifications if "draft" in n.message] == \
            ["could not save the draft: [Errno 20] Not a directory: 'home/config' "
             "(tried again at each change; said once)"]


async def test_tab_then_enter_on_the_method_keeps_the_choice(no_draft):
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb", model="MiniCPM4-0.5B",
                                                        method="full", stage="dpo"))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 1)
        app.screen.query_one("#method").focus()
        await pilot.press("enter")
        assert (app.state.method, app.state.stage) == ("full", "dpo")
        await pilot.press("up", "enter")  # the one above the choice
        assert app.state.method == "lora"
        await pilot.press("tab", "down", "enter")  # stage: the one below dpo
        assert app.state.stage == "kto"


async def test_the_draft_offered_is_kept_until_it_is_answered(no_draft):
    """Quitting (or losing the SSH session) with the offer open keeps the draft for the next start."""
    save_draft(WizardState(step=5, hardware="preset:1x-t4-16gb", model="MiniCPM-2B"))
    app = MiniCPMApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)  # the first probe has loaded behind the question
        assert screen_name(app) == "ConfirmScreen"
        assert load_draft()[0].step == 5
        await pilot.press("ctrl+q")
    saved, _ = load_draft()
    assert (saved.step, saved.model) == (5, "MiniCPM-2B")


async def test_f1_help_lists_the_screens_own_keys_once_even_those_off_now(no_draft):
    """The screen's and the app's bindings, each once, with the reason a key does nothing now; not the
    keys widgets bind for themselves (an option list's paging, Tab focus, Textual's copy)."""
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)  # the dataset step, on a demo: ^g (register) has nothing to do
        await pilot.press("f1")
        await pilot.pause()
        text = app.screen.text
        rows = [line for line in text.splitlines() if line.startswith("| `")]
        assert len([r for r in rows if "palette" in r.lower()]) == 1, rows  # ctrl+p once
        register = next(r for r in rows if r.startswith("| `^g`"))
        assert "*(not now: " in register, register  # listed, and marked
        for internal in ("Page Up", "Scroll Left", "Focus Next", "super+c", "| `↑`", "Select"):
            assert internal not in text, internal
        assert len(rows) == len({r.split("|")[1] for r in rows})  # each key once
        await pilot.press("escape")
        await at_step(app, pilot, 6)  # the run step with nothing written yet: s, l and m are off
        await pilot.press("f1")
        await pilot.pause()
        for key in ("s", "l", "m"):
            row = next(r for r in app.screen.text.splitlines() if r.startswith(f"| `{key}`"))
            assert "not now: no run directory yet" in row, row


def test_core_errors_in_the_tui_name_its_fields_not_cli_flags():
    from minicpm_tui.core.errors import UserError
    from minicpm_tui.tui.widgets.render import one_line

    # A fix the core words for the wizard too is shown as such; else flags become the fields they set.
    err = UserError("a different dataset is already registered as 'x'", where="data/dataset_info.json",
                    fix="pick another --name, or pass --force to replace it", fix_tui="type another name")
    assert one_line(err) == "data/dataset_info.json: a different dataset is already registered as 'x'; " \
                            "type another name"
    assert one_line(UserError("bad", where="--cutoff-len", fix="try --micro-batch 1")) == \
        "cutoff_len (Plan step): bad; try micro_batch 1"
    assert one_line(UserError("bad", where="--learning-rate")) == "learning_rate (Hyper-params step): bad"
    assert str(UserError("bad", where="--gpus", fix="use --gpus 1")) == "--gpus: bad; use --gpus 1"  # the CLI's
    # A flag only pointed to, as in the probe's hint on a machine without a GPU, is left out.
    from minicpm_tui.core.nvml import HINTS, STATUS_NO_LIBRARY
    from minicpm_tui.tui.wording import flags_as_fields

    assert flags_as_fields(HINTS[STATUS_NO_LIBRARY]).endswith("plan with a hardware preset or a saved probe")


async def test_the_tui_says_its_own_controls_in_core_errors(no_draft, tmp_path):
    """Plan, hardware file and dataset statistics: no CLI flag, no "pass a tokenizer"; a folder where a
    saved probe (a file) is wanted is called a folder."""
    app = MiniCPMApp(use_draft=False, state=demo_state(hardware="preset:1x-t4-16gb"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_in(app, pilot, "#hw-file", str(tmp_path))
        # (The command that writes a saved probe is named: it is run on the machine to plan for.)
        assert "is a folder" in app.screen.error and "--hardware" not in app.screen.error, app.screen.error
        assert app.screen.error.startswith("hardware (Hardware step): ")
        app.screen.load("preset:1x-t4-16gb")
        await at_step(app, pilot, 2)
        assert "cutoff len basis: estimate from" in screen_text(app) and "tokenizer" not in screen_text(app)
        await at_step(app, pilot, 3)
        app.screen.query_one("#ov-gpus").value = "3"  # the preset has one GPU
        await settle(app, pilot)
        assert app.screen.error.startswith("gpus (Plan step): 3 GPUs asked for"), app.screen.error
        assert "--" not in app.screen.error and "set gpus to 1 or fewer" in app.screen.error


async def test_register_is_not_offered_for_a_file_without_usable_records(no_draft, tmp_path, monkeypatch):
    from minicpm_tui.tui.screens.dataset import DatasetScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)  # no template subprocess for this
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": []}\n{"conversations": []}\n', encoding="utf-8")  # no turns: unusable
    app = MiniCPMApp(use_draft=False, state=demo_state(dataset_file=str(bad), dataset_name=""))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        assert app.screen.report is not None and app.screen.report.valid == 0
        assert app.screen.check_action("register", ()) is False
        assert "^g" not in screen_text(app).splitlines()[-1]  # not in the footer
        from minicpm_tui.tui.screens.help import help_keys

        why = next(why for shown, _, why in help_keys(app.screen) if shown == "^g")  # F1 says why
        assert why.startswith("cannot register it: 2 of 2 records are not usable (first: record 0"), why
        app.screen.action_register()  # Enter in the name field: refused, with the reason in one line
        await settle(app, pilot)
        said = [n.message for n in app._notifications]
        assert len(said) == 1 and said[0].startswith("cannot register it: ") and "\n" not in said[0], said
        assert "minicpm-tui" not in said[0] and not (tmp_path / "dataset_info.json").exists()
        # One usable record and one not: the reason beside Next fits it at 80 columns.
        good = '{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}\n'
        bad.write_text(good + '{"conversations": []}\n', encoding="utf-8")
        app.screen.start(str(bad))
        await settle(app, pilot)
        assert app.screen.check_action("register", ()) is False
        assert "1 of 2 records unusable: fix them to register" in screen_text(app).splitlines()[-2]


async def test_the_dataset_headline_claims_no_usable_record_when_llamafactory_cannot_load_it(no_draft, tmp_path,
                                                                                              monkeypatch):
    """Each record of a folder reads, but LLaMA-Factory refuses the folder as a whole (a csv beside JSON
    Lines): the headline said "2 usable" while the reason beside Next said it cannot be loaded."""
    from minicpm_tui.tui.screens.dataset import DatasetScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)  # no template subprocess for this
    folder = tmp_path / "mixed"
    folder.mkdir()
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(2)]
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "c.csv").write_text("instruction,output\nq,a\n", encoding="utf-8")
    app = MiniCPMApp(use_draft=False, state=demo_state(dataset_file=str(folder), dataset_name=""))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        screen = app.screen
        assert screen.report.file_error is not None and screen.report.valid == 2  # the records themselves
        report = pane_text(app, "#ds-report")
        assert "2 records, none usable: LLaMA-Factory cannot load it" in report, report
        assert "2 usable" not in report
        assert "c.csv: is a csv file" in report
        assert not screen.ready() and screen.blocked_reason.startswith("LLaMA-Factory cannot load it")
        assert "LLaMA-Factory cannot load it" in screen_text(app).splitlines()[-2]  # beside Next
        (folder / "c.csv").unlink()  # loadable now: both say so
        screen.start(str(folder))
        await settle(app, pilot)
        assert "2 records, 2 usable" in pane_text(app, "#ds-report") and screen.report.file_error is None


async def test_the_run_step_does_not_launch_a_run_directory_written_for_another_machine(no_draft, tmp_path):
    """A run directory written for another machine's LLaMA-Factory trains there: `l` was offered (and
    launched it here, with this machine's LLaMA-Factory). Now the Run step neither offers nor takes it,
    and says why and what to do in the plan's own "written for" words."""
    from test_smoke_support import demo_recipe

    from minicpm_tui.core.lftarget import known_releases
    from minicpm_tui.core.writers import generate, run_dir_written_for

    release = known_releases()[0]
    there, here = tmp_path / "there", tmp_path / "here"
    generate(demo_recipe(lf_target=release), there, preflight=False)
    generate(demo_recipe(), here, preflight=False)
    app = MiniCPMApp(use_draft=False, state=demo_state(lf_target=release, run_dir=str(there), run_digest="1"))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 6)
        screen, note = app.screen, run_dir_written_for(there)
        assert note and note.startswith(f"written for the LLaMA-Factory {release} snapshot")
        assert screen.check_action("launch", ()) is False and screen.why_not("launch") == note
        text = pane_text(app, "#run-text")
        assert "no launch here: it trains on the machine it is written for" in text and note in text, text
        assert "launch the real training" not in text
        assert all(len(line.rstrip()) <= 80 for line in screen_text(app).splitlines())
        footer = screen_text(app).splitlines()[-1]
        assert "Launch" not in footer and "f1 Help" in footer, footer
        assert "run: launch" not in [c.title for c in screen.palette_commands()]
        assert screen.blocked_reason == "s: smoke run"  # beside Next, once the smoke check has answered
        assert "s: smoke run" in screen_text(app).splitlines()[-2]
        await pilot.press("l")
        await settle(app, pilot)
        assert screen_name(app) == "RunScreen" and not (there / "run_manifest.json").exists()
        # Written for this machine's: offered as before.
        app.state.lf_target, app.state.run_dir, app.state.run_digest = "", str(here), "2"
        screen.redraw()
        await settle(app, pilot)
        assert screen.check_action("launch", ()) is True
        assert "launch the real training, detached" in pane_text(app, "#run-text")
        assert "run: launch" in [c.title for c in screen.palette_commands()]


async def test_every_step_fits_80x24_with_f1_help_and_whole_hyper_parameter_hints(no_draft, tmp_path, monkeypatch):
    """The minimum common SSH terminal: each step's footer keeps f1 Help with the most keys it offers (the
    Dataset step with ^g and ^n, the Review step once written), and every hyper-parameter's description
    shows whole without scrolling, also in the fullest form (LoRA DPO)."""
    from minicpm_tui.tui.screens.dataset import DatasetScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)  # no template subprocess for this
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(3)),
                    encoding="utf-8")
    app = MiniCPMApp(use_draft=False, state=demo_state(dataset_file=str(data), dataset_name="",
                                                       out_dir=str(tmp_path / "run")))

    def footer() -> str:
        return screen_text(app).splitlines()[-1]

    async def whole_hints() -> None:
        screen = app.screen
        assert screen_name(app) == "HparamsScreen" and screen.query_one("#hp-form").max_scroll_y == 0
        for option in screen.options:
            assert shown_in(app, screen.query_one(f"#hint-{option.name}")) == option.help, option.name

    async with app.run_test(size=SIZE) as pilot:
        for step in range(7):
            await at_step(app, pilot, step)
            if step == 2:  # registered: Next and ^g both offered
                app.screen.query_one("#ds-name").value = "mine"
                await pilot.press("ctrl+g")
                await settle(app, pilot)
                assert app.state.dataset_name == "mine" and "^n Next" in footer() and "^g Register" in footer()
            if step == 4:
                await whole_hints()
            if step == 5:
                await pilot.press("ctrl+w")
                await settle(app, pilot)
                assert app.screen.written and "^n Next" in footer() and "^l Carry data" in footer()
            assert footer().rstrip().endswith("^p palette") and "f1 Help" in footer(), (step, footer())
            assert all(len(line) <= 80 for line in screen_text(app).splitlines())
        app.state.stage = "dpo"  # lora_rank and pref_beta both: the most rows
        await at_step(app, pilot, 4)
        assert {"lora_rank", "pref_beta"} <= {o.name for o in app.screen.options}
        await whole_hints()
        assert "f1 Help" in footer()


def _finished_run(run_dir: Path, seconds: float) -> Path:
    """A run directory the runner records as finished after ``seconds``, whose trainer clock says
    0:00:00 (as a smoke run's: its three steps take under a second)."""
    out = run_dir / "out"
    out.mkdir(parents=True)
    (run_dir / "train.yaml").write_text("output_dir: out\n")
    (out / "trainer_log.jsonl").write_text(json.dumps(
        {"current_steps": 3, "total_steps": 3, "loss": 2.5, "lr": 1e-4, "epoch": 1.0, "percentage": 100.0,
         "elapsed_time": "0:00:00", "remaining_time": "0:00:00"}) + "\n")
    start = time.time() - 3600
    attempt = {"attempt": 1, "status": "finished", "exit_code": 0, "started_at": start,
               "ended_at": start + seconds}
    (run_dir / "run_manifest.json").write_text(json.dumps(
        {"version": 1, "run_dir": str(run_dir), "output_dir": str(out), "attempts": [attempt], **attempt}))
    return run_dir


async def test_the_run_step_offers_no_export_of_a_smoke_run(no_draft, tmp_path):
    """After the wizard's smoke run (an attempt with TRAIN_YAML=smoke/train.yaml) the Run step offered "run:
    export merged model", as if the training had finished; the monitor now says whose steps those were."""
    run_dir = _finished_run(tmp_path / "run", 60)
    manifest = json.loads((run_dir / "run_manifest.json").read_text())
    manifest["attempts"][0]["train_yaml"] = "smoke/train.yaml"
    (run_dir / "run_manifest.json").write_text(json.dumps(manifest))
    app = MiniCPMApp(use_draft=False, state=demo_state(run_dir=str(run_dir)))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 6)
        assert "open the monitor" in screen_text(app)
        assert "run: export merged model" not in [c.title for c in app.screen.palette_commands()]
        assert "export merged model" not in screen_text(app)
        await pilot.press("m")
        await until_polled(app, pilot)
        assert "the smoke run, a tiny model on the CPU, not the training" in screen_text(app)


async def test_the_monitor_shows_how_long_a_finished_run_took(no_draft, tmp_path):
    app = MiniCPMApp(monitor_dir=_finished_run(tmp_path / "smoke", 83))
    async with app.run_test(size=SIZE) as pilot:
        await until_polled(app, pilot)
        assert app.screen.snap.status == "finished"
        metrics = str(app.screen.query_one("#mon-metrics").render())
        assert "elapsed 0:01:23" in metrics and "eta" not in metrics, metrics


async def test_runs_at_start_writes_no_draft_and_keeps_the_one_there(no_draft):
    from minicpm_tui.tui.state import draft_path

    app = MiniCPMApp(open_runs=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)  # the first probe has loaded under the list
        assert screen_name(app) == "RunsScreen"
        await pilot.press("ctrl+q")
    assert not draft_path().exists()
    save_draft(WizardState(step=4, hardware="preset:1x-t4-16gb", model="MiniCPM-2B"))
    app = MiniCPMApp(open_runs=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert load_draft()[0].step == 4
        await pilot.press("escape")  # closing the list starts the wizard: the draft is offered
        await settle(app, pilot)
        assert screen_name(app) == "ConfirmScreen" and load_draft()[0].step == 4
        await pilot.click("#yes")
        await settle(app, pilot)
        assert screen_name(app) == "HparamsScreen" and app.state.model == "MiniCPM-2B"


async def test_the_run_step_lists_only_the_actions_it_has(no_draft, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    app = MiniCPMApp(use_draft=False, state=demo_state(run_dir=str(run_dir)))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 6)
        text = screen_text(app)
        assert "proves the whole chain on the CPU in a minute" in text and "launch the real training" in text
        assert "open the monitor" not in text and app.screen.check_action("monitor", ()) is False
        assert "run: export merged model" not in [c.title for c in app.screen.palette_commands()]
        _finished_run(run_dir, 60)  # a run was started from it (and has finished)
        app.push_screen(app.runs_screen())  # away and back: the text is drawn again
        await settle(app, pilot)
        await pilot.press("escape")
        await settle(app, pilot)
        assert screen_name(app) == "RunScreen" and "open the monitor" in screen_text(app)
        # A LoRA run that ended: export is offered; it runs `minicpm-tui export` in a worker and shows its one
        # line (here train.yaml names no base model, so a refusal).
        assert "run: export merged model" in [c.title for c in app.screen.palette_commands()]
        assert "run: export merged model: the adapter merged into the base" in screen_text(app)  # said, not hidden
        assert all(len(line.rstrip()) <= 80 for line in screen_text(app).splitlines())
        app.screen.action_export()
        await settle(app, pilot, 6)
        said = [n.message for n in app._notifications if "model_name_or_path" in n.message]
        assert said and said[-1].startswith(f"{run_dir / 'train.yaml'}: model_name_or_path: no base model"), said
        assert app.screen.exporting is False


async def test_export_asks_before_replacing_merged_and_holds_the_launch_while_it_runs(no_draft, tmp_path,
                                                                                      monkeypatch):
    """The CLI refuses an existing RUN_DIR/merged ("pass --force"), which the TUI cannot pass: it asks
    instead. While the export runs (a worker) the Run step says so and holds back the launch, whose training
    would write into the output_dir the export reads. The export call (the CLI subprocess) is replaced at
    its function, so that it ends when the test says; the worker around it is the real one."""
    import threading

    from minicpm_tui.tui.screens import run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _finished_run(run_dir, 60)
    (run_dir / "merged").mkdir()
    calls: list[tuple[Path, bool]] = []
    release = threading.Event()

    def fake_export(where: Path, force: bool = False, on_start=None) -> tuple[bool, str]:
        calls.append((where, force))
        release.wait(30)
        return True, f"merged model written to {run_dir / 'merged'}"

    monkeypatch.setattr(run, "export_run_dir", fake_export)
    app = MiniCPMApp(use_draft=False, state=demo_state(run_dir=str(run_dir)))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 6)
        app.screen.action_export()
        await pilot.pause()
        assert screen_name(app) == "ConfirmScreen" and "merged exists" in screen_text(app)
        await pilot.press("escape")  # keep it: nothing runs
        await pilot.pause()
        assert screen_name(app) == "RunScreen" and not calls and app.screen.exporting is False
        app.screen.action_export()
        await pilot.pause()
        await pilot.click("#yes")
        for _ in range(50):
            if calls:
                break
            await pilot.pause(0.05)
        assert calls == [(run_dir, True)], calls
        assert "Exporting: merging the adapter" in screen_text(app)
        assert app.screen.check_action("launch", ()) is False and "an export is running" in app.screen.why_not("launch")
        assert "run: export merged model" not in [c.title for c in app.screen.palette_commands()]
        # Away to the Review step (the Run screen is replaced) and back while it runs: still said, still held.
        app.goto_step(5)
        await pilot.pause()
        app.goto_step(6)
        await pilot.pause()
        assert screen_name(app) == "RunScreen" and "Exporting: merging the adapter" in screen_text(app)
        assert app.screen.check_action("launch", ()) is False and len(calls) == 1
        release.set()
        await settle(app, pilot)
        assert app.screen.exporting is False and "Exporting" not in screen_text(app)
        (run_dir / "merged" / "config.json").write_text("{}")  # what a real export leaves
        app.screen.on_screen_resume()
        await pilot.pause()
        # The export's own line stands for the merged model (not said twice).
        assert f"Export: merged model written to {run_dir / 'merged'}" in app.screen.intro().plain
        assert "Merged model:" not in app.screen.intro().plain
        assert app.screen.check_action("launch", ())
        assert any(n.message.startswith("merged model written to") for n in app._notifications)


async def test_an_export_outlives_leaving_the_run_step(no_draft, tmp_path):
    """The real `minicpm-tui export` subprocess in the real worker (a refusal: train.yaml names no base model,
    which is what it costs under a second; a merge needs a trained run). The Run step is left before the
    result can arrive (it needs the event loop, which this test holds until it awaits): the result is said
    on the Review step and shown on the Run step when that is shown again. It is never put in the draft."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _finished_run(run_dir, 60)
    app = MiniCPMApp(use_draft=False, state=demo_state(run_dir=str(run_dir)))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 6)
        app.screen.action_export()
        app.goto_step(5)  # Esc's way back: the Run screen is replaced (its own workers would be cancelled)
        assert app.state.export is not None and app.state.export.running
        await settle(app, pilot, 6)
        assert screen_name(app) == "ReviewScreen"
        refusal = f"{run_dir / 'train.yaml'}: model_name_or_path: no base model"
        said = [n for n in app._notifications if "model_name_or_path" in n.message]
        assert len(said) == 1 and said[0].message.startswith(f"export of run: {refusal}"), said
        assert said[0].severity == "error"
        assert not app.state.export.running and not app.state.export.ok
        assert app.state.export.text.startswith(refusal)
        app.goto_step(6)
        await settle(app, pilot)
        assert screen_name(app) == "RunScreen" and app.screen.exporting is False
        assert f"Export failed: {refusal}" in pane_text(app, "#run-text")
        # It can be tried again from here (the palette offers it), and the draft never holds it.
        assert "run: export merged model" in [c.title for c in app.screen.palette_commands()]
        assert "export" not in app.state.to_dict()
        assert WizardState.from_dict({**app.state.to_dict(), "export": {"run_dir": "x"}}).export is None


FAKE_TRAIN_PYTHON = """#!/bin/sh
# A training Python whose LLaMA-Factory export takes its time: the introspection answers with a shipped
# release snapshot, the export writes part of a model into its temporary folder and then waits; anything
# else is the real Python.
case "$1" in
  *lf_introspect.py) exec "{python}" -c "import json; print('@@LFINFO@@' + json.dumps(json.load(open('{snapshot}'))))";;
  *export_entry.py) echo '{{}}' > "$3/config.json"; echo "$$" > "{pidfile}"; echo "merging"; exec sleep 120;;
  *) exec "{python}" "$@";;
esac
"""


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:  # a zombie has ended
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def test_quitting_while_an_export_runs_asks_then_stops_it_cleanly(no_draft, tmp_path, monkeypatch):
    """Ctrl+Q while the Run step's export (the real `minicpm-tui export` subprocess, in the real worker) is
    merging: a question; Stay keeps it running; Stop ends it: LLaMA-Factory's process is gone, the temporary
    folder beside merged/ is removed and no merged/ appears; then the app quits. The training Python is a
    script whose export writes part of a model and waits, so that it is caught mid-way."""
    import os

    from minicpm_tui.core.lftarget import releases_dir

    run_dir = _finished_run(tmp_path / "run", 60)
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (run_dir / "train.yaml").write_text(f"model_name_or_path: {base}\ntemplate: cpm4\nfinetuning_type: lora\n"
                                        "output_dir: out\n")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (run_dir / "out" / name).write_text("{}")
    pidfile = tmp_path / "export.pid"
    fake = tmp_path / "python"
    fake.write_text(FAKE_TRAIN_PYTHON.format(snapshot=releases_dir() / "0.9.5.json", pidfile=pidfile,
                                             python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("TRAIN_PYTHON", str(fake))
    app = MiniCPMApp(use_draft=False, state=demo_state(run_dir=str(run_dir)))
    try:
        await _quit_during_export(app, run_dir, pidfile)
    finally:  # a failed check leaves nothing running
        for proc in [app.export_process] if app.export_process is not None else []:
            proc.kill()
        if pidfile.is_file() and pidfile.read_text().strip() and _pid_alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), 9)


async def _quit_during_export(app, run_dir: Path, pidfile: Path) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 6)
        app.screen.action_export()
        for _ in range(600):  # the CLI's start and the plan: a few seconds on a busy machine
            if pidfile.is_file() and pidfile.read_text().strip():
                break
            await pilot.pause(0.05)
        merging = int(pidfile.read_text())
        temps = [p for p in run_dir.iterdir() if p.name.startswith(".merged.export-")]
        assert len(temps) == 1 and (temps[0] / "config.json").is_file(), list(run_dir.iterdir())
        cli = app.export_process
        assert cli is not None and cli.poll() is None and _pid_alive(merging)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert screen_name(app) == "ConfirmScreen"
        assert app.screen.question.startswith("An export is running (the merged model of run); quit and stop it?")
        await pilot.press("ctrl+q")  # asked once
        await pilot.pause()
        assert len([s for s in app.screen_stack if type(s).__name__ == "ConfirmScreen"]) == 1
        await pilot.click("#no")  # stay: the export goes on
        await pilot.pause()
        assert screen_name(app) == "RunScreen" and app.is_running and cli.poll() is None and _pid_alive(merging)
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.click("#yes")
        for _ in range(600):
            if not app.is_running:
                break
            await pilot.pause(0.05)
        assert not app.is_running
    assert cli.poll() == 130, cli.returncode
    assert not _pid_alive(merging)
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".merged")] and not (run_dir / "merged").exists()


async def test_the_plan_fits_80x24_when_nothing_fits(no_draft):
    app = MiniCPMApp(use_draft=False, state=demo_state(hardware="preset:1x-t4-16gb", model="MiniCPM3-4B",
                                                        method="full", plan_overrides={"zero_stage": 0,
                                                                                       "offload": "none"}))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 3)
        assert app.screen.fits is False
        lines = screen_text(app).splitlines()
        peak = [line for line in lines if "peak" in line and "NO FIT" in line]
        assert peak and "G/14G" in peak[0], "\n".join(lines)  # the label, the bar and the value in one line
        assert not [line for line in lines if line.strip(" │▄▆█▂").strip() == "NO FIT"]


def _registry(folder: Path) -> Path:
    """A dataset_info.json as an existing LLaMA-Factory setup has them: the user's own field names."""
    folder.mkdir()
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    turns = [{"speaker": "me", "text": "hi"}, {"speaker": "bot", "text": "hello"}]
    chats = [{"turns": turns}, {"turns": [{"speaker": "me"}, {"speaker": "bot", "text": "x"}]}]
    (folder / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chats), encoding="utf-8")
    (folder / "pics.jsonl").write_text(json.dumps({"question": "<image>q", "answer": "a", "pics": ["x.png"]}) + "\n",
                                       encoding="utf-8")
    (folder / "x.png").write_bytes(b"\x89PNG")
    said = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    (folder / "oa.jsonl").write_text(json.dumps({"messages": said}) + "\n", encoding="utf-8")
    info = {
        "qa_renamed": {"file_name": "qa.jsonl", "columns": {"prompt": "question", "response": "answer"}},
        "chat_broken": {"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "turns"},
                        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me",
                                 "assistant_tag": "bot"}},
        "pics": {"file_name": "pics.jsonl", "columns": {"prompt": "question", "response": "answer",
                                                        "images": "pics"}},
        "hub": {"hf_hub_url": "someone/their-data", "formatting": "sharegpt"},
        "oa": {"file_name": "oa.jsonl", "formatting": "openai", "columns": {"messages": "messages"},
               "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                        "assistant_tag": "assistant"}},
    }
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return folder / "dataset_info.json"


async def _pick(app, pilot, name: str) -> None:
    """Highlight an entry in the list, as the arrow keys do, and wait for its validation."""
    listing = app.screen.query_one("#ds-demos")
    listing.highlighted = listing.get_option_index(f"entry:{name}")
    await settle(app, pilot)


async def test_the_dataset_step_picks_a_registered_entry_and_validates_it_as_registered(no_draft, tmp_path,
                                                                                       monkeypatch):
    from minicpm_tui.tui.screens.dataset import DatasetScreen
    from minicpm_tui.tui.screens.filepicker import FilePickerScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)  # no template subprocess for this
    info = _registry(tmp_path / "lf_data")
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        assert app.screen.check_action("pick_registered", ()) is True
        await pilot.press("ctrl+t")
        await pilot.pause()  # (not settle: the file tree's loader worker lives as long as the tree)
        assert isinstance(app.screen, FilePickerScreen) and "dataset_info.json" in screen_text(app)
        app.screen.dismiss(info.parent)  # Enter on the folder holding it
        await settle(app, pilot)
        # The first entry: its renamed columns are read, so it validates; nothing is registered.
        screen = app.screen
        assert screen_name(app) == "DatasetScreen" and screen.key == "entry:qa_renamed"
        assert screen.report.ok and screen.report.valid == 3 and screen.ready(), screen.blocked_reason
        text = screen_text(app)
        for shown in ("qa_renamed", "alpaca", "qa.jsonl", "✓ 3 ok", "chat_broken", "sharegpt",
                      "remote: not checked"):
            assert shown in text, shown
        assert all(len(line) <= 80 for line in text.splitlines())
        assert screen.check_action("register", ()) is False  # registered already: no ^g
        assert (app.state.dataset_info, app.state.dataset_name) == (str(info), "qa_renamed")
        # A broken record: the record and the user's own field name.
        await _pick(app, pilot, "chat_broken")
        assert screen.report.invalid == 1  # (Next as for any data with some unusable records)
        text = screen_text(app)
        assert "record 1" in text and "text" in text and "! 1 bad" in text, text
        # Media for a text template: refused, with the fix.
        await _pick(app, pilot, "pics")
        assert screen.report.file_error is not None and not screen.ready()
        err = screen.report.file_error
        assert (err.record, err.field) == (0, "pics") and "reads no images" in err.message
        assert err.fix.startswith('remove "images" from the entry\'s columns')
        assert "reads no images" in screen_text(app) and "✗ won't load" in screen_text(app)
        # A remote one: listed, not checked here, and Next takes it.
        await _pick(app, pilot, "hub")
        assert screen.report is None and screen.ready() and "Not checked" in screen_text(app)
        await _pick(app, pilot, "qa_renamed")
        assert screen.ready()
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert screen_name(app) == "PlanScreen"
    assert json.loads(info.read_text())["qa_renamed"]["columns"] == {"prompt": "question", "response": "answer"}
    assert sorted(p.name for p in info.parent.iterdir()) == ["chat.jsonl", "dataset_info.json", "oa.jsonl",
                                                             "pics.jsonl", "qa.jsonl", "x.png"]  # none written
    # The recipe names the entry and its folder; generate copies the entry into the run directory.
    from minicpm_tui.core.writers import generate
    from minicpm_tui.tui.build import build_recipe

    recipe = build_recipe(app.state)
    assert recipe.datasets == ["qa_renamed"] and Path(recipe.dataset_dir) == info.parent
    generate(recipe, tmp_path / "run", preflight=False)
    copied = json.loads((tmp_path / "run" / "dataset_info.json").read_text())
    assert copied == {"qa_renamed": {"file_name": str((info.parent / "qa.jsonl").resolve()),
                                     "columns": {"prompt": "question", "response": "answer"}}}


async def test_a_registered_entry_chosen_before_is_validated_again(no_draft, tmp_path, monkeypatch):
    """From a draft (or Back): the registry is listed again, the chosen entry highlighted and validated;
    a dataset_info.json typed in the file box is listed rather than read as data."""
    from minicpm_tui.tui.screens.dataset import DatasetScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)
    info = _registry(tmp_path / "lf_data")
    state = demo_state(dataset_info=str(info), dataset_file="entry:chat_broken", dataset_name="chat_broken")
    app = MiniCPMApp(use_draft=False, state=state)
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        listing = app.screen.query_one("#ds-demos")
        assert listing.highlighted_option.id == "entry:chat_broken" and app.screen.report.invalid == 1
        # An openai entry: read by the installed release's converter; what it adds (or that this release
        # lacks it) is said with the wizard's controls, not a command line.
        await _pick(app, pilot, "oa")
        text = pane_text(app, "#ds-report")
        assert "openai" in text and "minicpm-tui register" not in text and "^g" in text, text
        app.screen.start("demo:demo_sft")
        await settle(app, pilot)
        await type_in(app, pilot, "#ds-file", str(info))  # listed, not read as data
        assert app.screen.key == "entry:qa_renamed" and app.screen.report.ok


async def test_a_dataset_folder_typed_as_data_lists_its_registered_datasets(no_draft, tmp_path, monkeypatch):
    """A folder holding a dataset_info.json (LLaMA-Factory's dataset_dir), typed or browsed to as the data,
    or left in a draft, is not read as data shards (its dataset_info.json would be one): its entries are
    listed as ^t lists them, with a line saying why, and the first is validated through its entry."""
    from minicpm_tui.tui.screens.dataset import DatasetScreen
    from minicpm_tui.tui.screens.filepicker import FilePickerScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)
    info = _registry(tmp_path / "lf_data")
    folder = info.parent
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        await type_in(app, pilot, "#ds-file", str(folder))
        screen = app.screen
        assert screen.key == "entry:qa_renamed" and screen.report.ok and screen.report.valid == 3
        assert app.state.dataset_info == str(info) and app.state.dataset_file == "entry:qa_renamed"
        assert screen.query_one("#ds-note").display
        note = pane_text(app, "#ds-note")
        assert note == (f"{folder} holds a dataset_info.json: a LLaMA-Factory dataset folder, not data shards. "
                        "Its registered datasets are listed instead (as ^t does)."), note
        assert screen.query_one("#ds-name").value == ""  # no name offered: nothing is to be registered
        text = screen_text(app)
        assert "chat_broken" in text and "✓ 3 ok" in text and "holds a" in text  # (the path wraps)
        assert all(len(line) <= 80 for line in text.splitlines())
        # Another choice: the line goes.
        screen.start("demo:demo_sft")
        await settle(app, pilot)
        assert not screen.query_one("#ds-note").display
        # The file tree's pick of the dataset_info.json itself: the same, said for the file.
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, FilePickerScreen)
        app.screen.dismiss(info)
        await settle(app, pilot)
        assert screen.key == "entry:qa_renamed" and screen.report.ok
        assert pane_text(app, "#ds-note").startswith(f"{info} is a dataset_info.json, not data. Its registered")
        assert screen.query_one("#ds-file").value != str(info)  # not put in the box as a data file
    # A draft that holds the folder as its data file: listed the same way on the way in.
    app = MiniCPMApp(use_draft=False, state=demo_state(dataset_file=str(folder), dataset_name=""))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        assert app.screen.key == "entry:qa_renamed" and app.screen.report.ok
        assert app.state.dataset_info == str(info) and "holds a dataset_info.json" in pane_text(app, "#ds-note")


async def test_keys_footer_private_textual_gate(no_draft, monkeypatch):
    """KeysFooter sets Textual's private ``Footer._bindings_ready`` (no public API does) to draw its keys on
    the first frame. This fails loudly when Textual renames it or stops gating compose on it; without it the
    footer falls back to Textual's own behaviour and still shows the keys."""
    from textual.reactive import Reactive
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    from minicpm_tui.tui.widgets import footer as footer_mod

    gate = Footer.__dict__.get("_bindings_ready")
    assert isinstance(gate, Reactive) and footer_mod.BINDINGS_READY is gate, (
        "Textual's Footer no longer has the reactive `_bindings_ready`: see minicpm_tui/tui/widgets/footer.py")
    assert gate._default is False and list(Footer().compose()) == [], (
        "Textual's Footer no longer composes nothing before its bindings are ready: revisit KeysFooter")

    composed: list[int] = []
    real_compose = footer_mod.KeysFooter.compose

    def counting(self):
        children = list(real_compose(self))
        composed.append(sum(isinstance(child, FooterKey) for child in children))
        yield from children

    monkeypatch.setattr(footer_mod.KeysFooter, "compose", counting)
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert composed and composed[0] >= 3, composed  # the keys, at the first compose
        assert "^q Quit" in screen_text(app).splitlines()[-1]

    # The fallback: as if Textual had dropped the name; the keys still come (after a bindings change).
    monkeypatch.setattr(footer_mod, "BINDINGS_READY", None)
    composed.clear()
    app = MiniCPMApp(use_draft=False, state=WizardState(hardware="preset:1x-t4-16gb"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert composed[0] == 0 and composed[-1] >= 3, composed
        assert "^q Quit" in screen_text(app).splitlines()[-1]


async def _write_for_target(app, pilot, typed: str, out: Path) -> None:
    """Step 1: type the LLaMA-Factory to write for; then the Model step; then write at the Review step."""
    await settle(app, pilot)
    await type_in(app, pilot, "#hw-lf", typed)
    assert app.screen.check_action("next", ()) is True, app.screen.blocked_reason
    await at_step(app, pilot, 1)
    await settle(app, pilot)
    await at_step(app, pilot, 5)
    assert "train.yaml" in app.screen.files, app.screen.error
    app.screen.query_one("#out-dir").value = str(out)
    await pilot.press("ctrl+w")
    await settle(app, pilot, 8)


@pytest.mark.parametrize("release, template", [("0.9.3", "cpm4"), ("0.9.2", "cpm3")])
async def test_the_wizard_writes_a_run_directory_for_a_shipped_release(no_draft, tmp_path, monkeypatch, release,
                                                                      template):
    """Step 1's "LLaMA-Factory to write for" set to a release: the Model step names that release's template,
    the run directory is written from its snapshot, with no LLaMA-Factory here (the training Python does not
    exist), and the preflight says what it checked against it and what it left to `run --check` there."""
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "no" / "python"))
    out = tmp_path / "run"
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_in(app, pilot, "#hw-lf", release)
        assert app.state.lf_target == release
        said = pane_text(app, "#hw-lf-details")
        assert said.startswith(f"Writing for the LLaMA-Factory {release} snapshot: its ") and "templates" in said
        await at_step(app, pilot, 1)
        assert f"{template}, for the LLaMA-Factory {release} snapshot" in pane_text(app, "#model-details")
        await at_step(app, pilot, 5)
        assert "train.yaml" in app.screen.files, app.screen.error
        app.screen.query_one("#out-dir").value = str(out)
        await pilot.press("ctrl+w")
        await settle(app, pilot, 8)
        assert app.state.run_dir == str(out), [n.message for n in app._notifications]
        shown = pane_text(app, "#file-text")
        assert shown.startswith("Preflight passed here"), shown
        assert f"ok train.yaml: keys and template against the LLaMA-Factory {release} snapshot" in shown
        assert ("not checked here: LLaMA-Factory's own argument parser (they need the target's environment): run "
                f"`minicpm-tui run --check {out}` on the machine that trains") in shown, shown
        assert f"# written for LLaMA-Factory {release}: copy it" in shown and f"minicpm-tui smoke {out}" not in shown
        assert str(app.screen.query_one("#write-hint").render()) == "written; preflight passed here"
    train = (out / "train.yaml").read_text()
    assert re.search(rf"^template: {template}\b", train, re.M), train
    generated = json.loads((out / "generated.json").read_text())
    assert generated["lf_target"]["value"] == release
    assert generated["lf_target"]["checked_against"] == f"the LLaMA-Factory {release} snapshot"
    assert generated["resolved"]["training_python"] == ""  # this machine's Python is not the target's
    from minicpm_tui.core.recipe import load_recipe

    assert load_recipe(str(out / "recipe.yaml")).lf_target == release  # regenerated the same way


async def test_the_wizard_writes_for_a_saved_report_and_says_a_bad_one_in_the_form(no_draft, tmp_path, monkeypatch):
    """A path typed as the LLaMA-Factory to write for: a missing file, a folder, and a JSON file that is no
    report each give their one-line error under the form (Next held, no crash); a `doctor --save` report (here
    the 0.9.2 facts, as that command saves them) is then used: MiniCPM4 gets 0.9.2's cpm3."""
    from minicpm_tui.core.lftarget import releases_dir

    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "no" / "python"))
    (tmp_path / "list.json").write_text("[1, 2]")
    box = tmp_path / "box.json"
    box.write_text((releases_dir() / "0.9.2.json").read_text())
    out = tmp_path / "run"
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for typed, why in ((str(tmp_path / "nope.json"), "lf_target: no such file"),
                           (str(tmp_path), "lf_target: is a folder, not a saved report"),
                           (str(tmp_path / "list.json"), "lf_target: not a usable LLaMA-Factory report: a JSON list")):
            await type_in(app, pilot, "#hw-lf", typed)
            said = pane_text(app, "#hw-lf-details")
            assert said.startswith(f"LLaMA-Factory to write for: {typed}: {why}"), said
            assert "doctor --save" in said and "Traceback" not in said
            assert app.screen.query_one("#hw-lf-details").has_class("bad")
            assert app.screen.query_one("#hw-lf").has_class("-invalid")
            assert app.screen.check_action("next", ()) is False
            assert app.screen.blocked_reason == "fix the LLaMA-Factory to write for"
            assert screen_name(app) == "HardwareScreen" and app.is_running
        await type_in(app, pilot, "#hw-lf", "")  # back to this machine's: nothing to say, Next free again
        assert app.state.lf_target == "" and pane_text(app, "#hw-lf-details") == ""
        assert app.screen.check_action("next", ()) is True
        await _write_for_target(app, pilot, str(box), out)
        assert app.state.run_dir == str(out), [n.message for n in app._notifications]
        assert "checked against" not in pane_text(app, "#file-text")  # said once, in its own line
        assert "keys and template against LLaMA-Factory 0.9.2 as saved in box.json" in pane_text(app, "#file-text")
    assert app.state.lf_target == str(box)
    assert re.search(r"^template: cpm3\b", (out / "train.yaml").read_text(), re.M)
    generated = json.loads((out / "generated.json").read_text())
    assert generated["lf_target"]["value"] == str(box)
    assert generated["lf_target"]["checked_against"] == "LLaMA-Factory 0.9.2 as saved in box.json"


async def test_review_ctrl_l_carries_the_data_files_in_the_run_directory(no_draft, tmp_path, monkeypatch):
    """Ctrl+L at the Review step: the shown dataset_info.json names data/…, the run directory written has
    the files there, the by-hand commands say the data travel with it; a second Ctrl+L names them by path
    again and marks the written directory as changed."""
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "no" / "python"))  # written for 0.9.3 only
    out = tmp_path / "run"
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await type_in(app, pilot, "#hw-lf", "0.9.3")
        await at_step(app, pilot, 5)
        assert "train.yaml" in app.screen.files, app.screen.error
        assert "named by their paths on this machine; writing for another machine, ^l carries them" in \
            pane_text(app, "#bundle-hint")
        assert '"file_name": "/' in app.screen.files["dataset_info.json"]
        await pilot.press("ctrl+l")
        await settle(app, pilot)
        assert app.state.bundle_data is True
        assert pane_text(app, "#bundle-hint").startswith("carried in the run directory's data/")
        entries = json.loads(app.screen.files["dataset_info.json"])
        (name,) = entries
        assert entries[name]["file_name"] == f"data/{name}/{name}.json"
        field = app.screen.query_one("#out-dir")
        field.value = str(out)
        field.focus()  # ^w writes from the field too: the Input's own Ctrl+W (delete a word) gives way
        await pilot.pause()
        await pilot.press("ctrl+w")
        await settle(app, pilot, 8)
        assert app.state.run_dir == str(out), [n.message for n in app._notifications]
        assert "its data in data/, the model" in pane_text(app, "#file-text")
        assert (out / "data" / name / f"{name}.json").is_file() and field.value == str(out)
        await pilot.press("ctrl+l")
        await settle(app, pilot)
        assert app.state.bundle_data is False and app.screen.stale
        assert app.screen.ready() is False and app.screen.blocked_reason == "changed since written: ^w rewrites it"
        assert '"file_name": "/' in app.screen.files["dataset_info.json"]


async def test_review_says_a_model_path_must_be_there_too_where_the_run_goes(no_draft, tmp_path, lf, monkeypatch):
    """A model given by its path on this machine: nothing to say while the run directory is written for this
    machine and names its files here; carried (Ctrl+L) or written for another machine's LLaMA-Factory, the
    Review step says plainly that the path must hold it there too, and the fix (never refused: it writes)."""
    from test_lf_target import local_model

    from minicpm_tui.core.writers import model_path_note

    model = str(local_model(tmp_path))
    app = MiniCPMApp(use_draft=False, state=demo_state(model=model))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 5)
        assert "train.yaml" in app.screen.files, app.screen.error
        row = app.screen.query_one("#model-row")
        assert row.display is False and "the run directory does not carry" not in screen_text(app)
        await pilot.press("ctrl+l")
        await settle(app, pilot)
        assert row.display is True
        assert pane_text(app, "#model-hint") == model_path_note(model, False, True, tui=True)
        assert "name it by its hub id (step 2)" in " ".join(screen_text(app).split())  # shown, wrapped
        assert all(len(line.rstrip()) <= 80 for line in screen_text(app).splitlines())
        await pilot.press("ctrl+l")
        await settle(app, pilot)
        assert row.display is False
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "no" / "python"))  # written for 0.9.3 only
    out = tmp_path / "run"
    app = MiniCPMApp(use_draft=False, state=demo_state(model=model, lf_target="0.9.3"))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 5)
        assert app.screen.query_one("#model-row").display is True
        assert pane_text(app, "#model-hint") == model_path_note(model, True, False, tui=True)
        app.screen.query_one("#out-dir").value = str(out)
        await pilot.press("ctrl+w")
        await settle(app, pilot, 8)
        assert app.state.run_dir == str(out), [n.message for n in app._notifications]
        shown = pane_text(app, "#file-text")
        assert (f"not checked here: LLaMA-Factory's own argument parser and the model at {model} (they need the "
                "target's environment)") in shown, shown


@pytest.mark.parametrize("release, refused", [("0.9.2", True), ("0.9.3", False)])
async def test_the_dataset_step_reads_media_as_the_target_release_does(no_draft, tmp_path, monkeypatch, release,
                                                                      refused):
    """Written for another machine's LLaMA-Factory (step 1), a registered entry's media are read by that
    release's facts, as the preflight against it reads them, not by a LLaMA-Factory here (there is none):
    mistral_small reads no images in 0.9.2 and reads them from 0.9.3 on."""
    from minicpm_tui.tui.screens.dataset import DatasetScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "no" / "python"))
    info = _registry(tmp_path / "lf_data")
    state = demo_state(lf_target=release, dataset_info=str(info), dataset_file="entry:pics", dataset_name="pics",
                       hparams={"template": "mistral_small"})
    app = MiniCPMApp(use_draft=False, state=state)
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        screen = app.screen
        assert screen.key == "entry:pics" and screen.report is not None, screen.error
        if refused:
            err = screen.report.file_error
            assert err is not None and (err.record, err.field) == (0, "pics")
            assert err.message.startswith("MiniCPM4-0.5B (template mistral_small) reads no images")
            assert "✗ won't load" in screen_text(app) and not screen.ready()
        else:
            assert screen.report.ok and not screen.report.notes and screen.ready(), screen.blocked_reason


async def test_the_dataset_step_counts_placeholders_for_a_chosen_minicpm_v_template(no_draft, tmp_path, monkeypatch):
    """A chosen template whose plugin counts placeholders (minicpm_v) reads even an entry with no media column:
    a record that writes <image> stops LLaMA-Factory, and is named (the preflight refuses it, as any unusable one)."""
    from minicpm_tui.tui.screens.dataset import DatasetScreen

    monkeypatch.setattr(DatasetScreen, "_preview", lambda *_: None)
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "no" / "python"))
    folder = tmp_path / "lf_data"
    folder.mkdir()
    rows = [{"question": "<image> q", "answer": "a"}, {"question": "q", "answer": "a"}]
    (folder / "tags.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"tags": {"file_name": "tags.jsonl", "columns": {
        "prompt": "question", "response": "answer"}}}), encoding="utf-8")
    state = demo_state(lf_target="0.9.5", dataset_info=str(folder / "dataset_info.json"), dataset_file="entry:tags",
                       dataset_name="tags", hparams={"template": "minicpm_v"})
    app = MiniCPMApp(use_draft=False, state=state)
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        report = app.screen.report
        assert report is not None and report.invalid == 1 and report.valid == 1, app.screen.error
        assert (report.errors[0].record, report.errors[0].field, report.errors[0].kind) == (0, "question", "media_count")
        # Registered already, it still stops here rather than at the write's preflight (or at LLaMA-Factory's start).
        assert not app.screen.ready() and app.screen.blocked_reason == "1 of 2 records unusable: fix them first"
        assert "1 of 2 records unusable: fix them first" in screen_text(app).splitlines()[-2]


async def test_the_run_step_says_what_a_smoke_here_proves_of_a_run_written_for_a_target(no_draft, tmp_path, lf,
                                                                                         monkeypatch):
    """The smoke run of a run directory written for another machine runs with this machine's LLaMA-Factory: the
    Run step names both releases and what that proves (the data and the scripts), or names none to compare when
    they are the same release; when this one cannot read that train.yaml (a key only the target has) the smoke
    run is not offered, with the reason, and `s` does nothing."""
    from test_lf_target import only_the_target_has
    from test_smoke_support import demo_recipe

    from minicpm_tui.core.smoke import smoke_here
    from minicpm_tui.core.writers import generate

    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", lf.python)
    monkeypatch.delenv("TRAIN_PYTHON", raising=False)
    release, key = only_the_target_has(lf)
    other, bad, same = tmp_path / "other", tmp_path / "bad", tmp_path / "same"
    generate(demo_recipe(lf_target=release), other, preflight=False)
    generate(demo_recipe(lf_target=release, extra_args={key: 1}), bad, preflight=False)
    generate(demo_recipe(lf_target=lf.version), same, preflight=False)
    app = MiniCPMApp(use_draft=False, state=demo_state(lf_target=release, run_dir=str(other), run_digest="1"))
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 6)
        text = screen_text(app)
        assert f"smoke here, with LLaMA-Factory {lf.version} here; the target has {release}" in text, text
        assert "proves the data and scripts on the CPU, not the target's release" in text
        assert "proves the whole chain" not in text and app.screen.check_action("smoke", ()) is True
        assert all(len(line.rstrip()) <= 80 for line in text.splitlines())
        for run_dir, digest in ((bad, "2"), (same, "3")):  # rewritten: asked again when the step is shown again
            app.state.run_dir, app.state.run_digest = str(run_dir), digest
            app.push_screen(app.runs_screen())
            await settle(app, pilot)
            await pilot.press("escape")
            await settle(app, pilot)
            assert screen_name(app) == "RunScreen"
            if run_dir == bad:
                text = screen_text(app)
                assert "no smoke run here: the LLaMA-Factory here cannot run this train.yaml" in text, text
                assert f"{smoke_here(bad).refused}; smoke it on the machine that trains" in pane_text(app, "#run-text")
                assert app.screen.check_action("smoke", ()) is False
                assert app.screen.why_not("smoke") == smoke_here(bad).refused
                titles = [c.title for c in app.screen.palette_commands()]
                assert "run: smoke run" not in titles and "run: launch" not in titles  # launched there
                await pilot.press("s")
                await settle(app, pilot)
                assert screen_name(app) == "RunScreen" and not (bad / "smoke").exists()
            else:
                assert f"smoke run, with LLaMA-Factory {lf.version} here, the target's release" in screen_text(app)
                assert app.screen.check_action("smoke", ()) is True
