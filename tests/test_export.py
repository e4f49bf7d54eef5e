"""`minicpm-tui export`: merge a LoRA run into its base model, or refuse in one line.

One real LoRA training of the tiny model (2 steps, launched through the runner like `minicpm-tui run`)
is shared by the module, with MiniCPM 1B/2B's `cpm` template, which LLaMA-Factory 0.9.5 lacks (so the
export has to register it, as the training did); one real export of it through the CLI, checked in the training Python: the
merged weights are the base weights plus each adapter's scaled B @ A, and the logits differ from the
base model's. The refusals are read from the same run directory where they need a trained one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _runner_util import kill_run, wait_status
from test_smoke_support import demo_recipe

from minicpm_tui.core import export, runner
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.lfinfo import training_python
from minicpm_tui.core.tinymodel import offline_env
from minicpm_tui.core.writers import generate


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minicpm_tui", "export", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def _refusal(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stdout, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_cpm, lf) -> Path:
    """A tiny LoRA SFT run that really trained (2 steps, a checkpoint at each), finished through the runner."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    recipe = demo_recipe("sft", "lora", model=str(tiny_model_cpm), template="cpm", precision="fp32", save_steps=1,
                         learning_rate=0.01, extra_args={"use_cpu": True})
    generate(recipe, run_dir, info=lf, preflight=False)
    try:
        runner.launch(run_dir, env=offline_env({"CUDA_VISIBLE_DEVICES": "", "NPROC_PER_NODE": "1",
                                                "OMP_NUM_THREADS": "1"}))
        info = wait_status(run_dir, ("finished", "failed", "died"), timeout=400)
    finally:
        kill_run(run_dir)
    assert info.status == "finished", info
    out = run_dir / "output"
    assert (out / "adapter_config.json").is_file() and (out / "checkpoint-2" / "adapter_config.json").is_file()
    return run_dir


CHECK = textwrap.dedent("""
    import json, sys
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    base_dir, adapter_dir, merged_dir = sys.argv[1:4]
    base = load_file(f"{base_dir}/model.safetensors")
    merged = load_file(f"{merged_dir}/model.safetensors")
    lora = load_file(f"{adapter_dir}/adapter_model.safetensors")
    cfg = json.load(open(f"{adapter_dir}/adapter_config.json"))
    scale = cfg["lora_alpha"] / cfg["r"]
    expected = {k: v.float().clone() for k, v in base.items()}
    adapted = 0
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        target = key.replace("base_model.model.", "", 1).replace(".lora_A.weight", ".weight")
        expected[target] += scale * (b.float() @ a.float())
        adapted += 1
    assert set(merged) <= set(expected), sorted(set(merged) - set(expected))
    worst = max((merged[k].float() - expected[k]).abs().max().item() for k in merged)
    moved = max((merged[k].float() - base[k].float()).abs().max().item() for k in merged)
    ids = torch.tensor([[1, 5, 9, 42, 7, 3]])
    with torch.no_grad():
        out_m = AutoModelForCausalLM.from_pretrained(merged_dir)(ids).logits
        out_b = AutoModelForCausalLM.from_pretrained(base_dir)(ids).logits
    print(json.dumps({"adapted": adapted, "worst": worst, "moved": moved,
                      "logit_diff": (out_m - out_b).abs().max().item()}))
""")


@pytest.mark.integration
def test_export_merges_the_final_adapter_into_the_base(lora_run, tiny_model_cpm, lf):
    proc = _cli(str(lora_run))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    merged = lora_run / "merged"
    assert f"merged model written to {merged}" in proc.stdout
    # A few progress lines, not LLaMA-Factory's ~200 (they are all in the log).
    assert "  merged 1 adapter(s) into the base model\n" in proc.stdout and ">>" not in proc.stdout, proc.stdout
    assert len(proc.stdout.splitlines()) <= 12, proc.stdout
    assert "Merged 1 adapter(s)" in (lora_run / export.EXPORT_LOG).read_text()
    if not lf.has_template("cpm"):  # 0.9.5: export.yaml alone would fail in `llamafactory-cli export`, and says so
        assert "registered chat template(s) missing from this LLaMA-Factory: cpm" in proc.stdout
        assert "Template cpm is missing from this LLaMA-Factory: run it with minicpm-tui export" in \
            (lora_run / "export.yaml").read_text()
    assert (merged / "config.json").is_file() and (merged / "model.safetensors").is_file()
    assert not [p for p in lora_run.iterdir() if p.name.startswith(".merged")]  # the temp folder is gone
    cfg = (lora_run / "export.yaml").read_text()
    for line in ("adapter_name_or_path: output\n", "finetuning_type: lora\n", "export_dir: merged\n",
                 "export_device: cpu\n", "export_legacy_format: false\n", "template: cpm\n",
                 "trust_remote_code: false\n", f"model_name_or_path: {tiny_model_cpm}\n"):
        assert line in cfg, cfg
    assert (lora_run / export.EXPORT_LOG).is_file()
    check = subprocess.run([training_python(), "-c", CHECK, str(tiny_model_cpm), str(lora_run / "output"),
                            str(merged)], capture_output=True, text=True, timeout=300, env=offline_env())
    assert check.returncode == 0, check.stderr[-3000:]
    facts = json.loads(check.stdout.strip().splitlines()[-1])
    assert facts["adapted"] >= 14  # lora_target all: 7 linears x 2 layers
    assert facts["worst"] < 1e-5, facts  # merged == base + (alpha / r) * B @ A, weight by weight
    assert facts["moved"] > 1e-3 and facts["logit_diff"] > 1e-4, facts  # the merge changed the model

    # Again without --force: refused, the merged model untouched.
    before = (merged / "model.safetensors").stat().st_mtime_ns
    _refusal(_cli(str(lora_run)), 2, str(merged), "already exists", "--force")
    assert (merged / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.integration
def test_a_failed_export_leaves_nothing_at_out(lora_run, tmp_path):
    broken = tmp_path / "broken-adapter"
    shutil.copytree(lora_run / "output" / "checkpoint-1", broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    out = tmp_path / "merged"
    proc = _cli(str(lora_run), "--checkpoint", str(broken), "--out", str(out))
    err = _refusal(proc, 1, "export failed", export.EXPORT_LOG)
    assert not out.exists() and not [p.name for p in tmp_path.iterdir() if p.name.startswith(".merged")], err


def test_picks_the_final_adapter_else_the_newest_checkpoint(lora_run, tmp_path):
    plan = export.plan_export(lora_run, out=str(tmp_path / "m"))
    assert (plan.source, plan.source_kind, plan.notes) == (lora_run / "output", "final", [])
    plan = export.plan_export(lora_run, out=str(tmp_path / "m"), checkpoint="1")
    assert plan.source == lora_run / "output" / "checkpoint-1"
    with pytest.raises(UserError, match="no checkpoint-7 .*checkpoints there: 1, 2"):
        export.plan_export(lora_run, checkpoint="7")
    # A copy whose training ended without its final save: the newest checkpoint, with a note.
    copy = tmp_path / "copy"
    shutil.copytree(lora_run, copy, ignore=shutil.ignore_patterns("merged", "run_manifest.json"))
    for name in ("adapter_model.safetensors", "all_results.json", "train_results.json"):
        (copy / "output" / name).unlink(missing_ok=True)  # LLaMA-Factory writes the results after the save
    plan = export.plan_export(copy)
    assert plan.source == copy / "output" / "checkpoint-2" and "newest checkpoint" in plan.notes[0]
    assert plan.out == copy / "merged"


def test_out_must_not_be_what_export_reads(lora_run):
    for out in (lora_run, lora_run / "output", lora_run.parent):
        with pytest.raises(UserError, match="which export reads from"):
            export.plan_export(lora_run, out=str(out), force=True)


def test_refuses_a_running_run(tmp_path, lf):
    run_dir = tmp_path / "run"
    generate(demo_recipe("sft", "lora"), run_dir, info=lf, preflight=False)
    try:
        runner.launch(run_dir, command=[sys.executable, "-c", "import time; time.sleep(120)"])
        wait_status(run_dir, ("running",), timeout=60)
        _refusal(_cli(str(run_dir)), 1, "training is still running", "minicpm-tui stop")
    finally:
        kill_run(run_dir)


def _hand_run(tmp_path: Path, **cfg) -> Path:
    run_dir = tmp_path / "hand"
    run_dir.mkdir()
    base = {"model_name_or_path": str(tmp_path), "template": "cpm4", "stage": "sft", "finetuning_type": "lora",
            "output_dir": "output"}
    base.update(cfg)
    (run_dir / "train.yaml").write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in base.items()))
    return run_dir


def test_refuses_without_an_adapter(tmp_path):
    run_dir = _hand_run(tmp_path)
    _refusal(_cli(str(run_dir)), 1, "no LoRA adapter", "never launched", "minicpm-tui run")
    (run_dir / "output" / "checkpoint-3").mkdir(parents=True)
    _refusal(_cli(str(run_dir), "--checkpoint", "3"), 2, "--checkpoint", "adapter_config.json")


def test_refuses_a_missing_base_model(tmp_path):
    run_dir = _hand_run(tmp_path, model_name_or_path=str(tmp_path / "gone" / "MiniCPM4-8B"))
    _refusal(_cli(str(run_dir)), 2, "model_name_or_path", "base model folder", "is missing")


def test_full_fine_tune_has_nothing_to_merge(tmp_path, tiny_model_cpm):
    run_dir = _hand_run(tmp_path, finetuning_type="full", output_dir=str(tiny_model_cpm))
    proc = _cli(str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (f"full fine-tune: nothing to merge; the servable model is {tiny_model_cpm} "
                                   "(the model saved at the end)")
    assert not (run_dir / "merged").exists() and not (run_dir / "export.yaml").exists()
    (tmp_path / "untrained").mkdir()
    _refusal(_cli(str(_hand_run(tmp_path / "untrained", finetuning_type="full"))), 1, "no saved model")


def test_export_keys_exist_in_the_installed_llamafactory(lf, tmp_path):
    plan = export.ExportPlan(run_dir=tmp_path, python=training_python(), finetuning_type="lora", base_model="m",
                             template="cpm4", output_dir=tmp_path / "output", status="finished",
                             source=tmp_path / "output", source_kind="final", out=tmp_path / "merged",
                             carried={"trust_remote_code": True})
    config = export.export_config(plan, lf.all_keys)
    assert set(config) <= lf.all_keys and plan.notes == []
    assert os.path.basename(config["export_dir"]) == "merged"


def test_the_run_directorys_readme_names_the_export_step(tmp_path, lf):
    generate(demo_recipe("sft", "lora"), tmp_path / "lora", info=lf, preflight=False)
    text = (tmp_path / "lora" / "README.md").read_text()
    assert "## Export (after training)\n    minicpm-tui export .  " in text and "merged/" in text
    generate(demo_recipe("sft", "full"), tmp_path / "full", info=lf, preflight=False)
    text = (tmp_path / "full" / "README.md").read_text()
    assert "nothing to merge: output/ is the model" in text and "## Export" not in text


def test_a_later_smoke_attempt_does_not_hide_the_finished_training(lora_run, tmp_path):
    """The wizard launches its smoke run through the runner (TRAIN_YAML=smoke/train.yaml): an attempt of its
    own, after which the run reads "finished" whatever the real training did."""
    copy = tmp_path / "copy"
    shutil.copytree(lora_run, copy, ignore=shutil.ignore_patterns("merged"))
    try:
        runner.launch(copy, env={"TRAIN_YAML": "smoke/train.yaml"}, command=[sys.executable, "-c", "pass"])
        wait_status(copy, ("finished",), timeout=60)
    finally:
        kill_run(copy)
    plan = export.plan_export(copy)
    assert (plan.source, plan.status, plan.notes) == (copy / "output", "finished", [])
    shutil.rmtree(copy / "output")
    with pytest.raises(UserError, match=r"no LoRA adapter .*\(status finished\)"):
        export.plan_export(copy)


@pytest.mark.integration
async def test_the_wizards_export_merges_while_another_step_is_shown(lora_run, tmp_path):
    """The Run step's "run: export merged model", for real (the worker runs `minicpm-tui export`, which merges
    with LLaMA-Factory), left for the Review step at once: the result is notified there, and the Run step
    shows it when it is shown again."""
    from _tui_util import settle

    from minicpm_tui.tui.app import MiniCPMApp
    from minicpm_tui.tui.state import WizardState

    run_dir = tmp_path / "run"
    shutil.copytree(lora_run, run_dir, ignore=shutil.ignore_patterns("merged", ".merged*"))
    state = WizardState(hardware="preset:1x-rtx4090", model="MiniCPM4-0.5B", dataset_name="demo_sft",
                        dataset_file="demo:demo_sft", run_dir=str(run_dir))
    app = MiniCPMApp(use_draft=False, state=state)
    async with app.run_test(size=(80, 24)) as pilot:
        app.goto_step(6)
        await settle(app, pilot)
        assert "run: export merged model" in [c.title for c in app.screen.palette_commands()]
        app.screen.action_export()
        app.goto_step(5)
        await settle(app, pilot, timeout=400)
        assert type(app.screen).__name__ == "ReviewScreen"
        said = [n.message for n in app._notifications if n.message.startswith("export of run: ")]
        assert said == [f"export of run: merged model written to {run_dir / 'merged'}; load it with "
                        "transformers' from_pretrained"], [n.message for n in app._notifications]
        assert app.state.export.ok and (run_dir / "merged" / "config.json").is_file()
        app.goto_step(6)
        await settle(app, pilot)
        shown = app.screen.intro().plain
        assert f"Export: merged model written to {run_dir / 'merged'}" in shown and "Exporting" not in shown


def test_export_prints_normalised_paths(tmp_path):
    # QA: paths with `..` (an --out, a relative output_dir) were echoed as typed, `..` and all.
    run_dir = _hand_run(tmp_path, finetuning_type="full", output_dir="sub/../served")
    served = run_dir / "served"
    served.mkdir()
    for name in ("config.json", "model.safetensors"):
        (served / name).write_text("{}")
    proc = _cli(str(run_dir / ".." / "hand"))
    assert proc.returncode == 0, proc.stderr
    assert f"the servable model is {served} (" in proc.stdout and "/../" not in proc.stdout, proc.stdout
    (tmp_path / "l").mkdir()
    lora = _hand_run(tmp_path / "l", finetuning_type="lora")
    (lora / "output").mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (lora / "output" / name).write_text("{}")
    plan = export.plan_export(lora, out=str(tmp_path / "x" / ".." / "m"))
    assert plan.out == tmp_path / "m"


LF_EXPORT_LOG = """\
[minicpm-tui] registered chat template(s) missing from this LLaMA-Factory: cpm
[INFO|configuration_utils.py:769] 2026-12-02 05:05:03,001 >> loading configuration file /m/config.json
[INFO|configuration_utils.py:847] 2026-12-02 05:05:03,009 >> Model config LlamaConfig {
  "hidden_size": 64
}
[INFO|2026-12-02 05:05:03] llamafactory.data.template:144 >> Add <|im_end|> to stop words.
[INFO|modeling_utils.py:748] 2026-12-02 05:05:04,162 >> loading weights file /m/model.safetensors
Loading weights: 100%|##########| 20/20 [00:00<00:00, 18493.40it/s]
[INFO|2026-12-02 05:05:04] llamafactory.model.adapter:144 >> Merged 1 adapter(s).
[INFO|2026-12-02 05:05:04] llamafactory.model.adapter:144 >> Loaded adapter(s): output
[INFO|2026-12-02 05:05:04] llamafactory.train.tuner:144 >> Convert model dtype to: torch.bfloat16.
[INFO|modeling_utils.py:3471] 2026-12-02 05:05:04,957 >> Model weights saved in /r/.merged.export-x/model.safetensors
[INFO|modeling_utils.py:2599] 2024-05-01 10:00:00,000 >> The model is bigger than the maximum size per checkpoint (5GB) \
and is going to be split in 4 checkpoint shards. You can find where each parameters has been saved in the index
[INFO|tokenization_utils_base.py:2111] 2026-12-02 05:05:04,962 >> tokenizer config file saved in /r/.m/tokenizer_config.json
"""


def test_progress_lines_say_what_is_loaded_merged_and_saved():
    shown = [line for line in map(export.progress_line, LF_EXPORT_LOG.splitlines()) if line]
    assert shown == ["registered chat template(s) missing from this LLaMA-Factory: cpm",
                     "loading the base model (/m/model.safetensors)", "merged 1 adapter(s) into the base model",
                     "loaded the adapter: output", "converting the weights to torch.bfloat16",
                     "saved the merged weights", "saving the merged weights in 4 shards of at most 5GB",
                     "saved the tokenizer"]


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("code", [0, 1])
def test_run_export_shows_progress_keeps_the_log_and_its_tail_on_failure(tmp_path, monkeypatch, code, verbose):
    # QA: export streamed ~200 lines of LLaMA-Factory logging. A stand-in training Python prints a real
    # export's lines (and a traceback when it fails); run_export itself is what the CLI runs.
    (tmp_path / "log.txt").write_text(LF_EXPORT_LOG + ("Traceback (most recent call last):\n"
                                                       "OSError: no space left on device\n" if code else ""))
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\ncat "{tmp_path / "log.txt"}"\n'
                    f'[ {code} = 0 ] && touch "$3/config.json" "$3/model.safetensors"\nexit {code}\n')
    fake.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = export.ExportPlan(run_dir=run_dir, python=str(fake), finetuning_type="lora", base_model="m",
                             template="cpm4", output_dir=run_dir / "output", status="finished",
                             source=run_dir / "output", source_kind="final", out=run_dir / "merged")
    monkeypatch.setattr(export, "render_export_yaml", lambda plan, keys: "finetuning_type: lora\n")
    said: list[str] = []
    if code:
        with pytest.raises(UserError, match="export failed .*no space left on device"):
            export.run_export(plan, say=said.append, known_keys=set(), verbose=verbose)
    else:
        assert export.run_export(plan, say=said.append, known_keys=set(), verbose=verbose) == run_dir / "merged"
    assert (run_dir / export.EXPORT_LOG).read_text().startswith(LF_EXPORT_LOG)  # the whole log, either way
    if verbose:  # today's streaming: every line
        assert said[:len(LF_EXPORT_LOG.splitlines())] == LF_EXPORT_LOG.splitlines()
        return
    progress = said[:8] if not code else said[:said.index(next(s for s in said if s.startswith("--- the last")))]
    assert progress[2] == "merged 1 adapter(s) into the base model" and not any(">>" in s for s in progress)
    if code:
        head = f"--- the last {export.LOG_TAIL_LINES} lines of {run_dir / export.EXPORT_LOG} ---"
        tail = said[said.index(head) + 1:]
        assert len(tail) == export.LOG_TAIL_LINES and tail[-1] == "OSError: no space left on device"
    else:
        assert len(said) == 8
