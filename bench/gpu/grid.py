"""The GPU kit's grid driver: short real trainings through minicpm-tui's generated run directories.

    python bench/gpu/grid.py --out DIR [--cpu-rehearsal] [--budget-s 420] [--only ID,ID] [--points N]

For each point of bench/gpu/grid.yaml: build (once per model) a random-initialised Llama-shaped model
with the real MiniCPM dimensions (build_model.py, in the training Python), write a Recipe with every plan
field explicit, ``core.writers.generate()`` a run directory, launch its ``single_node.sh`` with
RECORD_VRAM=1, and record next to the estimator's peak (core.estimator, the planner's arithmetic):
torch's max reserved/allocated (trainer_log.jsonl's vram fields), the NVML per-process peak of the run's
process tree (core.telemetry.GpuSampler, as the monitor follows a run), and tokens per second. The run
is stopped once its last step is logged (the final save is not what we measure). Beside the grid,
sampler_bench.py measures the monitor's sampler at 1 s for 60 s.

``--cpu-rehearsal``: the same code path on CPU with tiny dimensions (grid.yaml's cpu_rehearsal block):
no memory truth there, but every file, launch and parse is exercised.

Writes DIR/grid.csv (one row per point, CSV_FIELDS) and DIR/failures.log (log tails of failed points);
summarise.py turns them into summary.md. Stdlib + yaml + psutil + minicpm_tui; torch only in subprocesses.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

GIB = 1024**3
CSV_FIELDS = [
    "id", "device", "model", "params", "vocab_size", "hidden_size", "intermediate_size", "num_layers",
    "num_heads", "num_kv_heads", "head_dim", "tie_embeddings", "stage", "method", "zero_stage", "cutoff",
    "micro_batch", "grad_ckpt", "precision", "attn", "lora_rank", "gpus", "steps", "status", "note",
    "estimate_gib", "planner_gib", "measured_gib", "error_pct", "torch_reserved_gib", "torch_allocated_gib",
    "nvml_proc_peak_gib", "nvml_device_peak_gib", "ds_estimator_gib", "rule16_gib", "tokens_per_s",
    "step_s", "wall_s", "gpu_name", "gpu_total_gib", "est_terms",
]
ARCH_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
               "head_dim", "tie_embeddings")
ATTN = {"sdpa": "sdpa", "fa2": "fa2", "disabled": "eager"}
WORDS = ["model", "data", "train", "plan", "memory", "token", "layer", "fine", "tune", "answer", "question", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "summary", "paragraph", "sentence", "weight", "gradient", "optimizer", "batch", "sequence", "cutoff", "shard", "stage", "reference", "policy", "preference", "kernel", "attention", "vocabulary"]


# -- the grid --------------------------------------------------------------------------------------
@dataclass
class Point:
    id: str
    model: str  # grid.yaml's model key (1b, 2b, 8b)
    preset: str  # the preset name (MiniCPM-1B ...)
    stage: str
    method: str
    zero: int
    cutoff: int
    mb: int
    gc: bool
    steps: int
    precision: str
    flash_attn: str
    lora_rank: int
    extra: dict[str, Any] = field(default_factory=dict)


def point_id(model: str, stage: str, method: str, zero: int, cutoff: int, mb: int, gc: bool) -> str:
    return f"{model}-{stage}-{method}-z{zero}-c{cutoff}-b{mb}-{'gc' if gc else 'nogc'}"


def load_grid(path: Path = HERE / "grid.yaml", *, cpu: bool = False) -> tuple[list[Point], dict[str, Any]]:
    """The points to run (GPU grid, or its CPU rehearsal) and the grid's settings."""
    grid = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults = dict(grid.get("defaults") or {})
    settings: dict[str, Any] = {"defaults": defaults, "models": dict(grid["models"])}
    raw = list(grid["points"])
    rehearsal = dict(grid.get("cpu_rehearsal") or {})
    if cpu:
        raw = raw[: int(rehearsal.get("points", len(raw)))]
        settings["rehearsal"] = rehearsal
    points = []
    for item in raw:
        div = int(rehearsal.get("cutoff_div", 1)) if cpu else 1
        cutoff = max(32, int(item["cutoff"]) // div)
        gc = bool(item["gc"])
        pid = point_id(str(item["model"]), item["stage"], item["method"], int(item["zero"]), cutoff,
                       int(item["mb"]), gc)
        points.append(Point(
            id=pid, model=str(item["model"]), preset=str(grid["models"][item["model"]]), stage=item["stage"],
            method=item["method"], zero=int(item["zero"]), cutoff=cutoff, mb=int(item["mb"]), gc=gc,
            steps=int(rehearsal.get("steps", defaults.get("steps", 4)) if cpu else defaults.get("steps", 4)),
            precision=str(rehearsal.get("precision", "fp32") if cpu else defaults.get("precision", "bf16")),
            flash_attn=str(defaults.get("flash_attn", "sdpa")), lora_rank=int(defaults.get("lora_rank", 8)),
        ))
    ids = [p.id for p in points]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"grid.yaml: duplicate points {sorted({i for i in ids if ids.count(i) > 1})}")
    return points, settings


def model_dims(preset: str, cpu_dims: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dimensions to build: the real preset's, or the rehearsal's tiny ones (same keys)."""
    from minicpm_tui.core.models import load_model

    arch = load_model(preset)
    dims = {k: getattr(arch, k) for k in ARCH_FIELDS}
    dims["max_position"] = arch.max_position
    if cpu_dims:
        dims.update(cpu_dims)
        dims["max_position"] = 4096
    return dims


# -- estimates (shared with tests/test_estimator_regression.py) ---------------------------------
def arch_from_row(row: dict[str, Any]) -> Any:
    from minicpm_tui.core.models import ModelArch

    def num(key: str) -> int:
        return int(float(row[key]))

    tie = str(row["tie_embeddings"]).lower() in ("true", "1", "yes")
    return ModelArch(name=str(row.get("model") or "bench"), hub_id=None, vocab_size=num("vocab_size"),
                     hidden_size=num("hidden_size"), intermediate_size=num("intermediate_size"),
                     num_layers=num("num_layers"), num_heads=num("num_heads"), num_kv_heads=num("num_kv_heads"),
                     head_dim=num("head_dim"), tie_embeddings=tie, max_position=4096)


def estimate_row(row: dict[str, Any]) -> Any:
    """The current estimator's Estimate for one grid row (what the regression test re-computes)."""
    from minicpm_tui.core.estimator import EstimateRequest, estimate

    gc = str(row["grad_ckpt"]).lower() in ("true", "1", "yes")
    req = EstimateRequest(arch=arch_from_row(row), method=row["method"], stage=row["stage"],
                          precision=row["precision"], zero_stage=int(row["zero_stage"]), offload="none",
                          gpus=int(row.get("gpus") or 1), nodes=1, micro_batch=int(row["micro_batch"]),
                          cutoff_len=int(row["cutoff"]), gradient_checkpointing=gc, attn=row["attn"],
                          lora_rank=int(row["lora_rank"]))
    return estimate(req)


def planner_peak(arch: Any, row: dict[str, Any], hardware: str) -> float | None:
    """The planner's per-GPU peak for exactly this configuration (None when it will not say)."""
    try:
        from minicpm_tui.core.planner import PlanRequest, plan

        result = plan(PlanRequest(model=arch, method=row["method"], stage=row["stage"],
                                  hardware=None if hardware == "auto" else hardware, gpus=1, nodes=1,
                                  cutoff_len=int(row["cutoff"]), micro_batch=int(row["micro_batch"]),
                                  precision=row["precision"], zero_stage=int(row["zero_stage"]), offload="none",
                                  gradient_checkpointing=str(row["grad_ckpt"]).lower() == "true",
                                  lora_rank=int(row["lora_rank"])))
        choice = getattr(result, "recommended", None)
        value = getattr(choice, "peak_gib_per_gpu", None)
        return float(value) if value is not None else None
    except Exception:  # a comparison column: the planner may refuse a configuration it thinks won't fit
        return None


def rule16_gib(params: int) -> float:
    """The plain "16 bytes per parameter" rule (mixed-precision AdamW model states, whatever the method)."""
    return 16 * params / GIB


def ds_estimates(rows: list[dict[str, Any]], python: str, env: dict[str, str]) -> list[float | None]:
    """DeepSpeed's own estimators for each row (GiB), in the training Python; None if it cannot run."""
    items = []
    for row in rows:
        arch = arch_from_row(row)
        items.append({"params": arch.param_count(), "largest_layer": arch.largest_layer_params(),
                      "zero": int(row["zero_stage"]), "gpus": int(row.get("gpus") or 1)})
    try:
        proc = subprocess.run([python, str(HERE / "ds_estimate.py")], input=json.dumps(items), text=True,
                              capture_output=True, env=env, timeout=300)
        values = json.loads(proc.stdout.strip().splitlines()[-1])
        return [v / GIB for v in values]
    except Exception as exc:  # reported, never fatal: it is a comparison column
        print(f"grid: DeepSpeed estimators unavailable: {exc}", file=sys.stderr)
        return [None] * len(rows)


# -- data ------------------------------------------------------------------------------------------
def _text(rng: Any, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def write_datasets(data_dir: Path, max_cutoff: int, count: int = 48, seed: int = 0) -> None:
    """SFT (alpaca), DPO (sharegpt, ranking) and KTO (sharegpt + kto_tag) data, every field longer than
    the cutoff in tokens (each word is >= 2 tokens of the tiny tokenizer), so every example is truncated to
    exactly the cutoff and the memory measured is the memory at that length."""
    import random

    rng = random.Random(seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    n = max_cutoff  # words per field
    sft, dpo, kto = [], [], []
    for i in range(count):
        sft.append({"instruction": _text(rng, n), "input": "", "output": _text(rng, n)})
        dpo.append({"conversations": [{"from": "human", "value": _text(rng, n)}],
                    "chosen": {"from": "gpt", "value": _text(rng, n)},
                    "rejected": {"from": "gpt", "value": _text(rng, n)}})
        kto.append({"messages": [{"role": "user", "content": _text(rng, n)},
                                 {"role": "assistant", "content": _text(rng, n)}], "label": i % 2 == 0})
    for name, rows in (("bench_sft", sft), ("bench_dpo", dpo), ("bench_kto", kto)):
        with open(data_dir / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    info = {
        "bench_sft": {"file_name": "bench_sft.jsonl"},
        "bench_dpo": {"file_name": "bench_dpo.jsonl", "formatting": "sharegpt", "ranking": True,
                      "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
        "bench_kto": {"file_name": "bench_kto.jsonl", "formatting": "sharegpt",
                      "columns": {"messages": "messages", "kto_tag": "label"},
                      "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                               "assistant_tag": "assistant"}},
    }
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


# -- one run ---------------------------------------------------------------------------------------
def tree_pids(root: int) -> list[int]:
    try:
        import psutil

        proc = psutil.Process(root)
        return [root] + [p.pid for p in proc.children(recursive=True)]
    except Exception:
        return []


def read_log(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(item, dict):
            out.append(item)
    return out


def seqs_per_example(stage: str) -> int:
    """Sequences one example puts through the policy per step: DPO chosen+rejected, KTO target+KL."""
    return 2 if stage in ("dpo", "kto") else 1


def make_recipe(point: Point, model_dir: Path, data_dir: Path, hardware: str = "auto") -> Any:
    from minicpm_tui.core.recipe import Recipe

    recipe = Recipe(
        name=point.id, model=str(model_dir), template="auto", trust_remote_code="false", stage=point.stage,
        method=point.method, lora_rank=point.lora_rank, lora_alpha=2 * point.lora_rank,
        datasets=[f"bench_{point.stage}"], dataset_dir=str(data_dir), cutoff_len=point.cutoff,
        max_samples=point.mb * point.steps + 8, learning_rate=1e-5, max_steps=point.steps,
        micro_batch=point.mb, grad_accum=1, warmup_ratio=0.0, logging_steps=1, save_steps=100_000,
        save_total_limit=0, hardware=hardware, gpus=1, nodes=1, zero_stage=point.zero, offload="none",
        precision=point.precision, flash_attn=point.flash_attn,
        gradient_checkpointing="true" if point.gc else "false", nccl_auto=False, output_dir="output",
        report_to="none",
    )
    recipe.validate()
    return recipe


@dataclass
class RunResult:
    status: str
    note: str = ""
    reserved_gib: float | None = None
    allocated_gib: float | None = None
    nvml_proc_gib: float | None = None
    nvml_device_gib: float | None = None
    tokens_per_s: float | None = None
    step_s: float | None = None
    wall_s: float = 0.0
    log_tail: str = ""


def launch_and_measure(run_dir: Path, point: Point, env: dict[str, str], sampler: Any, timeout: float,
                       port: int) -> RunResult:
    """Run single_node.sh; sample NVML; stop once the last step is logged; parse the measurements."""
    log_path = run_dir / "output" / "trainer_log.jsonl"
    out_log = run_dir / "launch.log"
    run_env = dict(env, RECORD_VRAM="1", MASTER_PORT=str(port))
    baseline = None
    if sampler is not None:
        first = sampler.sample()
        if first.ok and first.gpus and first.gpus[0].memory_used_mib is not None:
            baseline = first.gpus[0].memory_used_mib
    started = time.monotonic()
    with open(out_log, "wb") as handle:
        proc = subprocess.Popen(["bash", "single_node.sh"], cwd=run_dir, env=run_env, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)
    step_seen: dict[int, float] = {}
    proc_peak = dev_peak = 0.0
    next_sample = 0.0
    done_at = None
    status = "failed"
    note = ""
    try:
        while True:
            now = time.monotonic()
            if sampler is not None and now >= next_sample:
                next_sample = now + 0.5
                sampler.pids = lambda: tree_pids(proc.pid)
                sample = sampler.sample()
                if sample.ok and sample.gpus:
                    gpu = sample.gpus[0]
                    proc_peak = max(proc_peak, gpu.run_memory_mib or 0.0)
                    if gpu.memory_used_mib is not None and baseline is not None:
                        dev_peak = max(dev_peak, gpu.memory_used_mib - baseline)
            for item in read_log(log_path):
                step = item.get("current_steps")
                if isinstance(step, int) and step not in step_seen:
                    step_seen[step] = now
            if step_seen and max(step_seen) >= point.steps and done_at is None:
                done_at = now
            if done_at is not None and now - done_at > 1.0:
                status = "ok"
                break
            if proc.poll() is not None:
                status = "ok" if step_seen and max(step_seen) >= point.steps else "failed"
                if status == "failed":
                    note = f"exit code {proc.returncode}"
                break
            if now - started > timeout:
                note = f"timed out after {timeout:.0f} s"
                status = "timeout"
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            _stop_group(proc)
    wall = time.monotonic() - started
    entries = read_log(log_path)
    # 0 on CPU (no CUDA allocator): no reading, not a zero peak
    reserved = max((e["vram_reserved"] for e in entries if isinstance(e.get("vram_reserved"), (int, float))),
                   default=None) or None
    allocated = max((e["vram_allocated"] for e in entries if isinstance(e.get("vram_allocated"), (int, float))),
                    default=None) or None
    step_s = None
    steps_sorted = sorted(step_seen)
    if len(steps_sorted) >= 3:
        # from the 2nd logged step on: the 1st carries CUDA warm-up and the optimizer-state allocation;
        # only when the span is long against the 0.1 s polling
        a, b = steps_sorted[1], steps_sorted[-1]
        if step_seen[b] - step_seen[a] >= 0.5:
            step_s = (step_seen[b] - step_seen[a]) / (b - a)
    if step_s is None:
        step_s = _tqdm_step_seconds(out_log, point.steps)  # fast steps: the progress bar's own rate
    tokens = point.mb * point.cutoff * seqs_per_example(point.stage) / step_s if step_s else None
    tail = ""
    if status != "ok":
        try:
            tail = "\n".join(out_log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
        except OSError:
            tail = ""
        note = note or _guess_error(tail)
    return RunResult(status=status, note=note, reserved_gib=reserved, allocated_gib=allocated,
                     nvml_proc_gib=proc_peak / 1024 if proc_peak else None,
                     nvml_device_gib=dev_peak / 1024 if dev_peak else None, tokens_per_s=tokens, step_s=step_s,
                     wall_s=wall, log_tail=tail)


def _tqdm_step_seconds(log: Path, steps: int) -> float | None:
    """Seconds per step from the training progress bar's last reading ("4/4 [00:02<00:00, 1.9it/s]")."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.findall(rf"\b{steps}/{steps} \[[^<\]]*<[^,\]]*,\s*([0-9.]+)(it/s|s/it)\]", text)
    if not found:
        return None
    value, unit = float(found[-1][0]), found[-1][1]
    if value <= 0:
        return None
    return 1.0 / value if unit == "it/s" else value


def _guess_error(tail: str) -> str:
    for pattern in (r"(CUDA out of memory[^\n]{0,80})", r"(\w+Error: [^\n]{0,160})"):
        found = re.findall(pattern, tail)
        if found:
            return found[-1]
    return "see failures.log"


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the run's whole process group (torchrun and its workers): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- the driver ------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 2) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, digits)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="where grid.csv and failures.log go")
    parser.add_argument("--work", type=Path, default=None, help="models, data and run directories, kept "
                        "(default: a temporary folder, removed at the end; 25 GB on the GPU grid)")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="tiny dimensions on CPU, same code path")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no new point after this many seconds (GPU default 380, CPU 900)")
    parser.add_argument("--run-timeout", type=float, default=None, help="per point (GPU 120 s, CPU 300 s)")
    parser.add_argument("--hardware", default=None, help="hardware for the generator/planner: 'auto' probes "
                        "(GPU default); the CPU rehearsal uses the preset 1x-a10-24gb (the plan is explicit anyway)")
    parser.add_argument("--only", default="", help="comma-separated point ids to run (default: all)")
    parser.add_argument("--points", type=int, default=0, help="run only the first N points")
    parser.add_argument("--sampler-seconds", type=float, default=None,
                        help="run sampler_bench.py beside the grid for this long (GPU 60, CPU 10; 0 = off)")
    args = parser.parse_args(argv)

    from minicpm_tui.core.lfinfo import training_python
    from minicpm_tui.core.nvml import Nvml
    from minicpm_tui.core.telemetry import GpuSampler
    from minicpm_tui.core.tinymodel import offline_env, tiny_model_dir
    from minicpm_tui.core.writers import generate

    cpu = args.cpu_rehearsal
    hardware = args.hardware or ("1x-a10-24gb" if cpu else "auto")
    budget = args.budget_s if args.budget_s is not None else (900.0 if cpu else 380.0)
    run_timeout = args.run_timeout or (300.0 if cpu else 120.0)
    sampler_seconds = args.sampler_seconds if args.sampler_seconds is not None else (10.0 if cpu else 60.0)
    points, settings = load_grid(cpu=cpu)
    if args.only:
        wanted = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = wanted - {p.id for p in points}
        if unknown:
            print(f"grid: unknown point id(s) {', '.join(sorted(unknown))}; known: "
                  f"{', '.join(p.id for p in points)}", file=sys.stderr)
            return 2
        points = [p for p in points if p.id in wanted]
    if args.points:
        points = points[: args.points]

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="minicpm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    python = training_python()
    env = offline_env()
    env["MINICPM_TUI_TRAIN_PYTHON"] = python
    env["TRAIN_PYTHON"] = python  # single_node.sh's interpreter
    env.pop("DISABLE_VERSION_CHECK", None)  # the kit runs the exact pinned stack: let LLaMA-Factory check it
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    started = time.monotonic()

    nvml = Nvml()
    sampler = GpuSampler(nvml, interval=0.5) if not cpu else None
    gpu_name, gpu_total = ("cpu-rehearsal", None)
    if sampler is not None:
        first = sampler.sample()
        if first.ok and first.gpus:
            gpu_name = first.gpus[0].name or "gpu"
            gpu_total = (first.gpus[0].memory_total_mib or 0) / 1024 or None
        else:
            print(f"grid: {first.summary()}: no GPU to measure on (use --cpu-rehearsal here)", file=sys.stderr)
            return 1

    idle_mib = None
    if sampler is not None and first.gpus[0].memory_used_mib is not None:
        idle_mib = first.gpus[0].memory_used_mib
    bench_proc = None
    if sampler_seconds > 0:
        bench_proc = subprocess.Popen([sys.executable, str(HERE / "sampler_bench.py"), "--out",
                                       str(out / "sampler.json"), "--interval", "1", "--duration",
                                       str(sampler_seconds), "--tree-pid", str(os.getpid())],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    data_dir = work / "data"
    write_datasets(data_dir, max(p.cutoff for p in points) if points else 64)
    tokenizer_dir = tiny_model_dir("cpm3")
    cpu_dims = settings.get("rehearsal", {}).get("dims") if cpu else None
    models: dict[str, Path] = {}
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    durations: dict[str, list[float]] = {}
    fraction = float(settings["defaults"].get("gpu_fraction", 0.92))
    prebuilt = False

    for index, point in enumerate(points):
        elapsed = time.monotonic() - started
        dims = model_dims(point.preset, cpu_dims)
        row: dict[str, Any] = {"id": point.id, "device": gpu_name, "model": point.preset, **dims,
                               "stage": point.stage, "method": point.method, "zero_stage": point.zero,
                               "cutoff": point.cutoff, "micro_batch": point.mb, "grad_ckpt": point.gc,
                               "precision": point.precision, "attn": ATTN[point.flash_attn],
                               "lora_rank": point.lora_rank, "gpus": 1, "steps": point.steps,
                               "gpu_name": gpu_name, "gpu_total_gib": fmt(gpu_total)}
        row.pop("max_position", None)
        est = estimate_row(row)
        arch = arch_from_row(row)
        row.update(params=arch.param_count(), estimate_gib=fmt(est.peak_gib), rule16_gib=fmt(rule16_gib(
            arch.param_count())), est_terms=json.dumps(est.terms_gib(4)),
                   planner_gib=fmt(planner_peak(arch, row, hardware)))
        expected = (sum(durations.get(point.model, [])) / len(durations[point.model]) * 1.2
                    if durations.get(point.model) else (20.0 if cpu else 45.0))
        if point.model not in models:
            expected += 30.0  # building and saving the model first
        if elapsed + expected > budget:
            row.update(status="skipped", note=f"time budget ({budget:.0f} s) reached")
            rows.append(row)
            continue
        if gpu_total is not None and est.peak_gib > fraction * gpu_total:
            row.update(status="skipped", note=f"estimate {est.peak_gib:.1f} GiB > {fraction:.0%} of the GPU")
            rows.append(row)
            continue
        t0 = time.monotonic()
        if point.model not in models:
            model_dir = work / "models" / point.model
            if not (model_dir / "bench_model.json").is_file():
                build = subprocess.run(
                    [python, str(HERE / "build_model.py"), str(model_dir), "--dims", json.dumps(dims),
                     "--tokenizer-from", str(tokenizer_dir), "--dtype", "fp32" if cpu else "bf16",
                     "--device", "cpu" if cpu else "cuda"],
                    capture_output=True, text=True, env=env, timeout=600)
                if build.returncode != 0:
                    tail = "\n".join((build.stderr or build.stdout).splitlines()[-20:])
                    failures.append(f"== build {point.model}\n{tail}\n")
                    row.update(status="failed", note="model build failed")
                    rows.append(row)
                    continue
                print(f"grid: built {point.preset} dims in {time.monotonic() - t0:.1f} s", flush=True)
            models[point.model] = model_dir
        if cpu and point.zero and not prebuilt:
            prebuilt = True
            _prebuild_cpu_comm_op(python, env)
        run_dir = work / "runs" / point.id
        try:
            recipe = make_recipe(point, models[point.model], data_dir, hardware)
            generate(recipe, run_dir, force=True)
        except Exception as exc:  # a generator bug is a result of the kit too
            row.update(status="failed", note=f"generate: {type(exc).__name__}: {exc}")
            failures.append(f"== {point.id}: generate\n{exc}\n")
            rows.append(row)
            continue
        result = launch_and_measure(run_dir, point, env, sampler, run_timeout, 29500 + (index % 200))
        measured = max((v for v in (result.nvml_proc_gib or result.nvml_device_gib, result.reserved_gib)
                        if v), default=None)
        row.update(status=result.status, note=result.note, torch_reserved_gib=fmt(result.reserved_gib),
                   torch_allocated_gib=fmt(result.allocated_gib), nvml_proc_peak_gib=fmt(result.nvml_proc_gib),
                   nvml_device_peak_gib=fmt(result.nvml_device_gib), measured_gib=fmt(measured),
                   tokens_per_s=fmt(result.tokens_per_s, 0), step_s=fmt(result.step_s, 3),
                   wall_s=fmt(time.monotonic() - t0, 1))
        if measured:
            row["error_pct"] = fmt(100.0 * (est.peak_gib - measured) / measured, 1)
        if sampler is not None:
            _settle(sampler, idle_mib)  # the next run's baseline must not include this one's memory
        if result.status != "ok":
            failures.append(f"== {point.id}: {result.status} {result.note}\n{result.log_tail}\n")
        else:
            durations.setdefault(point.model, []).append(time.monotonic() - t0)
        rows.append(row)
        print(f"grid: [{index + 1}/{len(points)}] {point.id}: {result.status} est {est.peak_gib:.2f} GiB, "
              f"measured {measured if measured is not None else 'n/a'} GiB, {result.wall_s:.0f} s "
              f"{result.note}", flush=True)
        _write(out, rows, failures)  # after every point: a timeout still leaves the finished rows

    ds = ds_estimates(rows, python, env)
    for row, value in zip(rows, ds, strict=True):
        row["ds_estimator_gib"] = fmt(value)
    _write(out, rows, failures)
    if bench_proc is not None:
        try:
            bench_proc.wait(timeout=max(5.0, sampler_seconds + 15.0 - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            bench_proc.kill()
    if args.work is None:  # our own temporary folder (models of up to 16 GB each): leave nothing behind
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    ok = sum(1 for r in rows if r.get("status") == "ok")
    print(f"grid: {ok}/{len(rows)} points ok in {time.monotonic() - started:.0f} s -> {out / 'grid.csv'}")
    return 0 if ok else 1


def _prebuild_cpu_comm_op(python: str, env: dict[str, str]) -> None:
    """CPU rehearsal only: DeepSpeed on CPU JIT-builds its shared-memory comm op on first use (a minute or
    more of g++); build it once here so no point's timeout is spent on it. (On a GPU, NCCL needs no op.)"""
    started = time.monotonic()
    root = env.get("TORCH_EXTENSIONS_DIR")
    if root:  # a build killed midway leaves its lock and every later build waits on it for ever
        for lock in [*Path(root).glob("deepspeed_shm_comm/lock"), *Path(root).glob("*/deepspeed_shm_comm/lock")]:
            if time.time() - lock.stat().st_mtime > 600:
                lock.unlink(missing_ok=True)
    code = "from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder\nShareMemCommBuilder().load()\n"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=900)
        state = "ok" if proc.returncode == 0 else f"failed: {(proc.stderr or '').strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        state = "timed out"
    print(f"grid: DeepSpeed CPU comm op prebuilt ({state}) in {time.monotonic() - started:.0f} s", flush=True)


def _settle(sampler: Any, idle_mib: float | None, timeout: float = 15.0) -> None:
    """Wait until the GPU is back near its idle memory (a killed run's workers release it late)."""
    if idle_mib is None:
        return
    deadline = time.monotonic() + timeout
    sampler.pids = None
    while time.monotonic() < deadline:
        sample = sampler.sample()
        used = sample.gpus[0].memory_used_mib if sample.ok and sample.gpus else None
        if used is None or used <= idle_mib + 512:
            return
        time.sleep(0.5)


def _write(out: Path, rows: list[dict[str, Any]], failures: list[str]) -> None:
    tmp = out / ".grid.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: fmt(v) for k, v in row.items()})
    os.replace(tmp, out / "grid.csv")
    (out / "failures.log").write_text("\n".join(failures) or "no failures\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
