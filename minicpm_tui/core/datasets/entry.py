"""Read a dataset_info.json entry the way LLaMA-Factory 0.9.x does (``llamafactory/data/parser.py``).

``DatasetAttr.join`` takes ``formatting`` (default alpaca) and ``ranking`` from the entry; a ``columns``
block sets EVERY column key to the block's value or None, so ``{"prompt": "question", "response":
"answer"}`` also unsets query (``input``); likewise a ``tags`` block unsets every tag it does not name
(then a leading "system" turn is no longer the system prompt). Without a block the defaults hold:
instruction/input/output, conversations, from/value/human/gpt/observation/function_call/system.

``"formatting": "openai"`` reads the same columns and tags (the sharegpt defaults unless the entry names
its own) through LLaMA-Factory's OpenAI converter (``openai_lf.py``); it exists from 0.9.4 on, so with a
known older release the entry is refused as a whole.

The result is a ``Shape`` whose ``columns`` / ``tags`` are exactly what the converter reads, so the
record checkers read the user's own field names and name them in their issues, plus the problems of
the entry itself (LLaMA-Factory fails on them before or while reading any record).
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minicpm_tui.core.datasets.formats import (
    COLUMN_KEYS,
    LF_COLUMN_DEFAULTS,
    MEDIA_KEYS,
    REMOTE_KEYS,
    SHAREGPT_TAGS,
    TAG_KEYS,
    Shape,
    json_kind,
)
from minicpm_tui.core.datasets.media import MediaReading
from minicpm_tui.core.datasets.register import INFO_NAME
from minicpm_tui.core.datasets.validate import Issue, ValidationReport
from minicpm_tui.core.errors import UserError
from minicpm_tui.core.paths import missing

# What people put in ``columns`` by mistake: the standard field names instead of LLaMA-Factory's keys.
_FIELD_TO_KEY = {"instruction": "prompt", "input": "query", "output": "response", "conversations": "messages",
                 "label": "kto_tag"}


@dataclass
class EntryReading:
    """What LLaMA-Factory makes of one entry: the shape to check records by, and the entry's own problems."""

    shape: Shape | None  # None when no record can be checked (a broken entry, a remote or unmodelled source)
    file_name: str | None = None
    errors: list[Issue] = field(default_factory=list)  # LLaMA-Factory fails on the entry (kind "entry")
    warnings: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is not validated, and why
    skipped: str | None = None  # why the records are not checked at all (remote data)
    refused: bool = False  # the release cannot read the entry at all (openai formatting before 0.9.4)

    def without_issues(self) -> EntryReading:
        """The same shape with the entry's own issues already reported (each file of a folder)."""
        return EntryReading(self.shape, self.file_name, skipped=self.skipped, refused=self.refused)


def _issue(fld: str, message: str, fix: str) -> Issue:
    return Issue(None, fld, message, fix, "entry")


def _block(entry: dict[str, Any], part: str, keys: tuple[str, ...], defaults: dict[str, str],
           reading: EntryReading) -> dict[str, str | None] | None:
    """``columns`` or ``tags`` as DatasetAttr.join sets them: the defaults, or the block with the rest unset.
    None when the block is not an object (LLaMA-Factory fails on it)."""
    if part not in entry:
        return {key: defaults.get(key) for key in keys}
    block = entry[part]
    if not isinstance(block, dict):
        reading.errors.append(_issue(part, f"is a JSON {json_kind(block)}, not an object; LLaMA-Factory "
                                     f"fails reading it", f"write {part} as {{\"{keys[0]}\": \"<your field>\", ...}}"))
        return None
    for key, value in block.items():
        if key not in keys:
            hint = _FIELD_TO_KEY.get(key) if part == "columns" else None
            hint = hint or next(iter(difflib.get_close_matches(key, keys, n=1)), None)
            reading.warnings.append(Issue(None, f"{part}.{key}", f"is not a {part[:-1]} key LLaMA-Factory reads "
                                          f"(it reads {', '.join(keys)}), so it is ignored",
                                          f"use {hint!r} (keys name LLaMA-Factory's role, values your field)" if hint
                                          else f"remove it from {part}", "entry_key"))
        elif value is not None and not isinstance(value, str):
            reading.errors.append(_issue(f"{part}.{key}", f"is a JSON {json_kind(value)}, not a field name; "
                                         "LLaMA-Factory looks it up in every record and fails",
                                         f"write the name of your field as a string, e.g. \"{key}\": \"my_{key}\""))
    return {key: (v if isinstance(v := block.get(key), str) else None) for key in keys}


def version_tuple(version: str) -> tuple[int, ...]:
    """(0, 9, 4) of "0.9.4", "0.9.4.dev0" or "0.9.4+local"; () when it names no release."""
    out = []
    for part in version.split("+", 1)[0].split("."):
        digits = "".join(c for c in part if c.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


OPENAI_SINCE = (0, 9, 4)
OPENAI_WARNING = ("LLaMA-Factory's OpenAI converter adds \"detailed thinking off\" to the system prompt of every "
                  "record without tools (as the whole system prompt where there is none; unless it already says "
                  "\"detailed thinking on/off\") and a newline to one with tools, so the model is trained on that "
                  "text")
OPENAI_FIX = ("register the file as sharegpt with role/content tags instead (`minicpm-tui register FILE --name NAME "
              "--dataset-dir DIR` does)")
OPENAI_FIX_TUI = ("register the file as sharegpt with role/content tags instead (type its path in the Dataset "
                  "step and register it, ^g)")


def read_entry(entry: Any, lf_version: str | None = None, media: MediaReading | None = None) -> EntryReading:
    """The shape and problems of one dataset_info.json entry, as LLaMA-Factory reads a local file through it.

    ``lf_version``: the release that will read it (None: unknown, read as 0.9.5 does); the ``openai``
    formatting depends on it (none before 0.9.4, a different tool_calls test in 0.9.4), and so do null media
    (0.9.2 fails on them). ``media``: the template that trains it and where media files are (``media.py``);
    None: the presets' text templates, which read no images, videos or audios.
    """
    if not isinstance(entry, dict):
        return EntryReading(None, errors=[_issue("", "is not a JSON object; LLaMA-Factory cannot read it",
                                                 "write the entry as {\"file_name\": ..., \"columns\": {...}}")])
    remote = next((k for k in REMOTE_KEYS if k in entry), None)
    if remote is not None:
        return EntryReading(None, skipped=f"its data comes from {remote} {entry[remote]!r}, not a local file")
    reading = EntryReading(None, file_name=entry.get("file_name") if isinstance(entry.get("file_name"), str) else None)
    if reading.file_name is None:
        what = "is missing" if "file_name" not in entry else "is not a string"
        reading.errors.append(_issue("file_name", f"{what}; LLaMA-Factory fails on this entry (KeyError: "
                                     "'file_name')", "set file_name to the data file or folder, relative to "
                                     "dataset_dir"))
    formatting = entry.get("formatting", "alpaca")
    if formatting == "openai":
        release = version_tuple(lf_version) if lf_version else None
        if release and release < OPENAI_SINCE:
            reading.errors.append(_issue("formatting", f"is 'openai', which LLaMA-Factory {lf_version} does not "
                                         "have (it came in 0.9.4; 'Dataset converter openai not found')",
                                         "upgrade LLaMA-Factory to 0.9.4 or later, or " + OPENAI_FIX))
            reading.refused = True
            return reading
        reading.warnings.append(Issue(None, "formatting", f"is 'openai': {OPENAI_WARNING}", OPENAI_FIX,
                                      "openai_system_prompt"))
        if lf_version is None:
            reading.notes.append("checked as LLaMA-Factory 0.9.5 reads openai formatting (the release is not "
                                 "known here; 0.9.2-0.9.3 lack it, 0.9.4 fails on some tool_calls files)")
    elif formatting not in ("alpaca", "sharegpt"):
        reading.errors.append(_issue("formatting", f"is {formatting!r}; LLaMA-Factory knows alpaca, sharegpt and "
                                     "openai ('Dataset converter ... not found')", "use \"alpaca\" or \"sharegpt\""))
        return reading
    ranking = entry.get("ranking", False)
    if not isinstance(ranking, bool):
        # DatasetAttr checks `ranking is True/False`: anything else passes the stage check and acts truthy.
        reading.errors.append(_issue("ranking", f"is {ranking!r}, not a JSON boolean", "write true or false "
                                     "without quotes"))
        ranking = bool(ranking)
    columns = _block(entry, "columns", COLUMN_KEYS, LF_COLUMN_DEFAULTS, reading)
    tags = _block(entry, "tags", TAG_KEYS, SHAREGPT_TAGS, reading)
    if columns is None or tags is None:
        return reading
    # Records are checked unless the entry leaves nothing to check them by (no turns, no role key, ...).
    readable = reading.file_name is not None
    split = entry.get("split", "train")
    base = split.split("[", 1)[0].strip() if isinstance(split, str) else None
    if base != "train":
        reading.errors.append(_issue("split", f"is {split!r}; a local file has only the 'train' split "
                                     "(datasets: Unknown split)", "remove split, or set it to \"train\""))
    elif split != "train":
        reading.notes.append(f"split {split!r}: LLaMA-Factory reads only that slice; every record is checked")
    mapped = [key for key in MEDIA_KEYS if columns[key]]
    if mapped and media is not None and media.accepts is None:
        reading.notes.append(f"whether {media.who()} {', '.join(mapped)} is not known here (no LLaMA-Factory here "
                             "has that template): only that their files exist is checked")
    # Keys LLaMA-Factory looks up in every record (or turn): unset, its load fails and no record can be read.
    required: list[tuple[str, str, str]] = []
    if formatting in ("sharegpt", "openai"):
        required += [("columns", "messages", "sharegpt reads the turns from it"),
                     ("tags", "role_tag", "it is looked up in every turn"),
                     ("tags", "content_tag", "it is looked up in every turn")]
    if ranking:
        required += [("columns", key, "the entry has \"ranking\": true, which reads the preference pair from it")
                     for key in ("chosen", "rejected")]
    for part, key, why in required:
        if (columns if part == "columns" else tags)[key] is None:
            reading.errors.append(_issue(f"{part}.{key}", f"is not set ({why}); a {part} block unsets every key "
                                         "it does not name, and LLaMA-Factory fails looking it up" +
                                         (" (an openai entry starts from the sharegpt defaults: "
                                          "conversations, from/value)" if formatting == "openai" else ""),
                                         f"add \"{key}\": \"<your field>\" to {part}"))
            readable = False
    if ranking and columns["kto_tag"] is not None:
        reading.errors.append(_issue("columns.kto_tag", "is set in a ranking entry; LLaMA-Factory then makes every "
                                     "record with a boolean label a KTO pair (the answer against an empty one) and "
                                     "ignores chosen/rejected", "remove kto_tag from columns, or ranking from the "
                                     "entry"))
    if formatting == "alpaca" and not columns["prompt"] and not columns["query"]:
        reading.warnings.append(Issue(None, "columns.prompt", "is not set and neither is query: every prompt "
                                      "is empty", "add \"prompt\": \"<your question field>\" to columns",
                                      "empty_prompt"))
    if readable:
        sharegpt = formatting != "alpaca"
        reading.shape = Shape(formatting, ranking=ranking, kto_key=columns["kto_tag"],
                              messages_key=(columns["messages"] or "") if sharegpt else "",
                              tags=tags if sharegpt else {}, columns=columns,
                              converter="openai" if formatting == "openai" else None, lf_version=lf_version,
                              media=(media or MediaReading()) if mapped else media if media and media.accepts else None)
    return reading


def load_dataset_info(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """(the dataset_info.json, its entries by name); ``path`` is the file or the folder holding it."""
    p = Path(path)
    if p.is_dir():
        p = p / INFO_NAME
    if not p.is_file():
        raise missing(p, "file", fix="pass a dataset_info.json, or the folder holding it (LLaMA-Factory's "
                      "dataset_dir)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError("is not UTF-8 text", where=str(p), fix="save it as UTF-8 JSON") from None
    except ValueError as exc:
        raise UserError(f"is not valid JSON ({exc})", where=str(p), fix="fix it: LLaMA-Factory cannot read it "
                        "either") from None
    if not isinstance(data, dict):
        raise UserError("is not a JSON object of dataset entries", where=str(p),
                        fix="write it as {\"name\": {\"file_name\": ...}, ...}")
    return p, data


def entry_names(info: dict[str, Any], most: int = 8) -> str:
    """The first ``most`` registered names, quoted, and how many more there are."""
    names = ", ".join(repr(str(k)) for k in list(info)[:most])
    return names + (f" and {len(info) - most} more" if len(info) > most else "")


def find_entry(info: dict[str, Any], name: str, where: str) -> Any:
    """The entry registered as ``name``, or a UserError that offers the closest name."""
    if name not in info:
        close = difflib.get_close_matches(name, [str(k) for k in info], n=1)
        raise UserError(f"no dataset {name!r} is registered here", where=where,
                        fix=f"did you mean {close[0]!r}?" if close else
                        f"use one of {entry_names(info)}" if info else
                        "register one with `minicpm-tui register FILE --name NAME --dataset-dir DIR`")
    return info[name]


def registry_at(path: str | os.PathLike[str]) -> Path | None:
    """The dataset_info.json that ``path`` is, or that the folder ``path`` holds, else None. Such a folder is
    LLaMA-Factory's dataset_dir (datasets registered by name), not a folder of data shards: read as shards,
    its dataset_info.json would be taken for data."""
    p = Path(path).expanduser()
    info = p / INFO_NAME if p.is_dir() else p
    return info if info.name == INFO_NAME and info.is_file() else None


def registry_refusal(path: str | os.PathLike[str], info_path: Path, command: str = "validate") -> UserError:
    """`validate PATH` (or `register PATH`: ``command``) of a dataset_info.json or its folder: name it, a few
    of its entries, and the command that validates one of them through its entry (for `register`, also how
    its datasets are used as they are registered)."""
    import shlex

    _, info = load_dataset_info(info_path)
    held = f"registers {len(info)} dataset(s) ({entry_names(info, 4)})" if info else "registers no dataset yet"
    what = (f"is LLaMA-Factory's dataset registry, not data: it {held}" if Path(path).expanduser().is_file() else
            f"is a LLaMA-Factory dataset folder, not a folder of data shards: its {INFO_NAME} {held}")
    folder = shlex.quote(str(info_path.parent))
    fix = f"validate one through its entry: minicpm-tui validate --dataset-info {folder} NAME"
    if command == "register":  # nothing to register: use an entry as it is, or register the data itself
        fix = (f"use one as registered (`generate ... --datasets NAME --dataset-dir {folder}`; check it with "
               f"`minicpm-tui validate --dataset-info {folder} NAME`), or register a data file or a folder of "
               "data shards")
    return UserError(f"cannot {command} it: {what}" if command != "validate" else what, where=str(path), fix=fix)


def refuse_skipped(reading: EntryReading, where: str) -> None:
    """A UserError for an entry whose data cannot be validated here (``EntryReading.skipped``)."""
    if reading.skipped:
        raise UserError(f"not validated: {reading.skipped}", where=where,
                        fix="validate the data file itself (`minicpm-tui validate FILE`)")


def validate_entry(name: str, entry: Any, dataset_dir: str | os.PathLike[str], stage: str | None = None,
                   lf_version: str | None = None, media: MediaReading | None = None,
                   **kwargs: Any) -> ValidationReport:
    """Validate dataset ``name``'s data through its entry, as LLaMA-Factory loads it from ``dataset_dir``.

    ``media``: see ``read_entry``; its media_dir defaults to ``dataset_dir``, as in LLaMA-Factory.
    Raises UserError when there is nothing to validate: the entry names no file or the release
    ``lf_version`` cannot read it (openai formatting before 0.9.4) (exit 1), or its data is not a local
    file (``EntryReading.skipped``, exit 2).
    ``kwargs`` go to ``validate_file`` (progress, keep_indices, token_sample, ...).
    """
    from minicpm_tui.core.datasets.validate import validate_file

    where = f"{Path(dataset_dir) / INFO_NAME}: {name}"
    reading = entry if isinstance(entry, EntryReading) else read_entry(entry, lf_version, media)
    refuse_skipped(reading, where)
    if reading.shape is not None and reading.shape.media is not None:
        reading.shape.media = reading.shape.media.with_media_dir(dataset_dir)
    if reading.file_name is None or reading.refused:
        first = next(e for e in reading.errors if e.field == "formatting") if reading.refused else reading.errors[0]
        raise UserError(f"{first.field + ': ' if first.field else ''}{first.message}", where=where, fix=first.fix,
                        fix_tui=first.fix.replace(OPENAI_FIX, OPENAI_FIX_TUI) if reading.refused else None,
                        exit_code=1)
    # LLaMA-Factory: os.path.join(dataset_dir, file_name), so an absolute file_name stands on its own.
    path = Path(dataset_dir) / Path(reading.file_name).expanduser()
    return validate_file(path, stage=stage, entry=reading, **kwargs)


def validate_registered(name: str, entry: Any, dataset_dir: str | os.PathLike[str], stage: str | None = None,
                        template: str | None = None, model: str | None = None,
                        media_dir: str | os.PathLike[str] | None = None, target: Any = None,
                        **kwargs: Any) -> ValidationReport:
    """``validate_entry`` with what the entry's reading depends on found here, as the CLI and the wizard do.

    The media columns it maps are read as ``template`` (``model``'s, for the message) reads them (None:
    MiniCPM's text templates, which read none), looked up in ``media_dir`` (default: ``dataset_dir``); an
    openai entry, or one with media, is read as the installed LLaMA-Factory release reads it. ``target``
    (``lfinfo.LFInfo`` of the LLaMA-Factory the run is written for, ``core.lftarget``): its release and its
    templates' media instead, from its saved facts.
    """
    from minicpm_tui.core.datasets.media import entry_maps_media, may_count, media_for

    lf_version = media = None
    # which media are read depends on the template (and nulls on the release); its plugin counts placeholders
    if entry_maps_media(entry) or may_count(template):
        media = media_for(template, model, media_dir=media_dir, target=target)
    if isinstance(entry, dict) and (entry.get("formatting") == "openai" or media is not None):
        from minicpm_tui.core.lfinfo import installed_lf_version

        lf_version = target.version if target is not None else installed_lf_version()
    return validate_entry(name, entry, dataset_dir, stage=stage, lf_version=lf_version, media=media, **kwargs)
