"""Unit tests for minicpm_tui.core.datasets and the validate / register / convert commands (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minicpm_tui.assets import asset_path
from minicpm_tui.cli import main
from minicpm_tui.core.datasets import dataset_info_entry, detect_format, register_dataset, validate_file
from minicpm_tui.core.errors import UserError

CORPUS = Path(__file__).parent / "datasets_corpus"
DEMOS = ["demo_sft.json", "demo_dpo.jsonl", "demo_kto.jsonl"]


@pytest.mark.parametrize("name", DEMOS)
def test_demo_files_validate_clean(name, capsys):
    assert main(["validate", str(asset_path("data", name))]) == 0
    out = capsys.readouterr().out
    assert "0 not usable" in out


def test_demo_dataset_info_matches_what_we_would_register():
    info = json.loads(asset_path("data", "dataset_info.json").read_text(encoding="utf-8"))
    for name in DEMOS:
        rep = validate_file(asset_path("data", name))
        key = "demo_" + name.split("_")[1].split(".")[0]
        assert info[key] == dataset_info_entry(rep, file_name=name)
        assert rep.stage == key[5:]


BAD = {  # file -> (record, field) of the first error
    "bad_alpaca.json": (1, "output"),
    "bad_sharegpt.json": (1, "conversations[0].from"),
    "bad_kto_role_order.jsonl": (0, "messages[0].role"),  # in KTO it stops LF's preprocessing (KL pairs)
    "bad_alpaca_kto_string.jsonl": (0, "label"),
    "bad_kto_string_labels.jsonl": (0, "label"),
    "bad_sharegpt_dpo.jsonl": (1, "conversations"),
    "bad_alpaca_dpo.json": (1, "rejected"),
    "bad_mixed_unused_field.jsonl": (1, "id"),
    "bad_openai.jsonl": (1, "messages[1].role"),
    "bad_sharegpt_misspelt_key.jsonl": (0, "conversation"),
    "bad_sharegpt_nested_types.jsonl": (1, "conversations[0].weight"),
    "bad_nested_list_types.json": (1, "tags[0]"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_exit_1_naming_record_and_field(name, capsys):
    assert main(["validate", str(CORPUS / name)]) == 1
    out = capsys.readouterr().out
    record, fld = BAD[name]
    assert f"{CORPUS / name}:record {record}: {fld}: " in out
    assert "; " in out.splitlines()[0]  # message; fix


@pytest.mark.parametrize("name", ["bad_empty.json", "bad_empty_array.json", "bad_top_level_object.json",
                                  "bad_not_records.json", "bad_blank_and_garbage.jsonl", "bad_duplicate_key.jsonl",
                                  "bad_nan.jsonl", "bad_unknown_format.jsonl", "bad_alpaca_numeric.csv"])
def test_file_level_and_odd_files_exit_1(name, capsys):
    assert main(["validate", str(CORPUS / name)]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_json_contract(capsys):
    assert main(["validate", str(CORPUS / "bad_sharegpt.json"), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    for key in ("file", "format", "stage", "records", "valid", "invalid", "errors", "stats"):
        assert key in data
    assert (data["format"], data["stage"], data["records"], data["valid"], data["invalid"]) == \
        ("sharegpt", "sft", 11, 2, 9)
    first = data["errors"][0]
    assert set(first) >= {"record", "field", "message", "fix"} and first["record"] == 1
    assert data["stats"]["turns"]["max"] == 2


def test_json_file_level_error_has_null_record(capsys, tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('[{"instruction": "a", "output": "b"}, {"instruction": ', encoding="utf-8")
    assert main(["validate", str(bad), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["records"] == 1 and data["errors"][-1]["kind"] == "truncated"
    empty = tmp_path / "e.jsonl"
    empty.write_text("", encoding="utf-8")
    assert main(["validate", str(empty), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"][0]["record"] is None


@pytest.mark.parametrize(("name", "text", "message"), [
    ("one_line.json", '[{"instruction": "a", "output": "b"},]',
     "a trailing comma after the last record (0) before the closing ']' on line 1"),
    ("pretty.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": "d"},\n]\n',
     "a trailing comma after the last record (1) before the closing ']' on line 4"),
    ("in_record.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": "d",}\n]',
     "record 1 has a trailing comma before '}' on line 3"),
    ("in_list.json", '[{"conversations": [{"from": "human", "value": "a"},\n {"from": "gpt", "value": "b"},]}]',
     "record 0 has a trailing comma before ']' on line 2"),
    ("lines.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d",}\n',
     "line 2 has a trailing comma before '}' at column 36"),
    ("missing_comma.json", '[\n {"instruction": "a", "output": "b"}\n {"instruction": "c", "output": "d"}\n]',
     "expected ',' or ']' after record 0 on line 3"),
    ("syntax.json", '[\n {"instruction": "a", "output": "b"},\n\n {"instruction": "c" "output": "d"}\n]',
     "not valid JSON in record 1: Expecting ',' delimiter on line 4"),
])
def test_a_trailing_comma_is_named_as_one_with_its_line(tmp_path, name, text, message):
    """A hand-edited file's trailing comma read "the JSON array ends inside record 1 (is the file truncated?)",
    "(the line is cut short: is the file truncated?)" or "Expecting value (about 3 lines into the current
    chunk)": a truncation that was not one, and no line of the file to look at."""
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    rep = validate_file(f)
    assert not rep.ok
    assert any(e.message == message for e in rep.errors), [e.message for e in rep.errors]
    assert not any("truncated" in e.message or "chunk" in e.message for e in rep.errors)
    if "trailing" in message:
        assert any("JSON allows no trailing comma" in e.fix for e in rep.errors)


def test_usage_errors_exit_2(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "missing.json")]) == 2
    assert main(["validate", str(CORPUS / "good_alpaca.json"), "--cutoff-len", "512"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["validate", "x.json", "--stage", "ppo"])
    assert exc.value.code == 2


def test_stage_mismatch_is_file_level(tmp_path):
    rep = validate_file(CORPUS / "good_alpaca.json", stage="dpo")
    assert not rep.ok and rep.file_error.kind == "stage" and rep.invalid == rep.records
    rep = validate_file(CORPUS / "good_sharegpt_dpo.jsonl", stage="sft")
    assert not rep.ok and "ranking" in rep.file_error.message


def test_error_cap_with_count(tmp_path, capsys):
    f = tmp_path / "many.jsonl"
    f.write_text("".join(json.dumps({"instruction": "q", "output": "a", "label": "true"}) + "\n"
                         for _ in range(5000)), encoding="utf-8")
    rep = validate_file(f)
    assert rep.invalid == 5000 and len(rep.errors) == 20 and rep.error_counts["kto_label_string"] == 5000
    assert any("and 4,980 more like this" in line for line in rep.lines())


def test_detect_format():
    assert detect_format({"instruction": "a", "output": "b"}).name == "alpaca"
    assert detect_format({"instruction": "a", "chosen": "b", "rejected": "c"}).name == "alpaca-dpo"
    s = detect_format({"messages": [{"role": "user", "content": "x"}], "label": True})
    assert s.name == "openai-kto" and s.tags["role_tag"] == "role" and s.formatting == "sharegpt"
    s = detect_format({"conversations": [{"from": "user", "value": "x"}]})
    assert s.tags["user_tag"] == "user" and s.tags["content_tag"] == "value"
    assert detect_format({"q": 1}) is None and detect_format([1]) is None


def test_progress_and_streaming_big_array(tmp_path):
    f = tmp_path / "big.json"
    with open(f, "w", encoding="utf-8") as fh:
        fh.write("[")
        for i in range(60000):
            fh.write(("," if i else "") + json.dumps({"instruction": f"q{i}", "input": "", "output": "a" * 300}))
        fh.write("]")
    calls = []
    rep = validate_file(f, progress=lambda done, total: calls.append((done, total)))
    assert rep.ok and rep.records == 60000
    assert calls and calls[-1][0] == calls[-1][1] == f.stat().st_size and len(calls) >= 2


def test_big_string_record_in_array(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps([{"instruction": "x", "output": "y" * (10 << 20)}, {"instruction": "z",
                                                                               "output": "w"}]), encoding="utf-8")
    rep = validate_file(f)
    assert rep.ok and rep.records == 2 and rep.stats["chars"]["max"] == (10 << 20) + 1


# -- register ------------------------------------------------------------------------------

def test_register_twice_refuses_then_force(tmp_path, capsys):
    ddir = tmp_path / "d"
    assert main(["register", str(CORPUS / "good_alpaca.json"), "--name", "mine", "--dataset-dir", str(ddir)]) == 0
    info = ddir / "dataset_info.json"
    before = info.read_bytes()
    # same file again: no change, exit 0
    assert main(["register", str(CORPUS / "good_alpaca.json"), "--name", "mine", "--dataset-dir", str(ddir)]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert main(["register", str(CORPUS / "good_sharegpt.json"), "--name", "mine", "--dataset-dir", str(ddir)]) == 1
    assert "--force" in capsys.readouterr().err
    assert info.read_bytes() == before
    assert main(["register", str(CORPUS / "good_sharegpt.json"), "--name", "mine", "--dataset-dir", str(ddir),
                 "--force"]) == 0
    assert json.loads(info.read_text())["mine"]["formatting"] == "sharegpt"
    assert list(ddir.glob("dataset_info.json.bak-*"))[0].read_bytes() == before


def test_register_keeps_other_entries_byte_for_byte(tmp_path):
    ddir = tmp_path / "d"
    ddir.mkdir()
    original = ('{\n    "theirs": {"file_name": "a.json",   "columns": {"prompt": "q"}},\n'
                '    "other":{"hf_hub_url":"x/y"}   ,\n    "old": {"file_name": "old.json"}\n}\n')
    (ddir / "dataset_info.json").write_text(original, encoding="utf-8")
    register_dataset(CORPUS / "good_kto.jsonl", "new", ddir)
    text = (ddir / "dataset_info.json").read_text(encoding="utf-8")
    assert text.startswith(original.rstrip()[:-1].rstrip())  # every old byte kept, new entry appended
    data = json.loads(text)
    assert list(data) == ["theirs", "other", "old", "new"] and data["new"]["columns"]["kto_tag"] == "label"
    register_dataset(CORPUS / "good_alpaca.json", "old", ddir, force=True)
    text2 = (ddir / "dataset_info.json").read_text(encoding="utf-8")
    head = original[: original.index('"old"')]
    assert text2.startswith(head) and json.loads(text2)["old"]["formatting"] == "alpaca"
    assert text2.endswith(text[text.index(',\n    "new"'):])


def test_register_refuses_invalid_data_and_bad_info(tmp_path):
    with pytest.raises(UserError) as exc:
        register_dataset(CORPUS / "bad_sharegpt.json", "x", tmp_path)
    assert exc.value.exit_code == 1 and "record 1" in str(exc.value)
    (tmp_path / "dataset_info.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UserError):
        register_dataset(CORPUS / "good_alpaca.json", "x", tmp_path)


def test_register_of_a_binary_file_has_no_empty_field_in_its_message(tmp_path, capsys):
    # A record error without a field printed "record 0: : line 1 ..." (an empty field, a doubled colon).
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00garbage\n")
    assert main(["register", str(binary), "--name", "x", "--dataset-dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert "first: record 0: line 1 is not valid UTF-8" in err and ": :" not in err and len(err.splitlines()) == 1
    assert "first: record 0: line 1" in validate_file(binary).summary()


def test_entry_names_only_present_columns():
    rep = validate_file(CORPUS / "good_alpaca.csv")
    assert dataset_info_entry(rep, "f.csv")["columns"] == {"prompt": "instruction", "query": "input",
                                                            "response": "output"}
    rep = validate_file(CORPUS / "good_kto.jsonl", stage="sft")
    assert "kto_tag" not in dataset_info_entry(rep, "f")["columns"]  # as SFT, the label is not read


# -- convert -------------------------------------------------------------------------------

def test_convert_kto_labels_and_openai(tmp_path, capsys):
    out = tmp_path / "fixed.jsonl"
    assert main(["convert", str(CORPUS / "bad_kto_string_labels.jsonl"), str(out), "--kto-labels",
                 "--openai-to-sharegpt"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["label"] is True and rows[1]["label"] is False
    assert rows[0]["conversations"][0] == {"from": "human", "value": "q"}
    assert validate_file(out).ok and validate_file(out).format == "sharegpt-kto"
    assert main(["convert", str(CORPUS / "bad_kto_string_labels.jsonl"), str(out), "--kto-labels"]) == 2


def test_convert_csv_keeps_strings(tmp_path):
    out = tmp_path / "n.jsonl"
    assert main(["convert", str(CORPUS / "bad_alpaca_numeric.csv"), str(out)]) == 0
    assert not validate_file(CORPUS / "bad_alpaca_numeric.csv").ok  # pandas would make the answers numbers
    assert validate_file(out).ok


def test_convert_refuses_a_csv_whose_quote_never_closes(tmp_path, capsys):
    """The csv module gave the rest of the file as the open cell, and convert wrote it: a JSON Lines file that
    loads, with the records after the stray quote folded into one answer."""
    src = tmp_path / "d.csv"
    src.write_text('instruction,output\nq1,a\nq2,"b\nq3,c\n', encoding="utf-8")
    out = tmp_path / "d.jsonl"
    assert main(["convert", str(src), str(out)]) == 1
    assert "record 1 opens a quoted cell that is never closed" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".d.jsonl*"))  # no half file, no temp file left
    src.write_text('instruction,output\nq1,"a\n""b"""\nq2,c\n', encoding="utf-8")
    assert main(["convert", str(src), str(out)]) == 0
    assert [json.loads(line)["output"] for line in out.read_text().splitlines()] == ['a\n"b"', "c"]


def test_convert_needs_an_action(tmp_path):
    assert main(["convert", str(CORPUS / "good_alpaca.json"), str(tmp_path / "o.jsonl")]) == 2


def test_parquet_is_read(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    f = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"conversations": [{"from": "human", "value": "a"},
                                                            {"from": "gpt", "value": "b"}]},
                                         {"conversations": [{"from": "gpt", "value": "a"},
                                                            {"from": "human", "value": "b"}]}]), f)
    rep = validate_file(f, keep_indices=True)
    assert rep.format == "sharegpt" and rep.invalid_indices == [1]


def test_record_parse_error_line_names_the_record(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n', encoding="utf-8")
    line = validate_file(f).lines()[0]
    assert line.startswith(f"{f}:record 1: (record): line 2 is not valid JSON")


def test_duplicate_key_proof_is_sound():
    """The fast parse's proof of "no repeated key" never vouches for a text that has one."""
    import random

    from minicpm_tui.core.datasets.reader import _no_duplicate_keys

    rng = random.Random(7)
    atoms = ["a", "b", "a:b", '"', "\\", ":", '":', '\\":', "x\\\\", " :", "中"]

    def word() -> str:
        return "".join(rng.choice(atoms) for _ in range(rng.randint(0, 3)))

    def gap() -> str:
        return rng.choice(["", "", " ", "\t", "\r", "\n"])

    def gen(depth: int = 0) -> str:
        r = rng.random()
        if depth > 3 or r < 0.3:
            return rng.choice([json.dumps(word(), ensure_ascii=rng.random() < 0.5), "1", "null"])
        if r < 0.5:
            return "[" + ",".join(gap() + gen(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
        keys = [word() for _ in range(rng.randint(0, 4))]
        if keys and rng.random() < 0.3:
            keys.append(rng.choice(keys))
        return "{" + ",".join(gap() + json.dumps(k) + gap() + ":" + gap() + gen(depth + 1) for k in keys) + "}"

    def has_dup(text: str) -> bool:
        found = []

        def hook(pairs):
            found.append(len(dict(pairs)) != len(pairs))
            return dict(pairs)

        json.loads(text, object_pairs_hook=hook)
        return any(found)

    proven = 0
    for _ in range(3000):
        text = gen()
        value = json.loads(text)
        dup = has_dup(text)
        for src in (text, text.encode()):
            ok = _no_duplicate_keys(value, src)
            assert not (ok and dup), text
            proven += ok
    assert proven > 2000  # and it is useful: most duplicate-free texts are proven so



def test_key_colon_count_is_the_per_colon_one():
    """``_key_colons`` (counted in C, pattern by pattern) is the per-colon count it replaced: every colon right after
    whitespace or an unescaped quote, over any slice, for text and bytes."""
    import random

    from minicpm_tui.core.datasets.reader import _key_colons

    def per_colon(text, start: int, end: int) -> int:
        colon, quote, bs = (b":", b'"', b"\\") if isinstance(text, bytes) else (":", '"', "\\")
        parts = text[start:end].split(colon)
        parts.pop()
        n = 0
        for part in parts:
            last = part[-1:]
            if last in ((b'"', b" ", b"\t", b"\r", b"\n") if isinstance(text, bytes) else tuple('" \t\r\n')):
                if last == quote and part[-2:-1] == bs and (len(part) - 1 - len(part[:-1].rstrip(bs))) % 2:
                    continue
                n += 1
        return n

    rng = random.Random(11)
    atoms = ['"', "\\", ":", " ", "\t", "\n", "a", "中", '\\":', '\\\\":']
    for _ in range(5000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        start = rng.randint(0, len(text))
        end = rng.randint(start, len(text))
        assert _key_colons(text, start, end) == per_colon(text, start, end), (text, start, end)
        raw = text.encode()
        bstart, bend = len(text[:start].encode()), len(text[:end].encode())
        assert _key_colons(raw, bstart, bend) == per_colon(raw, bstart, bend), (text, start, end)

_GOOD_DPO = {"conversations": [{"from": "human", "value": "q: 1"}], "chosen": {"from": "gpt", "value": "a"},
             "rejected": {"from": "gpt", "value": "b"}}
_NAN_DPO = b'{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", ' \
           b'"value": "a"}, "rejected": {"from": "gpt", "value": "b"}, "score": NaN}'


def _dpo_trouble(i: int, rec: dict) -> bytes | None:
    """The record-level troubles both generators below spread over their files (None: none here)."""
    r = i % 23
    if r == 11:
        rec["conversations"].append({"from": "gpt", "value": "x"})  # even turn count
        return json.dumps(rec, ensure_ascii=False).encode()
    if r == 13:
        rec["conversations"][0]["value"] = ""  # a warning only
        return json.dumps(rec).encode()
    if r == 15:
        return _NAN_DPO
    return None


def _mixed_jsonl(path: Path, n: int, *, mixed: bool = False) -> None:
    """A sharegpt DPO JSON Lines file with every kind of trouble, spread over the file."""
    with open(path, "wb") as fh:
        for i in range(n):
            rec = json.loads(json.dumps(_GOOD_DPO))
            rec["conversations"][0]["value"] = f"question {i}: " + "中文" * (i % 7)
            r = i % 23
            shared = _dpo_trouble(i, rec)
            if shared is not None:
                line = shared
            elif r == 3:
                line = b'{"conversations": [1, 2'  # not JSON
            elif r == 5:
                line = b'{"conversations": "\xff"}'  # not UTF-8
            elif r == 7:
                line = b'{"chosen": 1, "chosen": 2, "conversations": []}'  # a duplicated key
            elif r == 9:
                line = b""  # blank lines are not records
            elif r == 17:
                rec["n"] = 123456789012345678901234567890  # beyond 64 bits
                line = json.dumps(rec).encode()
            elif r == 19 and mixed and i > n // 2:
                rec["tag"] = 1  # a number here, a string in the first half
                line = json.dumps(rec).encode()
            elif r == 19 and mixed:
                rec["tag"] = "x"
                line = json.dumps(rec).encode()
            else:
                line = json.dumps(rec, ensure_ascii=i % 2 == 0).encode()
            fh.write(line + (b"\r\n" if i % 31 == 0 else b"\n"))


@pytest.mark.parametrize("mixed", [False, True])
def test_parallel_jsonl_matches_sequential(tmp_path, mixed):
    f = tmp_path / "big.jsonl"
    _mixed_jsonl(f, 3000, mixed=mixed)
    seq = validate_file(f, keep_indices=True, parallel_min_bytes=None)
    calls = []
    par = validate_file(f, keep_indices=True, parallel_min_bytes=1, workers=3,
                        progress=lambda done, total: calls.append((done, total)))
    a, b = seq.to_json(), par.to_json()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert seq.lines() == par.lines() and seq.invalid_indices == par.invalid_indices
    assert seq.total_errors > 100 and len(seq.warnings) == 50  # the caps were exercised
    assert any(e.kind == "mixed_types" for e in seq.errors) == mixed
    assert calls and calls[-1] == (f.stat().st_size, f.stat().st_size)
    # The chunks really ran (a key of two kinds across chunks sends the file back to sequential).
    from minicpm_tui.core.datasets.validate import _validate_parallel

    assert (_validate_parallel(f, None, None, None, True, 3) is None) == mixed


def test_parallel_split_is_at_line_starts(tmp_path):
    from minicpm_tui.core.datasets.validate import _split_lines

    f = tmp_path / "x.jsonl"
    f.write_bytes(b"".join(b'{"a": "%s"}\n' % (b"x" * (i % 50)) for i in range(500)))
    data = f.read_bytes()
    ranges = _split_lines(f, len(data), 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data) and len(ranges) == 7
    for (_, b), (c, _) in zip(ranges, ranges[1:], strict=False):
        assert b == c and data[b - 1:b] == b"\n"


def _mixed_array(path: Path, n: int, *, mixed: bool = False, trap: bool = False, compact: bool = False,
                 tail: bytes = b"]\n") -> None:
    """A sharegpt DPO JSON array with every kind of record-level trouble, spread over the file.

    ``trap``: record 1 holds a string full of '}, {' as long as the rest of the file, so a
    candidate split lands inside it and the chunk before must refuse it. ``compact``: no
    newlines between records (then the candidates are the first '}, {' found).
    """
    good = _GOOD_DPO
    recs: list[bytes] = []
    for i in range(n):
        rec = json.loads(json.dumps(good))
        rec["conversations"][0]["value"] = f"question {i}: " + "中文" * (i % 7) + ("" if compact else ' "},{" }, {')
        r = i % 23
        shared = _dpo_trouble(i, rec)
        if shared is not None:
            item = shared
        elif r == 7:
            item = b'{"chosen": 1, "chosen": {"from": "gpt", "value": "a"}, "conversations": [{"from": ' \
                   b'"human", "value": "q"}], "rejected": {"from": "gpt", "value": "b"}}'  # a duplicated key
        elif r == 17:
            rec["conversations"][0]["value"] = 5  # wrong type (a top-level one would be mixed_types)
            item = json.dumps(rec).encode()
        elif r == 19:
            rec["tag"] = 1 if mixed and i > n // 2 else "x"
            item = json.dumps(rec).encode()
        else:
            item = json.dumps(rec, ensure_ascii=i % 2 == 0).encode()
        recs.append(item)
    if trap:
        size = sum(len(x) for x in recs)
        recs[1] = json.dumps({**good, "note": 'x\\"}, {\\"y },{' * (size // 14)}).encode()
    seps = (b",", b", ") * 2 if compact else (b",", b", ", b",\n  ", b"\r\n,\t")
    body = b"".join(x + seps[i % 4] for i, x in enumerate(recs[:-1])) + recs[-1]
    path.write_bytes(b"\xef\xbb\xbf [\n" + body + b"\n" + tail)


@pytest.mark.parametrize("case", ["plain", "compact", "mixed", "trap", "truncated", "trailing"])
def test_parallel_array_matches_sequential(tmp_path, case):
    from minicpm_tui.core.datasets.validate import _split_array, _validate_parallel

    f = tmp_path / "big.json"
    tail = {"truncated": b"", "trailing": b"] []"}.get(case, b"]\n")
    _mixed_array(f, 3000, mixed=case == "mixed", trap=case == "trap", compact=case in ("compact", "trap"),
                 tail=tail)
    seq = validate_file(f, keep_indices=True, parallel_min_bytes=None)
    calls = []
    par = validate_file(f, keep_indices=True, parallel_min_bytes=1, workers=3,
                        progress=lambda done, total: calls.append((done, total)))
    a, b = seq.to_json(), par.to_json()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert seq.lines() == par.lines() and seq.invalid_indices == par.invalid_indices
    assert seq.layout == "array" and calls
    if case in ("plain", "compact", "mixed", "trap"):
        assert seq.total_errors > 100 and len(seq.warnings) == 50  # the caps were exercised
        assert seq.warning_counts["duplicate_key"] > 100 and seq.warning_counts["nan"] == 1
    else:
        assert seq.file_error is not None
    assert len(_split_array(f, f.stat().st_size, 3)) == 3
    # The chunks really ran, except where the sequential path must decide.
    assert (_validate_parallel(f, None, None, None, True, 3) is None) == (case not in ("plain", "compact"))


def test_array_split_candidates_and_verification(tmp_path):
    from minicpm_tui.core.datasets.reader import FileLevelError, RecordReader
    from minicpm_tui.core.datasets.validate import _split_array

    f = tmp_path / "x.json"
    recs = [b'{"a": "%s"}' % (b"x" * (i % 50)) for i in range(500)]
    recs[250] = b'{"a": "%s"}' % (b"}, {" * 2000)
    f.write_bytes(b"[" + b",".join(recs) + b"]")  # compact: candidates are the first '},{' found
    data = f.read_bytes()
    ranges = _split_array(f, len(data), 7)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data) and len(ranges) == 7
    seen = []
    for k, (start, stop) in enumerate(ranges):
        if k:
            assert data[start:start + 1] == b"{" and data[:start].rstrip(b" ").endswith(b"},")
        last = k == len(ranges) - 1
        reader = RecordReader(f, array_range=(start, stop, last))
        try:
            got = [rec for _, rec in reader]
        except FileLevelError:  # a chunk that starts inside a string may not parse at all
            got = []
        seen.append(reader.split_ok)
        if reader.split_ok and start == 0:
            assert got == [json.loads(x) for x in recs[:len(got)]]
    assert not all(seen)  # a split inside record 250's string was caught


# -- folders (LLaMA-Factory reads a folder file_name as one dataset of all its entries) -----------------

def _alpaca(n: int, start: int = 0, **extra) -> list[dict]:
    return [{"instruction": f"q{start + i}", "input": "", "output": f"a{start + i}", **extra} for i in range(n)]


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _shards(folder: Path, *sizes: int) -> Path:
    start = 0
    for k, n in enumerate(sizes, 1):
        _jsonl(folder / f"shard-{k}.jsonl", _alpaca(n, start))
        start += n
    return folder


def test_folder_of_two_shards_is_one_dataset(tmp_path, capsys):
    folder = _shards(tmp_path / "shards", 2, 3)
    rep = validate_file(folder)
    assert rep.ok and (rep.records, rep.valid, rep.format, rep.stage) == (5, 5, "alpaca", "sft")
    assert [(f["file"], f["records"], f["first_record"]) for f in rep.files] == \
        [("shard-1.jsonl", 2, 0), ("shard-2.jsonl", 3, 2)]
    assert rep.stats["records_measured"] == 5 and rep.stats["chars"]["max"] == 4
    assert dataset_info_entry(rep)["file_name"] == str(folder)
    assert dataset_info_entry(rep, "shards") == dict(dataset_info_entry(validate_file(folder / "shard-1.jsonl"),
                                                                         "shards"))
    assert main(["validate", str(folder)]) == 0
    assert f"{folder} (2 files): alpaca, stage sft: 5 records, 5 usable, 0 not usable" in capsys.readouterr().out
    assert main(["validate", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["records"] == 5 and data["ok"] and [f["file"] for f in data["files"]] == ["shard-1.jsonl",
                                                                                          "shard-2.jsonl"]
    assert "files" not in validate_file(folder / "shard-1.jsonl").to_json()  # a file's contract is unchanged


def test_folder_problems_name_the_file_and_its_record(tmp_path, capsys):
    folder = _shards(tmp_path / "shards", 2, 1)
    _jsonl(folder / "shard-10.jsonl", [*_alpaca(1), {"instruction": "q"}])  # natural order: after shard-2
    rep = validate_file(folder, keep_indices=True)
    assert (rep.records, rep.valid, rep.invalid) == (5, 4, 1) and rep.invalid_indices == [4]
    assert [f["file"] for f in rep.files] == ["shard-1.jsonl", "shard-2.jsonl", "shard-10.jsonl"]
    err = rep.errors[0]
    assert (err.file, err.record, err.field) == ("shard-10.jsonl", 1, "output")
    assert rep.summary().startswith("1 of 5 records are not usable (first: shard-10.jsonl: record 1: output: ")
    assert main(["validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{folder / 'shard-10.jsonl'}:record 1: output: is missing")


def _folder_error(capsys, folder: Path, name: str | None, kind: str) -> str:
    """validate exits 1 with one line naming ``name`` (in the folder); returns that line."""
    assert main(["validate", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    line = out.splitlines()[0]
    assert line.startswith(f"{folder / name if name else folder}: ")
    assert main(["validate", str(folder), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and data["errors_by_kind"].get(kind) and any(e["file"] == name for e in data["errors"]
                                                                         if e["kind"] == kind)
    return line


def test_folder_with_a_hidden_file_is_refused(tmp_path, capsys):
    folder = _shards(tmp_path / "shards", 2, 2)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    line = _folder_error(capsys, folder, ".DS_Store", "hidden_file")
    assert "hidden file" in line and "remove .DS_Store from the folder" in line
    rep = validate_file(folder)
    assert rep.records == 4 and rep.valid == 4 and not rep.ok  # the shards are still checked
    assert rep.summary().startswith(".DS_Store: is a hidden file")  # what preflight shows


def test_folder_with_mixed_file_types_is_refused(tmp_path, capsys):
    folder = _shards(tmp_path / "mixed", 2, 1)
    (folder / "extra.csv").write_text("instruction,output\nq,a\n", encoding="utf-8")
    line = _folder_error(capsys, folder, "extra.csv", "mixed_file_types")
    assert "File types should be identical" in line and "json" in line
    (folder / "notes.md").write_text("# about", encoding="utf-8")
    (folder / "SHARD-3.JSONL").write_text(json.dumps(_alpaca(1)[0]) + "\n", encoding="utf-8")
    rep = validate_file(folder)
    by_file = {e.file: e for e in rep.errors}
    assert by_file["notes.md"].kind == "file_type" and "move notes.md out" in by_file["notes.md"].fix
    assert by_file["SHARD-3.JSONL"].kind == "file_type" and "case-sensitive" in by_file["SHARD-3.JSONL"].fix


def test_folder_mixing_json_and_jsonl_is_one_json_dataset(tmp_path):
    # LLaMA-Factory maps both extensions to the json loader, which reads arrays and JSON Lines alike.
    folder = _shards(tmp_path / "jj", 2)
    (folder / "more.json").write_text(json.dumps(_alpaca(3, 2)), encoding="utf-8")
    rep = validate_file(folder)
    assert rep.ok and rep.records == 5 and rep.layout == "array+lines"


def test_folder_with_a_sub_folder_is_refused(tmp_path, capsys):
    folder = _shards(tmp_path / "shards", 2)
    _shards(folder / "old", 1)
    line = _folder_error(capsys, folder, "old", "subfolder")
    assert "sub-folder" in line and "move old out of the folder" in line


def test_empty_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    line = _folder_error(capsys, folder, None, "empty_folder")
    assert "empty folder" in line


def test_folder_empty_shards(tmp_path):
    folder = _shards(tmp_path / "shards", 2)
    (folder / "shard-2.jsonl").write_bytes(b"")  # the JSON loader reads nothing from it and carries on
    rep = validate_file(folder)
    assert rep.ok and rep.records == 2 and rep.warnings[0].file == "shard-2.jsonl"
    (folder / "shard-2.jsonl").write_text("\n\n", encoding="utf-8")  # a table without columns: fails the cast
    rep = validate_file(folder)
    assert not rep.ok and (rep.file_error.file, rep.file_error.kind) == ("shard-2.jsonl", "empty")


def test_folder_files_must_agree_on_format_columns_and_types(tmp_path):
    conv = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    # formats
    folder = _shards(tmp_path / "fmt", 2)
    _jsonl(folder / "shard-2.jsonl", [{"conversations": conv}])
    err = validate_file(folder).file_error
    assert (err.kind, err.file) == ("folder_mismatch", "shard-2.jsonl")
    assert "sharegpt" in err.message and "shard-1.jsonl is alpaca" in err.message
    # the same format with other role tags needs other tags in the entry
    folder = tmp_path / "roles"
    _jsonl(folder / "a.jsonl", [{"conversations": conv}])
    _jsonl(folder / "b.jsonl", [{"conversations": [{"from": "user", "value": "q"}, {"from": "assistant",
                                                                                    "value": "a"}]}])
    err = validate_file(folder).file_error
    assert err.file == "b.jsonl" and "roles user/assistant" in err.message and "roles human/gpt" in err.message
    # columns: a file with a key the others lack
    folder = _shards(tmp_path / "cols", 2)
    _jsonl(folder / "shard-2.jsonl", _alpaca(2, system="be brief"))
    err = validate_file(folder).file_error
    assert err.file == "shard-2.jsonl" and "has the column 'system' that shard-1.jsonl lacks" in err.message
    # types: a column empty in every record of one file has no type there
    folder = tmp_path / "types"
    _jsonl(folder / "a.jsonl", _alpaca(2, history=[]))
    _jsonl(folder / "b.jsonl", _alpaca(2, history=[["q0", "a0"]]))
    rep = validate_file(folder)
    err = rep.file_error
    assert (err.file, err.field) == ("b.jsonl", "history")
    assert "list<list<string>> here but list<null> in a.jsonl" in err.message and "a.jsonl" in err.fix
    assert rep.valid == 4 and not rep.ok  # every record is fine; the files together are not
    # structs: the same messages, keys in another order, agree
    folder = tmp_path / "order"
    _jsonl(folder / "a.jsonl", [{"conversations": conv}])
    _jsonl(folder / "b.jsonl", [{"conversations": [{"value": m["value"], "from": m["from"]} for m in conv]}])
    assert validate_file(folder).ok


def test_folder_parallel_parts_match_sequential(tmp_path):
    folder = tmp_path / "big"
    _jsonl(folder / "a.jsonl", [{"conversations": [{"from": "human", "value": f"q{i}"},
                                                   {"from": "gpt", "value": "a" * (i % 7)}]} for i in range(3000)])
    _jsonl(folder / "b.jsonl", [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                                 "system": None if i % 2 else "s"} for i in range(10)])
    seq = validate_file(folder, parallel_min_bytes=None).to_json()
    par = validate_file(folder, parallel_min_bytes=1, workers=2).to_json()
    seq.pop("seconds"), par.pop("seconds")
    assert seq == par and not seq["ok"] and seq["errors"][0]["file"] == "b.jsonl"  # 'system' only in b


def test_register_a_folder(tmp_path, capsys):
    ddir = tmp_path / "data"
    folder = _shards(ddir / "shards", 2, 3)
    assert main(["register", str(folder), "--name", "sharded", "--dataset-dir", str(ddir)]) == 0
    assert "5 records in 2 files" in capsys.readouterr().out
    entry = json.loads((ddir / "dataset_info.json").read_text(encoding="utf-8"))["sharded"]
    assert entry["file_name"] == "shards" and entry["formatting"] == "alpaca"  # relative inside the dir
    res = register_dataset(folder, "abs", tmp_path / "elsewhere")
    assert res.entry["file_name"] == str(folder.resolve())
    # an invalid folder is refused like an invalid file: exit 1, one line naming the file
    (folder / ".DS_Store").write_bytes(b"\x00")
    with pytest.raises(UserError) as exc:
        register_dataset(folder, "bad", ddir)
    assert exc.value.exit_code == 1 and ".DS_Store: is a hidden file" in str(exc.value)
    (folder / ".DS_Store").unlink()
    _jsonl(folder / "shard-3.jsonl", [*_alpaca(1), {"instruction": "q", "input": "", "output": None}])
    assert main(["register", str(folder), "--name", "bad", "--dataset-dir", str(ddir)]) == 1
    err = capsys.readouterr().err
    assert "first: shard-3.jsonl: record 1: output" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and "bad" not in json.loads((ddir / "dataset_info.json").read_text())


def test_register_refuses_a_path_or_a_list_as_the_name(tmp_path, capsys):
    # A path typed into "register as" was registered as a dataset named "/tmp/.../ds"; a comma makes
    # train.yaml's `dataset:` two names. An "org/name" key is a fine name.
    ddir = tmp_path / "d"
    for bad, why in ((str(tmp_path / "ds"), "that is a path"), ("./ds", "that is a path"),
                     ("a,b", "comma")):
        assert main(["register", str(CORPUS / "good_alpaca.json"), "--name", bad, "--dataset-dir", str(ddir)]) == 2
        err = capsys.readouterr().err.strip()
        assert why in err and "--name" in err and len(err.splitlines()) == 1
    assert not (ddir / "dataset_info.json").exists()
    assert main(["register", str(CORPUS / "good_alpaca.json"), "--name", "org/mine", "--dataset-dir", str(ddir)]) == 0


def test_register_the_same_file_with_other_settings_says_so(tmp_path, capsys):
    ddir = tmp_path / "d"
    ddir.mkdir()
    file = ddir / "a.json"
    file.write_bytes((CORPUS / "good_alpaca.json").read_bytes())
    (ddir / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "a.json", "columns": {
        "prompt": "instruction", "response": "output"}}}), encoding="utf-8")
    assert main(["register", str(file), "--name", "mine", "--dataset-dir", str(ddir)]) == 1
    err = capsys.readouterr().err
    assert "already registered for this file with other settings" in err and "--force" in err


@pytest.mark.parametrize("parallel", [False, True])
def test_a_misspelt_key_gets_a_did_you_mean(tmp_path, parallel):
    # QA: `instrction` for `instruction` read as "instruction: is empty". LLaMA-Factory reads the column as
    # missing, so the verdict stays; the issue names the key the records have instead.
    rows = [{"instruction": "hi", "input": "", "output": "yo"}] + \
        [{"instrction": f"q{i}", "input": "", "output": "a"} for i in range(3)]
    f = tmp_path / "typo.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = validate_file(f, stage="sft", parallel_min_bytes=1 if parallel else None, workers=2)
    assert (rep.records, rep.valid, rep.format) == (4, 4, "alpaca")
    hits = [w for w in rep.warnings if w.field == "instruction"]
    assert [w.record for w in hits] == [1, 2, 3] and all(w.kind == "empty_prompt" for w in hits)
    for w in hits:
        assert w.message.startswith("is empty")
        assert w.message.endswith("; did you mean? the records have 'instrction'"), w.message
        assert w.fix.startswith("rename 'instrction' to 'instruction' in the records, or fill in")


def test_a_sft_error_on_a_misspelt_output_and_no_hint_without_a_close_key(tmp_path, capsys):
    f = tmp_path / "typo.json"
    f.write_text(json.dumps([{"instruction": "q", "Output": "a"}, {"instruction": "q", "output": "a",
                                                                   "notes": "x"}]))
    assert main(["validate", str(f), "--stage", "sft"]) == 1
    out = capsys.readouterr().out
    assert "record 0: output: " in out and "did you mean? the records have 'Output'" in out, out
    assert out.count("did you mean?") == 1
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"instruction": "q", "notes": "a"}]))
    rep = validate_file(plain, stage="sft")
    assert rep.errors and not any("did you mean" in i.message for i in rep.errors + rep.warnings)


def test_an_entry_column_no_record_has_names_the_close_key(tmp_path):
    from minicpm_tui.core.datasets.entry import validate_entry

    (tmp_path / "d.json").write_text(json.dumps([{"questoin": "q", "answer": "a"}]))
    entry = {"file_name": "d.json", "columns": {"prompt": "question", "response": "answer"}}
    rep = validate_entry("d", entry, tmp_path, stage="sft")
    assert rep.file_error is not None and rep.file_error.field == "question"
    assert "did you mean? the records have 'questoin'" in rep.file_error.message
    assert rep.file_error.fix.startswith("rename 'questoin' to 'question' in the records")


def _mapping(fix: str) -> dict:
    """The dataset_info.json entry a format error's fix spells out ("... by hand with <entry> in its ...")."""
    return json.loads("{" + fix.split(" by hand with ", 1)[1].split(" in its dataset_info.json entry", 1)[0] + "}")


@pytest.mark.parametrize("key", ["conversation", "converstions", "Conversations", "dialog"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_misspelt_conversations_key_is_named(tmp_path, key, suffix):
    """The format cannot be told, but the records hold their turns under a key close to `conversations` (or a
    list of messages under another name): one line naming the key, the one LLaMA-Factory reads, and the entry
    that reads the file as it is, which does (its columns.messages)."""
    from minicpm_tui.core.datasets.entry import validate_entry

    conv = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    f = tmp_path / f"d{suffix}"
    recs = [{key: conv, "system": "s"}] * 2
    f.write_text(json.dumps(recs) if suffix == ".json" else "".join(json.dumps(r) + "\n" for r in recs))
    rep = validate_file(f)
    err = rep.file_error
    assert (err.kind, err.record, err.field) == ("format", 0, key) and not rep.ok
    assert "did you mean 'conversations'? A sharegpt record's turns go under" in err.message
    assert f"not {key!r}" in err.message and "\n" not in err.message + err.fix
    assert err.fix.startswith(f"rename {key!r} to 'conversations' in every record, or register the file by hand")
    assert "did you mean 'conversations'?" in rep.summary()  # what the wizard says when it will not register it
    entry = _mapping(err.fix)
    assert entry == {"formatting": "sharegpt", "columns": {"messages": key, "system": "system"}}
    assert validate_entry("d", {"file_name": f.name, **entry}, tmp_path, stage="sft").ok


def test_a_misspelt_messages_key_gets_the_tags_too(tmp_path, capsys):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"message": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
                 + "\n")
    assert main(["validate", str(f)]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"{f}:record 0: message: cannot tell the format") and "did you mean 'messages'?" in line
    entry = _mapping(validate_file(f).file_error.fix)
    assert entry["columns"] == {"messages": "message"} and entry["tags"]["role_tag"] == "role"
    from minicpm_tui.core.datasets.entry import validate_entry

    assert validate_entry("d", {"file_name": f.name, **entry}, tmp_path).ok
    g = tmp_path / "g.jsonl"  # a list of something else, under no close name: no guess
    g.write_text(json.dumps({"items": ["a", "b"], "note": "x"}) + "\n")
    assert "did you mean" not in validate_file(g).file_error.message


def test_an_entry_reading_conversations_from_records_with_messages(tmp_path):
    """An entry that reads the default `conversations` (sharegpt, no columns block) over records whose turns are
    under `messages`: not close by name, but the other standard key; the fix offers the entry's mapping."""
    from minicpm_tui.core.datasets.entry import validate_entry

    conv = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    (tmp_path / "d.jsonl").write_text(json.dumps({"messages": conv}) + "\n")
    rep = validate_entry("d", {"file_name": "d.jsonl", "formatting": "sharegpt"}, tmp_path, stage="sft")
    assert rep.file_error is not None and rep.file_error.kind == "entry"
    assert "did you mean? the records have 'messages'" in rep.file_error.message
    (err,) = rep.errors[:1]
    assert err.field == "conversations" and "did you mean? the records have 'messages'" in err.message
    assert 'set "messages": "messages" in the dataset_info.json entry\'s columns' in err.fix
    (tmp_path / "e.jsonl").write_text(json.dumps({"dialog": conv}) + "\n")  # the one list nothing reads
    rep = validate_entry("e", {"file_name": "e.jsonl", "formatting": "sharegpt"}, tmp_path, stage="sft")
    assert "did you mean? the records have 'dialog'" in rep.errors[0].message
