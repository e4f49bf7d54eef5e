"""Random OpenAI-style records, mostly well formed, with every kind of flaw the openai checker words.

Used to show that the checker's fast path (openai_lf.py) gives the full check's verdicts, warnings,
lengths and file-level facts record for record.
"""

from __future__ import annotations

import random
from typing import Any

ROLES = ("user", "assistant", "system", "tool", "function_call", "human", None, 3)
CONTENTS = ("text", "回答", "", None, 7, ["x"], '[{"name": "f", "arguments": {}}]', "not json")
TAGS = ({"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
         "system_tag": "system", "observation_tag": "tool", "function_tag": "function_call"},
        {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
         "system_tag": "system"},
        {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"})


def _call(rng: random.Random, flaws: float) -> Any:
    if rng.random() < flaws:
        return rng.choice([None, "f", {"name": "f"}, {"function": "f"}])
    fn: dict[str, Any] = {"name": "get_time"}
    a = rng.random()
    if a < 1 - 3 * flaws:
        fn["arguments"] = {"tz": "UTC"}
    elif a < 1 - 2 * flaws:
        fn["arguments"] = '{"tz": "UTC"}'
    elif a < 1 - flaws:
        fn["arguments"] = None
    if rng.random() < flaws:
        del fn["name"]
    return {"id": "c", "type": "function", "function": fn}


def _message(rng: random.Random, role: Any, flaws: float) -> dict[str, Any]:
    m: dict[str, Any] = {"role": role, "content": rng.choice(CONTENTS) if rng.random() < flaws else "some text"}
    if rng.random() < flaws / 3:
        del m["content"]
    if rng.random() < flaws / 3:
        del m["role"]
    if role == "assistant" or rng.random() < flaws / 3:
        r = rng.random()
        if r < 0.2:
            m["tool_calls"] = [_call(rng, flaws) for _ in range(rng.choice((1, 1, 2)))]
        elif r < 0.2 + flaws:
            m["tool_calls"] = rng.choice([None, [], {"name": "f"}, "x"])
    return m


def record(rng: random.Random) -> Any:
    """One record: a clean chat (some with tool turns) half the time, else one with a flaw or more."""
    flaws = rng.choice((0.0, 0.0, 0.0, 0.03, 0.1))
    if rng.random() < flaws / 2:
        return rng.choice([[], "text", 1, None])
    turns: list[Any] = []
    if rng.random() < 0.3:
        turns.append({"role": "system", "content": rng.choice(("be brief", "", None, "detailed thinking on")
                                                              + ((5,) if flaws else ()))})
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        if rng.random() > flaws * 1.5:
            turns.append(_message(rng, "user", flaws))
            turns.append(_message(rng, "assistant", flaws))
            if "tool_calls" in turns[-1] and rng.random() < 0.9:
                turns += [_message(rng, "tool", flaws) for _ in range(rng.choice((1, 2)))]
                if rng.random() > flaws:
                    turns.append(_message(rng, "assistant", flaws))
        else:
            turns.append(_message(rng, rng.choice(ROLES), flaws))
    if rng.random() < flaws / 5:
        turns.append(rng.choice(["x", 1, None]))
    rec: dict[str, Any] = {"messages": turns if rng.random() > flaws / 10 else "nope"}
    for key, values in (("sys", ("from the column", "", 4, None)), ("ok", (True, False, "true", None)),
                        ("tools", ('[{"name": "f", "parameters": {"properties": {}}}]', "[1]", "{", [], None,
                                   [{"name": "f", "parameters": {"properties": {}}}])),
                        ("chosen", ({"role": "assistant", "content": "c"}, {"role": "user", "content": "c"},
                                    {"role": "human", "content": "c"}, {"role": "assistant", "content": None},
                                    {"role": "assistant", "content": ""}, "c", None)),
                        ("rejected", ({"role": "assistant", "content": "r"}, {"role": "function_call",
                                                                              "content": "not json"}, None))):
        if rng.random() < 0.3:
            rec[key] = rng.choice(values if rng.random() < flaws * 5 else values[:1])
    return rec


def entries() -> list[tuple[dict[str, Any], str]]:
    """(entry without file_name, stage) pairs the records are read through."""
    out = []
    for tags in TAGS:
        cols = {"messages": "messages", "system": "sys", "tools": "tools"}
        out.append(({"formatting": "openai", "columns": cols, "tags": tags}, "sft"))
        out.append(({"formatting": "openai", "columns": {**cols, "kto_tag": "ok"}, "tags": tags}, "kto"))
        out.append(({"formatting": "openai", "columns": {**cols, "kto_tag": "ok"}, "tags": tags}, "sft"))
        out.append(({"formatting": "openai", "ranking": True,
                     "columns": {**cols, "chosen": "chosen", "rejected": "rejected"}, "tags": tags}, "dpo"))
    return out
