"""The smoke run: the whole chain of a run directory, on the CPU, in about a minute.

``prepare_smoke(run_dir)`` derives ``RUN_DIR/smoke/train.yaml`` from the run's train.yaml: the cached tiny
model of the same chat format (tinymodel.tiny_model_dir), a few steps, a short cutoff, CPU precision
(use_cpu; bf16 stays bf16 on the CPU, fp16 becomes fp32; DeepSpeed runs train in fp32 without use_cpu,
which would bypass DeepSpeed), DeepSpeed offload removed (its CPU Adam would need a long JIT build), and 2
processes when the plan uses DeepSpeed or DDP. ``smoke(run_dir)`` launches
it through the run's very own single_node.sh with environment overrides (TRAIN_YAML, NPROC_PER_NODE,
CUDA_VISIBLE_DEVICES="" ...), then reads ``trainer_log.jsonl``: pass/fail, loss per step, log tail.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minicpm_tui.core.atomic import write_atomic
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import absolute_path

SMOKE_DIR = "smoke"
SMOKE_YAML = "smoke/train.yaml"  # relative to the run directory (the scripts cd into it)
SMOKE_OUTPUT = "smoke/output"
SMOKE_LOG = "smoke/smoke.log"
# Each smoke process is a whole CPU training (torch, the tiny model, a gloo rank); 2 already proves the
# distributed wiring, and more only compete for the cores and RAM.
MAX_SMOKE_NPROC = 8


# (phase, step, total steps): "preparing", "starting", then the monitor's phases as the log shows them
# (tokenizing, loading model, training with its step, evaluating, saving).
Progress = Callable[[str, int | None, int | None], None]


@dataclass
class SmokeSpec:
    """What to launch: ``bash <script>`` in ``run_dir`` with ``env`` on top of the current environment."""

    run_dir: Path
    yaml_path: Path
    output_dir: Path
    env: dict[str, str]
    nproc: int
    steps: int
    script: str = "single_node.sh"
    notes: list[str] = field(default_factory=list)
    deepspeed: bool = False  # the run uses DeepSpeed: the smoke must find its checkpoint shards

    @property
    def argv(self) -> list[str]:
        return ["bash", str(self.run_dir / self.script)]

    def full_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        from minicpm_tui.core.tinymodel import offline_env

        env = offline_env(dict(os.environ if base is None else base))
        env.update(self.env)
        return env


@dataclass
class SmokeResult:
    passed: bool
    returncode: int | None
    losses: list[tuple[int, float]]
    log_tail: str
    duration_s: float
    output_dir: Path
    log_path: Path
    reason: str = ""
    spec: SmokeSpec | None = None

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "returncode": self.returncode,
                "losses": [{"step": s, "loss": v} for s, v in self.losses], "duration_s": round(self.duration_s, 1),
                "output_dir": str(self.output_dir), "log": str(self.log_path), "reason": self.reason,
                "log_tail": self.log_tail if not self.passed else ""}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from minicpm_tui.core.writers import read_generated

    meta = read_generated(run_dir)
    path = run_dir / "train.yaml"
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError("train.yaml is missing", where=str(run_dir), fix="regenerate the run directory") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"train.yaml is not valid YAML: {exc}", where=str(path)) from exc
    if not isinstance(cfg, dict):
        raise UserError("train.yaml must be a mapping", where=str(path))
    return meta, cfg


# train.yaml keys the smoke config drops (prepare_smoke): the LLaMA-Factory that smokes need not have them
SMOKE_DROPS = ("num_train_epochs", "val_size", "eval_strategy", "eval_steps", "per_device_eval_batch_size",
               "save_steps", "save_total_limit", "quantization_bit", "fp16")


@dataclass(frozen=True)
class SmokeHere:
    """What a smoke run on this machine proves of a run directory written for another LLaMA-Factory
    (``generate --lf-target``): it trains with the LLaMA-Factory here, not the target's."""

    python: str  # the Python the smoke run trains with (``run_dir_python``)
    wanted: str | None = None  # the release it was written for (generated.json)
    target: str = ""  # lf_target in words ("the LLaMA-Factory 0.9.3 snapshot"); "": written for this machine's
    here: str | None = None  # the release ``python`` has (None: none), looked up only for a target
    refused: str = ""  # why the LLaMA-Factory here cannot train train.yaml ("": it can)

    @property
    def other_release(self) -> bool:
        """Written for another machine and smoked with another release here: it proves the data and the
        scripts, not the target's release."""
        return bool(self.target) and self.here != self.wanted

    def note(self) -> str | None:
        if not self.other_release or self.refused:
            return None
        return (f"written for LLaMA-Factory {self.wanted} but smoked with {self.here} ({self.python}): it proves the "
                "data and the scripts, not that release; set TRAIN_PYTHON to a python with it, or smoke it on the "
                "target machine")

    def error(self, run_dir: Path) -> UserError:
        return UserError(f"not smoked here: {self.refused}", where=str(run_dir),
                         fix=f"smoke it on the machine that trains (`minicpm-tui smoke RUN_DIR` there), or set "
                             f"TRAIN_PYTHON to a python with LLaMA-Factory {self.wanted}")


def smoke_here(run_dir: str | os.PathLike[str]) -> SmokeHere:
    """Whether this machine's LLaMA-Factory (the run directory's training Python) can smoke a run directory
    written for another one: every key of its train.yaml that the smoke run keeps must be one of its
    arguments, its template one it (or train_entry.py) registers. Asks that LLaMA-Factory (``lf_info``, a
    subprocess, cached) only when its release is not the target's. Written for this machine's: nothing to ask."""
    from minicpm_tui.core.lfinfo import check_training_python, installed_lf_version, lf_info, run_dir_python

    run = absolute_path(run_dir)
    meta, cfg = _read_run(run)
    python = run_dir_python(meta)
    target = meta.get("lf_target")
    wanted = meta.get("llamafactory") if isinstance(meta.get("llamafactory"), str) else None
    if not isinstance(target, dict) or target.get("value") in (None, "installed"):
        return SmokeHere(python, wanted)
    words = str(target.get("checked_against") or f"LLaMA-Factory {wanted}")
    try:
        check_training_python(python)
    except UserError as exc:
        return SmokeHere(python, wanted, words, None, exc.message)
    here = installed_lf_version(python)
    if here is None:
        return SmokeHere(python, wanted, words, None, f"no LLaMA-Factory here ({python}) to train it with")
    if here == wanted:
        return SmokeHere(python, wanted, words, here)
    try:
        info = lf_info(python)
    except UserError as exc:
        return SmokeHere(python, wanted, words, here, exc.message)
    from minicpm_tui.core.preflight import unknown_to

    missing, template = unknown_to(run, cfg, info, skip=SMOKE_DROPS)
    refused = ""
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        refused = (f"LLaMA-Factory {here} here lacks train.yaml's {shown} (written for {wanted}): its argument "
                   "parser stops on it")
    elif template is not None:
        refused = f"LLaMA-Factory {here} here does not register train.yaml's template {template} (written for {wanted})"
    return SmokeHere(python, wanted, words, here, refused)


def prepare_smoke(run_dir: str | os.PathLike[str], *, steps: int = 3, nproc: int | None = None,
                  cutoff_len: int = 64, master_port: int | None = None, nnodes: int = 1,
                  script: str = "single_node.sh", progress: Progress | None = None) -> SmokeSpec:
    """Write RUN_DIR/smoke/train.yaml (and ds_config.json when needed); return how to launch it. ``progress``
    hears "preparing" once the run directory passed its checks (the first time, the tiny model is built)."""
    from minicpm_tui.core.lfinfo import run_dir_python
    from minicpm_tui.core.runner import require_run_dir
    from minicpm_tui.core.tinymodel import tiny_model_dir

    if nproc is not None and not 1 <= nproc <= MAX_SMOKE_NPROC:
        raise UserError(f"the smoke run takes 1 to {MAX_SMOKE_NPROC} processes, not {nproc}: each one is a whole "
                        "CPU training of the tiny model", where="--nproc",
                        fix="2 proves the distributed set-up (the default when the plan uses DeepSpeed)")
    require_run_dir(run_dir)
    run = absolute_path(run_dir)
    if not (run / script).is_file():
        raise UserError(f"{script} is missing", where=str(run), fix="regenerate the run directory")
    meta, cfg = _read_run(run)
    resolved = meta.get("resolved", {})
    chat_format = resolved.get("chat_format", "cpm3")
    notes: list[str] = []
    python = run_dir_python(meta)
    here = smoke_here(run)  # written for another LLaMA-Factory: can this one train it, and what does that prove
    if here.refused:
        raise here.error(run)
    notes += [here.note()] if here.note() else []
    if progress is not None:
        progress("preparing", None, None)
    tiny = tiny_model_dir(chat_format, python=python)
    smoke_dir = run / SMOKE_DIR
    smoke_dir.mkdir(parents=True, exist_ok=True)

    derived = dict(cfg)
    derived.update({
        "model_name_or_path": str(tiny),
        "trust_remote_code": True,  # harmless for the tiny Llama; keeps the real run's path
        "cutoff_len": min(int(cfg.get("cutoff_len", cutoff_len)), cutoff_len),
        "max_steps": steps,
        "per_device_train_batch_size": 2 if cfg.get("stage") == "sft" else 1,
        "gradient_accumulation_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "output_dir": SMOKE_OUTPUT,
        "overwrite_output_dir": True,
        "plot_loss": False,
        "report_to": "none",
        "use_cpu": True,
        "flash_attn": "sdpa",
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "max_samples": int(cfg.get("max_samples") or 32) if int(cfg.get("max_samples") or 32) < 32 else 32,
        "warmup_ratio": 0.0,
        "learning_rate": 1.0e-3,
    })
    for key in SMOKE_DROPS:
        derived.pop(key, None)
    if cfg.get("quantization_bit"):
        notes.append("QLoRA's 4-bit base needs a GPU: the smoke run trains plain LoRA")
    if cfg.get("fp16"):
        notes.append("fp16 does nothing on the CPU: the smoke run trains in fp32")
    if chat_format == "cpm" and derived.get("template") not in ("cpm",):
        derived["template"] = "cpm"
    uses_ds = bool(cfg.get("deepspeed"))
    if uses_ds:
        ds_path = run / str(cfg["deepspeed"])
        try:
            ds = json.loads(ds_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the DeepSpeed config: {exc}", where=str(ds_path)) from exc
        zero = ds.get("zero_optimization", {})
        if zero.pop("offload_optimizer", None) is not None or zero.pop("offload_param", None) is not None:
            zero.pop("offload_param", None)
            notes.append("DeepSpeed offload removed for the smoke run (its CPU Adam needs a long JIT build)")
        write_atomic(smoke_dir / "ds_config.json", json.dumps(ds, indent=2) + "\n", mode=0o600)
        derived["deepspeed"] = f"{SMOKE_DIR}/ds_config.json"
        # use_cpu makes accelerate skip DeepSpeed altogether (plain gloo DDP trains instead, silently) and
        # leaves deepspeed.comm uninitialised, so ZeRO-3's zero.Init sees world size 1 and fails its batch
        # check. Without use_cpu, on a machine with no visible GPU, accelerate starts DeepSpeed on the CPU;
        # bf16 then fails transformers' GPU check, so the DeepSpeed smoke trains in fp32.
        derived.pop("use_cpu", None)
        if derived.pop("bf16", None):
            notes.append("DeepSpeed on the CPU: the smoke run trains in fp32 (bf16 needs use_cpu, which skips "
                         "DeepSpeed)")
        # A checkpoint at the last step: DeepSpeed writes global_step*/ in it, the proof that it really ran.
        derived["save_strategy"] = "steps"
        derived["save_steps"] = steps
        derived["save_only_model"] = False
    if nproc is None:
        nproc = 2 if (uses_ds or int(meta.get("nproc_per_node", 1)) * int(meta.get("nnodes", 1)) > 1) else 1
    header = ("# Smoke config derived by minicpm-tui from ../train.yaml: tiny model, a few steps, CPU.\n"
              "# Launched through ../single_node.sh with TRAIN_YAML=smoke/train.yaml.\n")
    yaml_path = write_atomic(run / SMOKE_YAML, header + yaml.safe_dump(derived, allow_unicode=True, sort_keys=False),
                             mode=0o600)
    env = {
        "TRAIN_YAML": SMOKE_YAML,
        "NPROC_PER_NODE": str(nproc),
        "NNODES": str(nnodes),
        "NODE_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(master_port or free_port()),
        "CUDA_VISIBLE_DEVICES": "",
        "TRAIN_PYTHON": python,  # what the real run will use, picked as single_node.sh picks it
        "OMP_NUM_THREADS": "1",
    }
    return SmokeSpec(run_dir=run, yaml_path=yaml_path, output_dir=run / SMOKE_OUTPUT, env=env, nproc=nproc,
                     steps=steps, script=script, notes=notes, deepspeed=uses_ds)


def read_losses(output_dir: str | os.PathLike[str]) -> list[tuple[int, float]]:
    """(step, loss) of each logging line of trainer_log.jsonl (lines without a loss are skipped)."""
    path = Path(output_dir) / "trainer_log.jsonl"
    out: list[tuple[int, float]] = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("loss"), (int, float)):
            out.append((int(row.get("current_steps", len(out) + 1)), float(row["loss"])))
    return out


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip() and "%|" not in line]
    return "\n".join(kept[-lines:])


def stop_tree(proc: subprocess.Popen[Any], grace: float = 40.0) -> int:
    """Stop a launch started with ``start_new_session=True`` (bash -> torchrun -> workers) and all it started.

    torchrun puts each worker in a session of its own, so signalling the launch's process group does not
    reach them: SIGTERM the group first (torchrun forwards it to its workers and waits up to 30 s for
    them), then SIGKILL the group and the process group of every descendant seen before, if still alive.
    """
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.Error, OSError):
            if child.is_running():  # psutil compares the start time: a reused pid is left alone
                if os.getpgid(child.pid) == child.pid:
                    os.killpg(child.pid, signal.SIGKILL)
                else:
                    child.kill()
    return proc.wait()


class _LogProgress:
    """What the smoke run is doing, read from its log as it grows, with the monitor's own phase parsing
    (``monitor.LogPhases``): ``say`` is called on each change of phase, step or total steps."""

    def __init__(self, log_path: Path, say: Progress) -> None:
        from minicpm_tui.core.monitor import LogPhases, RunSnapshot, TextFollower

        self._log = TextFollower(log_path, carriage_returns=True)
        self._phases = LogPhases(RunSnapshot(run_dir=str(log_path.parent)))
        self._say = say
        self._said: tuple[str, int | None, int | None] = ("starting", None, None)
        say(*self._said)

    def poll(self) -> None:
        snap = self._phases.snapshot
        for line in self._log.read_lines():
            self._phases.feed(line)
            now = (snap.phase, snap.step if snap.phase == "training" else None, snap.total_steps)
            if now != self._said:
                self._said = now
                self._say(*now)


def run_spec(spec: SmokeSpec, *, timeout: float = 900, extra_args: list[str] | None = None,
             log_path: Path | None = None, progress: Progress | None = None) -> SmokeResult:
    """Launch a prepared smoke spec and judge it; ``progress`` hears what it is doing while it runs."""
    log_path = log_path or spec.run_dir / SMOKE_LOG
    if spec.output_dir.exists():
        shutil.rmtree(spec.output_dir)
    start = time.monotonic()
    deadline = start + timeout
    returncode: int | None = None
    reason = ""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(spec.argv + list(extra_args or []), cwd=spec.run_dir, env=spec.full_env(),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            watch = _LogProgress(log_path, progress) if progress is not None else None
            while returncode is None:
                left = max(0.0, deadline - time.monotonic())
                try:
                    returncode = proc.wait(timeout=min(left, 0.5) if watch is not None else left)
                except subprocess.TimeoutExpired:
                    if watch is not None:
                        watch.poll()
                    if time.monotonic() >= deadline:
                        reason = f"timed out after {timeout:.0f} s"
                        stop_tree(proc)
                        break
            if watch is not None:
                watch.poll()
        except BaseException:  # interrupted (Ctrl-C, a test's timeout): leave nothing running
            stop_tree(proc, grace=10)
            raise
    duration = time.monotonic() - start
    losses = read_losses(spec.output_dir)
    if not reason:
        if returncode != 0:
            reason = f"training exited with code {returncode}"
        elif not losses:
            reason = "training finished but logged no loss (trainer_log.jsonl)"
        elif not all(math.isfinite(v) for _, v in losses):
            reason = "a logged loss is not finite"
        elif spec.deepspeed and not list(spec.output_dir.glob("checkpoint-*/global_step*")):
            reason = "DeepSpeed did not run: its checkpoint (checkpoint-N/global_stepN) is missing"
    passed = not reason
    return SmokeResult(passed=passed, returncode=returncode, losses=losses,
                       log_tail="" if passed else _tail(log_path), duration_s=duration,
                       output_dir=spec.output_dir, log_path=log_path, reason=reason, spec=spec)


def smoke(run_dir: str | os.PathLike[str], *, steps: int = 3, nproc: int | None = None, timeout: float = 900,
          progress: Progress | None = None, **kwargs: Any) -> SmokeResult:
    """Prove a run directory: the tiny model through the run's own single_node.sh, on the CPU."""
    spec = prepare_smoke(run_dir, steps=steps, nproc=nproc, progress=progress, **kwargs)
    return run_spec(spec, timeout=timeout, progress=progress)
