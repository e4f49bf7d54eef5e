"""minicpm-tui against the LLaMA-Factory releases users still have (0.9.2, 0.9.3, 0.9.4), not only 0.9.5.

Each release is a real environment of its own (scripts/lf_compat_envs.sh; scripts/test.sh builds them):
that release and the transformers / peft / trl / datasets it pins, in a Python that does not have
minicpm-tui. For each one:
- what we read from it (templates, argument keys) is what it has;
- the whole run-directory matrix, generated against it, passes its own argument parser;
- our dataset verdicts agree record by record with its own loader;
- real CPU training through generated run directories (SFT, DPO with its reference model, KTO, ZeRO-2
  with the DeepSpeed each release allows);
- the preflight applies each release's own launch-time dependency check;
- the chat templates that train_entry.py registers on 0.9.5 (which removed `cpm` and `cpm3`) encode
  exactly as the last release that shipped them did.
What it does not cover: these environments share the test venv's torch and DeepSpeed, so a user's older
torch is not exercised here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_datasets_agreement import corpus_disagreements
from test_smoke_support import SMOKE_TIMEOUT_S, TEST_TIMEOUT_S, demo_recipe, write_matrix

from minicpm_tui.core.doctor import run_doctor
from minicpm_tui.core.lfinfo import lf_info
from minicpm_tui.core.preflight import preflight, preflight_many
from minicpm_tui.core.resources import resource_script
from minicpm_tui.core.smoke import read_losses, smoke
from minicpm_tui.core.tinymodel import offline_env, tiny_model_dir
from minicpm_tui.core.writers import generate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(TEST_TIMEOUT_S)]

PINS = Path(__file__).parent / "lf_versions"
VERSIONS = sorted(p.stem for p in PINS.glob("*.txt"))
COMPAT = Path(sys.prefix) / "lfcompat"
PROBE = PINS / "template_probe.py"
ENTRY = resource_script("train_entry.py")


def _tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def compat_python(version: str) -> str:
    python = COMPAT / version / "bin" / "python"
    if not python.exists():
        if os.environ.get("CI"):  # CI runs scripts/test.sh, which builds them: missing there is a failure
            pytest.fail(f"LLaMA-Factory {version} was not built at {python.parent.parent}")
        pytest.skip(f"LLaMA-Factory {version} is not built here: run `bash scripts/lf_compat_envs.sh` "
                    "(scripts/test.sh does)")
    return str(python)


@pytest.fixture(scope="module", params=VERSIONS)
def release(request):
    """(version, its training Python, what lf_info reads from it)."""
    python = compat_python(request.param)
    return request.param, python, lf_info(python=python)


def test_versions_cover_every_supported_minor():
    """The pins cover every release we support (pyproject: llamafactory>=0.9.2,<0.10) but the installed one."""
    assert VERSIONS == ["0.9.2", "0.9.3", "0.9.4"]


def test_introspection_reads_each_release(release):
    version, python, info = release
    assert info.installed and info.version == version, info.raw.get("llamafactory")
    assert info.python == python
    # cpm / cpm3 exist up to 0.9.4; cpm4 from 0.9.3 on (knowledge: minicpm-and-llamafactory.md)
    assert info.has_template("cpm") and info.has_template("cpm3")
    assert info.has_template("cpm4") == (_tuple(version) >= (0, 9, 3))
    assert {"template", "deepspeed", "pref_beta", "cutoff_len", "trust_remote_code"} <= info.all_keys
    # the media each template's plugin takes: none for MiniCPM's text templates, images/videos for MiniCPM-V
    assert info.template_media["cpm"] == info.template_media["cpm3"] == []
    assert info.template_media["minicpm_v"] == ["images", "videos"]
    # doctor in the same environment: ready, with the release's own MiniCPM templates named
    report = run_doctor(python=python)
    checks = {check.name: check for check in report.checks}
    assert checks["llamafactory"].status == "ok", checks["llamafactory"]
    expected = "cpm, cpm3, cpm4" if info.has_template("cpm4") else "cpm, cpm3"
    assert checks["llamafactory"].detail.startswith(f"{version}; MiniCPM templates: {expected}"), checks
    assert checks["transformers"].detail.startswith(info.package_version("transformers") or "?"), checks


def test_matrix_passes_each_release_parser(tmp_path, release):
    """Every model x stage x method, QLoRA + ZeRO-3 and every hardware preset, generated against the release
    and checked by its own argument parser (through the run directory's recorded Python)."""
    version, python, info = release
    dirs = write_matrix(tmp_path, info)
    for run in dirs:
        meta = json.loads((run / "generated.json").read_text())
        assert meta["resolved"]["training_python"] == python and meta["resolved"]["lf_version"] == version
        cfg = yaml.safe_load((run / "train.yaml").read_text())
        assert set(cfg) <= info.all_keys, (run.name, set(cfg) - info.all_keys)
        if run.name.startswith(("MiniCPM-1B", "MiniCPM-2B")):
            assert cfg["template"] == "cpm", run.name  # native up to 0.9.4: not our registration
        elif run.name.startswith("MiniCPM"):
            assert cfg["template"] == ("cpm4" if info.has_template("cpm4") else "cpm3"), run.name
    reports = preflight_many(dirs)
    bad = [f"{r.run_dir.name}: {p.one_line()}" for r in reports for p in r.problems]
    assert not bad, "\n".join(bad)
    assert all("train.yaml: LLaMA-Factory's argument parser" in r.checked for r in reports)


def _agreeing_results(tmp_path: Path, release, only: str | None = None) -> list[dict]:
    """The corpus (or only its custom entries whose name starts with ``only``) through the release's own loader and ours, with
    the release's template: LLaMA-Factory's results, once they agree with ours."""
    version, python, info = release
    tokenizer = tiny_model_dir("cpm3", python=python)
    template = "cpm4" if info.has_template("cpm4") else "cpm3"
    problems, results = corpus_disagreements(tmp_path, tokenizer, python=python, template=template,
                                             lf_version=version, only=only)
    assert not problems, f"LLaMA-Factory {version}:\n" + "\n".join(problems)
    return results


def test_dataset_verdicts_agree_with_each_release(tmp_path, release):
    results = _agreeing_results(tmp_path, release)
    assert any(r["status"] == "crash" for r in results) and any(r["status"] == "ok" for r in results)
    # 0.9.2 pairs KTO's KL terms mirrored in the batch, later releases with the previous record: either way a
    # record the converter breaks stops the preprocessing, as we say.
    assert any(r.get("batch", "ok").startswith("raise IndexError") for r in results), release[0]


def test_openai_entries_on_each_release(tmp_path, release):
    """``"formatting": "openai"``: refused as a whole before 0.9.4 ('Dataset converter openai not found'), and
    0.9.4's converter fails on a file where some assistant turns have tool_calls and others not; ours agree."""
    version = release[0]
    results = _agreeing_results(tmp_path, release, only="openai")
    sft = next(r for r in results if r["id"] == "custom:openai_sft")
    if _tuple(version) < (0, 9, 4):
        assert all(r["status"] == "crash" for r in results)
        assert "Dataset converter openai not found" in sft["error"]
    elif _tuple(version) == (0, 9, 4):
        assert sft["status"] == "crash" and "NoneType" in sft["error"]
    if _tuple(version) >= (0, 9, 4):  # the cases that give every answer tool_calls: Arrow's schema decides
        by_id = {r["id"]: r for r in results}
        assert by_id["custom:openai_args_in_no_call"]["kept"][1].startswith("raise KeyError: 'arguments'")
        assert by_id["custom:openai_args_in_some_calls"]["kept"] == [True, True]
        assert "AttributeError" in by_id["custom:openai_tools_params_differ"]["kept"][0]


def test_media_entries_on_each_release(tmp_path, release):
    """Media columns read by a text template (custom_entries._media_cases): every release's plugin raises on
    media it has no token for; 0.9.2's converter also fails the whole load on a null media value."""
    version = release[0]
    results = _agreeing_results(tmp_path, release, only="media")
    by_id = {r["id"]: r for r in results}
    assert "does not support image input" in by_id["custom:media_image_for_text_template"]["kept"][1]
    none = by_id["custom:media_none"]
    if _tuple(version) < (0, 9, 3):
        assert none["status"] == "crash" and "IndexError" in none["error"]
    else:
        assert none["kept"] == [True, True, True]


# One real training per (release, case); together they cover SFT with `cpm`, DPO with its reference model,
# KTO, and DeepSpeed ZeRO-2 with two processes on every release.
CASES = {
    "sft-lora-minicpm2b": dict(stage="sft", method="lora", model="MiniCPM-2B"),
    "dpo-full": dict(stage="dpo", method="full"),
    "kto-lora-zero2": dict(stage="kto", method="lora", zero_stage=2, gpus=2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_real_training_on_each_release(tmp_path, release, case, test_home, monkeypatch):
    """Generated against the release, smoked with no MINICPM_TUI_TRAIN_PYTHON set: the run directory's
    recorded Python trains (the one its scripts use), with a tiny model that Python built."""
    version, python, info = release
    # DeepSpeed JIT-builds its CPU comm op per DeepSpeed version: one cache each, so none rebuilds another's
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(test_home / f"torch_extensions-lf{version}"))
    run = tmp_path / "run"
    generate(demo_recipe(**CASES[case]), run, info=info, preflight=False)
    result = smoke(run, steps=2, timeout=SMOKE_TIMEOUT_S)
    assert result.passed, f"LLaMA-Factory {version}: {result.reason}\n{result.log_tail}"
    assert result.spec is not None and result.spec.env["TRAIN_PYTHON"] == python
    losses = read_losses(result.output_dir)
    assert [s for s, _ in losses] == [1, 2] and all(math.isfinite(v) for _, v in losses), losses
    log = result.log_path.read_text(errors="replace")
    assert "registered chat template(s) missing" not in log  # these releases still ship cpm and cpm3
    if "zero_stage" in CASES[case]:
        shards = {p.name for p in result.output_dir.glob("checkpoint-2/global_step2/*")}
        assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= shards, shards
    if CASES[case]["method"] == "lora" and "zero_stage" not in CASES[case]:
        _export_on_release(run, result.output_dir, python, info, tmp_path / "merged")


def _export_on_release(run: Path, adapter: Path, python: str, info, out: Path) -> None:
    """`minicpm-tui export`'s merge of the smoke's adapter into its tiny base, in the release's own Python:
    export.yaml's keys pass its parser and export_entry.py runs its export_model."""
    from minicpm_tui.core.export import ExportPlan, run_export

    tiny = tiny_model_dir("cpm", python=python)
    plan = ExportPlan(run_dir=run, python=python, finetuning_type="lora", base_model=str(tiny), template="cpm",
                      output_dir=adapter, status="finished", source=adapter, source_kind="final", out=out,
                      carried={"trust_remote_code": True, "flash_attn": "sdpa"})
    lines: list[str] = []
    assert run_export(plan, say=lines.append, known_keys=info.all_keys) == out
    # The terminal gets the progress lines; LLaMA-Factory's own words stay in the export log.
    assert plan.notes == [] and "merged 1 adapter(s) into the base model" in lines, lines[-20:]
    assert "Merged 1 adapter(s)" in plan.log_path.read_text(errors="replace")
    assert (out / "config.json").is_file() and any(out.glob("model*.safetensors")), sorted(out.iterdir())


def test_preflight_applies_the_releases_own_dependency_check(tmp_path, monkeypatch):
    """LLaMA-Factory checks at launch the packages a config needs; 0.9.4 wants DeepSpeed <= 0.16.9 unless
    DISABLE_VERSION_CHECK=1 (its 0.9.4 environment here keeps the test venv's newer DeepSpeed, as one where
    minicpm-tui was installed beside it would). The preflight says so before the launch does."""
    python = compat_python("0.9.4")
    info = lf_info(python=python)
    run = tmp_path / "run"
    generate(demo_recipe("sft", "lora", zero_stage=2, gpus=2), run, info=info, preflight=False)
    ds = info.package_version("deepspeed") or ""
    assert _tuple(ds.split("+")[0]) > (0, 16, 9), f"this check needs a DeepSpeed newer than 0.16.9, found {ds}"
    monkeypatch.delenv("DISABLE_VERSION_CHECK", raising=False)
    report = preflight(run, datasets=False)
    problems = [p for p in report.problems if p.key == "deepspeed"]
    assert problems, [p.one_line() for p in report.problems]
    line = problems[0].one_line()
    assert line.startswith("train.yaml: deepspeed: LLaMA-Factory would refuse to start: ") and "0.16.9" in line
    assert "DISABLE_VERSION_CHECK=1" in line
    monkeypatch.setenv("DISABLE_VERSION_CHECK", "1")  # what its message offers: then it starts
    assert preflight(run, datasets=False).ok


def _encode(python: str, work: Path, items: list[tuple[str, str, bool]]) -> list[dict]:
    """(chat format of the tiny tokenizer, template, registered by train_entry.py) -> one probe result each,
    all from one process in ``python``."""
    job = work / f"probe-{len(list(work.glob('probe-*')))}.json"
    job.write_text(json.dumps({"entry": str(ENTRY), "items": [
        {"tokenizer": str(tiny_model_dir(fmt, python=python)), "template": name, "registered": registered}
        for fmt, name, registered in items]}), encoding="utf-8")
    proc = subprocess.run([python, str(PROBE), str(job)], capture_output=True, text=True, env=offline_env(),
                          timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("@@TEMPLATE@@"):
            return json.loads(line[len("@@TEMPLATE@@"):])
    raise AssertionError(f"template probe failed ({python}): {proc.stderr[-2000:]}")


def test_registered_templates_encode_as_the_last_release_that_shipped_them(tmp_path):
    """0.9.5 removed `cpm` and `cpm3`; a run directory's train_entry.py registers them again. A MiniCPM-2B or
    MiniCPM3 run on 0.9.5 must see exactly the token ids 0.9.4 produced (tool turns included), and
    `cpm3` must equal `cpm4`, which MiniCPM3/4 get where it exists."""
    last = compat_python("0.9.4")
    native_cpm, native_cpm3, again_cpm, again_cpm3 = _encode(
        last, tmp_path, [("cpm", "cpm", False), ("cpm3", "cpm3", False), ("cpm", "cpm", True),
                         ("cpm3", "cpm3", True)])
    ours_cpm, ours_cpm3, cpm4 = _encode(
        sys.executable, tmp_path, [("cpm", "cpm", True), ("cpm3", "cpm3", True), ("cpm3", "cpm4", False)])
    for native, ours, again in ((native_cpm, ours_cpm, again_cpm), (native_cpm3, ours_cpm3, again_cpm3)):
        name = native["template"]
        assert native["native"] and native["version"] == "0.9.4" and not native["registered"]
        assert ours["registered"] and ours["version"] != "0.9.4"
        assert all(isinstance(e, list) for e in native["encodings"]), native["encodings"]
        assert ours["encodings"] == native["encodings"], f"{name}: {ours['version']} + train_entry.py differs"
        assert (ours["eos_token"], ours["stop_words"]) == (native["eos_token"], native["stop_words"])
        # on 0.9.4 itself, dropping its own definition for ours changes nothing either
        assert again["registered"] and again["encodings"] == native["encodings"]
    assert cpm4["native"] and cpm4["encodings"] == native_cpm3["encodings"]
