"""Cheap, common conversions: OpenAI messages -> sharegpt, KTO string labels -> booleans, CSV -> JSON Lines.

Streams record by record into a temp file beside the output, then renames it (atomic, any size).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minicpm_tui.core.atomic import temp_beside
from minicpm_tui.core.datasets.reader import (
    FileLevelError,
    RecordLines,
    RecordParseError,
    RecordReader,
    ends_in_open_quote,
)
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import missing

ROLE_MAP = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation",
            "function": "observation"}


@dataclass
class ConvertResult:
    output: Path
    records: int
    changed: dict[str, int]


def _openai_message(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict) or "role" not in m:
        raise UserError("is not a {role, content} message", where=where, fix="fix the record first", exit_code=1)
    role = m["role"]
    calls = m.get("tool_calls")
    if role == "assistant" and calls:
        fns = []
        for c in calls:
            fn = dict(c.get("function", c))
            if isinstance(fn.get("arguments"), str):
                with contextlib.suppress(json.JSONDecodeError):
                    fn["arguments"] = json.loads(fn["arguments"])
            fns.append(fn)
        return {"from": "function_call", "value": json.dumps(fns, ensure_ascii=False)}
    if role not in ROLE_MAP:
        raise UserError(f"has role {role!r}", where=where, fix="use user/assistant/system/tool", exit_code=1)
    return {"from": ROLE_MAP[role], "value": m.get("content")}


def openai_to_sharegpt(rec: dict[str, Any], idx: int, file: str) -> tuple[dict[str, Any], bool]:
    msgs = rec.get("messages")
    if not isinstance(msgs, list):
        return rec, False
    out = {k: v for k, v in rec.items() if k != "messages"}
    out["conversations"] = [_openai_message(m, f"{file}:record {idx}: messages[{j}]") for j, m in enumerate(msgs)]
    for key in ("chosen", "rejected"):
        if isinstance(rec.get(key), dict):
            out[key] = _openai_message(rec[key], f"{file}:record {idx}: {key}")
    if isinstance(out.get("tools"), (list, dict)):
        out["tools"] = json.dumps(out["tools"], ensure_ascii=False)
    # Keep the key order readable: conversations first.
    return {"conversations": out.pop("conversations"), **out}, True


def kto_labels(rec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    for key in ("label", "kto_tag"):
        v = rec.get(key)
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            rec = dict(rec)
            rec[key] = v.strip().lower() == "true"
            return rec, True
    return rec, False


def _raw_csv(path: Path) -> Iterator[tuple[int, Any]]:
    # Strings stay strings: a CSV "2" answer must not become the number pandas would make of it.
    with open(path, newline="", encoding="utf-8") as fh:
        source = RecordLines(fh)
        last: list[str] = []
        idx = -1
        for idx, row in enumerate(csv.DictReader(source)):
            last, source.lines = source.lines, []
            yield idx, {k: v for k, v in row.items() if k is not None}
        if ends_in_open_quote(last):  # the csv module gave the rest of the file as one cell: nothing to convert
            raise FileLevelError(f"record {idx:,} opens a quoted cell that is never closed (it runs to the end of "
                                 "the file)", "close the quote; a quote inside a quoted cell is written twice (\"\")",
                                 record=idx, kind="load")


def convert_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, openai: bool = False,
                 kto: bool = False, force: bool = False) -> ConvertResult:
    src, dst = Path(src), Path(dst)
    if src.is_dir():
        raise UserError("is a folder where a file is needed", where=str(src), fix="name one data file in it")
    if not src.is_file():
        raise missing(src, "file")
    if dst.suffix.lower() not in (".jsonl", ".json"):
        raise UserError("the output must be .jsonl or .json", where=str(dst), fix="name it something.jsonl")
    if dst.exists() and not force:
        raise UserError("already exists", where=str(dst), fix="pick another output name or pass --force")
    if dst.resolve() == src.resolve():
        raise UserError("the output is the input", where=str(dst), fix="write to a new file")
    is_csv = src.suffix.lower() == ".csv"
    if not (openai or kto or is_csv):
        raise UserError("nothing to convert", where=str(src),
                        fix="pass --openai-to-sharegpt and/or --kto-labels (CSV input is converted as is)")
    records = RecordReader(src) if not is_csv else _raw_csv(src)
    changed = {"openai_to_sharegpt": 0, "kto_labels": 0, "csv_rows": 0}
    as_array = dst.suffix.lower() == ".json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(dst)
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            if as_array:
                out.write("[\n")
            for idx, rec in records:
                if isinstance(rec, RecordParseError):
                    raise UserError(rec.message, where=f"{src}:record {idx}", fix=rec.fix, exit_code=1)
                if is_csv:
                    changed["csv_rows"] += 1
                if isinstance(rec, dict):
                    if openai:
                        rec, did = openai_to_sharegpt(rec, idx, str(src))
                        changed["openai_to_sharegpt"] += did
                    if kto:
                        rec, did = kto_labels(rec)
                        changed["kto_labels"] += did
                line = json.dumps(rec, ensure_ascii=False)
                out.write((",\n" if as_array and n else "") + line + ("" if as_array else "\n"))
                n += 1
            if as_array:
                out.write("\n]\n")
        os.replace(tmp, dst)
    except FileLevelError as exc:
        os.unlink(tmp)
        raise UserError(exc.message, where=str(src), fix=exc.fix, exit_code=1) from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return ConvertResult(dst, n, changed)
