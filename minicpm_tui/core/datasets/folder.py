"""Dataset folders: a ``file_name`` that is a folder, validated the way LLaMA-Factory reads it.

LLaMA-Factory 0.9.x (``llamafactory/data/loader.py``, ``_load_single_dataset``) turns a folder into
``[os.path.join(folder, name) for name in os.listdir(folder)]``: every entry, hidden files and
sub-folders included, unsorted. The first entry's extension picks the loader through
``FILEEXT2TYPE`` ("Allowed file types: ..." when it has none); any entry of another type fails the
load ("File types should be identical."). Then ``datasets.load_dataset(type, data_files=[...])``
reads the files as ONE dataset: the first file read sets the columns and their Arrow types, and
every later file is cast to them, so a file with another column, or a column of another type
(a column null or ``[]`` in every record of one file has no type there), fails the load in some
listing order. ``os.listdir`` order is arbitrary, so each such difference is an error here,
whatever the order. One dataset_info.json entry (one format, one column mapping) serves all files.
A hidden file is an error even with a data extension (LLaMA-Factory would read it: ``._x.jsonl``
from macOS is binary); an empty (0-byte) JSON file is only a warning, as the JSON loader skips it.
``tests/test_datasets_agreement.py`` runs LLaMA-Factory's own loader over dataset folders.

The report is one ``ValidationReport`` for the folder: totals summed, issues name their file
(``Issue.file``) and the record's number within it, statistics over all files, and ``files``
lists each file with the number of its first record (files are read in natural name order).
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minicpm_tui.core.datasets.reader import FILEEXT2TYPE, Progress
from minicpm_tui.core.datasets.validate import (
    MAX_WARNINGS,
    PARALLEL_MIN_BYTES,
    WHOLE_KINDS,
    Issue,
    ValidationReport,
    _Collector,
    _entry_issues,
)

if TYPE_CHECKING:
    from minicpm_tui.core.datasets.entry import EntryReading

# -- Arrow-like column types ------------------------------------------------------------------------
# What pyarrow infers for a JSON value, as a hashable: "null" | "bool" | "int" | "float" | "string" |
# ("list", item) | ("struct", ((field, type), ...)) sorted by field; "mixed" where pyarrow would not
# find one type. Within one file types unify (null gives way, int + float is float, lists by item,
# structs field by field, a missing field is null), as the loader's inference does over a file.
SCALAR_TYPES: dict[type, str] = {str: "string", bool: "bool", int: "int", float: "float", type(None): "null"}


# Types are interned (one object per distinct type) and their unions memoised by identity: records repeat a
# few shapes (messages, tool calls), so typing one is mostly dictionary lookups, not tuple building.
# Every id-keyed memo refers only to interned types (alive in _INTERNED); all are forgotten together.
_INTERNED: dict[Any, Any] = {}
_FLAT: dict[tuple, Any] = {}  # (keys, value types) of an object of scalars -> its struct type
_NESTED: dict[tuple, Any] = {}  # (keys, ids of the value types) of any other object -> its struct type
_LISTS: dict[int, Any] = {}  # id of an item type -> the list type
_UNIONS: dict[tuple[int, int], Any] = {}  # ids of two types -> unify_types of them
_MEMO_MAX = 1 << 16


def _interned(t: Any) -> Any:
    got = _INTERNED.get(t)
    if got is None:
        got = _INTERNED[t] = t
    return got


def value_type(value: Any) -> Any:
    if len(_INTERNED) > _MEMO_MAX:  # only between two calls: no type of an unfinished one is dropped
        for memo in (_INTERNED, _FLAT, _NESTED, _LISTS, _UNIONS):
            memo.clear()
    return _value_type(value)


def _value_type(value: Any) -> Any:
    t = SCALAR_TYPES.get(type(value))
    if t is not None:
        return t
    if type(value) is list:
        item: Any = "null"
        for v in value:
            tv = type(v)
            if tv is dict:  # messages: the flat lookup inline, no call
                vt = _FLAT.get((tuple(v), tuple(map(type, v.values())))) or _value_type(v)
            else:
                vt = SCALAR_TYPES.get(tv) or _value_type(v)
            if vt is not item:
                item = vt if item == "null" else union_types(item, vt)
        return list_type(item)
    if type(value) is dict:
        keys = tuple(value)
        key = (keys, tuple(map(type, value.values())))
        found = _FLAT.get(key)
        if found is not None:
            return found
        fields = [SCALAR_TYPES.get(type(v)) or _value_type(v) for v in value.values()]
        memo, mkey = (_FLAT, key) if list not in key[1] and dict not in key[1] else \
            (_NESTED, (keys, tuple(map(id, fields))))
        found = memo.get(mkey)
        if found is None:
            found = memo[mkey] = _interned(("struct", tuple(sorted(zip(keys, fields, strict=True)))))
        return found
    return "mixed"


def list_type(item: Any) -> Any:
    """The type of a list whose items unify to ``item``."""
    found = _LISTS.get(id(item))
    if found is None:
        item = _interned(item)
        found = _LISTS[id(item)] = _interned(("list", item))
    return found


def union_types(a: Any, b: Any) -> Any:
    """``unify_types`` memoised: the same for any two types, a lookup for two interned ones."""
    found = _UNIONS.get((id(a), id(b)))
    if found is None:
        a, b = _interned(a), _interned(b)
        found = _UNIONS[(id(a), id(b))] = _interned(unify_types(a, b))
    return found


def unify_types(a: Any, b: Any) -> Any:
    if a == b:
        return a
    if a == "null":
        return b
    if b == "null":
        return a
    if (a, b) in (("int", "float"), ("float", "int")):
        return "float"
    if type(a) is tuple and type(b) is tuple and a[0] == b[0]:
        if a[0] == "list":
            return ("list", unify_types(a[1], b[1]))
        fa, fb = dict(a[1]), dict(b[1])
        return ("struct", tuple(sorted((k, unify_types(fa.get(k, "null"), fb.get(k, "null")))
                                       for k in fa.keys() | fb.keys())))
    return "mixed"


def type_name(t: Any) -> str:
    """An Arrow-style spelling: list<struct<from: string, value: string>>."""
    if type(t) is not tuple:
        return t
    if t[0] == "list":
        return f"list<{type_name(t[1])}>"
    return "struct<" + ", ".join(f"{k}: {type_name(v)}" for k, v in t[1]) + ">"


def _has(t: Any, what: str) -> bool:
    if type(t) is not tuple:
        return t == what
    if t[0] == "list":
        return _has(t[1], what)
    return any(_has(v, what) for _, v in t[1])


# -- the listing rule -------------------------------------------------------------------------------
def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_folder(folder: Path) -> tuple[list[str], list[Issue]]:
    """LLaMA-Factory's listing rule: the data files (natural name order) and one issue per entry that
    would make it refuse the folder (a hidden file, a sub-folder, an extension it does not load, a
    type other than the rest). Raises OSError when the folder cannot be listed."""
    names = sorted(os.listdir(folder), key=_natural)
    issues: list[Issue] = []
    typed: dict[str, list[str]] = {}
    for name in names:
        path = folder / name
        what = "folder" if path.is_dir() else "file"
        if name.startswith("."):
            issues.append(Issue(None, "", f"is a hidden {what}; LLaMA-Factory reads every entry of a dataset folder "
                                "as a data file, hidden ones too", f"remove {name} from the folder: LLaMA-Factory "
                                "reads every entry and refuses mixed types", "hidden_file", name))
        elif path.is_dir():
            issues.append(Issue(None, "", "is a sub-folder; LLaMA-Factory passes every entry of a dataset folder to "
                                "the loader as a data file and does not look inside sub-folders",
                                f"move {name} out of the folder (or its files up into it)", "subfolder", name))
        elif not path.is_file():
            issues.append(Issue(None, "", "is not a readable file (a broken link?)",
                                f"remove {name} from the folder", "file_type", name))
        else:
            ext = os.path.splitext(name)[1][1:]
            kind = FILEEXT2TYPE.get(ext)
            if kind is None:
                allowed = ", ".join("." + e for e in FILEEXT2TYPE)
                fix = (f"rename it to {os.path.splitext(name)[0]}.{ext.lower()} (LLaMA-Factory's extension check is "
                       "case-sensitive)" if ext.lower() in FILEEXT2TYPE else f"move {name} out of the folder")
                issues.append(Issue(None, "", f"has {'the extension .' + ext if ext else 'no extension'}, which "
                                    f"LLaMA-Factory does not load (it loads {allowed}) and so refuses the folder",
                                    fix, "file_type", name))
            else:
                typed.setdefault(kind, []).append(name)
    if len(typed) > 1:
        first = {kind: names.index(files[0]) for kind, files in typed.items()}
        main = max(typed, key=lambda k: (len(typed[k]), -first[k]))
        for kind, files in typed.items():
            if kind == main:
                continue
            for name in files:
                issues.append(Issue(None, "", f"is a {kind} file but the folder's other data files are {main} (e.g. "
                                    f"{typed[main][0]}); LLaMA-Factory reads a folder with one loader and refuses "
                                    "mixed types ('File types should be identical.')",
                                    f"move {name} out of the folder, or convert it to {main}", "mixed_file_types",
                                    name))
        typed = {main: typed[main]}
    data = [name for files in typed.values() for name in files]
    return sorted(data, key=_natural), issues


# -- one report for the folder ----------------------------------------------------------------------
def _shape_key(rep: ValidationReport) -> tuple:
    shape = rep.shape
    assert shape is not None
    return (shape.formatting, shape.ranking, shape.messages_key if shape.style != "alpaca" else None,
            tuple(sorted(shape.tags.items())), shape.kto_key if rep.stage == "kto" else None)


def _describe(rep: ValidationReport) -> str:
    shape = rep.shape
    assert shape is not None
    if shape.style == "alpaca":
        return rep.format or shape.name
    t = shape.tags
    return f"{rep.format} ({shape.messages_key!r}, {t['role_tag']}/{t['content_tag']}, roles " \
           f"{t['user_tag']}/{t['assistant_tag']})"


def validate_folder(folder: str | os.PathLike[str], stage: str | None = None, fmt: str | None = None,
                    progress: Progress | None = None, *, keep_indices: bool = False, token_sample: int = 0,
                    parallel_min_bytes: int | None = PARALLEL_MIN_BYTES, workers: int | None = None,
                    entry: EntryReading | None = None) -> ValidationReport:
    """Validate a dataset folder as the one dataset LLaMA-Factory will make of it (see the module doc).

    ``entry``: every file is read through this dataset_info.json entry; its own issues are the folder's."""
    from minicpm_tui.core.datasets.stats import StatsCollector
    from minicpm_tui.core.datasets.validate import validate_file

    started = time.perf_counter()
    root = Path(folder)
    report = ValidationReport(file=str(folder), format=None, stage=stage)
    col = _Collector(report, keep_indices)

    def fail(issue: Issue) -> None:
        if report.file_error is None:
            report.file_error = issue
        col.error(issue.record, issue.field, issue.message, issue.fix, issue.kind, issue.file)

    if entry is not None:
        _entry_issues(report, col, entry, errors=True)
        if entry.shape is None:
            return report
        entry = entry.without_issues()
    try:
        names, issues = list_folder(root)
    except OSError as exc:
        fail(Issue(None, "", f"cannot list the folder ({exc.strerror})", "check the permissions", "file"))
        return report
    for issue in issues:
        fail(issue)
    if not names and not issues:
        fail(Issue(None, "", "is an empty folder; LLaMA-Factory fails on it (it takes the file type from the first "
                   "entry)", "put the data files in it (e.g. train-00001.jsonl, train-00002.jsonl)", "empty_folder"))

    sizes = {}
    for name in names:
        try:
            sizes[name] = (root / name).stat().st_size
        except OSError:
            sizes[name] = 0
    total = sum(sizes.values())
    stage_used = stage
    ref: tuple[str, ValidationReport, dict[str, Any]] | None = None
    merged = StatsCollector()
    samples: list[tuple[int, int, list[dict[str, Any]]]] = []  # (valid records, first record, sample)
    layouts: list[str] = []
    columns: dict[str, None] = {}
    done = 0
    for name in names:
        path = root / name
        if sizes[name] == 0 and FILEEXT2TYPE[os.path.splitext(name)[1][1:]] == "json":
            # The JSON loader reads nothing from an empty file and carries on (a file of blank lines or
            # an empty array, by contrast, makes a table without columns that fails the cast).
            col.warn(None, "", "is empty (0 bytes); LLaMA-Factory reads nothing from it", "delete it, or fill it",
                     "empty", name)
            report.files.append({"file": name, "format": None, "layout": "?", "records": 0, "valid": 0,
                                 "invalid": 0, "first_record": report.records})
            continue

        def part_progress(n: int, _total: int, base: int = done) -> None:
            if progress is not None:
                progress(min(base + n, total), total)

        rep = validate_file(path, stage=stage_used, fmt=fmt, progress=part_progress if progress else None,
                            keep_indices=keep_indices, token_sample=token_sample,
                            parallel_min_bytes=parallel_min_bytes, workers=workers, schema=True, entry=entry)
        done += sizes[name]
        base = report.records
        raw = rep.raw
        rep.raw = None
        if stage_used is None and rep.shape is not None:
            stage_used = rep.stage
        # issues (the folder's cap per kind), counts and totals
        cap = _max_per_kind()
        for e in rep.errors:
            if col.per_kind[e.kind] < cap:
                col.per_kind[e.kind] += 1
                report.errors.append(Issue(e.record, e.field, e.message, e.fix, e.kind, name))
        report.error_counts.update(rep.error_counts)
        for w in rep.warnings:
            if len(report.warnings) < MAX_WARNINGS:
                report.warnings.append(Issue(w.record, w.field, w.message, w.fix, w.kind, name))
        report.warning_counts.update(rep.warning_counts)
        if rep.file_error is not None and report.file_error is None:
            fe = rep.file_error
            report.file_error = Issue(fe.record, fe.field, fe.message, fe.fix, fe.kind, name)
        report.records += rep.records
        report.valid += rep.valid
        report.invalid += rep.invalid
        if keep_indices:
            report.invalid_indices.extend(base + i for i in rep.invalid_indices)
        if raw is not None:
            merged.chars.extend(raw.stats.chars)
            merged.turns.extend(raw.stats.turns)
        if rep.token_sample:
            samples.append((rep.valid, base, [{"index": base + s["index"], "record": s["record"]}
                                              for s in rep.token_sample]))
        if rep.layout not in layouts:
            layouts.append(rep.layout)
        for c in rep.columns:
            columns.setdefault(c, None)
        report.files.append({"file": name, "format": rep.format, "layout": rep.layout, "records": rep.records,
                             "valid": rep.valid, "invalid": rep.invalid, "first_record": base})
        # one entry serves every file: the same format, columns and column types
        if rep.shape is None or raw is None:
            continue
        if ref is None:
            ref = (name, rep, raw.schema)
            report.shape, report.format, report.stage = rep.shape, rep.format, rep.stage
            continue
        _compare(name, rep, raw.schema, ref, fail)

    report.columns = list(columns)
    report.layout = "+".join(layouts) if layouts else "?"
    if report.stage is None:
        report.stage = stage_used
    if names and report.records == 0 and report.file_error is None:
        fail(Issue(None, "", "holds no records (its files are empty)", "add records to its files", "empty"))
    if any(report.error_counts.get(k) for k in WHOLE_KINDS):  # LLaMA-Factory refuses the whole dataset
        report.valid, report.invalid = 0, report.records
        if keep_indices:
            report.invalid_indices[:] = range(report.records)
    report.stats = merged.result()
    report.token_sample = _merge_samples(samples, token_sample)
    report.seconds = time.perf_counter() - started
    return report


def _max_per_kind() -> int:
    from minicpm_tui.core.datasets import validate

    return validate.MAX_ERRORS_PER_KIND  # read at call time: `validate --max-errors` changes it


def _compare(name: str, rep: ValidationReport, schema: dict[str, Any],
             ref: tuple[str, ValidationReport, dict[str, Any]], fail) -> None:
    ref_name, ref_rep, ref_schema = ref
    if _shape_key(rep) != _shape_key(ref_rep):
        fail(Issue(None, "", f"is {_describe(rep)} but {ref_name} is {_describe(ref_rep)}; one dataset_info.json "
                   "entry (one format, one column mapping) serves every file of a folder",
                   f"convert {name} to the format of {ref_name} (`minicpm-tui convert`), or move it to a folder of "
                   "its own", "folder_mismatch", name))
        return
    extra = [k for k in schema if k not in ref_schema]
    missing = [k for k in ref_schema if k not in schema]
    if extra or missing:
        what = []
        if extra:
            what.append(f"has the column{'s' * (len(extra) > 1)} {', '.join(map(repr, extra))} that {ref_name} lacks")
        if missing:
            what.append(f"lacks the column{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))} that "
                        f"{ref_name} has")
        fail(Issue(None, "", " and ".join(what) + "; the loader takes the columns from the first file it reads "
                   "(in os.listdir order, which is arbitrary) and fails on a file with others",
                   "give every file the same keys (null where a record has no value), or move it out",
                   "folder_mismatch", name))
    for k, t in schema.items():
        rt = ref_schema.get(k)
        if rt is None or rt == t or _has(t, "mixed") or _has(rt, "mixed"):
            continue
        if _has(t, "null") != _has(rt, "null"):
            untyped = name if _has(t, "null") else ref_name
            fix = (f"{k!r} is null or [] in every record of {untyped}, so it has no type there: fill it in in one "
                   f"record at least, or drop it from {untyped}")
        else:
            fix = f"give {k!r} the same type in every file"
        fail(Issue(None, k, f"is {type_name(t)} here but {type_name(rt)} in {ref_name}; the loader casts every file "
                   "to the column types of the first one it reads (in os.listdir order, which is arbitrary) and "
                   "fails on this", fix, "folder_mismatch", name))


def _merge_samples(samples: list[tuple[int, int, list[dict[str, Any]]]], want: int) -> list[dict[str, Any]]:
    """Up to ``want`` records spread over the files in proportion to their valid records."""
    if not want or not samples:
        return []
    total = sum(valid for valid, _, _ in samples) or 1
    rng = random.Random(0)
    out: list[dict[str, Any]] = []
    for valid, _, items in samples:
        k = min(len(items), max(1, round(want * valid / total)))
        out.extend(rng.sample(items, k) if k < len(items) else items)
    if len(out) > want:
        out = rng.sample(out, want)
    return sorted(out, key=lambda s: s["index"])
