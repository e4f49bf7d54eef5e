"""Snapshot tests, one per screen state: fixed 80x24, hardware presets only (no probe of this host),
no clock, no hostname. Update baselines with `pytest tests/test_tui_snapshots.py --snapshot-update`."""

from __future__ import annotations

import pytest
from _tui_util import settle

from minicpm_tui.tui.app import MiniCPMApp
from minicpm_tui.tui.state import WizardState

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


async def _settle(pilot) -> None:
    await settle(pilot.app, pilot)


def _app(**state) -> MiniCPMApp:
    return MiniCPMApp(use_draft=False, state=WizardState(**state))


def test_hardware_preset_with_nvlink_matrix(snap_compare):
    assert snap_compare(_app(hardware="preset:8x-a100-80gb-nvlink"), terminal_size=SIZE, run_before=_settle)


def test_model_step(snap_compare):
    async def before(pilot):
        await _settle(pilot)
        pilot.app.goto_step(1)
        await _settle(pilot)

    assert snap_compare(_app(hardware="preset:1x-t4-16gb", model="MiniCPM3-4B"), terminal_size=SIZE,
                        run_before=before)


def test_plan_that_does_not_fit(snap_compare):
    # Full fine-tuning of a 4B model without DeepSpeed on one T4: the bars, NO FIT and the suggestions.
    async def before(pilot):
        await _settle(pilot)
        pilot.app.goto_step(3)
        await _settle(pilot)

    state = {"hardware": "preset:1x-t4-16gb", "model": "MiniCPM3-4B", "method": "full",
             "dataset_name": "demo_sft", "dataset_file": "demo:demo_sft",
             "plan_overrides": {"zero_stage": 0, "offload": "none"}}
    assert snap_compare(_app(**state), terminal_size=SIZE, run_before=before)


def test_help_overlay(snap_compare):
    async def before(pilot):
        await _settle(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(_app(hardware="preset:1x-t4-16gb"), terminal_size=SIZE, run_before=before)


def test_monitor_of_a_finished_run(snap_compare, tmp_path, state_home, monkeypatch):
    # A real detached run (runner.launch) replaying a captured LLaMA-Factory run's logs; the GPU line
    # comes from NVML's "no library" answer, so the picture is the same on a GPU box and here.
    from _runner_util import kill_run, make_replay_run, wait_status
    from fake_nvml import FakePynvml

    from minicpm_tui.core import runner, telemetry
    from minicpm_tui.core.nvml import Nvml

    run_dir = make_replay_run(tmp_path / "replay", pause=0.05)
    try:
        runner.launch(run_dir)
        wait_status(run_dir, ("finished",))
    finally:
        kill_run(run_dir)
    _took(run_dir, 83)  # the monitor shows the run's duration: the same one on every machine
    real_sampler = telemetry.GpuSampler
    monkeypatch.setattr(telemetry, "GpuSampler",
                        lambda **kw: real_sampler(Nvml(module=FakePynvml.no_library()), **kw))
    app = MiniCPMApp(monitor_dir=run_dir, use_draft=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=_settle)


def _took(run_dir, seconds: float) -> None:
    """Record the run's (last attempt's) end ``seconds`` after its start, in its manifest."""
    import json

    from minicpm_tui.core import runner

    path = run_dir / runner.MANIFEST
    data = json.loads(path.read_text())
    data["ended_at"] = data["attempts"][-1]["ended_at"] = data["attempts"][-1]["started_at"] + seconds
    path.write_text(json.dumps(data))
