"""Corpus files that are not committed: big strings, broken bytes, a truncated file."""

from __future__ import annotations

import json
from pathlib import Path

BIG = 10 * 1024 * 1024  # 10 MB single strings


def write_generated(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    big = folder / "good_big_strings.json"
    with open(big, "w", encoding="utf-8") as fh:
        json.dump([{"instruction": "summarise", "input": "x" * BIG, "output": "short"},
                   {"instruction": "echo", "input": "", "output": "中" * (BIG // 3)},
                   {"instruction": "ok", "input": "", "output": "fine"}], fh, ensure_ascii=False)
    out.append(big)
    big_lines = folder / "good_big_strings.jsonl"
    with open(big_lines, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"conversations": [{"from": "human", "value": "y" * BIG},
                                               {"from": "gpt", "value": "ok"}]}) + "\n")
    out.append(big_lines)
    utf = folder / "bad_invalid_utf8.jsonl"
    utf.write_bytes(b'{"instruction": "a", "output": "b"}\n{"instruction": "\xff\xfe", "output": "c"}\n')
    out.append(utf)
    utf_arr = folder / "bad_invalid_utf8.json"
    utf_arr.write_bytes(b'[{"instruction": "a", "output": "b"}, {"instruction": "\xc3\x28", "output": "c"}]')
    out.append(utf_arr)
    trunc = folder / "bad_truncated.json"
    full = json.dumps([{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(50)])
    trunc.write_text(full[: len(full) // 2], encoding="utf-8")
    out.append(trunc)
    trunc_lines = folder / "bad_truncated.jsonl"
    lines = "".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(5))
    trunc_lines.write_text(lines[:-12], encoding="utf-8")
    out.append(trunc_lines)
    return out
