"""Turn core results into Rich renderables. Formatting only: the facts come from the cores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from minicpm_tui.tui.wording import flags_as_fields, in_tui_words, issue_fix


def one_line(exc: BaseException) -> str:
    """An error as one line, a core error's in the wizard's words (its fields, not CLI flags)."""
    return in_tui_words(exc)


def option_help(name: str) -> str:
    """The one-line help of a recipe field, from the one options registry."""
    from minicpm_tui.core.recipe import OPTIONS_BY_NAME

    option = OPTIONS_BY_NAME.get(name)
    return option.help if option else ""


def option_choices(name: str) -> list[str]:
    from minicpm_tui.core.recipe import AUTO, OPTIONS_BY_NAME

    option = OPTIONS_BY_NAME.get(name)
    return [str(c) for c in (option.choices or ()) if c != AUTO] if option else []


def gib(mib: Any) -> str:
    try:
        return f"{float(mib) / 1024:.1f}G"
    except (TypeError, ValueError):
        return "N/A"


def render_hardware(profile: Any) -> RenderableType:
    """A probe / preset / saved profile (core.probe.HardwareProfile) as a compact report."""
    parts: list[RenderableType] = []
    gpus = list(profile.gpus or [])
    if not gpus:
        parts.append(Text("No NVIDIA GPU here.", style="bold"))
        if profile.hint:
            parts.append(Text(flags_as_fields(profile.hint)))
        parts.append(Text("Pick a preset or a saved probe to plan for another machine (planning mode), "
                          "or go on: the CPU smoke run needs no GPU.", style="italic"))
    else:
        head = profile.summary()
        if profile.driver_version:
            head += f"  (driver {profile.driver_version})"
        parts.append(Text(head, style="bold"))
        if profile.status != "ok" and profile.hint:
            parts.append(Text(flags_as_fields(profile.hint), style="italic"))
        # One space between columns and short names: the table fits the 44 columns the pane has at 80x24
        # (with Rich's default padding every cell was cut: "80.…", "8…", no index).
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 1, 0, 0))
        for col in ("#", "name", "mem", "free", "cc", "util"):
            table.add_column(col, no_wrap=True)
        table.add_column("busy", overflow="ellipsis")  # the one that gives way
        for g in gpus:
            cc = ".".join(str(x) for x in g.compute_capability) if g.compute_capability else "?"
            util = "?" if g.utilization_pct is None else f"{g.utilization_pct}%"
            busy = ", ".join(f"{p.get('name') or p.get('pid')}" for p in g.processes)[:14] or "-"
            table.add_row(str(g.index), short_gpu_name(g.name)[:14], gib(g.memory_total_mib),
                          gib(g.memory_free_mib), cc, util, busy)
        parts.append(table)
        if len(gpus) > 1 and profile.links:
            parts.append(_link_matrix(profile))
    ib = profile.infiniband or []
    if ib:
        ports = ", ".join(f"{p.get('device')}:{p.get('port')} {p.get('state')} {p.get('rate') or ''}".strip()
                          for p in ib)
        parts.append(Text("InfiniBand: ", style="bold") + Text(ports))
    else:
        parts.append(Text("InfiniBand: none", style="dim"))
    host = profile.host or {}
    bits = []
    if host.get("cpu_cores"):
        bits.append(f"{host['cpu_cores']} CPU cores")
    if host.get("ram_total_gib"):
        bits.append(f"{float(host['ram_total_gib']):.0f} GiB RAM")
    if host.get("disk_free_gib") is not None and profile.source == "probe":
        bits.append(f"{float(host['disk_free_gib']):.0f} GiB free disk")
    if bits:
        parts.append(Text("Host: ", style="bold") + Text(", ".join(bits)))
    for err in (profile.errors or [])[:3]:
        parts.append(Text(f"! {err}", style="italic"))
    return Group(*parts)


def short_gpu_name(name: str | None) -> str:
    """"NVIDIA GeForce RTX 4090" -> "RTX 4090" (the summary line above the table has the full name)."""
    return (name or "?").removeprefix("NVIDIA ").removeprefix("GeForce ")


def _link_matrix(profile: Any) -> RenderableType:
    """nvidia-smi topo -m style: NV# for NVLink, else the PCIe path; '*' marks P2P not working."""
    gpus = [g.index for g in profile.gpus][:8]
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", title_justify="left",
                  padding=(0, 1, 0, 0))
    table.add_column("", no_wrap=True)  # "G0".."G7" under an empty corner: 8 GPUs fit 42 columns
    for b in gpus:
        table.add_column(f"G{b}", no_wrap=True)
    for a in gpus:
        row = [f"G{a}"]
        for b in gpus:
            if a == b:
                row.append("X")
                continue
            link = profile.link(a, b)
            row.append("?" if link is None else link.label + ("" if link.p2p_ok else "*"))
        table.add_row(*row)
    return Group(table, Text("NV# NVLink, PIX/PXB/PHB PCIe, NODE/SYS across CPUs; * no P2P", style="dim"))


def render_model(arch: Any, template: str | None) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row("model", f"{arch.name}" + (f"  ({arch.hub_id})" if arch.hub_id else ""))
    table.add_row("size", f"{arch.param_count() / 1e9:.2f}B parameters, {arch.num_layers} layers, "
                  f"hidden {arch.hidden_size}")
    table.add_row("context", f"{arch.max_position:,} tokens")
    table.add_row("template", template or f"{arch.chat_format} chat format")
    table.add_row("attention", {"mla": "latent (MLA): LoRA targets differ", "gqa": "GQA"}.get(arch.attention,
                                                                                         arch.attention))
    table.add_row("remote code", "yes: trust_remote_code is set for you" if arch.remote_code else "no")
    return table


def render_validation(data: dict[str, Any], loads: bool = True) -> RenderableType:
    """A datasets ValidationReport's JSON (issue 4's contract) as a summary, stats and errors. ``loads``:
    LLaMA-Factory can load the data as a whole (the report has no ``file_error``); when it cannot, the
    headline claims no usable records (the Dataset step's reason beside Next says the same)."""
    parts: list[RenderableType] = []
    valid, invalid, records = data.get("valid", 0), data.get("invalid", 0), data.get("records", 0)
    files = data.get("files") or []  # a folder: one dataset of all its files
    name = Path(str(data.get("file", ""))).name + (f" ({len(files)} file{'s' * (len(files) != 1)})" if files else "")
    head = Text(f"{name}: {data.get('format') or '?'} for {data.get('stage') or '?'}, "
                f"{records:,} records, ", style="bold")
    if not loads and valid:  # each record reads, but not the whole (a folder of mixed types, an entry...)
        head.append("none usable: LLaMA-Factory cannot load it", style="bold red")
    else:
        head.append(f"{valid:,} usable", style="bold green" if valid else "bold red")
        if invalid:
            head.append(f", {invalid:,} not", style="bold red")
    parts.append(head)
    stats = data.get("stats") or {}
    lines = _stats_lines(stats)
    if lines:
        parts.append(Text("\n".join(lines)))
    errors = data.get("errors") or []
    if errors:
        parts.append(Text("Problems:", style="bold"))
        for err in errors[:8]:
            where = "file" if err.get("record") is None else f"record {err['record']}"
            if err.get("file"):  # in a folder: the data file it is about
                where = err["file"] if err.get("record") is None else f"{err['file']} {where}"
            field = f" {err['field']}" if err.get("field") else ""
            line = Text(f"{where}{field}: ", style="bold")
            line.append(str(err.get("message", "")))
            if err.get("fix"):
                line.append(f"; {issue_fix(err)}", style="italic")
            parts.append(line)
        more = max(0, int(data.get("error_count") or len(errors)) - 8)
        if more:
            parts.append(Text(f"and {more:,} more", style="dim"))
    warnings = data.get("warnings") or []
    if warnings:  # e.g. an openai entry's added system prompt, a columns key LLaMA-Factory ignores
        parts.append(Text("Warnings:", style="bold"))
        for warn in warnings[:3]:
            where = "" if warn.get("record") is None else f"record {warn['record']} "
            line = Text(f"{where}{warn.get('field') or ''}: ", style="bold")
            line.append(str(warn.get("message", "")))
            if warn.get("fix"):
                line.append(f"; {issue_fix(warn)}", style="italic")
            parts.append(line)
    for note in (data.get("notes") or [])[:2]:
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)


def _stats_lines(stats: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in stats.items():
        if isinstance(value, dict) and value:  # an empty one (nothing measured) says nothing
            inner = ", ".join(f"{k} {v:,.0f}" if isinstance(v, int | float) else f"{k} {v}"
                              for k, v in list(value.items())[:6])
            lines.append(f"{key.replace('_', ' ')}: {inner}")
        elif isinstance(value, int | float | str) and value not in ("", None):
            shown = f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value}"
            lines.append(f"{key.replace('_', ' ')}: {shown}")
    return lines[:8]


def render_preview(items: Any) -> RenderableType:
    """core.datasets.preview_records items: trained text bold, masked text dim."""
    parts: list[RenderableType] = [Text("Preview through the template (bold = trained on, dim = masked):",
                                        style="bold")]
    for i, item in enumerate(items or []):
        for part in ("sequence", "chosen", "rejected"):
            segments = item.get(part) if isinstance(item, dict) else None
            if segments is None:
                continue
            text = Text(f"#{i} {part if part != 'sequence' else ''} ", style="bold reverse")
            for seg in segments:
                text.append(str(seg.get("text", "")), style="bold" if seg.get("trained") else "dim")
            parts.append(text)
    return Group(*parts)


def render_preflight(report: Any, commands: str) -> RenderableType:
    """core.preflight's PreflightReport: the verdict, what was checked, each problem with its fix, the notes;
    then how to run it by hand. Checked against a target (another machine's LLaMA-Factory), also what was
    not checked here and how to check it there."""
    from shlex import quote

    parts: list[RenderableType] = []
    problems = list(report.problems or [])
    target = getattr(report, "target", "")
    if problems:
        parts.append(Text(f"Preflight found {len(problems)} problem{'s' * (len(problems) != 1)}; "
                          "nothing was written", style="bold"))
        parts += [Text(f"! {problem.one_line(tui=True)}") for problem in problems]
    else:
        parts.append(Text("Preflight passed here" if target else "Preflight passed", style="bold"))
    parts += [Text(f"ok {checked}", style="dim") for checked in report.checked or []]
    notes = list(report.notes or [])
    if target:  # written for another LLaMA-Factory: what only that machine can check, as the CLI says it
        left = report.left()
        parts.append(Text(f"not checked here: {left} (they need the target's environment): run "
                          f"`minicpm-tui run --check {quote(str(report.run_dir))}` on the machine that trains",
                          style="bold"))
        notes = [note for note in notes if note != report.target_note()]
    parts += [Text(f"note: {note}", style="italic") for note in notes]
    parts.append(Text(""))
    parts.append(Text(commands))
    return Group(*parts)
