"""The CLI front: version, help for every subcommand, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minicpm_tui.cli import SUBCOMMANDS, main


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minicpm_tui", *args], capture_output=True, text=True, timeout=timeout)


def test_version():
    proc = _cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("minicpm-tui ")


def test_top_help_lists_every_subcommand():
    proc = _cli("--help")
    assert proc.returncode == 0
    for name in ["probe", "plan", "validate", "register", "generate", "run", "runs", "monitor", "stop", "doctor", "smoke"]:
        assert name in SUBCOMMANDS
        assert f"  {name} " in proc.stdout


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"minicpm-tui {name}" in out


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_argument_says_what_it_is(name):
    # `monitor RUN_DIR` and `stop RUN_DIR` had no help line, `plan --lora-rank/--epochs` none at all, and
    # generate showed `--stage RECIPE_STAGE`: an argparse dest, not a value a person can type.
    import argparse
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(f"minicpm_tui.commands.{name}").add_arguments(parser)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"{name} {label}: no help text"
    assert "RECIPE_" not in parser.format_help()


def test_the_readme_table_names_only_flags_that_exist():
    # The README's subcommand table and example session are what a new user types: every flag they name
    # must be one of that subcommand's own.
    import argparse
    import importlib
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `minicpm-tui (\w+)([^`]*)` \|", readme, re.MULTILINE)
    assert {name for name, _ in rows} == set(SUBCOMMANDS) - {"wizard"}
    # ... and so must the commands of its example session.
    blocks = "\n".join(re.findall(r"^```bash\n(.*?)^```", readme, re.MULTILINE | re.DOTALL))
    session = [(name, rest.split("#")[0]) for name, rest in re.findall(r"^minicpm-tui (\w+)(.*)$", blocks, re.MULTILINE)]
    assert len(session) >= 7
    for name, usage in rows + session:
        parser = argparse.ArgumentParser()
        importlib.import_module(f"minicpm_tui.commands.{name}").add_arguments(parser)
        known = {flag for action in parser._actions for flag in action.option_strings}
        for flag in re.findall(r"--[\w-]+", usage):
            assert flag in known, f"README: `minicpm-tui {name}` has no {flag}"


def test_unknown_subcommand_is_one_line_with_a_hint():
    proc = _cli("plna")
    assert proc.returncode == 2
    assert "unknown subcommand 'plna'" in proc.stderr
    assert "plan" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_error_is_one_line(capsys, monkeypatch):
    from minicpm_tui.commands import doctor
    from minicpm_tui.core.errors import UserError

    def boom(args):
        raise UserError("no such file", where="data/x.json", fix="check the path")

    monkeypatch.setattr(doctor, "run", boom)
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "minicpm-tui: error: data/x.json: no such file; check the path"


@pytest.mark.parametrize("argv", [
    ["convert", "{d}/in.jsonl", "{d}/afile/out.jsonl", "--openai-to-sharegpt"],
    ["convert", "{d}/in.jsonl", "{d}/adir.jsonl", "--openai-to-sharegpt", "--force"],
    ["probe", "--save", "{d}/afile/box.json"],
    ["generate", "minicpm4-0.5b-sft-lora", "--hardware", "1x-rtx4090", "--out", "{d}/afile/run", "--no-preflight"],
    ["generate", "minicpm4-0.5b-sft-lora", "--hardware", "1x-rtx4090", "--dry-run", "--save-recipe", "{d}/adir.jsonl"],
    ["register", "{d}/in.jsonl", "--name", "x", "--dataset-dir", "{d}/afile/sub"],
])
def test_unusable_output_path_is_one_line_naming_it(argv, tmp_path, capsys):
    # A file where a folder is needed, or a folder where a file is: these were internal errors (exit 70)
    # naming our temp file or nothing useful.
    (tmp_path / "in.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, '
                                       '{"role": "assistant", "content": "yo"}]}\n')
    (tmp_path / "afile").write_text("a file, not a folder\n")
    (tmp_path / "adir.jsonl").mkdir()
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" not in err and ".tmp" not in err, err
    assert str(tmp_path / "afile") in err or str(tmp_path / "adir.jsonl") in err, err
    assert "where a folder is needed" in err or "where a file is needed" in err, err


def test_os_error_without_a_path_is_still_an_internal_error(capsys, monkeypatch):
    from minicpm_tui.commands import doctor

    def boom(args):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(doctor, "run", boom)
    assert main(["doctor"]) == 70
    assert "internal error in `doctor`" in capsys.readouterr().err


def test_save_recipe_never_overwrites_without_force_and_keeps_a_backup(tmp_path, capsys):
    # `generate ... --save-recipe FILE` replaced an existing FILE silently.
    mine = tmp_path / "mine.yaml"
    mine.write_text("my notes, not a recipe\n")
    argv = ["generate", "minicpm4-0.5b-sft-lora", "--hardware", "1x-rtx4090", "--dry-run", "--save-recipe", str(mine)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--save-recipe" in err and "--force" in err and len(err.splitlines()) == 1
    assert mine.read_text() == "my notes, not a recipe\n"
    assert main([*argv, "--force"]) == 0
    assert "stage: sft" in mine.read_text()
    backups = list(tmp_path.glob("mine.yaml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == "my notes, not a recipe\n"


@pytest.mark.parametrize(("argv", "flag"), [
    # nan passed `<= 0` checks (and sleep(nan) / wait(timeout=nan) followed); 0 or negative process
    # counts and timeouts started a smoke training that could only fail.
    (["monitor", "{d}", "--plain", "--wait", "--interval", "nan"], "--interval"),
    (["monitor", "{d}", "--plain", "--interval", "inf"], "--interval"),
    (["stop", "{d}", "--grace", "nan"], "--grace"),
    (["stop", "{d}", "--timeout", "nan"], "--timeout"),
    (["smoke", "{d}", "--nproc", "0"], "--nproc"),
    (["smoke", "{d}", "--timeout", "-1"], "--timeout"),
    (["smoke", "{d}", "--timeout", "nan"], "--timeout"),
])
def test_nonsense_numbers_are_one_line_usage_errors(argv, flag, tmp_path, capsys):
    assert main([a.format(d=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"minicpm-tui: error: {flag}: must be a finite number") and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", ["smoke", "run", "stop", "monitor", "runs --watch"])
def test_run_dir_that_is_missing_or_a_file_says_so(command, tmp_path, capsys, monkeypatch):
    # `smoke nosuch` said "single_node.sh is missing"; `run FILE` said "no such run directory".
    monkeypatch.setenv("MINICPM_TUI_HOME", str(tmp_path / "home"))
    (tmp_path / "afile").write_text("x\n")
    for name, expected in (("nosuch", "nosuch: no such run directory;"),
                           ("afile", "afile: is a file, not a run directory;")):
        assert main([*command.split(), str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "single_node.sh" not in err and len(err.splitlines()) == 1


def test_stop_on_a_folder_that_is_no_run_directory_says_so(tmp_path, capsys, monkeypatch):
    # It answered "stop: not running (never); nothing to stop" with exit 0, as if the folder were a run.
    monkeypatch.setenv("MINICPM_TUI_HOME", str(tmp_path / "home"))
    (tmp_path / "plain").mkdir()
    assert main(["stop", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err.strip()
    assert "plain: not a run directory" in err and len(err.splitlines()) == 1


def test_smoke_refuses_more_processes_than_a_cpu_smoke_run_needs(tmp_path, capsys):
    # `smoke --nproc 10000` started 10000 CPU trainings; the bound is checked before the run directory is read.
    assert main(["smoke", str(tmp_path), "--nproc", "10000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minicpm-tui: error: --nproc: the smoke run takes 1 to 8 processes, not 10000")
    assert len(err.splitlines()) == 1


def test_generate_notes_a_learning_rate_far_above_the_usual_one(capsys):
    """`generate PRESET --stage/--method` keeps the preset's learning rate: full SFT's 1e-5 for a full DPO is
    said, with the flag that changes it."""
    hw = ["--hardware", "8x-a100-80gb-nvlink", "--dry-run"]
    assert main(["generate", "minicpm4-8b-sft-full", "--stage", "dpo", "--datasets", "demo_dpo", *hw]) == 0
    out = capsys.readouterr()
    assert "learning_rate: 1.0e-05" in out.out  # the person's recipe is not changed behind their back
    assert out.err.strip() == ("minicpm-tui: note: learning_rate 1e-05 is 20x the usual 5e-07 for full dpo; "
                               "if that is not meant, pass --learning-rate 5e-07")
    assert main(["generate", "minicpm4-8b-sft-full", "--stage", "dpo", "--datasets", "demo_dpo",
                 "--learning-rate", "5e-7", *hw]) == 0
    assert capsys.readouterr().err == ""


def test_generate_says_when_it_could_not_plan(tmp_path, capsys, monkeypatch):
    # `generate PRESET --hardware box.json` with a probe that has no GPU wrote conservative defaults and
    # said so only in a train.yaml comment; `plan --hardware box.json` refuses the same file.
    import json

    monkeypatch.chdir(tmp_path)
    (tmp_path / "box.json").write_text(json.dumps({"format": "minicpm-tui-hardware/1", "status": "no_library",
                                                   "gpus": []}), encoding="utf-8")
    assert main(["generate", "minicpm4-0.5b-sft-lora", "--out", "r", "--hardware", "box.json",
                 "--no-preflight"]) == 0
    out = capsys.readouterr().out
    assert "note: no GPU to plan for (hardware " in out and "box.json has none): used conservative defaults" in out
    assert "no GPU to plan for" in (tmp_path / "r" / "train.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(("argv", "meant"), [
    (["plan", "--modle", "MiniCPM4-8B"], "--model"),
    (["generate", "minicpm4-8b-sft-lora", "--out", "x", "--stgae", "dpo"], "--stage"),
    (["monitor", "r", "--onec"], "--once"),
    (["run", "r", "--chek"], "--check"),
])
def test_a_mistyped_flag_gets_a_suggestion(argv, meant, capsys):
    # argparse said only "unrecognized arguments: --modle MiniCPM4-8B".
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"did you mean {meant}?" in err


def test_a_mistyped_subcommand_gets_a_suggestion(capsys):
    assert main(["gnerate", "x"]) == 2
    assert "did you mean generate?" in capsys.readouterr().err


def test_ctrl_c_in_smoke_says_what_became_of_it(tmp_path, capsys, monkeypatch):
    """Ctrl-C during `smoke` (which prints nothing until it has ended) left exit 130 and not a word."""
    from minicpm_tui.core import smoke

    run_dir = tmp_path / "run"
    (run_dir / "smoke").mkdir(parents=True)

    def interrupted(*_args, **_kw):
        (run_dir / "smoke" / "smoke.log").write_text("step 1\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(smoke, "smoke", interrupted)
    assert main(["smoke", str(run_dir)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("minicpm-tui: smoke run interrupted (Ctrl-C): it is stopped, nothing of it is left running")
    assert f"its log so far: {run_dir / 'smoke' / 'smoke.log'}" in err
    assert err.rstrip().endswith(f"run it again with `minicpm-tui smoke {run_dir}`")


def test_a_symlink_loop_is_named_as_one_not_as_a_missing_file(tmp_path, capsys, monkeypatch):
    """A path that is a symlink to itself read as "no such file" (validate, convert, register, generate), and
    `stop`, `smoke`, `run`, `monitor`, `export` and `runs --watch` ended in an internal error (Path.resolve's
    RuntimeError)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dir").symlink_to(tmp_path / "dir")  # a folder on the way that loops
    for args in (["validate", "loop"], ["validate", "dir/data.jsonl"], ["convert", "loop", "out.jsonl"],
                 ["register", "loop", "--name", "x", "--dataset-dir", str(tmp_path)], ["generate", "loop", "--out", "o"],
                 ["stop", "loop"], ["smoke", "loop"], ["run", "loop"], ["monitor", "--plain", "loop"],
                 ["export", "loop"], ["runs", "--watch", "loop"]):
        assert main(args) == (1 if args[0] == "register" else 2), args  # register: 1, "data invalid"
        err = capsys.readouterr().err.strip()
        path = next(a for a in args[1:] if a.split("/")[0] in ("loop", "dir"))
        looping = tmp_path / path.split("/")[0]
        assert err.startswith(f"minicpm-tui: error: {path}: ") and "\n" not in err, err
        assert "is a symlink loop" in err and f"point {looping} at the real" in err, err
        assert "no such" not in err and "internal error" not in err, err
    # The same in a fresh process, and a missing path is still said to be missing.
    proc = _cli("stop", str(tmp_path / "loop"))
    assert proc.returncode == 2 and "is a symlink loop (it leads back to itself), not a run directory" in proc.stderr
    proc = _cli("validate", str(tmp_path / "absent.jsonl"))
    assert proc.returncode == 2 and "absent.jsonl: no such file or folder" in proc.stderr, proc.stderr


@pytest.mark.parametrize("name, said", [("a/b", "holds a path separator"), ("..", "is not a name"),
                                        ("", "is empty"), ("runs\\x", "holds a path separator")])
def test_generate_refuses_a_run_name_that_is_a_path(tmp_path, capsys, name, said):
    out = tmp_path / "run"
    assert main(["generate", "minicpm4-0.5b-sft-lora", "--out", str(out), "--name", name,
                 "--hardware", "1x-rtx4090"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minicpm-tui: error: --name: ") and said in err and "\n" not in err, err
    assert not out.exists()
    # recipe.yaml is checked by the same declaration (and so is every form that renders the option).
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: {name!r}\n".replace("\\\\", "\\"))
    assert main(["generate", str(recipe), "--out", str(out), "--hardware", "1x-rtx4090"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{recipe}: name: name: " in err and said in err, err


def test_on_a_terminal_the_smoke_step_counts_up_in_place():
    import pty

    from minicpm_tui.commands.smoke import _Progress

    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as stream:
        say = _Progress(stream)
        assert say.tty
        for event in [("starting", None, None), ("training", None, None), ("training", 1, 3), ("training", 2, 3),
                      ("saving", None, 3)]:
            say(*event)
        say.end()
        written = os.read(master, 4096).decode()
    os.close(master)
    assert written.replace("\r\n", "\n") == ("smoke: starting\n\r\x1b[Ksmoke: training step 1/3\r\x1b[Ksmoke: "
                                            "training step 2/3\nsmoke: saving\n"), repr(written)
