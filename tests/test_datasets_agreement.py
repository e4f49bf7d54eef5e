"""Our per-record verdicts agree with LLaMA-Factory's own loading, for every corpus file and stage.

One subprocess runs LLaMA-Factory (load + align via ``_get_merged_dataset``, then the stage's
processor per record) over every (file, stage) pair. Agreement means:
- LLaMA-Factory keeps record i  <=>  we call record i valid;
- a record LLaMA-Factory raises on (which would kill a real run) is one we call invalid;
- a file whose load fails in LLaMA-Factory is one we report as not ok;
- a file we reject as a whole is one LLaMA-Factory fails on or keeps nothing of, or one whose load we
  fail at a record that LLaMA-Factory's processor raises on (inside ``dataset.map`` that stops the run).
Each corpus file is also validated through the dataset_info.json entry LLaMA-Factory reads it with
(``validate_file(entry=...)``), and so are files with hand-written entries that map their own column and
tag names (``datasets_corpus/custom_entries.py``): both must agree the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from minicpm_tui.core.datasets import dataset_info_entry, validate_file
from minicpm_tui.core.lfinfo import training_python
from minicpm_tui.core.resources import resource_script
from minicpm_tui.core.tinymodel import offline_env

CORPUS = Path(__file__).parent / "datasets_corpus"
STAGES = ("sft", "dpo", "kto")
MARK = "@@LFCHECK@@"


def corpus_files(tmp: Path) -> list[Path]:
    from datasets_corpus.generated import write_generated

    files = sorted(p for p in CORPUS.iterdir() if p.suffix in (".json", ".jsonl", ".csv"))
    return files + write_generated(tmp / "generated")


def run_lf(jobs: list[dict], tokenizer: Path, work: Path, *, python: str | None = None,
           template: str = "cpm4") -> list[dict]:
    job_file = work / "agree_job.json"
    job_file.write_text(json.dumps({"mode": "agree", "jobs": jobs, "tokenizer": str(tokenizer),
                                    "template": template, "cutoff_len": 128}), encoding="utf-8")
    proc = subprocess.run([python or training_python(), str(resource_script("lf_dataset_check.py")), str(job_file)],
                          capture_output=True, text=True, env=offline_env(), timeout=900)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            data = json.loads(line[len(MARK):])
            assert "results" in data, data
            return data["results"]
    raise AssertionError(f"lf_dataset_check failed: {proc.stderr[-3000:]}")


def compare(ours, lf: dict) -> str | None:
    """None when they agree, else what differs."""
    if ours.shape is None or ours.file_error is not None:
        if lf["status"] == "crash":
            return None
        err = ours.file_error
        if err is not None and err.kind == "load" and err.record is not None and err.record < len(lf["kept"]) \
                and isinstance(lf["kept"][err.record], str):
            return None  # the record we name raises in LF's preprocessing, which stops the real run as a whole
        kept = [k for k in lf["kept"] if k is True]
        return None if not kept else f"we reject the file ({ours.file_error.message}) but LF keeps {len(kept)}"
    if lf["status"] == "crash":
        return None if not ours.ok else f"LF fails on the file ({lf['error']}) but we call it ok"
    kept = lf["kept"]
    if len(kept) != ours.records:
        return f"LF sees {len(kept)} records, we see {ours.records}"
    if lf.get("batch", "ok") != "ok" and ours.ok:  # KTO: a KL pair across records stops the preprocessing
        return f"LF's KTO preprocessing of the whole file fails ({lf['batch']}) but we call it ok"
    bad = set(ours.invalid_indices)
    diffs = []
    for i, k in enumerate(kept):
        if (k is True) != (i not in bad):
            diffs.append(f"record {i}: LF {'keeps' if k is True else k or 'drops'}, we say "
                         f"{'invalid' if i in bad else 'valid'}")
    return "; ".join(diffs) or None


def _job(tmp_path: Path, key: str, entry: dict, stage: str) -> dict:
    ddir = tmp_path / f"d-{key.replace(':', '-')}"
    ddir.mkdir()
    (ddir / "dataset_info.json").write_text(json.dumps({"x": entry}), encoding="utf-8")
    return {"dir": str(ddir), "name": "x", "stage": stage, "id": key}


def corpus_disagreements(tmp_path: Path, tokenizer: Path, *, python: str | None = None,
                         template: str = "cpm4", lf_version: str | None = None,
                         only: str | None = None) -> tuple[list[str], list[dict]]:
    """Every corpus file x stage, and every custom-mapped entry, through our validator and through
    LLaMA-Factory (``python``'s release, ``lf_version``): (what differs, LLaMA-Factory's results).
    ``only``: just the custom entries whose name starts with it."""
    from datasets_corpus.custom_entries import write_custom

    jobs, reports = [], {}
    for f in [] if only else corpus_files(tmp_path):
        for stage in STAGES:
            rep = validate_file(f, stage=stage, keep_indices=True)
            entry = dataset_info_entry(rep, file_name=str(f)) if rep.shape else {"file_name": str(f)}
            key = f"{f.name}:{stage}"
            # the same file read through the entry LLaMA-Factory gets: the same verdicts
            reports[key] = [rep, validate_file(f, stage=stage, entry=entry, keep_indices=True)]
            jobs.append(_job(tmp_path, key, entry, stage))
    for name, f, entry, stage in write_custom(tmp_path / "custom"):
        if only and not name.startswith(only):
            continue
        key = f"custom:{name}"
        reports[key] = [validate_file(f, stage=stage, entry=entry, keep_indices=True, lf_version=lf_version)]
        jobs.append(_job(tmp_path, key, entry, stage))
    results = run_lf(jobs, tokenizer, tmp_path, python=python, template=template)
    problems = []
    for res in results:
        res["ours"] = reports[res["id"]]  # our reports of it: the file alone, then through its entry
        for how, rep in zip(("", " (through its entry)"), reports[res["id"]], strict=False):
            diff = compare(rep, res)
            if diff:
                problems.append(f"{res['id']}{how}: {diff}")
    return problems, results


@pytest.mark.integration
def test_agreement_with_llamafactory(tmp_path, tiny_model_cpm3):
    problems, results = corpus_disagreements(tmp_path, tiny_model_cpm3)
    assert not problems, "\n".join(problems)
    # The corpus must exercise both sides: files LF keeps whole and records it drops.
    assert any(r["status"] == "ok" and all(k is True for k in r["kept"]) for r in results)
    assert any(r["status"] == "ok" and any(k is not True for k in r["kept"]) for r in results)
    assert any(r["status"] == "crash" for r in results)
    # ... and so must the custom-mapped entries: records kept, dropped and raising, and whole-load failures
    custom = {r["id"]: r for r in results if r["id"].startswith("custom:")}
    kept = [k for r in custom.values() if r["status"] == "ok" for k in r["kept"]]
    assert True in kept and False in kept and any(isinstance(k, str) for k in kept)
    assert custom["custom:entry_column_in_no_record"]["status"] == "crash"
    assert custom["custom:sharegpt_renamed_tags"]["kept"][:3] == [True, True, False]  # no system_tag: dropped
    assert custom["custom:kto_entry_for_sft"]["kept"] == [False, True, False]
    # KTO pairs each prompt with the previous record's answer: a record its converter skips (turns out of order,
    # an odd count) leaves an empty answer there, and the next record stops LF's preprocessing of the batch.
    # We call each such record unusable, and say it is not skipped in KTO.
    crashed = [r for r in results if r["status"] == "ok" and r.get("batch", "ok").startswith("raise IndexError")]
    assert crashed, [r.get("batch") for r in results if r["stage"] == "kto"]
    for res in crashed:
        for rep in res["ours"]:
            broken = [e for e in rep.errors if e.kind in ("role_order", "turn_count")]
            assert broken and all("in KTO LLaMA-Factory cannot skip it" in e.fix for e in broken), res["id"]


@pytest.mark.integration
def test_openai_entries_agree_with_llamafactory(tmp_path, tiny_model_cpm3):
    """``"formatting": "openai"`` entries (custom_entries._openai_cases) through LLaMA-Factory's OpenAI converter."""
    problems, results = corpus_disagreements(tmp_path, tiny_model_cpm3, only="openai")
    assert not problems, "\n".join(problems)
    by_id = {r["id"]: r for r in results}
    kept = by_id["custom:openai_sft"]["kept"]
    assert kept[:5] == [True, True, False, True, True] and kept[7] is False  # a tool turn without a call: dropped
    for name in ("unknown_role", "tool_content_null", "readme_tags_tool_turn", "bad_tool_calls",
                 "arguments_mixed_types", "default_columns"):
        assert by_id[f"custom:openai_{name}"]["status"] == "crash", name
    # Arrow's one schema per file: a call key no call has raises in the template, one some call has is null;
    # JSON tool lists get each other's parameter names (and "required") as null, which the tool formatter raises on
    assert _kept(by_id, "args_in_no_call")[1].startswith("raise KeyError: 'arguments'")
    assert _kept(by_id, "name_in_no_call")[0].startswith("raise KeyError: 'name'")
    assert _kept(by_id, "args_in_some_calls") == _kept(by_id, "name_in_some_calls") == [True, True]
    assert "AttributeError" in _kept(by_id, "tools_params_differ")[0] and _kept(by_id, "tools_params_differ")[2]
    assert "TypeError" in _kept(by_id, "tools_required_differs")[0]
    assert _kept(by_id, "tools_params_differ_as_text") == [True, True]


def _kept(by_id: dict, name: str) -> list:
    return by_id[f"custom:openai_{name}"]["kept"]


@pytest.mark.integration
def test_media_entries_agree_with_llamafactory(tmp_path, tiny_model_cpm3):
    """Media columns read by a text template (custom_entries._media_cases): LLaMA-Factory's preprocessing
    raises "This model does not support image input" on the first kept record with media, and we fail the
    whole load there, naming that record and the user's field."""
    problems, results = corpus_disagreements(tmp_path, tiny_model_cpm3, only="media")
    assert not problems, "\n".join(problems)
    by_id = {r["id"]: r for r in results}
    assert by_id["custom:media_none"]["kept"] == [True, True, True]  # [], null and no field: no media
    assert by_id["custom:media_empty_lists"]["kept"] == [True, True]
    kept = by_id["custom:media_image_for_text_template"]["kept"]
    assert kept[0] is True and kept[2] is True and "This model does not support image input" in kept[1]
    assert by_id["custom:media_image_in_dropped_record"]["kept"] == [True, False]
    assert all("does not support video input" in k for k in by_id["custom:media_video_string"]["kept"])
    assert "does not support audio input" in by_id["custom:media_audio_kto"]["kept"][1]
    assert "does not support image input" in by_id["custom:media_image_dpo"]["kept"][0]


def _jsonl(path: Path, records: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _alpaca(n: int, start: int = 0, **extra) -> list[dict]:
    return [{"instruction": f"q{start + i}", "input": "", "output": f"a{start + i}", **extra} for i in range(n)]


def _conv(**extra) -> list[dict]:
    return [{"from": "human", "value": "q", **extra}, {"from": "gpt", "value": "a", **extra}]


def folder_corpus(root: Path) -> dict[str, bool]:
    """Dataset folders -> whether LLaMA-Factory loads them (in every os.listdir order)."""
    cases = {}
    good = root / "good"  # a record LLaMA-Factory drops in the middle shard: verdicts per record must match
    _jsonl(good / "train-00001.jsonl", _alpaca(3))
    _jsonl(good / "train-00002.jsonl", [*_alpaca(2, 3), {"instruction": "q", "input": "", "output": None}])
    _jsonl(good / "train-00003.jsonl", _alpaca(4, 6))
    cases["good"] = True
    mix = root / "json_and_jsonl"  # one loader type (json) for both extensions
    _jsonl(mix / "a.jsonl", _alpaca(2))
    (mix / "b.json").write_text(json.dumps(_alpaca(3, 2)), encoding="utf-8")
    cases["json_and_jsonl"] = True
    hidden = root / "hidden"
    _jsonl(hidden / "a.jsonl", _alpaca(2))
    _jsonl(hidden / "b.jsonl", _alpaca(2, 2))
    (hidden / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    cases["hidden"] = False
    mixed = root / "mixed_types"
    _jsonl(mixed / "a.jsonl", _alpaca(2))
    (mixed / "b.csv").write_text("instruction,input,output\nq,,a\n", encoding="utf-8")
    cases["mixed_types"] = False
    sub = root / "sub_folder"
    _jsonl(sub / "a.jsonl", _alpaca(2))
    _jsonl(sub / "old" / "b.jsonl", _alpaca(2))
    cases["sub_folder"] = False
    (root / "empty").mkdir()
    cases["empty"] = False
    cols = root / "other_columns"  # each file has a column the other lacks: fails whichever comes first
    _jsonl(cols / "a.jsonl", _alpaca(2, system="s"))
    _jsonl(cols / "b.jsonl", _alpaca(2, history=[["q", "a"]]))
    cases["other_columns"] = False
    structs = root / "other_message_fields"  # the same, one level down (in the messages' structs)
    _jsonl(structs / "a.jsonl", [{"conversations": _conv(name="x")}])
    _jsonl(structs / "b.jsonl", [{"conversations": _conv(weight=1.0)}])
    cases["other_message_fields"] = False
    # read through a hand-written entry with its own field names (FOLDER_ENTRIES)
    qa = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    _jsonl(root / "renamed" / "part-1.jsonl", qa[:2])
    _jsonl(root / "renamed" / "part-2.jsonl", [*qa[2:4], {"question": "q", "answer": None}])
    cases["renamed"] = True
    _jsonl(root / "renamed_one_lacks" / "part-1.jsonl", qa[:2])  # the other shard has no `answer` at all
    _jsonl(root / "renamed_one_lacks" / "part-2.jsonl", [{"question": "q", "reply": "a"}])
    cases["renamed_one_lacks"] = False
    return cases


FOLDER_ENTRIES = {name: {"columns": {"prompt": "question", "response": "answer"}}
                  for name in ("renamed", "renamed_one_lacks")}


@pytest.mark.integration
def test_folder_agreement_with_llamafactory(tmp_path, tiny_model_cpm3):
    """LLaMA-Factory's own loader over dataset folders (a file_name that is a folder) agrees with ours."""
    root = tmp_path / "folders"
    cases = folder_corpus(root)
    jobs, reports = [], {}
    for name in cases:
        folder = root / name
        entry = {"file_name": str(folder), **FOLDER_ENTRIES[name]} if name in FOLDER_ENTRIES else None
        rep = validate_file(folder, stage="sft", keep_indices=True, entry=entry)
        ddir = tmp_path / f"d-{name}"
        ddir.mkdir()
        if entry is None:
            entry = dataset_info_entry(rep, file_name=str(folder)) if rep.shape else {"file_name": str(folder)}
        (ddir / "dataset_info.json").write_text(json.dumps({"x": entry}), encoding="utf-8")
        reports[name] = rep
        jobs.append({"dir": str(ddir), "name": "x", "stage": "sft", "id": name})
    results = {r["id"]: r for r in run_lf(jobs, tiny_model_cpm3, tmp_path)}
    problems = []
    for name, loads in cases.items():
        ours, lf = reports[name], results[name]
        if (lf["status"] == "ok") != loads:
            problems.append(f"{name}: LF {'loads' if lf['status'] == 'ok' else 'fails: ' + lf.get('error', '')}, "
                            f"expected {'a load' if loads else 'a failure'}")
        if lf["status"] == "ok":
            # LF numbers the records in os.listdir order; ours go file by file in name order.
            counts = {f["file"]: f["records"] for f in ours.files}
            per_file, pos = {}, 0
            for entry in os.listdir(root / name):
                per_file[entry] = lf["kept"][pos:pos + counts.get(entry, 0)]
                pos += counts.get(entry, 0)
            if pos != len(lf["kept"]):
                problems.append(f"{name}: LF sees {len(lf['kept'])} records, we see {ours.records}")
                continue
            lf = dict(lf, kept=[k for f in ours.files for k in per_file[f["file"]]])
        diff = compare(ours, lf)
        if diff:
            problems.append(f"{name}: {diff}")
    assert not problems, "\n".join(problems)
    assert reports["good"].ok is False and reports["good"].invalid_indices == [5]  # LF drops it too (above)
    assert reports["json_and_jsonl"].ok and reports["json_and_jsonl"].records == 5
    assert reports["renamed"].invalid_indices == [4] and reports["renamed"].errors[0].field == "answer"


@pytest.mark.integration
def test_pyarrow_pieces_agree_with_llamafactory(tmp_path, tiny_model_cpm3):
    """pyarrow types each 320 KB piece of a JSON Lines block alone (blocks.piece_starts): a column with numbers in
    one piece and number-like text in another loads (we used to call it mixed_types), in one piece it fails;
    other pairs apart fail or load by pyarrow's thread timing (or crash it), so none is here. Per record:
    LLaMA-Factory keeps what we call valid."""
    from test_datasets_types import write_pieces

    cases = {"numbers_and_numeric_text_apart": (1, "5", True, None),
             "numeric_text_then_fraction": ("2", 1.5, True, "7"),
             "numbers_and_numeric_text_in_one_piece": (1, "5", False, None)}
    jobs, reports = [], {}
    for name, (a, b, far, then) in cases.items():
        f = tmp_path / f"{name}.jsonl"
        write_pieces(f, a, b, far=far, then=then)
        rep = validate_file(f, stage="sft", keep_indices=True)
        reports[name] = rep
        jobs.append(_job(tmp_path, name, dataset_info_entry(rep, file_name=str(f)), "sft"))
    results = {r["id"]: r for r in run_lf(jobs, tiny_model_cpm3, tmp_path)}
    problems = [f"{name}: {d}" for name, rep in reports.items() if (d := compare(rep, results[name]))]
    assert not problems, "\n".join(problems)
    assert reports["numbers_and_numeric_text_apart"].ok and reports["numeric_text_then_fraction"].ok
    assert results["numbers_and_numeric_text_apart"]["status"] == "ok"
    assert results["numbers_and_numeric_text_in_one_piece"]["status"] == "crash"
