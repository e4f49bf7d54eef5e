"""Generated run directories: the matrix of models x stages x methods and hardware presets passes
LLaMA-Factory's own parser (one batched subprocess), DeepSpeed's config model, bash -n and shellcheck."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_smoke_support import demo_recipe, write_matrix

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.preflight import preflight_many
from minicpm_tui.core.writers import GENERATED_FILES, generate


def _shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None:
        apt = subprocess.run(["apt-get", "install", "-y", "shellcheck"], capture_output=True, text=True)
        path = shutil.which("shellcheck")
        if path is None:
            pytest.skip(f"shellcheck missing and apt-get could not install it: {apt.stderr.strip()[-200:]}")
    return path


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, lf):
    return write_matrix(tmp_path_factory.mktemp("matrix"), lf)


@pytest.mark.integration
def test_matrix_passes_llamafactory_and_deepspeed(matrix):
    reports = preflight_many(matrix)
    bad = [f"{r.run_dir.name}: {p.one_line()}" for r in reports for p in r.problems]
    assert not bad, "\n".join(bad)
    assert any("ds_config.json" in " ".join(r.checked) for r in reports)


def test_matrix_scripts_pass_bash_n_and_shellcheck(matrix):
    checker = _shellcheck()
    scripts = [str(d / name) for d in matrix for name in ("single_node.sh", "multi_node.sh", "slurm.sbatch")]
    for script in scripts:
        proc = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        assert proc.returncode == 0, (script, proc.stderr)
    proc = subprocess.run([checker, "-S", "style", *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_matrix_templates_and_keys(matrix, lf):
    keys = lf.all_keys
    for run in matrix:
        cfg = yaml.safe_load((run / "train.yaml").read_text())
        assert set(cfg) <= keys, set(cfg) - keys
        assert cfg["trust_remote_code"] is True  # every MiniCPM 1-4 checkpoint ships remote code
        assert cfg["output_dir"] == "output"
        name = run.name
        if name.startswith(("MiniCPM-1B", "MiniCPM-2B")):
            assert cfg["template"] == "cpm"
        elif name.startswith("MiniCPM"):
            assert cfg["template"] == ("cpm4" if lf.has_template("cpm4") else "cpm3")
        if cfg.get("deepspeed"):
            ds = json.loads((run / cfg["deepspeed"]).read_text())
            assert ds["zero_optimization"]["stage"] in (2, 3)
        for name in GENERATED_FILES:
            if name != "ds_config.json":
                assert (run / name).is_file(), name
        assert "HF_TOKEN=" not in (run / "single_node.sh").read_text()


def test_pre_ampere_gets_sdpa_and_fp16(tmp_path, lf):
    recipe = demo_recipe("sft", "lora", model="MiniCPM-2B", gpus="auto", hardware="4x-v100-32gb",
                         precision="auto", flash_attn="auto", zero_stage="auto")
    generate(recipe, tmp_path / "v100", info=lf, preflight=False)
    cfg = yaml.safe_load((tmp_path / "v100" / "train.yaml").read_text())
    assert cfg["flash_attn"] == "sdpa" and cfg.get("fp16") is True and "bf16" not in cfg


def test_nccl_flags_only_when_asked_with_reason(tmp_path, lf):
    recipe = demo_recipe("sft", "lora", gpus=2, nccl_env={"NCCL_P2P_DISABLE": "1"}, nccl_auto=False)
    generate(recipe, tmp_path / "n", info=lf, preflight=False)
    text = (tmp_path / "n" / "single_node.sh").read_text()
    assert "NCCL_P2P_DISABLE=1" in text and "# NCCL_P2P_DISABLE:" in text
    assert "NCCL_IB_DISABLE" not in text
    generate(demo_recipe("sft", "lora", gpus=2, nccl_auto=False), tmp_path / "m", info=lf, preflight=False)
    assert "NCCL_P2P_DISABLE" not in (tmp_path / "m" / "single_node.sh").read_text()


def test_warmup_steps_in_extra_args_is_not_overridden_by_warmup_ratio(tmp_path, lf):
    # transformers 5 replaces warmup_steps by warmup_ratio whenever warmup_ratio is set: train.yaml held
    # both, so `extra_args: {warmup_steps: 100}` (an imported OpenBMB yaml) trained with 10% warmup.
    generate(demo_recipe(extra_args={"warmup_steps": 100}), tmp_path / "w", info=lf, preflight=False)
    cfg = yaml.safe_load((tmp_path / "w" / "train.yaml").read_text())
    assert cfg["warmup_steps"] == 100 and "warmup_ratio" not in cfg
    generate(demo_recipe(), tmp_path / "r", info=lf, preflight=False)
    assert "warmup_steps" not in yaml.safe_load((tmp_path / "r" / "train.yaml").read_text())


def test_a_saved_probe_without_gpus_is_named_in_the_notes(tmp_path, lf):
    # `probe --save box.json` on a machine without a GPU, then `generate ... --hardware box.json`: the
    # notes said "hardware: auto on a machine without GPUs", which was not what was asked.
    from minicpm_tui.core.probe import HardwareProfile
    from minicpm_tui.core.writers import resolve

    box = tmp_path / "box.json"
    box.write_text(json.dumps(HardwareProfile(status="no_library").to_dict()))
    res = resolve(demo_recipe(hardware=str(box), gpus="auto", zero_stage="auto", micro_batch="auto",
                              grad_accum="auto"), info=lf)
    planned = [n for n in res.notes if "conservative defaults" in n]
    assert planned and str(box) in planned[0] and "hardware: auto" not in planned[0], res.notes


def test_the_run_directorys_readme_resumes_the_way_run_does(tmp_path, lf):
    # It said "Rerun the same command" under `minicpm-tui run .`, which refuses a second start while a
    # checkpoint is there and asks for --resume.
    generate(demo_recipe(), tmp_path / "r", info=lf, preflight=False)
    text = (tmp_path / "r" / "README.md").read_text()
    assert "minicpm-tui run . --resume" in text and "Rerun the same command" not in text


def test_a_target_run_directorys_readme_says_to_launch_it_where_it_trains(tmp_path, lf):
    # Written for another machine's LLaMA-Factory, its README began with `minicpm-tui smoke .` and
    # `minicpm-tui run .`, as if here: a smoke run here trains with this machine's LLaMA-Factory, a launch
    # here trains the wrong one. It now says to copy it there and run the checks, smoke and launch there.
    from minicpm_tui.core.lftarget import known_releases
    from minicpm_tui.core.writers import run_dir_written_for

    release = known_releases()[0]
    generate(demo_recipe(lf_target=release), tmp_path / "t", preflight=False)
    generate(demo_recipe(), tmp_path / "here", info=lf, preflight=False)
    launch = (tmp_path / "t" / "README.md").read_text().split("## Launch\n", 1)[1].split("Overrides", 1)[0]
    assert launch.startswith(f"Written for the LLaMA-Factory {release} snapshot: copy this folder to the machine "
                             "that trains\n(data and model at the same paths), then there:\n"), launch
    assert launch.index("minicpm-tui run --check .") < launch.index("minicpm-tui smoke .") < \
        launch.index("minicpm-tui run .  ")
    assert "TRAIN_PYTHON=/path/to/python bash single_node.sh" in launch
    here = (tmp_path / "here" / "README.md").read_text().split("## Launch\n", 1)[1]
    assert here.startswith("    minicpm-tui smoke .            # a minute on the CPU") and "copy this" not in here
    # The plan's "written for" note, read back from the run directory (the wizard's Run step says it).
    note = run_dir_written_for(tmp_path / "t")
    assert note is not None and note.startswith(f"written for the LLaMA-Factory {release} snapshot, not this "
                                                "machine's LLaMA-Factory: run `minicpm-tui run --check RUN_DIR`")
    assert note in (tmp_path / "t" / "README.md").read_text().replace("\n", " ") or \
        note in (tmp_path / "t" / "train.yaml").read_text()
    assert run_dir_written_for(tmp_path / "here") is None


def test_never_overwrites_without_force(tmp_path, lf):
    out = tmp_path / "run"
    generate(demo_recipe(), out, info=lf, preflight=False)
    (out / "output").mkdir()
    (out / "output" / "keep.txt").write_text("checkpoint")
    with pytest.raises(UserError, match="already exists"):
        generate(demo_recipe(), out, info=lf, preflight=False)
    generate(demo_recipe(lora_rank=16), out, force=True, info=lf, preflight=False)
    assert (out / "output" / "keep.txt").read_text() == "checkpoint"
    assert "lora_rank: 16" in (out / "train.yaml").read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_unknown_dataset_and_stage_mismatch(tmp_path, lf):
    with pytest.raises(UserError, match="not registered"):
        generate(demo_recipe(datasets=["demo_sfft"]), tmp_path / "a", info=lf, preflight=False)
    with pytest.raises(UserError, match="ranking"):
        generate(demo_recipe("dpo", datasets=["demo_sft"]), tmp_path / "b", info=lf, preflight=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_data_file_given_as_a_dataset_name_says_how_to_name_it(tmp_path, lf, monkeypatch):
    """`generate --datasets data/train.jsonl` said the file "is not registered" in the shipped demo folder's
    dataset_info.json, and its fix (`register FILE --name NAME`) lacked the --dataset-dir that register needs."""
    data = tmp_path / "proj" / "data"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="'proj/data/train.jsonl' is a data file") as err:
        generate(demo_recipe(datasets=["proj/data/train.jsonl"]), tmp_path / "a", info=lf, preflight=False)
    assert f"--datasets train --dataset-dir {data}" in err.value.fix
    assert f"register {data / 'train.jsonl'} --name train --dataset-dir {data}" in err.value.fix
    with pytest.raises(UserError, match="'proj/data' is a folder"):
        generate(demo_recipe(datasets=["proj/data"]), tmp_path / "a", info=lf, preflight=False)
    # The fix it names works: the file is picked up by its name.
    generate(demo_recipe(datasets=["train"], dataset_dir=str(data)), tmp_path / "a", info=lf, preflight=False)
    # A name that is no file: the register command has its --dataset-dir, never the shipped demo folder.
    with pytest.raises(UserError, match="not registered") as err:
        generate(demo_recipe(datasets=["mine"]), tmp_path / "b", info=lf, preflight=False)
    assert err.value.fix.endswith("--name mine --dataset-dir DIR`, then pass --datasets mine --dataset-dir DIR")


def test_bad_lora_target_for_mla(tmp_path, lf):
    with pytest.raises(UserError, match="q_proj"):
        generate(demo_recipe(model="MiniCPM3-4B", lora_target="q_proj,v_proj"), tmp_path / "x", info=lf,
                 preflight=False)


def test_preflight_validates_datasets_through_the_columns_and_tags_their_entries_map(tmp_path):
    # A hand-written entry `columns: {prompt: question, response: answer}` is how LLaMA-Factory reads data with
    # other field names. Preflight reads the records through the entry, as LLaMA-Factory will: a good one passes
    # (it used to be refused as "cannot tell the format", then skipped unvalidated), a broken one is caught
    # before the run with the user's own field names.
    from minicpm_tui.core.preflight import PreflightReport, _check_datasets

    def jsonl(name: str, records: list) -> None:
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in records))

    jsonl("qa.jsonl", [{"question": "hi", "answer": "yo"}] * 2)
    jsonl("qa_bad.jsonl", [{"question": "hi", "answer": "yo"}, {"question": "hi", "answer": None}])
    jsonl("dlg.jsonl", [{"dialog": [{"speaker": "me", "text": "hi"}, {"speaker": "bot", "text": "yo"}]},
                        {"dialog": [{"speaker": "system", "text": "s"}, {"speaker": "me", "text": "hi"},
                                    {"speaker": "bot", "text": "yo"}]}])
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "hi", "output": 5}]))
    qa = {"prompt": "question", "response": "answer"}
    tags = {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "qa": {"file_name": "qa.jsonl", "columns": qa},  # relative: to the run directory (dataset_dir ".")
        "qa_bad": {"file_name": str(tmp_path / "qa_bad.jsonl"), "columns": qa},
        "dlg": {"file_name": "dlg.jsonl", "formatting": "sharegpt", "columns": {"messages": "dialog"}, "tags": tags},
        "typo": {"file_name": "qa.jsonl", "columns": {"prompt": "question", "response": "reply"}},
        "bad": {"file_name": "bad.json", "columns": {"prompt": "instruction", "response": "output"}},
        "hub": {"hf_hub_url": "someone/data"},
    }))
    report = PreflightReport(run_dir=tmp_path)
    _check_datasets(tmp_path, "sft", report)
    # an openai entry: read by the run's release; before 0.9.4 it has no openai formatting (one line)
    only = tmp_path / "oa"
    only.mkdir()
    (only / "oa.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                                            {"role": "assistant", "content": "a"}]}) + "\n")
    oa_tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    (only / "dataset_info.json").write_text(json.dumps({"oa": {"file_name": "oa.jsonl", "formatting": "openai",
                                                              "columns": {"messages": "messages"}, "tags": oa_tags}}))
    for version in ("0.9.3", "0.9.5"):
        oa_report = PreflightReport(run_dir=only)
        _check_datasets(only, "sft", oa_report, version)
        lines = [p.one_line() for p in oa_report.problems]
        if version == "0.9.3":
            assert len(lines) == 1 and "oa: formatting: is 'openai', which LLaMA-Factory 0.9.3 does not have" in lines[0]
            assert "upgrade LLaMA-Factory to 0.9.4" in lines[0] and "sharegpt with role/content tags" in lines[0]
        else:
            assert not lines and any("detailed thinking off" in n for n in oa_report.notes), oa_report.notes
    problems = {p.key: p.one_line() for p in report.problems}
    assert sorted(problems) == ["bad", "dlg", "qa_bad", "typo"]
    assert "record 1: answer: is missing" in problems["qa_bad"]
    assert "minicpm-tui validate --dataset-info" in problems["qa_bad"] and problems["qa_bad"].endswith("qa_bad` for "
                                                                                                       "record numbers")
    # the tags block sets no system_tag, so LLaMA-Factory drops the record with a leading system turn
    assert "record 1: dialog[0].speaker: is 'system'" in problems["dlg"]
    assert "reply: is in no record" in problems["typo"] and "KeyError" in problems["typo"]
    assert "record 0: output: is a JSON number" in problems["bad"]
    assert report.notes == ["dataset 'hub' not validated: its data comes from hf_hub_url 'someone/data', not a local "
                            "file"]
    assert "datasets: validated through their dataset_info.json entries" in report.checked


@pytest.mark.integration
def test_preflight_names_file_key_and_fix(tmp_path, lf):
    out = tmp_path / "run"
    generate(demo_recipe(zero_stage=2, gpus=2), out, info=lf, preflight=False)
    with open(out / "train.yaml", "a") as handle:
        handle.write("evaluation_strategy: steps\nkto_ftx: 0.1\nlearning_rte: 1.0\n")
    ds = json.loads((out / "ds_config.json").read_text())
    ds["zero_optimization"]["stage"] = 7
    (out / "ds_config.json").write_text(json.dumps(ds))
    (report,) = preflight_many([out])
    lines = [p.one_line() for p in report.problems]
    text = "\n".join(lines)
    assert "train.yaml: evaluation_strategy" in text and "eval_strategy" in text
    assert "train.yaml: kto_ftx" in text and "pref_ftx" in text
    assert "learning_rte" in text and "learning_rate" in text
    assert "ds_config.json" in text and "stage" in text


@pytest.mark.integration
def test_smoke_and_preflight_use_the_run_directorys_python(tmp_path, lf, monkeypatch):
    """A run directory trains with the Python recorded when it was generated (single_node.sh's own order:
    $TRAIN_PYTHON, else that one). The smoke run and the preflight follow the same order, so what they prove
    is what the real run will use, whatever MINICPM_TUI_TRAIN_PYTHON says in today's shell."""
    from minicpm_tui.core.preflight import preflight
    from minicpm_tui.core.smoke import prepare_smoke

    run = tmp_path / "run"
    generate(demo_recipe(), run, info=lf, preflight=False)
    recorded = json.loads((run / "generated.json").read_text())["resolved"]["training_python"]
    assert recorded == lf.python
    monkeypatch.setenv("MINICPM_TUI_TRAIN_PYTHON", str(tmp_path / "elsewhere" / "python"))
    monkeypatch.delenv("TRAIN_PYTHON", raising=False)
    assert prepare_smoke(run).env["TRAIN_PYTHON"] == recorded
    assert preflight(run, datasets=False).ok
    missing = tmp_path / "no-such-env" / "python"
    monkeypatch.setenv("TRAIN_PYTHON", str(missing))
    for check in (prepare_smoke, lambda run: preflight(run, datasets=False)):
        with pytest.raises(UserError, match="no-such-env") as caught:
            check(run)
        assert "TRAIN_PYTHON" in caught.value.one_line()


def test_each_training_environment_gets_its_own_tiny_model(tmp_path):
    """Every venv's bin/python links to one base interpreter; their tiny models must still differ (what
    transformers 5 saves does not load in transformers 4), and one venv keeps one."""
    import os
    import sys

    from minicpm_tui.core.tinymodel import tiny_model_path

    pythons = []
    for name in ("env-a", "env-b"):
        (tmp_path / name / "bin").mkdir(parents=True)
        os.symlink(sys.executable, tmp_path / name / "bin" / "python")
        pythons.append(str(tmp_path / name / "bin" / "python"))
    assert os.path.realpath(pythons[0]) == os.path.realpath(pythons[1])
    a, b = (tiny_model_path("cpm3", python, root=tmp_path) for python in pythons)
    assert a != b and a.parent == b.parent == tmp_path
    assert tiny_model_path("cpm3", pythons[0], root=tmp_path) == a
    assert tiny_model_path("cpm", pythons[0], root=tmp_path) != a


def _slurm_lines(run, *prefixes: str) -> str:
    text = (run / "slurm.sbatch").read_text()
    return "\n".join(line for line in text.splitlines() if line.startswith(prefixes))


def test_slurm_job_asks_for_cpus_and_hands_them_to_srun(tmp_path, lf):
    # Without --cpus-per-task the task got Slurm's one CPU, and since 22.05 srun drops the job's value
    # unless SRUN_CPUS_PER_TASK says it: 8 GPU processes and their dataloader workers on one core.
    recipe = demo_recipe("sft", "lora", gpus=8, nodes=2, hardware="8x-h100-80gb-nvlink-ib",
                         extra_args={"dataloader_num_workers": 2, "preprocessing_num_workers": 16})
    generate(recipe, tmp_path / "run", info=lf, preflight=False)
    assert "#SBATCH --cpus-per-task=24" in _slurm_lines(tmp_path / "run", "#SBATCH")  # 8 x (1 + 2)
    exports = _slurm_lines(tmp_path / "run", "export SRUN_CPUS_PER_TASK=", "if [[ -z \"${MASTER_PORT")
    script = exports + '\necho "$SRUN_CPUS_PER_TASK $MASTER_PORT"'
    env = {"PATH": "/usr/bin:/bin"}
    # As submitted: the job's own value; a later job on the same node gets another port.
    out = subprocess.run(["bash", "-c", script], env={**env, "SLURM_CPUS_PER_TASK": "24", "SLURM_JOB_ID": "12345"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["24", str(29500 + 12345 % 10000)]
    out = subprocess.run(["bash", "-c", script], env={**env, "SLURM_CPUS_PER_TASK": "64", "SLURM_JOB_ID": "12346",
                                                      "MASTER_PORT": "31000"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["64", "31000"]  # `sbatch --cpus-per-task=64` and an explicit port win
    # Slurm allocates the node rank, address and count: no stale defaults from the shared block.
    assert "NODE_RANK" not in (tmp_path / "run" / "slurm.sbatch").read_text()


def test_slurm_cpus_follow_preprocessing_workers_when_they_are_more(tmp_path, lf):
    recipe = demo_recipe("sft", "lora", gpus=2, extra_args={"preprocessing_num_workers": 16})
    generate(recipe, tmp_path / "run", info=lf, preflight=False)
    assert "#SBATCH --cpus-per-task=16" in _slurm_lines(tmp_path / "run", "#SBATCH")


def test_remote_entries_keep_their_hub_folder(tmp_path):
    # Only hf_hub_url / ms_hub_url counted as remote: an om_hub_url, script_url or cloud_file_name entry had
    # its hub "folder" turned into a local absolute path (and a stale file_name checked on disk).
    from minicpm_tui.core.writers import dataset_entries

    entries = {"om": {"om_hub_url": "someone/data", "folder": "sub"},
               "script": {"script_url": "my_script", "file_name": "not_here.json"},
               "cloud": {"cloud_file_name": "s3://bucket/data.json"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries))
    recipe = demo_recipe("sft", "lora", datasets=list(entries), dataset_dir=str(tmp_path))
    assert dataset_entries(recipe) == entries


def _copied_demo_data(root: Path) -> Path:
    """The demo datasets in a folder of the test's own (the originals are shared and must not change)."""
    from minicpm_tui.assets import asset_path

    data = root / "mydata"
    shutil.copytree(asset_path("data"), data)
    return data


def test_bundle_data_puts_the_files_in_the_run_directory_and_replaces_them_on_force(tmp_path, lf):
    data = _copied_demo_data(tmp_path)
    out = tmp_path / "run"
    notes: list[str] = []
    generate(demo_recipe(dataset_dir=str(data), bundle_data=True), out, info=lf, preflight=False, notes=notes)
    entry = json.loads((out / "dataset_info.json").read_text())["demo_sft"]
    assert entry["file_name"] == "data/demo_sft/demo_sft.json"  # relative: read from dataset_dir "." = the run dir
    bundled = out / entry["file_name"]
    assert bundled.read_bytes() == (data / "demo_sft.json").read_bytes()
    assert "data/: their files, bundled" in (out / "README.md").read_text()
    assert not any("this machine's paths" in n for n in notes)

    # --force bundles anew: the data/ written before is replaced, nothing is left aside.
    (data / "demo_sft.json").unlink()  # a hard link's other name goes; the bundled file must not
    assert bundled.is_file()
    (data / "demo_sft.json").write_text(bundled.read_text().replace("[", "[ ", 1))
    generate(demo_recipe(dataset_dir=str(data), bundle_data=True), out, force=True, info=lf, preflight=False)
    assert (out / entry["file_name"]).read_text() == (data / "demo_sft.json").read_text()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    # Without bundling now, the old data/ stays and the entry names the user's file again.
    generate(demo_recipe(dataset_dir=str(data)), out, force=True, info=lf, preflight=False)
    assert (out / "data" / "demo_sft" / "demo_sft.json").is_file()
    assert json.loads((out / "dataset_info.json").read_text())["demo_sft"]["file_name"] == \
        str((data / "demo_sft.json").resolve())


def test_force_into_a_folder_that_is_no_run_directory_loses_nothing(tmp_path, lf):
    """`generate --out PROJECT --force --bundle-data` replaced the project's data/ (its other datasets and its
    dataset_info.json went) and its README.md, without a copy: neither was minicpm-tui's."""
    project = tmp_path / "project"
    project.mkdir()
    data = _copied_demo_data(tmp_path).rename(project / "data")
    (project / "README.md").write_text("# my project\n")
    (data / "other.jsonl").write_text('{"instruction": "q", "output": "a"}\n')
    (project / "ds_config.json").write_text("{}")
    recipe = demo_recipe(dataset_dir=str(data), bundle_data=True)
    with pytest.raises(UserError, match="not a data bundle minicpm-tui wrote") as err:
        generate(recipe, project, force=True, info=lf, preflight=False)
    assert err.value.where == str(data)
    assert (data / "other.jsonl").is_file() and (data / "dataset_info.json").is_file()
    assert not (project / "train.yaml").exists()  # refused before anything was written
    backups: list = []
    generate(demo_recipe(dataset_dir=str(data)), project, force=True, info=lf, preflight=False, backups=backups)
    assert [(a.name, b.name.startswith("README.md.bak-")) for a, b in backups] == [("README.md", True)]
    assert backups[0][1].read_text() == "# my project\n"
    assert (project / "ds_config.json").read_text() == "{}"  # not ours to delete
    # Now a run directory: rewriting it copies none of its generated files (unchanged), only the user's own
    # ds_config.json, removed as stale (no DeepSpeed); its data/ is still the user's, not a bundle of ours.
    backups.clear()
    generate(demo_recipe(dataset_dir=str(data), lora_rank=16), project, force=True, info=lf, preflight=False,
             backups=backups)
    assert [(a.name, b.read_text()) for a, b in backups] == [("ds_config.json", "{}")]
    assert "lora_rank: 16" in (project / "train.yaml").read_text() and not (project / "ds_config.json").exists()
    with pytest.raises(UserError, match="not a data bundle"):
        generate(recipe, project, force=True, info=lf, preflight=False)
    assert (data / "other.jsonl").is_file()


def test_force_over_a_folder_where_a_generated_file_goes_is_refused(tmp_path, lf):
    out = tmp_path / "run"
    (out / "README.md").mkdir(parents=True)
    with pytest.raises(UserError, match="README.md is a folder there"):
        generate(demo_recipe(), out, force=True, info=lf, preflight=False)


def test_bundled_run_directory_passes_its_preflight_after_a_move(tmp_path, lf):
    """The preflight validates the datasets through the run's own dataset_info.json: after the run directory
    is moved and the user's files are gone, the bundled files are what it reads."""
    data = _copied_demo_data(tmp_path)
    out = tmp_path / "run"
    generate(demo_recipe(dataset_dir=str(data), bundle_data=True), out, info=lf, preflight=False)
    shutil.rmtree(data)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    out.rename(moved)
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "validate", "--dataset-info", str(moved), "demo_sft",
                           "--stage", "sft"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Its recipe.yaml regenerates it there: the datasets come from the run directory's own bundle.
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "generate", str(moved / "recipe.yaml"), "--out",
                           str(moved), "--force", "--no-preflight"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = json.loads((moved / "dataset_info.json").read_text())["demo_sft"]
    assert entry["file_name"] == "data/demo_sft/demo_sft.json" and (moved / entry["file_name"]).is_file()


def test_bool_flags_alone_mean_yes_and_a_target_without_bundle_notes_the_paths(tmp_path):
    data = _copied_demo_data(tmp_path)
    base = [sys.executable, "-m", "minicpm_tui", "generate", "minicpm4-8b-sft-lora", "--dataset-dir", str(data),
            "--lf-target", "0.9.3"]
    proc = subprocess.run(base + ["--out", str(tmp_path / "plain")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "note: dataset_info.json names the data by this machine's paths" in proc.stdout
    assert "--bundle-data" in proc.stdout
    proc = subprocess.run(base + ["--out", str(tmp_path / "bundled"), "--bundle-data"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "this machine's paths" not in proc.stdout
    assert (tmp_path / "bundled" / "data" / "demo_sft" / "demo_sft.json").is_file()
    assert "bundle_data: true" in (tmp_path / "bundled" / "recipe.yaml").read_text()
    proc = subprocess.run(base + ["--out", str(tmp_path / "no"), "--bundle-data", "false"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "no" / "data").exists()
    proc = subprocess.run(base + ["--out", str(tmp_path / "bad"), "--bundle-data", "maybe"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "--bundle-data" in proc.stderr


def test_run_directory_paths_are_printed_normalised(tmp_path, capsys, monkeypatch):
    # QA: `generate --out proj/../runs/p1` printed "wrote /tmp/qa/proj/../runs/p1" and the next commands with it.
    from minicpm_tui.cli import main

    (tmp_path / "proj").mkdir()
    monkeypatch.chdir(tmp_path / "proj")
    assert main(["generate", "minicpm4-0.5b-sft-lora", "--out", "../runs/p1", "--no-preflight"]) == 0
    out = capsys.readouterr().out
    want = str(tmp_path / "runs" / "p1")
    assert f"wrote {want}: " in out and f"minicpm-tui smoke {want}   then" in out and "/../" not in out, out
    assert main(["generate", "minicpm4-0.5b-sft-lora", "--out", "../runs/p1/./", "--no-preflight", "--force",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_dir"] == want
    # smoke names the same folder (here refusing one that lost its script)
    (tmp_path / "runs" / "p1" / "single_node.sh").unlink()
    assert main(["smoke", "../runs/x/../p1"]) == 2
    err = capsys.readouterr().err
    assert f"{want}: single_node.sh is missing" in err and "/../" not in err, err


def test_force_into_a_run_directory_backs_up_the_files_edited_by_hand(tmp_path, capsys, monkeypatch):
    """`generate --force` into a run directory replaced a train.yaml edited by hand without a copy."""
    from minicpm_tui.cli import main

    monkeypatch.chdir(tmp_path)
    base = ["generate", "minicpm4-0.5b-sft-lora", "--out", "run", "--no-preflight"]
    assert main(base) == 0
    run = tmp_path / "run"
    meta = json.loads((run / "generated.json").read_text())
    assert set(meta["files_sha256"]) == {p.name for p in run.iterdir() if p.is_file()}
    # Unedited: rewritten without a copy.
    capsys.readouterr()
    assert main(base + ["--force"]) == 0
    assert not list(run.glob("*.bak-*")) and "backed it up" not in capsys.readouterr().err
    # Edited by hand: the edit is in the backup, and stderr names the file and the copy.
    edited = (run / "train.yaml").read_text() + "# my edit\n"
    (run / "train.yaml").write_text(edited)
    assert main(base + ["--force"]) == 0
    copies = list(run.glob("*.bak-*"))
    assert [c.name.startswith("train.yaml.bak-") for c in copies] == [True]
    assert copies[0].read_text() == edited and "# my edit" not in (run / "train.yaml").read_text()
    err = capsys.readouterr().err
    assert f"{run / 'train.yaml'} was edited since it was generated; backed it up to {copies[0].name}" in err, err
    # The rewrite recorded the new file's digest: the next one keeps no copy again.
    assert main(base + ["--force"]) == 0
    assert list(run.glob("*.bak-*")) == copies


def test_force_into_an_older_run_directory_without_digests_backs_up_what_differs(tmp_path, lf):
    out = tmp_path / "run"
    generate(demo_recipe(), out, info=lf, preflight=False)
    meta = json.loads((out / "generated.json").read_text())
    del meta["files_sha256"]  # as an earlier minicpm-tui wrote it
    (out / "generated.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    (out / "train.yaml").write_text((out / "train.yaml").read_text() + "# my edit\n")
    backups: list = []
    generate(demo_recipe(), out, force=True, info=lf, preflight=False, backups=backups)
    # Compared with what replaces them: the unchanged files (generated.json too, its facts the same) get none.
    assert [a.name for a, _ in backups] == ["train.yaml"]
    copy = dict(backups)[out / "train.yaml"]
    assert copy.read_text().endswith("# my edit\n")
    assert "files_sha256" in json.loads((out / "generated.json").read_text())


def test_force_without_deepspeed_backs_up_an_edited_ds_config_before_removing_it(tmp_path, lf):
    out = tmp_path / "run"
    generate(demo_recipe(zero_stage=2), out, info=lf, preflight=False)
    (out / "ds_config.json").write_text('{"edited": true}\n')
    backups: list = []
    generate(demo_recipe(zero_stage=0), out, force=True, info=lf, preflight=False, backups=backups)
    assert not (out / "ds_config.json").exists()
    assert [(a.name, b.read_text()) for a, b in backups] == [("ds_config.json", '{"edited": true}\n')]
