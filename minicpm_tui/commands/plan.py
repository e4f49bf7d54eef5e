"""`minicpm-tui plan`: ZeRO stage, offload, precision, NCCL flags and batch sizes, with the memory behind them."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minicpm_tui.core.planner import PlanChoice, PlanResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="preset name (MiniCPM4-8B...), a checkpoint folder or its config.json")
    parser.add_argument("--method", default="full", metavar="{full,freeze,lora,qlora}",
                        help="training method (default full); freeze is estimated only: generate writes full, lora, qlora")
    parser.add_argument("--stage", default="sft", metavar="{sft,pt,dpo,kto}",
                        help="training stage (default sft); pt is estimated only: generate writes sft, dpo, kto")
    parser.add_argument("--cutoff-len", type=int, default=2048, help="tokens per sequence (default 2048)")
    parser.add_argument("--micro-batch", type=int, help="per-GPU batch (default: the largest that fits)")
    parser.add_argument("--global-batch", type=int, help="sequences per optimizer step (default 32)")
    parser.add_argument("--hardware", metavar="PRESET_OR_FILE", help="preset name or a file from `probe --save` (default: probe this machine)")
    parser.add_argument("--gpus", type=int, help="GPUs per node (default: every free visible GPU)")
    parser.add_argument("--nodes", type=int, help="machines (default 1)")
    parser.add_argument("--precision", help="bf16 | fp16 | fp32 | pure_bf16 (default: from the GPUs)")
    parser.add_argument("--zero-stage", type=int, help="force a ZeRO stage 0-3")
    parser.add_argument("--offload", help="force none | optimizer | optimizer+param")
    parser.add_argument("--no-gradient-checkpointing", action="store_true",
                        help="plan without gradient checkpointing (LLaMA-Factory turns it on by default)")
    parser.add_argument("--lora-rank", type=int, default=8, help="LoRA rank (default 8)")
    parser.add_argument("--lora-target", default=None, help="comma-separated layer names or 'all' (default all)")
    parser.add_argument("--quant-bits", type=int, default=4, help="QLoRA bit width 4 or 8 (default 4)")
    parser.add_argument("--train-tokens", type=int, help="tokens per epoch (from `validate` stats) for the time estimate")
    parser.add_argument("--num-samples", type=int, help="samples per epoch (if tokens are unknown)")
    parser.add_argument("--epochs", type=float, default=3.0, help="epochs, for the time estimate (default 3)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON (a stable contract)")
    parser.add_argument("--list-models", action="store_true", help="list the model presets and exit")
    parser.add_argument("--list-hardware", action="store_true", help="list the hardware presets and exit")


def _choice_lines(c: PlanChoice) -> list[str]:
    lines = [f"  {c.reason}"]
    lines.append(f"  method {c.method}, ZeRO-{c.zero_stage}{'' if c.deepspeed else ' (no DeepSpeed)'}, offload "
                 f"{c.offload}, precision {c.precision}, flash_attn {c.flash_attn}")
    lines.append(f"  micro-batch {c.micro_batch} x grad-accum {c.grad_accum} x {c.gpus * c.nodes} GPU(s) = "
                 f"{c.global_batch}; gradient checkpointing {'on' if c.gradient_checkpointing else 'off'}")
    lines.append(f"  peak {c.peak_gib_per_gpu:.1f} GiB per GPU of {c.budget_gib_per_gpu:.1f} usable; "
                 f"CPU RAM {c.cpu_ram_gib:.0f} GiB per node")
    lines.append("  per GPU: " + ", ".join(f"{k} {v:.2f}" for k, v in c.terms.items()))
    for key in ("precision", "flash_attn"):
        if key in c.reasons:
            lines.append(f"  {key}: {c.reasons[key]}")
    for var, value in c.nccl_env.items():
        lines.append(f"  export {var}={value}  # {c.nccl_reasons.get(var, '')}")
    t = c.time
    if t.get("human"):
        lines.append(f"  time: {t['human']} ({t.get('tokens_per_s')} tokens/s; {t['assumption']})")
    for note in c.notes:
        lines.append(f"  note: {note}")
    return lines


def render(result: PlanResult) -> str:
    c = result.recommended
    hw = result.hardware
    lines = [f"{result.model['name']} ({result.model['params'] / 1e9:.2f}B) {c.method} {result.request['stage']} "
             f"on {hw['name']} (GPU {','.join(map(str, hw['gpus']))}, {hw['interconnect']})"]
    lines.append("Recommended:" if c.fits else "Nothing fits as asked. Closest:")
    lines += _choice_lines(c)
    if result.alternatives:
        lines.append("Rejected:")
        lines += [f"  - {a.reason}" for a in result.alternatives]
    ways_out = [s for s in result.suggestions if s["fits"]]
    not_enough = [s for s in result.suggestions if not s["fits"]]
    if ways_out:
        lines.append("What would fit:")
        for s in ways_out:
            lines.append(f"  - {s['change']}: {s['peak_gib_per_gpu']:.1f} GiB per GPU (fits; {s['detail']})")
    if not_enough:
        lines.append("Not enough on its own:")
        for s in not_enough:
            lines.append(f"  - {s['change']}: still too big ({s['detail']})")
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from minicpm_tui.core.errors import UserError
    from minicpm_tui.core.planner import PlanRequest, plan

    if args.list_models:
        from minicpm_tui.core.models import list_models

        for m in list_models():
            print(f"{m.name:<15} {m.param_count() / 1e9:5.2f}B  {m.attention}  chat {m.chat_format}  {m.hub_id}")
        return 0
    if args.list_hardware:
        from minicpm_tui.core.probe import hardware_presets, load_hardware

        for name in hardware_presets():
            print(f"{name:<24} {load_hardware(name).name}")
        return 0
    if not args.model:
        raise UserError("no model given", where="--model", fix="e.g. --model MiniCPM4-8B (see --list-models)")
    targets = args.lora_target.split(",") if args.lora_target and args.lora_target != "all" else None
    result = plan(PlanRequest(
        model=args.model, method=args.method, stage=args.stage, hardware=args.hardware, gpus=args.gpus,
        nodes=args.nodes, cutoff_len=args.cutoff_len, micro_batch=args.micro_batch,
        global_batch=args.global_batch, precision=args.precision, zero_stage=args.zero_stage,
        offload=args.offload, gradient_checkpointing=not args.no_gradient_checkpointing,
        lora_rank=args.lora_rank, lora_targets=targets, quant_bits=args.quant_bits,
        train_tokens=args.train_tokens, num_samples=args.num_samples, epochs=args.epochs))
    print(result.to_json() if args.json else render(result), end="" if args.json else "\n")
    return 0
