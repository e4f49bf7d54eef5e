"""Shared test setup: an isolated home for minicpm-tui, offline hubs, and the tiny models.

MINICPM_TUI_TEST_HOME keeps that home between runs (tiny models and DeepSpeed's JIT ops are then
built once); by default each session gets a fresh temporary one, as CI does.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

_home = os.environ.get("MINICPM_TUI_TEST_HOME") or tempfile.mkdtemp(prefix="minicpm-tui-test-")
Path(_home).mkdir(parents=True, exist_ok=True)
os.environ["MINICPM_TUI_HOME"] = _home
# Everything a subprocess could use to reach a hub is switched off; tests never touch the network.
for _var, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_VERSION_CHECK": "1",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "NO_COLOR": os.environ.get("NO_COLOR", ""),
}.items():
    if _value:
        os.environ[_var] = _value
# DeepSpeed JIT-builds a shared-memory comm op on first use (~35 s); keep it in the test home.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(_home) / "torch_extensions"))
os.environ.setdefault("HF_HOME", str(Path(_home) / "hf_home"))


@pytest.fixture(scope="session")
def test_home() -> Path:
    return Path(_home)


@pytest.fixture(scope="session")
def tiny_model_cpm3() -> Path:
    """A tiny random Llama with a local tokenizer and the cpm3/cpm4 chat specials."""
    from minicpm_tui.core.tinymodel import tiny_model_dir

    return tiny_model_dir("cpm3")


@pytest.fixture(scope="session")
def tiny_model_cpm() -> Path:
    """A tiny random Llama with a local tokenizer and the MiniCPM 1B/2B (`cpm`) chat specials."""
    from minicpm_tui.core.tinymodel import tiny_model_dir

    return tiny_model_dir("cpm")


@pytest.fixture(scope="session")
def lf():
    """Facts about the installed LLaMA-Factory (introspected once per session)."""
    from minicpm_tui.core.lfinfo import lf_info

    return lf_info()


@pytest.fixture()
def no_draft():
    """The session's home (its LLaMA-Factory facts and tiny models are cached there) without a draft."""
    from minicpm_tui.tui.state import clear_draft

    clear_draft()
    yield
    clear_draft()


@pytest.fixture()
def state_home(tmp_path, monkeypatch) -> Path:
    """A per-test home, for tests that need an empty runs registry or config."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MINICPM_TUI_HOME", str(home))
    return home
