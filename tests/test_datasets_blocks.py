"""JSON Lines over one loader block: later blocks must cast to the first block's columns and types (blocks.py).

The unit tests shrink the block (``blocks.LOADER_CHUNK``) to keep files small; the integration test runs
LLaMA-Factory's own load (``_get_merged_dataset``) at the true block size (10 MB) in each release's
environment that is built here, and needs our verdicts to agree with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from minicpm_tui.core.datasets import blocks, validate, validate_file
from minicpm_tui.core.lfinfo import training_python
from minicpm_tui.core.resources import resource_script
from minicpm_tui.core.tinymodel import offline_env

MARK = "@@LFCHECK@@"
PAD = "x" * 10000  # big records: few of them fill a 10 MB block


def _alpaca(**kw):
    return {"instruction": "q " + PAD, "input": "", "output": "a", **kw}


def _conv(**kw):
    return {"messages": [{"role": "user", "content": PAD, **kw}, {"role": "assistant", "content": "a"}]}


# name -> (record of the first block, record after it, the field the load fails on or None when it loads)
CASES = {
    "new_key_late": (_alpaca(), _alpaca(system="s"), "system"),
    "new_null_key_late": (_alpaca(), _alpaca(system=None), "system"),
    "message_key_late": (_conv(), _conv(name="bob"), "messages[0].name"),
    "null_then_text": (_alpaca(system=None), _alpaca(system="s"), "system"),
    "empty_list_then_items": (_alpaca(images=[]), _alpaca(images=["a.png"]), "images"),
    "int_then_fraction": (_alpaca(score=1), _alpaca(score=1.5), "score"),
    "object_then_text": (_alpaca(tools={"a": "b"}), _alpaca(tools="[]"), "tools"),
    "key_gone_late": (_alpaca(system="s"), _alpaca(), None),
    "message_key_gone_late": (_conv(name="bob"), _conv(), None),
    "int_then_whole_float": (_alpaca(score=1), _alpaca(score=2.0), None),
    "float_then_int": (_alpaca(score=1.5), _alpaca(score=2), None),
    "text_then_null": (_alpaca(system="s"), _alpaca(system=None), None),
}


def _write(path: Path, early: dict, late: dict, chunk: int, late_from: int | None = None) -> int:
    """Early records up to just past ``chunk`` bytes (the first block), then 5 late ones; the first late index.
    With ``late_from``, the 5 late records come after that many early ones, and early ones fill two blocks."""
    n = size = 0
    with open(path, "w", encoding="utf-8") as f:
        def put(rec: dict) -> None:
            nonlocal n, size
            line = json.dumps(rec) + "\n"
            f.write(line)
            size += len(line)
            n += 1
        while (n < late_from) if late_from is not None else (size <= chunk):
            put(early)
        first_late = n
        for _ in range(5):
            put(late)
        while late_from is not None and size <= 2 * chunk:
            put(early)
    return first_late


@pytest.fixture
def small_block(monkeypatch):
    monkeypatch.setattr(blocks, "LOADER_CHUNK", 64 << 10)
    return 64 << 10


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_later_block_against_the_first(tmp_path, small_block, monkeypatch, name, parallel):
    early, late, field = CASES[name]
    f = tmp_path / "d.jsonl"
    first_late = _write(f, early, late, small_block)
    merged = []
    real = validate._validate_parallel
    monkeypatch.setattr(validate, "_validate_parallel", lambda *a: merged.append(real(*a)) or merged[-1])
    rep = validate_file(f, parallel_min_bytes=1 if parallel else None, workers=2)
    # the parallel path did the work (a mixed_types error, as an object then a text is, sends it back to sequential)
    assert [m is not None for m in merged] == ([name != "object_then_text"] if parallel else [])
    if field is None:
        assert rep.file_error is None, rep.file_error
        return
    err = rep.file_error
    assert (err.kind, err.record, err.field) == ("load", first_late, field), err
    assert rep.valid == 0 and "\n" not in err.message and err.fix
    assert f"records 0-{first_late - 1}" in err.message


def test_the_same_inside_the_first_block_loads(tmp_path, small_block):
    """pyarrow unifies inside one block: a key, a message key, an empty list filled in later all load."""
    for early, late in ((_alpaca(), _alpaca(system="s")), (_conv(), _conv(name="b")),
                        (_alpaca(images=[]), _alpaca(images=["a.png"])), (_alpaca(score=1), _alpaca(score=1.5))):
        f = tmp_path / "d.jsonl"
        _write(f, early, late, small_block, late_from=3)
        assert validate_file(f).ok


def test_json_arrays_and_small_files_are_one_block(tmp_path, small_block):
    arr = tmp_path / "d.json"
    arr.write_text(json.dumps([_alpaca()] * 40 + [_alpaca(system="s")]), encoding="utf-8")
    assert arr.stat().st_size > small_block and validate_file(arr).ok
    small = tmp_path / "s.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in (_alpaca(), _alpaca(system="s"))), encoding="utf-8")
    assert validate_file(small).ok


def test_block_boundaries_follow_the_loader(tmp_path):
    """A block is read(chunk) + readline(): a line starting exactly at the chunk's end is still in it."""
    f = tmp_path / "d.jsonl"
    f.write_bytes(b"a" * 9 + b"\n" + b"b" * 9 + b"\n" + b"c\n")
    assert blocks.second_block_start(f, 22, chunk=10) == 20  # the line at byte 10 finishes block 0
    assert blocks.second_block_start(f, 22, chunk=9) == 10
    assert blocks.second_block_start(f, 22, chunk=30) is None



def test_pieces_follow_pyarrow(tmp_path, small_block):
    """pyarrow's pieces (blocks.piece_starts): in each loader block, piece k starts at the last line start at or
    before block start + k * piece_size() (a line starting exactly there is the next piece's: checked with
    pyarrow's reader while writing this); each later block starts one too."""
    f = tmp_path / "d.jsonl"
    f.write_bytes(b"".join(b"x" * (900 + i * 37 % 700) + b"\n" for i in range(400)))
    data, size = f.read_bytes(), blocks.piece_size()
    line_starts = [i + 1 for i, c in enumerate(data) if c == 10]
    bounds = [0, *blocks.block_starts(f, len(data)), len(data)]
    want = []
    for b, end in zip(bounds, bounds[1:], strict=False):
        want += [b] if b else []
        want += [max(x for x in line_starts if x <= b + k * size) for k in range(1, (end - b) // size + 1)
                 if b + k * size < end]
    got = blocks.piece_starts(f, len(data))
    assert got == want and len(bounds) > 3 and len(got) > 2 * len(bounds)

def _pythons() -> list[tuple[str, str]]:
    """The training Python, and the releases' environments built here that bring another ``datasets``
    (0.9.2: 3.2.0, 0.9.3: 3.6.0; 0.9.4 shares the installed one's 4.0.0): the block model is datasets'."""
    out = [("installed", training_python())]
    for v in ("0.9.2", "0.9.3"):
        py = Path(sys.prefix) / "lfcompat" / v / "bin" / "python"
        if py.exists():
            out.append((v, str(py)))
    return out


def load_job(root: Path, jobs: list[dict]) -> Path:
    """A ``lf_dataset_check.py`` job file that loads (and aligns) each of ``jobs`` ({id, dir, name, stage})."""
    job = root / "job.json"
    job.write_text(json.dumps({"mode": "load", "jobs": jobs}), encoding="utf-8")
    return job


def lf_load(python: str, job: Path, timeout: int) -> dict[str, dict]:
    """Run a load job in that Python (LLaMA-Factory's ``_get_merged_dataset``): each job's result by id."""
    proc = subprocess.run([python, str(resource_script("lf_dataset_check.py")), str(job)], capture_output=True,
                          text=True, env=offline_env(), timeout=timeout)
    line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith(MARK)), None)
    assert line is not None, proc.stderr[-3000:]
    return {r["id"]: r for r in json.loads(line[len(MARK):])["results"]}


SHAREGPT = {"formatting": "sharegpt", "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}


@pytest.fixture(scope="module")
def true_size_cases(tmp_path_factory):
    """Every case at the true block size (10 MB), checked by us; (the LLaMA-Factory job, whether each loads)."""
    root = tmp_path_factory.mktemp("blocks")
    jobs = []
    expected = {}
    for name, (early, late, field) in CASES.items():
        d = root / name
        d.mkdir()
        first_late = _write(d / "d.jsonl", early, late, blocks.LOADER_CHUNK)
        entry = {"file_name": "d.jsonl", **(SHAREGPT if "messages" in early else {})}
        (d / "dataset_info.json").write_text(json.dumps({"d": entry}), encoding="utf-8")
        err = validate_file(d / "d.jsonl", entry=entry).file_error
        if field is None:
            assert err is None, (name, err)
        else:
            assert (err.kind, err.record, err.field) == ("load", first_late, field), (name, err)
        expected[name] = field is None
        jobs.append({"id": name, "dir": str(d), "name": "d", "stage": "sft"})
    return load_job(root, jobs), expected


@pytest.mark.integration
@pytest.mark.timeout(240)
@pytest.mark.parametrize("release", _pythons(), ids=lambda r: r[0])
def test_blocks_agree_with_llamafactory(true_size_cases, release):
    """In each LLaMA-Factory environment here (its own ``datasets``), at the true block size: a load
    LLaMA-Factory's ``_get_merged_dataset`` fails we report as a whole-load issue at the first late record
    (the fixture checks that), and one it completes we accept."""
    job, expected = true_size_cases
    version, python = release
    results = lf_load(python, job, 200)
    got = {k: r["status"] == "ok" for k, r in results.items()}
    assert got == expected, (version, [r for k, r in results.items() if got[k] != expected[k]])
