"""Waiting for the TUI's workers in Pilot tests without sleeping blindly.

``WorkerManager.wait_for_complete`` raises when an exclusive worker was cancelled by its successor
(the hardware screen reloads when the selection settles), so wait on the worker states instead.
"""

from __future__ import annotations

import asyncio

from textual.worker import WorkerState

_ACTIVE = (WorkerState.PENDING, WorkerState.RUNNING)


async def settle(app, pilot, rounds: int = 3, timeout: float = 300.0) -> None:
    """Wait until no worker is pending or running and the messages they posted are handled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet_rounds = 0
    while quiet_rounds < rounds:
        await pilot.pause()
        if any(worker.state in _ACTIVE for worker in app.workers):
            quiet_rounds = 0
            if loop.time() > deadline:
                names = [w.name for w in app.workers if w.state in _ACTIVE]
                raise AssertionError(f"workers still running after {timeout:.0f} s: {names}")
            await asyncio.sleep(0.05)
        else:
            quiet_rounds += 1


def demo_state(**fields):
    """A wizard that has chosen a preset, the smallest model and the SFT demo."""
    from minicpm_tui.tui.state import WizardState

    chosen = {"hardware": "preset:1x-rtx4090", "model": "MiniCPM4-0.5B", "dataset_name": "demo_sft",
              "dataset_file": "demo:demo_sft"}
    return WizardState(**{**chosen, **fields})


async def at_step(app, pilot, step: int) -> None:
    """Go to a step (0-based) and wait for its workers."""
    await settle(app, pilot)
    app.goto_step(step)
    await settle(app, pilot)
