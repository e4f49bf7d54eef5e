"""Media placeholders: a template whose plugin takes media (MiniCPM-V's minicpm_v, minicpm_o) stops LLaMA-Factory's
preprocessing at a kept record whose <image> / <video> / <audio> count differs from its media (mm_plugin.py,
``_validate_messages``); we name each such record (``core/datasets/media.py``, ``count_problem``).

The last test runs LLaMA-Factory's own converter, processors and plugin checks (``lf_mm_counts.py``, in the
training Python) on the same files and compares the verdicts record by record.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from minicpm_tui.cli import main
from minicpm_tui.core.datasets.entry import validate_entry
from minicpm_tui.core.datasets.media import media_reading
from minicpm_tui.core.lftarget import load_release

MEDIA = load_release("0.9.5").template_media  # what lf_introspect reads from 0.9.5
SHAREGPT = {"formatting": "sharegpt", "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                               "assistant_tag": "assistant", "system_tag": "system"}}


def _turns(q: str, a: str = "ok", system: str | None = None) -> list[dict]:
    return [*([{"role": "system", "content": system}] if system is not None else []),
            {"role": "user", "content": q}, {"role": "assistant", "content": a}]


def _write(folder: Path, name: str, records: list, entry: dict) -> dict:
    """A JSON Lines file with its dataset_info.json entry (added to the folder's), and a.png / b.mp4 / c.wav."""
    folder.mkdir(parents=True, exist_ok=True)
    for media in ("a.png", "b.mp4", "c.wav"):
        (folder / media).write_bytes(b"x")
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info[name] = {"file_name": f"{name}.jsonl", **entry}
    info_path.write_text(json.dumps(info), encoding="utf-8")
    return info[name]


def _check(folder: Path, name: str, entry: dict, template: str = "minicpm_v", stage: str = "sft", **kw):
    return validate_entry(name, entry, folder, stage=stage, media=media_reading(template, template_media=MEDIA),
                          keep_indices=True, **kw)


# Each case: (name, stage, template, entry, records). Shared by the unit tests and the agreement test.
IMG = {"messages": "messages", "images": "images"}
CASES = [
    ("sg", "sft", "minicpm_v", {**SHAREGPT, "columns": {**IMG, "videos": "videos"}}, [
        {"messages": _turns("<image>what is it?"), "images": ["a.png"]},              # 0 matches
        {"messages": _turns("what is it?"), "images": ["a.png"]},                     # 1 no placeholder
        {"messages": _turns("<image><image>compare"), "images": ["a.png"]},           # 2 one too many
        {"messages": _turns("<image>", "see <image>"), "images": ["a.png"]},          # 3 the answer counts too
        {"messages": [*_turns("<image>a"), *_turns("<image>b")], "images": ["a.png", "a.png"]},  # 4 all turns
        {"messages": _turns("hi", system="<image>"), "images": []},                   # 5 the system is not counted
        {"messages": _turns("<audio>hi"), "images": []},                              # 6 a kind it has no column for
        {"messages": _turns("<video>hi"), "videos": ["b.mp4"]},                       # 7 videos
        {"messages": _turns("<image><video>"), "images": ["a.png"], "videos": ["b.mp4"]},  # 8 both: MiniCPM-V refuses
        {"messages": [{"role": "user", "content": "<image>"}], "images": []},         # 9 dropped first (one turn)
        {"messages": _turns("plain")},                                                # 10 no media, no placeholder
    ]),
    ("al", "sft", "minicpm_o", {"columns": {"prompt": "instruction", "query": "input", "response": "output",
                                           "history": "history", "images": "images", "audios": "audios"}}, [
        {"instruction": "<image>", "input": "<audio>", "output": "o", "images": ["a.png"], "audios": ["c.wav"]},
        {"instruction": "q", "input": "", "output": "o", "history": [["<image>", "a"]], "images": ["a.png"]},
        {"instruction": "q", "input": "<image>", "output": "o", "history": [["<image>", "a"]], "images": ["a.png"]},
        {"instruction": "q", "input": "", "output": "o", "audios": ["c.wav"]},
    ]),
    ("dpo", "dpo", "minicpm_v", {**SHAREGPT, "ranking": True,
                                 "columns": {**IMG, "chosen": "chosen", "rejected": "rejected"}}, [
        {"messages": [{"role": "user", "content": "<image>"}], "images": ["a.png"],
         "chosen": {"role": "assistant", "content": "y"}, "rejected": {"role": "assistant", "content": "n"}},
        {"messages": [{"role": "user", "content": "q"}], "images": ["a.png"],
         "chosen": {"role": "assistant", "content": "<image>"}, "rejected": {"role": "assistant", "content": "n"}},
    ]),
    ("oa", "sft", "minicpm_v", {"formatting": "openai", "columns": IMG, "tags": {
        **SHAREGPT["tags"], "observation_tag": "tool", "function_tag": "function_call"}}, [
        {"messages": _turns("<image>q", system="<image>"), "images": ["a.png"]},
        {"messages": [{"role": "user", "content": "q"},  # a tool call's arguments are text the plugin counts
                      {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                          "name": "f", "arguments": "{\"x\": \"<image>\"}"}}]},
                      {"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}],
         "images": ["a.png"]},
        {"messages": _turns("q"), "images": ["a.png"]},
    ]),
    ("kto", "kto", "minicpm_v", {**SHAREGPT, "columns": {**IMG, "kto_tag": "label"}}, [
        {"messages": _turns("<image>"), "images": ["a.png"], "label": True},
        {"messages": _turns("q"), "images": ["a.png"], "label": False},
    ]),
]
# record -> True (usable), or the error kind we report
EXPECTED = {
    "sg": {0: True, 1: "media_count", 2: "media_count", 3: "media_count", 4: True, 5: True, 6: "media_count",
           7: True, 8: "media_count", 9: "turn_count", 10: True},
    "al": {0: True, 1: True, 2: "media_count", 3: "media_count"},
    "dpo": {0: True, 1: "media_count"},
    "kto": {0: True, 1: "media_count"},
    "oa": {0: True, 1: True, 2: "media_count"},
}


def _verdicts(rep) -> dict[int, object]:
    kinds = {e.record: e.kind for e in rep.errors}
    return {i: kinds.get(i, "?") if i in rep.invalid_indices else True for i in range(rep.records)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_record_whose_placeholders_differ_from_its_media_is_named(tmp_path, case):
    name, stage, template, entry, records = case
    rep = _check(tmp_path, name, _write(tmp_path, name, records, entry), template, stage)
    assert rep.file_error is None
    expected = EXPECTED[name]
    if name == "sg":  # the turn-count error is another checker's; only its kind matters here
        expected = {**expected, 9: _verdicts(rep)[9]}
        assert _verdicts(rep)[9] not in (True, "media_count")
    assert _verdicts(rep) == expected


def test_the_message_names_the_field_both_counts_and_the_fix(tmp_path):
    name, stage, template, entry, records = CASES[0]
    rep = _check(tmp_path, name, _write(tmp_path, name, records, entry))
    lines = rep.lines()
    f = tmp_path / "sg.jsonl"
    assert (f"{f}:record 1: images: holds 1 image, but the text (messages) has 0 <image> placeholders; template "
            "minicpm_v's plugin counts them and LLaMA-Factory stops preprocessing (\"The number of images does not "
            "match the number of <image> tokens\"); write one <image> in the prompt where each image goes, as many "
            "as the images listed (or drop the extra images)") in lines
    assert any(line.startswith(f"{f}:record 2: images: holds 1 image, but the text (messages) has 2 <image> "
                               "placeholders;") for line in lines)
    # a kind the entry maps no column for: the turn holding the placeholder is named
    assert any(line.startswith(f"{f}:record 6: messages[0].content: holds 1 <audio> placeholder, but the entry "
                               "maps no audios column, so the record has none;") for line in lines)
    assert any(line.startswith(f"{f}:record 8: videos: holds 1 video while images holds 1 image;") for line in lines)
    # the DPO pair: the rejected list lacks the chosen answer's placeholder
    d_entry = CASES[2][3]
    rep = _check(tmp_path, "dpo", _write(tmp_path, "dpo", CASES[2][4], d_entry), stage="dpo")
    (err,) = [e for e in rep.errors if e.kind == "media_count"]
    assert err.message.startswith("holds 1 image, but the text (messages, rejected) has 0 <image> placeholders")


def test_many_records_give_a_few_lines_and_a_count(tmp_path, monkeypatch):
    records = [{"messages": _turns("no placeholder"), "images": ["a.png"]} for _ in range(500)]
    rep = _check(tmp_path, "many", _write(tmp_path, "many", records, {**SHAREGPT, "columns": IMG}))
    lines = rep.lines()
    assert rep.invalid == 500 and rep.error_counts["media_count"] == 500
    assert sum("holds 1 image, but" in line for line in lines) == 20
    assert "  ... and 480 more like this (media_count)" in lines
    # LLaMA-Factory's placeholder is its environment variable when set (extras/constants.py)
    monkeypatch.setenv("IMAGE_PLACEHOLDER", "no placeholder")
    assert _check(tmp_path, "many", {"file_name": "many.jsonl", **SHAREGPT, "columns": IMG}).ok


def test_templates_that_count_nothing(tmp_path):
    records = [{"messages": _turns("<image><image>"), "images": []}]
    entry = _write(tmp_path, "t", records, {**SHAREGPT, "columns": IMG})
    assert _check(tmp_path, "t", entry, "cpm4").ok  # the base plugin: plain text
    assert validate_entry("t", entry, tmp_path, media=media_reading("llava")).ok  # not known here: not counted
    # 0.9.2: a plugin other than MiniCPM-V's counts only its own kinds (llava: images)
    old = {"llava": ["images"], "minicpm_v": ["images", "videos"]}
    audio = _write(tmp_path, "au", [{"messages": _turns("<audio>"), "images": []}], {**SHAREGPT, "columns": IMG})
    kw = {"lf_version": "0.9.2"}
    assert validate_entry("au", audio, tmp_path, media=media_reading("llava", template_media=old), **kw).ok
    assert not validate_entry("au", audio, tmp_path, media=media_reading("minicpm_v", template_media=old), **kw).ok
    assert not validate_entry("au", audio, tmp_path, media=media_reading("llava", template_media=old)).ok


def test_cli_names_the_records(tmp_path, capsys, monkeypatch):
    import minicpm_tui.core.lfinfo as lfinfo

    _write(tmp_path, "sg", CASES[0][4], CASES[0][3])
    monkeypatch.setattr(lfinfo, "installed_lf_version", lambda python=None: "0.9.5")
    monkeypatch.setattr(lfinfo, "lf_info", lambda python=None: lfinfo.LFInfo(
        {"llamafactory": {"importable": True, "template_media": MEDIA}}))
    assert main(["validate", "--dataset-info", str(tmp_path), "sg", "--template", "minicpm_v"]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'sg.jsonl'}:record 1: images: holds 1 image, but the text (messages) has 0" in out
    assert "errors by kind: media_count 5, turn_count 1" in out


def test_verdicts_agree_with_llamafactory(tmp_path):
    """LLaMA-Factory's converter, processors and its plugin's own checks (``_validate_input``,
    ``_validate_messages``) on each record alone: an error there is our media_count, a dropped record one we
    find unusable for another reason, a kept one usable."""
    from minicpm_tui.core.lfinfo import training_python
    from minicpm_tui.core.tinymodel import offline_env

    jobs, ours = [], {}
    for name, stage, template, entry, records in CASES:
        rep = _check(tmp_path, name, _write(tmp_path, name, records, entry), template, stage)
        ours[name] = _verdicts(rep)
        jobs.append({"dataset_dir": str(tmp_path), "name": name, "stage": stage, "template": template})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    proc = subprocess.run([training_python(), str(Path(__file__).with_name("lf_mm_counts.py")),
                           str(tmp_path / "jobs.json")], capture_output=True, text=True, env=offline_env(),
                          timeout=600)
    if "No module named 'llamafactory'" in proc.stderr:
        pytest.skip("no LLaMA-Factory in the training Python")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for job, lf in zip(jobs, results, strict=True):
        assert lf["validates"]  # the template's plugin calls _validate_messages
        for i, verdict in enumerate(lf["records"]):
            mine = ours[job["name"]][i]
            if verdict == "ok":
                assert mine is True, (job["name"], i, mine)
            elif verdict == "dropped":
                assert mine not in (True, "media_count"), (job["name"], i, mine)
            else:
                assert "does not match" in verdict or "at the same time" in verdict, verdict
                assert mine == "media_count", (job["name"], i, verdict)


KTO_KL = [  # KTO: the KL term pairs each prompt with another record's answer (the previous one, from 0.9.3 on)
    {"messages": _turns("<image> q0", "a0"), "images": ["a.png"], "label": True},
    {"messages": _turns("q1", "<image> a1"), "images": ["a.png"], "label": False},  # counts right on its own
    {"messages": _turns("<image> q2", "a2"), "images": ["a.png"], "label": True},
]


def test_a_kto_answer_with_a_placeholder_breaks_another_records_kl_pair(tmp_path):
    """Each record's own count matches, but record 1's answer holds the <image>. From 0.9.3 on, record 1's KL term
    takes record 0's answer (none) and record 2's takes record 1's (one too many): LLaMA-Factory's preprocessing
    stops at record 1, so the file fails as a whole. 0.9.2 pairs mirrored in the batch: 1 with itself, fine with
    three records, and 1 with 2 with four. LLaMA-Factory's own processor over the whole file agrees."""
    from minicpm_tui.core.datasets.media import kl_partner
    from minicpm_tui.core.lfinfo import installed_lf_version, training_python
    from minicpm_tui.core.tinymodel import offline_env

    assert [kl_partner(i, 3, "0.9.5") for i in range(3)] == [2, 0, 1]
    assert [kl_partner(i, 3, "0.9.2") for i in range(3)] == [2, 1, 0]
    assert [kl_partner(i, 2500, None) for i in (0, 999, 1000, 1001, 2000, 2499)] == [999, 998, 1999, 1000, 2499,
                                                                                       2498]
    columns = {**SHAREGPT, "columns": {**IMG, "kto_tag": "label"}}
    entry = _write(tmp_path, "kl", KTO_KL, columns)
    rep = _check(tmp_path, "kl", entry, stage="kto", lf_version="0.9.5")
    assert not rep.ok and [e.kind for e in rep.errors] == ["load"]
    err = rep.file_error
    assert (err.record, err.field, err.kind) == (1, "messages[1].content", "load")
    assert err.message.startswith("its KTO KL pair (this record's prompt with record 0's answer, as LLaMA-Factory "
                                  "builds it) holds 0 <image> placeholders in that answer where this record's own "
                                  "answer holds 1"), err.message
    assert "LLaMA-Factory stops preprocessing (\"The number of images does not match" in err.message
    assert err.fix.startswith("keep <image> out of the answers")
    assert _check(tmp_path, "kl", entry, stage="kto", lf_version="0.9.2").ok
    four = _write(tmp_path, "kl4", [*KTO_KL, KTO_KL[2]], columns)
    err = _check(tmp_path, "kl4", four, stage="kto", lf_version="0.9.2").file_error
    assert err is not None and err.record == 1 and "with record 2's answer" in err.message, err
    # No placeholder in any answer (the usual data): nothing to pair wrong.
    fine = [{**r, "messages": _turns("<image> q", "a")} for r in KTO_KL]
    assert _check(tmp_path, "fine", _write(tmp_path, "fine", fine, columns), stage="kto", lf_version="0.9.5").ok
    # LLaMA-Factory's own processor, batch by batch as its map runs it.
    jobs = [{"dataset_dir": str(tmp_path), "name": name, "stage": "kto", "template": "minicpm_v"}
            for name in ("kl", "kl4", "fine")]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    proc = subprocess.run([training_python(), str(Path(__file__).with_name("lf_mm_counts.py")),
                           str(tmp_path / "jobs.json")], capture_output=True, text=True, env=offline_env(),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["records"] for r in results] == [["ok"] * 3, ["ok"] * 4, ["ok"] * 3]  # each alone: fine
    later = installed_lf_version() != "0.9.2"
    assert results[0]["batch"].startswith("error: The number of images does not match") is later, results[0]
    assert results[1]["batch"].startswith("error: The number of images does not match"), results[1]
    assert results[2]["batch"] == "ok"


def test_kto_kl_pairs_are_found_across_parallel_chunks(tmp_path):
    """A big file is validated in parallel chunks: the answers with placeholders each chunk notes join, in record
    order, so the pair is found at the same record as reading it whole (1500: its KL term takes 1499's answer)."""
    rows = [{"messages": _turns("<image> q", "a"), "images": ["a.png"], "label": i % 2 == 0} for i in range(3000)]
    rows[1500] = {"messages": _turns("q", "<image> a"), "images": ["a.png"], "label": True}
    entry = _write(tmp_path, "big", rows, {**SHAREGPT, "columns": {**IMG, "kto_tag": "label"}})
    found = []
    for parallel in (None, 1):
        err = _check(tmp_path, "big", entry, stage="kto", lf_version="0.9.5", parallel_min_bytes=parallel,
                     workers=2).file_error
        found.append((err.record, err.message.split(" answer,")[0]))
    assert found == [(1500, "its KTO KL pair (this record's prompt with record 1499's")] * 2, found


def test_an_entry_without_media_columns_is_counted_too(tmp_path, monkeypatch):
    """minicpm_v's plugin counts every record's placeholders against none: a text dataset that writes <image>
    stops it as well. Read so by ``validate --template`` and the preflight; MiniCPM's text templates ask nothing."""
    import minicpm_tui.core.lfinfo as lfinfo
    from minicpm_tui.core.datasets.entry import validate_registered
    from minicpm_tui.core.preflight import PreflightReport, _check_datasets

    records = [{"q": "<image> is a tag", "a": "ok"}, {"q": "plain", "a": "ok"}]
    entry = _write(tmp_path, "qa", records, {"columns": {"prompt": "q", "response": "a"}})
    rep = validate_registered("qa", entry, tmp_path, template="minicpm_v", target=load_release("0.9.5"),
                              keep_indices=True)
    assert rep.invalid_indices == [0] and rep.errors[0].field == "q"
    assert rep.errors[0].message.startswith("holds 1 <image> placeholder, but the entry maps no images column")
    asked = []
    monkeypatch.setattr(lfinfo, "lf_info", lambda python=None: asked.append(python))
    assert validate_registered("qa", entry, tmp_path, template="cpm4").ok and not asked
    (tmp_path / "train.yaml").write_text("stage: sft\ntemplate: minicpm_v\n", encoding="utf-8")
    report = PreflightReport(run_dir=tmp_path)
    _check_datasets(tmp_path, "sft", report, "0.9.5", {"template": "minicpm_v"}, target=load_release("0.9.5"))
    assert any("record 0: q: holds 1 <image> placeholder" in p.one_line() for p in report.problems), report.problems
