"""Media columns (images, videos, audios) of a dataset_info.json entry (fast, no LLaMA-Factory).

``test_datasets_agreement.py::test_media_entries_agree_with_llamafactory`` (and ``test_lf_versions.py`` per
release) checks these verdicts against LLaMA-Factory's own preprocessing; these pin the wording (record,
the user's field, the fix), which template reads what, media files, the parallel and folder paths, the CLI
and the preflight.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minicpm_tui.cli import main
from minicpm_tui.core.datasets import validate_file
from minicpm_tui.core.datasets.entry import validate_entry
from minicpm_tui.core.datasets.media import media_for, media_reading

QA_IMG = {"columns": {"prompt": "question", "response": "answer", "images": "img"}}
MINICPM4 = media_reading("cpm4", "MiniCPM4-8B")
VL = {"qwen2_vl": ["images", "videos"], "cpm4": []}  # what lf_introspect reports (template_media)


def _jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _qa(i: int, **extra) -> dict:
    return {"question": f"q{i}", "answer": f"a{i}", **extra}


def test_media_for_a_text_template_fail_the_whole_load_at_the_first_kept_record(tmp_path):
    f = _jsonl(tmp_path / "qa.jsonl", [_qa(0, img=[]), _qa(1, img=None), _qa(2),
                                       {"question": "q", "answer": None, "img": ["dropped.png"]},  # dropped first
                                       _qa(4, img=["cat.png"]), _qa(5, img=["dog.png"])])
    rep = validate_entry("qa", {"file_name": f.name, **QA_IMG}, tmp_path, stage="sft", media=MINICPM4,
                         keep_indices=True)
    err = rep.file_error
    assert (err.record, err.field, err.kind) == (4, "img", "load") and not rep.ok and rep.valid == 0
    assert err.message == ("MiniCPM4-8B (template cpm4) reads no images; LLaMA-Factory stops preprocessing here "
                           "with \"This model does not support image input\"")
    assert "remove \"images\" from the entry's columns" in err.fix
    assert rep.summary().startswith("record 4: img: MiniCPM4-8B (template cpm4) reads no images;")  # preflight
    assert f"{f}:record 4: img: MiniCPM4-8B" in "\n".join(rep.lines())
    assert rep.error_counts["load"] == 1 and rep.invalid_indices == list(range(6))
    assert not rep.notes  # no "not checked" note: they are
    # [], null, a record without the field: no media, nothing to refuse
    f = _jsonl(tmp_path / "none.jsonl", [_qa(0, img=[]), _qa(1, img=None), _qa(2)])
    assert validate_entry("qa", {"file_name": f.name, **QA_IMG}, tmp_path, media=MINICPM4).ok


@pytest.mark.parametrize("key, value, kind", [("images", "", "image"), ("images", "cat.png", "image"),
                                               ("videos", ["a.mp4"], "video"), ("audios", [["a.wav"]], "audio")])
def test_any_value_but_null_or_an_empty_list_is_media(tmp_path, key, value, kind):
    """LLaMA-Factory makes a list of any other value (even "") and then refuses it (converter.py)."""
    f = _jsonl(tmp_path / "qa.jsonl", [_qa(0, m=value)])
    entry = {"file_name": str(f), "columns": {"prompt": "question", "response": "answer", key: "m"}}
    rep = validate_file(f, entry=entry)  # no template given: the presets' text templates
    assert rep.file_error.field == "m" and f"\"This model does not support {kind} input\"" in rep.file_error.message
    assert rep.file_error.message.startswith("MiniCPM's text templates (cpm, cpm3, cpm4, what the presets train "
                                             f"with) read no {key};")


def test_null_media_fail_the_whole_load_on_0_9_2(tmp_path):
    f = _jsonl(tmp_path / "qa.jsonl", [_qa(0, img=[]), _qa(1)])
    entry = {"file_name": str(f), **QA_IMG}
    old = validate_file(f, entry=entry, lf_version="0.9.2")
    assert (old.file_error.record, old.file_error.field, old.file_error.kind) == (1, "img", "load")
    assert "IndexError" in old.file_error.message and "\"img\": []" in old.file_error.fix
    assert validate_file(f, entry=entry, lf_version="0.9.3").ok and validate_file(f, entry=entry).ok


def test_media_a_template_reads_must_be_files_where_llamafactory_looks(tmp_path, monkeypatch):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "cat.png").write_bytes(b"png")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "1.jpg").write_bytes(b"jpg")
    absolute = tmp_path / "abs.png"
    absolute.write_bytes(b"png")
    f = _jsonl(tmp_path / "qa.jsonl", [_qa(0, img=["pics/cat.png", str(absolute)], vid=[["frames/1.jpg"]],
                                           question="<image><image><video>q0"),
                                       _qa(1, img=["pics/dog.png"], question="<image>q1"),
                                       _qa(2, img=[], vid=[["frames/2.jpg"]], question="<video>q2")])
    entry = {"file_name": f.name, "columns": {**QA_IMG["columns"], "videos": "vid"}}
    monkeypatch.chdir(tmp_path / "pics")  # a relative path LLaMA-Factory uses as written: not from here
    rep = validate_entry("qa", entry, tmp_path, media=media_reading("qwen2_vl", template_media=VL),
                         keep_indices=True)
    assert rep.file_error is None and rep.invalid_indices == [1, 2]
    first, second = rep.errors
    assert (first.record, first.field, first.kind) == (1, "img[0]", "media_missing")
    assert first.message.startswith(f"'pics/dog.png' is not a file in media_dir ({tmp_path}), nor as written;")
    assert (second.record, second.field) == (2, "vid[0][0]") and "fails opening the video" in second.message
    assert "set media_dir in train.yaml" in first.fix
    # media_dir decides where they are looked up (LLaMA-Factory's default: the dataset_dir)
    rep = validate_entry("qa", entry, tmp_path, media=media_reading("qwen2_vl", template_media=VL,
                                                                    media_dir=tmp_path / "pics"))
    assert {e.field for e in rep.errors} == {"img[0]", "vid[0][0]"} and rep.errors[0].record == 0
    # audios are not read by qwen2_vl: that still stops LLaMA-Factory
    f = _jsonl(tmp_path / "au.jsonl", [_qa(0, wav=["a.wav"])])
    rep = validate_entry("au", {"file_name": f.name, "columns": {**QA_IMG["columns"], "images": None,
                                                                 "audios": "wav"}},
                         tmp_path, media=media_reading("qwen2_vl", template_media=VL))
    assert rep.file_error.message.startswith("template qwen2_vl reads no audios;")


def test_a_template_not_known_here_gets_its_files_checked_and_a_note(tmp_path):
    f = _jsonl(tmp_path / "qa.jsonl", [_qa(0, img=["cat.png"])])
    rep = validate_entry("qa", {"file_name": f.name, **QA_IMG}, tmp_path, media=media_reading("llava"))
    assert rep.file_error is None and rep.errors[0].kind == "media_missing"
    assert rep.notes == ["whether template llava reads images is not known here (no LLaMA-Factory here has that "
                         "template): only that their files exist is checked"]


def test_media_for_asks_llamafactory_only_for_other_templates(monkeypatch):
    import minicpm_tui.core.lfinfo as lfinfo

    asked = []

    def fake_info(python=None):
        asked.append(python)
        return lfinfo.LFInfo({"llamafactory": {"importable": True, "template_media": VL}})

    monkeypatch.setattr(lfinfo, "lf_info", fake_info)
    assert media_for("cpm4").accepts == frozenset() and media_for(None).accepts == frozenset() and not asked
    assert media_for("qwen2_vl", python="py").accepts == {"images", "videos"} and asked == ["py"]
    assert media_for("llava").accepts is None  # not in what LLaMA-Factory reported

    def no_lf(python=None):
        raise lfinfo.UserError("could not inspect the training environment")

    monkeypatch.setattr(lfinfo, "lf_info", no_lf)
    assert media_for("qwen2_vl").accepts is None


def test_parallel_and_folder_paths_agree(tmp_path, monkeypatch):
    from test_datasets_entry import _parallel_results

    records = [_qa(i, img=[]) for i in range(3000)]
    records[2100] = _qa(2100, img=["cat.png"])
    records[2500] = _qa(2500)
    f = _jsonl(tmp_path / "big.jsonl", records)
    entry = {"file_name": str(f), **QA_IMG}
    ran = _parallel_results(monkeypatch)
    for version in (None, "0.9.2"):
        seq = validate_file(f, entry=entry, lf_version=version, parallel_min_bytes=None)
        par = validate_file(f, entry=entry, lf_version=version, parallel_min_bytes=0, workers=2)
        assert ran[-1] is not None  # merged from the chunks
        assert seq.summary() == par.summary() and [e.brief() for e in seq.errors] == [e.brief() for e in par.errors]
        assert par.file_error.record == (2100 if version is None else 2500)
    folder = tmp_path / "shards"
    _jsonl(folder / "a.jsonl", [_qa(0, img=[])])
    _jsonl(folder / "b.jsonl", [_qa(1, img=[]), _qa(2, img=["cat.png"])])
    rep = validate_file(folder, entry={"file_name": str(folder), **QA_IMG})
    assert not rep.ok and rep.file_error.file == "b.jsonl" and rep.file_error.record == 1
    assert rep.summary().startswith("b.jsonl: record 1: img: MiniCPM's text templates")


@pytest.fixture()
def media_info(tmp_path) -> Path:
    _jsonl(tmp_path / "qa.jsonl", [_qa(0, img=[]), _qa(1, img=["pics/cat.png"], question="<image>q1")])
    (tmp_path / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "qa.jsonl", **QA_IMG}}),
                                                encoding="utf-8")
    return tmp_path


def test_cli_media_follow_the_template(media_info, capsys, monkeypatch):
    import minicpm_tui.core.lfinfo as lfinfo

    monkeypatch.setattr(lfinfo, "installed_lf_version", lambda python=None: "0.9.5")
    assert main(["validate", "--dataset-info", str(media_info), "qa"]) == 1
    out = capsys.readouterr().out
    assert f"{media_info / 'qa.jsonl'}:record 1: img: MiniCPM's text templates" in out
    assert "This model does not support image input" in out and "not checked" not in out
    monkeypatch.setattr(lfinfo, "lf_info", lambda python=None: lfinfo.LFInfo(
        {"llamafactory": {"importable": True, "template_media": VL}}))
    assert main(["validate", "--dataset-info", str(media_info), "qa", "--template", "qwen2_vl"]) == 1
    assert "record 1: img[0]: 'pics/cat.png' is not a file in media_dir" in capsys.readouterr().out
    (media_info / "elsewhere" / "pics").mkdir(parents=True)
    (media_info / "elsewhere" / "pics" / "cat.png").write_bytes(b"png")
    assert main(["validate", "--dataset-info", str(media_info), "qa", "--template", "qwen2_vl",
                 "--media-dir", str(media_info / "elsewhere")]) == 0


def test_preflight_reads_the_run_directorys_template_and_media_dir(tmp_path):
    from minicpm_tui.core.preflight import PreflightReport, _check_datasets

    _jsonl(tmp_path / "qa.jsonl", [_qa(0, img=["cat.png"])])
    (tmp_path / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "qa.jsonl", **QA_IMG}}),
                                                encoding="utf-8")
    (tmp_path / "train.yaml").write_text("stage: sft\ntemplate: cpm4\nmedia_dir: media\n", encoding="utf-8")
    report = PreflightReport(run_dir=tmp_path)
    _check_datasets(tmp_path, "sft", report, "0.9.5", {"template": "cpm4", "model_name": "MiniCPM4-8B"})
    (problem,) = report.problems
    assert "record 0: img: MiniCPM4-8B (template cpm4) reads no images" in problem.one_line()
    # One line with the fix LLaMA-Factory's refusal needs: the record is named, no "validate for record numbers".
    assert problem.fix.startswith('remove "images" from the entry\'s columns') and "validate" not in problem.fix


def test_preflight_advice_names_the_users_dataset_info_not_generates_staging_copy(tmp_path):
    """generate checks a folder beside the target that is removed when it fails: the way to list the unusable
    records names the dataset_info.json the entry came from (or the data file it was registered from)."""
    from minicpm_tui.core.preflight import PreflightReport, _check_datasets

    staging, source = tmp_path / ".run.x1", tmp_path / "data"
    _jsonl(source / "qa.jsonl", [_qa(0), {"question": "q1"}])
    (source / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "qa.jsonl", "columns": {
        "prompt": "question", "response": "answer"}}}), encoding="utf-8")
    staging.mkdir()
    (staging / "dataset_info.json").write_text(json.dumps({
        "qa": {"file_name": str(source / "qa.jsonl"), "columns": {"prompt": "question", "response": "answer"}},
        "other": {"file_name": str(source / "qa.jsonl"), "columns": {"prompt": "question", "response": "answer"}}}),
        encoding="utf-8")
    report = PreflightReport(run_dir=staging)
    _check_datasets(staging, "sft", report, "0.9.5", {}, source_info=source / "dataset_info.json")
    registered, from_file = report.problems
    assert f"validate --dataset-info {source / 'dataset_info.json'} qa`" in registered.fix
    assert f"validate {source / 'qa.jsonl'} --stage sft`" in from_file.fix
    assert str(staging) not in registered.one_line() + from_file.one_line()
    # The wizard's Review step shows it in its own words (its Dataset step lists the records).
    assert registered.one_line(tui=True).endswith("; the Dataset step lists the unusable records")


def test_a_target_reads_the_media_as_its_release_does(media_info, capsys, monkeypatch):
    """Written for another machine's LLaMA-Factory, an entry's media are read by that release's facts (its
    snapshot), never by the LLaMA-Factory here: mistral_small reads images from 0.9.3 on and none in 0.9.2, whose
    converter also fails on a null. The same verdict from validate_registered (the wizard's Dataset step),
    `validate --lf-target` and generate's preflight."""
    from test_smoke_support import demo_recipe

    import minicpm_tui.core.lfinfo as lfinfo
    from minicpm_tui.core.datasets.entry import validate_registered
    from minicpm_tui.core.errors import UserError
    from minicpm_tui.core.lftarget import load_release
    from minicpm_tui.core.writers import generate

    def asked_here(*_, **__):
        raise AssertionError("the LLaMA-Factory here was asked about a target")

    monkeypatch.setattr(lfinfo, "lf_info", asked_here)
    monkeypatch.setattr(lfinfo, "installed_lf_version", asked_here)
    entry = json.loads((media_info / "dataset_info.json").read_text())["qa"]
    old = validate_registered("qa", entry, media_info, template="mistral_small", target=load_release("0.9.2"))
    refused = old.file_error
    assert (refused.record, refused.field) == (1, "img")
    assert refused.message.startswith("template mistral_small reads no images; LLaMA-Factory stops preprocessing")
    new = validate_registered("qa", entry, media_info, template="mistral_small", target=load_release("0.9.3"))
    assert new.file_error is None and [e.kind for e in new.errors] == ["media_missing"]  # read: must exist
    assert main(["validate", "--dataset-info", str(media_info), "qa", "--template", "mistral_small",
                 "--lf-target", "0.9.2"]) == 1
    assert f"{media_info / 'qa.jsonl'}:record 1: img: template mistral_small reads no images" in capsys.readouterr().out
    assert main(["validate", "--dataset-info", str(media_info), "qa", "--template", "mistral_small",
                 "--lf-target", "0.9.3"]) == 1
    assert "record 1: img[0]: 'pics/cat.png' is not a file in media_dir" in capsys.readouterr().out
    # 0.9.2's converter fails on a null media value whatever the template; 0.9.3 takes it
    _jsonl(media_info / "qa.jsonl", [_qa(0, img=None), _qa(1, img=[])])
    for release, code in (("0.9.2", 1), ("0.9.3", 0)):
        assert main(["validate", "--dataset-info", str(media_info), "qa", "--lf-target", release]) == code
        assert ("LLaMA-Factory 0.9.2's converter" in capsys.readouterr().out) == (code == 1)
    # generate's preflight against the target says what validate said
    _jsonl(media_info / "qa.jsonl", [_qa(0, img=[]), _qa(1, img=["pics/cat.png"])])
    with pytest.raises(UserError) as exc:
        generate(demo_recipe(lf_target="0.9.2", template="mistral_small", datasets=["qa"],
                             dataset_dir=str(media_info)), media_info.parent / "run")
    assert "MiniCPM4-0.5B (template mistral_small) reads no images" in exc.value.one_line()
    # no entry, no release to read it by: one line
    assert main(["validate", str(media_info / "qa.jsonl"), "--lf-target", "0.9.2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("minicpm-tui: error: --lf-target: needs --dataset-info") and len(err.splitlines()) == 1
