"""The GPU validation kit (bench/gpu): its grid, wheel list, summaries and the CPU rehearsal.

The kit's GPU run happens on a device machine (bench/gpu/README.md); here we check everything that can be
checked without one, and run the grid's CPU rehearsal through the same code path (integration).
"""

from __future__ import annotations

import csv
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _kit_util import load_kit_module

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "bench" / "gpu"
H200_GIB = 143771 / 1024  # what nvidia-smi reports for the device machine's H200 (tool library KINDS.md)


grid = load_kit_module("grid")
summarise = load_kit_module("summarise")

REQUIRED_PATHS = {("sft", "full", 0), ("sft", "full", 2), ("sft", "full", 3), ("sft", "lora", 0),
                  ("dpo", "full", 0), ("dpo", "lora", 0), ("kto", "lora", 0)}


def _paths(points) -> set[tuple[str, str, int]]:
    return {(p.stage, p.method, p.zero) for p in points}


def test_grid_covers_what_issue_8_asks_for():
    points, settings = grid.load_grid()
    assert _paths(points) >= REQUIRED_PATHS
    assert {p.preset for p in points} == {"MiniCPM-1B", "MiniCPM-2B", "MiniCPM4-8B"}
    assert len({p.cutoff for p in points}) >= 2 and len({p.cutoff for p in points}) <= 3
    assert len({p.mb for p in points}) >= 2
    assert {p.gc for p in points} == {True, False}
    assert all(p.precision == "bf16" and p.flash_attn == "sdpa" for p in points)
    # every point is a valid recipe for the generator (explicit plan fields, no 'auto' left to chance)
    for p in points:
        grid.make_recipe(p, ROOT / "does-not-matter", ROOT / "data", hardware="1x-a10-24gb")


def test_cpu_rehearsal_runs_every_code_path_with_tiny_dims():
    points, settings = grid.load_grid(cpu=True)
    assert _paths(points) >= REQUIRED_PATHS
    assert all(p.precision == "fp32" and p.cutoff <= 256 and p.steps >= 3 for p in points)
    dims = grid.model_dims("MiniCPM-1B", settings["rehearsal"]["dims"])
    assert dims["hidden_size"] <= 128 and dims["num_layers"] <= 4


def test_models_are_built_from_the_real_preset_dimensions():
    dims = grid.model_dims("MiniCPM4-8B")
    assert (dims["vocab_size"], dims["hidden_size"], dims["intermediate_size"], dims["num_layers"],
            dims["num_heads"], dims["num_kv_heads"], dims["head_dim"], dims["tie_embeddings"]) == \
        (73448, 4096, 16384, 32, 32, 2, 128, False)
    row = {**dims, "model": "MiniCPM4-8B"}
    assert 8.0e9 < grid.arch_from_row(row).param_count() < 8.4e9


def test_every_gpu_point_is_estimated_to_fit_one_h200():
    """A point the estimator thinks will not fit would be skipped on the clock: keep the grid sane."""
    points, settings = grid.load_grid()
    limit = settings["defaults"]["gpu_fraction"] * H200_GIB
    for p in points:
        row = {**grid.model_dims(p.preset), "model": p.preset, "stage": p.stage, "method": p.method,
               "zero_stage": p.zero, "cutoff": p.cutoff, "micro_batch": p.mb, "grad_ckpt": p.gc,
               "precision": p.precision, "attn": "sdpa", "lora_rank": p.lora_rank, "gpus": 1}
        assert grid.estimate_row(row).peak_gib < limit, p.id


def _wheel_pins() -> dict[str, str]:
    pins = {}
    for line in (KIT / "wheels.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"wheels.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def test_carried_wheels_are_the_stack_we_test_with():
    """The device must run what CI runs: each carried pin equals the version installed here."""
    pins = _wheel_pins()
    for name in ("llamafactory", "transformers", "tokenizers", "accelerate", "peft", "trl", "datasets"):
        assert name in pins, f"{name} must travel (the device image lacks it or has another version)"
        assert md.version(name) == pins[name], f"{name}: wheels.txt {pins[name]} != installed {md.version(name)}"
    assert md.version("deepspeed") == re.search(r'DEEPSPEED_VERSION:-([0-9.]+)',
                                                (KIT / "fetch_wheels.sh").read_text()).group(1)
    # nothing the device image already holds travels without a reason (a version pin LLaMA-Factory needs)
    image = {n.strip().lower() for n in (KIT / "device-packages.txt").read_text().splitlines()
             if n.strip() and not n.startswith("#")}
    text = (KIT / "wheels.txt").read_text()
    for name in pins:
        if name in image:
            assert re.search(rf"^{re.escape(name)}==\S+\s+# device has", text, re.M), name


def test_wheel_folders_are_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/.whl/" in ignored and "/bench/gpu/wheels/" in ignored and "/bench/out/" in ignored


@pytest.mark.skipif(not list((ROOT / ".whl").glob("*.whl")), reason="no fetched wheels here (.whl/)")
def test_fetched_wheels_fit_the_cap_with_one_version_each():
    wheels = list((ROOT / ".whl").glob("*.whl"))
    assert sum(w.stat().st_size for w in wheels) < 60 * 1024 * 1024
    names = [w.name.split("-")[0].lower() for w in wheels]
    assert len(names) == len(set(names))
    assert all(re.search(r"(py3-none-any|cp312|abi3|py312-none-any)", w.name) for w in wheels)


def test_kit_scripts_parse_and_document_themselves():
    for script in ("fetch_wheels.sh", "run.sh", "rehearse.sh"):
        path = KIT / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)
        help_text = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True, check=True).stdout
        assert "bench/gpu/" in help_text or "Rehearse" in help_text
        bad = subprocess.run(["bash", str(path), "--no-such-flag"], capture_output=True, text=True)
        assert bad.returncode == 2 and "unknown argument" in bad.stderr
    readme = (KIT / "README.md").read_text()
    assert "minutes" in readme and "carry" in readme and "bench/results/" in readme


def _row(**kw):
    base = {"id": "x", "device": "NVIDIA H200", "status": "ok", "gpu_name": "NVIDIA H200"}
    base.update({k: str(v) for k, v in kw.items()})
    return base


def test_error_stats_sign_convention():
    stats = summarise.error_stats([(11.0, 10.0), (9.0, 10.0), (10.0, 10.0)])
    assert stats["n"] == 3
    assert stats["median_abs_pct"] == pytest.approx(10.0)
    assert stats["worst_under_pct"] == pytest.approx(-10.0)
    assert stats["worst_over_pct"] == pytest.approx(10.0)
    assert summarise.error_stats([])["median_abs_pct"] is None


def test_summary_from_a_grid_csv(tmp_path: Path):
    rows = [
        _row(id="a", estimate_gib=10.5, planner_gib=10.5, measured_gib=10.0, ds_estimator_gib=20,
             rule16_gib=21, tokens_per_s=1000, error_pct=5.0),
        _row(id="b", estimate_gib=9.8, planner_gib="", measured_gib=10.0, ds_estimator_gib=20, rule16_gib=21),
        _row(id="c", status="skipped", note="time budget (400 s) reached", estimate_gib=50),
        _row(id="d", device="cpu-rehearsal", estimate_gib=1, measured_gib=0.5),  # never counts
    ]
    with open(tmp_path / "grid.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=grid.CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "sampler.json").write_text(json.dumps({"samples": 60, "interval_s": 1, "duration_s": 60,
                                                        "nvml_status": "ok", "cpu_time_s": 0.3,
                                                        "latency_ms": {"median": 2.0, "p95": 3.0, "max": 5.0}}))
    assert summarise.main([str(tmp_path)]) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "| minicpm-tui estimator | 2 | 3.5% | -2.0% | +5.0% |" in text
    assert "| 16 bytes x params | 2 |" in text
    assert "time budget" in text and "60 samples" in text
    assert summarise.main([str(tmp_path / "missing")]) == 1


def test_step_time_from_the_progress_bar(tmp_path: Path):
    log = tmp_path / "launch.log"
    log.write_text("Running tokenizer on dataset: 4/4 [00:00<00:00, 30.5 examples/s]\n"
                   " 75%|███▌ | 3/4 [00:01<00:00, 2.0it/s]\r100%|█████| 4/4 [00:02<00:00, 1.60it/s]\n")
    assert grid._tqdm_step_seconds(log, 4) == pytest.approx(1 / 1.6)
    log.write_text("100%|█████| 4/4 [00:20<00:00, 5.10s/it]\n")
    assert grid._tqdm_step_seconds(log, 4) == pytest.approx(5.1)
    assert grid._tqdm_step_seconds(log, 3) is None


def test_recorded_probe_fixtures_replay():
    """Recordings the kit brings back from a GPU (tests/fixtures/nvml/*.json) replay through the probe."""
    from fake_nvml import FakePynvml

    from minicpm_tui.core.nvml import Nvml
    from minicpm_tui.core.probe import probe

    recordings = sorted((ROOT / "tests" / "fixtures" / "nvml").glob("*.json"))
    recordings = [r for r in recordings if json.loads(r.read_text()).get("format") == "nvml-recording/1"]
    if not recordings:
        pytest.skip("no NVML recording from a real GPU committed yet (bench/gpu/run.sh brings one back)")
    for path in recordings:
        profile = probe(Nvml(module=FakePynvml.from_file(path)))
        assert profile.gpus and all(g.name and g.memory_total_mib for g in profile.gpus), path.name


@pytest.mark.integration
def test_cpu_rehearsal_through_generated_run_directories(tmp_path: Path):
    """Two grid points on CPU, real LLaMA-Factory, through generate() and single_node.sh (~60 s here)."""
    points, _ = grid.load_grid(cpu=True)
    wanted = [p.id for p in points if (p.stage, p.method, p.zero) in {("sft", "lora", 0), ("dpo", "full", 0)}]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(KIT / "grid.py"), "--cpu-rehearsal", "--out", str(out),
                           "--work", str(tmp_path / "work"), "--only", ",".join(wanted),
                           "--sampler-seconds", "2"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = summarise.read_rows(out / "grid.csv")
    assert [r["id"] for r in rows] == wanted
    for row in rows:
        assert row["status"] == "ok", (row, (out / "failures.log").read_text()[-3000:])
        assert float(row["estimate_gib"]) > 0 and float(row["tokens_per_s"]) > 0
        assert row["device"] == "cpu-rehearsal" and row["measured_gib"] == ""  # no memory truth on CPU
        run_dir = tmp_path / "work" / "runs" / row["id"]
        generated = json.loads((run_dir / "generated.json").read_text())
        assert generated["resolved"]["micro_batch"] == int(row["micro_batch"])
        assert generated["resolved"]["zero_stage"] == int(row["zero_stage"])
        assert generated["resolved"]["gradient_checkpointing"] == (row["grad_ckpt"] == "True")
        log = [json.loads(x) for x in (run_dir / "output" / "trainer_log.jsonl").read_text().splitlines()]
        assert max(e["current_steps"] for e in log) == int(row["steps"])
    sampler = json.loads((out / "sampler.json").read_text())
    assert sampler["samples"] >= 1 and sampler["latency_ms"]["median"] is not None
    assert summarise.main([str(out)]) == 0
