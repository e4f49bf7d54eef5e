"""Run directories for a LLaMA-Factory that is not this machine's (``lf_target``: a shipped release
snapshot, or a report saved by `doctor --save` where it will train).

The snapshots are compared with live introspections of the real releases (so they cannot go stale), and
what is generated from each is parsed by that release's own argument parser in its own environment, as
`run --check` does on the machine that trains.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_smoke_support import demo_recipe, write_matrix

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.lfinfo import installed_lf_version, lf_info
from minicpm_tui.core.lftarget import known_releases, load_release, releases_dir, snapshot_of
from minicpm_tui.core.preflight import preflight_many
from minicpm_tui.core.recipe import Recipe
from minicpm_tui.core.writers import generate, render

RELEASES = ["0.9.2", "0.9.3", "0.9.4", "0.9.5"]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minicpm_tui", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def release_python(version: str) -> str:
    """The python of a real environment of ``version``: this one for the installed release, else its
    lfcompat venv (tests/test_lf_versions.py's; skipped only when it is not built here)."""
    if installed_lf_version(sys.executable) == version:
        return sys.executable
    from test_lf_versions import compat_python

    return compat_python(version)


def _no_python_here(monkeypatch, tmp_path: Path) -> None:
    """This machine's training Python cannot be run: a target must not need it."""
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "no-llamafactory-here" / "python"))
    monkeypatch.delenv("TRAIN_PYTHON", raising=False)


# -- the shipped snapshots ---------------------------------------------------------------------------
def test_every_supported_release_ships_a_snapshot_without_machine_paths():
    assert known_releases() == RELEASES  # pyproject: llamafactory>=0.9.2,<0.10
    for version in RELEASES:
        text = (releases_dir() / f"{version}.json").read_text(encoding="utf-8")
        raw = json.loads(text)
        assert raw["snapshot"]["release"] == raw["llamafactory"]["version"] == version
        assert "python" not in raw and not {"package_dir", "launcher", "source_train_py"} & set(raw["llamafactory"])
        # No path of the machine that wrote it: no absolute path at all, none of this checkout or interpreter.
        here = (str(Path(__file__).resolve().parents[1]), sys.prefix, os.path.expanduser("~"))
        assert not any(p in text for p in here if len(p) > 1) and "site-packages" not in text and '"/' not in text
        info = load_release(version)
        assert info.target == version and info.python == "" and info.version == version
        assert info.describe() == f"the LLaMA-Factory {version} snapshot"
        assert {"template", "deepspeed", "pref_beta", "cutoff_len", "trust_remote_code"} <= info.all_keys
        # cpm / cpm3 up to 0.9.4, cpm4 from 0.9.3 on (knowledge: minicpm-and-llamafactory.md)
        assert info.has_template("cpm") == info.has_template("cpm3") == (version != "0.9.5")
        assert info.has_template("cpm4") == (version != "0.9.2")


# -- generating for a release from here -------------------------------------------------------------
def test_a_release_target_needs_no_llamafactory_here(tmp_path, monkeypatch):
    """With no usable training Python here, `installed` cannot generate, a release can: the run directory
    takes that release's template, names no Python of this machine, and its preflight says what it left
    to the machine that trains."""
    _no_python_here(monkeypatch, tmp_path)
    with pytest.raises(UserError, match="training Python"):
        render(demo_recipe())
    run = tmp_path / "run"
    reports: list = []
    generate(demo_recipe(lf_target="0.9.2"), run, reports=reports)
    cfg = yaml.safe_load((run / "train.yaml").read_text())
    assert cfg["template"] == "cpm3"  # 0.9.2 has no cpm4 yet; MiniCPM4's format is cpm3 there
    meta = json.loads((run / "generated.json").read_text())
    assert meta["llamafactory"] == "0.9.2" and meta["resolved"]["training_python"] == ""
    assert meta["lf_target"] == {"value": "0.9.2", "checked_against": "the LLaMA-Factory 0.9.2 snapshot",
                                 "saved_python": None}
    for name in ("single_node.sh", "multi_node.sh", "slurm.sbatch"):
        text = (run / name).read_text()
        assert 'TRAIN_PYTHON="${TRAIN_PYTHON:-python3}"' in text and sys.executable not in text, name
    assert sys.executable not in "".join(p.read_text() for p in run.iterdir() if p.is_file())
    (report,) = reports
    assert report.ok and report.target == "the LLaMA-Factory 0.9.2 snapshot"
    assert "train.yaml: keys and template against the LLaMA-Factory 0.9.2 snapshot" in report.checked
    assert "train.yaml: LLaMA-Factory's argument parser" not in report.checked
    assert report.notes[0] == ("written for the LLaMA-Factory 0.9.2 snapshot, not this machine's LLaMA-Factory; "
                               "left for `minicpm-tui run --check` on the machine that trains: LLaMA-Factory's own "
                               f"argument parser; run `minicpm-tui run --check {run}` there, with TRAIN_PYTHON set "
                               "to that environment's python")
    assert report.notes[0] == report.target_note() and report.notes.count(report.target_note()) == 1
    # ZeRO-2: DeepSpeed's config model is left to the target too
    generate(demo_recipe(lf_target="0.9.2", zero_stage=2, gpus=2), tmp_path / "z2", reports=reports)
    assert reports[1].not_checked == ["LLaMA-Factory's own argument parser", "DeepSpeed's config model"]


def test_templates_and_keys_follow_the_target_not_the_installed(tmp_path, lf):
    """Where the releases differ, the run directory follows the target: MiniCPM-2B's `cpm` is 0.9.3's own
    but train_entry.py's on 0.9.5 (installed here); `save_safetensors` (transformers 4) and the
    `baichuan2` template are 0.9.3's only."""
    if lf.version != "0.9.5":
        pytest.skip(f"written for LLaMA-Factory 0.9.5 installed here, found {lf.version}")
    _, installed = render(demo_recipe(model="MiniCPM-2B"))
    _, old = render(demo_recipe(model="MiniCPM-2B", lf_target="0.9.3"))
    assert (installed.template, installed.template_from_entry, installed.lf_version) == ("cpm", True, "0.9.5")
    assert (old.template, old.template_from_entry, old.lf_version) == ("cpm", False, "0.9.3")
    assert installed.training_python == lf.python and old.training_python == ""

    extra = {"save_safetensors": True}
    files, _ = render(demo_recipe(lf_target="0.9.3", extra_args=extra))
    assert yaml.safe_load(files["train.yaml"])["save_safetensors"] is True
    with pytest.raises(UserError) as exc:
        render(demo_recipe(extra_args=extra))
    assert "'save_safetensors' does not exist in the installed LLaMA-Factory (0.9.5)" in exc.value.one_line()
    with pytest.raises(UserError) as exc:
        render(demo_recipe(lf_target="0.9.5", extra_args=extra))
    assert "does not exist in the LLaMA-Factory 0.9.5 snapshot" in exc.value.one_line()
    assert "extra_args" in exc.value.one_line()

    files, _ = render(demo_recipe(lf_target="0.9.3", template="baichuan2"))
    assert yaml.safe_load(files["train.yaml"])["template"] == "baichuan2"
    with pytest.raises(UserError, match="'baichuan2' is not registered by the installed LLaMA-Factory"):
        render(demo_recipe(template="baichuan2"))


def test_the_preflight_against_a_target_finds_what_it_lacks(tmp_path, monkeypatch):
    """A run directory written for 0.9.3 and then edited: the check against the 0.9.5 snapshot (no
    LLaMA-Factory here) names the key and the template that release lacks."""
    from minicpm_tui.core.preflight import preflight

    _no_python_here(monkeypatch, tmp_path)
    run = tmp_path / "run"
    generate(demo_recipe(model="MiniCPM-2B", lf_target="0.9.3", extra_args={"save_safetensors": True}), run)
    (run / "train.yaml").write_text((run / "train.yaml").read_text().replace("template: cpm", "template: baichuan2"))
    report = preflight(run, target=load_release("0.9.5"))
    lines = sorted(p.one_line() for p in report.problems)
    assert lines == ["train.yaml: save_safetensors: is not an argument of the LLaMA-Factory 0.9.5 snapshot; "
                     "did you mean save_steps?",
                     "train.yaml: template: template 'baichuan2' is not registered by the LLaMA-Factory 0.9.5 "
                     "snapshot; pick one it registers (`minicpm-tui doctor --json` there lists them)"]
    assert not report.ok and "LLaMA-Factory's own argument parser" in report.not_checked
    # cpm is train_entry.py's on 0.9.5: not a problem there
    (run / "train.yaml").write_text((run / "train.yaml").read_text().replace("template: baichuan2", "template: cpm"))
    assert [p.key for p in preflight(run, target=load_release("0.9.5")).problems] == ["save_safetensors"]


def local_model(root: Path) -> Path:
    """A checkpoint folder on this machine (its config.json: MiniCPM4's chat format), named by its path."""
    folder = root / "ckpt" / "my-minicpm4"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "minicpm", "vocab_size": 73448, "hidden_size": 1024, "intermediate_size": 4096,
        "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 2,
        "max_position_embeddings": 4096}))
    return folder


def test_generate_for_a_target_says_once_what_it_left_there_the_model_path_too(tmp_path):
    """The plan's "written for" note and the preflight's account of what it checked are one message: what was
    left for `run --check` on the machine that trains, which includes a model named by its path here (said,
    not refused: the path may well be there too). The commands to run there follow once, in the next line."""
    model = local_model(tmp_path)
    env = {**os.environ, "MINICPM_TUI_TRAIN_PYTHON": str(tmp_path / "none" / "python")}
    env.pop("TRAIN_PYTHON", None)
    run = tmp_path / "run"
    base = [sys.executable, "-m", "minicpm_tui", "generate", "minicpm4-0.5b-sft-lora", "--model", str(model),
            "--hardware", "1x-a10-24gb", "--lf-target", "0.9.3"]
    proc = subprocess.run(base + ["--out", str(run)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert proc.stdout.count("written for") == 1 and "checked against" not in proc.stdout, proc.stdout
    assert ("  written for the LLaMA-Factory 0.9.3 snapshot, not this machine's LLaMA-Factory; left for `minicpm-tui "
            "run --check` on the machine that trains: LLaMA-Factory's own argument parser and the model at "
            f"{model}") in lines
    assert (f"  note: the model is named by its path on this machine ({model}), which the run directory does not "
            "carry: copy it to the same path on the machine that trains, or use its hub id (--model ORG/NAME), or "
            "edit model_name_or_path in train.yaml there") in lines
    assert proc.stdout.count(f"minicpm-tui run --check {run}") == 1
    assert lines[-1] == (f"next, on the machine that trains (TRAIN_PYTHON set to that environment's python): "
                         f"minicpm-tui run --check {run}   then   minicpm-tui run {run}")
    # The folder itself keeps both notes: it is read without generate's output.
    yaml_text = (run / "train.yaml").read_text()
    assert "# Note: written for the LLaMA-Factory 0.9.3 snapshot" in yaml_text
    assert f"# Note: the model is named by its path on this machine ({model})" in yaml_text
    assert f"model_name_or_path: {model}" in yaml_text
    # --json: the one message in full, with the command to run there
    proc = subprocess.run(base + ["--out", str(tmp_path / "j"), "--json"], capture_output=True, text=True,
                          timeout=120, env=env)
    data = json.loads(proc.stdout)
    pre = data["preflight"]
    assert pre["not_checked"] == ["LLaMA-Factory's own argument parser", f"the model at {model}"]
    said = [n for n in data["notes"] if "written for" in n]
    assert said == [pre["notes"][0]] and said[0].endswith(
        f"run `minicpm-tui run --check {tmp_path / 'j'}` there, with TRAIN_PYTHON set to that environment's python")


def test_a_model_path_is_said_only_where_the_run_directory_goes_elsewhere(tmp_path):
    """Written for this machine and not carried: the path is right. Written for a target, or with the data
    bundled to be moved: the model is not carried, so it is said (in the wizard's words there). A hub id: never."""
    from minicpm_tui.core.lfinfo import LFInfo
    from minicpm_tui.core.writers import model_path_note

    model = str(local_model(tmp_path))
    here = LFInfo(load_release("0.9.5").raw)  # as the installed one reads: written for this machine

    def said(info, **values) -> list[str]:
        return [n for n in render(demo_recipe(**values), info)[1].notes if "the model is named by its path" in n]

    assert said(here, model=model) == []
    assert said(here, model=model, bundle_data=True) == [model_path_note(model, False, True)]
    assert said(load_release("0.9.3"), model=model) == [model_path_note(model, True, False)]
    assert said(load_release("0.9.3"), bundle_data=True) == []  # MiniCPM4-0.5B: its hub id
    tui = model_path_note(model, True, False, tui=True)
    assert tui == (f"{model}: a path here, not carried: copy it to that path on the machine that trains, name it by "
                   "its hub id (step 2), or edit model_name_or_path in train.yaml there")
    assert model_path_note("openbmb/MiniCPM4-0.5B", True, True) is None


def test_run_check_where_it_trains_looks_for_a_model_path(tmp_path):
    """What generate left for `run --check` on the machine that trains includes the model at its path: that
    check (the preflight without a target) looks for it there; LLaMA-Factory's parser takes any string."""
    from minicpm_tui.core.preflight import PreflightReport, _check_model

    model = local_model(tmp_path)
    run = tmp_path / "run"
    generate(demo_recipe(model=str(model), lf_target="0.9.3"), run)
    report = PreflightReport(run_dir=run)
    _check_model(run, report)
    assert report.ok and report.checked == [f"model: found at {model}"]
    model.rename(tmp_path / "moved")
    report = PreflightReport(run_dir=run)
    _check_model(run, report)
    (problem,) = report.problems
    assert problem.one_line() == (f"train.yaml: model_name_or_path: {model} does not exist on this machine (the model "
                                  "is read from that path); copy the model to that path, or set model_name_or_path "
                                  "to where it is here, or to its hub id")
    hub = tmp_path / "hub"
    generate(demo_recipe(lf_target="0.9.3"), hub)
    report = PreflightReport(run_dir=hub)
    _check_model(hub, report)
    assert report.ok and not report.checked  # a hub id: LLaMA-Factory fetches it there


def only_the_target_has(lf) -> tuple[str, str]:
    """(a release other than the installed one, an argument key it has and the installed one lacks)."""
    for release in reversed(RELEASES):
        if release != lf.version:
            extra = sorted(k for k in load_release(release).all_keys - lf.all_keys if not k.startswith("_"))
            if extra:
                return release, extra[0]
    pytest.skip(f"no shipped release has a key LLaMA-Factory {lf.version} lacks")


def test_a_smoke_run_here_of_a_target_says_what_it_proves_or_is_refused(tmp_path, lf, monkeypatch):
    """A run directory written for another release, smoked with this machine's LLaMA-Factory: that proves the
    data and scripts, not the target's release (said); a train.yaml this one cannot parse (a key only the
    target has) is refused before anything is built, in one line with the fix; no LLaMA-Factory here, too.
    Written for this machine's: nothing is asked."""
    from minicpm_tui.core.smoke import prepare_smoke, smoke_here

    monkeypatch.delenv("TRAIN_PYTHON", raising=False)
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", lf.python)
    release, key = only_the_target_has(lf)
    run = tmp_path / "run"
    generate(demo_recipe(lf_target=release), run)
    here = smoke_here(run)
    assert (here.wanted, here.here, here.refused, here.target) == (
        release, lf.version, "", f"the LLaMA-Factory {release} snapshot")
    assert here.other_release and here.note() == (
        f"written for LLaMA-Factory {release} but smoked with {lf.version} ({lf.python}): it proves the data and "
        "the scripts, not that release; set TRAIN_PYTHON to a python with it, or smoke it on the target machine")
    assert here.note() in prepare_smoke(run, steps=1).notes

    bad = tmp_path / "bad"
    generate(demo_recipe(lf_target=release, extra_args={key: 1}), bad)
    here = smoke_here(bad)
    assert here.refused == (f"LLaMA-Factory {lf.version} here lacks train.yaml's {key} (written for {release}): its "
                            "argument parser stops on it") and here.note() is None
    with pytest.raises(UserError) as exc:
        prepare_smoke(bad)
    assert exc.value.one_line() == (
        f"{bad}: not smoked here: {here.refused}; smoke it on the machine that trains (`minicpm-tui smoke RUN_DIR` "
        f"there), or set TRAIN_PYTHON to a python with LLaMA-Factory {release}")
    assert not (bad / "smoke").exists()

    monkeypatch.setenv("TRAIN_PYTHON", str(tmp_path / "none" / "python"))
    assert smoke_here(run).refused.startswith("training Python ")
    monkeypatch.delenv("TRAIN_PYTHON")
    mine = tmp_path / "mine"
    generate(demo_recipe(), mine, preflight=False)
    assert smoke_here(mine).target == "" and not smoke_here(mine).other_release


# -- bad input: one line, the file named, the fix given ----------------------------------------------
def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minicpm-tui: error: "), proc.stderr
    return lines[0]


def test_bad_targets_are_one_line_errors(tmp_path):
    out = str(tmp_path / "run")
    base = ("generate", "minicpm4-0.5b-sft-lora", "--hardware", "1x-a10-24gb", "--out", out, "--lf-target")
    line = _one_error_line(_cli(*base, "0.9.1"))
    assert "no snapshot of LLaMA-Factory 0.9.1 (minicpm-tui ships 0.9.2, 0.9.3, 0.9.4, 0.9.5)" in line
    assert line.startswith("minicpm-tui: error: --lf-target: ")
    missing = tmp_path / "box.json"
    line = _one_error_line(_cli(*base, str(missing)))
    assert line.startswith(f"minicpm-tui: error: {missing}: lf_target: no such file; ") and "doctor --save" in line
    cases = {"truncated.json": ('{"llamafactory": {', "not valid JSON"),
             "list.json": ("[1, 2]", "a JSON list, not an introspection report object"),
             "nolf.json": (json.dumps({"python": {}, "llamafactory": {"importable": False, "error": "No module x"}}),
                           "LLaMA-Factory was not importable there (No module x)"),
             "nokeys.json": (json.dumps({"llamafactory": {"importable": True, "version": "0.9.3",
                                                          "templates": ["cpm4"]}}),
                             "no argument keys (`llamafactory.hparams`)"),
             "binary.json": (b"\xff\xfe{", "not UTF-8 text")}
    for name, (content, words) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        line = _one_error_line(_cli(*base, str(path)))
        assert line.startswith(f"minicpm-tui: error: {path}: lf_target: ") and words in line, line
        assert "minicpm-tui doctor --save FILE" in line, line
    assert not (tmp_path / "run").exists()
    # in a recipe file: the same check, naming the recipe and field
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(Recipe(lf_target="0.9.1").dump().replace("lf_target: installed", "lf_target: '0.9.1'"))
    with pytest.raises(UserError) as exc:
        Recipe.load(recipe)
    assert exc.value.one_line().startswith(f"{recipe}: lf_target: lf_target: no snapshot of LLaMA-Factory 0.9.1")


def test_an_imported_yaml_is_checked_against_the_target(tmp_path):
    """`generate --from-yaml OLD.yaml --lf-target R`: its keys are R's (save_safetensors: 0.9.3's, not
    0.9.5's), with no LLaMA-Factory asked here."""
    old = tmp_path / "old.yaml"
    old.write_text("model_name_or_path: openbmb/MiniCPM4-0.5B\nstage: sft\nfinetuning_type: lora\n"
                   f"dataset: demo_sft\ndataset_dir: {demo_recipe().dataset_dir}\nsave_safetensors: true\n")
    env = {**os.environ, "MINICPM_TUI_TRAIN_PYTHON": str(tmp_path / "none" / "python")}
    base = ("generate", "--from-yaml", str(old), "--hardware", "1x-a10-24gb", "--dry-run", "--lf-target")
    proc = _cli(*base, "0.9.3", env=env)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["save_safetensors"] is True
    proc = _cli(*base, "0.9.5", env=env)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"minicpm-tui: error: {old}: keys unknown to the LLaMA-Factory 0.9.5 snapshot: save_safetensors; "
        "remove or rename them, then import again")


def test_doctor_save_refuses_to_overwrite_before_inspecting(tmp_path):
    box = tmp_path / "box.json"
    box.write_text("keep")
    line = _one_error_line(_cli("doctor", "--save", str(box), "--python", str(tmp_path / "none")))
    assert line == f"minicpm-tui: error: --save: {box} exists; pass --force to overwrite it or pick another name"
    assert box.read_text() == "keep"


# -- against the real releases -------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("version", RELEASES)
def test_each_snapshot_is_what_its_release_reports(version):
    """The committed snapshot equals a live introspection of that release's environment, less its machine's
    paths: regenerate with `python scripts/lf_snapshots.py` when a release environment changes."""
    python = release_python(version)
    live = snapshot_of(lf_info(python=python).raw)
    committed = json.loads((releases_dir() / f"{version}.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(live)), (
        f"presets/lf_releases/{version}.json is stale: run `python scripts/lf_snapshots.py {version}`")


@pytest.mark.integration
@pytest.mark.parametrize("version", RELEASES)
def test_generated_for_each_snapshot_passes_that_releases_parser(tmp_path, version, monkeypatch):
    """Every model x stage x method, QLoRA + ZeRO-3 and every hardware preset generated here for the
    release's snapshot (no LLaMA-Factory of this machine asked), then checked where that release is, as
    `run --check` there does: its own argument parser and DeepSpeed's config model take every one."""
    python = release_python(version)
    _no_python_here(monkeypatch, tmp_path)
    info = load_release(version)
    dirs = write_matrix(tmp_path / "matrix", info)
    reports: list = []
    generate(demo_recipe(model="MiniCPM-2B", lf_target=version), tmp_path / "via-recipe", reports=reports)
    assert reports[0].ok and reports[0].target, reports[0].problems
    dirs.append(tmp_path / "via-recipe")
    for run in dirs:
        meta = json.loads((run / "generated.json").read_text())
        assert meta["resolved"]["training_python"] == "" and meta["llamafactory"] == version, run.name
        cfg = yaml.safe_load((run / "train.yaml").read_text())
        if run.name.startswith(("MiniCPM-1B", "MiniCPM-2B", "via-recipe")):
            assert cfg["template"] == "cpm", run.name
        elif run.name.startswith("MiniCPM"):
            assert cfg["template"] == ("cpm3" if version == "0.9.2" else "cpm4"), run.name
    monkeypatch.setenv("TRAIN_PYTHON", python)  # the target machine's python, as its scripts would take it
    checked = preflight_many(dirs)
    bad = [f"{r.run_dir.name}: {p.one_line()}" for r in checked for p in r.problems]
    assert not bad, f"LLaMA-Factory {version}:\n" + "\n".join(bad)
    assert all("train.yaml: LLaMA-Factory's argument parser" in r.checked and not r.target for r in checked)
    assert sum("ds_config.json: DeepSpeed's config model" in r.checked for r in checked) > 10


@pytest.mark.integration
def test_doctor_save_round_trip_into_generate(tmp_path):
    """`doctor --save` where it trains (here the 0.9.3 environment), `generate --lf-target FILE` where no
    such LLaMA-Factory is, then `run --check` back in that environment: its parser takes the run directory."""
    python = release_python("0.9.3")
    box = tmp_path / "box.json"
    proc = _cli("doctor", "--save", str(box), "--python", python)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"saved LLaMA-Factory 0.9.3's report to {box}" in proc.stdout
    saved = json.loads(box.read_text())
    assert saved["python"]["executable"] == python and saved["llamafactory"]["version"] == "0.9.3"
    assert "torch" in saved and "deepspeed" in saved  # the whole doctor report, not the snapshot
    assert _one_error_line(_cli("doctor", "--save", str(box), "--python", python)).endswith(
        "exists; pass --force to overwrite it or pick another name")

    env = {**os.environ, "MINICPM_TUI_TRAIN_PYTHON": str(tmp_path / "none" / "python")}
    env.pop("TRAIN_PYTHON", None)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "generate", "minicpm-2b-sft-lora", "--hardware",
                           "8x-a100-80gb-nvlink", "--zero-stage", "2", "--lf-target", "box.json", "--out", str(run)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("written for LLaMA-Factory 0.9.3 as saved in box.json, not this machine's LLaMA-Factory; left for "
            "`minicpm-tui run --check` on the machine that trains: LLaMA-Factory's own argument parser and "
            "DeepSpeed's config model") in proc.stdout
    assert "checked against" not in proc.stdout and proc.stdout.count("written for") == 1
    assert (f"next, on the machine that trains (TRAIN_PYTHON={shlex.quote(python)}): minicpm-tui run --check "
            f"{run}") in proc.stdout
    cfg = yaml.safe_load((run / "train.yaml").read_text())
    assert cfg["template"] == "cpm" and cfg["deepspeed"] == "ds_config.json"
    meta = json.loads((run / "generated.json").read_text())
    assert meta["resolved"]["training_python"] == "" and meta["lf_target"]["saved_python"] == python
    assert meta["lf_target"]["value"] == str(box)  # a flag's relative path: this folder's file
    assert "as saved in box.json" in (run / "train.yaml").read_text()

    env["TRAIN_PYTHON"] = python  # on the machine that trains
    proc = _cli("run", str(run), "--check", env=env)
    assert proc.returncode == 0 and "\npreflight ok (" in proc.stdout, proc.stdout + proc.stderr
    assert "train.yaml: LLaMA-Factory's argument parser" in proc.stdout
    assert "ds_config.json: DeepSpeed's config model" in proc.stdout


@pytest.mark.integration
def test_a_run_directory_for_a_release_trains_in_that_release(tmp_path, monkeypatch):
    """Written here for 0.9.3 (MiniCPM-2B: its own `cpm`), smoked with 0.9.3's python as TRAIN_PYTHON: a real
    training through the run directory's scripts. Smoked with another release, it says what that proves."""
    from test_smoke_support import SMOKE_TIMEOUT_S

    from minicpm_tui.core.smoke import prepare_smoke, read_losses, smoke

    python = release_python("0.9.3")
    _no_python_here(monkeypatch, tmp_path)
    run = tmp_path / "run"
    generate(demo_recipe(model="MiniCPM-2B", lf_target="0.9.3"), run)
    if installed_lf_version(sys.executable) != "0.9.3":
        monkeypatch.setenv("TRAIN_PYTHON", sys.executable)
        notes = prepare_smoke(run, steps=2).notes
        assert any(n.startswith("written for LLaMA-Factory 0.9.3 but smoked with ") for n in notes), notes
    monkeypatch.setenv("TRAIN_PYTHON", python)
    result = smoke(run, steps=2, timeout=SMOKE_TIMEOUT_S)
    assert result.passed, f"{result.reason}\n{result.log_tail}"
    assert result.spec is not None and result.spec.env["TRAIN_PYTHON"] == python
    assert not any("written for" in n for n in result.spec.notes), result.spec.notes
    losses = read_losses(result.output_dir)
    assert [s for s, _ in losses] == [1, 2], losses
    assert "registered chat template(s) missing" not in result.log_path.read_text(errors="replace")
