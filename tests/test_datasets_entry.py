"""Validating data through a dataset_info.json entry that maps its own columns and tags (fast, no LLaMA-Factory).

``test_datasets_agreement.py`` checks the verdicts against LLaMA-Factory itself; these pin the entry's
semantics, the issues' wording (the user's field names), the parallel and folder paths, and the CLI.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from minicpm_tui.cli import main
from minicpm_tui.core.datasets import dataset_info_entry, validate_file
from minicpm_tui.core.datasets.entry import read_entry, validate_entry
from minicpm_tui.core.errors import UserError

CORPUS = Path(__file__).parent / "datasets_corpus"
QA = {"columns": {"prompt": "question", "response": "answer"}}
ME_BOT = {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"}


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    return [{"speaker": r, "text": c} for r, c in pairs]


def test_a_block_unsets_what_it_does_not_name_as_lf_does():
    shape = read_entry({"file_name": "x", **QA}).shape
    assert shape.column("prompt") == "question" and shape.column("response") == "answer"
    assert shape.column("query") is None and shape.column("system") is None  # not `input` / `system`
    shape = read_entry({"file_name": "x"}).shape  # no block: LLaMA-Factory's defaults
    assert (shape.column("prompt"), shape.column("query"), shape.column("response")) == ("instruction", "input",
                                                                                          "output")
    assert shape.column("history") is None and shape.read_columns() == {"instruction": "prompt", "input": "query",
                                                                        "output": "response"}
    shape = read_entry({"file_name": "x", "formatting": "sharegpt", "columns": {"messages": "dialog"},
                        "tags": ME_BOT}).shape
    assert shape.messages_key == "dialog" and shape.tags["system_tag"] is None and shape.tags["user_tag"] == "me"


def test_alpaca_issues_name_the_entrys_fields(tmp_path):
    f = _jsonl(tmp_path / "qa.jsonl", [
        {"question": "q0", "answer": "a0", "output": 5},  # `output` is not read: no type error
        {"question": "q1", "answer": None, "output": None},
        {"question": "", "answer": "a2", "instruction": "not read"},
    ])
    rep = validate_file(f, entry={"file_name": str(f), **QA}, keep_indices=True)
    assert rep.invalid_indices == [1] and rep.format == "alpaca" and rep.stage == "sft"
    assert (rep.errors[0].record, rep.errors[0].field) == (1, "answer")
    assert "in answer" in rep.errors[0].fix
    assert [(w.record, w.field, w.kind) for w in rep.warnings] == [(2, "question", "empty_prompt")]
    # detection reads the standard names: it blames record 0's `output`, which this entry never reads
    assert (validate_file(f).errors[0].record, validate_file(f).errors[0].field) == (0, "output")


def test_sharegpt_renamed_tags_and_the_unset_system_tag(tmp_path):
    f = _jsonl(tmp_path / "dlg.jsonl", [
        {"dialog": _turns(("me", "hi"), ("bot", "yo"))},
        {"dialog": _turns(("system", "s"), ("me", "hi"), ("bot", "yo"))},
        {"dialog": _turns(("bot", "hi"), ("me", "yo"))},
        {"dialog": _turns(("human", "hi"), ("gpt", "yo"))},
    ])
    entry = {"file_name": str(f), "formatting": "sharegpt", "columns": {"messages": "dialog"}, "tags": ME_BOT}
    rep = validate_file(f, entry=entry, keep_indices=True)
    assert rep.invalid_indices == [1, 2, 3]
    first = rep.errors[0]
    assert first.field == "dialog[0].speaker" and "sets no system_tag" in first.message
    assert "system_tag" in first.fix
    assert "must be me" in rep.errors[1].message and "'human'" in rep.errors[2].message
    # with a system_tag the leading system turn is the system prompt again
    entry["tags"] = {**ME_BOT, "system_tag": "system"}
    assert validate_file(f, entry=entry, keep_indices=True).invalid_indices == [2, 3]


def test_dpo_and_kto_with_renamed_columns(tmp_path):
    dpo = _jsonl(tmp_path / "dpo.jsonl", [{"q": "q", "good": "y", "bad": "n"}, {"q": "q", "good": "y",
                                                                               "chosen": "x", "rejected": "z"}])
    entry = {"file_name": str(dpo), "ranking": True, "columns": {"prompt": "q", "chosen": "good", "rejected": "bad"}}
    rep = validate_file(dpo, entry=entry, keep_indices=True)
    assert rep.stage == "dpo" and rep.invalid_indices == [1] and rep.errors[0].field == "bad"
    rep = validate_file(dpo, stage="sft", entry=entry)
    assert rep.file_error.kind == "stage" and rep.file_error.field == "ranking" and rep.valid == 0
    kto = _jsonl(tmp_path / "kto.jsonl", [{"ask": "q", "reply": "a", "thumbs": True},
                                          {"ask": "q", "reply": "a", "thumbs": "true"}])
    entry = {"file_name": str(kto), "columns": {"prompt": "ask", "response": "reply", "kto_tag": "thumbs"}}
    rep = validate_file(kto, entry=entry, keep_indices=True)
    assert rep.stage == "kto" and rep.invalid_indices == [1]
    assert (rep.errors[0].field, rep.errors[0].kind) == ("thumbs", "mixed_types")
    # an entry's kto_tag is read for SFT too: a boolean label makes a KTO example, which SFT drops
    rep = validate_file(kto, stage="sft", entry=entry, keep_indices=True)
    assert rep.invalid_indices == [0, 1] and rep.errors[0].kind == "kto_in_sft" and rep.errors[0].field == "thumbs"


@pytest.mark.parametrize("entry, field, words", [
    ({"columns": {"prompt": "question", "response": "reply"}}, "reply", "is in no record"),
    ({"columns": {"prompt": "question", "query": "answer"}}, "columns.response", "is not set"),
    ({}, "instruction", "is in no record"),  # the defaults read instruction/input/output
    ({"formatting": "sharegpt"}, "conversations", "is in no record"),
    ({"ranking": True, "columns": {"prompt": "question", "chosen": "answer"}}, "columns.rejected", "is not set"),
    ({"formatting": "sharegpt", "columns": {"system": "s"}}, "columns.messages", "is not set"),
    ({"formatting": "sharegpt", "tags": {"role_tag": "from"}}, "tags.content_tag", "is not set"),
    ({"formatting": "sharegpt4"}, "formatting", "alpaca, sharegpt and openai"),
    ({"columns": ["question", "answer"]}, "columns", "not an object"),
    ({"ranking": "yes", **QA}, "ranking", "not a JSON boolean"),
    ({"split": "test", **QA}, "split", "only the 'train' split"),
    ({"columns": {"prompt": "question", "response": "answer", "kto_tag": "ok"}, "ranking": True}, "columns.chosen",
     "is not set"),
])
def test_entry_problems_fail_the_whole_file(tmp_path, entry, field, words):
    f = _jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}] * 3)
    rep = validate_file(f, entry={"file_name": str(f), **entry})
    assert not rep.ok and rep.file_error.field == field and words in rep.file_error.message
    assert rep.file_error.kind in ("entry", "stage") and rep.valid == 0
    assert rep.summary().startswith(f"{field}: ")  # what preflight shows: the field, then why
    assert any(line.startswith(f"{f}: {field}: ") for line in rep.lines())


def test_entry_warnings_and_notes(tmp_path):
    f = _jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    rep = validate_file(f, entry={"file_name": str(f), "split": "train[:10]",
                                  "columns": {"prompt": "question", "response": "answer", "output": "answer"}})
    assert rep.ok
    assert [(w.field, w.kind) for w in rep.warnings] == [("columns.output", "entry_key")]
    assert "use 'response'" in rep.warnings[0].fix
    assert len(rep.notes) == 1 and "only that slice" in rep.notes[0]
    assert rep.to_json()["notes"] == rep.notes and any(line.startswith("note: ") for line in rep.lines())


def test_unmodelled_entries_are_not_validated(tmp_path):
    entry = {"hf_hub_url": "a/b"}
    assert "hf_hub_url" in read_entry(entry).skipped
    with pytest.raises(UserError, match="not validated") as exc:
        validate_entry("x", entry, tmp_path)
    assert exc.value.exit_code == 2
    with pytest.raises(UserError, match="file_name: is missing") as exc:
        validate_entry("x", {"columns": {}}, tmp_path)
    assert exc.value.exit_code == 1


# -- "formatting": "openai" (LLaMA-Factory's OpenAI converter; datasets_corpus/custom_entries.py has the agreement)
OA_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
           "system_tag": "system", "observation_tag": "tool", "function_tag": "function_call"}
OA = {"formatting": "openai", "columns": {"messages": "messages"}, "tags": OA_TAGS}


def _oa(*turns) -> list[dict]:
    return [t if isinstance(t, dict) else {"role": t[0], "content": t[1]} for t in turns]


def _call(arguments=None) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments or {"x": 1}}}]}


def test_openai_entry_reads_as_its_converter(tmp_path):
    f = _jsonl(tmp_path / "oa.jsonl", [
        {"messages": _oa(("system", "s"), ("user", "t?"), _call(), ("tool", "1"), ("tool", "2"), ("assistant", "ok"))},
        {"messages": _oa(("user", "t?"), ("tool", "1"), ("assistant", "y"))},  # a tool turn without a call
        {"messages": _oa(("user", "t?"), _call(), ("tool", "1"))},  # the trailing tool turn: dropped, record kept
        {"messages": _oa(("user", "q"), ("assistant", ""))},
        {"messages": _oa(("user", "t?"), {"role": "assistant", "content": None, "tool_calls": [{"function": None}]},
                         ("tool", "1"), ("assistant", "y"))},
        {"messages": _oa(("user", "t?"), _call('{"x": 1}'), ("tool", "1"), ("assistant", "y"))},  # mixed kinds
    ])
    rep = validate_file(f, entry={"file_name": str(f), **OA}, keep_indices=True)
    assert rep.format == "openai" and rep.shape.formatting == "openai" and rep.invalid_indices == [1, 4, 5]
    by_record = {e.record: (e.field, e.kind) for e in rep.errors}
    assert by_record[1] == ("messages[1].role", "role_order") and by_record[4] == ("messages[1].tool_calls",
                                                                                  "tool_calls")
    assert by_record[5] == ("messages[1].tool_calls", "mixed_types")
    assert "tool turns merged" in rep.errors[0].message
    kinds = [(w.record, w.kind) for w in rep.warnings]
    assert (None, "openai_system_prompt") in kinds and (2, "tool_dropped") in kinds and (3, "empty") in kinds
    assert "detailed thinking off" in rep.warnings[0].message and "register" in rep.warnings[0].fix
    assert any("0.9.5" in n for n in rep.notes)  # the release is not known here
    # the same file on 0.9.4, whose converter takes len() of a missing tool_calls: the whole load fails
    old = validate_file(f, entry={"file_name": str(f), **OA}, lf_version="0.9.4")
    assert old.file_error.kind == "load" and old.valid == 0 and "0.9.4" in old.summary() and not old.notes
    assert validate_file(f, entry={"file_name": str(f), **OA}, lf_version="0.9.5").invalid == 3


@pytest.mark.parametrize("version", ["0.9.2", "0.9.3"])
def test_openai_formatting_before_0_9_4_is_one_line(tmp_path, version):
    f = _jsonl(tmp_path / "oa.jsonl", [{"messages": _oa(("user", "q"), ("assistant", "a"))}])
    rep = validate_file(f, entry={"file_name": str(f), **OA}, lf_version=version)
    assert rep.file_error.field == "formatting" and version in rep.summary() and "0.9.4" in rep.summary()
    with pytest.raises(UserError) as exc:
        validate_entry("chat", {"file_name": "oa.jsonl", **OA}, tmp_path, lf_version=version)
    line = exc.value.one_line()
    assert exc.value.exit_code == 1 and line.startswith(f"{tmp_path / 'dataset_info.json'}: chat: formatting: ")
    assert "upgrade LLaMA-Factory to 0.9.4" in line and "sharegpt with role/content tags" in line
    # The wizard says its own controls instead of the register command line.
    assert "^g" in exc.value.fix_tui and "minicpm-tui" not in exc.value.fix_tui


def test_openai_entry_system_and_tools_are_read_with_get(tmp_path):
    """The converter reads system/tools with .get: a mapped column no record has is no KeyError (sharegpt's is)."""
    f = _jsonl(tmp_path / "oa.jsonl", [{"messages": _oa(("user", "q"), ("assistant", "a"))}])
    cols = {"messages": "messages", "system": "sys", "tools": "tl"}
    assert validate_file(f, entry={"file_name": str(f), **OA, "columns": cols}).ok
    rep = validate_file(f, entry={"file_name": str(f), **OA, "formatting": "sharegpt", "columns": cols})
    assert rep.file_error is not None and "KeyError" in rep.file_error.message
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {}}}]  # a JSON list: dumped, not refused
    f = _jsonl(tmp_path / "tools.jsonl", [{"messages": _oa(("user", "q"), ("assistant", "a")), "tl": tools}])
    assert validate_file(f, entry={"file_name": str(f), **OA, "columns": cols}).ok


def _parallel_results(monkeypatch) -> list:
    """What each ``_validate_parallel`` call returned: None means it fell back to the sequential path, so a
    sequential/parallel comparison would compare the sequential path with itself."""
    from minicpm_tui.core.datasets import validate as validate_mod

    results: list = []
    real = validate_mod._validate_parallel

    def recording(*args, **kwargs):
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(validate_mod, "_validate_parallel", recording)
    return results


def test_openai_parallel_and_folder_paths(tmp_path, monkeypatch):
    good = {"messages": _oa(("user", "t?"), _call(), ("tool", "1"), ("assistant", "y"))}
    records = [good] * 3000
    records[1500] = {"messages": _oa(("assistant", "a"), ("user", "b"))}
    f = _jsonl(tmp_path / "big.jsonl", records)
    entry = {"file_name": str(f), **OA}
    seq = validate_file(f, entry=entry, keep_indices=True, parallel_min_bytes=None)
    ran = _parallel_results(monkeypatch)
    par = validate_file(f, entry=entry, keep_indices=True, parallel_min_bytes=0, workers=2)
    assert ran and ran[-1] is not None  # the chunks ran in parallel
    assert seq.invalid_indices == par.invalid_indices == [1500]
    assert [e.brief() for e in par.errors] == [e.brief() for e in seq.errors]
    # 0.9.4: the facts behind its whole-load failure come from different chunks (a call early, none late)
    records[2999] = {"messages": _oa(("user", "q"), ("assistant", "a"))}
    f = _jsonl(tmp_path / "big.jsonl", records)
    seq = validate_file(f, entry=entry, lf_version="0.9.4", parallel_min_bytes=None)
    par = validate_file(f, entry=entry, lf_version="0.9.4", parallel_min_bytes=0, workers=2)
    assert ran[-1] is not None  # merged from the chunks, not read again sequentially
    assert seq.file_error.kind == par.file_error.kind == "load" and seq.summary() == par.summary()
    # arguments a JSON object in one chunk, a string in the other: Arrow fails; the sequential path says where
    records[2999] = {"messages": _oa(("user", "t?"), _call('{"x": 1}'), ("tool", "1"), ("assistant", "y"))}
    f = _jsonl(tmp_path / "big.jsonl", records)
    par = validate_file(f, entry=entry, keep_indices=True, parallel_min_bytes=0, workers=2)
    assert par.invalid_indices == [1500, 2999] and par.error_counts["mixed_types"] == 1
    folder = tmp_path / "shards"
    _jsonl(folder / "a.jsonl", [good])
    _jsonl(folder / "b.jsonl", [good, {"messages": _oa(("user", "q"), ("human", "a"))}])
    rep = validate_file(folder, entry={"file_name": str(folder), **OA}, keep_indices=True)
    assert rep.invalid_indices == [2] and rep.errors[0].file == "b.jsonl" and rep.errors[0].kind == "role"
    assert rep.warning_counts["openai_system_prompt"] == 1  # once for the folder


def test_standard_entries_read_as_the_detected_shape(tmp_path):
    """The corpus through the entry we would register gives the verdicts detection gives, record by record."""
    for f in sorted(p for p in CORPUS.iterdir() if p.suffix in (".json", ".jsonl", ".csv")):
        for stage in ("sft", "dpo", "kto"):
            rep = validate_file(f, stage=stage, keep_indices=True)
            if rep.shape is None:
                continue
            entry = dataset_info_entry(rep, file_name=str(f))
            through = validate_file(f, stage=stage, keep_indices=True, entry=entry)
            assert (through.ok, through.invalid_indices) == (rep.ok, rep.invalid_indices), (f.name, stage)
            assert (through.file_error is None) == (rep.file_error is None), (f.name, stage)
            if rep.file_error is None:  # a refused stage names the entry's key (ranking) instead: no record matters
                assert [(e.record, e.field, e.kind) for e in through.errors] == \
                    [(e.record, e.field, e.kind) for e in rep.errors], (f.name, stage)
            assert dataset_info_entry(through, file_name=str(f)) == entry  # the entry round-trips


def test_parallel_chunks_read_through_the_entry(tmp_path, monkeypatch):
    records = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3000)]
    for i in (7, 1500, 2999):
        records[i] = {"question": "q", "answer": None}
    records[10]["sys"] = "s"
    f = _jsonl(tmp_path / "big.jsonl", records)
    entry = {"file_name": str(f), "columns": {"prompt": "question", "response": "answer", "system": "sys"}}
    seq = validate_file(f, entry=entry, keep_indices=True, parallel_min_bytes=None)
    ran = _parallel_results(monkeypatch)
    par = validate_file(f, entry=entry, keep_indices=True, parallel_min_bytes=0, workers=2)
    assert ran and ran[-1] is not None  # the chunks ran in parallel
    assert seq.invalid_indices == par.invalid_indices == [7, 1500, 2999]
    assert [e.brief() for e in par.errors] == [e.brief() for e in seq.errors]
    assert par.errors[0].brief().startswith("record 7: answer: is missing")
    # a mapped column no chunk has: the same file-level issue both ways
    entry["columns"]["history"] = "past"
    seq = validate_file(f, entry=entry, parallel_min_bytes=None)
    par = validate_file(f, entry=entry, parallel_min_bytes=0, workers=2)
    assert seq.file_error.field == par.file_error.field == "past" and seq.summary() == par.summary()


def test_folder_read_through_the_entry(tmp_path):
    folder = tmp_path / "shards"
    _jsonl(folder / "part-1.jsonl", [{"question": "q", "answer": "a"}] * 2)
    _jsonl(folder / "part-2.jsonl", [{"question": "q", "answer": "a"}, {"question": "q", "answer": 3}])
    rep = validate_file(folder, entry={"file_name": str(folder), **QA, "columns": {**QA["columns"], "x": "y"}},
                        keep_indices=True)
    assert rep.invalid_indices == [3] and rep.errors[0].file == "part-2.jsonl" and rep.errors[0].field == "answer"
    assert rep.warning_counts["entry_key"] == 1  # the entry's own issue once for the folder, not once per file
    rep = validate_file(folder, entry={"file_name": str(folder), "split": "test", **QA})
    assert rep.error_counts["entry"] == 1 and rep.file_error.field == "split" and rep.valid == 0


# -- the CLI ------------------------------------------------------------------------------------------------
@pytest.fixture()
def info_dir(tmp_path) -> Path:
    _jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}, {"question": "q", "answer": None}])
    _jsonl(tmp_path / "dlg.jsonl", [{"dialog": _turns(("me", "hi"), ("bot", "yo"))}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "qa": {"file_name": "qa.jsonl", **QA},
        "dlg": {"file_name": "dlg.jsonl", "formatting": "sharegpt", "columns": {"messages": "dialog"},
                "tags": ME_BOT},
        "hub": {"hf_hub_url": "a/b"},
        "nofile": {"columns": {}},
        "broken": ["not", "an", "entry"],
        "gone": {"file_name": "missing.jsonl"},
        "oa": {"file_name": "oa.jsonl", **OA},
    }), encoding="utf-8")
    _jsonl(tmp_path / "oa.jsonl", [{"messages": _oa(("user", "q"), ("assistant", "a"))},
                                   {"messages": _oa(("assistant", "a"), ("user", "q"))}])
    return tmp_path


def test_cli_validates_a_registered_dataset_through_its_entry(info_dir, capsys):
    assert main(["validate", "--dataset-info", str(info_dir), "dlg"]) == 0
    assert "0 not usable" in capsys.readouterr().out
    info = info_dir / "dataset_info.json"
    assert main(["validate", "--dataset-info", str(info), "qa"]) == 1  # the file itself, or its folder
    out = capsys.readouterr().out
    assert f"{info_dir / 'qa.jsonl'}:record 1: answer: is missing" in out
    assert main(["validate", "--dataset-info", str(info), "qa", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["dataset_info"]["columns"]["response"] == "answer" and data["errors"][0]["field"] == "answer"


@pytest.mark.parametrize("argv, code, words", [
    (["qaa"], 2, "no dataset 'qaa' is registered here; did you mean 'qa'?"),
    (["hub"], 2, "hub: not validated: its data comes from hf_hub_url"),
    (["nofile"], 1, "nofile: file_name: is missing"),
    (["broken"], 1, "broken: is not a JSON object"),
    (["gone"], 1, "missing.jsonl: (file): no such file"),
    (["qa", "--format", "alpaca"], 2, "--format: cannot be combined with a dataset_info.json entry"),
])
def test_cli_entry_errors_are_one_line(info_dir, capsys, argv, code, words):
    assert main(["validate", "--dataset-info", str(info_dir), *argv]) == code
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert words in text and "Traceback" not in text
    if code == 2:
        assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("minicpm-tui: error: ")


@pytest.mark.parametrize("version, code", [("0.9.5", 1), ("0.9.4", 1), (None, 1), ("0.9.3", 1)])
def test_cli_openai_entries(info_dir, capsys, monkeypatch, version, code):
    """An openai entry is read by the installed release (found without importing it); before 0.9.4, one line."""
    import minicpm_tui.core.lfinfo as lfinfo

    monkeypatch.setattr(lfinfo, "installed_lf_version", lambda python=None: version)
    assert main(["validate", "--dataset-info", str(info_dir), "oa"]) == code
    captured = capsys.readouterr()
    if version == "0.9.3":
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
        assert "oa: formatting: is 'openai', which LLaMA-Factory 0.9.3 does not have" in captured.err
        assert "upgrade LLaMA-Factory to 0.9.4 or later, or register" in captured.err
        return
    assert "record 1: messages[0].role: reads as 'assistant'" in captured.out
    assert "openai, stage sft: 2 records, 1 usable" in captured.out and "detailed thinking off" in captured.out
    assert ("checked as LLaMA-Factory 0.9.5" in captured.out) == (version is None)


def test_cli_bad_dataset_info_files(tmp_path, capsys):
    assert main(["validate", "--dataset-info", str(tmp_path), "x"]) == 2
    assert "dataset_info.json: no such file" in capsys.readouterr().err
    (tmp_path / "dataset_info.json").write_text("{\"x\": ", encoding="utf-8")
    assert main(["validate", "--dataset-info", str(tmp_path), "x"]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    (tmp_path / "dataset_info.json").write_text("[1]", encoding="utf-8")
    assert main(["validate", "--dataset-info", str(tmp_path), "x"]) == 2
    err = capsys.readouterr().err
    assert "is not a JSON object of dataset entries" in err and "Traceback" not in err


@pytest.mark.parametrize("given", ["folder", "file"])
def test_cli_validate_of_a_dataset_folder_points_to_its_entries(info_dir, given):
    """`validate DIR` of LLaMA-Factory's dataset_dir (or of its dataset_info.json) is not read as data shards:
    one line naming it, a few of its entries and the command to use; that command, as printed, works."""
    import shlex
    import subprocess
    import sys

    path = info_dir if given == "folder" else info_dir / "dataset_info.json"
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "validate", str(path)], capture_output=True,
                          text=True, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and proc.stdout == "" and len(err.splitlines()) == 1, (proc.returncode, err)
    assert err.startswith(f"minicpm-tui: error: {path}: ") and "Traceback" not in err
    assert ("not a folder of data shards" if given == "folder" else "dataset registry, not data") in err
    assert "registers 7 dataset(s) ('qa', 'dlg', 'hub', 'nofile' and 3 more)" in err, err
    command = err.split("; validate one through its entry: ", 1)[1]
    assert command == f"minicpm-tui validate --dataset-info {shlex.quote(str(info_dir))} NAME", err
    argv = shlex.split(command.replace("NAME", "dlg"))[1:]
    follow = subprocess.run([sys.executable, "-m", "minicpm_tui", *argv], capture_output=True, text=True, timeout=120)
    assert follow.returncode == 0 and "0 not usable" in follow.stdout, follow.stderr


@pytest.mark.parametrize("given", ["folder", "file"])
def test_cli_register_of_a_dataset_folder_is_refused_like_validate(info_dir, tmp_path_factory, given):
    """`register DIR` of LLaMA-Factory's dataset_dir (or its dataset_info.json) registered the folder as one
    dataset of shards, its dataset_info.json among them; it is refused in one line as `validate DIR` is, and
    neither that registry nor the target one is touched. The commands it names work as printed."""
    import shlex
    import subprocess
    import sys

    path = info_dir if given == "folder" else info_dir / "dataset_info.json"
    before = (info_dir / "dataset_info.json").read_bytes()
    out_dir = tmp_path_factory.mktemp("target")
    for ddir in (out_dir, info_dir):  # another dataset_dir, or the registry's own folder
        proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "register", str(path), "--name", "all",
                               "--dataset-dir", str(ddir)], capture_output=True, text=True, timeout=120)
        err = proc.stderr.strip()
        assert proc.returncode == 2 and proc.stdout == "" and len(err.splitlines()) == 1, (proc.returncode, err)
        assert err.startswith(f"minicpm-tui: error: {path}: cannot register it: ") and "Traceback" not in err
        assert ("not a folder of data shards" if given == "folder" else "dataset registry, not data") in err
        assert "registers 7 dataset(s) ('qa', 'dlg', 'hub', 'nofile' and 3 more)" in err, err
        folder = shlex.quote(str(info_dir))
        assert f"--datasets NAME --dataset-dir {folder}" in err, err
        check = err.split("check it with `", 1)[1].split("`", 1)[0]
        assert check == f"minicpm-tui validate --dataset-info {folder} NAME", err
    assert (info_dir / "dataset_info.json").read_bytes() == before and not any(out_dir.iterdir())
    follow = subprocess.run([sys.executable, "-m", "minicpm_tui", *shlex.split(check.replace("NAME", "dlg"))[1:]],
                            capture_output=True, text=True, timeout=120)
    assert follow.returncode == 0 and "0 not usable" in follow.stdout, follow.stderr
    # A folder of shards still registers (the refusal is for a folder holding a dataset_info.json only).
    shards = out_dir / "shards"
    _jsonl(shards / "a.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    proc = subprocess.run([sys.executable, "-m", "minicpm_tui", "register", str(shards), "--name", "sh",
                           "--dataset-dir", str(out_dir)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "registered 'sh'" in proc.stdout, proc.stderr


def test_cli_validate_of_an_empty_dataset_folder(tmp_path, capsys):
    (tmp_path / "dataset_info.json").write_text("{}", encoding="utf-8")
    assert main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: is a LLaMA-Factory dataset folder" in err and "registers no dataset yet" in err, err


def test_openai_fast_path_is_the_full_check(monkeypatch):
    """The openai checker's fast path gives the full check's verdict, warnings, lengths and facts for every
    record (random ones, flawed and clean, through several entries and stages), and takes most clean ones
    without the full check."""
    import random

    from datasets_corpus.openai_fuzz import entries, record

    from minicpm_tui.core.datasets import openai_lf
    from minicpm_tui.core.datasets import validate as validate_mod
    from minicpm_tui.core.datasets.entry import read_entry

    full_calls = [0]
    real = validate_mod.messages_problem

    def counted(*args, **kwargs):  # the first thing the full check does
        full_calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(validate_mod, "messages_problem", counted)
    rng = random.Random(11)
    records = [json.loads(json.dumps(record(rng))) for _ in range(1500)]
    accepted = 0
    for entry, stage in entries():
        shape = read_entry({"file_name": "x.jsonl", **entry}, "0.9.5").shape
        fast, ref = openai_lf.openai_checker(shape, stage), openai_lf.openai_checker(shape, stage)
        for i, rec in enumerate(records):
            got: list = []
            want: list = []
            before = full_calls[0]
            verdict = fast(rec, i, lambda *a, out=got: out.append(a), lambda *a, out=got: out.append(("lens", a)))
            took_fast = full_calls[0] == before
            assert verdict == ref.full(rec, i, lambda *a, out=want: out.append(a),
                                       lambda *a, out=want: out.append(("lens", a))), (i, rec)
            assert got == want and fast.facts == ref.facts, (i, rec)
            accepted += took_fast
            assert not took_fast or verdict is None
    valid = 0
    for entry, stage in entries():
        shape = read_entry({"file_name": "x.jsonl", **entry}, "0.9.5").shape
        ref = openai_lf.openai_checker(shape, stage)
        valid += sum(ref.full(rec, i, lambda *a: None, lambda *a: None) is None for i, rec in enumerate(records))
    assert accepted > 0.8 * valid > 0


def _calling(function: dict) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function", "function": function}]}


def test_openai_calls_without_arguments_follow_the_files_schema(tmp_path):
    """Arrow reads one schema per file: a call without "arguments" (or "name") reads as null where some call has
    it, and the template's function formatter raises (KeyError) where none has: the run stops at that record."""
    def records(*functions: dict) -> list[dict]:
        return [{"messages": _oa(("user", "t?"), _calling(fn), ("tool", "1"), ("assistant", "y"))} for fn in functions]

    f = _jsonl(tmp_path / "some.jsonl", records({"name": "f", "arguments": {"x": 1}}, {"name": "f"}, {"arguments": {}}))
    rep = validate_file(f, entry={"file_name": str(f), **OA}, keep_indices=True)
    assert rep.ok and rep.valid == 3
    f = _jsonl(tmp_path / "none.jsonl", [{"messages": _oa(("user", "q"), ("assistant", "a"))},
                                         *records({"name": "f"}, {"name": "g"})])
    rep = validate_file(f, entry={"file_name": str(f), **OA}, keep_indices=True)
    assert rep.file_error.kind == "load" and rep.file_error.record == 1 and rep.valid == 0
    line = rep.file_error.line(str(f))
    assert line.startswith(f"{f}:record 1: messages[1].tool_calls: has a call whose function has no \"arguments\"")
    assert "KeyError: 'arguments'" in line and "{} for a call without arguments" in line
    # the record that raises is one the converter keeps: a dropped record with such a call is no stop
    f = _jsonl(tmp_path / "dropped.jsonl", [{"messages": _oa(("user", "t?"), _calling({"name": "f"}), ("tool", "1"),
                                                             ("assistant", "y"), ("user", "and?"))},
                                            {"messages": _oa(("user", "q"), ("assistant", "a"))}])
    rep = validate_file(f, entry={"file_name": str(f), **OA}, keep_indices=True)
    assert rep.file_error is None and rep.invalid_indices == [0] and rep.errors[0].kind == "turn_count"


def test_openai_tool_lists_as_json_share_one_struct(tmp_path, monkeypatch):
    """Tool lists written as JSON (the converter dumps them) are one Arrow struct per file: a tool lacking a
    parameter name or "required" that another record's tool has gets it as null; the tool formatter raises."""
    tz = {"name": "t", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}
    city = {"name": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    both = {"name": "b", "parameters": {"type": "object", "properties": {"tz": {}, "city": {}}}}
    chat = _oa(("user", "q"), ("assistant", "a"))
    entry = {**OA, "columns": {"messages": "messages", "tools": "tools"}}
    f = _jsonl(tmp_path / "differ.jsonl", [{"messages": chat, "tools": [both]}, {"messages": chat},
                                           {"messages": chat, "tools": [tz]}, {"messages": chat, "tools": [city]}])
    rep = validate_file(f, entry={"file_name": str(f), **entry}, keep_indices=True)
    assert rep.file_error.record == 2 and rep.file_error.field == "tools" and rep.valid == 0
    assert "('city') as null" in rep.file_error.message and "json.dumps" in rep.file_error.fix
    required = {**tz, "parameters": {**tz["parameters"], "required": ["tz"]}}
    f = _jsonl(tmp_path / "required.jsonl", [{"messages": chat, "tools": [required]}, {"messages": chat, "tools": [tz]}])
    rep = validate_file(f, entry={"file_name": str(f), **entry})
    assert rep.file_error.record == 1 and "\"required\": null" in rep.file_error.message
    # as JSON text every record keeps its own tools; the same struct everywhere is fine too
    f = _jsonl(tmp_path / "text.jsonl", [{"messages": chat, "tools": json.dumps([t])} for t in (tz, city, required)])
    assert validate_file(f, entry={"file_name": str(f), **entry}).ok
    f = _jsonl(tmp_path / "same.jsonl", [{"messages": chat, "tools": [both]}, {"messages": chat, "tools": [both, both]}])
    assert validate_file(f, entry={"file_name": str(f), **entry}).ok
    # split into chunks, the struct is merged: the parallel report is the sequential one
    records = [{"messages": chat, "tools": [tz]}] * 1500 + [{"messages": chat, "tools": [city]}] * 1500
    f = _jsonl(tmp_path / "big.jsonl", records)
    seq = validate_file(f, entry={"file_name": str(f), **entry}, parallel_min_bytes=None)
    ran = _parallel_results(monkeypatch)
    par = validate_file(f, entry={"file_name": str(f), **entry}, parallel_min_bytes=0, workers=2)
    assert ran and ran[-1] is not None
    assert seq.file_error.record == par.file_error.record == 0 and seq.summary() == par.summary()


def _weather(description: bool = True, city_description: bool = True) -> dict:
    city = {"type": "string", **({"description": "the city"} if city_description else {})}
    return {"type": "function", "function": {"name": "weather", **({"description": "get the weather"} if description
                                                                    else {}),
                                             "parameters": {"type": "object", "properties": {"city": city},
                                                            "required": ["city"]}}}


TOOL_NULL_CASES = {  # name: (the tools of record 0, of record 1), the record and words warned, or None
    "tool_description": ([_weather()], [_weather(description=False)], (1, 'a tool without "description"')),
    "param_description": ([_weather()], [_weather(city_description=False)], (1, "parameter 'city' without")),
    "one_list": ([_weather(), _weather(description=False)], None, (0, 'a tool without "description"')),
    "same_keys": ([_weather()], [_weather()], None),
    "none_has_it": ([_weather(description=False)], [_weather(description=False)], None),
}


def _tool_null_file(tmp_path: Path, case: str) -> tuple[Path, dict]:
    first, second, _ = TOOL_NULL_CASES[case]
    chat = _oa(("user", "weather?"), ("assistant", "sunny"))
    records = [{"messages": chat, "tools": first}] + ([{"messages": chat, "tools": second}] if second else [])
    f = _jsonl(tmp_path / f"{case}.jsonl", records)
    return f, {"file_name": str(f), **OA, "columns": {"messages": "messages", "tools": "tools"}}


@pytest.mark.parametrize("case", sorted(TOOL_NULL_CASES))
def test_openai_tool_keys_arrow_fills_with_null_are_a_warning(tmp_path, case):
    """A tool (or parameter) key that other tools of the file have is null in this one; the default tool
    formatter prints it as "None": training goes on, on that text, so a warning, not an error."""
    f, entry = _tool_null_file(tmp_path, case)
    rep = validate_file(f, entry=entry)
    assert rep.ok and rep.valid == (2 if TOOL_NULL_CASES[case][1] else 1)
    warned = [w for w in rep.warnings if w.kind == "tool_text"]
    expected = TOOL_NULL_CASES[case][2]
    if expected is None:
        assert not warned
    else:
        (w,) = warned
        assert (w.record, w.field) == (expected[0], "tools") and expected[1] in w.message and '"None"' in w.message
        assert "json.dumps" in w.fix


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(TOOL_NULL_CASES))
def test_openai_tool_null_warning_agrees_with_the_rendered_prompt(tmp_path, case, tiny_model_cpm3):
    """LLaMA-Factory's own loader and cpm4 template render the file's records: the tool text holds "None"
    exactly where validate warns."""
    from minicpm_tui.core.lfinfo import training_python
    from minicpm_tui.core.resources import resource_script
    from minicpm_tui.core.tinymodel import offline_env

    f, entry = _tool_null_file(tmp_path, case)
    job = {"mode": "preview", "file": str(f), "tokenizer": str(tiny_model_cpm3), "template": "cpm4",
           "stage": "sft", "cutoff_len": None, "entry": {k: v for k, v in entry.items() if k != "file_name"}}
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    proc = subprocess.run([training_python(), str(resource_script("lf_dataset_check.py")), str(tmp_path / "job.json")],
                          capture_output=True, text=True, env=offline_env(), timeout=600)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@@LFCHECK@@"))
    rendered = ["".join(s["text"] for s in r["sequence"]) for r in json.loads(line[len("@@LFCHECK@@"):])["records"]]
    prints_none = [i for i, text in enumerate(rendered) if "Description: None" in text or "): None" in text]
    warned = [w.record for w in validate_file(f, entry=entry).warnings if w.kind == "tool_text"]
    expected = TOOL_NULL_CASES[case][2]
    assert warned == ([expected[0]] if expected else [])
    assert (prints_none[:1] if prints_none else []) == warned, rendered


def test_openai_entry_without_ranking_for_dpo_names_the_record(tmp_path):
    """Both answers on a record with an even number of turns, through a non-ranking openai entry for DPO: the
    entry's stage issue refuses the file, and the record says why (it stopped on a StopIteration)."""
    f = _jsonl(tmp_path / "oa.jsonl", [{"messages": _oa(("user", "q"), ("assistant", "x")),
                                        "chosen": {"role": "assistant", "content": "a"},
                                        "rejected": {"role": "assistant", "content": "b"}}])
    rep = validate_file(f, entry={"file_name": str(f), **OA}, stage="dpo")
    assert rep.file_error.kind == "stage" and [e.kind for e in rep.errors] == ["dpo_shape", "stage"]
    assert "no \"ranking\": true" in rep.errors[0].message
