"""Dataset statistics: turns and character lengths always; token lengths with a tokenizer.

Token lengths need the tokenizer (transformers), so they are computed in a subprocess
(``_resources/lf_dataset_check.py tokens``) over a sample of records spread across the file.
"""

from __future__ import annotations

import json
import random
import tempfile
from array import array
from pathlib import Path
from typing import Any

from minicpm_tui.core.errors import UserError

# The basis of a suggested cutoff_len measured without a tokenizer.
CHARS_BASIS = "estimate from characters"

PERCENTILES = (50, 90, 95, 99)


def percentiles(values: list[int] | array, qs: tuple[int, ...] = PERCENTILES) -> dict[str, int]:
    if not len(values):
        return {}
    ordered = sorted(values)
    n = len(ordered)
    out = {f"p{q}": int(ordered[min(n - 1, (q * n) // 100)]) for q in qs}
    out["max"] = int(ordered[-1])
    out["min"] = int(ordered[0])
    out["mean"] = round(sum(ordered) / n, 1)
    return out


class StatsCollector:
    """Collects per-valid-record lengths (compact arrays) and a reservoir sample of records."""

    def __init__(self, sample_size: int = 0, seed: int = 0):
        self.chars = array("q")
        self.turns = array("l")
        self.sample_size = sample_size
        self.sample: list[dict[str, Any]] = []
        self._seen = 0
        self._rng = random.Random(seed)

    def add(self, chars: int, turns: int) -> None:
        self.chars.append(chars)
        self.turns.append(turns)

    def keep(self, idx: int, rec: Any) -> None:
        if not self.sample_size:
            return
        self._seen += 1
        if len(self.sample) < self.sample_size:
            self.sample.append({"index": idx, "record": rec})
        else:
            j = self._rng.randrange(self._seen)
            if j < self.sample_size:
                self.sample[j] = {"index": idx, "record": rec}

    def result(self) -> dict[str, Any]:
        chars = percentiles(self.chars)
        est = {k: int(v / 2) for k, v in chars.items() if k != "mean"} if chars else {}
        out: dict[str, Any] = {
            "records_measured": len(self.chars),
            "turns": percentiles(self.turns),
            "chars": chars,
        }
        if est:
            # Rough: ~1 token per CJK character, ~4 per English word; /2 is the middle ground.
            out["suggested_cutoff_len"] = suggest_cutoff(est.get("p99", 0))
            # How to get token counts instead is each front end's to say (the CLI: --tokenizer).
            out["suggested_cutoff_len_basis"] = CHARS_BASIS
        return out


def suggest_cutoff(p99_tokens: int) -> int:
    """The next power of two at or above the 99th percentile, at least 256."""
    n = 256
    while n < p99_tokens:
        n *= 2
    return n


def token_stats(report, tokenizer: str | Path, cutoff_len: int | None = None, template: str | None = None,
                python: str | None = None, timeout: float = 600) -> dict[str, Any]:
    """Token-length percentiles over the report's sample, computed with the real tokenizer.

    With ``template`` the records are rendered through LLaMA-Factory's template (what training
    sees); without it the plain text of the turns is tokenized.
    """
    from minicpm_tui.core.datasets.register import dataset_info_entry
    from minicpm_tui.core.lfinfo import run_training_python, training_python
    from minicpm_tui.core.resources import resource_script
    from minicpm_tui.core.tinymodel import offline_env

    if not Path(tokenizer).exists():
        raise UserError(f"tokenizer path {tokenizer} does not exist", where="--tokenizer",
                        fix="pass a local model or tokenizer folder")
    if not report.token_sample:
        return {}
    with tempfile.TemporaryDirectory(prefix="minicpm-tok-") as tmp:
        data = Path(tmp) / "sample.jsonl"
        with open(data, "w", encoding="utf-8") as fh:
            for item in report.token_sample:
                fh.write(json.dumps(item["record"], ensure_ascii=False) + "\n")
        job = {"mode": "tokens", "file": str(data), "tokenizer": str(tokenizer), "template": template,
               "stage": report.stage, "entry": dataset_info_entry(report, file_name="sample.jsonl")}
        (Path(tmp) / "job.json").write_text(json.dumps(job), encoding="utf-8")
        proc = run_training_python(python or training_python(),
                                   [str(resource_script("lf_dataset_check.py")), str(Path(tmp) / "job.json")],
                                   capture_output=True, text=True, env=offline_env(), timeout=timeout)
        result = _last_json(proc.stdout)
        if proc.returncode != 0 or result is None:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
            raise UserError(f"counting tokens failed: {tail}", where="--tokenizer",
                            fix="check that the path holds a tokenizer (tokenizer.json / tokenizer_config.json)")
    lengths = result["lengths"]
    out: dict[str, Any] = {"sampled": len(lengths), "tokens": percentiles(lengths),
                           "rendered_with": template or "plain text (no chat template)"}
    if cutoff_len:
        over = sum(1 for n in lengths if n > cutoff_len)
        out["cutoff_len"] = cutoff_len
        out["over_cutoff_share"] = round(over / len(lengths), 4) if lengths else 0.0
    p99 = out["tokens"].get("p99", 0)
    out["suggested_cutoff_len"] = suggest_cutoff(p99)
    return out


MARK = "@@LFCHECK@@"


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return None
