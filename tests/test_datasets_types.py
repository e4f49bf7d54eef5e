"""A column whose values have different types in different records: what the loader accepts, and our verdict.

Inside what pyarrow/pandas read at once (a JSON array: the whole file; JSON Lines: one 10 MB loader block)
int and float promote and null goes with anything, while any other pair of kinds (number, text, boolean,
list, object) fails the whole load. Across JSON Lines blocks the first block's type is cast to instead
(``blocks.py``): a later number or boolean in a text column loads, and so on. CSV cells are typed per chunk
(``test_datasets_csv.py``). Each pair is checked with our ``validate`` and, in the integration test, with
LLaMA-Factory's own load in each release's environment built here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_datasets_blocks import PAD, _pythons, lf_load, load_job

from minicpm_tui.core.datasets import blocks, validate_file

V = {"int": 1, "float": 1.5, "whole_float": 2.0, "text": "a", "digits": "5", "true_text": "true", "bool": True,
     "null": None, "list": ["a"], "int_list": [1], "empty_list": [], "object": {"k": "v"}, "empty_object": {}}

# (first value, later value) -> whether the load completes, read at once (a JSON array, one JSON Lines block)
AT_ONCE = {
    ("int", "float"): True, ("float", "int"): True, ("int", "whole_float"): True, ("int", "null"): True,
    ("text", "null"): True, ("null", "text"): True, ("null", "list"): True, ("list", "null"): True,
    ("list", "empty_list"): True, ("object", "empty_object"): True,
    ("int", "text"): False, ("text", "int"): False, ("int", "digits"): False, ("digits", "int"): False,
    ("float", "text"): False, ("bool", "int"): False, ("int", "bool"): False, ("bool", "float"): False,
    ("bool", "text"): False, ("text", "bool"): False, ("list", "text"): False, ("text", "list"): False,
    ("object", "text"): False, ("text", "object"): False, ("list", "object"): False, ("object", "list"): False,
}
# the same, the later value in the second JSON Lines block (the first block's type is cast to)
ACROSS_BLOCKS = {
    ("text", "int"): True, ("text", "float"): True, ("text", "bool"): True, ("int", "digits"): True,
    ("float", "digits"): True, ("bool", "int"): True, ("int", "bool"): True, ("float", "bool"): True,
    ("bool", "true_text"): True, ("list", "int_list"): True,
    ("int", "text"): False, ("bool", "text"): False, ("list", "text"): False, ("text", "list"): False,
    ("int_list", "list"): False, ("object", "text"): False,
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
        assert {e.field.partition("[")[0] for e in rep.errors} == {"x"}, rep.errors
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
    return load_job(root, jobs), expected


@pytest.mark.integration
@pytest.mark.timeout(400)
@pytest.mark.parametrize("release", _pythons(), ids=lambda r: r[0])
def test_types_agree_with_llamafactory(type_cases, release):
    job, expected = type_cases
    version, python = release
    got = {k: r["status"] == "ok" for k, r in lf_load(python, job, 380).items()}
    assert got == expected, (version, {k: v for k, v in got.items() if v != expected[k]})
