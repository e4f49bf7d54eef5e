"""The planner: a pure function from (hardware, model, choices) to a recommended training setup.

``plan(PlanRequest) -> PlanResult``. It enumerates DeepSpeed ZeRO stages and offload modes, finds for
each the largest micro-batch that fits the chosen GPUs with a safety margin, estimates the time each
would take, and recommends the fastest that fits. Precision, ``flash_attn`` and the NCCL/CUDA variables
come from the measured hardware (compute capability, P2P status, NVLink, InfiniBand ports), each with a
one-sentence reason that the run-directory writer copies into script comments.

``PlanResult.to_json()`` is the ``plan --json`` contract (issue 3): ``recommended``, ``alternatives``,
``suggestions`` (plus informational fields). Keep it stable; add fields freely. A suggestion's ``fits`` is
whether the configuration fits with everything its ``change`` names (other GPUs, a host with more RAM);
its ``detail`` then says what would run, else why it still does not fit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.estimator import (
    METHODS,
    PRECISIONS,
    STAGES,
    EstimateRequest,
    estimate,
    trainable_params,
)
from minicpm_tui.core.models import ModelArch, load_model
from minicpm_tui.core.probe import GpuInfo, HardwareProfile, load_hardware

DEFAULT_GLOBAL_BATCH = 32
MAX_MICRO_BATCH = 64
# accelerate's RTX 40xx rule: P2P over PCIe hangs on GeForce Ada with drivers before this one.
P2P_SAFE_DRIVER = (550, 40, 7)
UTILISATION = {"datacenter": 0.40, "consumer": 0.35, "old": 0.30}
# Dense 16-bit tensor-core peak per GPU, TFLOPS (vendor datasheets; fp32 accumulate for GeForce).
PEAK_TFLOPS: list[tuple[str, float]] = [
    ("gh200", 989), ("h200", 989), ("h100 pcie", 756), ("h100 nvl", 835), ("h100", 989), ("h800", 989),
    ("h20", 148), ("b200", 2250), ("b100", 1750), ("a100", 312), ("a800", 312), ("a40", 150),
    ("a30", 165), ("a10g", 70), ("a10", 125), ("l40s", 362), ("l40", 181), ("l4", 121),
    ("rtx 6000 ada", 364), ("rtx a6000", 155), ("rtx a5000", 111), ("rtx a4000", 77),
    ("rtx 5090", 210), ("rtx 4090", 165), ("rtx 4080", 97), ("rtx 4070", 58), ("rtx 3090 ti", 80),
    ("rtx 3090", 71), ("rtx 3080", 60), ("titan rtx", 130), ("rtx 2080 ti", 54), ("v100", 125),
    ("t4", 65), ("p100", 19),
]
# Candidate (ZeRO stage, offload), fastest first. ZeRO-1 is left out: in DeepSpeed it communicates as
# much as ZeRO-2 and keeps more memory, so it never wins.
CANDIDATES_MULTI = [(0, "none"), (2, "none"), (3, "none"), (2, "optimizer"), (3, "optimizer"),
                    (3, "optimizer+param")]
CANDIDATES_SINGLE = [(0, "none"), (2, "optimizer"), (3, "optimizer"), (3, "optimizer+param")]


@dataclass
class PlanRequest:
    """What to plan. ``None`` means "decide for me" (precision, ZeRO stage, micro-batch, GPUs...)."""

    model: str | ModelArch
    method: str = "full"
    stage: str = "sft"
    hardware: str | HardwareProfile | None = None  # preset name, saved-probe path, a profile, or None: probe
    gpus: int | None = None  # GPUs per node; None: every free visible GPU
    nodes: int | None = None
    cutoff_len: int = 2048
    micro_batch: int | None = None
    global_batch: int | None = None
    precision: str | None = None
    zero_stage: int | None = None
    offload: str | None = None
    gradient_checkpointing: bool = True
    lora_rank: int = 8
    lora_targets: list[str] | str | None = None
    quant_bits: int = 4
    train_tokens: int | None = None  # tokens per epoch as training sees them (dataset stats)
    num_samples: int | None = None
    epochs: float = 3.0
    utilisation: float | None = None  # share of peak FLOPS assumed; None: by GPU class


@dataclass
class PlanChoice:
    """One configuration with its per-GPU memory and why it was (not) chosen."""

    method: str
    zero_stage: int
    offload: str
    precision: str
    flash_attn: str
    nccl_env: dict[str, str]
    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    peak_gib_per_gpu: float
    cpu_ram_gib: float
    fits: bool
    terms: dict[str, float]
    reason: str
    nccl_reasons: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # zero_stage / precision / flash_attn / micro_batch
    deepspeed: bool = False
    gpus: int = 1
    nodes: int = 1
    gpu_indices: list[int] = field(default_factory=list)
    global_batch: int = 1
    cutoff_len: int = 2048
    budget_gib_per_gpu: float = 0.0
    lora_rank: int | None = None
    quant_bits: int | None = None
    trainable_params: int = 0
    time: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlanResult:
    recommended: PlanChoice
    alternatives: list[PlanChoice]
    suggestions: list[dict[str, Any]]
    hardware: dict[str, Any]
    model: dict[str, Any]
    request: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.recommended.fits

    def to_dict(self) -> dict[str, Any]:
        return {
            "recommended": self.recommended.to_dict(),
            "alternatives": [a.to_dict() for a in self.alternatives],
            "suggestions": self.suggestions,
            "hardware": self.hardware,
            "model": self.model,
            "request": self.request,
            "warnings": self.warnings,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


# -- hardware facts ------------------------------------------------------------------
def _driver_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(".")[:3])
    except ValueError:
        return None


def peak_tflops(gpu: GpuInfo) -> tuple[float, bool]:
    """Dense 16-bit peak of a GPU and whether it came from the table (False: a guess by architecture)."""
    name = (gpu.name or "").lower()
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value, True
    major = gpu.compute_capability[0] if gpu.compute_capability else 0
    return {7: 60.0, 8: 150.0, 9: 700.0, 10: 1500.0, 12: 200.0}.get(major, 50.0), False


def gpu_class(gpu: GpuInfo) -> str:
    if gpu.compute_capability and gpu.compute_capability[0] < 8:
        return "old"
    return "consumer" if gpu.geforce else "datacenter"


def choose_gpus(profile: HardwareProfile, wanted: int | None) -> tuple[list[GpuInfo], list[str]]:
    """Which GPUs to use: visible ones, free ones first. A busy GPU is not a free GPU."""
    notes: list[str] = []
    visible = profile.usable_gpus()
    if not visible:
        raise UserError("the hardware profile has no (visible) GPU", where="--hardware",
                        fix="plan for another machine with --hardware PRESET, or check CUDA_VISIBLE_DEVICES")
    free = [g for g in visible if not g.busy]
    busy = [g for g in visible if g.busy]
    if wanted is None:
        chosen = free or visible
        if busy and free:
            notes.append("left out busy GPU " + ", ".join(_busy_text(g) for g in busy))
        elif busy:
            notes.append("every GPU is busy; planning with the memory each has free")
    else:
        if wanted > len(visible):
            raise UserError(f"{wanted} GPUs asked for but the machine has {len(visible)} visible",
                            where="--gpus", fix=f"use --gpus {len(visible)} or fewer (or --nodes for more machines)",
                            fix_tui=f"set gpus to {len(visible)} or fewer, or plan for a machine with more GPUs "
                                    "(Hardware step)")
        chosen = (free + busy)[:wanted]
        if any(g.busy for g in chosen):
            notes.append("using busy GPU " + ", ".join(_busy_text(g) for g in chosen if g.busy))
    return sorted(chosen, key=lambda g: g.index), notes


def _busy_text(gpu: GpuInfo) -> str:
    held = sum(p.get("used_mib") or 0 for p in gpu.processes)
    pids = ",".join(str(p["pid"]) for p in gpu.processes[:3])
    return f"{gpu.index} ({len(gpu.processes)} process(es) {pids} hold {held / 1024:.1f} GiB)" if gpu.processes \
        else f"{gpu.index} ({gpu.utilization_pct}% busy)"


def gpu_budget_gib(gpus: list[GpuInfo]) -> tuple[float, float]:
    """(usable GiB per GPU after the safety margin, the margin): the smallest GPU decides.

    Both are rounded once, here, to the 0.01 GiB the JSON reports, so every sentence that prints them and
    every fit test uses the same number (a raw 75.149 printed 75.1 in one line and, rounded to 75.15
    first, 75.2 in the next).
    """
    avail = min((g.available_mib() or 0) for g in gpus) / 1024
    total = min((g.memory_total_mib or 0) for g in gpus) / 1024
    margin = max(0.75, 0.05 * total)
    return round(max(0.0, avail - margin), 2), round(margin, 2)


def gib_pair(value: float, limit: float) -> tuple[str, str]:
    """``value`` and ``limit`` as text, with one decimal unless that makes two different numbers look equal
    ("22.3 GiB > 22.3 GiB usable"): then with two."""
    a, b = f"{value:.1f}", f"{limit:.1f}"
    if a == b and value != limit:
        a, b = f"{value:.2f}", f"{limit:.2f}"
    return a, b


def ram_needed_text(gib: float) -> str:
    """CPU RAM a configuration needs, rounded up (a need is never shown below what it is)."""
    return f"{math.ceil(gib - 1e-9)} GiB"


def ram_have_text(gib: float) -> str:
    """CPU RAM a host has, rounded down: with :func:`ram_needed_text`, a need above what the host has
    always reads as a larger number."""
    return f"{math.floor(gib + 1e-9)} GiB"


def decide_precision(gpus: list[GpuInfo], requested: str | None) -> tuple[str, str]:
    old = [g for g in gpus if not g.bf16]
    if requested:
        if requested in ("bf16", "pure_bf16") and old:
            g = old[0]
            cc = ".".join(map(str, g.compute_capability)) if g.compute_capability else "unknown"
            raise UserError(f"{requested} needs compute capability >= 8.0 but GPU {g.index} ({g.name}) has {cc}",
                            where="--precision", fix="use fp16 (or let the planner choose)")
        return requested, f"{requested} as asked"
    if not old:
        return "bf16", "bf16: every chosen GPU is Ampere or newer (compute capability >= 8.0), so no loss scaling"
    g = old[0]
    cc = ".".join(map(str, g.compute_capability)) if g.compute_capability else "unknown"
    return "fp16", f"fp16: GPU {g.index} ({g.name}) has compute capability {cc} < 8.0, which has no bf16"


def decide_flash_attn(gpus: list[GpuInfo], arch: ModelArch) -> tuple[str, str]:
    old = [g for g in gpus if not g.bf16]
    if old:
        why = "sdpa: FlashAttention-2 needs Ampere or newer"
        if arch.remote_code:
            why += f", and {arch.name}'s remote code switches it on by itself whenever flash_attn imports"
        return "sdpa", why
    return "auto", "auto: Ampere or newer, LLaMA-Factory uses FlashAttention-2 when installed, else SDPA"


def decide_nccl(profile: HardwareProfile, gpus: list[GpuInfo], nodes: int,
                all_indices: list[int] | None = None) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """NCCL/CUDA variables from the measured topology (never from a name list alone), with reasons.

    Returns (env, reasons, notes). ``notes`` carries advice that is not a variable (e.g. run the P2P check).
    """
    env: dict[str, str] = {}
    why: dict[str, str] = {}
    notes: list[str] = []
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    why["CUDA_DEVICE_ORDER"] = ("number GPUs by PCI bus id as NVML and nvidia-smi do, so CUDA_VISIBLE_DEVICES "
                                "means the GPUs the probe showed")
    indices = [g.index for g in gpus]
    every = all_indices if all_indices is not None else [g.index for g in profile.gpus]
    if indices != sorted(every):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, indices))
        why["CUDA_VISIBLE_DEVICES"] = f"use GPU {', '.join(map(str, indices))} only (the others are busy or not asked for)"
    if len(gpus) > 1:
        pairs = profile.pairs(indices)
        nvlink_all = bool(pairs) and all(lk.nvlinks for lk in pairs)
        pcie_ok = [lk for lk in pairs if not lk.nvlinks and lk.p2p_ok]
        check = profile.p2p_check
        driver = _driver_tuple(profile.driver_version)
        geforce = any(g.geforce for g in gpus)
        if nvlink_all:
            notes.append("every GPU pair is NVLink-connected: NCCL's defaults are right, no P2P flags")
        elif check is not None and not check.get("ok", True):
            env["NCCL_P2P_DISABLE"] = "1"
            why["NCCL_P2P_DISABLE"] = ("the real peer-to-peer copy test failed or hung on this machine "
                                       f"({check.get('detail') or 'see probe --p2p-check'}), although the driver "
                                       "reports P2P; NCCL goes through host memory instead")
        elif pcie_ok and geforce and (driver is None or driver < P2P_SAFE_DRIVER) and not (check or {}).get("ok"):
            env["NCCL_P2P_DISABLE"] = "1"
            why["NCCL_P2P_DISABLE"] = (f"the driver ({profile.driver_version or 'unknown version'}) reports PCIe P2P "
                                       "as working between these GeForce cards, a combination known to hang NCCL "
                                       "(drivers before 550.40.07); `minicpm-tui probe --p2p-check` can prove it")
        elif pcie_ok and (geforce or profile.host.get("iommu")) and check is None:
            cause = "GeForce cards" if geforce else "the IOMMU is on (ACS may redirect P2P through the CPU)"
            notes.append(f"PCIe P2P is reported working but {cause}: run `minicpm-tui probe --p2p-check` "
                         "on the machine; if it fails, export NCCL_P2P_DISABLE=1")
        elif not pcie_ok and not any(lk.nvlinks for lk in pairs):
            notes.append("the driver reports no P2P between these GPUs: NCCL uses host memory by itself, "
                         "no flag needed")
    if nodes > 1:
        devices = profile.infiniband
        active = profile.active_ib_ports()
        if active:
            ports = ", ".join(f"{p['device']}:{p['port']}" for p in active[:4])
            notes.append(f"multi-node over InfiniBand/RoCE ({ports} ACTIVE): NCCL uses it; never set NCCL_IB_DISABLE")
        elif devices:
            env["NCCL_IB_DISABLE"] = "1"
            why["NCCL_IB_DISABLE"] = ("InfiniBand devices exist but no port is ACTIVE, so NCCL would try them and "
                                      "fail or hang; use TCP sockets (set NCCL_SOCKET_IFNAME to the cluster network)")
        else:
            notes.append("multi-node without InfiniBand: NCCL uses TCP sockets; set NCCL_SOCKET_IFNAME to the "
                         "interface the nodes share")
    return env, why, notes


# -- time ------------------------------------------------------------------------------
def flops_per_token(arch: ModelArch, method: str, stage: str, cutoff: int, checkpointing: bool,
                    freeze_layers: int = 2) -> float:
    """Training FLOPs per token: forward 2P, backward 4P (2P when only adapters train), recompute 2P."""
    p = arch.param_count()
    attn = 2 * arch.num_layers * cutoff * arch.num_heads * arch.head_dim  # causal QK^T and PV, forward
    fwd = 2 * p + attn
    if method == "full":
        bwd = 2 * fwd
    elif method == "freeze":
        bwd = 2 * fwd * min(freeze_layers, arch.num_layers) / arch.num_layers
    else:
        bwd = fwd  # activation gradients only; adapter weight gradients are tiny
    total = fwd + bwd + (fwd if checkpointing else 0)
    if stage in ("dpo", "kto"):
        total += fwd  # reference model forward
    if stage == "kto":
        total += 2 * fwd  # KL batch: policy and reference forward without gradient
    return total


def _bandwidths(profile: HardwareProfile, gpus: list[GpuInfo], nodes: int,
                p2p_disabled: bool = False) -> tuple[float, str]:
    """Effective bus bandwidth (bytes/s) of a collective across the chosen GPUs, and what it is."""
    if len(gpus) <= 1 and nodes <= 1:
        return math.inf, "one GPU"
    pairs = profile.pairs([g.index for g in gpus])
    if pairs and all(lk.nvlinks for lk in pairs):
        bw, what = 0.7 * min(lk.nvlinks for lk in pairs) * 25e9, "NVLink"
    elif pairs and all(lk.p2p_ok for lk in pairs) and not p2p_disabled:
        bw, what = 18e9, "PCIe P2P"
    elif pairs:
        worst = max((lk.topology or "SYS") for lk in pairs)  # lexical, only to detect SYS
        bw, what = (6e9 if worst == "SYS" else 9e9), "PCIe through host memory"
    else:
        bw, what = math.inf, "one GPU per node"
    if nodes > 1:
        active = profile.active_ib_ports()
        if active:
            gbit = 0.0
            for p in active:
                try:
                    gbit += float(str(p.get("rate") or "100").split()[0])
                except ValueError:
                    gbit += 100.0
            inter = 0.8 * gbit / 8 * 1e9 / max(1, len(gpus))
            what += " + InfiniBand"
        else:
            inter, what = 2.5e9 / max(1, len(gpus)), what + " + TCP (25 GbE assumed)"
        bw = min(bw, inter)
    return bw, what


def step_seconds(arch: ModelArch, req: PlanRequest, profile: HardwareProfile, gpus: list[GpuInfo],
                 nodes: int, zero: int, offload: str, mb: int, accum: int, precision: str) -> tuple[float, str]:
    """Seconds per optimizer step (compute at an assumed utilisation + communication + offload)."""
    n = len(gpus) * nodes
    slowest = min(gpus, key=lambda g: peak_tflops(g)[0])
    peak, _ = peak_tflops(slowest)
    if precision == "fp32":
        peak /= 8  # no tensor cores for fp32 matmuls by default (TF32 off in PyTorch)
    util = req.utilisation if req.utilisation else UTILISATION[gpu_class(slowest)]
    seq_factor = 2 if req.stage == "dpo" else 1
    tokens_micro = mb * req.cutoff_len * seq_factor
    util_eff = util * min(1.0, tokens_micro / 4096) ** 0.25  # tiny micro-batches under-use the GPU
    if req.method == "qlora":
        util_eff *= 0.7  # dequantisation on every matmul
    fpt = flops_per_token(arch, req.method, req.stage, req.cutoff_len, req.gradient_checkpointing)
    compute_micro = fpt * tokens_micro / (peak * 1e12 * util_eff)
    env, _, _ = decide_nccl(profile, gpus, nodes)
    bw, _ = _bandwidths(profile, gpus, nodes, p2p_disabled="NCCL_P2P_DISABLE" in env)
    t = trainable_params(EstimateRequest(arch=arch, method=req.method, lora_rank=req.lora_rank,
                                         lora_targets=req.lora_targets, quant_bits=req.quant_bits))
    p = arch.param_count()
    frac = (n - 1) / n if n > 1 else 0.0
    comm_micro = comm_step = 0.0
    if n > 1:
        if zero == 0:
            comm_step = 2 * 4 * t * frac / bw  # DDP all-reduce of fp32 grads once per step (no_sync)
        elif zero in (1, 2):
            comm_micro = 2 * t * frac / bw  # reduce-scatter every micro-step
            comm_step = 2 * t * frac / bw  # all-gather of updated params
        else:
            comm_micro = (2 * 2 * p + 2 * t) * frac / bw  # gather params fwd + bwd, reduce-scatter grads
    offload_step = 0.0
    if offload != "none":
        cores = profile.host.get("cpu_cores") or 16
        adam_rate = max(0.2e9, 0.03e9 * cores)  # DeepSpeed CPU-Adam, params per second per node
        offload_step = t / nodes / adam_rate + 4 * t / n / 12e9  # + grads down / params up over PCIe
        if offload == "optimizer+param":
            comm_micro += 2 * 2 * p / n / 12e9
    overlap = 0.5 if zero == 3 else 1.0  # ZeRO-3 prefetch overlaps part of the gathers with compute
    seconds = accum * (compute_micro + overlap * comm_micro) + comm_step + offload_step
    assumption = (f"{util:.0%} of the {peak:.0f} TFLOPS 16-bit peak of a {slowest.name}"
                  f"{'' if peak_tflops(slowest)[1] else ' (peak guessed from its architecture)'}")
    return seconds, assumption


def human_duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    hours, mins = divmod(minutes, 60)
    if hours < 48:
        return f"about {hours} h {mins} min" if mins else f"about {hours} h"
    return f"about {hours / 24:.1f} days"


# -- the plan ------------------------------------------------------------------------
def _validate(req: PlanRequest) -> None:
    if req.method not in METHODS:
        raise UserError(f"unknown method {req.method!r}", where="--method", fix=f"use one of {', '.join(METHODS)}")
    if req.stage not in STAGES:
        raise UserError(f"unknown stage {req.stage!r}", where="--stage", fix=f"use one of {', '.join(STAGES)}")
    if req.precision is not None and req.precision not in PRECISIONS:
        raise UserError(f"unknown precision {req.precision!r}", where="--precision",
                        fix=f"use one of {', '.join(PRECISIONS)}")
    for name in ("cutoff_len", "micro_batch", "global_batch", "gpus", "nodes", "lora_rank", "train_tokens",
                 "num_samples"):
        value = getattr(req, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"{value!r} must be a whole number >= 1", where=f"--{name.replace('_', '-')}")
    if req.cutoff_len > 1_048_576:
        raise UserError(f"{req.cutoff_len} tokens is not a plausible cutoff", where="--cutoff-len")
    if not (isinstance(req.epochs, (int, float)) and math.isfinite(req.epochs) and req.epochs > 0):
        raise UserError(f"{req.epochs!r} must be a finite number > 0", where="--epochs", fix="e.g. --epochs 3")
    if req.zero_stage is not None and req.zero_stage not in (0, 1, 2, 3):
        raise UserError(f"{req.zero_stage} is not a ZeRO stage", where="--zero-stage", fix="use 0, 1, 2 or 3")
    if req.offload is not None and req.offload not in ("none", "optimizer", "optimizer+param"):
        raise UserError(f"unknown offload {req.offload!r}", where="--offload",
                        fix="use none, optimizer or optimizer+param")
    if req.utilisation is not None and not 0.01 <= req.utilisation <= 1.0:
        raise UserError("must be between 0.01 and 1.0", where="--utilisation")


def _resolve_hardware(hw: str | HardwareProfile | None) -> HardwareProfile:
    if isinstance(hw, HardwareProfile):
        return hw
    if hw:
        profile = load_hardware(hw)
        if not profile.gpus:  # e.g. `probe --save` run on a machine without a GPU
            why = f" (it was probed where NVML said {profile.status})" if profile.status != "ok" else ""
            raise UserError(f"this hardware profile has no GPU{why}", where=f"--hardware {hw}",
                            fix="run `minicpm-tui probe --save FILE` on the GPU machine and plan with that file, "
                            "or use a preset (`minicpm-tui plan --list-hardware`)")
        return profile
    from minicpm_tui.core.probe import probe

    profile = probe()
    if not profile.gpus:
        raise UserError(f"no NVIDIA GPU here ({profile.status})", where="--hardware",
                        fix="plan for another machine: --hardware PRESET (see `minicpm-tui plan --list-hardware`) "
                        "or a file from `minicpm-tui probe --save` run there")
    return profile


def _candidates(req: PlanRequest, n_total: int) -> list[tuple[int, str]]:
    base = CANDIDATES_SINGLE if n_total == 1 else CANDIDATES_MULTI
    if req.precision == "pure_bf16":
        base = [(0, "none")]
    if req.method == "qlora" and req.quant_bits != 4:
        # LLaMA-Factory 0.9 (model/model_utils/quantization.py) loads a bitsandbytes base under
        # ZeRO-3 only in 4 bits ("Only 4-bit quantized model can use fsdp+qlora").
        if req.zero_stage == 3:
            raise UserError(f"LLaMA-Factory cannot load a {req.quant_bits}-bit QLoRA base under ZeRO-3",
                            where="--zero-stage", fix="use --quant-bits 4 with ZeRO-3, or --zero-stage 2")
        base = [(z, o) for z, o in base if z != 3]
    out = [(z, o) for z, o in base
           if (req.zero_stage is None or z == req.zero_stage) and (req.offload is None or o == req.offload)]
    if not out and req.zero_stage is not None:
        offload = req.offload or "none"
        if offload != "none" and req.zero_stage < 2:
            raise UserError("offload needs ZeRO stage 2 or 3", where="--offload")
        if offload == "optimizer+param" and req.zero_stage != 3:
            raise UserError("parameter offload needs ZeRO-3", where="--offload")
        out = [(req.zero_stage, offload)]
    return out


def plan(req: PlanRequest) -> PlanResult:
    """Recommend a configuration for ``req``. Raises :class:`UserError` for bad input."""
    _validate(req)
    arch = req.model if isinstance(req.model, ModelArch) else load_model(req.model)
    profile = _resolve_hardware(req.hardware)
    gpus, warnings = choose_gpus(profile, req.gpus)
    nodes = req.nodes or profile.nodes or 1
    n_total = len(gpus) * nodes
    if req.cutoff_len > arch.max_position:
        warnings.append(f"cutoff_len {req.cutoff_len} is longer than {arch.name}'s context ({arch.max_position})")
    precision, precision_why = decide_precision(gpus, req.precision)
    flash, flash_why = decide_flash_attn(gpus, arch)
    env, env_why, nccl_notes = decide_nccl(profile, gpus, nodes)
    budget, margin = gpu_budget_gib(gpus)
    ram = profile.host.get("ram_available_gib") or profile.host.get("ram_total_gib")
    global_batch = req.global_batch or DEFAULT_GLOBAL_BATCH
    if global_batch < n_total and req.global_batch:
        raise UserError(f"global batch {global_batch} is smaller than the {n_total} GPUs", where="--global-batch",
                        fix=f"use at least {n_total} (one sequence per GPU per step)")

    def evaluate(zero: int, offload: str, request: PlanRequest = req, budget: float = budget,
                 gpus: list[GpuInfo] = gpus, nodes: int = nodes) -> PlanChoice:
        common = {"arch": arch, "method": request.method, "stage": request.stage, "precision": precision,
                  "cutoff_len": request.cutoff_len, "gradient_checkpointing": request.gradient_checkpointing,
                  "attn": "sdpa", "lora_rank": request.lora_rank, "lora_targets": request.lora_targets,
                  "quant_bits": request.quant_bits}
        n = len(gpus) * nodes
        cap = request.micro_batch or max(1, min(MAX_MICRO_BATCH, (request.global_batch or DEFAULT_GLOBAL_BATCH) // n))
        sizes = [request.micro_batch] if request.micro_batch else [2**k for k in range(7) if 2**k <= cap]
        best = None
        for mb in sizes:
            est = estimate(EstimateRequest(**{**common, "zero_stage": zero, "offload": offload, "micro_batch": mb,
                                              "gpus": len(gpus), "nodes": nodes}))
            if best is None or est.peak_gib <= budget:
                best = (mb, est)
            if est.peak_gib > budget:
                break
        assert best is not None
        mb, est = best
        gb = request.global_batch or DEFAULT_GLOBAL_BATCH
        accum = max(1, math.ceil(gb / (mb * n)))
        fits_gpu = est.peak_gib <= budget
        fits_ram = ram is None or est.cpu_ram_gib <= ram
        secs, assumption = step_seconds(arch, request, profile, gpus, nodes, zero, offload, mb, accum, precision)
        tokens_step = mb * accum * n * request.cutoff_len * (2 if request.stage == "dpo" else 1)
        choice = PlanChoice(
            method=request.method, zero_stage=zero, offload=offload, precision=precision, flash_attn=flash,
            nccl_env=dict(env), micro_batch=mb, grad_accum=accum,
            gradient_checkpointing=request.gradient_checkpointing, peak_gib_per_gpu=round(est.peak_gib, 2),
            cpu_ram_gib=round(est.cpu_ram_gib, 1), fits=fits_gpu and fits_ram, terms=est.terms_gib(), reason="",
            nccl_reasons=dict(env_why), deepspeed=zero > 0, gpus=len(gpus), nodes=nodes,
            gpu_indices=[g.index for g in gpus], global_batch=mb * accum * n, cutoff_len=request.cutoff_len,
            budget_gib_per_gpu=round(budget, 2), lora_rank=request.lora_rank if request.method in ("lora", "qlora")
            else None, quant_bits=request.quant_bits if request.method == "qlora" else None,
            trainable_params=est.trainable_params, notes=list(est.notes))
        choice.time = _time(request, secs, tokens_step, assumption, n)
        choice.reasons = {"precision": precision_why, "flash_attn": flash_why}
        if not fits_gpu:
            peak_text, budget_text = gib_pair(est.peak_gib, budget)
            choice.reasons["fit"] = (f"does not fit: {peak_text} GiB per GPU at micro-batch {mb} > "
                                     f"{budget_text} GiB usable ({margin:.1f} GiB kept free)")
        elif not fits_ram:
            assert ram is not None
            choice.reasons["fit"] = (f"needs {ram_needed_text(est.cpu_ram_gib)} of CPU RAM per node for offload; "
                                     f"the host has {ram_have_text(ram)} available")
        return choice

    options = [evaluate(z, o) for z, o in _candidates(req, n_total)]
    fitting = [c for c in options if c.fits]
    if fitting:
        # Candidates are listed simplest first; a more complex one must be clearly (>10%) faster to win,
        # so DeepSpeed is used only where it helps.
        best = fitting[0]
        for c in fitting[1:]:
            if c.time["seconds_per_token"] < 0.9 * best.time["seconds_per_token"]:
                best = c
    else:
        best = min(options, key=lambda c: (c.peak_gib_per_gpu, c.cpu_ram_gib))
    _explain(best, fitting, options, budget, n_total, ram)
    for note in nccl_notes:
        best.notes.append(note)
    alternatives = []
    for c in options:
        if c is best:
            continue
        c.reason = _why_not(c, best)
        alternatives.append(c)
    suggestions = [] if best.fits else _suggest(req, arch, profile, gpus, nodes, evaluate, budget, ram)
    hardware = {"name": profile.name or profile.summary(), "source": profile.source, "status": profile.status,
                "gpus": [g.index for g in gpus], "gpu_name": gpus[0].name, "nodes": nodes,
                "usable_gib_per_gpu": round(budget, 2), "safety_margin_gib": round(margin, 2),
                "cpu_ram_available_gib": ram, "interconnect": _bandwidths(profile, gpus, nodes, "NCCL_P2P_DISABLE" in env)[1]}
    model = {"name": arch.name, "hub_id": arch.hub_id, "params": arch.param_count(), "attention": arch.attention,
             "chat_format": arch.chat_format, "remote_code": arch.remote_code}
    request = {k: v for k, v in asdict(replace(req, model=arch.name, hardware=None)).items()}
    request["hardware"] = profile.source
    return PlanResult(recommended=best, alternatives=alternatives, suggestions=suggestions, hardware=hardware,
                      model=model, request=request, warnings=warnings)


def _time(req: PlanRequest, step_s: float, tokens_step: int, assumption: str, n: int) -> dict[str, Any]:
    per_token = step_s / max(1, tokens_step)
    tokens = req.train_tokens
    if tokens is None and req.num_samples:
        tokens = req.num_samples * req.cutoff_len * (2 if req.stage == "dpo" else 1)
    out: dict[str, Any] = {"seconds_per_step": round(step_s, 3), "tokens_per_step": tokens_step,
                           "tokens_per_s": round(1 / per_token) if per_token else None,
                           "seconds_per_token": per_token, "assumption": assumption,
                           "tokens": None, "seconds": None, "human": None}
    if tokens:
        total_tokens = tokens * req.epochs
        seconds = total_tokens * per_token
        out.update(tokens=int(total_tokens), seconds=round(seconds), human=human_duration(seconds))
        if req.train_tokens is None:
            out["assumption"] += "; every sample assumed to fill cutoff_len (no dataset stats given)"
    else:
        out["human"] = f"{human_duration(1e6 * per_token)} per million tokens"
    return out


def _label(c: PlanChoice) -> str:
    text = "no DeepSpeed (DDP)" if c.zero_stage == 0 and c.gpus * c.nodes > 1 else (
        "no DeepSpeed" if c.zero_stage == 0 else f"ZeRO-{c.zero_stage}")
    if c.offload != "none":
        text += f" + {c.offload} offload"
    return text


def _explain(best: PlanChoice, fitting: list[PlanChoice], options: list[PlanChoice], budget: float, n: int,
             ram: float | None = None) -> None:
    label = _label(best)
    if not best.fits:
        peak_text, budget_text = gib_pair(best.peak_gib_per_gpu, budget)
        if best.peak_gib_per_gpu > budget:
            why = f"needs {peak_text} GiB per GPU against {budget_text} GiB usable"
        else:  # the GPUs would do; the host RAM its offload takes is short
            have = ram_have_text(ram) if ram is not None else "unknown"
            why = (f"fits the GPUs ({peak_text} of {budget_text} GiB usable) but needs "
                   f"{ram_needed_text(best.cpu_ram_gib)} of CPU RAM per node (the host has {have})")
        best.reason = f"nothing fits: the smallest option, {label}, {why}; see suggestions"
        best.reasons["zero_stage"] = best.reason
        return
    faster = [c for c in options if c.zero_stage < best.zero_stage or (c.zero_stage == best.zero_stage and
                                                                      c.offload == "none" != best.offload)]
    lead = f"{label} with micro-batch {best.micro_batch} is the fastest option that fits"
    if faster and not any(c.fits for c in faster):
        lead = f"{label} with micro-batch {best.micro_batch} is the fastest option that fits, because " + \
            "; ".join(f"{_label(c)} needs {c.peak_gib_per_gpu:.1f} GiB" for c in faster[:2])
    best.reason = (f"{lead}: {best.peak_gib_per_gpu:.1f} of {budget:.1f} GiB usable per GPU"
                   f"{', ' + best.time['human'] if best.time.get('seconds') else ''}.")
    best.reasons["zero_stage"] = best.reason
    best.reasons["micro_batch"] = (f"micro-batch {best.micro_batch} x {best.grad_accum} accumulation x {n} GPU(s) "
                                   f"= global batch {best.global_batch}")


def _why_not(c: PlanChoice, best: PlanChoice) -> str:
    if not c.fits:
        return f"{_label(c)}: {c.reasons.get('fit', 'does not fit')}"
    ratio = c.time["seconds_per_token"] / best.time["seconds_per_token"] if best.time["seconds_per_token"] else 1
    return (f"{_label(c)} fits ({c.peak_gib_per_gpu:.1f} GiB, micro-batch {c.micro_batch}) but is estimated "
            f"{ratio:.1f}x slower" if ratio > 1.05 else
            f"{_label(c)} fits ({c.peak_gib_per_gpu:.1f} GiB) at about the same speed; the simpler/lower-memory "
            "option was preferred")


def _suggest(req: PlanRequest, arch: ModelArch, profile: HardwareProfile, gpus: list[GpuInfo], nodes: int,
             evaluate: Any, budget: float, ram: float | None) -> list[dict[str, Any]]:
    """What would make it fit, each with its estimated peak."""
    out: list[dict[str, Any]] = []

    def best_of(request: PlanRequest, g: list[GpuInfo] = gpus, nd: int = nodes) -> PlanChoice:
        n = len(g) * nd
        choices = [evaluate(z, o, request=request, gpus=g, nodes=nd) for z, o in _candidates(request, n)]
        fit = [c for c in choices if c.fits]
        if fit:
            return min(fit, key=lambda c: c.time["seconds_per_token"])
        return min(choices, key=lambda c: c.peak_gib_per_gpu)

    def add(change: str, c: PlanChoice, fits: bool | None = None, **extra: Any) -> None:
        # `fits`: the configuration fits with everything `change` names (another machine's GPUs or host RAM
        # included). A suggestion that fits says what it is; one that does not says why, and is no way out.
        ok = c.fits if fits is None else fits
        out.append({"change": change, "fits": ok, "peak_gib_per_gpu": c.peak_gib_per_gpu,
                    "cpu_ram_gib": c.cpu_ram_gib, "zero_stage": c.zero_stage, "offload": c.offload,
                    "micro_batch": c.micro_batch,
                    "detail": _fitting_detail(c) if ok else c.reasons.get("fit") or _label(c), **extra})

    free = replace(req, zero_stage=None, offload=None)
    if req.method in ("full", "freeze"):
        add("--method lora", best_of(replace(free, method="lora")))
    if req.method != "qlora":
        add("--method qlora (4-bit)", best_of(replace(free, method="qlora", quant_bits=4)))
    cutoff = req.cutoff_len // 2
    while cutoff >= 128:
        c = best_of(replace(free, cutoff_len=cutoff))
        if c.fits:
            add(f"--cutoff-len {cutoff}", c)
            break
        cutoff //= 2
    if req.micro_batch and req.micro_batch > 1:
        add("--micro-batch 1", best_of(replace(free, micro_batch=1)))
    # More GPUs of the same kind (more nodes when the box is full), on hosts like this one when that is
    # enough; else the fewest GPUs that fit, with the host RAM per node their offload takes.
    per_node = len(profile.usable_gpus())
    gpu_only: tuple[str, PlanChoice] | None = None
    for total in (2, 4, 8, 16, 32, 64):
        if total <= len(gpus) * nodes:
            continue
        g_node = min(total, max(per_node, 8))
        nd = max(1, total // g_node)
        fake = [replace(gpus[0], index=i) for i in range(g_node)]
        request = replace(free, gpus=None, nodes=nd)
        choices = [evaluate(z, o, request=request, gpus=fake, nodes=nd) for z, o in _candidates(request, total)]
        on_gpu = [c for c in choices if c.peak_gib_per_gpu <= budget]
        name = f"{total} GPUs like these" + (f" ({nd} nodes)" if nd > 1 else "")
        here = [c for c in on_gpu if c.fits]  # the host RAM of this machine is enough for it
        if here:
            c = min(here, key=lambda x: x.time["seconds_per_token"])
            add(name, c, ram_needed_gib=c.cpu_ram_gib)
            gpu_only = None
            break
        if on_gpu and gpu_only is None:
            gpu_only = (name, min(on_gpu, key=lambda x: (x.cpu_ram_gib, x.time["seconds_per_token"])))
    if gpu_only is not None:
        name, c = gpu_only
        per = " per node" if c.nodes > 1 else ""
        add(f"{name} on a host with {ram_needed_text(c.cpu_ram_gib)} of free RAM{per} for {_label(c)}", c,
            fits=True, ram_needed_gib=c.cpu_ram_gib, ram_available_gib=ram)
    # Offload that fits the GPUs but not the host RAM: say how much RAM it takes.
    if req.offload != "none":
        for z, o in ((3, "optimizer"), (3, "optimizer+param")):
            if req.zero_stage not in (None, 3):
                break
            c = evaluate(z, o)
            if c.peak_gib_per_gpu <= budget:
                if c.fits:  # the RAM is there: only the asked-for stage/offload kept it out
                    add(f"--zero-stage 3 --offload {o}", c)
                else:
                    have = ram_have_text(ram) if ram is not None else "unknown"
                    add(f"a host with {ram_needed_text(c.cpu_ram_gib)} of free RAM for ZeRO-3 {o} offload "
                        f"(this one has {have})", c, fits=True, ram_needed_gib=c.cpu_ram_gib,
                        ram_available_gib=ram)
                break
    return out


def _fitting_detail(c: PlanChoice) -> str:
    """What a suggestion that fits would run: its ZeRO/offload, micro-batch and, with offload, its RAM."""
    text = f"{_label(c)}, micro-batch {c.micro_batch}"
    if c.offload != "none":
        text += f", {ram_needed_text(c.cpu_ram_gib)} of CPU RAM per node"
    return text


def plan_matrix(models: list[str], hardware: list[str], methods: list[str], stages: list[str],
                **kw: Any) -> list[PlanResult]:
    """Plans for every combination (the benchmark and the `plan --json` contract tests use it)."""
    return [plan(PlanRequest(model=m, hardware=h, method=me, stage=s, **kw))
            for h in hardware for m in models for me in methods for s in stages]
