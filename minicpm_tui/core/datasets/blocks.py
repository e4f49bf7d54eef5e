"""JSON Lines files bigger than one loader block: the columns and types the first block fixes.

``datasets``' JSON builder (``datasets/packaged_modules/json/json.py``, ``Json._generate_tables``; the
same file in datasets 3.2.0, 3.6.0 and 4.0.0, i.e. every LLaMA-Factory 0.9.2-0.9.5 environment) reads
a JSON Lines file in blocks: ``f.read(chunksize)`` plus ``f.readline()`` to finish the line, with
``JsonConfig.chunksize = 10 << 20`` (LLaMA-Factory passes no chunksize), so a block holds the lines that
start at most ``chunksize`` bytes after its own start. pyarrow infers each block's schema alone, and the
ArrowWriter (``ArrowWriter.write_table``) takes the first block's schema and casts every later block to
it (``table.cast_table_to_schema`` / ``cast_array_to_feature``). What that does (experiments with the
real loader in each of those environments, the same every time):
- a top-level key, or a key of a nested object (a message, a tool call), that no record of the first
  block has fails the whole load ("Couldn't cast ... column names don't match" / "Couldn't cast array of
  type struct<...>"), even with a null value;
- a column (or nested field, or list item) that is null or ``[]`` in every record of the first block has
  the type null there, and any later value fails ("Couldn't cast array of type string to null");
- an int column gets a later fraction (1.5) wrong ("Float value 1.5 was truncated"), 2.0 is fine; a
  string, list or object where the first block has another of these three fails;
- silently handled: keys missing later (null), float then int, a later number or boolean in a string
  column ("5", "true"), a later digit string in an int column, "true"/"false"/"1"/"0" in a bool one.
Within one block pyarrow unifies instead (new keys, int + float), and two kinds of value for one field
(string, number, boolean, list, object), at the top or nested (a list's items, an object's field), fail
the block (``validate``'s ``mixed_types``; ``BlockTypes`` types the records for the nested ones). A JSON
array is read whole (pandas, then ``Table.from_pandas``, which fails on the same clashes), so it is one
such read. ``tests/test_datasets_blocks.py`` and ``tests/test_datasets_types.py`` check this against the
real loader. pyarrow parses a block in pieces of ``chunksize // 32`` (320 KB, ``piece_starts``): each piece is typed alone
and the others are converted to (or promoted from) its type, in whichever order its threads finish
(``arrow/json/chunked_builder.cc``; promotion null -> any, int64 -> float64, text -> string). Two kinds in one
piece fail as above. Across pieces a number and a text that reads as a number (``"5"``, ``"1.5"``) always load
(the column is then numbers or text, by thread timing), so ``validate`` accepts that; any other pair of kinds
there fails or loads by timing (a number then ``"a"``), fails (a boolean), or is undefined behaviour in pyarrow
(a list or object against a scalar: garbage or a crash), so it is still ``mixed_types``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from minicpm_tui.core.datasets.folder import SCALAR_TYPES, _has, union_types, value_type

# datasets' JsonConfig.chunksize (10 MB): the loader's block. A module constant so tests can shrink it.
LOADER_CHUNK = 10 << 20

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf|infinity)", re.I)
_INDEX = re.compile(r"\[[0-9]+\]")
_TRAILING_INDEX = re.compile(r"(\[[0-9]+\])+$")
_BOOL = frozenset(("true", "false", "1", "0"))
# Python types a scalar column takes without a second look, per Arrow type.
_SAME: dict[Any, type] = {"string": str, "int": int, "float": float, "bool": bool}


def piece_size() -> int:
    """pyarrow's block inside a loader block: datasets reads each with ``paj.ReadOptions(block_size=max(chunksize
    // 32, 16 << 10))`` (320 KB)."""
    return max(LOADER_CHUNK // 32, 16 << 10)


def piece_starts(path: str | Path, total: int) -> list[int]:
    """Where each of pyarrow's pieces starts, after the file's first one, over every loader block (ascending).
    A piece ends at the last line end inside its ``piece_size()`` bytes (the rest goes to the next piece), so
    piece ``k`` of the block starting at ``b`` starts at the last line start at or before ``b + k * piece_size()``
    (a line longer than a piece: datasets retries the block with pieces twice as big; not modelled, that
    boundary is left out)."""
    size = piece_size()
    if total <= size:
        return []
    out: list[int] = []
    bounds = [0, *block_starts(path, total), total]
    with open(path, "rb") as f:
        for b, end in zip(bounds, bounds[1:], strict=False):
            if b:
                out.append(b)
            last = b  # this block's latest piece start
            at = b + size
            while at < end:
                lo, step = at, 4096  # the last line start at or before ``at``, after ``last``: ever wider windows
                while lo > last:
                    lo, step = max(last, at - step), step * 4
                    f.seek(lo)
                    nl = f.read(at - lo).rfind(b"\n")
                    if nl >= 0:
                        last = lo + nl + 1
                        out.append(last)
                        break
                at += size
    return out


def numeric_text(v: str) -> bool:
    """Whether pyarrow's number converters read the text ``v`` (as int64, else float64)."""
    return _FLOAT.fullmatch(v) is not None


def numeric_mix(path: str | Path, start: int, piece: int, stop: int, key: str) -> bool:
    """Whether a first number (or first text) in ``key`` at ``stop`` loads against the other kind before it in
    its loader block (from ``start``): no value of ``key`` in its own pyarrow piece (from ``piece``) before it,
    and each text before it a number (``numeric_text``). Only asked once per key and block."""
    from minicpm_tui.core.datasets.reader import RecordReader

    reader = RecordReader(path, byte_range=(start, stop))
    for _, rec in reader:
        v = rec.get(key) if type(rec) is dict else None
        if v is None:
            continue
        if reader.pos >= piece or type(v) is str and not numeric_text(v):
            return False
    return True


def second_block_start(path: str | Path, total: int, chunk: int | None = None) -> int | None:
    """The byte offset where the loader's second block starts, or None when the file is one block."""
    starts = block_starts(path, total, chunk, limit=1)
    return starts[0] if starts else None


def block_starts(path: str | Path, total: int, chunk: int | None = None, limit: int | None = None) -> list[int]:
    """Where each of the loader's blocks after the first starts (at most ``limit`` of them): a block is
    ``read(chunk)`` then ``readline()``, so the next one starts at the first line start past its own start
    + ``chunk``."""
    chunk = LOADER_CHUNK if chunk is None else chunk
    out: list[int] = []
    at = chunk
    with open(path, "rb") as f:
        while at < total and (limit is None or len(out) < limit):
            f.seek(at)
            while True:
                piece = f.read(1 << 16)
                if not piece:
                    return out
                nl = piece.find(b"\n")
                if nl >= 0:
                    break
                at += len(piece)
            start = at + nl + 1
            if start >= total:
                break
            out.append(start)
            at = start + chunk
    return out


class BlockTypes:
    """The column types of what the loader parses at once (a JSON Lines block, a whole JSON array), record by
    record, and the first record where a nested field takes a second kind: a list of strings here and of
    numbers there, a message key that is a number in one turn and text in another. pyarrow (and pandas'
    ``Table.from_pandas`` for an array) fails the whole read on it, as on a top-level clash."""

    __slots__ = ("sigs", "history")

    def __init__(self) -> None:
        self.sigs: dict[str, Any] = {}  # column -> its type so far (``folder.value_type``'s)
        self.history: dict[str, list[tuple[int, Any]]] = {}  # column -> (record, its type from there), per change

    def add(self, rec: dict[str, Any], idx: int, known: dict[str, Any] | None = None) -> tuple[str, Any] | None:
        """Unify record ``idx``'s types in (``known``: some columns' types, vouched for by the record check);
        (column, its type before) where one gets a nested clash here (that column of the record is then left
        out, so later records are compared without it), else None."""
        sigs = self.sigs
        hit = None
        for k, v in rec.items():
            t = SCALAR_TYPES.get(type(v)) or (known and known.get(k)) or value_type(v)
            cur = sigs.get(k)
            if cur is t:  # types are interned: the usual answer
                continue
            new = t if cur is None else union_types(cur, t)
            if new is cur:  # a record with fewer fields, say: nothing new
                continue
            if type(new) is tuple:
                if _has(new, "mixed") and (cur is None or not _has(cur, "mixed")):
                    hit = hit or (k, cur)
                    continue
                self.history.setdefault(k, []).append((idx, new))
            sigs[k] = new  # a top-level "mixed" is validate's own mixed_types check
        return hit


_KIND_OF = {"string": "string", "int": "number", "float": "number", "bool": "boolean"}


def _kinds(t: Any, path: str, out: dict[str, str]) -> dict[str, str]:
    """Each abstract path (``messages[].weight``) of type ``t`` -> its JSON kind; no null or mixed ones."""
    if type(t) is str:
        if t in _KIND_OF:
            out[path] = _KIND_OF[t]
    elif t[0] == "list":
        out[path] = "array"
        _kinds(t[1], path + "[]", out)
    else:
        out[path] = "object"
        for name, ft in t[1]:
            _kinds(ft, f"{path}.{name}", out)
    return out


def _value_clash(v: Any, path: str, at: str, seen: dict[str, tuple[str, str | None]]):
    """(field, abstract path, kind here, (kind before, its field in this record or None)) for the first value
    of ``v`` (in order) whose JSON kind differs from the one ``seen`` has at its path, else None."""
    from minicpm_tui.core.datasets.formats import json_kind

    if v is None:
        return None
    kind = json_kind(v)
    before = seen.get(path)
    if before is None:
        seen[path] = (kind, at)
    elif before[0] != kind:
        return at, path, kind, before
    items = enumerate(v) if type(v) is list else v.items() if type(v) is dict else ()
    for key, x in items:
        hit = _value_clash(x, path + "[]" if type(v) is list else f"{path}.{key}",
                           f"{at}[{key}]" if type(v) is list else f"{at}.{key}", seen)
        if hit is not None:
            return hit
    return None


def nested_clash(column: str, before: Any, value: Any, idx: int,
                 history: list[tuple[int, Any]]) -> tuple[str, str, str, str]:
    """(field, message, fix, kind "mixed_types") for record ``idx``, whose ``column`` (``value``) clashes with
    ``before`` (the column's type over the records before it in the same read; ``history``: where it changed)."""
    seen: dict[str, tuple[str, str | None]] = {p: (k, None) for p, k in _kinds(before, column, {}).items()} \
        if before is not None else {}
    hit = _value_clash(value, column, column, seen)
    if hit is None:  # pragma: no cover - BlockTypes found one
        return (column, "has items or fields of two kinds; LLaMA-Factory's loader (Arrow) fails on a field with "
                "mixed types", f"give every value inside {column!r} one type", "mixed_types")
    field, path, kind, (was, where) = hit
    if where is None:
        first = next((i for i, t in history if _kinds(t, column, {}).get(path) == was), None)
        where = f"in record {first}" if first is not None else "in an earlier record"
    else:
        where = f"at {where} in this record"
    was = f"{'an' if was[0] in 'aeiou' else 'a'} {was}"
    return (field, f"is a JSON {kind} here but {path} is {was} {where}; LLaMA-Factory's loader (Arrow) fails on a "
            "field with mixed types", f"make every {path} {was} (in every record)", "mixed_types")


def _compiled(t: Any) -> tuple[Any, Any]:
    """(the Python type that needs no second look, or None; the type with lists as ("list", item entry) and
    structs as {field: entry})."""
    if type(t) is not tuple:
        return _SAME.get(t), t
    if t[0] == "list":
        return None, ("list", _compiled(t[1]))
    return None, {k: _compiled(v) for k, v in t[1]}


def compile_schema(sigs: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: _compiled(t) for k, t in sigs.items()}


def first_block(path: str | Path, total: int) -> tuple[int, int, dict[str, Any]] | None:
    """(where the second block starts, the first block's records, its column types compiled), or None (one
    block, or a nested clash inside the first one)."""
    from minicpm_tui.core.datasets.reader import RecordReader

    start = second_block_start(path, total)
    if start is None:
        return None
    types = BlockTypes()
    records = 0
    for idx, rec in RecordReader(path, byte_range=(0, start)):
        records += 1
        if type(rec) is dict and types.add(rec, idx) is not None:
            return None  # a clash inside the first block: the sequential scan names it
    return start, records, compile_schema(types.sigs)


def _kind(v: Any) -> str:
    from minicpm_tui.core.datasets.formats import json_kind

    return f"a JSON {json_kind(v)}"


def _problem(v: Any, t: Any) -> tuple[list[str], str] | None:
    """Where (path parts, innermost first) and how the non-null ``v`` does not cast to the first block's
    compiled type ``t``, or None. Paths are only built on the way out of a failure."""
    tv = type(v)
    if type(t) is str:
        if t == "mixed" or t == "string" and tv is not list and tv is not dict:
            return None
        if t == "null":
            return [], "untyped"
        if tv is list or tv is dict:
            return [], f"is {_kind(v)} here but {'an' if t == 'int' else 'a'} {t} in the first block"
        if tv is str:
            ok = _INT.fullmatch(v) if t == "int" else _FLOAT.fullmatch(v) if t == "float" else v.lower() in _BOOL
            return None if ok else ([], f"is the text {v[:40]!r} here, which the loader cannot turn into the {t} "
                                        "it is in the first block")
        if t == "int" and tv is float and not v.is_integer():
            return [], f"is the fraction {v!r} here but an int in every record of the first block"
        return None
    if type(t) is tuple:  # ("list", item entry)
        if tv is not list:
            return [], f"is {_kind(v)} here but a list in the first block"
        same, item = t[1]
        for i, x in enumerate(v):
            if x is None or type(x) is same:
                continue
            p = _problem(x, item)
            if p is not None:
                p[0].append(f"[{i}]")
                return p
        return None
    if tv is not dict:
        return [], f"is {_kind(v)} here but an object in the first block"
    return _fields_problem(v, t)


def _ok(v: Any, t: Any) -> int:
    """Whether the non-null ``v`` (not of its field's own type) casts to ``t``: ``_problem``'s fast answer,
    with no path built and no call per scalar (every record after the first block goes through it).
    0: it does not; 1: it does, each value of the first block's JSON kind; 2: it does, with some value of
    another kind (castable: a number in a text column), which the first block's types say nothing about: the
    records of that later block may differ from each other there, which fails the block itself."""
    tv = type(v)
    ok = 1
    if tv is dict:
        if type(t) is not dict:
            return 0
        for k, x in v.items():
            entry = t.get(k)
            if entry is None:
                return 0
            if x is not None and type(x) is not entry[0]:
                r = _ok(x, entry[1])
                if r != 1:
                    if not r:
                        return 0
                    ok = 2
        return ok
    if tv is list:
        if type(t) is not tuple:
            return 0
        same, item = t[1]
        for x in v:
            if x is not None and type(x) is not same:
                r = _ok(x, item)
                if r != 1:
                    if not r:
                        return 0
                    ok = 2
        return ok
    if _problem(v, t) is not None:
        return 0
    return 1 if (tv is int or tv is float) and (t == "int" or t == "float") else 2


def _fields_problem(v: dict[str, Any], t: dict[str, tuple[Any, Any]]) -> tuple[list[str], str] | None:
    for k, x in v.items():
        entry = t.get(k)
        if entry is None:
            return [k], "new"
        if x is None or type(x) is entry[0]:
            continue
        p = _problem(x, entry[1])
        if p is not None:
            p[0].append(k)
            return p
    return None


DIFFERS = ("", "")  # record_problem: it casts, with a value of another kind than the first block's


def record_problem(rec: dict[str, Any], schema: dict[str, tuple[Any, Any]]) -> tuple[str, str] | None:
    """(field, what) where a record after the first block does not cast to its columns (``compile_schema``),
    ``DIFFERS`` where it casts with some value of another JSON kind (``_ok``), or None."""
    differs = False
    for k, v in rec.items():
        entry = schema.get(k)
        if entry is None:
            break
        if v is not None and type(v) is not entry[0]:
            r = _ok(v, entry[1])
            if r != 1:
                if not r:
                    break
                differs = True
    else:
        return DIFFERS if differs else None
    p = _fields_problem(rec, schema)
    if p is None:  # pragma: no cover - the two agree
        return None
    parts, what = p
    top = parts.pop()
    return top + "".join(x if x.startswith("[") else "." + x for x in reversed(parts)), what


def block_issue(idx: int, problem: tuple[str, str], first_records: int):
    """The whole-load issue (kind "load") for record ``idx``, the first after the first block that fails."""
    from minicpm_tui.core.datasets.validate import Issue

    field, what = problem
    mb = LOADER_CHUNK / (1 << 20)
    block = f"the first block that LLaMA-Factory's JSON Lines loader (datasets) reads ({mb:g} MB, records 0-" \
            f"{first_records - 1})"
    stops = "which stops the whole load"
    if what == "new":
        parent, _, name = field.rpartition(".")
        where = "every record" if not parent else "every object at " + _INDEX.sub("[]", parent)
        return Issue(idx, field, f"has the key {name!r}, which no record in {block} has there: the loader takes "
                     f"the columns from that block and fails on a later one with others (\"Couldn't cast\"), {stops}",
                     f"give {where} the key {name!r} (null where it has no value), or move this record to the top "
                     "of the file", "load")
    if what == "untyped":
        field = _TRAILING_INDEX.sub("", field)
        return Issue(idx, field, f"is null or [] in every record of {block}, so it has no type there, and this "
                     f"record gives it one: the loader fails on it (\"Couldn't cast ... to null\"), {stops}",
                     "move this record (or one like it) to the top of the file, or drop the key", "load")
    return Issue(idx, field, f"{what} that {block.removeprefix('the first block that ')}: the loader casts every "
                 f"later block to the first one's types and fails on this, {stops}", "give it one type in every "
                 "record (numbers with a fraction anywhere: write them all as floats, e.g. 1.0)", "load")
