"""Register a dataset in a dataset_info.json: create or merge, never clobber, keep the rest byte-for-byte.

An existing file is never re-serialised: the new entry is spliced in as text (after the last
entry, or over the old value of the same name), so every other entry keeps its exact bytes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minicpm_tui.core.atomic import backup, write_atomic
from minicpm_tui.core.errors import UserError

INFO_NAME = "dataset_info.json"


def dataset_info_entry(report, file_name: str | None = None) -> dict[str, Any]:
    """The dataset_info.json entry that makes LLaMA-Factory read ``report``'s file as validated.

    Only columns present in the file are named: LLaMA-Factory looks every named column up in each
    row and fails on a column the file does not have.
    """
    shape = report.shape
    if shape is None:
        raise UserError("cannot register a file whose format is unknown", where=report.file,
                        fix="run `minicpm-tui validate` on it and fix the first error")
    entry: dict[str, Any] = {"file_name": file_name if file_name is not None else str(report.file)}
    if shape.columns is not None:
        # Read through an entry: that entry again (what it leaves unset stays unset: blocks are explicit).
        entry["formatting"] = shape.formatting
        if shape.ranking:
            entry["ranking"] = True
        entry["columns"] = {k: v for k, v in shape.columns.items() if v is not None}
        if shape.style != "alpaca":
            entry["tags"] = {k: v for k, v in shape.tags.items() if v is not None}
        return entry
    present = set(report.columns)
    stage = report.stage or shape.default_stage()
    columns: dict[str, str] = {}
    if shape.style == "alpaca":
        entry["formatting"] = "alpaca"
        for col, key in (("prompt", "instruction"), ("query", "input")):
            if key in present:
                columns[col] = key
        if shape.ranking:  # the data decides; LLaMA-Factory refuses ranking data for a non-DPO stage
            entry["ranking"] = True
            columns.update(chosen="chosen", rejected="rejected")
        elif "output" in present:
            columns["response"] = "output"
        for key in ("system", "history"):
            if key in present:
                columns[key] = key
    else:
        entry["formatting"] = "sharegpt"
        if shape.ranking:
            entry["ranking"] = True
        columns["messages"] = shape.messages_key
        for key in ("system", "tools"):
            if key in present:
                columns[key] = key
        if shape.ranking:
            columns.update(chosen="chosen", rejected="rejected")
    if stage == "kto" and shape.kto_key:
        columns["kto_tag"] = shape.kto_key
    entry["columns"] = columns
    if shape.style != "alpaca":
        entry["tags"] = dict(shape.tags)
    return entry


@dataclass
class RegisterResult:
    path: Path
    name: str
    entry: dict[str, Any]
    changed: bool
    backup: Path | None
    report: Any


def _file_name_for(file: Path, dataset_dir: Path) -> str:
    try:
        return file.resolve().relative_to(dataset_dir.resolve()).as_posix()
    except ValueError:
        return str(file.resolve())


def register_dataset(file: str | os.PathLike[str], name: str, dataset_dir: str | os.PathLike[str],
                     stage: str | None = None, force: bool = False, *, report=None,
                     allow_invalid: bool = False) -> RegisterResult:
    """Validate ``file`` and add it as ``name`` to ``dataset_dir/dataset_info.json``.

    ``file`` may be a folder: LLaMA-Factory reads all its files as one dataset, and the entry's
    ``file_name`` is the folder (relative to ``dataset_dir`` when inside it, as for a file).

    Refuses (UserError, exit 1) when the file is not usable, or when ``name`` exists with a
    different entry and ``force`` is false. A changed file is backed up first and written atomically.
    """
    from minicpm_tui.core.datasets.validate import validate_file

    if not name or any(c in name for c in "\"\\\n\r\t") or name != name.strip():
        raise UserError(f"bad dataset name {name!r}", where="--name", fix="use letters, digits, - _ or .")
    if "," in name:  # the `dataset:` key of train.yaml is a comma-separated list of these names
        raise UserError(f"bad dataset name {name!r}: LLaMA-Factory reads a comma as a list of datasets",
                        where="--name", fix="use letters, digits, - _ or .")
    if name.startswith(("/", "~", "./", "../")):  # an "org/name" key is fine; a path typed as the name is not
        raise UserError(f"bad dataset name {name!r}: that is a path; the name is what train.yaml's `dataset:` "
                        "says", where="--name", fix="give a short name such as my_sft (the file is the FILE "
                        "argument)", fix_tui="type a short name such as my_sft; the file is chosen above")
    file = Path(file)
    ddir = Path(dataset_dir)
    if ddir.exists() and not ddir.is_dir():
        raise UserError(f"{ddir} is not a folder", where="--dataset-dir", fix="pass the folder that holds (or "
                        "will hold) dataset_info.json")
    from minicpm_tui.core.datasets.entry import registry_at, registry_refusal

    info_path = registry_at(file)
    if info_path is not None:  # a dataset_dir (or its dataset_info.json): read as shards, the registry is data
        raise registry_refusal(file, info_path, command="register")
    report = report or validate_file(file, stage=stage)  # a folder: every file in it, as one dataset
    if report.file_error is not None or report.records == 0:
        err = report.file_error
        what = (f"{err.file}: {err.message}" if err.file else err.message) if err else "no records"
        raise UserError(f"cannot register it: {what}", where=str(file), fix=err.fix if err else "add records",
                        exit_code=1)
    if report.invalid and not allow_invalid:
        raise UserError(f"cannot register it: {report.invalid:,} of {report.records:,} records are not usable, "
                        f"first: {report.errors[0].brief()}", where=str(file),
                        fix="fix them (`minicpm-tui validate` lists them all)", exit_code=1,
                        fix_tui="fix them (the Validation pane lists them)")
    entry = dataset_info_entry(report, file_name=_file_name_for(file, ddir))
    path = ddir / INFO_NAME
    if not path.exists():
        write_atomic(path, json.dumps({name: entry}, indent=2, ensure_ascii=False) + "\n")
        return RegisterResult(path, name, entry, True, None, report)
    text = path.read_text(encoding="utf-8")
    spans = _top_level_spans(text, path)
    try:
        current = json.loads(text)
    except json.JSONDecodeError as exc:  # pragma: no cover - _top_level_spans already parsed it
        raise UserError(f"not valid JSON: {exc}", where=str(path), fix="fix or move the file") from None
    if name in current:
        if current[name] == entry:
            return RegisterResult(path, name, entry, False, None, report)
        if not force:
            known = current[name].get("file_name") if isinstance(current[name], dict) else None
            what = (f"{name!r} is already registered for this file with other settings (the entry differs)"
                    if known == entry.get("file_name") else
                    f"a different dataset is already registered as {name!r} (file_name {known or '?'})")
            raise UserError(what,
                            where=str(path), fix="pick another --name, or pass --force to replace it", exit_code=1,
                            fix_tui="type another name to register it as")
        start, end, indent = spans[name]
        new_text = text[:start] + _dump_value(entry, indent) + text[end:]
    else:
        new_text = _insert(text, spans, name, entry)
    json.loads(new_text)  # never write something LLaMA-Factory cannot read
    saved = backup(path)
    write_atomic(path, new_text)
    return RegisterResult(path, name, entry, True, saved, report)


def _dump_value(value: Any, indent: str) -> str:
    lines = json.dumps(value, indent=2, ensure_ascii=False).split("\n")
    return "\n".join([lines[0]] + [indent + line for line in lines[1:]])


def _insert(text: str, spans: dict[str, tuple[int, int, str]], name: str, entry: dict[str, Any]) -> str:
    close = text.rstrip().rfind("}")
    if not spans:
        body = "  " + json.dumps(name) + ": " + _dump_value(entry, "  ")
        return text[: text.find("{") + 1] + "\n" + body + "\n" + text[close:]
    last_end = max(end for _, end, _ in spans.values())
    indent = next(iter(spans.values()))[2]
    body = ",\n" + indent + json.dumps(name, ensure_ascii=False) + ": " + _dump_value(entry, indent)
    return text[:last_end] + body + text[last_end:]


def _top_level_spans(text: str, path: Path) -> dict[str, tuple[int, int, str]]:
    """name -> (value start, value end, the key's indentation) for the top-level object in ``text``."""
    dec = json.JSONDecoder()
    ws = " \t\r\n"
    bad = UserError("is not a JSON object of dataset entries", where=str(path),
                    fix="fix it, or point --dataset-dir at another folder")
    i = 0
    n = len(text)
    while i < n and text[i] in ws + "\ufeff":
        i += 1
    if i >= n or text[i] != "{":
        raise bad
    i += 1
    spans: dict[str, tuple[int, int, str]] = {}
    try:
        while True:
            while i < n and text[i] in ws:
                i += 1
            if text[i] == "}":
                break
            if spans:
                if text[i] != ",":
                    raise bad
                i += 1
                while text[i] in ws:
                    i += 1
            line_start = text.rfind("\n", 0, i) + 1
            indent = text[line_start:i] if text[line_start:i].strip() == "" else "  "
            key, i = dec.raw_decode(text, i)
            while text[i] in ws:
                i += 1
            if text[i] != ":":
                raise bad
            i += 1
            while text[i] in ws:
                i += 1
            start = i
            _, i = dec.raw_decode(text, i)
            spans[key] = (start, i, indent)
    except (IndexError, json.JSONDecodeError):
        raise UserError("is not valid JSON", where=str(path), fix="fix it, or point --dataset-dir at another "
                        "folder") from None
    return spans
