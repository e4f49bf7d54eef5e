"""Step 4: the plan (ZeRO, offload, precision, NCCL, batch sizes) with its reason, memory and alternatives.

The numbers come from the planner; the concrete values the files will carry come from the writers'
``resolve`` (which asks the same planner). Overrides typed here go into the recipe and the estimate is
recomputed at once.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from minicpm_tui.tui.build import build_recipe
from minicpm_tui.tui.screens.base import WizardStep
from minicpm_tui.tui.widgets.field import Field
from minicpm_tui.tui.widgets.membar import MemoryBar
from minicpm_tui.tui.widgets.render import one_line, option_choices
from minicpm_tui.tui.wording import change_in_tui_words

# Recipe fields this step lets a person override ("auto" = the planner decides).
OVERRIDES = ("zero_stage", "offload", "precision", "micro_batch", "grad_accum", "cutoff_len", "gpus")


class PlanScreen(WizardStep):
    STEP = 3
    HELP_TITLE = "4 Plan"
    HELP = """
The planner's recommendation for this model, method, stage and hardware: ZeRO stage, offload,
precision, attention kernel, NCCL flags, micro-batch and accumulation, with the reason. The bars
break the per-GPU peak into its terms against the GPU's memory; below are the alternatives it
rejected. Change any value on the left ("auto" = planner's choice): the estimate updates as you
type and turns red when it will not fit. A value it cannot take is marked, its reason shown
beside Next, and Next waits until it is fixed (or cleared back to "auto").
"""

    class Planned(Message):
        def __init__(self, seq: int, result: Any, resolved: Any, capacity: float | None, error: str | None) -> None:
            super().__init__()
            self.seq = seq
            self.result = result
            self.resolved = resolved
            self.capacity = capacity
            self.error = error

    def __init__(self) -> None:
        super().__init__()
        self.seq = 0
        self.resolved: Any = None
        self.error: str | None = None
        self.fits: bool | None = None
        self.problems: dict[str, str] = {}  # field -> why the typed value is refused

    def body(self) -> ComposeResult:
        from minicpm_tui.core.recipe import AUTO

        with Horizontal(classes="body"):
            with VerticalScroll(classes="pane side", id="plan-form") as form:
                form.border_title = "Override"
                for name in OVERRIDES:
                    # cutoff_len is a hyper-parameter too: shown as set in either step.
                    value = self.state.plan_overrides.get(name, self.state.hparams.get(name, AUTO))
                    with Horizontal(classes="field"):
                        yield Label(name.replace("_", " "))
                        choices = option_choices(name)
                        if choices and name != "gpus":
                            opts = [(AUTO, AUTO), *[(c, c) for c in choices]]
                            yield Select(opts, value=str(value), allow_blank=False, id=f"ov-{name}", compact=True)
                        else:
                            yield Field(str(value), id=f"ov-{name}", compact=True)
            with VerticalScroll(classes="pane main", id="plan-main") as main:
                main.border_title = "Recommendation"
                yield Static("Planning…", id="plan-summary")
                yield MemoryBar(id="plan-bars")
                yield Static("", id="plan-alts")

    def on_mount(self) -> None:
        super().on_mount()
        self.replan()

    @on(Input.Changed)
    def typed(self, event: Input.Changed) -> None:
        self.override(event.input.id or "", event.value)

    @on(Select.Changed)
    def chose(self, event: Select.Changed) -> None:
        self.override(event.select.id or "", event.value)

    def override(self, widget_id: str, raw: Any) -> None:
        from minicpm_tui.core.recipe import AUTO, OPTIONS_BY_NAME

        name = widget_id.removeprefix("ov-")
        option = OPTIONS_BY_NAME.get(name)
        if option is None:
            return
        raw = str(raw).strip()
        widget = self.query_one(f"#{widget_id}")
        if raw in ("", AUTO):
            self.state.plan_overrides.pop(name, None)
        else:
            try:
                value = option.coerce(raw, "plan")
            except Exception as exc:
                # Shown beside Next, which waits; no toast per keystroke while a value is being typed.
                self.problems[name] = one_line(exc).removeprefix("plan: ").split("; ")[0]
                widget.add_class("-invalid")
                self.update_nav()
                return
            self.state.plan_overrides[name] = value
        self.state.hparams.pop(name, None)  # the latest value typed wins, in either step
        self.problems.pop(name, None)
        widget.remove_class("-invalid")
        self.replan()

    def replan(self) -> None:
        self.seq += 1
        self.resolved = None
        self.query_one("#plan-summary", Static).update("Planning…")
        self.update_nav()
        self._plan(self.seq)

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan")
    def _plan(self, seq: int) -> None:
        try:
            from minicpm_tui.core import writers

            recipe = build_recipe(self.state)
            resolved = writers.resolve(recipe)
            result, capacity = self._planner(recipe, resolved)
        except Exception as exc:
            self.post_message(self.Planned(seq, None, None, None, one_line(exc)))
            return
        self.post_message(self.Planned(seq, result, resolved, capacity, None))

    def _planner(self, recipe: Any, resolved: Any) -> tuple[Any, float | None]:
        """The planner's full answer (terms, alternatives) for the recipe's choices and overrides."""
        from minicpm_tui.core.planner import PlanRequest, plan

        hardware = writers_hardware(recipe)
        if hardware is None or not getattr(hardware, "gpus", None):
            return None, None  # no GPU to plan for (CPU smoke only)
        ov = self.state.plan_overrides
        offload = {"all": "optimizer+param"}.get(ov.get("offload"), ov.get("offload"))
        request = PlanRequest(model=recipe.model, method=recipe.method, stage=recipe.stage, hardware=hardware,
                              gpus=ov.get("gpus"), nodes=recipe.nodes, cutoff_len=recipe.cutoff_len,
                              micro_batch=ov.get("micro_batch"), precision=ov.get("precision"),
                              zero_stage=ov.get("zero_stage"), offload=offload, lora_rank=recipe.lora_rank)
        result = plan(request)
        return result, result.recommended.budget_gib_per_gpu or None

    def on_plan_screen_planned(self, message: Planned) -> None:
        if message.seq != self.seq:
            return  # a newer override superseded this estimate
        self.error = message.error
        summary = self.query_one("#plan-summary", Static)
        if message.error:
            summary.update(Text(f"Cannot plan this: {message.error}", style="bold"))
            # The bars and alternatives of the last plan that worked would read as this one's.
            self.query_one("#plan-bars", MemoryBar).update("")
            self.query_one("#plan-alts", Static).update("")
            self.changed()
            return
        res = self.resolved = message.resolved
        self.state.plan = {k: getattr(res, k) for k in ("zero_stage", "offload", "precision", "flash_attn",
                                                         "micro_batch", "grad_accum", "gpus", "nodes")}
        rec = None
        data: dict[str, Any] = {}
        if message.result is not None:
            data = message.result.to_dict()
            rec = data.get("recommended")
        summary.update(plan_summary(res, rec))
        bars = self.query_one("#plan-bars", MemoryBar)
        if rec and rec.get("terms"):
            bars.show({k: float(v) for k, v in rec["terms"].items()}, message.capacity, rec.get("peak_gib_per_gpu"))
            self.fits = bool(rec.get("fits", True))
        else:
            bars.update(Text("(no GPU to estimate memory for: pick a hardware preset in step 1 to plan)",
                             style="dim"))
            self.fits = None
        self.query_one("#plan-alts", Static).update(alternatives(data))
        self.changed()

    def ready(self) -> bool:
        if self.problems:
            self.blocked_reason = next(iter(self.problems.values()))
            return False
        if self.error:
            self.blocked_reason = "this plan cannot be written"
            return False
        if self.resolved is None:
            self.blocked_reason = "planning…"
            return False
        return True


def writers_hardware(recipe: Any) -> Any:
    try:
        from minicpm_tui.core.writers import recipe_hardware

        return recipe_hardware(recipe)
    except Exception:
        return None


def plan_summary(res: Any, rec: dict[str, Any] | None) -> Group:
    zero = "no DeepSpeed" if res.zero_stage == 0 else f"ZeRO-{res.zero_stage}"
    off = "" if res.offload in ("none", None) else f" + {res.offload} offload"
    head = Text(f"{zero}{off}, {res.precision}, attention {res.flash_attn}", style="bold")
    batch = Text(f"{res.gpus} GPU x {res.nodes} node, micro-batch {res.micro_batch} x accumulation "
                 f"{res.grad_accum} = {res.micro_batch * res.grad_accum * res.gpus * res.nodes} per step")
    nccl = ", ".join(f"{k}={v}" for k, v in res.nccl_env.items()) or "none needed"
    lines: list[Any] = [head, batch, Text(f"NCCL: {nccl}")]
    reason = (rec or {}).get("reason") or res.reasons.get("zero_stage")
    if reason:
        lines.append(Text(f"why: {reason}", style="italic"))
    for note in res.notes[:2]:
        lines.append(Text(f"note: {note}", style="dim"))
    return Group(*lines)


def alternatives(data: dict[str, Any]) -> Any:
    alts = data.get("alternatives") or []
    suggestions = data.get("suggestions") or []
    if not alts and not suggestions:
        return ""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", title="Rejected",
                  title_justify="left")
    for col in ("choice", "peak", "why not"):
        table.add_column(col, no_wrap=col != "why not")
    for alt in alts[:6]:
        zero = f"Z{alt.get('zero_stage')}" + ("" if alt.get("offload") in ("none", None) else "+off")
        table.add_row(f"{alt.get('method')} {zero} mb{alt.get('micro_batch')}",
                      f"{float(alt.get('peak_gib_per_gpu') or 0):.1f}G", str(alt.get("reason") or ""))
    parts: list[Any] = [table] if alts else []  # no empty "Rejected" header above the suggestions
    ways_out = [s for s in suggestions if not isinstance(s, dict) or s.get("fits", True)]  # no "try" that fails
    for s in ways_out[:3]:
        text = s if isinstance(s, str) else s.get("text") or s.get("change") or s.get("reason") or str(s)
        parts.append(Text(f"try: {change_in_tui_words(text)}", style="italic"))
    return Group(*parts)
