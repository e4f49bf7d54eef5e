"""Per-record validation that agrees with LLaMA-Factory 0.9.x's converter and processors.

A record is *valid* when LLaMA-Factory keeps it for the chosen stage, *invalid* when it drops the
record (converter.py: role order, turn count, KTO label not a boolean, chosen/rejected of the
wrong type; processor/*.py: prompt/response counts) or when it makes the whole load fail
(template formatters raise on non-string content or bad function/tool JSON; the Arrow loader
fails on a column with mixed types or a duplicated key in JSON Lines). Things LLaMA-Factory keeps
but that are probably mistakes are *warnings* and do not make a record invalid.

``tests/test_datasets_agreement.py`` runs LLaMA-Factory's own loading over a corpus and checks that
these verdicts match record by record.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minicpm_tui.core.datasets.formats import (
    MEDIA_KEYS,
    SHAREGPT_TAGS,
    STAGES,
    Shape,
    describe_keys,
    detect_format,
    json_kind,
    skipped,
)
from minicpm_tui.core.datasets.reader import (
    FILEEXT2TYPE,
    FileLevelError,
    Progress,
    RecordParseError,
    RecordReader,
)
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import missing

if TYPE_CHECKING:
    from minicpm_tui.core.datasets.entry import EntryReading

MAX_ERRORS_PER_KIND = 20
MAX_WARNINGS = 50
# File-level issue kinds that make LLaMA-Factory refuse (or empty) the whole dataset: no record is usable.
WHOLE_KINDS = ("stage", "entry", "load")
# Issues about a dataset folder's entries (folder.py): their line has no field part.
FOLDER_KINDS = ("hidden_file", "subfolder", "file_type", "mixed_file_types", "empty_folder", "folder_mismatch")


@dataclass
class Issue:
    record: int | None
    field: str
    message: str
    fix: str
    kind: str
    file: str | None = None  # in a folder's report: the data file (its name in the folder); None otherwise

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record, "field": self.field, "message": self.message, "fix": self.fix,
                "kind": self.kind, "file": self.file}

    def brief(self) -> str:
        """``[file: ][record N: ][field: ]message``: the parts that are known, no empty ones."""
        parts = [self.file, None if self.record is None else f"record {self.record}", self.field or None]
        return "".join(f"{p}: " for p in parts if p) + self.message

    def line(self, file: str) -> str:
        if self.file is not None:
            file = os.path.join(file, self.file)
        where = f"{file}:record {self.record}" if self.record is not None else file
        if not self.field and self.kind in FOLDER_KINDS:
            return f"{where}: {self.message}; {self.fix}"
        fld = self.field or ("(file)" if self.record is None else "(record)")
        return f"{where}: {fld}: {self.message}; {self.fix}"


@dataclass
class ValidationReport:
    file: str
    format: str | None  # e.g. "alpaca", "sharegpt-dpo", "openai-kto"; None if unknown
    stage: str | None
    records: int = 0
    valid: int = 0
    invalid: int = 0
    errors: list[Issue] = field(default_factory=list)
    error_counts: Counter = field(default_factory=Counter)  # every error, by kind
    warnings: list[Issue] = field(default_factory=list)
    warning_counts: Counter = field(default_factory=Counter)
    stats: dict[str, Any] = field(default_factory=dict)
    shape: Shape | None = None
    columns: list[str] = field(default_factory=list)  # top-level keys seen in any record
    file_error: Issue | None = None
    layout: str = "?"
    invalid_indices: list[int] = field(default_factory=list)  # kept only if asked (tests, conversion)
    seconds: float = 0.0
    token_sample: list[dict[str, Any]] = field(default_factory=list)
    # A folder's report: one summary per data file, in the order their records are numbered
    # ({"file" (name in the folder), "format", "layout", "records", "valid", "invalid", "first_record"});
    # empty for a single file. ``record`` in issues is then the record's number within its file.
    files: list[dict[str, Any]] = field(default_factory=list)
    # The scan's raw lengths and column types, kept only when asked (``validate_file(schema=True)``),
    # so a folder's report can merge its files' statistics and compare their columns.
    raw: Any = field(default=None, repr=False, compare=False)
    # What is not validated, and why (parts of a dataset_info.json entry the checks do not model).
    notes: list[str] = field(default_factory=list)

    def data_files(self) -> list[tuple[Path, int]]:
        """(path, number of its first record in this report) for each data file read (one for a file)."""
        if not self.files:
            return [(Path(self.file), 0)]
        return [(Path(self.file) / f["file"], f["first_record"]) for f in self.files if f["records"]]

    @property
    def ok(self) -> bool:
        return self.file_error is None and self.invalid == 0 and self.records > 0

    def summary(self) -> str:
        """One line: why the data is not usable, or that it is (preflight shows it)."""
        err = self.file_error
        if err is not None:
            # an entry's issue names a field of the entry or of the records ("columns.response: is not set")
            fld = f"{err.field}: " if err.kind in ("entry", "load") and err.field else ""
            at = f"record {err.record}: " if err.kind == "load" and err.record is not None else ""
            return (f"{err.file}: " if err.file else "") + at + fld + err.message
        if not self.records:
            return "holds no records"
        if self.invalid and self.errors:
            return f"{self.invalid:,} of {self.records:,} records are not usable (first: {self.errors[0].brief()})"
        return f"{self.records:,} records, {self.valid:,} usable"

    @property
    def shown_errors(self) -> int:
        return len(self.errors)

    @property
    def total_errors(self) -> int:
        return sum(self.error_counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "format": self.format, "stage": self.stage, "records": self.records,
            "valid": self.valid, "invalid": self.invalid, "ok": self.ok,
            "errors": [e.to_json() for e in self.errors],
            "errors_total": self.total_errors,
            "errors_by_kind": dict(self.error_counts.most_common()),
            "warnings": [w.to_json() for w in self.warnings],
            "warnings_by_kind": dict(self.warning_counts.most_common()),
            "stats": self.stats,
            "dataset_info": (self.shape.to_dict() if self.shape else None),
            "columns": list(self.columns),
            "layout": self.layout,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        } | ({"files": [dict(f) for f in self.files]} if self.files else {})

    def lines(self) -> list[str]:
        """The human report: every kept error, a 'more like this' count per kind, a summary."""
        out: list[str] = []
        shown: Counter = Counter()
        for e in self.errors:
            shown[e.kind] += 1
            out.append(e.line(self.file))
        for kind, n in self.error_counts.most_common():
            if n > shown[kind]:
                out.append(f"  ... and {n - shown[kind]:,} more like this ({kind})")
        for w in self.warnings[:10]:
            out.append("warning: " + w.line(self.file))
        if sum(self.warning_counts.values()) > 10:
            out.append(f"  ... and {sum(self.warning_counts.values()) - 10:,} more warnings")
        out.extend(f"note: {self.file}: {n}" for n in self.notes)
        where = f"{self.file} ({len(self.files)} file{'s' * (len(self.files) != 1)})" if self.files else self.file
        summary = f"{where}: {self.format or 'unknown format'}, stage {self.stage or '?'}: " \
                  f"{self.records:,} records, {self.valid:,} usable, {self.invalid:,} not usable"
        if self.file_error is not None:
            # The records may all be fine, but LLaMA-Factory will not load the data as a whole.
            summary += "; LLaMA-Factory would refuse it: " + self.summary()
        out.append(summary)
        if self.error_counts:
            out.append("errors by kind: " + ", ".join(f"{k} {n:,}" for k, n in self.error_counts.most_common()))
        return out


class _Collector:
    def __init__(self, report: ValidationReport, keep_indices: bool):
        self.r = report
        self.keep = keep_indices
        self.per_kind: Counter = Counter()

    def error(self, idx: int | None, fld: str, message: str, fix: str, kind: str, file: str | None = None) -> None:
        self.r.error_counts[kind] += 1
        if self.per_kind[kind] < MAX_ERRORS_PER_KIND:
            self.per_kind[kind] += 1
            self.r.errors.append(Issue(idx, fld, message, fix, kind, file))

    def warn(self, idx: int | None, fld: str, message: str, fix: str, kind: str, file: str | None = None) -> None:
        self.r.warning_counts[kind] += 1
        if len(self.r.warnings) < MAX_WARNINGS:
            self.r.warnings.append(Issue(idx, fld, message, fix, kind, file))


# The checkers return None when the record is usable or (field, message, fix, kind) for the
# first thing that makes LLaMA-Factory drop it; ``warn`` collects the rest. ``lens`` receives
# (chars, turns).

def _is_str_or_none(v: Any) -> bool:
    return v is None or type(v) is str


def _function_json_problem(content: str) -> str | None:
    try:
        calls = json.loads(content)
    except (json.JSONDecodeError, TypeError):
        return "is a function_call turn whose content is not JSON"
    for call in calls if isinstance(calls, list) else [calls]:
        if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
            return "is a function_call turn whose JSON lacks \"name\" and \"arguments\""
    return None


def _tools_problem(tools: Any) -> tuple[str, str] | None:
    if not tools:
        return None
    if type(tools) is not str:
        return (f"is a JSON {json_kind(tools)}; LLaMA-Factory needs the tool list as a JSON string",
                "store json.dumps(tools) (`minicpm-tui convert` does this)")
    try:
        parsed = json.loads(tools)
    except json.JSONDecodeError:
        return ("is not valid JSON", "write the tool list as a JSON array of function schemas")
    for tool in parsed if isinstance(parsed, list) else [None]:
        if not isinstance(tool, dict):
            return ("is not a JSON array of objects", "write [{\"name\": ..., \"parameters\": {...}}, ...]")
        fn = tool.get("function", "") if tool.get("type") == "function" else tool
        if not isinstance(fn, dict) or "name" not in fn or not isinstance(fn.get("parameters"), dict) \
                or not isinstance(fn["parameters"].get("properties"), dict):
            return ("has a tool without \"name\" or \"parameters\": {\"properties\": ...}",
                    "give every tool a name and a parameters object with properties")
    return None


def make_checker(shape: Shape, stage: str):
    """Build the per-record check for one shape and stage (a closure keeps the hot loop tight).

    Optional columns (system, history, tools) are read with ``.get``: the entry we register
    names a column only if some record has it, and a record without it reads as null, as in Arrow.
    """
    if shape.converter == "openai":
        from minicpm_tui.core.datasets.openai_lf import openai_checker

        check = openai_checker(shape, stage)
    elif shape.style == "alpaca":
        check = _alpaca_checker(shape, stage)
    else:
        check = _sharegpt_checker(shape, stage)
    accepted = getattr(check, "accepted", None)
    if shape.columns is not None and (shape.media is not None or any(shape.columns.get(k) for k in MEDIA_KEYS)):
        from minicpm_tui.core.datasets.media import media_checker

        check = media_checker(check, shape, stage)
    check.known_types = _known_types(shape, stage, accepted)  # type: ignore[attr-defined]
    return check


def _known_types(shape: Shape, stage: str, accepted: list[int] | None):
    """For a record the checker accepted: the columns whose Arrow type the check itself vouches for (column ->
    type), so typing the record (``blocks.BlockTypes``) need not walk them: the turns, and DPO's chosen/rejected
    answers, when they hold no key but the role and content tags. The sharegpt checks accept those only with
    a text role and content (a system turn's may be null) and at least one turn with content; the OpenAI one
    only on its fast path (``accepted``: the last record it took there). None for alpaca."""
    from itertools import chain

    from minicpm_tui.core.datasets.folder import list_type, union_types, value_type

    role, content = shape.tags.get("role_tag"), shape.tags.get("content_tag")
    if shape.style == "alpaca" or role is None or content is None:
        return None
    allowed = frozenset((role, content))
    answer, turns = value_type({role: "", content: ""}), value_type([{role: "", content: ""}])
    turn = answer
    mkey = shape.messages_key
    # the answers are checked for DPO only (a KTO record of ranking data keeps whatever they hold)
    pairs = (shape.column("chosen") or "chosen", shape.column("rejected") or "rejected") if stage == "dpo" else ()
    keys = chain.from_iterable

    plain = {mkey: turns}  # the usual answer, shared: read only

    def known(rec: dict[str, Any], idx: int) -> dict[str, Any] | None:
        if accepted is not None and accepted[0] != idx:
            return None
        msgs = rec[mkey]  # an accepted record's turns: a list of message objects
        if allowed.issuperset(keys(msgs)):
            if not pairs:
                return plain
            out = {mkey: turns}
        else:  # only the turns with other keys (tool calls) are walked; the others have text roles and contents
            t = turn
            for m in msgs:
                if not allowed.issuperset(m):
                    t = union_types(t, value_type(m))
            out = {mkey: list_type(t)}
        for k in pairs:
            v = rec.get(k)
            if type(v) is dict and allowed.issuperset(v):
                out[k] = answer
        return out

    return known


def _alpaca_checker(shape: Shape, stage: str):
    # The fields LLaMA-Factory reads (an entry's own names, else the standard ones); issues name them.
    # An unset one is None, and rec.get(None) is None (JSON keys are strings): no branch in the hot loop.
    prompt_key, query_key = shape.column("prompt"), shape.column("query")
    prompt_keys = tuple(k for k in (prompt_key, query_key) if k)
    out_key = shape.column("response")
    system_key, hist_key, tools_key = shape.column("system"), shape.column("history"), shape.column("tools")
    pair_keys = (shape.column("chosen") or "chosen", shape.column("rejected") or "rejected")
    kto_key = shape.kto_column(stage) if stage == "kto" else None
    # An entry's kto_tag is read at every stage: a boolean label makes a KTO example, which SFT drops.
    sft_kto = shape.kto_column(stage) if stage == "sft" else None
    empty_prompt = f"is empty (and so is {query_key})" if prompt_key and query_key else "is empty"
    rare = bool(tools_key or sft_kto or out_key is None)  # only entries get here: one test per record

    def check(rec: Any, idx: int, warn, lens) -> tuple[str, str, str, str] | None:
        if type(rec) is not dict:
            return ("", f"is a JSON {json_kind(rec)}, not an object", "make every record a JSON object "
                    f"with {'/'.join(k for k in (prompt_key, query_key, out_key) if k)}", "not_object")
        chars = 0
        turns = 2
        for key in prompt_keys:
            v = rec.get(key)
            if v is None:
                continue
            if type(v) is not str:
                if v:  # LLaMA-Factory joins truthy prompts as text: anything else raises
                    return (key, f"is a JSON {json_kind(v)}, not a string", f"write {key} as text", "type")
                continue
            chars += len(v)
        if not rec.get(prompt_key) and not rec.get(query_key) and prompt_keys:
            warn(idx, prompt_keys[0], f"{empty_prompt}: the model is trained on an empty prompt",
                 f"fill in the {prompt_keys[0]}", "empty_prompt")
        system = rec.get(system_key)
        if system and type(system) is not str:
            return (system_key, f"is a JSON {json_kind(system)}, not a string", "write the system prompt as text",
                    "type")
        hist = rec.get(hist_key)
        if hist is not None:
            if type(hist) is list:
                for h, pair in enumerate(hist):
                    if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str \
                            or type(pair[1]) is not str:
                        return (f"{hist_key}[{h}]", "is not a [prompt, response] pair of strings",
                                "write each history item as [\"question\", \"answer\"]", "history")
                    chars += len(pair[0]) + len(pair[1])
                    turns += 2
            else:
                warn(idx, hist_key, f"is a JSON {json_kind(hist)}; LLaMA-Factory ignores anything but a list",
                     f"write {hist_key} as [[\"question\", \"answer\"], ...]", "history_ignored")
        if rare:
            problem = _tools_problem(rec.get(tools_key)) if tools_key else None
            if problem:
                return (tools_key, problem[0], problem[1], "tools")
            if sft_kto and type(rec.get(sft_kto)) is bool:
                return _kto_in_sft(sft_kto)
            if out_key is None and stage == "sft":  # the entry's file-level issue covers every record
                lens(chars, turns)
                return None
        if stage == "dpo":
            for key in pair_keys:
                v = rec.get(key)
                if type(v) is not str:
                    what = "is missing" if v is None else f"is a JSON {json_kind(v)}"
                    return (key, f"{what}; alpaca DPO needs {key} as a string (the record is skipped)",
                            f"write the {key} answer as text", "dpo_shape")
                chars += len(v)
            lens(chars, turns + 1)
            return None
        out = rec.get(out_key)
        if stage == "kto":
            label = rec.get(kto_key)
            if type(label) is not bool:
                return _kto_label_problem(kto_key, label)
            if out is not None and type(out) is not str:
                if out:
                    return (out_key, f"is a JSON {json_kind(out)}, not a string", f"write {out_key} as text",
                            "type")
            elif not out:
                warn(idx, out_key or "", "is empty: KTO trains on an empty answer", "fill in the answer", "empty")
            chars += len(out or "") if type(out) is str else 0
            lens(chars, turns)
            return None
        if type(out) is not str:
            what = "is missing" if out is None else f"is a JSON {json_kind(out)}, not a string"
            return (out_key, f"{what} (LLaMA-Factory skips the record)", f"write the answer as text in {out_key}",
                    "missing" if out is None else "type")
        if not out:
            warn(idx, out_key, "is empty: the model learns to answer nothing", "fill in the answer", "empty")
        lens(chars + len(out), turns)
        return None

    return check


def _kto_in_sft(key: str) -> tuple[str, str, str, str]:
    return (key, "is a boolean KTO label and the dataset_info.json entry maps it as kto_tag, so LLaMA-Factory "
            "makes the record a KTO example, which SFT drops", "train it with --stage kto, or remove kto_tag from "
            "the entry's columns", "kto_in_sft")


def _kto_label_problem(key: str | None, label: Any) -> tuple[str, str, str, str]:
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        return (key or "label", f"is the string {label!r}, not a JSON boolean; LLaMA-Factory then treats the "
                "record as plain SFT and the KTO step drops it", "write true/false without quotes "
                "(`minicpm-tui convert --kto-labels` does it)", "kto_label_string")
    what = "is missing" if label is None else f"is a JSON {json_kind(label)}, not a boolean"
    return (key or "label", f"{what}; KTO needs true (desirable) or false (undesirable)",
            "set the label to true or false", "kto_label")


def messages_problem(rec: Any, mkey: str, role_tag: Any, content_tag: Any,
                     why: str = "") -> tuple[str, str, str, str] | None:
    """Why a record is not an object with a ``mkey`` list of message objects (``why``: what LLaMA-Factory does)."""
    if type(rec) is not dict:
        return ("", f"is a JSON {json_kind(rec)}, not an object", f"make every record an object with a "
                f"{mkey!r} list", "not_object")
    msgs = rec.get(mkey)
    if type(msgs) is not list:
        what = "is missing" if msgs is None else f"is a JSON {json_kind(msgs)}, not a list of messages"
        extra = f" (the record has {describe_keys(rec)})" if msgs is None else ""
        return (mkey, what + extra + why, f"put the turns in a {mkey!r} list of "
                f"{{{role_tag!r}: ..., {content_tag!r}: ...}} objects", "missing" if msgs is None else "type")
    for j, m in enumerate(msgs):
        if type(m) is not dict:
            return (f"{mkey}[{j}]", f"is a JSON {json_kind(m)}, not a message object",
                    f"write each turn as {{{role_tag!r}: ..., {content_tag!r}: ...}}", "type")
    return None


def _sharegpt_checker(shape: Shape, stage: str):
    t = shape.tags
    role_tag, content_tag = t["role_tag"], t["content_tag"]
    user, assistant = t["user_tag"], t["assistant_tag"]
    observation, function, system_tag = t["observation_tag"], t["function_tag"], t["system_tag"]
    # An entry's tags block unsets the tags it does not name (None): no turn has that role then. (A turn
    # without a role would match an unset tag in LLaMA-Factory and then fail in the template.)
    odd = tuple(r for r in (user, observation) if r is not None)
    even = tuple(r for r in (assistant, function) if r is not None)
    known = {r for r in (user, assistant, observation, function, system_tag) if r is not None}
    mkey = shape.messages_key
    system_key, tools_key = shape.column("system"), shape.column("tools")
    pair_keys = (shape.column("chosen") or "chosen", shape.column("rejected") or "rejected")
    ranking = stage == "dpo"
    kto_key = shape.kto_column(stage) if stage == "kto" else None
    sft_kto = shape.kto_column(stage) if stage == "sft" else None
    expect = "/".join(odd), "/".join(even)

    def check(rec: Any, idx: int, warn, lens) -> tuple[str, str, str, str] | None:
        problem = messages_problem(rec, mkey, role_tag, content_tag)
        if problem:
            return problem
        msgs = rec[mkey]
        n = len(msgs)
        chars = 0
        start = 0
        if n and system_tag is not None and msgs[0].get(role_tag) == system_tag:
            sc = msgs[0].get(content_tag)
            if sc is not None and type(sc) is not str:
                return (f"{mkey}[0].{content_tag}", f"is a JSON {json_kind(sc)}, not a string",
                        "write the system prompt as text", "type")
            start = 1
            chars += len(sc or "")
        else:
            sv = rec.get(system_key)  # None when unset: rec.get(None) is None
            if sv and type(sv) is not str:
                return (system_key, f"is a JSON {json_kind(sv)}, not a string", "write the system prompt as text",
                        "type")
        count = n - start
        for j in range(start, n):
            role = msgs[j].get(role_tag)
            if role not in (odd if (j - start) % 2 == 0 else even):
                want = expect[(j - start) % 2]
                if role is None:
                    what = f"is missing (the message has {describe_keys(msgs[j])})"
                    fix = f"give every turn a {role_tag!r} key"
                elif role not in known:
                    what = f"is {role!r}, which is not a role tag of this dataset ({', '.join(sorted(known))})"
                    fix = f"use {want}, or register matching tags"
                    if system_tag is None and role == SHAREGPT_TAGS["system_tag"] and j == 0:
                        what += "; the entry's tags block sets no system_tag, so a leading system turn is not " \
                                "the system prompt"
                        fix = "add \"system_tag\": \"system\" to the entry's tags"
                elif role == system_tag:
                    what = "is a system turn after the start; only the first turn may be the system prompt"
                    fix = "move the system prompt to the first turn or into the record's system field"
                else:
                    what = f"is {role!r} but turn {j - start} (after the system prompt) must be {want}: " \
                           "turns must alternate user, assistant, user, ..."
                    fix = f"reorder or merge the turns so they alternate ({skipped(stage)})"
                return (f"{mkey}[{j}].{role_tag}", what, fix, "role_order")
        if ranking:
            if count % 2 == 0:
                return (mkey, f"has {count} turns after the system prompt; DPO needs an odd number (the prompt "
                        "ends with a user turn; the answers go in chosen/rejected)",
                        "drop the final assistant turn and keep the answers in chosen/rejected", "turn_count")
        elif count == 0 or count % 2:
            what = "has no turns" if count == 0 else \
                f"has {count} turns after the system prompt; it must be an even number ending with an assistant turn"
            return (mkey, what, f"end every conversation with the assistant's answer ({skipped(stage, otherwise=True)})",
                    "turn_count")
        for j in range(start, n):
            c = msgs[j].get(content_tag)
            if type(c) is not str:
                what = "is missing" if c is None else f"is a JSON {json_kind(c)}, not a string"
                return (f"{mkey}[{j}].{content_tag}", what + " (LLaMA-Factory's template raises on it)",
                        "write every turn's content as text", "type")
            if msgs[j][role_tag] == function:
                problem = _function_json_problem(c)
                if problem:
                    return (f"{mkey}[{j}].{content_tag}", problem,
                            "write [{\"name\": ..., \"arguments\": {...}}] as JSON text", "function_call")
            if not c:
                warn(idx, f"{mkey}[{j}].{content_tag}", "is empty", "fill in the turn or drop it", "empty")
            chars += len(c)
        problem = _tools_problem(rec.get(tools_key))
        if problem:
            return (tools_key, problem[0], problem[1], "tools")
        if ranking:
            for key in pair_keys:
                v = rec.get(key)
                if type(v) is not dict:
                    what = "is missing" if v is None else f"is a JSON {json_kind(v)}"
                    return (key, f"{what}; sharegpt DPO needs {key} as a message object (the record is skipped)",
                            f"write {key} as {{{role_tag!r}: {assistant!r}, {content_tag!r}: \"...\"}}",
                            "dpo_shape")
                role = v.get(role_tag)
                if role not in known:
                    what = "is missing" if role is None else f"is {role!r}, not a role tag of this dataset"
                    return (f"{key}.{role_tag}", what, f"use {assistant!r}", "role_order")
                c = v.get(content_tag)
                if type(c) is not str:
                    what = "is missing" if c is None else f"is a JSON {json_kind(c)}, not a string"
                    return (f"{key}.{content_tag}", what, f"write the {key} answer as text", "type")
                if role not in even:
                    warn(idx, f"{key}.{role_tag}", f"is {role!r}; LLaMA-Factory keeps the record but trains this "
                         "answer as a non-assistant turn", f"use {assistant!r}", "dpo_role")
                elif role == function:
                    problem = _function_json_problem(c)
                    if problem:
                        return (f"{key}.{content_tag}", problem, "write the call as JSON text", "function_call")
                chars += len(c)
            lens(chars, count + 1)
            return None
        if kto_key is not None:
            label = rec.get(kto_key)
            if type(label) is not bool:
                return _kto_label_problem(kto_key, label)
        elif sft_kto and type(rec.get(sft_kto)) is bool:
            return _kto_in_sft(sft_kto)
        lens(chars, count)
        return None

    # The common case, checked in one tight pass: a clean record (no system-in-the-middle, no
    # function calls, no tools, no empty turn) that the full check above would accept without a
    # warning. Anything else, valid or not, goes to the full check, which alone words errors
    # and warnings, so the verdicts and messages are the full check's by construction.
    role_ok = odd

    def fast(rec: Any, idx: int, warn, lens) -> tuple[str, str, str, str] | None:
        if type(rec) is not dict:
            return check(rec, idx, warn, lens)
        msgs = rec.get(mkey)
        if type(msgs) is not list or not msgs or type(msgs[0]) is not dict or rec.get(tools_key):
            return check(rec, idx, warn, lens)
        n = len(msgs)
        chars = 0
        start = 0
        m0 = msgs[0]
        if system_tag is not None and m0.get(role_tag) == system_tag:
            sc = m0.get(content_tag)
            if type(sc) is str:
                chars = len(sc)
            elif sc is not None:
                return check(rec, idx, warn, lens)
            start = 1
        else:
            sv = rec.get(system_key)
            if sv and type(sv) is not str:
                return check(rec, idx, warn, lens)
        count = n - start
        if (count % 2 == 0) if ranking else (count == 0 or count % 2):
            return check(rec, idx, warn, lens)
        prompt_turn = True
        for j in range(start, n):
            m = msgs[j]
            if type(m) is not dict:
                return check(rec, idx, warn, lens)
            role = m.get(role_tag)
            c = m.get(content_tag)
            if (role not in role_ok if prompt_turn else role != assistant or role is None) or role == function \
                    or type(c) is not str or not c:
                return check(rec, idx, warn, lens)
            chars += len(c)
            prompt_turn = not prompt_turn
        if ranking:
            for key in pair_keys:
                v = rec.get(key)
                if type(v) is not dict or v.get(role_tag) != assistant or assistant == function:
                    return check(rec, idx, warn, lens)
                c = v.get(content_tag)
                if type(c) is not str:
                    return check(rec, idx, warn, lens)
                chars += len(c)
            lens(chars, count + 1)
            return None
        if kto_key is not None and type(rec.get(kto_key)) is not bool:
            return check(rec, idx, warn, lens)
        if sft_kto and type(rec.get(sft_kto)) is bool:
            return check(rec, idx, warn, lens)
        lens(chars, count)
        return None

    return fast


_KINDS = {str: "string", bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
# Two kinds of a JSON Lines field that load when no piece pyarrow types alone holds both (blocks.piece_starts)
_NUMERIC_MIX = frozenset((("number", "string"), ("string", "number")))


def resolve_stage(shape: Shape, stage: str | None) -> tuple[str, Issue | None]:
    """The stage to check for, and a file-level problem if the data cannot serve it."""
    stage = stage or shape.default_stage()
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}", where="--stage", fix=f"use one of {', '.join(STAGES)}")
    if shape.from_entry:
        return stage, _entry_stage_problem(shape, stage)
    if stage == "dpo" and not shape.ranking:
        return stage, Issue(None, "chosen", "this is not ranking data (no chosen/rejected pair in the first "
                            "record); LLaMA-Factory refuses it for DPO ('The dataset is not applicable in the "
                            "current training stage')", "add chosen and rejected answers, or train with --stage "
                            "sft", "stage")
    if stage != "dpo" and shape.ranking:
        return stage, Issue(None, "chosen", f"this is ranking data (chosen/rejected); LLaMA-Factory refuses it "
                            f"for {stage.upper()}", "train it with --stage dpo, or drop chosen/rejected", "stage")
    if stage == "kto" and not shape.kto_key:
        return stage, Issue(None, "label", "KTO needs a boolean label per record (a 'label' or 'kto_tag' "
                            "field) and the first record has none", "add \"label\": true or false to every "
                            "record", "stage")
    return stage, None


def _entry_stage_problem(shape: Shape, stage: str) -> Issue | None:
    """What a dataset_info.json entry (not the data) makes LLaMA-Factory refuse or drop for ``stage``."""
    if stage == "dpo" and not shape.ranking:
        return Issue(None, "ranking", "the dataset_info.json entry has no \"ranking\": true; LLaMA-Factory refuses "
                     "it for DPO ('The dataset is not applicable in the current training stage')",
                     "set \"ranking\": true and map chosen/rejected in its columns, or train with --stage sft",
                     "stage")
    if stage != "dpo" and shape.ranking:
        return Issue(None, "ranking", f"the dataset_info.json entry has \"ranking\": true; LLaMA-Factory refuses "
                     f"it for {stage.upper()}", "train it with --stage dpo, or remove ranking from the entry",
                     "stage")
    if stage == "kto" and not shape.kto_key:
        return Issue(None, "columns.kto_tag", "is not set: the dataset_info.json entry maps no boolean label, so "
                     "LLaMA-Factory makes no KTO example of any record", "add \"kto_tag\": \"<your label field>\" "
                     "to the entry's columns", "stage")
    if shape.style == "alpaca" and stage != "dpo" and shape.column("response") is None:
        what = "reads no answer and drops every record" if stage == "sft" else "fails looking the answer up"
        return Issue(None, "columns.response", f"is not set: the dataset_info.json entry maps no answer column "
                     f"(a columns block unsets every key it does not name), so LLaMA-Factory {what}",
                     "add \"response\": \"<your answer field>\" to the entry's columns", "entry")
    return None


def _absent_problems(shape: Shape | None, absent: set[str], columns: list[str]) -> list[Issue]:
    """An entry's mapped fields that no record has: LLaMA-Factory's lookup fails the load (KeyError)."""
    if shape is None or not absent:
        return []
    keys = ", ".join(repr(c) for c in columns[:8]) or "none"
    out = []
    for name, key in shape.read_columns().items():
        if name in absent:
            out.append(Issue(None, name, f"is in no record, but the dataset_info.json entry reads it as "
                             f"columns.{key}; LLaMA-Factory looks it up in every record and fails (KeyError: "
                             f"{name!r})", f"map {key} to the field your records use (they have {keys}), or "
                             "remove it from columns", "entry"))
    return out


def _release_problems(shape: Shape | None, facts: dict[str, int | None] | None) -> list[Issue]:
    """What fails the whole load in the release that reads the data (an openai entry on 0.9.4)."""
    if shape is None or shape.converter != "openai" or not facts or shape.lf_version is None:
        return []
    from minicpm_tui.core.datasets.entry import version_tuple

    if version_tuple(shape.lf_version) >= (0, 9, 5) or facts["calls_key"] is None or facts["no_calls"] is None:
        return []
    return [Issue(facts["no_calls"], "tool_calls", "is missing or null on an assistant turn here while other "
                  f"turns have it; LLaMA-Factory {shape.lf_version}'s OpenAI converter takes len() of it and the whole "
                  "load fails (TypeError; fixed in 0.9.5)", "give every assistant turn \"tool_calls\": [] "
                  "(or upgrade LLaMA-Factory to 0.9.5)", "load")]


# JSON Lines files and JSON arrays at least this big are validated in parallel chunks (one per CPU).
PARALLEL_MIN_BYTES = 64 << 20
_PARSE_KINDS = ("json", "encoding", "duplicate_key")  # RecordParseError kinds; messages start "line N "


def validate_file(path: str | os.PathLike[str], stage: str | None = None, fmt: str | None = None,
                  progress: Progress | None = None, *, keep_indices: bool = False,
                  token_sample: int = 0, parallel_min_bytes: int | None = PARALLEL_MIN_BYTES,
                  workers: int | None = None, schema: bool = False,
                  entry: dict[str, Any] | EntryReading | None = None,
                  lf_version: str | None = None) -> ValidationReport:
    """Validate one dataset file (or a folder of them) for one stage the way LLaMA-Factory will read it.

    ``entry``: read the records through this dataset_info.json entry (its formatting, ranking, columns
    and tags, ``entry.read_entry``) instead of detecting the format; issues name the entry's fields.
    ``lf_version``: the LLaMA-Factory release that reads it (an openai entry depends on it).

    A folder is what LLaMA-Factory makes of a ``file_name`` that is one: every entry is a data file
    of one dataset (``folder.validate_folder``); the report is the folder's, issues name the file.

    ``progress(done_bytes, total_bytes)`` is called as the file is read. ``keep_indices`` keeps the
    index of every invalid record (tests and conversion); ``token_sample`` keeps up to that many
    valid records, spread over the file, for token statistics. JSON Lines files and JSON arrays of
    at least ``parallel_min_bytes`` (None: never) are split at line (record) starts and checked by ``workers``
    processes (default: one per CPU); the merged report is the sequential one, field for field.
    ``schema`` keeps the raw lengths and Arrow-like column types in ``report.raw`` (folders use it).
    """
    from minicpm_tui.core.datasets.formats import FORMATS

    started = time.perf_counter()
    p = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}", where="--format", fix=f"use one of {', '.join(FORMATS)}")
    if stage is not None and stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}", where="--stage", fix=f"use one of {', '.join(STAGES)}")
    reading = _reading(entry, fmt, str(path), lf_version)
    if p.is_dir():
        from minicpm_tui.core.datasets.folder import validate_folder

        return validate_folder(p, stage=stage, fmt=fmt, progress=progress, keep_indices=keep_indices,
                               token_sample=token_sample, parallel_min_bytes=parallel_min_bytes, workers=workers,
                               entry=reading)
    report = ValidationReport(file=str(path), format=None, stage=stage)
    col = _Collector(report, keep_indices)
    if reading is not None:
        _entry_issues(report, col, reading)
        if reading.shape is None:  # the entry leaves nothing to read the records by
            report.seconds = time.perf_counter() - started
            return report
    if not p.is_file():
        gone = missing(p, "file") if not p.exists() else UserError("is not a file", fix="check the path")
        report.file_error = Issue(None, "", gone.message, gone.fix or "", "file")
        col.error(None, "", report.file_error.message, report.file_error.fix, "file")
        return report
    try:
        reader = RecordReader(p, progress)
    except OSError as exc:
        report.file_error = Issue(None, "", f"cannot read it ({exc.strerror})", "check the permissions", "file")
        col.error(None, "", report.file_error.message, report.file_error.fix, "file")
        return report
    block = _first_block(p, reader.total)
    if not token_sample and parallel_min_bytes is not None and reader.total >= parallel_min_bytes \
            and (workers or os.cpu_count() or 1) > 1:
        merged, chunk_block = None, block
        if block is not None:  # chunks need the first block's types before they start
            from minicpm_tui.core.datasets.blocks import first_block

            try:
                chunk_block = first_block(p, reader.total)
            except (OSError, FileLevelError):
                chunk_block = None
        if chunk_block is not None or block is None:  # else a clash or an error in the first block: sequential
            merged = _validate_parallel(p, stage, fmt, progress, keep_indices, workers or os.cpu_count() or 1,
                                        schema, reading, chunk_block)
        if merged is not None:
            merged.seconds = time.perf_counter() - started
            return merged
    if reading is None:
        scan = _scan(report, col, reader, stage, fmt, keep_indices, token_sample, schema=schema, block=block)
    else:
        shape = reading.shape
        stage, stage_problem = resolve_stage(shape, stage)
        report.shape, report.format, report.stage = shape, shape.name, stage
        scan = _scan(report, col, reader, stage, None, keep_indices, token_sample, shape=shape, schema=schema,
                     block=block)
        scan.stage_problem = stage_problem
    _finish(report, col, reader.layout, reader.nan_seen, scan, keep_indices, reading)
    report.seconds = time.perf_counter() - started
    return report


# Every LLaMA-Factory column a record field can be read as (formats.Shape.column).
_LF_COLUMNS = ("prompt", "query", "response", "history", "system", "tools", "messages", "chosen", "rejected",
               "kto_tag", *MEDIA_KEYS)
_FIELD_HEAD = re.compile(r"[^.\[]*")


def _did_you_mean(report: ValidationReport, kinds: dict[str, tuple[str, int]] | None = None) -> None:
    """Where the records have a key that nothing reads and that is close to a field LLaMA-Factory reads
    (``instrction`` for ``instruction``), the issues about that field say so. Once per file, over the kept
    issues only: the records read it as missing, so the verdict stays. The messages column also takes
    the other standard name (``messages`` where an entry reads ``conversations``) or, by ``kinds`` (the
    scan's columns), the one list column nothing reads."""
    shape = report.shape
    if shape is None or not report.columns or not (report.errors or report.warnings or report.file_error):
        return
    import difflib

    from minicpm_tui.core.datasets.formats import MESSAGE_KEYS

    read = {name: key for name in _LF_COLUMNS if (key := shape.column(name))}
    expected = set(read.values())
    unread = [c for c in report.columns if c not in expected]
    if not unread:
        return
    messages = read.get("messages")
    hint: dict[str, str] = {}  # an issue's field (a record field or an entry's column name) -> the record key
    for key in sorted(expected):
        close = difflib.get_close_matches(key, unread, n=1, cutoff=0.8) or \
            difflib.get_close_matches(key.lower(), [c.lower() for c in unread], n=1, cutoff=0.8)
        if not close and key == messages:
            # the one list column nothing reads, only where no record has the turns where they are read
            lists = [c for c in unread if kinds is not None and kinds.get(c, ("",))[0] == "array"] \
                if messages not in report.columns else []
            close = [c for c in unread if c in MESSAGE_KEYS] or (lists if len(lists) == 1 else [])
        if close:
            found = next(c for c in unread if c == close[0] or c.lower() == close[0])
            hint[key] = found
            hint.update({name: found for name, k in read.items() if k == key})
    if not hint:
        return
    # an entry's own mapping is the other way out (register writes none for a detected file)
    remap = f"set \"messages\": {json.dumps(hint[messages])} in the dataset_info.json entry's columns, or " \
        if shape.from_entry and messages in hint else ""
    issues = [*report.errors, *report.warnings] + ([report.file_error] if report.file_error else [])
    for issue in issues:
        head = _FIELD_HEAD.match(issue.field or "")
        key = head.group(0) if head else ""
        found = hint.get(key)
        if found is None or "did you mean?" in issue.message:
            continue
        target = read.get(key, key)
        issue.message += f"; did you mean? the records have {found!r}"
        more = remap if target == messages and issue.kind != "entry" else ""  # an entry issue says "map"
        issue.fix = f"rename {found!r} to {target!r} in the records, or {more}{issue.fix}" if issue.fix else \
            f"rename {found!r} to {target!r} in the records" + (f", or {more.removesuffix(', or ')}" if more else "")


def _misspelt_messages(rec: dict[str, Any]) -> FileLevelError | None:
    """The format error for a first record whose turns sit under a misspelt key (``conversation``): it names
    the key, the one LLaMA-Factory reads, and the entry that reads the file as it is."""
    from minicpm_tui.core.datasets.formats import SHAREGPT_TAGS, misspelt_messages_key

    hit = misspelt_messages_key(rec)
    if hit is None:
        return None
    found, std = hit
    shape = detect_format({std: rec[found]})
    # a columns block unsets what it does not name: the optional columns the record has go in too
    columns = {"messages": found} | {k: k for k in ("system", "tools") if k in rec}
    entry: dict[str, Any] = {"formatting": "sharegpt", "columns": columns}
    if shape is not None and shape.tags != SHAREGPT_TAGS:  # LLaMA-Factory's default tags read from/value
        entry["tags"] = shape.tags
    mapping = json.dumps(entry, ensure_ascii=False)[1:-1]
    return FileLevelError(f"cannot tell the format from the first record ({describe_keys(rec)}); did you mean "
                          f"{std!r}? A sharegpt record's turns go under 'conversations' or 'messages' (or the key its "
                          f"dataset_info.json entry maps as columns.messages), not {found!r}",
                          f"rename {found!r} to {std!r} in every record, or register the file by hand with "
                          f"{mapping} in its dataset_info.json entry (`minicpm-tui register` writes the standard "
                          "keys) and check it with `minicpm-tui validate --dataset-info DIR NAME`",
                          record=0, kind="format", field=found)


def _first_block(p: Path, total: int) -> tuple[int, int | None, dict[str, Any] | None] | None:
    """For a JSON Lines file over one loader block (``blocks.py``): (where the second block starts, None, None)
    (the scan learns the first block's records and column types as it reads them); else None."""
    from minicpm_tui.core.datasets.blocks import LOADER_CHUNK, second_block_start

    if total <= LOADER_CHUNK or FILEEXT2TYPE.get(p.suffix[1:]) != "json":
        return None
    try:
        with open(p, "rb") as f:
            if f.read(4096).lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"[":
                return None  # a JSON array: read whole
        start = second_block_start(p, total)
    except OSError:
        return None
    return None if start is None else (start, None, None)


def _reading(entry: dict[str, Any] | EntryReading | None, fmt: str | None, where: str,
             lf_version: str | None = None) -> EntryReading | None:
    from minicpm_tui.core.datasets.entry import EntryReading, read_entry, refuse_skipped

    if entry is None:
        return None
    if fmt is not None:
        raise UserError("cannot be combined with a dataset_info.json entry", where="--format",
                        fix="drop --format: the entry's formatting decides how LLaMA-Factory reads the data")
    reading = entry if isinstance(entry, EntryReading) else read_entry(entry, lf_version)
    refuse_skipped(reading, where)
    return reading


def _entry_issues(report: ValidationReport, col: _Collector, reading: EntryReading, *,
                  errors: bool = False) -> None:
    """The entry's warnings and notes first; its errors too when no record can be read through it, or
    always with ``errors`` (a folder, whose files then read the entry without its issues). The first
    error is the report's file error."""
    for w in reading.warnings:
        col.warn(None, w.field, w.message, w.fix, w.kind)
    report.notes.extend(reading.notes)
    if errors or reading.shape is None:
        for e in reading.errors:
            if report.file_error is None:
                report.file_error = e
            col.error(e.record, e.field, e.message, e.fix, e.kind, e.file)


class _ScanResult:
    __slots__ = ("records", "valid", "columns", "stats", "stage", "stage_problem", "schema", "absent", "facts",
                 "block", "load", "differs", "types")

    def __init__(self, records: int, valid: int, columns: dict[str, tuple[str, int]], stats: Any,
                 stage: str | None, stage_problem: Issue | None, schema: dict[str, Any] | None = None,
                 absent: set[str] | None = None, facts: dict[str, int | None] | None = None):
        self.records, self.valid, self.columns, self.stats = records, valid, columns, stats
        self.stage, self.stage_problem = stage, stage_problem
        # column -> its Arrow-like type over every object record (``folder.value_type``), when asked
        self.schema = schema
        # an entry's mapped fields that no record has (``Shape.read_columns``)
        self.absent = absent if absent is not None else set()
        # what a checker noted for file-level rules (openai_lf: the first record of each kind of turn)
        self.facts = facts
        # (record, (field, what), first block's records): the first record a later loader block fails on
        self.block: tuple[int, tuple[str, str], int] | None = None
        # (record, field, message, fix): what else stops the loader's whole load (a CSV chunk's cast)
        self.load: tuple[int, str, str, str] | None = None
        # a parallel chunk's: a record after the first block with a value of another kind there (blocks._ok)
        self.differs = False
        # a JSON array chunk's column types (blocks.BlockTypes), to find a nested clash between chunks
        self.types: dict[str, Any] | None = None


def _scan(report: ValidationReport, col: _Collector, reader: RecordReader, stage: str | None,
          fmt: str | None, keep_indices: bool, token_sample: int,
          shape: Shape | None = None, schema: bool = False,
          block: tuple[int, int | None, dict[str, Any] | None] | None = None) -> _ScanResult:
    """The per-record loop. With ``shape`` given (a parallel chunk) the format is not detected.

    With ``schema`` it also infers each column's Arrow-like type, as the loader would over the file.
    With ``block`` (``_first_block``) records after the loader's first block are checked against its types,
    learnt from the records before (or given: a parallel chunk).
    """
    from minicpm_tui.core.datasets.blocks import (
        DIFFERS,
        BlockTypes,
        compile_schema,
        nested_clash,
        record_problem,
    )
    from minicpm_tui.core.datasets.folder import SCALAR_TYPES, unify_types, value_type
    from minicpm_tui.core.datasets.stats import StatsCollector

    sigs: dict[str, Any] | None = {} if schema else None
    scalar_type = SCALAR_TYPES.get

    keep_indices = col.keep
    stats = StatsCollector(token_sample)
    lens = stats.add
    warn = col.warn
    check = make_checker(shape, stage) if shape is not None else None
    columns: dict[str, tuple[str, int]] = {}  # key -> (JSON kind, first record with it)
    col_types: dict[str, type] = {}  # key -> the Python type it had there (a shortcut for the same kind)
    first_type = col_types.get
    records = valid = 0
    error = col.error
    invalid_idx = report.invalid_indices
    pending: list[tuple[int, Any]] = []  # records before the shape is known (all non-objects)
    stage_problem: Issue | None = None
    absent = set(shape.read_columns()) if shape is not None else set()
    block_hit: tuple[int, tuple[str, str], int] | None = None
    if block is not None:
        block_start, block_records, block_schema = block
    # What pyarrow / pandas type at once (a JSON Lines block, a JSON array) must have one kind per nested
    # field too (blocks.BlockTypes): every record is typed in the first block (or the one read), and in a
    # later block once one of its records has another kind than the first block there (then that block's
    # earlier records are read again), since until then they all have the first block's kinds.
    types: BlockTypes | None = None
    first_types: BlockTypes | None = None
    blk_start, blk_first = 0, 0  # the current later block: where it starts, its first record
    differs = False  # a parallel chunk's record with another kind than the first block's (sequential types it)
    # pyarrow infers each loader block alone: a kind that changes from one block to the next is a cast
    # (blocks.py), not a clash, so kinds are compared within a block. Parallel chunks compare them over the
    # chunk: a clash there sends the file back to this sequential scan.
    kinds = columns  # key -> (JSON kind, first record with it) in the current block
    bounds: list[int] = []
    if block is not None and reader.byte_range is None:
        from minicpm_tui.core.datasets.blocks import block_starts

        bounds = block_starts(reader.path, reader.total)[::-1]

    def start(rec: Any) -> None:
        nonlocal shape, check, stage, stage_problem
        shape = detect_format(rec, fmt)
        if shape is None:
            misspelt = _misspelt_messages(rec)
            if misspelt is not None:
                raise misspelt
            raise FileLevelError(f"cannot tell the format from the first record ({describe_keys(rec)})",
                                 "use alpaca (instruction/input/output) or sharegpt (a conversations/messages "
                                 "list); see data/README.md of LLaMA-Factory", record=0, kind="format")
        report.shape = shape
        report.format = shape.name
        stage, stage_problem = resolve_stage(shape, stage)
        report.stage = stage

    # pyarrow's pieces of a loader block (blocks.piece_starts): a number and a text that reads as one, each in
    # its own pieces of the block, load (key -> [the kind in this piece or None, its record, a number's record])
    pieces: list[int] = []
    piece_start = 0
    mixed: dict[str, list[Any]] = {}

    reader.on_note = warn
    try:
        it = iter(reader)
        if reader.layout in ("lines", "array") and (block is None or block[2] is None):
            types = first_types = BlockTypes()
        if reader.layout == "lines" and reader.byte_range is None:
            from minicpm_tui.core.datasets.blocks import numeric_mix, numeric_text, piece_starts

            pieces = piece_starts(reader.path, reader.total)[::-1]
        known = getattr(check, "known_types", None)
        for idx, rec in it:
            records += 1
            if type(rec) is RecordParseError:
                error(idx, "", rec.message, rec.fix, rec.kind)
                if keep_indices:
                    invalid_idx.append(idx)
                continue
            if check is None:
                if type(rec) is not dict:
                    pending.append((idx, rec))
                    continue
                start(rec)
                # Columns are the union over the file; optional ones are looked up with .get().
                check = make_checker(shape, stage)
                known = check.known_types
                for pidx, prec in pending:
                    error(pidx, "", f"is a JSON {json_kind(prec)}, not an object",
                          "make every record a JSON object", "not_object")
                    if keep_indices:
                        invalid_idx.append(pidx)
                pending.clear()
            if reader.dup_key is not None and reader.layout == "array":
                warn(idx, reader.dup_key, "appears twice in this record; LLaMA-Factory keeps the last value",
                     "keep one", "duplicate_key")
            problem = None
            if type(rec) is dict:
                if absent:
                    absent.difference_update(rec)
                if bounds and reader.pos >= bounds[-1]:  # the first record of the loader's next block
                    while bounds and reader.pos >= bounds[-1]:
                        blk_start = bounds.pop()
                    blk_first = idx
                    kinds = {}
                    col_types.clear()
                    types = None
                    mixed.clear()
                if pieces and reader.pos >= pieces[-1]:  # the first record of one of pyarrow's pieces
                    while pieces and reader.pos >= pieces[-1]:
                        piece_start = pieces.pop()
                    for m in mixed.values():
                        m[0] = None
                for k, v in rec.items():
                    if first_type(k) is type(v):
                        continue  # the usual case: same Python type as where the key was first seen
                    if v is None:
                        continue
                    kind = _KINDS.get(type(v), "other")
                    seen = kinds.get(k)
                    if seen is None:
                        kinds[k] = (kind, idx)
                        col_types[k] = type(v)
                        if k not in columns:
                            columns[k] = (kind, idx)
                        continue
                    m = mixed.get(k)
                    if m is not None and (kind == "number" or kind == "string"):
                        if m[0] is not None and m[0] != kind:  # both kinds in one piece
                            seen = (m[0], m[1])
                        elif kind == "string" and not numeric_text(v):
                            seen = ("number", m[2])
                        else:
                            if m[0] is None:
                                m[0], m[1] = kind, idx
                            continue
                    elif seen[0] != kind and piece_start and (seen[0], kind) in _NUMERIC_MIX \
                            and (kind == "number" or numeric_text(v)) \
                            and numeric_mix(reader.path, blk_start, piece_start, reader.pos, k):
                        mixed[k] = [kind, idx, idx if kind == "number" else seen[1]]
                        col_types.pop(k, None)  # every later value of it is looked at
                        continue
                    if seen[0] != kind:
                        problem = (k, f"is a JSON {kind} here but a {seen[0]} in record {seen[1]}; LLaMA-Factory's "
                                   "loader (Arrow) fails on a field with mixed types", f"make {k!r} a {seen[0]} in "
                                   "every record, or drop it", "mixed_types")
                        break
                if block is not None and reader.pos >= block_start:
                    if block_schema is None:  # the first record after the first block
                        block_schema, block_records = compile_schema(first_types.sigs), idx
                    hit = record_problem(rec, block_schema)
                    if hit is DIFFERS:
                        if types is not None:
                            pass  # this block is typed already
                        elif reader.byte_range is None:
                            types = _retype(reader.path, blk_start, reader.pos, blk_first)
                        else:
                            differs = True
                    elif hit is not None:
                        block_hit, block = (idx, hit, block_records), None  # the first one stops the load
                if sigs is not None:
                    for k, v in rec.items():
                        t = scalar_type(type(v)) or value_type(v)
                        cur = sigs.get(k)
                        if cur != t:
                            sigs[k] = t if cur is None else unify_types(cur, t)
            if problem is None:
                measured = len(stats.chars) if types is not None else 0
                problem = check(rec, idx, warn, lens)
                if types is not None and type(rec) is dict:  # after the check: vouched-for columns are not walked
                    clash = types.add(rec, idx, known(rec, idx) if problem is None and known else None)
                    if clash is not None and problem is None:
                        problem = nested_clash(clash[0], clash[1], rec[clash[0]], idx, types.history.get(clash[0], []))
                        del stats.chars[measured:], stats.turns[measured:]  # not a usable record after all
            elif types is not None and type(rec) is dict:
                types.add(rec, idx)
            if problem is None:
                valid += 1
                stats.keep(idx, rec)
            else:
                error(idx, *problem)
                if keep_indices:
                    invalid_idx.append(idx)
    except FileLevelError as exc:
        report.file_error = Issue(exc.record, exc.field, exc.message, exc.fix, exc.kind)
        error(exc.record, exc.field, exc.message, exc.fix, exc.kind)
    for pidx, prec in pending:
        error(pidx, "", f"is a JSON {json_kind(prec)}, not an object", "make every record a JSON object",
              "not_object")
        if keep_indices:
            invalid_idx.append(pidx)
    out = _ScanResult(records, valid, columns, stats, stage, stage_problem, sigs, absent,
                      getattr(check, "facts", None))
    out.block = block_hit
    out.load = reader.load_issue
    out.differs = differs
    out.types = types.sigs if types is not None and reader.layout == "array" else None
    return out


def _retype(path: Path, start: int, stop: int, first: int) -> Any:
    """The types of a later loader block's records in [start, stop) (numbered from ``first``): all of the first
    block's kinds (``_scan``), so no clash among them; the records after them are compared with these."""
    from minicpm_tui.core.datasets.blocks import BlockTypes

    types = BlockTypes()
    for i, rec in RecordReader(path, byte_range=(start, stop)):
        if type(rec) is dict:
            types.add(rec, first + i)
    return types


def _finish(report: ValidationReport, col: _Collector, layout: str, nan_seen: bool, scan: _ScanResult,
            keep_indices: bool, reading: EntryReading | None = None) -> None:
    error = col.error
    records, stage_problem = scan.records, scan.stage_problem
    report.layout = layout
    report.records = records
    report.valid = scan.valid
    report.invalid = records - scan.valid
    report.columns = list(scan.columns)
    if records == 0 and report.file_error is None:
        report.file_error = Issue(None, "", "holds no records", "add at least one record", "empty")
        error(None, "", "holds no records", "add at least one record", "empty")
    if reading is None:
        if stage_problem is not None and report.file_error is None:
            report.file_error = stage_problem
            error(None, stage_problem.field, stage_problem.message, stage_problem.fix, "stage")
    else:
        # The entry's own errors, what it makes the stage refuse, the mapped fields no record has: each
        # fails (or empties) LLaMA-Factory's load as a whole.
        problems = [*reading.errors, *([stage_problem] if stage_problem else [])]
        if records:
            problems += _absent_problems(report.shape, scan.absent, report.columns)
            problems += _release_problems(report.shape, scan.facts)
            if scan.facts is not None:
                from minicpm_tui.core.datasets.media import media_problems
                from minicpm_tui.core.datasets.openai_lf import openai_problems, openai_warnings

                problems += openai_problems(report.shape, scan.facts) + media_problems(report.shape, scan.facts, records)
                report.warnings += openai_warnings(report.shape, scan.facts)
        for pr in problems:
            if report.file_error is None:
                report.file_error = pr
            error(pr.record, pr.field, pr.message, pr.fix, pr.kind)
    loads = [Issue(*scan.load, "load")] if scan.load is not None else []
    if scan.block is not None:
        from minicpm_tui.core.datasets.blocks import block_issue

        loads.append(block_issue(*scan.block))
    for pr in loads:
        if report.file_error is None:
            report.file_error = pr
        error(pr.record, pr.field, pr.message, pr.fix, pr.kind)
    if report.file_error is not None and report.file_error.kind in WHOLE_KINDS:
        report.valid, report.invalid = 0, records
        if keep_indices:
            report.invalid_indices[:] = range(records)
    if nan_seen and layout == "array":
        col.warn(None, "", "holds NaN/Infinity, which is not JSON; LLaMA-Factory's loader reads it as null",
                 "write null (or a number) instead", "nan")
    report.stats = scan.stats.result()
    report.token_sample = scan.stats.sample
    if scan.schema is not None:
        report.raw = scan
    _did_you_mean(report, scan.columns)


# -- parallel JSON Lines / arrays ------------------------------------------------------------------------
_shared_done: Any = None  # per-worker bytes done (a shared array), set in each worker


def _init_worker(shared: Any) -> None:
    global _shared_done
    _shared_done = shared


def _chunk_worker(task: tuple[str, int, int, int, Shape, str, bool, str, bool, bool, Any]) -> tuple:
    """Validate the lines (or array records) in [start, stop) as if they were a file of their own."""
    path, slot, start, stop, shape, stage, keep_indices, layout, last, schema, block = task
    done = _shared_done

    def progress(n: int, _total: int) -> None:
        done[slot] = n

    report = ValidationReport(file=path, format=shape.name, stage=stage)
    col = _Collector(report, keep_indices)
    if layout == "array":
        reader = RecordReader(path, progress, array_range=(start, stop, last))
    else:
        reader = RecordReader(path, progress, byte_range=(start, stop))
    scan = _scan(report, col, reader, stage, None, keep_indices, 0, shape=shape, schema=schema, block=block)
    # Any file-level error, or a split the chunk could not confirm, sends the file back to
    # the sequential path (which names the error exactly as it always has).
    return (report.errors, report.error_counts, report.warnings, report.warning_counts, scan.records,
            scan.valid, scan.columns, scan.stats.chars, scan.stats.turns, report.invalid_indices,
            reader.lines_read, report.file_error is not None or not reader.split_ok or scan.differs, reader.nan_seen,
            scan.schema, scan.absent, scan.facts, scan.block, scan.types)


def _types_clash(types: dict[str, Any], more: dict[str, Any]) -> bool:
    """Unify a chunk's column types into ``types``; whether a nested field gets a second kind."""
    from minicpm_tui.core.datasets.folder import _has, union_types

    for k, t in more.items():
        cur = types.get(k)
        new = t if cur is None else union_types(cur, t)
        if type(new) is tuple and _has(new, "mixed"):
            return True
        types[k] = new
    return False


def _split_lines(path: Path, total: int, n: int) -> list[tuple[int, int]]:
    bounds = [0]
    with open(path, "rb") as f:
        for k in range(1, n):
            f.seek(max(k * total // n, bounds[-1]))
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                f.readline()  # to the start of the next line (or stay, if at one)
            pos = f.tell()
            if bounds[-1] < pos < total:
                bounds.append(pos)
    bounds.append(total)
    return list(zip(bounds, bounds[1:], strict=False))


# A candidate split between two array records: '}' ',' '{' with JSON whitespace around the comma.
# It may lie inside a string; the chunk before it confirms it (RecordReader.split_ok).
_ARRAY_SEP = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")
_SPLIT_WINDOW = 1 << 20


def _best_separator(window: bytes, at: int) -> int:
    """The file offset of the likeliest record start in ``window`` (read at ``at``), or -1.

    A raw newline never occurs inside a JSON string, so a separator holding one is outside
    strings; among those the least indented '{' is the likeliest top-level record (nested lists
    of objects are indented deeper). Without newlines (a compact array) the first match it is.
    """
    first = -1
    best, best_indent = -1, 1 << 30
    for m in _ARRAY_SEP.finditer(window):
        if first < 0:
            first = m.end() - 1
        sep = m.group()
        nl = sep.rfind(b"\n")
        if nl >= 0 and len(sep) - 2 - nl < best_indent:
            best, best_indent = m.end() - 1, len(sep) - 2 - nl
            if best_indent == 0:
                break
    pick = best if best >= 0 else first
    return -1 if pick < 0 else at + pick


def _split_array(path: Path, total: int, n: int) -> list[tuple[int, int]]:
    """Candidate chunk bounds for a JSON array: each the offset of a '{' after '},' (unverified)."""
    bounds = [0]
    with open(path, "rb") as f:
        for k in range(1, n):
            at = max(k * total // n, bounds[-1] + 1)
            found = -1
            for _ in range(16):  # a record over 16 MB long: no split here
                if at >= total:
                    break
                f.seek(at)
                window = f.read(_SPLIT_WINDOW + 64)  # overlap: a separator across two windows
                found = _best_separator(window, at)
                if found >= 0:
                    break
                at += _SPLIT_WINDOW
            if bounds[-1] < found < total:
                bounds.append(found)
    bounds.append(total)
    return list(zip(bounds, bounds[1:], strict=False))


def _validate_parallel(p: Path, stage: str | None, fmt: str | None, progress: Progress | None,
                       keep_indices: bool, workers: int, schema: bool = False,
                       reading: EntryReading | None = None,
                       block: tuple[int, int, dict[str, Any]] | None = None) -> ValidationReport | None:
    """The report for a big JSON Lines file or JSON array from parallel chunks, or None to go sequential.

    Array chunks start at candidate record starts (``_split_array``); each chunk but the last
    confirms that a record starts exactly where the next chunk begins, else the file goes
    sequential, so a candidate inside a string never reaches the report.

    Chunks know the shape (from record 0) but not each other, so the merge is exact only when
    nothing in one chunk depends on another: record/line numbers are offset, capped lists are
    refilled in order, and a key whose JSON kind differs between chunks (or any mixed-types
    error, whose message names the first record with the key) sends the file back to the
    sequential path.
    """
    import multiprocessing as mp
    import threading

    from minicpm_tui.core.datasets.stats import StatsCollector

    try:
        head = RecordReader(p)
        first = next(iter(head), None)
    except FileLevelError:
        return None
    layout = head.layout
    if layout not in ("lines", "array") or first is None or first[0] != 0 or type(first[1]) is not dict:
        return None
    shape = reading.shape if reading is not None else detect_format(first[1], fmt)
    if shape is None:
        return None
    stage, stage_problem = resolve_stage(shape, stage)
    total = head.total
    ranges = (_split_lines if layout == "lines" else _split_array)(p, total, workers)
    if len(ranges) < 2:
        return None
    # fork is cheap, but only safe in a single-threaded process (the TUI validates from a thread).
    ctx = mp.get_context("fork" if threading.active_count() == 1 else "spawn")
    shared = ctx.Array("q", len(ranges), lock=False)
    tasks = [(str(p), i, a, b, shape, stage, keep_indices, layout, i == len(ranges) - 1, schema,
              block if layout == "lines" else None)
             for i, (a, b) in enumerate(ranges)]
    with ctx.Pool(len(ranges), initializer=_init_worker, initargs=(shared,)) as pool:
        pending = pool.map_async(_chunk_worker, tasks, chunksize=1)
        while not pending.ready():
            pending.wait(0.25)
            if progress is not None:
                progress(min(sum(shared), total), total)
        results = pending.get()

    report = ValidationReport(file=str(p), format=shape.name, stage=stage)
    report.shape = shape
    col = _Collector(report, keep_indices)
    if reading is not None:
        _entry_issues(report, col, reading)
    absent: set[str] | None = None  # mapped fields in no chunk's records
    stats = StatsCollector(0)
    columns: dict[str, tuple[str, int]] = {}
    sigs: dict[str, Any] | None = {} if schema else None
    base_rec = base_line = records = valid = 0
    nan_seen = False
    facts: dict[str, int | None] | None = None  # each the first record over the chunks
    block_hit = None  # the first chunk's
    types: dict[str, Any] = {}  # a JSON array's column types over the chunks (one read: pandas)
    for errors, error_counts, warnings, warning_counts, n, ok, cols, chars, turns, bad, lines, failed, nan, \
            chunk_sigs, chunk_absent, chunk_facts, chunk_block, chunk_types in results:
        if chunk_types and _types_clash(types, chunk_types):
            return None  # a nested clash between two chunks: the sequential path names its record
        if chunk_block is not None and block_hit is None:
            block_hit = (chunk_block[0] + base_rec, *chunk_block[1:])
        nan_seen = nan_seen or nan
        if chunk_facts is not None:
            facts = facts or dict.fromkeys(chunk_facts)
            if None not in (facts.get("args_kind"), chunk_facts.get("args_kind")) \
                    and facts["args_kind"] != chunk_facts["args_kind"]:
                return None  # a mixed-types error across chunks: the sequential path words it
            for k, v in chunk_facts.items():
                if isinstance(v, list):  # media.KTO_ANSWERS: each chunk's, in record order
                    facts[k] = (facts[k] or []) + [(i + base_rec, *rest) for i, *rest in v]
                elif isinstance(v, dict):  # the openai tool lists' struct
                    from minicpm_tui.core.datasets.openai_lf import merge_tool_facts

                    facts[k] = merge_tool_facts(facts[k], v, base_rec)
                elif v is not None and facts[k] is None:
                    facts[k] = v if isinstance(v, str) else v + base_rec
        absent = set(chunk_absent) if absent is None else absent & chunk_absent
        if sigs is not None:
            from minicpm_tui.core.datasets.folder import unify_types

            for k, t in chunk_sigs.items():
                sigs[k] = t if k not in sigs else unify_types(sigs[k], t)
        if failed or error_counts.get("mixed_types"):
            return None
        for k, (kind, i) in cols.items():
            seen = columns.get(k)
            if seen is None:
                columns[k] = (kind, i + base_rec)
            elif seen[0] != kind:
                return None
        for e in errors:
            msg = e.message
            if base_line and e.kind in _PARSE_KINDS and msg.startswith("line "):
                num, _, rest = msg[5:].partition(" ")
                msg = f"line {int(num) + base_line} {rest}"
            if col.per_kind[e.kind] < MAX_ERRORS_PER_KIND:
                col.per_kind[e.kind] += 1
                report.errors.append(Issue(None if e.record is None else e.record + base_rec, e.field, msg,
                                           e.fix, e.kind))
        report.error_counts.update(error_counts)
        for w in warnings:
            if len(report.warnings) < MAX_WARNINGS:
                report.warnings.append(Issue(None if w.record is None else w.record + base_rec, w.field,
                                             w.message, w.fix, w.kind))
        report.warning_counts.update(warning_counts)
        stats.chars.extend(chars)
        stats.turns.extend(turns)
        report.invalid_indices.extend(i + base_rec for i in bad)
        records += n
        valid += ok
        base_rec += n
        base_line += lines
    if progress is not None:
        progress(total, total)
    scan = _ScanResult(records, valid, columns, stats, stage, stage_problem, sigs, absent, facts)
    scan.block = block_hit
    _finish(report, col, layout, nan_seen, scan, keep_indices, reading)
    return report
