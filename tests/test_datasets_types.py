"""A column whose values have different types in different records: what the loader accepts, and our verdict.

Inside what pyarrow/pandas read at once (a JSON array: the whole file; JSON Lines: one 10 MB loader block)
int and float promote and null goes with anything, while any other pair of kinds (number, text, boolean,
list, object) fails the whole load, at the top or nested (the items of a list, an object's field). Across JSON Lines blocks the first block's type is cast to instead
(``blocks.py``): a later number or boolean in a text column loads, and so on. CSV cells are typed per chunk
(``test_datasets_csv.py``). Each pair is checked with our ``validate`` and, in the integration test, with
LLaMA-Factory's own load in each release's environment built here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_datasets_blocks import PAD, _pythons, lf_load, load_job

from minicpm_tui.core.datasets import blocks, validate, validate_file

V = {"int": 1, "float": 1.5, "whole_float": 2.0, "text": "a", "digits": "5", "true_text": "true", "bool": True,
     "null": None, "list": ["a"], "int_list": [1], "empty_list": [], "object": {"k": "v"}, "empty_object": {},
     # nested: what pyarrow types one level down
     "float_list": [1.5], "bool_list": [True], "null_list": [None], "list_list": [["a"]], "mixed_list": ["a", 1],
     "object_list": [{"k": "v"}], "int_object_list": [{"k": 1}], "int_object": {"k": 1}, "float_object": {"k": 2.5},
     "other_key_object": {"j": 1}, "list_object": {"k": ["a"]}}

# (first value, later value) -> whether the load completes, read at once (a JSON array, one JSON Lines block)
AT_ONCE = {
    ("int", "float"): True, ("float", "int"): True, ("int", "whole_float"): True, ("int", "null"): True,
    ("text", "null"): True, ("null", "text"): True, ("null", "list"): True, ("list", "null"): True,
    ("list", "empty_list"): True, ("object", "empty_object"): True,
    ("int", "text"): False, ("text", "int"): False, ("int", "digits"): False, ("digits", "int"): False,
    ("float", "text"): False, ("bool", "int"): False, ("int", "bool"): False, ("bool", "float"): False,
    ("bool", "text"): False, ("text", "bool"): False, ("list", "text"): False, ("text", "list"): False,
    ("object", "text"): False, ("text", "object"): False, ("list", "object"): False, ("object", "list"): False,
    ("list", "int_list"): False, ("int_list", "list"): False, ("int_list", "float_list"): True,
    ("list", "bool_list"): False, ("int_list", "bool_list"): False, ("list", "null_list"): True,
    ("list", "list_list"): False, ("list", "object_list"): False, ("object_list", "int_object_list"): False,
    ("object", "int_object"): False, ("int_object", "float_object"): True, ("int_object", "other_key_object"): True,
    ("empty_object", "int_object"): True, ("list_object", "object"): False, ("mixed_list", "null"): False,
}
# the same, the later value in the second JSON Lines block (the first block's type is cast to)
ACROSS_BLOCKS = {
    ("text", "int"): True, ("text", "float"): True, ("text", "bool"): True, ("int", "digits"): True,
    ("float", "digits"): True, ("bool", "int"): True, ("int", "bool"): True, ("float", "bool"): True,
    ("bool", "true_text"): True, ("list", "int_list"): True,
    ("int", "text"): False, ("bool", "text"): False, ("list", "text"): False, ("text", "list"): False,
    ("int_list", "list"): False, ("object", "text"): False, ("object", "int_object"): True,
    ("int_object", "object"): False,
}


def _rec(v, pad: str = "") -> dict:
    return {"instruction": "q" + pad, "input": "", "output": "o", "x": v}


def _write_at_once(path: Path, a: str, b: str) -> None:
    recs = [_rec(V[a]), _rec(V[b])]
    text = json.dumps(recs) if path.suffix == ".json" else "".join(json.dumps(r) + "\n" for r in recs)
    path.write_text(text, encoding="utf-8")


def _write_across(path: Path, a: str, b: str, chunk: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        size = 0
        while size <= chunk:
            line = json.dumps(_rec(V[a], PAD)) + "\n"
            f.write(line)
            size += len(line)
        for _ in range(3):
            f.write(json.dumps(_rec(V[b])) + "\n")


def _verdict(path: Path) -> bool:
    rep = validate_file(path)
    if not rep.ok:  # the pair is what fails: nothing else in these files does
        assert {re.split(r"[.\[]", e.field)[0] for e in rep.errors} == {"x"}, rep.errors
        assert {e.kind for e in rep.errors} <= {"mixed_types", "load"}, rep.errors
    return rep.ok


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("pair", list(AT_ONCE), ids="+".join)
def test_types_read_at_once(tmp_path, pair, suffix):
    f = tmp_path / f"d{suffix}"
    _write_at_once(f, *pair)
    assert _verdict(f) == AT_ONCE[pair]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("pair", list(ACROSS_BLOCKS), ids="+".join)
def test_types_across_blocks(tmp_path, monkeypatch, pair, parallel):
    """A kind that changes at a block boundary is a cast, not a clash (the parallel path defers to the
    sequential one for it)."""
    monkeypatch.setattr(blocks, "LOADER_CHUNK", 64 << 10)
    f = tmp_path / "d.jsonl"
    _write_across(f, *pair, 64 << 10)
    rep = validate_file(f, parallel_min_bytes=1 if parallel else None, workers=2)
    assert rep.ok == ACROSS_BLOCKS[pair], rep.errors
    if not rep.ok:
        assert rep.file_error.kind == "load" and rep.file_error.field.startswith("x")


def _write_later_clash(path: Path, b: str, chunk: int) -> None:
    """ints in the first block; the second: three ``b`` then a number."""
    _write_across(path, "int", b, chunk)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(_rec(3)) + "\n")


def test_a_clash_inside_a_later_block_still_fails(tmp_path, monkeypatch):
    """Kinds are compared again inside each later block: text then a number there is a clash."""
    monkeypatch.setattr(blocks, "LOADER_CHUNK", 64 << 10)
    f = tmp_path / "d.jsonl"
    _write_later_clash(f, "text", 64 << 10)  # and "a" does not cast to int: a whole-load issue too
    rep = validate_file(f)
    assert not rep.ok and "mixed_types" in rep.error_counts and rep.file_error.kind == "load"
    _write_later_clash(f, "digits", 64 << 10)  # "5" casts, but "5" and 3 clash inside the block
    rep = validate_file(f, keep_indices=True)
    assert [e.kind for e in rep.errors] == ["mixed_types"] and rep.invalid_indices == [rep.records - 1]


def _write_later_nested(path: Path, first: str, then: str, chunk: int) -> None:
    """String lists in the first block; the second: three ``first`` then one ``then``, next to each other."""
    _write_across(path, "list", first, chunk)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(_rec(V[then])) + "\n")


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("first", ["list", "int_list"])
def test_a_nested_clash_inside_a_later_block(tmp_path, monkeypatch, first, parallel):
    """A later block's records must agree with each other too: one that only casts to the first block's types
    (numbers into its string lists) makes us type that whole block (the parallel path leaves it to the
    sequential one)."""
    monkeypatch.setattr(blocks, "LOADER_CHUNK", 64 << 10)
    f = tmp_path / "d.jsonl"
    then = "int_list" if first == "list" else "list"
    _write_later_nested(f, first, then, 64 << 10)
    rep = validate_file(f, keep_indices=True, parallel_min_bytes=1 if parallel else None, workers=2)
    (err,) = rep.errors
    assert (err.kind, err.field, err.record) == ("mixed_types", "x[0]", rep.records - 1), err
    kind, was = ("number", "string") if first == "list" else ("string", "number")
    assert f"is a JSON {kind} here but x[] is a {was} in record {rep.records - 4}" in err.message
    assert rep.invalid_indices == [rep.records - 1] and rep.file_error is None
    _write_across(f, "list", "int_list", 64 << 10)  # numbers only: they cast, and agree with each other
    assert validate_file(f, parallel_min_bytes=1 if parallel else None, workers=2).ok


def test_nested_clash_wording(tmp_path, capsys):
    from minicpm_tui.cli import main

    f = tmp_path / "d.jsonl"
    conv = [{"from": "human", "value": "q", "weight": 1}, {"from": "gpt", "value": "a"}]
    rows = [{"conversations": conv}, {"conversations": conv}, {"conversations": [conv[0] | {"weight": "high"}, conv[1]]}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["validate", str(f)]) == 1
    out = capsys.readouterr().out
    assert f"{f}:record 2: conversations[0].weight: is a JSON string here but conversations[].weight is a number " \
           "in record 0; LLaMA-Factory's loader (Arrow) fails on a field with mixed types; make every " \
           "conversations[].weight a number (in every record)" in out
    # a clash inside one record names the other value in it
    f.write_text(json.dumps(_rec(["a", 2])) + "\n", encoding="utf-8")
    (err,) = validate_file(f).errors
    assert err.field == "x[1]" and "but x[] is a string at x[0] in this record" in err.message


def test_records_that_are_no_objects_are_not_typed(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps([_rec(["a"]), 5, "x", _rec([1])]), encoding="utf-8")
    rep = validate_file(f, keep_indices=True)
    assert rep.invalid_indices == [1, 2, 3] and rep.errors[-1].field == "x[0]"


@pytest.mark.parametrize("layout", ["array", "lines"])
def test_a_nested_clash_between_parallel_chunks(tmp_path, monkeypatch, layout):
    """Each chunk is clean; the clash is between two of them: the chunks' types are merged, and the sequential
    path names the record (JSON Lines: both in the first block, which is typed before the chunks start)."""
    monkeypatch.setattr(blocks, "LOADER_CHUNK", 1 << 20)
    recs = [_rec(["a"], "p" * 200) for _ in range(400)] + [_rec([1])] + [_rec(None) for _ in range(400)]
    f = tmp_path / ("d.json" if layout == "array" else "d.jsonl")
    f.write_text(json.dumps(recs) if layout == "array" else "".join(json.dumps(r) + "\n" for r in recs),
                 encoding="utf-8")
    seq = validate_file(f, keep_indices=True, parallel_min_bytes=None)
    par = validate_file(f, keep_indices=True, parallel_min_bytes=1, workers=3)
    a, b = seq.to_json(), par.to_json()
    a.pop("seconds"), b.pop("seconds")
    assert a == b and seq.invalid_indices == [400] and seq.errors[0].field == "x[0]"
    assert validate._validate_parallel(f, None, None, None, True, 3) is None or layout == "lines"


def test_known_types_are_the_records_own(tmp_path):
    """The columns a record check vouches for (validate._known_types: not walked) have the type a walk gives,
    for every record of the corpus and the custom entries that the check accepts."""
    import random

    from datasets_corpus.custom_entries import write_custom
    from datasets_corpus.openai_fuzz import entries, record
    from test_datasets_agreement import corpus_files

    from minicpm_tui.core.datasets.entry import read_entry
    from minicpm_tui.core.datasets.folder import value_type
    from minicpm_tui.core.datasets.formats import detect_format
    from minicpm_tui.core.datasets.reader import RecordReader

    def read(f: Path) -> list:
        try:
            return [r for _, r in RecordReader(f) if type(r) is dict]
        except Exception:  # noqa: BLE001 - a broken file: nothing to vouch for
            return []

    cases = [(read(f), None) for f in corpus_files(tmp_path) if f.suffix != ".csv"]
    cases += [(read(f), entry) for _, f, entry, _ in write_custom(tmp_path / "custom") if f.suffix != ".csv"]
    rng = random.Random(5)  # random chat records, flawed and clean, through openai and sharegpt entries
    fuzz = [r for r in (json.loads(json.dumps(record(rng))) for _ in range(1500)) if type(r) is dict]
    cases += [(fuzz, {**entry, "formatting": fmt}) for entry, _ in entries() for fmt in ("openai", "sharegpt")]
    vouched = 0
    for recs, entry in cases:
        shape = read_entry({"file_name": "x.jsonl", **entry}, "0.9.5").shape if entry else \
            (detect_format(recs[0]) if recs else None)
        if shape is None:
            continue
        for stage in ("sft", "dpo", "kto"):
            check = validate.make_checker(shape, stage)
            for i, rec in enumerate(recs):
                if check(rec, i, lambda *a: None, lambda *a: None) is None and check.known_types:
                    for col, t in (check.known_types(rec, i) or {}).items():
                        assert t == value_type(rec[col]), (entry, stage, i, col, rec)
                        vouched += 1
    assert vouched > 5000


@pytest.fixture(scope="module")
def type_cases(tmp_path_factory):
    """Every pair as a dataset (JSON array, JSON Lines, and across blocks at the true 10 MB), checked by us;
    (the LLaMA-Factory job, whether each loads)."""
    root = tmp_path_factory.mktemp("types")
    jobs, expected = [], {}

    def add(name: str, write, loads: bool) -> None:
        d = root / name
        d.mkdir()
        path = d / ("d.json" if name.startswith("array") else "d.jsonl")
        write(path)
        (d / "dataset_info.json").write_text(json.dumps({"d": {"file_name": path.name}}), encoding="utf-8")
        assert _verdict(path) == loads, name
        expected[name] = loads
        jobs.append({"id": name, "dir": str(d), "name": "d", "stage": "sft"})

    for (a, b), loads in AT_ONCE.items():
        for layout in ("array", "lines"):
            add(f"{layout}:{a}+{b}", lambda p, a=a, b=b: _write_at_once(p, a, b), loads)
    for (a, b), loads in ACROSS_BLOCKS.items():
        add(f"blocks:{a}+{b}", lambda p, a=a, b=b: _write_across(p, a, b, blocks.LOADER_CHUNK), loads)
    add("blocks:later_clash", lambda p: _write_later_clash(p, "digits", blocks.LOADER_CHUNK), False)
    add("blocks:later_nested_clash", lambda p: _write_later_nested(p, "list", "int_list", blocks.LOADER_CHUNK), False)
    add("blocks:later_nested_clash_cast_first",
        lambda p: _write_later_nested(p, "int_list", "list", blocks.LOADER_CHUNK), False)
    return load_job(root, jobs), expected


@pytest.mark.integration
@pytest.mark.timeout(400)
@pytest.mark.parametrize("release", _pythons(), ids=lambda r: r[0])
def test_types_agree_with_llamafactory(type_cases, release):
    job, expected = type_cases
    version, python = release
    got = {k: r["status"] == "ok" for k, r in lf_load(python, job, 380).items()}
    assert got == expected, (version, {k: v for k, v in got.items() if v != expected[k]})


# pyarrow types each piece of a loader block (320 KB, blocks.piece_starts) alone: a number and a text that reads
# as one load when no piece holds both; any other pair still fails (or loads by thread timing, or crashes pyarrow)
def write_pieces(path: Path, a: Any, b: Any, *, far: bool, then: Any = None) -> int:
    """A record with ``x: a``, filler (a piece's worth when ``far``), one with ``x: b`` (its index), filler, and
    a last one with ``x: then`` unless None."""
    filler = json.dumps(_rec(None, PAD)) + "\n"
    lines = [json.dumps(_rec(a)) + "\n"]
    lines += [filler] * ((blocks.piece_size() // len(filler) + 2) if far else 2)
    at = len(lines)
    lines += [json.dumps(_rec(b)) + "\n", filler * 3]
    if then is not None:
        lines += [filler] * (blocks.piece_size() // len(filler) + 2) + [json.dumps(_rec(then)) + "\n"]
    path.write_text("".join(lines), encoding="utf-8")
    return at


PIECES = [  # (first, later, a third value a piece after the later one, whether the load completes when far apart)
    (1, "5", None, True), ("5", 1, None, True), (1.5, "2.5", None, True), ("1e3", 2, None, True),
    (1, "5", "7", True), (1, "5", 3, True), (1, "5", "a", False), (1, "a", None, False), ("a", 1, None, False),
    (1, True, None, False), ("a", ["a"], None, False), ({"k": 1}, "5", None, False),
]


@pytest.mark.parametrize("a,b,then,loads", PIECES, ids=lambda v: json.dumps(v))
def test_number_and_numeric_text_in_other_pieces(tmp_path, a, b, then, loads):
    far = tmp_path / "far.jsonl"
    at = write_pieces(far, a, b, far=True, then=then)
    rep = validate_file(far)
    assert rep.ok is loads, rep.errors
    if not rep.ok:
        assert [(e.kind, e.field) for e in rep.errors] == [("mixed_types", "x")]
        assert rep.errors[0].record == (at if then is None else rep.records - 1)
    near = tmp_path / "near.jsonl"  # in one piece: pyarrow fails ("changed from number to string")
    at = write_pieces(near, a, b, far=False)
    rep = validate_file(near)
    assert [(e.record, e.kind) for e in rep.errors] == [(at, "mixed_types")]


def test_both_kinds_in_a_later_piece(tmp_path):
    """Accepted across pieces, the two kinds still clash inside one piece (here the last)."""
    f = tmp_path / "d.jsonl"
    at = write_pieces(f, 1, "5", far=True)
    with open(f, "a", encoding="utf-8") as out:
        out.write(json.dumps(_rec(2)) + "\n")  # the piece of "5" (the filler after it is short)
    rep = validate_file(f)
    assert [(e.record, e.kind) for e in rep.errors] == [(at + 4, "mixed_types")]
    assert f"in record {at}" in rep.errors[0].message
