"""What the wizard has chosen so far, and its draft file.

The state is plain data (no Textual): each screen reads it when it is built and writes the
person's choices back. It is saved as a draft in the XDG config dir on every step change and on
exit, so Esc, Ctrl+Q or a dropped SSH session never lose work; the next start offers it again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from minicpm_tui.core.atomic import write_atomic
from minicpm_tui.core.paths import config_dir

DRAFT_NAME = "wizard-draft.json"
DRAFT_VERSION = 1
# Marks a field that lives for this session only: never written to the draft (an export that was running
# when the draft was saved is not running when it is taken up again).
SESSION_ONLY = "session_only"


@dataclass
class ExportStatus:
    """The Run step's export of one run directory: running, or how it ended and its one line.

    Kept here, not on the Run screen, because leaving the step removes that screen while the export
    goes on: the step shows it again when it is shown again."""

    run_dir: str
    running: bool = True
    ok: bool = False
    text: str = ""


@dataclass
class WizardState:
    step: int = 0
    # Hardware: a preset name, a saved probe file, or "probe" for this machine.
    hardware: str = ""
    gpus: int | None = None
    nodes: int = 1
    # The LLaMA-Factory the run directory is written for (the recipe's lf_target): "" for this machine's,
    # a shipped release ("0.9.3"), or the absolute path of a `doctor --save` report.
    lf_target: str = ""
    # Model and method.
    model: str = ""
    method: str = "lora"
    stage: str = "sft"
    # Dataset: a file, a demo's name in the shipped data/dataset_info.json ("demo:NAME"), or an entry of
    # the dataset_info.json in ``dataset_info`` ("entry:NAME"), used as it is registered there.
    dataset_file: str = ""
    dataset_name: str = ""
    dataset_info: str = ""
    dataset_ok: bool = False
    suggested_cutoff: int | None = None
    # Plan overrides the person typed (field -> value); empty means "as recommended".
    plan_overrides: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    # Hyper-parameters the person changed (recipe field -> value).
    hparams: dict[str, Any] = field(default_factory=dict)
    # The recipe's bundle_data: the datasets' files go into the run directory's data/ (it can then be moved).
    bundle_data: bool = False
    out_dir: str = ""  # empty: the default, which follows the run name
    run_dir: str = ""  # set once written
    # The recipe that was written there (build.recipe_digest): a choice changed since means rewrite first.
    run_digest: str = ""
    # The latest export started from the Run step in this session (None: none yet).
    export: ExportStatus | None = field(default=None, metadata={SESSION_ONLY: True})

    def to_dict(self) -> dict[str, Any]:
        session = _session_fields()
        return {k: v for k, v in asdict(self).items() if k not in session}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WizardState:
        known = {f.name for f in fields(cls)} - _session_fields()
        return cls(**{k: v for k, v in data.items() if k in known})


def _session_fields() -> set[str]:
    return {f.name for f in fields(WizardState) if f.metadata.get(SESSION_ONLY)}


def draft_path() -> Path:
    return config_dir() / DRAFT_NAME


def save_draft(state: WizardState) -> Path:
    payload = {"version": DRAFT_VERSION, "saved": time.time(), "state": state.to_dict()}
    # 0o600: a draft can hold private paths.
    return write_atomic(draft_path(), json.dumps(payload, indent=1, default=str) + "\n", mode=0o600)


def load_draft() -> tuple[WizardState, float] | None:
    """The saved draft and when it was saved, or None (missing, unreadable or from another version)."""
    try:
        payload = json.loads(draft_path().read_text(encoding="utf-8"))
        if payload.get("version") != DRAFT_VERSION:
            return None
        return WizardState.from_dict(payload["state"]), float(payload.get("saved", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_draft() -> None:
    draft_path().unlink(missing_ok=True)
