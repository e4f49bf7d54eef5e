"""Why did the run fail? Map the real log text (and exit code) to one line a person can act on.

Each rule matches text that LLaMA-Factory, transformers, torch, NCCL or DeepSpeed really print (the
fixtures in tests/fixtures/logs were produced by real failing runs where a CPU box can produce them).
The first matching rule in ``RULES`` order wins: specific causes before generic ones (an OOM makes
torchrun print a ChildFailedError too; the OOM is the cause).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TAIL_BYTES = 256 * 1024  # diagnosis reads at most this much of each log's end


@dataclass
class Diagnosis:
    kind: str
    summary: str  # what happened, one line
    fix: str  # what to do, one line
    evidence: str = ""  # the log line that gave it away
    details: dict[str, Any] = field(default_factory=dict)

    def one_line(self) -> str:
        return f"{self.summary}: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary, "fix": self.fix, "evidence": self.evidence,
                "details": self.details}


@dataclass
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    summary: str
    fix: str
    refine: Callable[[re.Match[str], str, Path | None], Diagnosis | None] | None = None


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE | re.MULTILINE)


# --------------------------------------------------------------------------------------------------
# OOM: suggest the next, smaller-footprint configuration
# --------------------------------------------------------------------------------------------------
def _yaml(path: Path) -> dict[str, Any]:
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except Exception:
        return {}


def _current_config(run_dir: Path) -> dict[str, Any]:
    """What the run used, read from train.yaml and its DeepSpeed JSON."""
    train = _yaml(run_dir / "train.yaml")
    cfg: dict[str, Any] = {
        "micro_batch": int(train.get("per_device_train_batch_size", 1) or 1),
        "grad_accum": int(train.get("gradient_accumulation_steps", 1) or 1),
        "gradient_checkpointing": not bool(train.get("disable_gradient_checkpointing", False)),
        "method": train.get("finetuning_type", "lora"),
        "quantized": bool(train.get("quantization_bit")),
        "cutoff_len": train.get("cutoff_len"),
        "zero_stage": None,
        "offload": "none",
    }
    ds = train.get("deepspeed")
    if ds:
        ds_path = Path(str(ds))
        ds_path = ds_path if ds_path.is_absolute() else run_dir / ds_path
        try:
            zero = json.loads(ds_path.read_text(encoding="utf-8")).get("zero_optimization", {})
        except (OSError, ValueError):
            zero = {}
        cfg["zero_stage"] = zero.get("stage")
        if zero.get("offload_param", {}).get("device") == "cpu":
            cfg["offload"] = "all"
        elif zero.get("offload_optimizer", {}).get("device") == "cpu":
            cfg["offload"] = "optimizer"
    return cfg


_OFFLOAD_NAMES = {"none": "none", "optimizer": "optimizer", "all": "optimizer+param"}


def _describe(choice: Any) -> str:
    parts = [f"ZeRO-{choice.zero_stage}" if choice.zero_stage else "no ZeRO",
             f"offload {choice.offload}" if choice.offload != "none" else "no offload",
             f"micro-batch {choice.micro_batch} x accumulation {choice.grad_accum}"]
    if choice.gradient_checkpointing:
        parts.append("gradient checkpointing")
    return ", ".join(parts)


def _planner_suggestion(run_dir: Path, cfg: dict[str, Any]) -> str | None:
    """The planner's next configuration down in memory, with its estimated peak (None when it cannot tell).

    The run's own configuration is planned first (its estimate was evidently too low); the suggestion is
    the first option that the planner estimates clearly (>=10%) below it: the same setup at half the
    micro-batch when that is enough, else the next ZeRO / offload rung.
    """
    try:
        from minicpm_tui.core import planner, writers
        from minicpm_tui.core.recipe import AUTO, Recipe

        recipe = Recipe.load(run_dir / "recipe.yaml")
        arch, _ = writers.recipe_model(recipe)
        hardware = writers.recipe_hardware(recipe)
        if hardware is None or not getattr(hardware, "gpus", None):
            return None
        mb, ga = cfg["micro_batch"], cfg["grad_accum"]
        zero = int(cfg["zero_stage"] or 0)
        offload = _OFFLOAD_NAMES.get(cfg["offload"], "none")
        gpus = None if recipe.gpus == AUTO else int(recipe.gpus)
        common = {"model": arch, "hardware": hardware, "method": recipe.method, "stage": recipe.stage,
                  "cutoff_len": int(cfg.get("cutoff_len") or recipe.cutoff_len), "gpus": gpus,
                  "nodes": recipe.nodes, "lora_rank": recipe.lora_rank,
                  "gradient_checkpointing": bool(cfg["gradient_checkpointing"])}
        current = planner.plan(planner.PlanRequest(**common, zero_stage=zero, offload=offload,
                                                   micro_batch=mb)).recommended
        budget = current.peak_gib_per_gpu * 0.9
        global_batch = mb * ga * current.gpus * current.nodes
        ladder = []
        if mb > 1:
            ladder.append(planner.plan(planner.PlanRequest(**common, zero_stage=zero, offload=offload,
                                                           micro_batch=max(1, mb // 2))).recommended)
        free = planner.plan(planner.PlanRequest(**common, global_batch=global_batch))
        others = [free.recommended, *free.alternatives]
        ladder += sorted((c for c in others if (c.zero_stage, c.offload) != (zero, offload)),
                         key=lambda c: -c.peak_gib_per_gpu)
        lower = [c for c in ladder if c.peak_gib_per_gpu <= budget]
        if not lower:
            return None
        # The first rung the planner expects to fit; if none does, the smallest footprint it knows.
        choice = next((c for c in lower if c.fits), min(lower, key=lambda c: c.peak_gib_per_gpu))
    except Exception:  # the planner or its inputs are unavailable: fall back to the fixed ladder
        return None
    recipe_offload = {v: k for k, v in _OFFLOAD_NAMES.items()}.get(choice.offload, choice.offload)
    flags = (f"--zero-stage {choice.zero_stage} --offload {recipe_offload} --micro-batch {choice.micro_batch} "
             f"--grad-accum {choice.grad_accum}")
    return (f"planner's next configuration: {_describe(choice)} (estimated peak {choice.peak_gib_per_gpu:.1f} "
            f"GiB/GPU, vs {current.peak_gib_per_gpu:.1f} GiB estimated for what ran"
            f"{'' if choice.fits else '; even this may not fit: use more GPUs or LoRA'}): "
            f"`minicpm-tui generate {run_dir / 'recipe.yaml'} --out NEW_RUN_DIR {flags}`")


def oom_suggestion(run_dir: Path | None) -> str:
    """The next step down in memory, from the planner when it can, else a fixed ladder."""
    generic = ("halve per_device_train_batch_size and double gradient_accumulation_steps, or move to "
               "ZeRO-3 / CPU offload (`minicpm-tui plan` shows what fits)")
    if run_dir is None or not (run_dir / "train.yaml").is_file():
        return generic
    cfg = _current_config(run_dir)
    planned = _planner_suggestion(run_dir, cfg)
    if planned:
        return planned
    mb, ga = cfg["micro_batch"], cfg["grad_accum"]
    if mb > 1:
        return (f"micro-batch {mb} -> {max(1, mb // 2)} with gradient accumulation {ga} -> {ga * 2} (same "
                "effective batch) in train.yaml, then `minicpm-tui run --resume` if a checkpoint exists")
    if not cfg["gradient_checkpointing"]:
        return "turn gradient checkpointing back on (remove disable_gradient_checkpointing from train.yaml)"
    if cfg["zero_stage"] is not None and cfg["zero_stage"] < 3:
        return "move from ZeRO-2 to ZeRO-3 (shards the weights too): regenerate with --zero-stage 3"
    if cfg["offload"] == "none":
        return "offload the optimizer states to CPU RAM: regenerate with --offload optimizer"
    if cfg["offload"] == "optimizer" and cfg["zero_stage"] == 3:
        return "offload parameters as well: regenerate with --offload all"
    if cfg["method"] == "full":
        return "train LoRA adapters instead of every weight: regenerate with --method lora"
    if cfg.get("cutoff_len"):
        return f"shorten cutoff_len ({cfg['cutoff_len']} -> {int(cfg['cutoff_len']) // 2}) or use more GPUs"
    return generic


def _refine_oom(match: re.Match[str], text: str, run_dir: Path | None) -> Diagnosis:
    line = _line_of(text, match.start())
    tried = re.search(r"Tried to allocate ([\d.]+ [GMK]iB)", line)
    gpu = re.search(r"GPU (\d+) has a total capacity of ([\d.]+ [GMK]iB)", line)
    summary = "CUDA out of memory"
    if tried:
        summary += f" (tried to allocate {tried.group(1)}"
        summary += f" on GPU {gpu.group(1)} of {gpu.group(2)})" if gpu else ")"
    return Diagnosis("cuda_oom", summary, oom_suggestion(run_dir), line.strip()[:300])


def _refine_bf16(match: re.Match[str], text: str, run_dir: Path | None) -> Diagnosis | None:
    line = _line_of(text, match.start())
    if "doesn't support bf16/gpu" in line and "Ampere" not in line:
        # transformers adds "You need Ampere+ GPU" only when torch sees CUDA: here it saw no GPU at all,
        # and fp16 would fail the same way.
        return Diagnosis("no_gpu", "the training found no CUDA GPU (bf16 needs one)",
                         "check `nvidia-smi`, CUDA_VISIBLE_DEVICES (empty hides every GPU) and that torch is a "
                         "CUDA build (`minicpm-tui doctor`); on a machine without a GPU, `minicpm-tui smoke "
                         "RUN_DIR` trains a tiny model on the CPU", line.strip()[:300])
    return None  # the rule's own diagnosis: a GPU without bf16


# --------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------
RULES: list[_Rule] = [
    _Rule("cuda_oom", _rx(r"CUDA out of memory|torch\.(cuda\.)?OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED"),
          "CUDA out of memory", "", _refine_oom),
    _Rule("no_valid_samples", _rx(r"Cannot find valid samples"),
          "LLaMA-Factory found no valid rows in the dataset",
          "run `minicpm-tui validate DATA_FILE --stage STAGE` to see which records it drops and why"),
    _Rule("missing_template", _rx(r"Template ([\w.\-]+) does not exist"),
          "the chat template is not registered in the installed LLaMA-Factory",
          "regenerate the run directory (`minicpm-tui generate`), which picks the template the installed "
          "version has (cpm4 on 0.9.5; cpm3/cpm only up to 0.9.4)"),
    _Rule("deepspeed_no_launcher", _rx(r"Please use `?FORCE_TORCHRUN=1`? to launch DeepSpeed training"),
          "DeepSpeed was started without a distributed launcher",
          "launch through the run directory's single_node.sh (torchrun), or set FORCE_TORCHRUN=1 for "
          "`llamafactory-cli train`"),
    _Rule("output_dir_not_empty", _rx(r"Output directory already exists and is not empty"),
          "LLaMA-Factory refused to start: output_dir holds a saved model (a stopped or finished run's) "
          "but no checkpoint-N to resume from",
          "move the output directory away (or delete it) to start over; `minicpm-tui run --resume` needs a "
          "checkpoint-N, which LLaMA-Factory writes every save_steps"),
    _Rule("remote_code", _rx(r"trust_remote_code=True|contains custom code which must be executed|"
                             r"requires you to execute the configuration file"),
          "the checkpoint ships its own modelling code and trust_remote_code is off",
          "set trust_remote_code: true in train.yaml (recipe: --trust-remote-code true) for MiniCPM 1-4 "
          "checkpoints you trust"),
    _Rule("flash_attn_arch", _rx(r"FlashAttention only supports Ampere GPUs or newer|"
                                 r"FlashAttention2? (has been toggled on|is not supported).*(compute capability|GPU)"),
          "FlashAttention-2 needs an Ampere or newer GPU (compute capability 8.0+)",
          "set flash_attn: sdpa in train.yaml (recipe: --flash-attn sdpa); MiniCPM's remote code turns FA2 on "
          "whenever flash_attn imports, so uninstall flash-attn on V100/T4/20xx boxes"),
    _Rule("nccl_timeout", _rx(r"Watchdog caught collective operation timeout|NCCL.*timed? ?out|"
                              r"ProcessGroupNCCL.*Timeout\(ms\)"),
          "an NCCL collective timed out (GPUs stopped hearing each other)",
          "on GeForce / PCIe boxes set NCCL_P2P_DISABLE=1 in single_node.sh; single node: NCCL_IB_DISABLE=1; "
          "rerun with NCCL_DEBUG=INFO to see the transport"),
    _Rule("nccl_error", _rx(r"NCCL error|ncclUnhandledCudaError|ncclSystemError|ncclInternalError|"
                            r"ncclInvalidUsage|ncclRemoteError"),
          "NCCL failed between the GPUs",
          "if the log mentions peer access / P2P set NCCL_P2P_DISABLE=1; across nodes check "
          "NCCL_SOCKET_IFNAME and keep IB on when an active IB port exists; NCCL_DEBUG=INFO says more"),
    _Rule("disk_full", _rx(r"No space left on device|Errno 28|StorageFull|file write failed"),
          "the disk filled up (usually while saving a checkpoint)",
          "free space under output_dir (`df -h`), lower save_total_limit, or point output_dir at a "
          "larger disk, then `minicpm-tui run --resume`"),
    _Rule("bf16_unsupported", _rx(r"Your setup doesn't support bf16|bf16.*requires.*Ampere|"
                                  r"--bf16.*only supported on"),
          "this GPU cannot do bf16", "regenerate with --precision fp16 (pre-Ampere GPUs)", _refine_bf16),
    _Rule("host_oom_killer", _rx(r"Signal 9 \(SIGKILL\) received by PID|exitcode\s*:\s*-9|Killed\s*$"),
          "a training process was killed with SIGKILL (the host's OOM killer, most likely)",
          "the machine ran out of CPU RAM: check `dmesg | grep -i oom`, lower preprocessing_num_workers, "
          "or offload less to CPU"),
    _Rule("dataset_load", _rx(r"DatasetGenerationError|An error occurred while generating the dataset"),
          "the dataset file could not be read as a table (mixed types in a column)",
          "run `minicpm-tui validate DATA_FILE` to find the malformed record"),
    _Rule("missing_file", _rx(r"(?:FileNotFoundError|OSError): .*(?:No such file|does not appear to have a file "
                              r"named|is not a local folder)"),
          "a file or model folder the run needs is missing",
          "check model_name_or_path, dataset_dir and the paths in train.yaml"),
    _Rule("hparams_unknown", _rx(r"Some keys are not used by the HfArgumentParser|unexpected keyword argument"),
          "train.yaml has keys this LLaMA-Factory does not know",
          "regenerate with `minicpm-tui generate` (it checks each key against the installed version)"),
]


def _line_of(text: str, index: int) -> str:
    start = text.rfind("\n", 0, index) + 1
    end = text.find("\n", index)
    return text[start: end if end >= 0 else len(text)]


def diagnose_all(log_text: str, exit_code: int | None = None, *,
                 run_dir: str | os.PathLike[str] | None = None) -> list[Diagnosis]:
    """Every cause found, most specific first."""
    rd = Path(run_dir) if run_dir else None
    found: list[Diagnosis] = []
    for rule in RULES:
        match = rule.pattern.search(log_text)
        if match is None:
            continue
        if rule.refine is not None:  # a more precise diagnosis, or None for the rule's own
            diag = rule.refine(match, log_text, rd)
            if diag is not None:
                found.append(diag)
                continue
        evidence = _line_of(log_text, match.start()).strip()[:300]
        summary = rule.summary
        if rule.kind == "missing_template" and match.groups():
            summary = f"template {match.group(1)} is not registered in the installed LLaMA-Factory"
        found.append(Diagnosis(rule.kind, summary, rule.fix, evidence))
    if exit_code == 137 and not any(d.kind == "host_oom_killer" for d in found):
        found.append(Diagnosis("host_oom_killer", "the run was killed with SIGKILL (exit 137)",
                               "if nobody stopped it, the host's OOM killer did: check `dmesg | grep -i oom` "
                               "and lower CPU RAM use (offload, dataloader/preprocessing workers)"))
    return found


def diagnose(log_text: str, exit_code: int | None = None, *,
             run_dir: str | os.PathLike[str] | None = None) -> Diagnosis | None:
    """The most likely cause of a failed run, or None when nothing in the text is recognised.

    A failed run with no recognised cause still gets a generic diagnosis pointing at the log.
    """
    found = diagnose_all(log_text, exit_code, run_dir=run_dir)
    if found:
        return found[0]
    if exit_code not in (None, 0):
        last = _last_error_line(log_text)
        return Diagnosis("unknown", f"the run failed with exit code {exit_code}",
                         "read the end of the logs in RUN_DIR/logs (`minicpm-tui monitor RUN_DIR --once`)",
                         last)
    return None


def _last_error_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if re.search(r"Error|Exception|error:", line):
            return line.strip()[:300]
    return ""


def read_tail(path: str | os.PathLike[str] | None, limit: int = TAIL_BYTES) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def diagnose_run(run_dir: str | os.PathLike[str]) -> Diagnosis | None:
    """Diagnose the current attempt of a run directory from its logs and recorded exit code."""
    from minicpm_tui.core.runner import RunManifest

    run_dir = Path(run_dir).expanduser().resolve()
    manifest = RunManifest.load(run_dir)
    if manifest is None:
        return None
    text = read_tail(manifest.stderr_log) + "\n" + read_tail(manifest.stdout_log)
    return diagnose(text, manifest.exit_code, run_dir=run_dir)
