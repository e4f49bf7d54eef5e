"""Per-GPU training memory, broken into named terms, from first principles.

Sources for the arithmetic (see also shared knowledge "memory-and-nccl"):
- Model states: the ZeRO paper (Rajbhandari et al. 2020) and DeepSpeed's own estimators
  (``estimate_zero2_model_states_mem_needs`` / ``estimate_zero3_model_states_mem_needs`` in
  deepspeed/runtime/zero/stage_1_and_2.py and stage3.py): ZeRO-2 = 2P + 18P/N bytes, ZeRO-3 =
  4 x largest layer + 18P/N, offload moves the 16-18P part to CPU RAM (x1.5 buffer factor).
- LLaMA-Factory specifics: outside ZeRO-3 it upcasts trainable parameters to fp32 (model/adapter.py),
  its DeepSpeed z2 config uses 5e8-element reduce/allgather buckets, ZeRO-3 caps live parameters at 1e9.
- Activations: Korthikanti et al. 2022 itemised for a Llama/MiniCPM block (RMSNorm upcasts to fp32,
  SwiGLU MLP with the real intermediate size, GQA k/v expanded to all heads for SDPA); eager attention
  adds the a*s^2 score matrices; gradient checkpointing keeps one layer input per layer plus one layer
  in flight.
- Logits: b*s*V, upcast to fp32 for the loss; at the start of backward the fp32 log-softmax output,
  its incoming gradient and the outgoing gradient are alive together (12 bytes per logit).

All byte counts are per GPU. The estimate is deliberately a little pessimistic (it is used to say "fits").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from minicpm_tui.core.errors import UserError
from minicpm_tui.core.models import ModelArch

GIB = 1024**3
METHODS = ("full", "freeze", "lora", "qlora")
STAGES = ("sft", "pt", "dpo", "kto")
PRECISIONS = ("bf16", "fp16", "fp32", "pure_bf16")
OFFLOADS = ("none", "optimizer", "optimizer+param")
ATTN_KERNELS = ("sdpa", "fa2", "eager")

# LLaMA-Factory's shipped DeepSpeed configs (webui/common.py create_ds_config).
Z2_BUCKET_ELEMS = 5e8
Z3_MAX_LIVE_ELEMS = 1e9
DS_CPU_BUFFER_FACTOR = 1.5  # DeepSpeed estimators' additional_buffer_factor
CUDA_CONTEXT_GIB = 0.6  # CUDA context + cuBLAS/cuDNN workspaces, outside PyTorch's allocator
NCCL_BUFFERS_GIB = 0.4  # NCCL channels' buffers when there are peers
FRAGMENTATION = 0.05  # allocator slack, share of everything else


@dataclass
class EstimateRequest:
    """What to estimate. ``gpus`` is GPUs per node; data parallelism spans ``gpus * nodes``."""

    arch: ModelArch
    method: str = "full"
    stage: str = "sft"
    precision: str = "bf16"
    zero_stage: int = 0
    offload: str = "none"
    gpus: int = 1
    nodes: int = 1
    micro_batch: int = 1
    cutoff_len: int = 2048
    gradient_checkpointing: bool = True
    attn: str = "sdpa"
    lora_rank: int = 8
    lora_targets: list[str] | str | None = None  # None / "all": every linear of a block
    quant_bits: int = 4  # qlora only
    freeze_trainable_layers: int = 2  # LLaMA-Factory's default for method=freeze

    def validate(self) -> None:
        checks = [
            ("method", self.method, METHODS), ("stage", self.stage, STAGES),
            ("precision", self.precision, PRECISIONS), ("offload", self.offload, OFFLOADS),
            ("attn", self.attn, ATTN_KERNELS),
        ]
        for name, value, allowed in checks:
            if value not in allowed:
                raise UserError(f"{value!r} is not one of {', '.join(allowed)}", where=f"--{name.replace('_', '-')}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise UserError(f"{self.zero_stage} is not a ZeRO stage", where="--zero-stage", fix="use 0, 1, 2 or 3")
        for name in ("gpus", "nodes", "micro_batch", "cutoff_len", "lora_rank"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{value!r} must be a whole number >= 1", where=f"--{name.replace('_', '-')}")
        if self.method == "qlora" and self.quant_bits not in (4, 8):
            raise UserError(f"{self.quant_bits} is not a QLoRA bit width", where="--quant-bits", fix="use 4 or 8")
        if self.offload != "none" and self.zero_stage < 2:
            raise UserError("offload needs ZeRO stage 2 or 3", where="--offload")
        if self.offload == "optimizer+param" and self.zero_stage != 3:
            raise UserError("parameter offload needs ZeRO-3", where="--offload")


@dataclass
class Estimate:
    """Per-GPU peak (bytes, by term), CPU RAM per node, and the notes behind them."""

    terms: dict[str, float]
    cpu_ram_bytes: float
    trainable_params: int
    notes: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> float:
        return sum(self.terms.values())

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB

    @property
    def cpu_ram_gib(self) -> float:
        return self.cpu_ram_bytes / GIB

    def terms_gib(self, digits: int = 2) -> dict[str, float]:
        return {k: round(v / GIB, digits) for k, v in self.terms.items() if v > 0}

    def to_dict(self) -> dict[str, Any]:
        return {"peak_gib": round(self.peak_gib, 2), "cpu_ram_gib": round(self.cpu_ram_gib, 1),
                "trainable_params": self.trainable_params, "terms": self.terms_gib(), "notes": self.notes}


def trainable_params(req: EstimateRequest) -> int:
    arch = req.arch
    if req.method == "full":
        return arch.param_count()
    if req.method == "freeze":
        return min(req.freeze_trainable_layers, arch.num_layers) * arch.layer_params()
    return arch.lora_params(req.lora_rank, req.lora_targets)


def _act_bytes_per_element(precision: str) -> int:
    return 4 if precision == "fp32" else 2


def layer_activation_bytes(arch: ModelArch, tokens: int, seq: int, batch: int, attn: str, elem: int) -> float:
    """Saved activations of one decoder block for ``tokens = batch * seq`` tokens (no checkpointing).

    In units of ``tokens * hidden``: 2 RMSNorms x (fp32 copy 4 + normalised 2 bytes) = 12; attention:
    q/k/v input 1, q 1, k and v expanded to all heads 2, attention output 1, o_proj input 1 (x elem);
    MLP: gate/up input 1 and gate, SiLU(gate), up, product at the intermediate width 4 (x elem).
    """
    h, inter = arch.hidden_size, arch.intermediate_size
    q_width = arch.num_heads * (arch.mla.qk_nope_head_dim + arch.mla.qk_rope_head_dim) if arch.mla else h
    kv_width = arch.num_heads * arch.head_dim  # GQA heads expanded (repeat_kv) before SDPA
    norms = 2 * (4 + elem) * tokens * h
    attn_bytes = elem * tokens * (h + q_width + 2 * kv_width + arch.num_heads * arch.head_dim + h)
    if arch.mla:
        m = arch.mla
        # low-rank latents and their norms are kept for backward as well
        attn_bytes += elem * tokens * (2 * m.q_lora_rank + 2 * (m.kv_lora_rank + m.qk_rope_head_dim))
    mlp = elem * tokens * (h + 4 * inter)
    if attn == "eager":
        # fp32 softmax output + 16-bit probabilities, a x s x s per sequence
        attn_bytes += (4 + elem) * batch * arch.num_heads * seq * seq
    else:
        attn_bytes += 4 * batch * arch.num_heads * seq  # log-sum-exp kept by flash/SDPA kernels
    return norms + attn_bytes + mlp


def estimate(req: EstimateRequest) -> Estimate:
    """Estimate one configuration. Raises :class:`UserError` for impossible combinations."""
    req.validate()
    arch = req.arch
    n = req.gpus * req.nodes
    p_total = arch.param_count()
    t = trainable_params(req)
    notes: list[str] = []
    terms: dict[str, float] = {}
    elem = _act_bytes_per_element(req.precision)
    z = req.zero_stage
    offload_opt = req.offload in ("optimizer", "optimizer+param")
    offload_param = req.offload == "optimizer+param"
    adapter = req.method in ("lora", "qlora")

    # -- weights ---------------------------------------------------------------
    w_bytes = 4 if req.precision == "fp32" else 2
    if req.method == "qlora":
        linear_params = arch.num_layers * sum(a * b for a, b in arch.linears().values())
        other = p_total - linear_params
        # nf4 = 0.5 byte + double-quantised constants (~0.127 bit/param); int8 = 1 byte + row scales
        per_q = 0.5 + 0.127 / 8 if req.quant_bits == 4 else 1.0 + 0.01
        base = linear_params * per_q + other * 2
        notes.append(f"QLoRA {req.quant_bits}-bit: linear layers quantised, embeddings/norms in 16-bit")
    else:
        base = (p_total - (0 if adapter else t)) * w_bytes if req.method != "full" else 0
    if z == 3:
        base = 0 if offload_param else base / n
    terms["weights"] = base

    # -- trainable states: weights (if trained), gradients, optimizer --------------
    master = req.precision != "pure_bf16"
    if req.precision == "pure_bf16":
        # 16-bit weights, 16-bit grads, 16-bit Adam m and v (LLaMA-Factory pure_bf16)
        tw, tg, to = 2 * t, 2 * t, 4 * t
    elif z == 0:
        # LLaMA-Factory upcasts trainable params to fp32 outside ZeRO-3: fp32 weight, grad, Adam m+v
        tw, tg, to = 4 * t, 4 * t, 8 * t
        if req.precision != "fp32":
            terms["autocast_weight_copies"] = 2 * t  # 16-bit casts kept by autograd for backward
        if n > 1:
            terms["ddp_grad_buckets"] = 4 * t  # DDP's flat gradient buckets (not bucket views)
    elif z == 1:
        tw, tg, to = 2 * t, 2 * t, 16 * t / n  # fp32 master + m + v + fp32 grad partition
    elif z == 2:
        tw, tg, to = 2 * t, 2 * t / n, 16 * t / n  # DeepSpeed: 2P + 18P/N
    else:
        tw, tg, to = 2 * t / n, 2 * t / n, 14 * t / n  # 18P/N in all
    if offload_opt and z >= 2:
        to = 0.0
        if z == 2:
            tg = 2 * t / n
    if offload_param:
        tw = 0.0
    terms["trainable_weights"] = tw
    terms["gradients"] = tg
    terms["optimizer_states"] = to
    if not master and z > 0:
        notes.append("pure_bf16 with DeepSpeed still keeps fp32 master weights in the optimizer")

    # -- DeepSpeed buffers ---------------------------------------------------------
    if z in (1, 2):
        terms["ds_buckets"] = min(Z2_BUCKET_ELEMS, t) * 2  # contiguous reduce (ipg) bucket, 16-bit
    elif z == 3:
        live = min(Z3_MAX_LIVE_ELEMS, 2 * arch.largest_layer_params())
        terms["zero3_live_params"] = live * 2 + 2 * min(arch.largest_layer_params(), t)  # params + grads in flight

    # -- reference model for preference stages --------------------------------------
    preference = req.stage in ("dpo", "kto")
    if preference and not adapter:
        ref = p_total * 2
        terms["reference_model"] = ref / n if z == 3 else ref
        notes.append("full-parameter DPO/KTO keeps a frozen 16-bit reference model")
    elif preference:
        notes.append("LoRA DPO/KTO uses the base model (adapters off) as reference: no copy")

    # -- activations -----------------------------------------------------------------
    batch = req.micro_batch * (2 if req.stage == "dpo" else 1)  # DPO: chosen + rejected together
    seq = req.cutoff_len
    tokens = batch * seq
    layers_with_grad = arch.num_layers
    if req.method == "freeze":
        layers_with_grad = min(req.freeze_trainable_layers, arch.num_layers)
    one_layer = layer_activation_bytes(arch, tokens, seq, batch, req.attn, elem)
    logits_elems = tokens * arch.vocab_size
    logits = 12 * logits_elems  # fp32 log-softmax output + its grad in + grad out
    if preference:
        logits += 6 * logits_elems  # reference forward (no grad): 16-bit logits + fp32 log-probs
    if req.gradient_checkpointing:
        kept = elem * tokens * arch.hidden_size * layers_with_grad
        terms["activations"] = kept + one_layer
        # the layer being recomputed and the loss buffers are not alive at the same time
        terms["logits_loss"] = max(0.0, logits - one_layer)
    else:
        terms["activations"] = one_layer * layers_with_grad
        terms["logits_loss"] = logits
    if req.method == "qlora":
        biggest = max(a * b for a, b in arch.linears().values())
        terms["dequant_buffer"] = biggest * 2

    # -- fixed overheads ---------------------------------------------------------------
    terms["cuda_context"] = CUDA_CONTEXT_GIB * GIB + (NCCL_BUFFERS_GIB * GIB if n > 1 else 0)
    terms["fragmentation"] = FRAGMENTATION * sum(terms.values())

    # -- CPU RAM per node (DeepSpeed estimators, x1.5 buffer factor) ---------------------
    per_node = req.gpus
    if offload_param:
        cpu = t * 18 / req.nodes * DS_CPU_BUFFER_FACTOR
        if adapter or req.method == "freeze":
            cpu += (p_total * 2) / req.nodes  # frozen 16-bit params offloaded too
    elif offload_opt and z == 3:
        cpu = t * 16 / req.nodes * DS_CPU_BUFFER_FACTOR
    elif offload_opt:
        cpu = t * max(4 * per_node, 16) * DS_CPU_BUFFER_FACTOR
    else:
        cpu = 0.0
    # Every rank loads the 16-bit checkpoint through CPU RAM (ZeRO-3 zero.Init: one copy at a time).
    load = p_total * 2 * (1 if z == 3 else per_node)
    cpu_ram = max(cpu, load) + per_node * 2 * GIB  # + ~2 GiB per worker process (Python, CUDA, dataloader)
    if offload_opt:
        notes.append(f"offload keeps optimizer state in pinned CPU RAM: {cpu / GIB:.0f} GiB per node")
    return Estimate(terms=terms, cpu_ram_bytes=cpu_ram, trainable_params=t, notes=notes)


def model_states_bytes(est: Estimate) -> float:
    """Weights + gradients + optimizer states (what DeepSpeed's own estimators count)."""
    keys = ("weights", "trainable_weights", "gradients", "optimizer_states")
    return sum(est.terms.get(k, 0.0) for k in keys)


def human_gib(value: float) -> str:
    return f"{value:.1f} GiB" if value < 100 else f"{math.ceil(value)} GiB"
