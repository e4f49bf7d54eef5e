"""Data read through hand-written dataset_info.json entries that map their own column and tag names.

Each case is (file, entry, stage): the kind of entry people bring from an existing LLaMA-Factory setup.
Good and broken records sit side by side, so the verdicts are compared record by record; a record that
makes LLaMA-Factory's whole load fail (a KeyError, a bad history pair) goes in a file of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ME_BOT = {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}
ROLE_CONTENT = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
# An openai entry's tags as LLaMA-Factory's data/README.md writes them, and with the tool roles mapped too.
OPENAI_README = {**ROLE_CONTENT, "system_tag": "system"}
OPENAI_TOOLS = {**OPENAI_README, "observation_tag": "tool", "function_tag": "function_call"}


def _oa(*turns: tuple[str, str | None] | dict[str, Any]) -> list[dict[str, Any]]:
    return [t if isinstance(t, dict) else {"role": t[0], "content": t[1]} for t in turns]


def _call(name: str = "get_time", arguments: Any = None) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments or {"tz": "UTC"}}}]}


def _openai_cases() -> dict[str, tuple[list[Any] | str, dict[str, Any], str]]:
    """``"formatting": "openai"`` entries (LLaMA-Factory's OpenAI converter, 0.9.4 and later)."""
    oa = {"formatting": "openai", "columns": {"messages": "messages", "system": "sys", "tools": "tools"},
          "tags": OPENAI_TOOLS}
    tools = [{"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}]
    cases: dict[str, tuple[list[Any] | str, dict[str, Any], str]] = {}
    cases["openai_sft"] = ([
        {"messages": _oa(("system", "be brief"), ("user", "hi"), ("assistant", "yo"))},  # kept
        {"messages": _oa(("user", "t?"), _call(), ("tool", "12:00"), ("tool", "UTC"), ("assistant", "noon"))},  # kept
        {"messages": _oa(("assistant", "a"), ("user", "b"))},  # wrong order: dropped
        {"messages": _oa(("user", "t?"), _call(), ("tool", "12:00"))},  # the trailing tool turn is dropped: kept
        {"messages": _oa(("user", "q"), ("assistant", ""))},  # empty answer: kept
        {"messages": _oa(("user", "q"), ("assistant", None))},  # no content: the template raises
        {"messages": _oa(("user", "q"), ("assistant", "a"), ("system", "late"), ("assistant", "b"))},  # dropped
        {"messages": _oa(("user", "t?"), ("tool", "12:00"), ("assistant", "noon"))},  # tool turn without a call
        {"messages": _oa(("user", "q"), ("assistant", "a"), ("user", "again"))},  # odd count: dropped
        {"messages": _oa(("user", "t?"), {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c2", "type": "function", "function": None}]}, ("tool", "x"), ("assistant", "y"))},  # raises
        {"messages": _oa(("user", "t?"), ("assistant", "noon")), "tools": tools},  # tools as a JSON list: kept
        {"messages": _oa(("user", "q"), ("assistant", "a")), "sys": "from the column"},  # kept
        {"messages": []},  # no turns: dropped
        {"messages": _oa(("user", "t?"), ("function_call", "not json"), ("tool", "x"), ("assistant", "y"))},  # raises
    ], oa, "sft")
    cases["openai_dpo"] = ([
        {"messages": _oa(("user", "q")), "chosen": {"role": "assistant", "content": "good"},
         "rejected": {"role": "assistant", "content": "bad"}},  # kept
        {"messages": _oa(("user", "q"), ("assistant", "a")), "chosen": {"role": "assistant", "content": "good"},
         "rejected": {"role": "assistant", "content": "bad"}},  # even count: dropped
        {"messages": _oa(("user", "q")), "chosen": None, "rejected": {"role": "assistant", "content": "bad"}},
        {"messages": _oa(("user", "q")), "chosen": {"role": "user", "content": "odd"},
         "rejected": {"role": "assistant", "content": "bad"}},  # a user answer: LF keeps it (we warn)
        {"messages": _oa(("user", "q")), "chosen": {"role": "assistant", "content": None},
         "rejected": {"role": "assistant", "content": "bad"}},  # no content: the template raises
    ], {**oa, "ranking": True, "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"}},
        "dpo")
    cases["openai_kto"] = ([
        {"messages": _oa(("user", "q"), ("assistant", "a")), "ok": True},  # kept
        {"messages": _oa(("user", "q"), ("assistant", "a")), "ok": None},  # no label: dropped
        {"messages": _oa(("assistant", "q"), ("user", "a")), "ok": False},  # wrong order: dropped
        {"messages": _oa(("user", "q"), ("assistant", "a")), "ok": False},  # kept
    ], {**oa, "columns": {"messages": "messages", "kto_tag": "ok"}}, "kto")
    # -- the whole load fails ------------------------------------------------------------------------------
    cases["openai_unknown_role"] = ([{"messages": _oa(("user", "q"), ("assistant", "a"))},
                                     {"messages": _oa(("human", "q"), ("assistant", "a"))}], oa, "sft")
    cases["openai_tool_content_null"] = ([{"messages": _oa(("user", "t?"), _call(), ("tool", None),
                                                           ("assistant", "y"))}], oa, "sft")
    # the README's tags map no tool roles: a "tool" turn is no tag of the entry
    cases["openai_readme_tags_tool_turn"] = ([{"messages": _oa(("user", "q"), ("assistant", "a"))},
                                              {"messages": _oa(("user", "t?"), _call(), ("tool", "1"),
                                                               ("assistant", "y"))}],
                                             {**oa, "tags": OPENAI_README}, "sft")
    cases["openai_bad_tool_calls"] = ([{"messages": _oa(("user", "t?"), {"role": "assistant", "content": None,
                                                                        "tool_calls": {"name": "f"}},
                                                       ("tool", "1"), ("assistant", "y"))}], oa, "sft")
    cases["openai_arguments_mixed_types"] = ([
        {"messages": _oa(("user", "t?"), _call(arguments={"tz": "UTC"}), ("tool", "1"), ("assistant", "y"))},
        {"messages": _oa(("user", "t?"), _call(arguments='{"tz": "UTC"}'), ("tool", "1"), ("assistant", "y"))},
    ], oa, "sft")
    # -- what Arrow makes of the calls and tools: every record gets every key some record has -----------------
    def calling(function: dict[str, Any]) -> dict[str, Any]:
        return {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                      "function": function}]}

    # Every answer has tool_calls ([] when it calls nothing), so 0.9.4's converter reads these files too.
    answer = {"role": "assistant", "content": "y", "tool_calls": []}
    # no call has an `arguments` key: the function struct has none, the template's function formatter raises
    cases["openai_args_in_no_call"] = ([
        {"messages": _oa(("user", "q"), answer)},  # kept
        {"messages": _oa(("user", "t?"), calling({"name": "get_time"}), ("tool", "1"), answer)},  # raises
    ], oa, "sft")
    # some calls have arguments: Arrow gives the others `"arguments": null`, which the formatter encodes
    cases["openai_args_in_some_calls"] = ([
        {"messages": _oa(("user", "t?"), calling({"name": "get_time", "arguments": {"tz": "UTC"}}), ("tool", "1"),
                         answer)},  # kept
        {"messages": _oa(("user", "t?"), calling({"name": "get_time"}), ("tool", "1"), answer)},  # kept
    ], oa, "sft")
    # the same for `name`: null where some call has one (kept), a KeyError where none has
    cases["openai_name_in_some_calls"] = ([
        {"messages": _oa(("user", "t?"), calling({"name": "get_time", "arguments": {}}), ("tool", "1"), answer)},
        {"messages": _oa(("user", "t?"), calling({"arguments": {}}), ("tool", "1"), answer)},  # kept
    ], oa, "sft")
    cases["openai_name_in_no_call"] = ([
        {"messages": _oa(("user", "t?"), calling({"arguments": {}}), ("tool", "1"), answer)},  # raises
    ], oa, "sft")
    # tool lists as JSON (dumped by the converter) whose parameters differ between records: Arrow fills the
    # missing ones with null, so record 0's tools gain `"city": null`, which the default tool formatter reads
    tz = {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}
    city = {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    cases["openai_tools_params_differ"] = ([
        {"messages": _oa(("user", "q"), ("assistant", "a")), "tools": [tz]},
        {"messages": _oa(("user", "q"), ("assistant", "a")), "tools": [city]},
        {"messages": _oa(("user", "q"), ("assistant", "a"))},  # no tools: kept
    ], oa, "sft")
    # the same parameters, "required" in one tool only: the other gets "required": null
    cases["openai_tools_required_differs"] = ([
        {"messages": _oa(("user", "q"), ("assistant", "a")), "tools": [tz]},  # raises
        {"messages": _oa(("user", "q"), ("assistant", "a")),
         "tools": [{**tz, "parameters": {**tz["parameters"], "required": ["tz"]}}]},  # kept
    ], oa, "sft")
    # the same tool lists as JSON text: each record's own, nothing filled in
    cases["openai_tools_params_differ_as_text"] = ([
        {"messages": _oa(("user", "q"), ("assistant", "a")), "tools": json.dumps([tz])},
        {"messages": _oa(("user", "q"), ("assistant", "a")), "tools": json.dumps([city])},
    ], oa, "sft")
    cases["openai_default_columns"] = ([{"messages": _oa(("user", "q"), ("assistant", "a"))}],
                                       {"formatting": "openai"}, "sft")  # reads `conversations`, from/value
    return cases


def _turns(*pairs: tuple[str, str | None], role: str = "speaker", content: str = "text") -> list[dict[str, Any]]:
    return [{role: r, content: c} for r, c in pairs]


def _cases() -> dict[str, tuple[list[Any] | str, dict[str, Any], str]]:
    """name -> (records, or CSV text, entry without file_name, stage)."""
    cases: dict[str, tuple[list[Any] | str, dict[str, Any], str]] = {}
    # alpaca, every column renamed: the standard names in the records are not read
    cases["alpaca_renamed"] = ([
        {"question": "q0", "context": "c0", "answer": "a0", "sys_prompt": "be brief", "past": [["h", "i"]]},
        {"question": "q1", "context": "", "answer": None, "sys_prompt": "s", "past": None},  # no answer: dropped
        {"question": "q2", "context": None, "answer": "", "sys_prompt": None, "past": []},  # empty answer: kept
        {"question": None, "context": "c3", "answer": "a3", "sys_prompt": None, "past": None},  # query only: kept
        {"question": "q4", "answer": None, "sys_prompt": None, "past": None, "output": "not read"},  # dropped
        {"question": "q5", "answer": "a5", "instruction": "not read", "output": None},  # kept
        {"question": "q6", "context": "c6", "answer": "a6", "past": [["h1", "i1"], ["h2", "i2"]]},  # kept
    ], {"columns": {"prompt": "question", "query": "context", "response": "answer", "system": "sys_prompt",
                    "history": "past"}}, "sft")
    # the standard names swapped: prompt is read from `output`, the answer from `instruction`
    cases["alpaca_swapped_names"] = ([
        {"instruction": "the answer", "output": "the question"},  # kept
        {"instruction": None, "output": "q"},  # no answer: dropped
        {"instruction": "a", "output": None},  # empty prompt: kept
    ], {"columns": {"prompt": "output", "response": "instruction"}}, "sft")
    # a renamed tools column (the template parses it)
    tools = json.dumps([{"name": "f", "parameters": {"type": "object", "properties": {}}}])
    cases["alpaca_renamed_tools"] = ([
        {"q": "a", "r": "b", "tl": tools},  # kept
        {"q": "a", "r": "b", "tl": "not json"},  # the template raises
        {"q": "a", "r": "b", "tl": ""},  # kept
        {"q": "a", "r": "b", "tl": None},  # kept
    ], {"columns": {"prompt": "q", "response": "r", "tools": "tl"}}, "sft")
    # CSV with its own header names (an empty cell is null)
    cases["csv_renamed"] = ("question,answer,extra\nq0,a0,x\nq1,,y\n,a2,z\n",
                            {"columns": {"prompt": "question", "response": "answer"}}, "sft")
    # a columns block unsets what it does not name: `input` (a list here!) and `system` are never read
    cases["alpaca_partial_columns"] = ([
        {"question": "q0", "input": ["not", "read"], "answer": "a0", "system": "not read"},
        {"question": "q1", "input": [], "answer": "a1", "system": None},
        {"question": "q2", "input": ["x"], "answer": None, "system": None},  # dropped
    ], {"columns": {"prompt": "question", "response": "answer"}}, "sft")
    # sharegpt with a renamed messages column and a tags block naming four tags (the rest unset)
    cases["sharegpt_renamed_tags"] = ([
        {"dialog": _turns(("me", "hi"), ("bot", "yo")), "sys": "be kind"},  # kept
        {"dialog": _turns(("me", "a"), ("bot", "b"), ("me", "c"), ("bot", "d")), "sys": None},  # kept
        {"dialog": _turns(("system", "s"), ("me", "a"), ("bot", "b")), "sys": None},  # no system_tag: dropped
        {"dialog": _turns(("bot", "a"), ("me", "b")), "sys": None},  # wrong order: dropped
        {"dialog": _turns(("me", "a"), ("bot", "b"), ("me", "c")), "sys": None},  # odd count: dropped
        {"dialog": _turns(("human", "a"), ("gpt", "b")), "sys": None},  # the default tags are not read
        {"dialog": _turns(("me", "a"), ("bot", "")), "sys": None},  # empty answer: kept
        {"dialog": _turns(("me", "a"), ("bot", None)), "sys": None},  # no content: the template raises
        {"dialog": [], "sys": None},  # no turns: dropped
        {"dialog": [{"speaker": "me", "text": "a"}, {"text": "b"}], "sys": None},  # no role: the template raises
    ], {"formatting": "sharegpt", "columns": {"messages": "dialog", "system": "sys"}, "tags": ME_BOT}, "sft")
    # every tag renamed, system/observation/function included
    full_tags = {"role_tag": "r", "content_tag": "c", "user_tag": "u", "assistant_tag": "a", "system_tag": "s",
                 "observation_tag": "o", "function_tag": "f"}
    call = json.dumps({"name": "get_time", "arguments": {}})
    cases["sharegpt_all_tags"] = ([
        {"chat": _turns(("s", "sys"), ("u", "hi"), ("a", "yo"), role="r", content="c")},  # kept
        {"chat": _turns(("u", "t?"), ("f", call), ("o", "12:00"), ("a", "noon"), role="r", content="c")},  # kept
        {"chat": _turns(("u", "t?"), ("f", "not json"), ("o", "x"), ("a", "y"), role="r", content="c")},  # raises
        {"chat": _turns(("u", "a"), ("s", "late system"), role="r", content="c")},  # dropped
        {"chat": _turns(("from", "a"), ("a", "b"), role="r", content="c")},  # dropped
    ], {"formatting": "sharegpt", "columns": {"messages": "chat"}, "tags": full_tags}, "sft")
    # DPO, alpaca: chosen/rejected renamed (strings)
    cases["dpo_alpaca_renamed"] = ([
        {"q": "q0", "good": "yes", "bad": "no"},  # kept
        {"q": "q1", "good": None, "bad": "no"},  # dropped
        {"q": "q2", "good": "yes", "bad": None, "chosen": "not read", "rejected": "not read"},  # dropped
        {"q": None, "good": "yes", "bad": "no"},  # empty prompt: kept
    ], {"ranking": True, "columns": {"prompt": "q", "chosen": "good", "rejected": "bad"}}, "dpo")
    # DPO, sharegpt: chosen/rejected renamed (message objects), role/content tags
    pos = {"role": "assistant", "content": "good"}
    neg = {"role": "assistant", "content": "bad"}
    cases["dpo_sharegpt_renamed"] = ([
        {"turns": _turns(("user", "q"), role="role", content="content"), "pos": pos, "neg": neg},  # kept
        {"turns": _turns(("user", "q"), ("assistant", "a"), role="role", content="content"), "pos": pos,
         "neg": neg},  # even count: dropped
        {"turns": _turns(("user", "q"), role="role", content="content"), "pos": None, "neg": neg},  # dropped
        {"turns": _turns(("user", "q"), role="role", content="content"),
         "pos": {"role": "user", "content": "odd"}, "neg": neg},  # a user answer: LF keeps it (we warn)
        {"turns": _turns(("user", "q"), role="role", content="content"), "pos": {"role": None, "content": "x"},
         "neg": neg},  # an answer without a role: the template raises
        {"turns": _turns(("assistant", "q"), role="role", content="content"), "pos": pos, "neg": neg},  # dropped
    ], {"formatting": "sharegpt", "ranking": True, "columns": {"messages": "turns", "chosen": "pos",
                                                               "rejected": "neg"}, "tags": ROLE_CONTENT}, "dpo")
    # KTO, alpaca: kto_tag renamed
    cases["kto_alpaca_renamed"] = ([
        {"ask": "q0", "reply": "a0", "thumbs_up": True},  # kept
        {"ask": "q1", "reply": "a1", "thumbs_up": False},  # kept
        {"ask": "q2", "reply": "a2", "thumbs_up": None, "label": True},  # the standard name is not read: dropped
        {"ask": "q3", "reply": "", "thumbs_up": True},  # empty answer: kept
    ], {"columns": {"prompt": "ask", "response": "reply", "kto_tag": "thumbs_up"}}, "kto")
    # KTO, sharegpt: kto_tag renamed, role/content tags
    cases["kto_sharegpt_renamed"] = ([
        {"msgs": _turns(("user", "q"), ("assistant", "a"), role="role", content="content"), "ok": True},
        {"msgs": _turns(("user", "q"), ("assistant", "a"), role="role", content="content"), "ok": None},  # dropped
        {"msgs": _turns(("assistant", "q"), ("user", "a"), role="role", content="content"), "ok": False},  # dropped
        {"msgs": _turns(("user", "q"), ("assistant", "a"), role="role", content="content"), "ok": False},
    ], {"formatting": "sharegpt", "columns": {"messages": "msgs", "kto_tag": "ok"}, "tags": ROLE_CONTENT}, "kto")
    # A KTO entry trained with SFT: a boolean label makes a KTO example, which SFT drops; a null one does not.
    cases["kto_entry_for_sft"] = ([
        {"ask": "q0", "reply": "a0", "ok": True},  # dropped
        {"ask": "q1", "reply": "a1", "ok": None},  # kept
        {"ask": "q2", "reply": "a2", "ok": False},  # dropped
    ], {"columns": {"prompt": "ask", "response": "reply", "kto_tag": "ok"}}, "sft")
    # -- the whole load fails (or keeps nothing): reported for the file ---------------------------------------
    cases["entry_column_in_no_record"] = ([{"question": "q", "answer": "a"}] * 2,
                                          {"columns": {"prompt": "question", "response": "reply"}}, "sft")
    cases["entry_no_response_column"] = ([{"question": "q", "answer": "a"}] * 2,
                                         {"columns": {"prompt": "question", "query": "answer"}}, "sft")
    cases["entry_default_query_missing"] = ([{"instruction": "q", "output": "a"}] * 2, {}, "sft")  # no `input`
    cases["entry_sharegpt_without_messages"] = ([{"dialog": _turns(("me", "a"), ("bot", "b"))}],
                                                {"formatting": "sharegpt", "columns": {"system": "sys"},
                                                 "tags": ME_BOT}, "sft")
    # turns under a misspelt key: the mapping our format error suggests reads them; the defaults fail (KeyError)
    gpt = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    cases["sharegpt_misspelt_key_mapped"] = ([{"conversation": gpt}] * 2,
                                             {"formatting": "sharegpt", "columns": {"messages": "conversation"}}, "sft")
    cases["entry_sharegpt_messages_key_default"] = ([{"messages": gpt}] * 2, {"formatting": "sharegpt"}, "sft")
    cases["entry_sharegpt_on_alpaca_data"] = ([{"instruction": "q", "input": "", "output": "a"}],
                                              {"formatting": "sharegpt"}, "sft")
    cases["entry_not_ranking_for_dpo"] = ([{"q": "q", "good": "y", "bad": "n"}],
                                          {"columns": {"prompt": "q", "chosen": "good", "rejected": "bad"}}, "dpo")
    cases["entry_bad_history_pair"] = ([{"question": "q", "answer": "a", "past": [["one", "two", "three"]]}],
                                       {"columns": {"prompt": "question", "response": "answer",
                                                    "history": "past"}}, "sft")
    cases.update(_openai_cases())
    cases.update(_media_cases())
    return cases


def _media_cases() -> dict[str, tuple[list[Any] | str, dict[str, Any], str]]:
    """Entries that map media columns, read by a text template (the agreement runs cpm3/cpm4): any kept
    record with media stops LLaMA-Factory's preprocessing (mm_plugin.py), [] and null are no media (0.9.2
    fails on null: converter.py)."""
    qa = {"prompt": "question", "response": "answer"}
    cases: dict[str, tuple[list[Any] | str, dict[str, Any], str]] = {}
    cases["media_none"] = ([{"question": "q0", "answer": "a0", "img": []},
                            {"question": "q1", "answer": "a1", "img": None},
                            {"question": "q2", "answer": "a2"}], {"columns": {**qa, "images": "img"}}, "sft")
    cases["media_empty_lists"] = ([{"question": f"q{i}", "answer": "a", "img": [], "vid": []} for i in range(2)],
                                  {"columns": {**qa, "images": "img", "videos": "vid"}}, "sft")
    cases["media_image_for_text_template"] = ([
        {"question": "q0", "answer": "a0", "img": []},
        {"question": "<image>what is it?", "answer": "a cat", "img": ["cat.png"]},  # raises: the run stops
        {"question": "q2", "answer": "a2", "img": []},
    ], {"columns": {**qa, "images": "img"}}, "sft")
    cases["media_image_in_dropped_record"] = ([
        {"question": "q0", "answer": "a0", "img": []},
        {"question": "q1", "answer": None, "img": ["cat.png"]},  # dropped before the plugin sees it
    ], {"columns": {**qa, "images": "img"}}, "sft")
    cases["media_video_string"] = ([
        {"dialog": _turns(("me", "q"), ("bot", "a")), "clip": ""},  # a string is one video, even ""
        {"dialog": _turns(("me", "q"), ("bot", "a")), "clip": "x.mp4"},
    ], {"formatting": "sharegpt", "columns": {"messages": "dialog", "videos": "clip"}, "tags": ME_BOT}, "sft")
    cases["media_audio_kto"] = ([
        {"question": "q0", "answer": "a0", "ok": True, "wav": []},
        {"question": "q1", "answer": "a1", "ok": False, "wav": ["a.wav"]},
    ], {"columns": {**qa, "kto_tag": "ok", "audios": "wav"}}, "kto")
    cases["media_image_dpo"] = ([
        {"q": "q0", "good": "y", "bad": "n", "img": ["cat.png"]},
    ], {"ranking": True, "columns": {"prompt": "q", "chosen": "good", "rejected": "bad", "images": "img"}}, "dpo")
    return cases


def write_custom(folder: Path) -> list[tuple[str, Path, dict[str, Any], str]]:
    """Write the cases' data files: (name, file, entry with its file_name, stage) for each."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (records, entry, stage) in _cases().items():
        if isinstance(records, str):
            path = folder / f"{name}.csv"
            path.write_text(records, encoding="utf-8")
        else:
            path = folder / f"{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        out.append((name, path, {"file_name": str(path), **entry}, stage))
    return out
