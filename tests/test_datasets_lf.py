"""Token statistics and preview through LLaMA-Factory's template, in the training Python (real, slow-ish)."""

from __future__ import annotations

import json

import pytest

from minicpm_tui.assets import asset_path
from minicpm_tui.cli import main


@pytest.mark.integration
def test_tokens_and_preview_with_template(tiny_model_cpm3, capsys):
    rc = main(["validate", str(asset_path("data", "demo_sft.json")), "--tokenizer", str(tiny_model_cpm3),
               "--template", "cpm4", "--cutoff-len", "1024", "--preview", "2", "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    tok = data["stats"]["tokens"]
    assert tok["sampled"] == 12 and tok["rendered_with"] == "cpm4"
    assert tok["over_cutoff_share"] == 0 and tok["cutoff_len"] == 1024 and tok["tokens"]["max"] > 64
    assert data["stats"]["suggested_cutoff_len"] >= tok["tokens"]["p99"]
    first = data["preview"][0]["sequence"]
    masked = "".join(s["text"] for s in first if not s["trained"])
    trained = "".join(s["text"] for s in first if s["trained"])
    assert "Introduce MiniCPM" in masked and "<|im_start|>user" in masked  # the prompt is masked
    assert trained.startswith("MiniCPM is a family") and trained.endswith("<|im_end|>\n")  # the answer


@pytest.mark.integration
def test_plain_token_counts_without_template(tiny_model_cpm3, capsys):
    rc = main(["validate", str(asset_path("data", "demo_kto.jsonl")), "--tokenizer", str(tiny_model_cpm3),
               "--cutoff-len", "100000"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "tokens (8 sampled, plain text" in out and "0.0% longer than cutoff_len 100000" in out


@pytest.mark.integration
def test_tokens_and_preview_of_a_folder(tiny_model_cpm3, tmp_path, capsys):
    """A folder's token sample spans its files; the preview takes the first usable records across them."""
    folder = tmp_path / "shards"
    folder.mkdir()
    recs = [{"instruction": f"question {i}", "input": "", "output": f"answer {i}"} for i in range(5)]
    (folder / "part-1.jsonl").write_text(json.dumps({**recs[0], "output": None}) + "\n", encoding="utf-8")
    (folder / "part-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[1:]), encoding="utf-8")
    rc = main(["validate", str(folder), "--tokenizer", str(tiny_model_cpm3), "--template", "cpm4", "--preview", "1",
               "--json"])
    assert rc == 1  # part-1's record has no answer
    data = json.loads(capsys.readouterr().out)
    assert data["errors"][0]["file"] == "part-1.jsonl" and data["stats"]["tokens"]["sampled"] == 4
    trained = "".join(s["text"] for s in data["preview"][0]["sequence"] if s["trained"])
    assert trained.startswith("answer 1")  # part-1's only record is not usable: the preview skips it
