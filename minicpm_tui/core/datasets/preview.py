"""Render records through LLaMA-Factory's template (in a subprocess) and show what is trained on."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from minicpm_tui.core.errors import UserError

MARK = "@@LFCHECK@@"


def preview_records(report, tokenizer: str | Path, template: str, n: int = 3, cutoff_len: int | None = None,
                    python: str | None = None, timeout: float = 600) -> list[dict[str, Any]]:
    """The first ``n`` valid records of ``report`` as LLaMA-Factory will tokenize them.

    Each item maps "sequence" (or "chosen"/"rejected" for DPO) to segments
    ``{"text", "trained", "tokens"}``; ``trained`` is False where the labels are masked.
    Needs ``validate_file(..., token_sample=...)`` or a report with ``token_sample``; otherwise the
    file is read again for its first valid records.
    """
    from minicpm_tui.core.datasets.register import dataset_info_entry
    from minicpm_tui.core.datasets.validate import validate_file
    from minicpm_tui.core.lfinfo import run_training_python, training_python
    from minicpm_tui.core.resources import resource_script
    from minicpm_tui.core.tinymodel import offline_env

    if not Path(tokenizer).exists():
        raise UserError(f"tokenizer path {tokenizer} does not exist", where="--tokenizer",
                        fix="pass a local model or tokenizer folder")
    records = _first_valid(report, n, validate_file)
    if not records:
        raise UserError("no usable record to preview", where=report.file, fix="fix the errors first")
    with tempfile.TemporaryDirectory(prefix="minicpm-preview-") as tmp:
        data = Path(tmp) / "preview.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        job = {"mode": "preview", "file": str(data), "tokenizer": str(tokenizer), "template": template,
               "stage": report.stage, "cutoff_len": cutoff_len,
               "entry": dataset_info_entry(report, file_name="preview.jsonl")}
        (Path(tmp) / "job.json").write_text(json.dumps(job), encoding="utf-8")
        proc = run_training_python(python or training_python(),
                                   [str(resource_script("lf_dataset_check.py")), str(Path(tmp) / "job.json")],
                                   capture_output=True, text=True, env=offline_env(), timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            result = json.loads(line[len(MARK):])
            if "records" in result:
                return result["records"]
            raise UserError(f"preview failed: {result.get('error')}", where="--template",
                            fix="check the template name (`minicpm-tui doctor` lists them) and the tokenizer")
    tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
    raise UserError(f"preview failed: {tail}", fix="run `minicpm-tui doctor`")


def _first_valid(report, n: int, validate_file) -> list[Any]:
    """The first ``n`` usable records (over a folder's files in their order: indices count across them)."""
    from minicpm_tui.core.datasets.reader import FileLevelError, RecordParseError, RecordReader
    from minicpm_tui.core.datasets.register import dataset_info_entry

    bad = set(report.invalid_indices)
    if report.invalid and not bad:
        # read as the report was: through its dataset_info.json entry when it had one
        through = {"entry": dataset_info_entry(report)} if report.shape is not None and report.shape.from_entry else {}
        bad = set(validate_file(report.file, stage=report.stage, keep_indices=True, **through).invalid_indices)
    out: list[Any] = []
    for path, first in report.data_files():
        try:
            for idx, rec in RecordReader(path):
                if first + idx in bad or isinstance(rec, RecordParseError):
                    continue
                out.append(rec)
                if len(out) >= n:
                    return out
        except FileLevelError:
            continue  # the rest of this file is unreadable (the report says so); try the next one
    return out


def render_plain(items: list[dict[str, Any]], color: bool = False) -> str:
    """Text for a terminal: trained parts as is (bold with color), masked parts in ⟦…⟧ (dim with color)."""
    out = []
    for i, item in enumerate(items):
        for part in ("sequence", "chosen", "rejected"):
            segs = item.get(part)
            if segs is None:
                continue
            head = f"--- record {i}" + ("" if part == "sequence" else f" ({part})")
            if "kto_tag" in item:
                head += f" (kto label {'desirable' if item['kto_tag'] else 'undesirable'})"
            out.append(head)
            text = []
            for s in segs:
                if color:
                    text.append(("\x1b[1m" if s["trained"] else "\x1b[2m") + s["text"] + "\x1b[0m")
                else:
                    text.append(s["text"] if s["trained"] else "⟦" + s["text"] + "⟧")
            out.append("".join(text))
    out.append("legend: " + ("bold = trained on, dim = masked (prompt)" if color
                             else "text in ⟦ ⟧ is masked (not trained on); the rest is trained on"))
    return "\n".join(out)
