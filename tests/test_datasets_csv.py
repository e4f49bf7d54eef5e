"""CSV files as LLaMA-Factory's loader reads them: pandas chunks of rows, each cast to the first one's types
(``core/datasets/csvchunks.py``).

The unit tests shrink the chunk (``csvchunks.CSV_CHUNK``); the integration test runs LLaMA-Factory's own load
(``_get_merged_dataset``) at the true chunk size (10,000 rows) in each release's environment built here, and
needs our verdicts, and the text of every later response, to agree with it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_datasets_blocks import _pythons, lf_load, load_job

from minicpm_tui.core.datasets import csvchunks, validate_file
from minicpm_tui.core.datasets.reader import RecordReader

# name -> (the output cells of the first chunk (repeated), those after it, the later row the load fails on
# (0 = the first) or None, what the loader makes of each later cell (None: no text), the warning kind or None)
CASES = {
    "int_then_text": (["1"], ["abc"], 0, None, None),
    "int_then_fraction": (["1"], ["1.5"], 0, None, None),
    "int_then_whole_float": (["1"], ["2.0"], None, [None], None),
    "int_then_empty": (["1"], ["2", ""], None, [None, None], None),
    "int_then_digits_and_text": (["1"], ["5", "abc"], 1, None, None),
    "int_then_too_big": (["1"], ["12345678901234567890"], 0, None, None),
    "int_then_hex": (["1"], ["0x10"], None, [None], None),
    "empty_then_text": ([""], ["abc"], 0, None, None),
    "empty_then_int": ([""], ["3"], None, [None], None),
    "float_then_text": (["1.5"], ["abc"], 0, None, None),
    "bool_then_text": (["True"], ["abc"], 0, None, None),
    "bool_then_true_and_text": (["True"], ["true", "abc"], 1, None, None),
    "bool_then_int": (["True"], ["2", "0"], None, [None, None], None),
    "text_then_int": (["abc"], ["007"], None, ["7"], "csv_misread"),
    "text_then_float": (["abc"], ["1.50"], None, ["1.5"], "csv_misread"),
    "text_then_bool": (["abc"], ["True"], None, ["true"], "csv_misread"),
    "text_then_spaced_int": (["abc"], [" 5"], None, ["5"], "csv_misread"),
    "text_then_exponent": (["abc"], ["1e20"], None, ["1e+20"], "csv_misread"),
    "text_then_int_and_empty": (["abc"], ["3", ""], None, ["3", None], None),
    "text_then_same_int": (["abc"], ["42", "-3"], None, ["42", "-3"], None),
    "text_then_na_words": (["abc"], ["NA", "None", "null", "n/a", "nan"], None, [None] * 5, "csv_na"),
    "text_then_text": (["abc"], ["def", "None of them"], None, ["def", "None of them"], None),
}

# name -> (the file, the rows the loader gives or None where it fails): what the csv module and pandas read
# differently, whatever the chunks
RAW = {
    "blank_lines": ("instruction,input,output\nq1,,a\n\n   \nq2,,b\n", 2),
    "extra_fields_later": ("instruction,input,output\nq1,,a\nq2,,b,c\nq3,,d\n", None),
    "shorter_row": ("instruction,input,output\nq1,,a\nq2\n", 2),
    "repeated_column": ("instruction,input,output,output\nq,,first,second\n", 1),
    "mixed_in_one_chunk": ("instruction,input,output\nq,,1\nq,,abc\nq,,2.50\nq,,True\nq,,\n", 5),
    # A quote that never closes: Python's csv gives back the rest of the file as the cell, pandas fails.
    "unclosed_quote": ("instruction,input,output\nq1,,a\nq2,,\"b\nq3,,c\n", None),
    "unclosed_quote_on_the_last_line": ("instruction,input,output\nq1,,a\nq2,,\"b", None),
    "quoted_cell_over_lines": ("instruction,input,output\nq1,,\"a\nb \"\"c\"\"\"\nq2,,d\n", 2),
    # a first row longer than the header: pandas makes its leading fields every row's index, the columns shift
    "first_row_longer": ("instruction,input,output\nq1,,a,extra\nq2,,b,more\n", 2),
    "first_row_two_longer": ("instruction,input,output\nq1,x,,a,extra\nq2,,b\n", 2),
    "trailing_commas": ("instruction,input,output\nq1,i1,a1,\nq2,i2,a2,\n", 2),
    "longer_after_a_longer_first": ("instruction,input,output\nq1,,a,x\nq2,,b,c,d\n", None),
}
# A row longer than the ones before, this many rows into the second chunk -> whether the load completes: pandas
# drops the extra fields of a chunk's first row and stops on any other.
LONG_AT = {0: True, 1: False}


def _write(path: Path, early: list[str], late: list[str], chunk: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["instruction", "input", "output"])  # LLaMA-Factory's alpaca converter needs "input"
        for i in range(chunk):
            w.writerow([f"q{i}", "", early[i % len(early)]])
        for v in late:
            w.writerow(["q", "", v])


def _write_long(path: Path, chunk: int, at: int) -> None:
    rows = [f"q{i},,a" for i in range(chunk)] + ["q,,c"] * 3
    rows[chunk + at] = "q,,b,extra"
    path.write_text("instruction,input,output\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def _ours(path: Path, chunk: int) -> tuple:
    """(the report, the text of each later output as our reader has it: None where it is no text)."""
    rep = validate_file(path, keep_indices=True)
    outs = [rec["output"] for _, rec in RecordReader(path)][chunk:]
    return rep, [v if isinstance(v, str) else None for v in outs]


def _check(rep, texts, chunk: int, case: tuple, name: str) -> None:
    _early, late, fails, loaded, warning = case
    err = rep.file_error
    if fails is not None:
        assert err is not None and (err.kind, err.record, err.field) == ("load", chunk + fails, "output"), (name, err)
        assert rep.valid == 0 and err.fix and "\n" not in err.message
        return
    assert texts == loaded, name
    # a later row without text is one LLaMA-Factory drops (no response); the others it keeps
    assert [i - chunk for i in rep.invalid_indices if i >= chunk] == [i for i, t in enumerate(loaded) if t is None]
    kinds = {w.kind for w in rep.warnings}
    assert ({warning} if warning else set()) == kinds & {"csv_misread", "csv_na"}, (name, rep.warnings)
    for w in rep.warnings:
        if w.kind == warning:
            assert w.field == "output" and repr(late[w.record - chunk]) in w.message and w.fix, w


@pytest.fixture
def small_chunk(monkeypatch):
    monkeypatch.setattr(csvchunks, "CSV_CHUNK", 20)
    return 20


@pytest.mark.parametrize("name", list(CASES))
def test_later_chunk_against_the_first(tmp_path, small_chunk, name):
    f = tmp_path / "d.csv"
    _write(f, CASES[name][0], CASES[name][1], small_chunk)
    rep, texts = _ours(f, small_chunk)
    _check(rep, texts, small_chunk, CASES[name], name)


def test_one_chunk_is_typed_as_a_whole(tmp_path, small_chunk):
    """Inside one chunk pandas types the column from all its cells: text anywhere makes every cell text."""
    f = tmp_path / "d.csv"
    _write(f, ["1", "abc"], ["2"], small_chunk)
    rep, texts = _ours(f, small_chunk)
    assert rep.ok and texts == ["2"] and not rep.warnings
    g = tmp_path / "g.csv"
    g.write_text("instruction,output,score\nq,a,1\nq,b,\nq,c,2\n", encoding="utf-8")
    recs = [r for _, r in RecordReader(g)]
    assert [r["score"] for r in recs] == [1.0, None, 2.0] and type(recs[0]["score"]) is float  # a null: float64


def test_blank_lines_and_row_lengths(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text(RAW["blank_lines"][0], encoding="utf-8")
    rep = validate_file(f)
    assert rep.ok and rep.records == 2
    f.write_text(RAW["extra_fields_later"][0], encoding="utf-8")
    err = validate_file(f).file_error
    assert (err.kind, err.record) == ("load", 1) and "4 fields" in err.message and "quote" in err.fix
    f.write_text(RAW["shorter_row"][0], encoding="utf-8")
    rep = validate_file(f, keep_indices=True)
    assert rep.file_error is None and rep.invalid_indices == [1]  # no output: LLaMA-Factory drops it


def test_a_quote_that_never_closes_stops_the_load(tmp_path, capsys):
    """`q2,,"b` with no closing quote: Python's csv module returned the rest of the file as one cell and validate
    said the file was usable; LLaMA-Factory's loader (pandas) fails the whole load ("EOF inside string")."""
    from minicpm_tui.cli import main

    f = tmp_path / "d.csv"
    for name in ("unclosed_quote", "unclosed_quote_on_the_last_line"):
        f.write_text(RAW[name][0], encoding="utf-8")
        rep = validate_file(f)
        err = rep.file_error
        assert not rep.ok and (err.kind, err.record, err.field) == ("load", 1, "output"), (name, err)
        assert "never closed" in err.message and "EOF inside string" in err.message and '("")' in err.fix
    assert main(["validate", str(f)]) == 1
    assert "record 1: output: opens a quoted cell that is never closed" in capsys.readouterr().out
    f.write_text(RAW["quoted_cell_over_lines"][0], encoding="utf-8")
    rep = validate_file(f)
    assert rep.ok and [r["output"] for _, r in RecordReader(f)] == ['a\nb "c"', "d"]
def test_a_first_row_longer_than_the_header(tmp_path):
    """pandas (read_csv's default index_col) takes the extra leading fields of the first row as every row's index
    (Arrow keeps it as __index_level_0__) and reads each header name that many fields to the right."""
    f = tmp_path / "d.csv"
    f.write_text(RAW["first_row_longer"][0], encoding="utf-8")
    assert [r for _, r in RecordReader(f)] == [
        {"instruction": None, "input": "a", "output": "extra", "__index_level_0__": "q1"},
        {"instruction": None, "input": "b", "output": "more", "__index_level_0__": "q2"}]
    rep = validate_file(f)
    (w,) = [w for w in rep.warnings if w.kind == "csv_index"]
    assert (w.record, rep.ok) == (0, True) and "has 4 fields (line 2) but the header has 3" in w.message
    assert "'instruction' reads '', 'input' reads 'a', 'output' reads 'extra'" in w.message
    assert "remove the extra field" in w.fix and "\n" not in w.message
    f.write_text(RAW["first_row_two_longer"][0], encoding="utf-8")
    recs = [r for _, r in RecordReader(f)]
    assert recs[1] == {"instruction": "b", "input": None, "output": None, "__index_level_0__": "q2",
                       "__index_level_1__": None}  # short rows are padded before the shift
    rep = validate_file(f, keep_indices=True)
    assert rep.invalid_indices == [1] and "'__index_level_0__', '__index_level_1__'" in rep.warnings[0].message
    f.write_text(RAW["longer_after_a_longer_first"][0], encoding="utf-8")
    err = validate_file(f).file_error
    assert (err.kind, err.record) == ("load", 1) and "has 5 fields but the first row has 4" in err.message


def test_a_longer_row_at_a_chunk_start_loses_its_extra_fields(tmp_path, small_chunk):
    f = tmp_path / "d.csv"
    _write_long(f, small_chunk, 0)
    rep, texts = _ours(f, small_chunk)
    assert rep.ok and texts == ["b", "c", "c"]
    (w,) = rep.warnings
    assert (w.kind, w.record) == ("csv_extra_fields", small_chunk) and "drops the last 1" in w.message
    _write_long(f, small_chunk, 1)
    err = validate_file(f).file_error
    assert (err.kind, err.record) == ("load", small_chunk + 1) and "Error tokenizing data" in err.message


def test_a_repeated_column_name(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text(RAW["repeated_column"][0], encoding="utf-8")
    rep = validate_file(f)
    assert [r for _, r in RecordReader(f)] == [{"instruction": "q", "input": None, "output": "first",
                                                 "output.1": "second"}]
    (w,) = rep.warnings
    assert (w.kind, w.record, w.field) == ("csv_duplicate_column", None, "output") and "'output.1'" in w.message
    assert csvchunks.dedup_header(["a", "a", "a.1", "a"]) == ["a", "a.2", "a.1", "a.3"]  # as pandas names them


def test_cli_names_the_row_and_column(tmp_path, capsys, small_chunk):
    from minicpm_tui.cli import main

    f = tmp_path / "d.csv"
    _write(f, ["1"], ["abc"], small_chunk)
    assert main(["validate", str(f)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert f"record {small_chunk}: output: is the text 'abc' here" in text and "rows 0-19" in text


@pytest.fixture(scope="module")
def true_size_cases(tmp_path_factory):
    """Every case at the true chunk size (and RAW's), checked by us; (the LLaMA-Factory job, RAW's texts)."""
    chunk = csvchunks.CSV_CHUNK
    assert chunk == 10_000  # datasets' CsvConfig.chunksize
    root = tmp_path_factory.mktemp("csvchunks")
    jobs = []
    expected: dict[str, list | None] = {}  # RAW's: each response's text as we read it, None for a failing load
    for name, case in CASES.items():
        d = root / name
        d.mkdir()
        _write(d / "d.csv", case[0], case[1], chunk)
        (d / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.csv"}}), encoding="utf-8")
        rep, texts = _ours(d / "d.csv", chunk)
        _check(rep, texts, chunk, case, name)
        jobs.append({"id": name, "dir": str(d), "name": "d", "stage": "sft", "tail": chunk})
    for name, (text, rows) in RAW.items():
        d = root / name
        d.mkdir()
        (d / "d.csv").write_text(text, encoding="utf-8")
        (d / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.csv"}}), encoding="utf-8")
        rep, texts = _ours(d / "d.csv", 0)
        assert (rep.file_error is None or rep.file_error.kind != "load") == (rows is not None), (name, rep.file_error)
        expected[name] = texts if rows is not None else None
        if rows is not None:
            assert rep.records == rows, name
        jobs.append({"id": name, "dir": str(d), "name": "d", "stage": "sft", "tail": 0})
    for at, loads in LONG_AT.items():
        name = f"long_at_{at}"
        d = root / name
        d.mkdir()
        _write_long(d / "d.csv", chunk, at)
        (d / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.csv"}}), encoding="utf-8")
        rep, texts = _ours(d / "d.csv", chunk)
        assert (rep.file_error is None) == loads, (name, rep.file_error)
        expected[name] = texts if loads else None
        jobs.append({"id": name, "dir": str(d), "name": "d", "stage": "sft", "tail": chunk})
    return load_job(root, jobs), expected


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.parametrize("release", _pythons(), ids=lambda r: r[0])
def test_csv_chunks_agree_with_llamafactory(true_size_cases, release):
    """In each LLaMA-Factory environment here, at 10,000 rows a chunk: a load LLaMA-Factory fails we report
    as a whole-load issue at the row (the fixture checks that), and in one it completes every later
    response has the text our reader gives it."""
    version, python = release
    job, raw = true_size_cases
    got = lf_load(python, job, 280)
    for name, (_early, _late, fails, loaded, _w) in CASES.items():
        r = got[name]
        if fails is not None:
            assert r["status"] == "crash", (version, name, r)
        else:
            assert r["status"] == "ok" and r["tail"] == loaded, (version, name, r)
    for name, texts in raw.items():
        r = got[name]
        assert (r["status"], r.get("tail")) == (("crash", None) if texts is None else ("ok", texts)), (version, name, r)
