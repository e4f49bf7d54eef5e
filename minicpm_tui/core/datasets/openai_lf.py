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

Records are read as Arrow hands them over: a key another message has is null here.
"""

from __future__ import annotations

import json
from typing import Any

from minicpm_tui.core.datasets.formats import Shape, json_kind

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
    # then), and the JSON kind of the calls' arguments where first seen (Arrow fails on two kinds).
    facts: dict[str, Any] = {"calls_key": None, "no_calls": None, "args_kind": None, "args_at": None}

    def content_problem(c: Any, role: str, fld: str) -> tuple[str, str, str, str] | None:
        """What the template does with one aligned turn's content."""
        if type(c) is not str:
            what = "is missing" if c is None else f"is a JSON {json_kind(c)}, not a string"
            return (fld, what + " (LLaMA-Factory's template raises on it)", "write every turn's content as text",
                    "type")
        if role == "function":
            problem = _function_json_problem(c)
            if problem:
                return (fld, problem, "write [{\"name\": ..., \"arguments\": {...}}] as JSON text", "function_call")
        return None

    def check(rec: Any, idx: int, warn, lens) -> tuple[str, str, str, str] | None:
        problem = messages_problem(rec, mkey, role_tag, content_tag, "; LLaMA-Factory's OpenAI converter fails on it")
        if problem:
            return problem
        msgs = rec[mkey]
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
        aligned: list[tuple[str, Any, str]] = []  # (LLaMA-Factory role, content, the field it came from)
        pending: list[tuple[Any, str]] = []  # tool turns waiting to be merged
        for j in range(start, n):
            m = msgs[j]
            fld = f"{mkey}[{j}]"
            role, content = m.get(role_tag), m.get(content_tag)
            if role is not None and type(role) is not str:
                return (f"{fld}.{role_tag}", f"is a JSON {json_kind(role)}, not a role name", "write the role as "
                        "text", "type")
            cfield = f"{fld}.{content_tag}"
            if "tool_calls" in m and facts["calls_key"] is None:
                facts["calls_key"] = idx
            if role in calls_roles:
                calls = m.get("tool_calls")
                if calls is None and facts["no_calls"] is None:
                    facts["no_calls"] = idx
                if calls:
                    problem = _calls_problem(calls)
                    if problem:
                        return (f"{fld}.tool_calls", problem[0], problem[1], "tool_calls")
                    for c in calls:
                        args = c["function"].get("arguments")
                        if args is None:
                            continue
                        kind = json_kind(args)
                        if facts["args_kind"] is None:
                            facts["args_kind"], facts["args_at"] = kind, idx
                        elif kind != facts["args_kind"]:
                            return (f"{fld}.tool_calls", f"has arguments that are a JSON {kind} here but a "
                                    f"{facts['args_kind']} in record {facts['args_at']}; LLaMA-Factory's loader "
                                    "(Arrow) fails on a field with mixed types", "write every call's arguments "
                                    "the same way (a JSON object)", "mixed_types")
                    content = json.dumps([c["function"] for c in calls], ensure_ascii=False)
                    role, cfield = function, f"{fld}.tool_calls"
                    if any(type(c["function"].get("arguments")) is str for c in calls):
                        warn(idx, f"{fld}.tool_calls", "has arguments as a JSON string (the OpenAI API's way); "
                             "LLaMA-Factory encodes them again, so the model learns the arguments as one quoted "
                             "string", "write arguments as a JSON object", "tool_arguments_string")
            if role == observation:
                pending.append((content, cfield))
                continue
            if pending:
                for c, f in pending:
                    if type(c) is not str:
                        what = "is missing" if c is None else f"is a JSON {json_kind(c)}, not a string"
                        return (f, f"{what}; LLaMA-Factory's OpenAI converter joins the tool responses as text "
                                "and fails", "write every tool response as text", "type")
                aligned.append(("observation", "\n</tool_response>\n<tool_response>\n".join(c for c, _ in pending),
                                pending[0][1]))
                pending = []
            if role not in tag_map:
                return (f"{fld}.{role_tag}", f"is {role!r}, which is not a role tag of this entry ({known}); "
                        "LLaMA-Factory's OpenAI converter fails on it (KeyError) and the whole load with it",
                        "use one of the entry's tags, or map this role in its tags block "
                        "(e.g. \"observation_tag\": \"tool\")", "role")
            aligned.append((tag_map[role], content, cfield))
        if pending:
            warn(idx, pending[0][1].rsplit(".", 1)[0], f"{'is a tool turn' if len(pending) == 1 else 'starts tool turns'}"
                 " at the end of the conversation; LLaMA-Factory's OpenAI converter drops it without a word",
                 "end the conversation with the assistant's answer to the tool result", "tool_dropped")
        for i, (role, _c, fld) in enumerate(aligned):
            want = _ODD if i % 2 == 0 else _EVEN
            if role not in want:
                if role == "system":
                    what = "is a system turn after the start; only the first turn may be the system prompt"
                    fix = "move the system prompt to the first turn or into the record's system field"
                else:
                    what = f"reads as {role!r} but turn {i} (after the system prompt, tool turns merged) must be " \
                           f"{' or '.join(want)}: turns must alternate user, assistant, user, ..."
                    fix = "reorder or merge the turns so they alternate (LLaMA-Factory skips the record)"
                return (fld.rsplit(".", 1)[0] + f".{role_tag}", what, fix, "role_order")
        count = len(aligned)
        if ranking and count % 2 == 0:
            return (mkey, f"has {count} turns after the system prompt (tool turns merged); DPO needs an odd number "
                    "(the prompt ends with a user turn; the answers go in chosen/rejected)",
                    "drop the final assistant turn and keep the answers in chosen/rejected", "turn_count")
        if not ranking and (count == 0 or count % 2):
            what = "has no turns" if count == 0 else f"has {count} turns after the system prompt (tool turns " \
                "merged); it must be an even number ending with an assistant turn"
            return (mkey, what, "end every conversation with the assistant's answer (LLaMA-Factory skips the "
                    "record otherwise)", "turn_count")
        label = rec.get(kto_col) if kto_col else None
        answers: list[tuple[str, Any, str]] = []
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
                answers.append((tag_map[role], v.get(content_tag), f"{key}.{content_tag}"))
        elif stage == "dpo":
            key = next(k for k in pair_keys if type(rec.get(k)) is not dict)
            v = rec.get(key)
            what = "is missing" if v is None else f"is a JSON {json_kind(v)}"
            return (key, f"{what}; openai DPO needs {key} as a message object (the record is skipped)",
                    f"write {key} as {{{role_tag!r}: {assistant!r}, {content_tag!r}: \"...\"}}", "dpo_shape")
        elif stage == "kto":
            return _kto_label_problem(kto_col, label)
        for role, c, fld in aligned + answers:
            problem = content_problem(c, role, fld)
            if problem:
                return problem
            if not c:
                warn(idx, fld, "is empty", "fill in the turn or drop it", "empty")
            chars += len(c)
        if tools:
            problem = _tools_problem(tools)
            if problem:
                return (tools_key or "", problem[0], problem[1], "tools")
        lens(chars, count + (1 if answers else 0))
        return None

    check.facts = facts  # type: ignore[attr-defined]
    return check

