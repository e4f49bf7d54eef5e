"""Records of a ``"formatting": "openai"`` entry, checked the way LLaMA-Factory's OpenAIDatasetConverter reads them.

The converter (llamafactory/data/converter.py, 0.9.4 and later; 0.9.2-0.9.3 fail on the name) differs
from the sharegpt one in ways that change verdicts, so it is replayed here step by step:

- a leading ``system_tag`` turn is the system prompt, else the entry's system column;
- an assistant (or function) turn with a non-empty ``tool_calls`` list becomes a function turn whose
  content is ``json.dumps([call["function"] for call in tool_calls])`` (its own content is ignored);
- ``observation_tag`` turns are collected and merged into ONE observation turn before the next turn;
  trailing ones (nothing after them) are dropped without a word;
- every other role is looked up in the tag map BEFORE the role order is checked: a role that is no tag
  of the entry fails the whole load (KeyError), where sharegpt only skips the record;
- then roles must alternate user/observation, assistant/function, and the count be even (odd for
  ranking), else the record is skipped; ranking answers must have the role "assistant" or "function"
  literally (only logged) and a role of the tag map (else KeyError);
- the system prompt: none and no tools -> "detailed thinking off"; one without tools -> "\\ndetailed
  thinking off" appended unless it says "detailed thinking on/off"; with tools -> "\\n" appended.
  A truthy system prompt that is not a string fails the load. Tools may be a JSON list (dumped).

Records are read as Arrow hands them over: a key another message has is null here. Arrow reads a column
as one schema for the whole file, so two rules need the whole file (``openai_problems``): a call whose
function lacks "name" or "arguments" is fine when some call has it (null then) and stops the run in the
template's function formatter when none has (KeyError); and tool lists written as JSON (not text) share
one struct, so a tool lacking a parameter name (or "required") some other tool has gets it as null, which
the default tool formatter (the MiniCPM templates') raises on.
"""

from __future__ import annotations

import json
from typing import Any

from minicpm_tui.core.datasets.formats import Shape, json_kind, skipped

THINKING_OFF = "detailed thinking off"
# LLaMA-Factory's own role values (data_utils.Role): what the aligned turns and ranking answers are checked by.
_ODD = ("user", "observation")
_EVEN = ("assistant", "function")


def _calls_problem(calls: Any) -> tuple[str, str] | None:
    """Why ``[call["function"] for call in tool_calls]`` and the template's function formatter fail, or None."""
    if type(calls) is not list:
        return (f"is a JSON {json_kind(calls)}, not a list of calls; LLaMA-Factory's OpenAI converter fails on it",
                "write tool_calls as [{\"type\": \"function\", \"function\": {\"name\": ..., \"arguments\": ...}}]")
    for k, call in enumerate(calls):
        if type(call) is not dict or type(call.get("function")) is not dict:
            what = f"is a JSON {json_kind(call)}" if type(call) is not dict else \
                "has no \"function\" object" if call.get("function") is None else \
                f"has a \"function\" that is a JSON {json_kind(call['function'])}"
            return (f"[{k}] {what}; LLaMA-Factory reads call[\"function\"] and fails",
                    "give every call a \"function\": {\"name\": ..., \"arguments\": ...} object")
    return None


# What the template's function formatter reads of each call's function, and the fact naming the first record
# with a call that has it.
CALL_KEYS = (("name", "name_key"), ("arguments", "args_key"))


# What the default tool formatter (every MiniCPM template's) prints of a tool and of each of its parameters with
# str.format: a key Arrow filled with null prints "None" (tool_utils.DefaultToolUtils.tool_formatter, 0.9.4-0.9.5).
TOOL_TEXT_KEYS = ("description",)
PARAM_TEXT_KEYS = ("type", "description")

ToolPart = tuple[str, frozenset[str], bool, frozenset[str], frozenset[tuple[str, frozenset[str]]]]


def _tool_parts(tools: list[Any]) -> tuple[ToolPart, ...] | None:
    """Each tool of a JSON tool list as Arrow's struct sees it: (its path: "" or "function" for an OpenAI
    {"type": "function", "function": ...} wrapper, its parameter names, whether it has "required", the
    printed tool keys it has, each parameter's printed keys); None for a list the tool checks refuse anyway."""
    out = []
    for tool in tools:
        if type(tool) is not dict:
            return None
        path, fn = ("function", tool.get("function")) if tool.get("type") == "function" else ("", tool)
        params = fn.get("parameters") if type(fn) is dict else None
        props = params.get("properties") if type(params) is dict else None
        if type(props) is not dict:
            return None
        printed = frozenset(k for k in TOOL_TEXT_KEYS if k in fn)  # type: ignore[operator]
        fields = frozenset((name, frozenset(k for k in PARAM_TEXT_KEYS if k in p))
                           for name, p in props.items() if type(p) is dict)
        out.append((path, frozenset(props), "required" in params, printed, fields))  # type: ignore[operator]
    return tuple(out)


def new_tool_facts() -> dict[str, Any]:
    return {"names": {}, "required": {}, "kept": {}, "printed": {}, "fields": {}}


def note_tool_parts(known: dict[str, Any], parts: tuple[ToolPart, ...]) -> None:
    """Add a tool list's parts to the file's struct: the union Arrow reads every tool with."""
    for path, names, req, printed, fields in parts:
        known["names"].setdefault(path, set()).update(names)
        known["required"][path] = known["required"].get(path, False) or req
        known["printed"].setdefault(path, set()).update(printed)
        by_param = known["fields"].setdefault(path, {})
        for param, keys in fields:
            by_param.setdefault(param, set()).update(keys)


def merge_tool_facts(into: dict[str, Any] | None, part: dict[str, Any], base: int) -> dict[str, Any]:
    """The ``facts["tools"]`` of a file from those of its chunks (``part``'s records start at ``base``)."""
    into = into or new_tool_facts()
    for path, names in part["names"].items():
        into["names"].setdefault(path, set()).update(names)
    for path, req in part["required"].items():
        into["required"][path] = into["required"].get(path, False) or req
    for path, printed in part["printed"].items():
        into["printed"].setdefault(path, set()).update(printed)
    for path, by_param in part["fields"].items():
        mine = into["fields"].setdefault(path, {})
        for param, keys in by_param.items():
            mine.setdefault(param, set()).update(keys)
    for parts, idx in part["kept"].items():
        into["kept"].setdefault(parts, idx + base)
    return into


def openai_warnings(shape: Shape | None, facts: dict[str, Any] | None) -> list[Any]:
    """Tool text that Arrow's one struct per file changes without an error: a tool (or a parameter) lacking a
    printed key that another tool (or the same parameter of another tool) has gets it as null, and the default
    tool formatter prints "None" there ("Tool Description: None", "- city (string): None"). One warning for
    the first kept record it happens to."""
    from minicpm_tui.core.datasets.validate import Issue

    tools = (facts or {}).get("tools")
    if shape is None or shape.converter != "openai" or not tools:
        return []
    first: tuple[int, str] | None = None
    for parts, idx in tools["kept"].items():
        if first is not None and first[0] <= idx:
            continue
        for path, _names, _req, printed, fields in parts:
            lost = sorted(set(tools["printed"].get(path, ())) - printed)
            if lost:
                first = (idx, f"a tool without \"{lost[0]}\" (another tool in the file has one)")
                break
            by_param = tools["fields"].get(path, {})
            gap = next(((param, sorted(by_param.get(param, set()) - keys)) for param, keys in sorted(fields)
                        if by_param.get(param, set()) - keys), None)
            if gap is not None:
                first = (idx, f"parameter {gap[0]!r} without \"{gap[1][0]}\" (the same parameter of another tool "
                              "has one)")
                break
    if first is None:
        return []
    return [Issue(first[0], shape.column("tools") or "", f"is a JSON list of tools with {first[1]}: LLaMA-Factory's "
                  "loader (Arrow) reads every tool of the file with one struct and fills the key with null, which "
                  "the tool prompt then prints as \"None\"; training goes on, on that text", "give every tool "
                  "(and every parameter) the key, or write each record's tools as JSON text (json.dumps of the "
                  "list)", "tool_text")]


def openai_problems(shape: Shape | None, facts: dict[str, Any] | None) -> list[Any]:
    """What Arrow's one schema per file makes of kept records (see the module doc): one issue (kind "load",
    the run stops at that record) per rule."""
    from minicpm_tui.core.datasets.validate import Issue

    if shape is None or shape.converter != "openai" or not facts:
        return []
    out = []
    for key, fact in CALL_KEYS:
        at = facts.get(f"no_{key}")
        if at is not None and facts.get(fact) is None:
            out.append(Issue(at, facts[f"no_{key}_field"], f"has a call whose function has no \"{key}\", and no call "
                             f"in the file has one: LLaMA-Factory's loader (Arrow) then reads the calls without "
                             f"that field and the template's function formatter raises on this record (KeyError: "
                             f"'{key}'), which stops the run", f"give every call's function \"{key}\" "
                             + ("(an object, {} for a call without arguments)" if key == "arguments" else
                                "(the tool's name)"), "load"))
    tools = facts.get("tools")
    first: tuple[int, list[str]] | None = None
    for parts, idx in (tools or {}).get("kept", {}).items():
        if first is not None and first[0] <= idx:
            continue
        for path, names, req, *_ in parts:
            union = tools["names"][path]
            if union - names or (union and not req and tools["required"][path]):
                first = (idx, sorted(union - names))
                break
    if first is not None:
        tools_key = shape.column("tools") or ""
        lacking = first[1]
        what = f"the parameters other records' tools have ({', '.join(map(repr, lacking[:5]))}" \
            f"{', ...' if len(lacking) > 5 else ''}) as null, which" if lacking else \
            "\"required\": null (other records' tools have it), which"
        out.append(Issue(first[0], tools_key, f"is a JSON list of tools, read by LLaMA-Factory's loader (Arrow) "
                         f"as one schema for the whole file: a tool here gets {what} the template's tool formatter "
                         "raises on, and the run stops at this record", "write each record's tools as JSON text "
                         "(json.dumps of the list): text keeps every record's own tools", "load"))
    return out


def openai_checker(shape: Shape, stage: str):
    """The per-record check for a ``formatting: openai`` entry (``validate.make_checker``)."""
    from minicpm_tui.core.datasets.validate import (
        _function_json_problem,
        _kto_in_sft,
        _kto_label_problem,
        _tools_problem,
        messages_problem,
    )

    t = shape.tags
    role_tag, content_tag = t["role_tag"], t["content_tag"]
    user, assistant, observation = t["user_tag"], t["assistant_tag"], t["observation_tag"]
    function, system_tag = t["function_tag"], t["system_tag"]
    # Built as the converter builds it: an unset (None) tag is a key too, the last one wins.
    tag_map: dict[Any, str] = {user: "user", assistant: "assistant", observation: "observation",
                               function: "function", system_tag: "system"}
    calls_roles = (assistant, function)
    known = ", ".join(sorted(repr(k) for k in tag_map if k is not None))
    mkey = shape.messages_key
    system_key, tools_key = shape.column("system"), shape.column("tools")
    pair_keys = (shape.column("chosen") or "chosen", shape.column("rejected") or "rejected")
    kto_col = shape.kto_column(stage)  # the converter reads an entry's kto_tag at every stage
    ranking = shape.ranking
    # For file-level rules: the first record with a tool_calls key, with an answer without one (0.9.4 fails
    # then), and the JSON kind of the calls' arguments where first seen (Arrow fails on two kinds); the
    # first record with a call that has a name / arguments key, and the first kept one with a call without
    # it (and that call's field); the tool lists' struct ("tools": openai_problems).
    facts: dict[str, Any] = {"calls_key": None, "no_calls": None, "args_kind": None, "args_at": None,
                             "name_key": None, "args_key": None, "no_name": None, "no_name_field": None,
                             "no_arguments": None, "no_arguments_field": None, "tools": None}

    def note_calls(calls: Any, idx: int) -> None:
        """Which call keys Arrow's schema has: any call's, in any turn, valid record or not."""
        if type(calls) is list:
            for c in calls:
                fn = c.get("function") if type(c) is dict else None
                if type(fn) is dict:
                    for key, fact in CALL_KEYS:
                        if facts[fact] is None and key in fn:
                            facts[fact] = idx

    def note_tools(tools: list[Any]) -> tuple[ToolPart, ...] | None:
        """A JSON tool list's part in the column's struct (every record's, valid or not)."""
        parts = _tool_parts(tools)
        if parts:
            facts["tools"] = facts["tools"] or new_tool_facts()
            note_tool_parts(facts["tools"], parts)
        return parts

    def kept(idx: int, parts: Any, lacking: dict[str, str] | None) -> None:
        """A record the converter keeps: its tool list's parts and calls without a key, for openai_problems."""
        if parts:
            facts["tools"]["kept"].setdefault(parts, idx)
        for key, fld in (lacking or {}).items():
            if facts[f"no_{key}"] is None:
                facts[f"no_{key}"], facts[f"no_{key}_field"] = idx, fld

    def name(at: int | str, leaf: str) -> str:
        """A field's name, built only for an issue: ``messages[j].leaf`` (a turn) or ``chosen.leaf``."""
        return f"{mkey}[{at}].{leaf}" if type(at) is int else f"{at}.{leaf}"

    def content_problem(c: Any, role: str, at: int | str, leaf: str) -> tuple[str, str, str, str] | None:
        """What the template does with one aligned turn's content."""
        if type(c) is not str:
            what = "is missing" if c is None else f"is a JSON {json_kind(c)}, not a string"
            return (name(at, leaf), what + " (LLaMA-Factory's template raises on it)",
                    "write every turn's content as text", "type")
        if role == "function":
            problem = _function_json_problem(c)
            if problem:
                return (name(at, leaf), problem, "write [{\"name\": ..., \"arguments\": {...}}] as JSON text",
                        "function_call")
        return None

    def check(rec: Any, idx: int, warn, lens) -> tuple[str, str, str, str] | None:
        problem = messages_problem(rec, mkey, role_tag, content_tag, "; LLaMA-Factory's OpenAI converter fails on it")
        if problem:
            return problem
        msgs = rec[mkey]
        if facts["name_key"] is None or facts["args_key"] is None:
            for m in msgs:
                if "tool_calls" in m:
                    note_calls(m["tool_calls"], idx)
        tool_list = rec.get(tools_key) if tools_key else None
        parts = note_tools(tool_list) if type(tool_list) is list else None
        lacking: dict[str, str] | None = None  # call keys a call here lacks -> that call's field
        n = len(msgs)
        start = 0
        if system_tag is not None and n and msgs[0].get(role_tag) == system_tag:
            system, sys_field, start = msgs[0].get(content_tag), f"{mkey}[0].{content_tag}", 1
        else:
            system, sys_field = (rec.get(system_key) if system_key else ""), system_key or ""
        tools = rec.get(tools_key) if tools_key else ""
        if isinstance(tools, (dict, list)):
            tools = json.dumps(tools, ensure_ascii=False)
        if system and type(system) is not str:
            return (sys_field, f"is a JSON {json_kind(system)}, not a string; LLaMA-Factory's OpenAI converter "
                    "fails adding to it", "write the system prompt as text", "type")
        chars = len(system) if type(system) is str else 0
        # (LLaMA-Factory role, content, the turn it came from, its field there); names are built for issues only
        aligned: list[tuple[str, Any, int | str, str]] = []
        pending: list[tuple[Any, int, str]] = []  # tool turns waiting to be merged
        for j in range(start, n):
            m = msgs[j]
            role, content = m.get(role_tag), m.get(content_tag)
            if role is not None and type(role) is not str:
                return (name(j, role_tag), f"is a JSON {json_kind(role)}, not a role name", "write the role as "
                        "text", "type")
            leaf = content_tag
            if "tool_calls" in m and facts["calls_key"] is None:
                facts["calls_key"] = idx
            if role in calls_roles:
                calls = m.get("tool_calls")
                if calls is None and facts["no_calls"] is None:
                    facts["no_calls"] = idx
                if calls:
                    problem = _calls_problem(calls)
                    if problem:
                        return (name(j, "tool_calls"), problem[0], problem[1], "tool_calls")
                    for c in calls:
                        args = c["function"].get("arguments")
                        if args is None:
                            continue
                        kind = json_kind(args)
                        if facts["args_kind"] is None:
                            facts["args_kind"], facts["args_at"] = kind, idx
                        elif kind != facts["args_kind"]:
                            return (name(j, "tool_calls"), f"has arguments that are a JSON {kind} here but a "
                                    f"{facts['args_kind']} in record {facts['args_at']}; LLaMA-Factory's loader "
                                    "(Arrow) fails on a field with mixed types", "write every call's arguments "
                                    "the same way (a JSON object)", "mixed_types")
                    fns = [c["function"] for c in calls]
                    if any(key not in fn for fn in fns for key, _ in CALL_KEYS):
                        # Arrow fills a key some call has with null; whether one has it is the file's matter
                        fns = [{**fn, **{key: None for key, _ in CALL_KEYS if key not in fn}} for fn in fns]
                        for key, _ in CALL_KEYS:
                            if any(key not in c["function"] for c in calls):
                                lacking = lacking or {}
                                lacking.setdefault(key, name(j, "tool_calls"))
                    content = json.dumps(fns, ensure_ascii=False)
                    role, leaf = function, "tool_calls"
                    if any(type(c["function"].get("arguments")) is str for c in calls):
                        warn(idx, name(j, leaf), "has arguments as a JSON string (the OpenAI API's way); "
                             "LLaMA-Factory encodes them again, so the model learns the arguments as one quoted "
                             "string", "write arguments as a JSON object", "tool_arguments_string")
            if role == observation:
                pending.append((content, j, leaf))
                continue
            if pending:
                for c, at, lf in pending:
                    if type(c) is not str:
                        what = "is missing" if c is None else f"is a JSON {json_kind(c)}, not a string"
                        return (name(at, lf), f"{what}; LLaMA-Factory's OpenAI converter joins the tool responses "
                                "as text and fails", "write every tool response as text", "type")
                aligned.append(("observation", "\n</tool_response>\n<tool_response>\n".join(c for c, _, _ in pending),
                                pending[0][1], pending[0][2]))
                pending = []
            if role not in tag_map:
                return (name(j, role_tag), f"is {role!r}, which is not a role tag of this entry ({known}); "
                        "LLaMA-Factory's OpenAI converter fails on it (KeyError) and the whole load with it",
                        "use one of the entry's tags, or map this role in its tags block "
                        "(e.g. \"observation_tag\": \"tool\")", "role")
            aligned.append((tag_map[role], content, j, leaf))
        if pending:
            warn(idx, f"{mkey}[{pending[0][1]}]", f"{'is a tool turn' if len(pending) == 1 else 'starts tool turns'}"
                 " at the end of the conversation; LLaMA-Factory's OpenAI converter drops it without a word",
                 "end the conversation with the assistant's answer to the tool result", "tool_dropped")
        for i, (role, _c, at, _lf) in enumerate(aligned):
            want = _ODD if i % 2 == 0 else _EVEN
            if role not in want:
                if role == "system":
                    what = "is a system turn after the start; only the first turn may be the system prompt"
                    fix = "move the system prompt to the first turn or into the record's system field"
                else:
                    what = f"reads as {role!r} but turn {i} (after the system prompt, tool turns merged) must be " \
                           f"{' or '.join(want)}: turns must alternate user, assistant, user, ..."
                    fix = f"reorder or merge the turns so they alternate ({skipped(stage)})"
                return (name(at, role_tag), what, fix, "role_order")
        count = len(aligned)
        if ranking and count % 2 == 0:
            return (mkey, f"has {count} turns after the system prompt (tool turns merged); DPO needs an odd number "
                    "(the prompt ends with a user turn; the answers go in chosen/rejected)",
                    "drop the final assistant turn and keep the answers in chosen/rejected", "turn_count")
        if not ranking and (count == 0 or count % 2):
            what = "has no turns" if count == 0 else f"has {count} turns after the system prompt (tool turns " \
                "merged); it must be an even number ending with an assistant turn"
            return (mkey, what, f"end every conversation with the assistant's answer ({skipped(stage, otherwise=True)})",
                    "turn_count")
        label = rec.get(kto_col) if kto_col else None
        answers: list[tuple[str, Any, int | str, str]] = []
        if kto_col and type(label) is bool:
            if stage == "sft":
                return _kto_in_sft(kto_col)
            if stage == "dpo":
                return (kto_col, "is a boolean KTO label, so LLaMA-Factory makes a KTO example of the record, "
                        "which DPO drops", "remove kto_tag from the entry's columns", "kto_label")
        elif ranking and type(rec.get(pair_keys[0])) is dict and type(rec.get(pair_keys[1])) is dict:
            for key in pair_keys:
                v = rec[key]
                role = v.get(role_tag)
                if type(role) not in (str, type(None)) or role not in tag_map:
                    return (f"{key}.{role_tag}", f"is {role!r}, which is not a role tag of this entry ({known}); "
                            "LLaMA-Factory's OpenAI converter fails on it (KeyError)", f"use {assistant!r}", "role")
                if role not in _EVEN:
                    warn(idx, f"{key}.{role_tag}", f"is {role!r}; LLaMA-Factory's OpenAI converter wants the role "
                         "\"assistant\" or \"function\" literally, logs it, keeps the record and trains the answer as "
                         f"a {tag_map[role]} turn", "use \"assistant\" (and \"assistant_tag\": \"assistant\")",
                         "dpo_role")
                answers.append((tag_map[role], v.get(content_tag), key, content_tag))
        elif stage == "dpo":
            key = next((k for k in pair_keys if type(rec.get(k)) is not dict), None)
            if key is None:  # both answers, but the entry is no ranking one: its stage issue refuses the file
                return ("", "has chosen and rejected answers, but the dataset_info.json entry has no \"ranking\": "
                        "true, so LLaMA-Factory makes no DPO pair of it", "set \"ranking\": true in the entry",
                        "dpo_shape")
            v = rec.get(key)
            what = "is missing" if v is None else f"is a JSON {json_kind(v)}"
            return (key, f"{what}; openai DPO needs {key} as a message object (the record is skipped)",
                    f"write {key} as {{{role_tag!r}: {assistant!r}, {content_tag!r}: \"...\"}}", "dpo_shape")
        elif stage == "kto":
            return _kto_label_problem(kto_col, label)
        for role, c, at, leaf in aligned + answers:
            problem = content_problem(c, role, at, leaf)
            if problem:
                return problem
            if not c:
                warn(idx, name(at, leaf), "is empty", "fill in the turn or drop it", "empty")
            chars += len(c)
        if tools:
            problem = _tools_problem(tools)
            if problem:
                return (tools_key or "", problem[0], problem[1], "tools")
        kept(idx, parts, lacking)
        lens(chars, count + (1 if answers else 0))
        return None

    # The common case in one tight pass that builds no strings: turns with text, tool calls whose functions
    # have a name and non-string arguments (of the kind seen so far), tool turns answered by the next turn,
    # which the full check above would accept without a warning. Anything else, valid or not, goes to the
    # full check, which alone words errors and warnings; the facts are noted only once the record is
    # accepted, as the full check, having read every turn, notes them.
    calls_ok = function is not None and function != observation and tag_map.get(function) == "function"
    sep = len("\n</tool_response>\n<tool_response>\n")
    encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False), less overhead
    passed_tools = [""]  # the last tool list that passed: records often share one
    accepted = [-1]  # the last record taken here: its turns have text roles and contents (validate._known_types)

    def fast(rec: Any, idx: int, warn, lens) -> tuple[str, str, str, str] | None:
        if type(rec) is not dict:
            return check(rec, idx, warn, lens)
        msgs = rec.get(mkey)
        if type(msgs) is not list or not msgs or type(msgs[0]) is not dict:
            return check(rec, idx, warn, lens)
        n = len(msgs)
        start = 0
        if system_tag is not None and msgs[0].get(role_tag) == system_tag:
            system, start = msgs[0].get(content_tag), 1
        else:
            system = rec.get(system_key) if system_key else ""
        tools = rec.get(tools_key) if tools_key else None
        parts = note_tools(tools) if type(tools) is list else None
        chars = 0
        if system:
            if type(system) is not str:
                return check(rec, idx, warn, lens)
            chars = len(system)
        calls_key = no_calls = False
        args_kind, new_kind = facts["args_kind"], False
        pos = pending = 0  # aligned turns so far; tool turns waiting to be merged
        for j in range(start, n):
            m = msgs[j]
            if type(m) is not dict:
                return check(rec, idx, warn, lens)
            role = m.get(role_tag)
            if type(role) is not str:
                return check(rec, idx, warn, lens)
            if "tool_calls" in m:
                calls_key = True
                if facts["name_key"] is None or facts["args_key"] is None:
                    note_calls(m["tool_calls"], idx)
            calls = None
            if role in calls_roles:
                calls = m.get("tool_calls")
                if calls is None:
                    no_calls = True
                elif calls:
                    if not calls_ok or type(calls) is not list:
                        return check(rec, idx, warn, lens)
                    for call in calls:
                        fn = call.get("function") if type(call) is dict else None
                        if type(fn) is not dict or "name" not in fn or "arguments" not in fn:
                            return check(rec, idx, warn, lens)
                        args = fn["arguments"]
                        if args is not None:
                            if type(args) is str:
                                return check(rec, idx, warn, lens)
                            kind = json_kind(args)
                            if args_kind is None:
                                args_kind, new_kind = kind, True
                            elif kind != args_kind:
                                return check(rec, idx, warn, lens)
            if not calls:
                c = m.get(content_tag)
                if type(c) is not str or not c:
                    return check(rec, idx, warn, lens)
                if role == observation:
                    pending += 1
                    chars += len(c)
                    continue
            if pending:
                if pos % 2:
                    return check(rec, idx, warn, lens)
                chars += sep * (pending - 1)
                pos += 1
                pending = 0
            if calls:
                if pos % 2 == 0:
                    return check(rec, idx, warn, lens)
                chars += len(encode([call["function"] for call in calls]))
            elif tag_map.get(role) != ("assistant" if pos % 2 else "user"):
                return check(rec, idx, warn, lens)
            else:
                chars += len(c)
            pos += 1
        if pending or ((pos % 2 == 0) if ranking else (pos == 0 or pos % 2)):
            return check(rec, idx, warn, lens)
        label = rec.get(kto_col) if kto_col else None
        answers = 0
        if kto_col and type(label) is bool:
            if stage != "kto":
                return check(rec, idx, warn, lens)
        elif ranking and type(rec.get(pair_keys[0])) is dict and type(rec.get(pair_keys[1])) is dict:
            for key in pair_keys:
                v = rec[key]
                role, c = v.get(role_tag), v.get(content_tag)
                if type(role) is not str or role not in _EVEN or tag_map.get(role) != "assistant" \
                        or type(c) is not str or not c:
                    return check(rec, idx, warn, lens)
                chars += len(c)
            answers = 1
        elif stage != "sft":
            return check(rec, idx, warn, lens)
        if isinstance(tools, (dict, list)):
            tools = json.dumps(tools, ensure_ascii=False)
        if tools and tools != passed_tools[0]:
            if _tools_problem(tools):
                return check(rec, idx, warn, lens)
            passed_tools[0] = tools
        if calls_key and facts["calls_key"] is None:
            facts["calls_key"] = idx
        if no_calls and facts["no_calls"] is None:
            facts["no_calls"] = idx
        if new_kind:
            facts["args_kind"], facts["args_at"] = args_kind, idx
        if parts:
            kept(idx, parts, None)
        lens(chars, pos + answers)
        accepted[0] = idx
        return None

    fast.facts = facts  # type: ignore[attr-defined]
    fast.accepted = accepted  # type: ignore[attr-defined]
    fast.full = check  # type: ignore[attr-defined]
    return fast

