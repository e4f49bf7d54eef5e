"""Keys sent at once (a paste, a fast typist, tmux send-keys) reach the wizard's fields in order.

Pilot's ``press`` waits between keys, which hid the defect: here the keys are posted to the app in
one go, as the terminal driver does with a burst, and only then does the test wait."""

from __future__ import annotations

from _tui_util import at_step, demo_state, settle
from textual import events
from textual.widgets import Input

from minicpm_tui.tui.app import MiniCPMApp
from minicpm_tui.tui.keys import WIZARD
from minicpm_tui.tui.widgets.field import Field

SIZE = (80, 24)


def burst(app, *keys: str) -> None:
    """Post every key to the app before any is handled; a plain string is typed character by character."""
    for key in keys:
        if len(key) > 1 and ("+" in key or key in ("home", "end", "enter", "tab", "escape", "backspace")):
            app.post_message(events.Key(key, None))
        else:
            for character in key:
                name = {"/": "slash", ".": "full_stop"}.get(character, character)
                app.post_message(events.Key(name, character))


async def test_a_burst_in_the_run_directory_field_is_applied_in_order(no_draft):
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 5)
        box = app.screen.query_one("#out-dir", Input)
        box.focus()
        await pilot.press("end", "Z")
        assert box.value.endswith("Z")
        # Before: Ctrl+U ran after the characters (the field ended empty), Tab before them.
        burst(app, "ctrl+u", "runs/wiz1", "tab", "x")
        await settle(app, pilot)
        assert box.value == "runs/wiz1"
        assert app.state.out_dir == "runs/wiz1"
        assert app.focused is not None and app.focused.id == "file-tree"  # the x went where Tab led


async def test_home_ctrl_k_a_value_and_next_at_once(no_draft):
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 4)
        first = app.focused
        assert isinstance(first, Field) and first.id == "hp-lora_rank"
        burst(app, "home", "ctrl+k", "5", "ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        assert app.state.hparams.get("lora_rank") == 5  # typed before Next took the step
        assert app.screen.query_one("#out-dir", Input).value.startswith("runs/")  # not cleared


async def test_a_typed_path_and_enter_at_once_on_the_dataset_step(no_draft):
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 2)
        box = app.screen.query_one("#ds-file", Input)
        box.focus()
        await pilot.press("x")
        burst(app, "ctrl+u", "bad.json", "enter")
        await settle(app, pilot)
        assert box.value == "bad.json"
        assert app.screen.query_one("#ds-name", Input).value == "bad"  # Enter came after the name
        assert app.screen.key.endswith("bad.json")  # and it is the file being validated


async def test_every_text_field_of_the_wizard_is_a_field(no_draft):
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        for step in range(6):
            await at_step(app, pilot, step)
            inputs = list(app.screen.query(Input))
            assert all(isinstance(box, Field) for box in inputs), (step, inputs)


async def test_priority_keys_still_win_over_the_fields_own(no_draft):
    # Ctrl+N is the wizard's (priority) and still works from a field; Ctrl+U stays the field's.
    assert any(b.key == "ctrl+n" and b.priority for b in WIZARD)
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 4)
        await pilot.press("ctrl+u", "7")
        assert app.focused.value == "7"
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        assert app.state.hparams.get("lora_rank") == 7


async def test_a_key_after_shift_tab_from_a_list_reaches_the_field_it_led_to(no_draft):
    # Tab and Shift+Tab were the screen's bindings, run once the key had bubbled up from the focused
    # widget; the app had already forwarded the next key to that widget. From the Review step's file
    # tree, Shift+Tab then Z (0.15 s apart on a loaded machine) lost the Z in the tree.
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 5)
        assert app.focused is not None and app.focused.id == "file-tree"
        box = app.screen.query_one("#out-dir", Input)
        burst(app, "shift+tab", "Z")
        await settle(app, pilot)
        assert app.focused is box and box.value == "Z"  # the field selects its text on focus: Z replaced it
        burst(app, "end", "1", "tab", "shift+tab", "tab", "x")  # from a field too, in turn: back at the tree
        await settle(app, pilot)
        assert app.focused is not None and app.focused.id == "file-tree" and box.value == "Z1"


async def test_keys_sent_with_next_reach_the_next_steps_field(no_draft):
    """Next pushes the step's screen at once, but that screen mounts later and focuses its first field later
    still: the keys sent with ^n went to a screen focused on nothing yet (the 9 was lost, lora_rank stayed 8).
    They wait for it now, then go on one by one."""
    app = MiniCPMApp(use_draft=False, state=demo_state())
    async with app.run_test(size=SIZE) as pilot:
        await at_step(app, pilot, 3)
        assert type(app.screen).__name__ == "PlanScreen"
        burst(app, "ctrl+n", "end", "9")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HparamsScreen"
        assert app.focused is not None and app.focused.id == "hp-lora_rank" and app.focused.value == "89"
